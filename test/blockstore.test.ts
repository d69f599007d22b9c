// The block store end to end, through real processes and sockets: one cluster
// (a namenode and 3 datanodes in 2 racks) shared by the tests of this file,
// which run in order; the namenode kill -9 comes last.
import { createHash } from 'node:crypto'
import { readdir, readFile, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { LoamError } from '../src/rpc/errors.js'
import { startCluster, waitFor, alive, type TestCluster } from './helpers/cluster.js'
import { Cleanups, flipByte, fsckJson, KiB, localTempDir, loamHashed, MiB, pattern, replicaDataPath, reportJson, sha256, sha256File, writePatternFile, type FsckJson } from './helpers/data.js'

const DEFAULT_BLOCK_BYTES = 64 * MiB
const cleanups = new Cleanups()
let c: TestCluster
let tmp: string
/** Every file whose put was acknowledged and that should still exist: path -> sha256. */
const acknowledged = new Map<string, string>()

test.before(async () => {
  c = await startCluster(cleanups, { nodes: 3, racks: 2 })
  tmp = await localTempDir(cleanups)
})

test.after.always(async () => {
  await cleanups.run()
})

function rackOf(nodeId: string): string {
  const n = c.record.nodes.find((x) => x.id === nodeId)
  if (!n) throw new Error(`fsck names a node ${nodeId} that is not in the cluster record`)
  return n.rack!
}

function nodeDir(nodeId: string): string {
  return c.record.nodes.find((x) => x.id === nodeId)!.data
}

async function statJson(p: string): Promise<Record<string, unknown>> {
  const r = await c.loam(['fs', 'stat', p, '--json'])
  if (r.code !== 0) throw new Error(`stat ${p} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as Record<string, unknown>
}

/**
 * The blocks of one file, from `fsck DIR --json` of its directory (each test keeps its files in a directory
 * of their own); `fsck FILE --json` of the file's own path is checked too, on the side.
 */
async function blocksOf(t: ExecutionContext, remote: string, wantBlocks: number): Promise<{ code: number; healthy: boolean; blocks: FsckJson['blocks'] }> {
  const direct = await fsckJson(c, remote)
  t.is(direct.json.files, 1, `fsck ${remote} --json (a file's own path) counts the file`)
  t.is(direct.json.blocks.length, wantBlocks, `fsck ${remote} --json (a file's own path) lists its blocks`)
  const dir = await fsckJson(c, path.posix.dirname(remote))
  return { code: dir.code, healthy: dir.json.healthy, blocks: dir.json.blocks.filter((b) => b.path === remote) }
}

/** A local file of size pattern bytes put at remote; checked back three ways (get to a file, cat, fsck). */
async function roundTrip(t: ExecutionContext, remote: string, size: number, replication: number, blockBytes: number, seed: number): Promise<void> {
  const name = `${remote.replace(/\//g, '_')}`
  const local = path.join(tmp, `${name}.in`)
  const out = path.join(tmp, `${name}.out`)
  const sum = await writePatternFile(local, size, seed)
  const put = await c.loam(['fs', 'put', local, remote, '--replication', String(replication), ...(blockBytes !== DEFAULT_BLOCK_BYTES ? ['--block-size', String(blockBytes)] : [])])
  t.is(put.code, 0, `put ${remote}: ${put.stderr}`)
  acknowledged.set(remote, sum)
  await rm(local)
  const wantBlocks = Math.ceil(size / blockBytes)

  const st = await statJson(remote)
  t.is(st.type, 'file', `${remote}: stat --json type`)
  t.is(st.length, size, `${remote}: stat --json length`)
  t.is(st.replication, replication, `${remote}: stat --json replication`)
  t.is(st.blockSize, blockBytes, `${remote}: stat --json block size`)
  t.is(st.blocks, wantBlocks, `${remote}: stat --json block count`)

  const get = await c.loam(['fs', 'get', remote, out])
  t.is(get.code, 0, `get ${remote}: ${get.stderr}`)
  t.is((await stat(out)).size, size, `${remote}: size of the file got`)
  t.is(await sha256File(out), sum, `${remote}: sha256 of the file got`)
  await rm(out)

  const cat = await loamHashed(c, ['fs', 'cat', remote], replication === 3 ? { LOAM_SHORT_CIRCUIT: '0' } : {})
  t.is(cat.code, 0, `cat ${remote}: ${cat.stderr}`)
  t.is(cat.bytes, size, `${remote}: bytes from cat`)
  t.is(cat.sha256, sum, `${remote}: sha256 from cat`)

  const fsck = await blocksOf(t, remote, wantBlocks)
  t.is(fsck.code, 0, `fsck of ${remote}'s directory exits 0`)
  t.true(fsck.healthy, `${remote}: healthy`)
  t.is(fsck.blocks.length, wantBlocks, `${remote}: blocks in fsck`)
  t.is(fsck.blocks.reduce((s, b) => s + b.length, 0), size, `${remote}: block lengths add up to the file`)
  for (const [i, b] of fsck.blocks.entries()) {
    if (i < wantBlocks - 1) t.is(b.length, blockBytes, `${remote}: block ${i} is full`)
    t.is(b.expected, replication, `${remote}: block ${b.id} expected replicas`)
    t.is(new Set(b.replicas.map((r) => r.node)).size, replication, `${remote}: block ${b.id} replicas on distinct nodes`)
    t.is(b.state, 'HEALTHY')
  }
}

test.serial('report --json has the documented shape: every datanode live, out of safe mode', async (t) => {
  const r = await reportJson(c)
  t.is(r.safemode, false)
  t.true(Array.isArray(r.datanodes))
  t.deepEqual(r.datanodes.map((d) => d.id).sort(), c.record.nodes.map((n) => n.id!).sort())
  for (const d of r.datanodes) {
    const rec = c.record.nodes.find((n) => n.id === d.id)!
    for (const key of ['id', 'address', 'rack', 'state', 'capacity', 'used', 'blocks']) t.true(key in d, `datanode entry has ${key}: ${JSON.stringify(d)}`)
    t.is(d.address, rec.rpc)
    t.is(d.rack, rec.rack!)
    t.is(d.state, 'live')
    t.true(Number.isSafeInteger(d.capacity) && d.capacity > 0, `capacity ${d.capacity}`)
    t.true(Number.isSafeInteger(d.used) && d.used >= 0 && d.used <= d.capacity, `used ${d.used}`)
    t.true(Number.isSafeInteger(d.blocks) && d.blocks >= 0, `blocks ${d.blocks}`)
  }
  t.deepEqual([...new Set(r.datanodes.map((d) => d.rack))].sort(), ['/r1', '/r2'])
})

for (const replication of [1, 3]) {
  test.serial(`0 B, 1 B, one block, one block + 1 byte and 2.5 blocks round-trip at replication ${replication} (1 MiB blocks)`, async (t) => {
    const sizes: Array<[string, number]> = [['empty', 0], ['one-byte', 1], ['one-block', MiB], ['block-plus-one', MiB + 1], ['two-and-a-half', 2 * MiB + MiB / 2]]
    await Promise.all(sizes.map(([name, size], i) => roundTrip(t, `/rt/r${replication}/${name}`, size, replication, MiB, replication * 100 + i)))
  })
}

test.serial('put - reads standard input', async (t) => {
  const data = pattern(MiB + 3 * KiB, 7)
  const put = await c.loam(['fs', 'put', '-', '/rt/stdin', '--block-size', '1MiB'], { input: data })
  t.is(put.code, 0, put.stderr)
  acknowledged.set('/rt/stdin', sha256(data))
  const cat = await c.loam(['fs', 'cat', '/rt/stdin'])
  t.is(cat.code, 0, cat.stderr)
  t.is(sha256(cat.stdout), sha256(data))
})

test.serial('cat --offset --length returns exactly the range, across block boundaries, local and remote reads', async (t) => {
  const size = 3 * MiB + 12_345
  const data = pattern(size, 11)
  const put = await c.loam(['fs', 'put', '-', '/ranges', '--block-size', '1MiB', '--replication', '3'], { input: data })
  t.is(put.code, 0, put.stderr)
  acknowledged.set('/ranges', sha256(data))
  const ranges: Array<[number, number | undefined]> = [
    [MiB - 10, 20], // straddles the first block boundary
    [MiB - 1, 2 * MiB + 2], // from the last byte of block 0 to the first byte of block 3
    [MiB, MiB], // exactly block 1
    [65_537, 3], // inside a checksum chunk, not chunk-aligned
    [2 * MiB - 70_000, 140_000], // across a boundary, in partial chunks either side
    [3 * MiB - 5, 10 * MiB], // into the short last block, length past the end
    [size - 1, 100], // the last byte
    [size, 10], // at the end: nothing
    [MiB + 5, undefined], // from an offset to the end
    [0, undefined], // everything
  ]
  for (const env of [{}, { LOAM_SHORT_CIRCUIT: '0' }]) {
    await Promise.all(
      ranges.map(async ([offset, length]) => {
        const args = ['fs', 'cat', '/ranges', '--offset', String(offset), ...(length !== undefined ? ['--length', String(length)] : [])]
        const r = await c.loam(args, { env })
        const want = data.subarray(offset, length !== undefined ? offset + length : undefined)
        t.is(r.code, 0, `${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`)
        t.is(r.stdout.length, want.length, `${args.join(' ')} ${JSON.stringify(env)}: length`)
        t.true(r.stdout.equals(want), `${args.join(' ')} ${JSON.stringify(env)}: bytes`)
      }),
    )
  }
})

test.serial('replication-3 blocks sit on 3 distinct nodes over 2 racks, and the replicas are on those disks', async (t) => {
  const data = pattern(5 * MiB + 77, 13)
  const put = await c.loam(['fs', 'put', '-', '/placed/f', '--block-size', '1MiB', '--replication', '3'], { input: data })
  t.is(put.code, 0, put.stderr)
  acknowledged.set('/placed/f', sha256(data))
  const { code, json } = await fsckJson(c, '/placed')
  t.is(code, 0)
  t.true(json.healthy)
  t.is(json.files, 1)
  t.is(json.blocks.length, 6)
  for (const b of json.blocks) {
    t.is(b.path, '/placed/f')
    t.is(b.expected, 3)
    t.is(b.state, 'HEALTHY')
    const nodes = b.replicas.map((r) => r.node)
    t.is(new Set(nodes).size, 3, `block ${b.id} on ${nodes.join(',')}`)
    t.is(new Set(b.replicas.map((r) => r.rack)).size, 2, `block ${b.id} racks ${b.replicas.map((r) => r.rack).join(',')}`)
    for (const r of b.replicas) {
      t.is(r.rack, rackOf(r.node), `fsck's rack for ${r.node}`)
      t.is((await stat(replicaDataPath(nodeDir(r.node), b.id))).size, b.length, `blk_${b.id} on ${r.node}'s disk`)
    }
  }

  // Every block of every file so far: replicas on distinct nodes, spread over both racks when there are two or more,
  // and each datanode's block count in the report agrees with the replicas fsck lists on it.
  const all = await fsckJson(c, '/')
  t.is(all.code, 0)
  const perNode = new Map<string, number>()
  for (const b of all.json.blocks) {
    const nodes = b.replicas.map((r) => r.node)
    t.is(new Set(nodes).size, nodes.length, `${b.path} block ${b.id}: no two replicas on one node`)
    t.is(nodes.length, b.expected)
    if (nodes.length >= 2) t.is(new Set(b.replicas.map((r) => r.rack)).size, 2, `${b.path} block ${b.id} spans 2 racks`)
    for (const n of nodes) perNode.set(n, (perNode.get(n) ?? 0) + 1)
  }
  const report = await reportJson(c)
  for (const d of report.datanodes) t.is(d.blocks, perNode.get(d.id) ?? 0, `${d.id}: blocks in report vs replicas in fsck`)
})

test.serial('8 concurrent writers to different files all read back correct', async (t) => {
  const files = Array.from({ length: 8 }, (_, i) => ({ remote: `/concurrent/cli-${i}`, data: pattern(MiB + i * 100_003, 1000 + i) }))
  const puts = await Promise.all(files.map((f, i) => c.loam(['fs', 'put', '-', f.remote, '--block-size', '1MiB', '--replication', String(i % 2 === 0 ? 3 : 2)], { input: f.data })))
  puts.forEach((p, i) => t.is(p.code, 0, `${files[i]!.remote}: ${p.stderr}`))
  for (const f of files) acknowledged.set(f.remote, sha256(f.data))

  // And 8 writers at once in one client process, their writes interleaved.
  const client = c.client()
  const lib = Array.from({ length: 8 }, (_, i) => ({ remote: `/concurrent/lib-${i}`, data: pattern(700 * KiB + i * 4099, 2000 + i) }))
  await Promise.all(
    lib.map(async (f) => {
      const w = await client.create(f.remote, { replication: 3, blockSizeBytes: 256 * KiB })
      for (let off = 0; off < f.data.length; off += 50_000) await w.write(f.data.subarray(off, off + 50_000))
      await w.close()
    }),
  )
  for (const f of lib) acknowledged.set(f.remote, sha256(f.data))

  for (const f of [...files, ...lib]) {
    const r = await c.loam(['fs', 'cat', f.remote])
    t.is(r.code, 0, r.stderr)
    t.is(sha256(r.stdout), sha256(f.data), f.remote)
  }
  const fsck = await fsckJson(c, '/concurrent')
  t.is(fsck.code, 0)
  t.true(fsck.json.healthy)
  t.is(fsck.json.files, 16)
})

test.serial('a second writer on a file open for writing gets a lease error; the first finishes it intact', async (t) => {
  const a = c.client()
  const b = c.client()
  const first = pattern(300 * KiB + 11, 31)
  const second = pattern(900 * KiB, 32)
  const w = await a.create('/lease/one', { replication: 3, blockSizeBytes: MiB })
  await w.write(first)

  const refused = await t.throwsAsync(b.create('/lease/one', { overwrite: true }), { instanceOf: LoamError })
  t.is(refused?.code, 'lease', refused?.message)
  const exists = await t.throwsAsync(b.create('/lease/one'), { instanceOf: LoamError })
  t.is(exists?.code, 'exists', exists?.message)

  await w.write(second)
  const st = await w.close()
  t.is(st.lengthBytes, first.length + second.length)
  const want = Buffer.concat([first, second])
  const cat = await c.loam(['fs', 'cat', '/lease/one'])
  t.is(cat.code, 0, cat.stderr)
  t.true(cat.stdout.equals(want))

  // With the lease released, the other client may replace the file.
  const replacement = pattern(10_000, 33)
  const w2 = await b.create('/lease/one', { overwrite: true })
  await w2.write(replacement)
  await w2.close()
  const again = await c.loam(['fs', 'cat', '/lease/one'])
  t.true(again.stdout.equals(replacement))
  acknowledged.set('/lease/one', sha256(replacement))
})

/** Puts a 2-block file and returns its fsck blocks; the second block is 512 KiB. */
async function putForCorruption(t: ExecutionContext, remote: string, seed: number): Promise<{ data: Buffer; blocks: FsckJson['blocks'] }> {
  const data = pattern(MiB + 512 * KiB, seed)
  const put = await c.loam(['fs', 'put', '-', remote, '--block-size', '1MiB', '--replication', '3'], { input: data })
  t.is(put.code, 0, put.stderr)
  const { json } = await fsckJson(c, path.posix.dirname(remote))
  t.true(json.healthy)
  t.is(json.blocks.length, 2)
  t.is(json.blocks[1]!.replicas.length, 3)
  acknowledged.set(remote, sha256(data))
  return { data, blocks: json.blocks }
}

async function corrupt(t: ExecutionContext, nodeId: string, blockId: number, offset: number): Promise<void> {
  const file = replicaDataPath(nodeDir(nodeId), blockId)
  const flipped = await flipByte(file, offset)
  t.not(flipped.before, flipped.after)
  // The .meta file is untouched: only the data disagrees with its checksums.
  t.true((await readdir(path.dirname(file))).includes(`blk_${blockId}.meta`))
}

/** Blocks whose replicas the corruption tests damaged, for the repair test: the nodes, and the bytes the block holds. */
const damaged: Array<{ remote: string; blockId: number; nodes: string[]; bytes: Buffer }> = []

for (const mode of ['short-circuit', 'remote'] as const) {
  test.serial(`a byte flipped in a replica on disk is caught on a ${mode} read, the read returns the right bytes, and the namenode is told`, async (t) => {
    const remote = `/corrupt/${mode}/f`
    const { data, blocks } = await putForCorruption(t, remote, mode === 'remote' ? 41 : 42)
    const bad = blocks[1]!
    // The reader is told it runs on the victim's node, so the victim is the first (nearest) replica it tries;
    // ties between the others are random, so in the remote case a second replica is corrupted too and only one is good.
    const victim = bad.replicas[0]!.node
    const victims = mode === 'remote' ? [victim, bad.replicas[1]!.node] : [victim]
    for (const v of victims) await corrupt(t, v, bad.id, 200_000)
    damaged.push({ remote, blockId: bad.id, nodes: victims, bytes: data.subarray(MiB) })
    const env = { LOAM_NODE_ID: victim, ...(mode === 'remote' ? { LOAM_SHORT_CIRCUIT: '0' } : {}) }

    const cat = await c.loam(['fs', 'cat', remote], { env })
    t.is(cat.code, 0, cat.stderr)
    t.is(cat.stdout.length, data.length)
    t.true(cat.stdout.equals(data), 'the read returns the original bytes')

    // The reader reported the bad replica: fsck shows the block CORRUPT, or already UNDER_REPLICATED once the
    // replication monitor has dropped the corrupt copy to make room for a good one. Either way the victim is no
    // longer offered as a replica (a node told to drop a copy is not a copy target for a few heartbeats, so
    // this cannot already be the repaired state); without the report it would be HEALTHY with the victim listed.
    const after = await fsckJson(c, path.posix.dirname(remote))
    t.is(after.code, 1, 'fsck exits 1 when a block is not healthy')
    t.false(after.json.healthy)
    const block = after.json.blocks.find((b) => b.id === bad.id)!
    t.true(block.state === 'CORRUPT' || block.state === 'UNDER_REPLICATED', `block state ${block.state}`)
    t.false(block.replicas.some((r) => r.node === victim), `the corrupt replica on ${victim} is no longer offered: ${JSON.stringify(block)}`)
    if (block.state === 'CORRUPT' && block.corrupt) t.true(block.corrupt.some((r) => r.node === victim), `fsck names ${victim} as corrupt: ${JSON.stringify(block)}`)
    t.is(after.json.blocks.find((b) => b.id === blocks[0]!.id)!.state, 'HEALTHY', 'the untouched block stays healthy')

    // Later readers, wherever they are, still get the right bytes; the last one starts at the other damaged replica,
    // so every damaged replica has been read (and reported) by the end.
    for (const env2 of [{}, { LOAM_SHORT_CIRCUIT: '0', LOAM_NODE_ID: victims[victims.length - 1]! }]) {
      const again = await c.loam(['fs', 'cat', remote], { env: env2 })
      t.is(again.code, 0, again.stderr)
      t.true(again.stdout.equals(data))
    }
  })
}

test.serial('a corrupt replica is replaced from a good one: the block is healthy again, the bytes on the damaged disks right', async (t) => {
  t.is(damaged.length, 2, 'the corruption tests ran')
  const repaired = async (d: (typeof damaged)[number]): Promise<boolean> => {
    const { json } = await fsckJson(c, path.posix.dirname(d.remote))
    const block = json.blocks.find((b) => b.id === d.blockId)
    if (!block || block.state !== 'HEALTHY' || new Set(block.replicas.map((r) => r.node)).size !== 3) return false
    for (const node of d.nodes) {
      const onDisk = await readFile(replicaDataPath(nodeDir(node), d.blockId)).catch(() => undefined)
      if (!onDisk?.equals(d.bytes)) return false
    }
    return true
  }
  try {
    await waitFor(async () => (await Promise.all(damaged.map(repaired))).every(Boolean), 45_000, 'the corrupt replicas to be replaced')
    t.pass()
  } catch (err) {
    const states = await Promise.all(damaged.map(async (d) => (await fsckJson(c, path.posix.dirname(d.remote))).json.blocks.find((b) => b.id === d.blockId)))
    t.fail(`${(err as Error).message}: ${JSON.stringify(states)}`)
  }
})

test.serial('200 MiB round-trips at replication 1 and 3 with the default block size', async (t) => {
  const size = 200 * MiB
  const local = path.join(tmp, 'big.in')
  const sum = await writePatternFile(local, size, 99)
  for (const replication of [1, 3]) {
    const remote = `/big/r${replication}`
    const put = await c.loam(['fs', 'put', local, remote, '--replication', String(replication)])
    t.is(put.code, 0, put.stderr)
    const st = await statJson(remote)
    t.is(st.length, size)
    t.is(st.blockSize, 64 * MiB)
    t.is(st.blocks, 4)
    const out = path.join(tmp, `big-r${replication}.out`)
    const get = await c.loam(['fs', 'get', remote, out])
    t.is(get.code, 0, get.stderr)
    t.is(await sha256File(out), sum, `${remote}: get`)
    await rm(out)
    const cat = await loamHashed(c, ['fs', 'cat', remote], replication === 3 ? { LOAM_SHORT_CIRCUIT: '0' } : {})
    t.is(cat.code, 0, cat.stderr)
    t.is(cat.bytes, size)
    t.is(cat.sha256, sum, `${remote}: cat`)
    const fsck = await blocksOf(t, remote, 4)
    t.is(fsck.code, 0)
    t.deepEqual(fsck.blocks.map((b) => b.length), [64 * MiB, 64 * MiB, 64 * MiB, 8 * MiB])
    for (const b of fsck.blocks) t.is(new Set(b.replicas.map((r) => r.node)).size, replication)
  }
  await rm(local)
  // Not kept for the restart test: reading them back again costs more than it checks.
  const rmBig = await c.loam(['fs', 'rm', '-r', '/big'])
  t.is(rmBig.code, 0, rmBig.stderr)
})

async function waitOutOfSafemode(): Promise<void> {
  await waitFor(async () => {
    const r = await c.loam(['report', '--json'])
    return r.code === 0 && (JSON.parse(r.stdout.toString()) as { safemode: boolean }).safemode === false
  }, 60_000, 'the namenode to leave safe mode by itself')
}

/** Reads back every acknowledged file with the client library (a fresh client: nothing cached from before a restart). */
async function checkAcknowledged(t: ExecutionContext, when: string): Promise<void> {
  const client = c.client()
  const queue = [...acknowledged]
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [remote, sum] = next
      try {
        const hash = createHash('sha256')
        for await (const piece of (await client.open(remote)).read()) hash.update(piece)
        t.is(hash.digest('hex'), sum, `${when}: ${remote} reads back identical`)
      } catch (err) {
        t.fail(`${when}: reading ${remote}: ${(err as Error).message}`)
      }
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
}

test.serial('kill -9 of the namenode between operations loses nothing acknowledged; it leaves safe mode by itself', async (t) => {
  t.true(acknowledged.size > 20, 'the earlier tests left files to check')
  // Round 1: a mix of mutations, the last acknowledged just before the kill.
  const small = pattern(100 * KiB, 51)
  const multi = pattern(2 * MiB + 1, 52)
  const steps: Array<[string[], Buffer | undefined]> = [
    [['fs', 'put', '-', '/kill/small', '--replication', '1'], small],
    [['fs', 'put', '-', '/kill/multi', '--replication', '3', '--block-size', '1MiB'], multi],
    [['fs', 'put', '-', '/kill/empty'], Buffer.alloc(0)],
    [['fs', 'put', '-', '/kill/gone'], pattern(5000, 53)],
    [['fs', 'mkdir', '-p', '/kill/dir/sub'], undefined],
    [['fs', 'mv', '/kill/small', '/kill/dir/small-moved'], undefined],
    [['fs', 'rm', '/kill/gone'], undefined],
    [['fs', 'setrep', '2', '/kill/multi'], undefined],
    [['fs', 'chmod', '600', '/kill/empty'], undefined],
  ]
  for (const [args, input] of steps) {
    const r = await c.loam(args, { input })
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  }
  acknowledged.set('/kill/dir/small-moved', sha256(small))
  acknowledged.set('/kill/multi', sha256(multi))
  acknowledged.set('/kill/empty', sha256(Buffer.alloc(0)))
  const oldPid = c.record.namenode.pid
  await c.killNamenode()
  t.false(alive(oldPid), 'the namenode was killed')
  await c.restartNamenode()
  t.true(alive(c.record.namenode.pid))
  await waitOutOfSafemode()

  await checkAcknowledged(t, 'after the first restart')
  const moved = await c.loam(['fs', 'stat', '/kill/small'])
  t.is(moved.code, 1, 'the rename is kept: the old name is gone')
  t.is(moved.stderr, 'loam: /kill/small: no such file or directory\n')
  const gone = await c.loam(['fs', 'stat', '/kill/gone'])
  t.is(gone.code, 1, 'the delete is kept')
  t.is((await statJson('/kill/dir/sub')).type, 'directory')
  t.is((await statJson('/kill/multi')).replication, 2)
  t.is((await statJson('/kill/empty')).mode, '0600')

  // Round 2: kill right after one more put is acknowledged.
  const last = pattern(1_500_000, 54)
  const put = await c.loam(['fs', 'put', '-', '/kill/last', '--block-size', '1MiB'], { input: last })
  t.is(put.code, 0, put.stderr)
  acknowledged.set('/kill/last', sha256(last))
  await c.killNamenode()
  await c.restartNamenode()
  await waitOutOfSafemode()
  await checkAcknowledged(t, 'after the second restart')
  const report = await reportJson(c)
  t.is(report.datanodes.filter((d) => d.state === 'live').length, 3)

  // And the restarted namenode takes new writes.
  const fresh = await c.loam(['fs', 'put', '-', '/kill/after'], { input: Buffer.from('after\n') })
  t.is(fresh.code, 0, fresh.stderr)
  t.is((await c.loam(['fs', 'cat', '/kill/after'])).stdout.toString(), 'after\n')
})
