// A standalone reproduction, found by the chaos test: a corrupt replica that
// the block scanner reported is forgotten when the namenode restarts before
// the replica is replaced. The datanode's next block report lists it as a good
// replica, and the scanner never reports it again (it remembers having
// reported it), so fsck stays HEALTHY while the rotten replica stays on disk
// and is handed to readers as a location.
//
//   node dist/test/chaos/repro-forgotten-corruption.js
//
// Prints what fsck and the disk say every 5 s for a minute; exits 1 while the bug is there.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fsck } from '../../src/client/fsck.js'
import { sleep, startCluster, waitFor } from '../helpers/cluster.js'
import { Cleanups, flipByte, replicaDataPath } from '../helpers/data.js'

const MiB = 1024 * 1024
const OFFSET = 1000
const FILL = 7

async function main(): Promise<number> {
  const cleanups = new Cleanups()
  const t0 = Date.now()
  const log = (s: string): void => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`)
  try {
    const c = await startCluster(cleanups, { nodes: 5, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', scanPeriod: '5s', logLevel: 'info' })
    const client = c.client({ timeoutMs: 5000 })
    // Other blocks, so that safe mode after the restart waits for several datanodes' reports.
    for (let i = 0; i < 30; i++) {
      const w = await client.create(`/other/${i}`)
      await w.write(Buffer.alloc(100 * 1024, i))
      await w.close()
    }
    const w = await client.create('/f')
    await w.write(Buffer.alloc(MiB, FILL))
    await w.close()
    const lb = (await client.getBlockLocations('/f', 0, 0)).blocks[0]!
    const victim = lb.locations[0]!.id
    const node = c.record.nodes.find((n) => n.id === victim)!
    const file = replicaDataPath(node.data, lb.block!.id)
    log(`/f is block ${lb.block!.id} on ${lb.locations.map((l) => l.id).join(', ')}; flipping byte ${OFFSET} of the replica on ${victim}`)
    await flipByte(file, OFFSET)
    const nnLog = path.join(c.record.namenode.data, 'log')
    await waitFor(async () => (await readFile(nnLog, 'utf8')).includes('corrupt replica reported'), 60_000, 'the scanner to report the replica')
    log('the namenode logged "corrupt replica reported"; kill -9 the namenode before the replica is replaced, and restart it')
    await c.killNamenode()
    await c.restartNamenode()
    let rotten = true
    for (let i = 0; i < 12; i++) {
      await sleep(5000)
      const r = await fsck(client, '/').catch(() => undefined)
      const b = r?.blocks.find((x) => x.path === '/f')
      rotten = await readFile(file).then((d) => d[OFFSET] !== FILL, () => false)
      log(`fsck ${r?.healthy ? 'HEALTHY' : 'UNHEALTHY'}; /f's block ${b?.state ?? '?'} on ${b?.replicas.map((x) => x.node).join(', ') ?? '?'}${b?.corrupt.length ? `, corrupt on ${b.corrupt.map((x) => x.node).join(', ')}` : ''}; the replica on ${victim} is ${rotten ? 'still ROTTEN on disk' : 'gone or rewritten'}`)
      if (!rotten) break
    }
    if (rotten) log(`BUG: ${victim} still holds a rotten replica of block ${lb.block!.id} a minute after the restart, and nothing will report it again`)
    return rotten ? 1 : 0
  } finally {
    await cleanups.run()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
