// dfsio: sequential write and read throughput of one large file through the
// client library, at replication 1 and 3, beside a plain local-disk write and
// read of the same size on the same filesystem, in the same run.
//
// Every read comes right after its write, as in the local baseline: the local
// file's bytes are in the page cache; a datanode's O_DIRECT writes leave none
// there, so its reads then come from disk. Reads from disk are compared after
// dropping the page cache (cold).
//
// Every write, local or cluster, starts from settled memory (settleMemory in
// tools.ts). The local write into pages just freed is still shown (info),
// beside a local O_DIRECT write: the device without the page cache.
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { LoamClient } from '../src/client/client.js'
import { DirectIo } from '../src/datanode/direct-io.js'
import { loadSecurity, useSecurity } from '../src/rpc/security.js'
import { startCluster, type TestCluster } from '../test/helpers/cluster.js'
import { dropCaches, settleMemory } from './tools.js'
import { CpuMeter, fixed, formatCpu, log, mbPerS, noteLoad, Pattern, PIECE_BYTES, table, targetTable, Verifier, writeResults, type Cleanup, type CpuGroups, type Target } from './lib.js'

export interface DfsioOptions {
  sizeBytes: number
  blockSizeBytes: number
  replications: number[]
  verify: boolean
}

const LOCAL_WRITE_RUNS = 3

interface Measurement {
  name: string
  op: 'write' | 'read'
  /** 0 for the local disk. */
  replication: number
  /** Cluster connections encrypted (the default) or --insecure; true for the local disk. */
  encrypted: boolean
  /** local-disk: a plain buffered write or read, the baseline; local-direct: an O_DIRECT write. */
  path: 'local-disk' | 'local-direct' | 'pipeline' | 'short-circuit' | 'tcp'
  /**
   * Reads: 'page' right after the write (from the page cache where the write left its bytes there; a datanode's
   * O_DIRECT writes do not), 'cold' after dropping the page cache (disk speed).
   * Writes: 'settled' from settled memory (see the top), 'recycled' into pages freed just before.
   */
  cache: 'page' | 'cold' | 'settled' | 'recycled'
  bytes: number
  ms: number
  mbPerS: number
  /** To the local-disk figure of the same op. */
  ratio: number
  /** Cores busy on average: this process (the client), the namenode, all datanodes. */
  cpu: Record<string, number>
}

const TARGET_WRITE_R3 = 0.3
const TARGET_READ = 0.5

export async function runDfsio(cleanup: Cleanup, opts: DfsioOptions): Promise<void> {
  const startedAt = new Date()
  const loadAtStart = noteLoad('at the start')
  const pattern = new Pattern()
  const results: Measurement[] = []
  const add = (m: Omit<Measurement, 'mbPerS' | 'ratio'>): Measurement => {
    const local = results.find((r) => r.path === 'local-disk' && r.op === m.op && r.cache === (m.cache === 'recycled' ? 'settled' : m.cache))
    const rate = mbPerS(m.bytes, m.ms)
    const full: Measurement = { ...m, mbPerS: rate, ratio: local ? rate / local.mbPerS : 1 }
    results.push(full)
    log(`  ${full.name}: ${fixed(full.mbPerS)} MB/s in ${fixed(full.ms / 1000, 2)} s`)
    return full
  }

  // The baseline first, with the machine to itself: same filesystem as the cluster (os.tmpdir()).
  const localDir = await mkdtemp(path.join(os.tmpdir(), 'loam-bench-local-'))
  cleanup.teardown(() => rm(localDir, { recursive: true, force: true }))
  log(`dfsio: ${opts.sizeBytes} bytes, local disk baseline in ${localDir}`)
  const file = path.join(localDir, 'dfsio.bin')
  // The disk here swings by 4x from one write to the next: the baseline is the median of three.
  if (!(await dropCaches())) log('dfsio: cannot drop the page cache (needs root): writes start from whatever memory is free, and cold-cache reads are left out')
  let cpu = new CpuMeter({})
  const writes: number[] = []
  for (let i = 0; i < LOCAL_WRITE_RUNS; i++) {
    await rm(file, { force: true })
    await settleMemory()
    writes.push(await localWrite(file, opts.sizeBytes, pattern))
  }
  let ms = writes.sort((a, b) => a - b)[Math.floor(LOCAL_WRITE_RUNS / 2)]!
  log(`  local disk write runs: ${writes.map((w) => fixed(mbPerS(opts.sizeBytes, w))).join(', ')} MB/s; the median is the baseline`)
  add({ name: 'local disk write (median of 3)', op: 'write', replication: 0, encrypted: true, path: 'local-disk', cache: 'settled', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
  await rm(file, { force: true })
  cpu = new CpuMeter({})
  ms = await localWrite(file, opts.sizeBytes, pattern)
  add({ name: 'local disk write into pages just freed (info)', op: 'write', replication: 0, encrypted: true, path: 'local-disk', cache: 'recycled', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
  cpu = new CpuMeter({})
  ms = await localRead(file, opts.sizeBytes, pattern, opts.verify)
  add({ name: 'local disk read (page cache)', op: 'read', replication: 0, encrypted: true, path: 'local-disk', cache: 'page', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
  const cold = await dropCaches()
  if (cold) {
    cpu = new CpuMeter({})
    ms = await localRead(file, opts.sizeBytes, pattern, opts.verify)
    add({ name: 'local disk read (cold cache)', op: 'read', replication: 0, encrypted: true, path: 'local-disk', cache: 'cold', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
  }
  await rm(file, { force: true })
  await settleMemory()
  cpu = new CpuMeter({})
  ms = await localDirectWrite(file, opts.sizeBytes, pattern)
  add({ name: 'local disk write, O_DIRECT (info)', op: 'write', replication: 0, encrypted: true, path: 'local-direct', cache: 'settled', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
  await rm(file, { force: true })

  // Once encrypted (the default) and once --insecure, in the same run: what encryption costs.
  for (const encrypted of [true, false]) {
    const mode = encrypted ? 'encrypted' : '--insecure'
    log(`dfsio: starting a cluster (namenode + 3 datanodes in 2 racks, --log-level warn, ${mode})`)
    const cluster = await startCluster(cleanup, { nodes: 3, racks: 2, logLevel: 'warn', insecure: !encrypted })
    // This process's connections must match the cluster's.
    useSecurity(loadSecurity({ secretFile: cluster.record.secretFile, insecure: !encrypted }))
    const groups: CpuGroups = { namenode: [cluster.record.namenode.pid], datanodes: cluster.record.nodes.map((n) => n.pid) }
    // The client runs on dn1's machine, as a TestDFSIO map task would: first replicas land on dn1.
    const nodeId = cluster.record.nodes[0]?.id ?? ''
    const shortCircuit = cluster.client({ nodeId })
    const tcp = cluster.client({ nodeId, shortCircuit: false })
    await shortCircuit.mkdirs('/dfsio', { parents: true })

    for (const replication of opts.replications) {
      const p = `/dfsio/r${replication}.bin`
      await settleMemory()
      cpu = new CpuMeter(groups)
      ms = await clusterWrite(shortCircuit, p, opts, replication, pattern)
      add({ name: `cluster write, replication ${replication}, ${mode}`, op: 'write', replication, encrypted, path: 'pipeline', cache: 'settled', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
      await checkReplicas(cluster, p, replication)
      cpu = new CpuMeter(groups)
      ms = await clusterRead(shortCircuit, p, opts, pattern)
      add({ name: `cluster read, replication ${replication}, short-circuit (right after the write), ${mode}`, op: 'read', replication, encrypted, path: 'short-circuit', cache: 'page', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
      if (cold && (await dropCaches())) {
        cpu = new CpuMeter(groups)
        ms = await clusterRead(shortCircuit, p, opts, pattern)
        add({ name: `cluster read, replication ${replication}, short-circuit (cold cache), ${mode}`, op: 'read', replication, encrypted, path: 'short-circuit', cache: 'cold', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
      }
      cpu = new CpuMeter(groups)
      ms = await clusterRead(tcp, p, opts, pattern)
      add({ name: `cluster read, replication ${replication}, TCP (right after the write), ${mode}`, op: 'read', replication, encrypted, path: 'tcp', cache: 'page', bytes: opts.sizeBytes, ms, cpu: cpu.stop() })
      await shortCircuit.delete(p)
    }
    await cluster.stop()
  }

  const targets: Target[] = []
  const get = (replication: number, op: string, via: string, cache: Measurement['cache'] = 'page'): Measurement | undefined =>
    results.find((r) => r.replication === replication && r.op === op && r.path === via && r.cache === cache && r.encrypted)
  const target = (m: Measurement | undefined, want: number, what: string, info = false): void => {
    if (m) targets.push({ what, want: `>= ${want.toFixed(2)} x local`, got: `${m.ratio.toFixed(2)} x`, met: m.ratio >= want, info })
  }
  const r3 = get(3, 'write', 'pipeline', 'settled')
  target(r3, TARGET_WRITE_R3, 'write, replication 3')
  // The same write against the device alone: three replicas' bytes all go to this one disk.
  const direct = results.find((r) => r.path === 'local-direct')
  if (r3 && direct) {
    const ratio = r3.mbPerS / direct.mbPerS
    targets.push({ what: 'write, replication 3, against the local O_DIRECT write', want: `>= ${TARGET_WRITE_R3.toFixed(2)} x`, got: `${ratio.toFixed(2)} x`, met: ratio >= TARGET_WRITE_R3, info: true })
  }
  // A disk read is judged from disk (cold cache); from the page cache a read is bounded by checksumming every byte on one core.
  for (const r of opts.replications) target(get(r, 'read', 'short-circuit', 'cold'), TARGET_READ, `read, replication ${r} (short-circuit, the default; cold cache)`)
  for (const r of opts.replications) target(get(r, 'read', 'short-circuit'), TARGET_READ, `read, replication ${r} (short-circuit; right after the write)`, true)
  for (const r of opts.replications) target(get(r, 'read', 'tcp'), TARGET_READ, `read, replication ${r} over TCP (right after the write)`, true)

  const out = table(
    ['dfsio', 'MB/s', 'x local', 'seconds', 'cpu bench', 'cpu nn', 'cpu dns', 'cpu other'],
    results.map((r) => [r.name, fixed(r.mbPerS), r.ratio.toFixed(2), fixed(r.ms / 1000, 2), formatCpu(r.cpu.bench), formatCpu(r.cpu.namenode), formatCpu(r.cpu.datanodes), formatCpu(r.cpu.other)]),
    [false, true, true, true, true, true, true, true],
  )
  process.stdout.write(`\ndfsio: ${opts.sizeBytes / 2 ** 20} MiB, block size ${opts.blockSizeBytes / 2 ** 20} MiB, ${PIECE_BYTES / 2 ** 20} MiB writes and reads, MB = 10^6 bytes; cpu = cores busy on average (100% = one core) in this process (the client), the namenode, all datanodes together, and everything else on the machine\n\n${out}\n\n${targetTable(targets)}\n`)
  const files = await writeResults('dfsio', startedAt, { loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') }, options: opts, results, targets })
  process.stdout.write(`\nwrote ${files.join(' and ')}\n`)
}

/** The device without the page cache: 1 MiB O_DIRECT writes from an aligned buffer, as a datanode writes. */
async function localDirectWrite(file: string, sizeBytes: number, pattern: Pattern): Promise<number> {
  const buf = pattern.buffer()
  const io = new DirectIo(1)
  const t0 = performance.now()
  await writeFile(file, '')
  const fh = await io.open(path.dirname(file), file)
  if (!fh) throw new Error(`${file}: this filesystem refuses O_DIRECT`)
  try {
    for (let i = 0, pos = 0; pos < sizeBytes; i++, pos += PIECE_BYTES) {
      if (!(await io.write(path.dirname(file), fh, [pattern.piece(i, buf)], pos, PIECE_BYTES))) throw new Error(`${file}: direct write at ${pos} refused`)
    }
    await fh.sync()
  } finally {
    await fh.close()
  }
  return performance.now() - t0
}

async function localWrite(file: string, sizeBytes: number, pattern: Pattern): Promise<number> {
  const buf = pattern.buffer()
  const t0 = performance.now()
  const fh = await open(file, 'w')
  try {
    for (let i = 0, pos = 0; pos < sizeBytes; i++, pos += PIECE_BYTES) {
      const n = Math.min(PIECE_BYTES, sizeBytes - pos)
      const { bytesWritten } = await fh.write(pattern.piece(i, buf), 0, n, pos)
      if (bytesWritten !== n) throw new Error(`${file}: short write at ${pos}`)
    }
    await fh.sync()
  } finally {
    await fh.close()
  }
  return performance.now() - t0
}

async function localRead(file: string, sizeBytes: number, pattern: Pattern, verify: boolean): Promise<number> {
  const verifier = new Verifier(pattern, sizeBytes, file)
  const buf = Buffer.allocUnsafe(PIECE_BYTES)
  const t0 = performance.now()
  const fh = await open(file, 'r')
  try {
    let pos = 0
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, PIECE_BYTES, pos)
      if (bytesRead === 0) break
      if (verify) verifier.check(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    if (pos !== sizeBytes) throw new Error(`${file}: read ${pos} bytes, expected ${sizeBytes}`)
  } finally {
    await fh.close()
  }
  if (verify) verifier.finish()
  return performance.now() - t0
}

async function clusterWrite(client: LoamClient, p: string, opts: DfsioOptions, replication: number, pattern: Pattern): Promise<number> {
  const buf = pattern.buffer()
  const t0 = performance.now()
  const w = await client.create(p, { replication, blockSizeBytes: opts.blockSizeBytes, overwrite: true })
  try {
    for (let i = 0, pos = 0; pos < opts.sizeBytes; i++, pos += PIECE_BYTES) {
      // write() copies what it is given before it resolves, so the buffer can be stamped again.
      await w.write(pattern.piece(i, buf).subarray(0, Math.min(PIECE_BYTES, opts.sizeBytes - pos)))
    }
    await w.close()
  } catch (err) {
    w.abort(err as Error)
    throw err
  }
  return performance.now() - t0
}

async function clusterRead(client: LoamClient, p: string, opts: DfsioOptions, pattern: Pattern): Promise<number> {
  const verifier = new Verifier(pattern, opts.sizeBytes, p)
  let bytes = 0
  const t0 = performance.now()
  const reader = await client.open(p)
  for await (const piece of reader.read()) {
    if (opts.verify) verifier.check(piece)
    bytes += piece.length
  }
  const ms = performance.now() - t0
  if (opts.verify) verifier.finish()
  if (bytes !== opts.sizeBytes) throw new Error(`${p}: read ${bytes} bytes, expected ${opts.sizeBytes}`)
  return ms
}

/** A write that reached fewer nodes than asked would flatter the figure: check every block. */
async function checkReplicas(cluster: TestCluster, p: string, replication: number): Promise<void> {
  const c = cluster.client()
  const res = await c.getBlockLocations(p, 0, 0)
  const expectedBlocks = res.status ? Math.ceil(res.status.lengthBytes / res.status.blockSizeBytes) : -1
  if (res.blocks.length !== expectedBlocks) throw new Error(`${p}: ${res.blocks.length} blocks located, expected ${expectedBlocks}`)
  for (const b of res.blocks) {
    const nodes = new Set(b.locations.map((l) => l.id))
    if (nodes.size !== replication) throw new Error(`${p}: block ${b.block?.id} has ${nodes.size} replicas (${[...nodes].join(', ')}), expected ${replication}`)
  }
}
