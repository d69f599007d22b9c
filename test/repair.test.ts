// Repair that must survive the namenode forgetting: corrupt marks live in the
// namenode's memory, so a restart between "reported" and "replaced" must not
// leave a rotten replica counted as good.
import test from 'ava'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fsck } from '../src/client/fsck.js'
import { startCluster, waitFor } from './helpers/cluster.js'
import { flipByte, replicaDataPath } from './helpers/data.js'

const MiB = 1024 * 1024
const OFFSET = 1000
const FILL = 7

test('a replica the scanner reported corrupt is replaced even if the namenode restarts before replacing it', async (t) => {
  t.timeout(3 * 60_000)
  const c = await startCluster(t, { nodes: 5, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', scanPeriod: '5s', logLevel: 'info' })
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
  const victim = c.record.nodes.find((n) => n.id === lb.locations[0]!.id)!
  const file = replicaDataPath(victim.data, lb.block!.id)
  await flipByte(file, OFFSET)
  const nnLog = path.join(c.record.namenode.data, 'log')
  await waitFor(async () => (await readFile(nnLog, 'utf8')).includes('corrupt replica reported'), 60_000, 'the scanner to report the replica')
  await c.killNamenode()
  await c.restartNamenode()
  const rotten = (): Promise<boolean> => readFile(file).then((d) => d[OFFSET] !== FILL, () => false)
  await waitFor(async () => !(await rotten()), 90_000, `the rotten replica on ${victim.id} to be replaced`)
  await waitFor(async () => (await fsck(client, '/').catch(() => undefined))?.healthy === true, 60_000, 'fsck to be healthy')
  const pieces: Buffer[] = []
  for await (const piece of (await client.open('/f')).read()) pieces.push(piece)
  const back = Buffer.concat(pieces)
  t.true(back.equals(Buffer.alloc(MiB, FILL)))
})
