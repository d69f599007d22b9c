// fuse: the cluster filesystem through a real FUSE mount (`loam mount`, served
// by its own process) beside a directory on the local disk, in the same run:
// sequential write and read, 4 KiB random reads and fsynced random writes
// (fio), create, stat and unlink of many empty files, and `ls -l` of a large
// directory. Every workload runs in a child process with ordinary tools (python3,
// fio, ls), as a user's program would; this process only times and reports.
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import type { LoamClient } from '../src/client/client.js'
import { startCluster } from '../test/helpers/cluster.js'
import { mountCluster } from '../test/helpers/mount.js'
import { fixed, log, mbPerS, noteLoad, table, thousands, writeResults, type Cleanup } from './lib.js'
import {
  CPU_HEADERS, FIO_BLOCK_BYTES, FIO_FILE_BYTES, childRun, cpuCells, dropCaches, settleMemory, fio as fioJob, measurer, mountGroups, py as pyTool, recordSide, requireTools, sync, workDir,
  type Measured, type SideFigures, type Where,
} from './tools.js'

export interface FuseOptions {
  /** Sequential write and read. */
  sizeBytes: number
  /** Files created, stat'ed and unlinked, and entries in the listed directory. */
  files: number
  /** Each fio job runs this long. */
  fioSeconds: number
}

/** Longer than the kernel's entry and attribute timeouts (1 s) and the mount's own attribute cache (FUSE_ATTR_CACHE_MS). */
const STAT_AFTER_CREATE_MS = 2500
/** The local disk swings from one write to the next (see dfsio): its sequential write is the median of this many. */
const LOCAL_WRITE_RUNS = 3
/** Files the client library creates at once when filling the directory `ls -l` lists. */
const FILL_CONCURRENCY = 32
/** What the fuse benchmark runs, and the package each comes in. */
const TOOLS = [['fio', 'fio'], ['python3', 'python3'], ['ls', 'coreutils'], ['fusermount', 'fuse']] as const

type Unit = 'MB/s' | 'IOPS' | 'files/s' | 's'

interface Target {
  /** For a ratio target, the mount's figure over the local one; else the mount's own figure. */
  kind: 'ratio' | 'min' | 'max'
  value: number
}

interface Workload extends SideFigures<Record<string, number>> {
  key: string
  name: string
  unit: Unit
  target?: Target
}

const WORKLOADS: Array<Omit<Workload, 'detail'>> = [
  { key: 'seqWrite', name: 'sequential write + fsync', unit: 'MB/s', target: { kind: 'ratio', value: 0.3 } },
  { key: 'seqRead', name: 'sequential read', unit: 'MB/s', target: { kind: 'ratio', value: 0.4 } },
  { key: 'randRead', name: '4 KiB random read', unit: 'IOPS' },
  { key: 'randWrite', name: '4 KiB random write, fsync each', unit: 'IOPS', target: { kind: 'min', value: 500 } },
  { key: 'create', name: 'create (empty files)', unit: 'files/s', target: { kind: 'min', value: 1000 } },
  { key: 'stat', name: 'stat', unit: 'files/s', target: { kind: 'min', value: 10_000 } },
  { key: 'unlink', name: 'unlink', unit: 'files/s' },
  { key: 'lsL', name: 'ls -l', unit: 's', target: { kind: 'max', value: 2 } },
]

// One small program for the sequential and per-file workloads: it times itself
// (from the first open to the last close, fsync included) and prints JSON.
const TOOL = String.raw`
import json, os, sys, time

MIB = 1 << 20

def out(seconds, **extra):
    print(json.dumps(dict(seconds=seconds, **extra)))

def write(path, size):
    # Random bytes, each MiB stamped with its index, so no two MiB are alike.
    buf = bytearray(os.urandom(MIB))
    view = memoryview(buf)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done, i = 0, 0
    while done < size:
        buf[0:8] = i.to_bytes(8, 'little')
        n = os.write(fd, view[:min(MIB, size - done)])
        done += n
        i += 1
    os.fsync(fd)
    os.close(fd)
    out(time.perf_counter() - t0, bytes=done)

def read(path, size):
    buf = bytearray(MIB)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    done = 0
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            break
        done += n
    os.close(fd)
    seconds = time.perf_counter() - t0
    if done != size:
        sys.exit(f'{path}: read {done} bytes, expected {size}')
    out(seconds, bytes=done)

def names(d, n):
    return [os.path.join(d, 'f%07d' % i) for i in range(n)]

def create(d, n):
    paths = names(d, n)
    t0 = time.perf_counter()
    for p in paths:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    out(time.perf_counter() - t0, files=n)

def stat(d, n):
    paths = names(d, n)
    t0 = time.perf_counter()
    for p in paths:
        st = os.stat(p)
        if st.st_size != 0:
            sys.exit(f'{p}: size {st.st_size}, expected 0')
    out(time.perf_counter() - t0, files=n)

def unlink(d, n):
    paths = names(d, n)
    t0 = time.perf_counter()
    for p in paths:
        os.unlink(p)
    out(time.perf_counter() - t0, files=n)

cmd, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
dict(write=write, read=read, create=create, stat=stat, unlink=unlink)[cmd](target, count)
`

export async function runFuse(cleanup: Cleanup, opts: FuseOptions): Promise<void> {
  const startedAt = new Date()
  requireTools('fuse', TOOLS)
  const loadAtStart = noteLoad('at the start')
  const { tool, localDir } = await workDir(cleanup, 'fuse', TOOL)
  const py = (cmd: string, target: string, count: number): Promise<{ seconds: number }> => pyTool(tool, [cmd, target, String(count)])
  const cold = await dropCaches()
  if (!cold) log('fuse: cannot drop the page cache (needs root): reads are from the page cache, not cold')

  log('fuse: starting a cluster (namenode + 3 datanodes in 2 racks, replication 3, block size 64 MiB, --log-level warn)')
  const cluster = await startCluster(cleanup, { nodes: 3, racks: 2, replication: 3, logLevel: 'warn' })
  // The mount runs on dn1's machine, as it would on a cluster node: first replicas land there, reads are short-circuit.
  const nodeId = cluster.record.nodes[0]?.id ?? ''
  const mount = await mountCluster(cleanup, cluster, { nodeId })
  const client = cluster.client({ nodeId })
  await client.mkdirs('/fuse')
  const roots: Record<Where, { dir: string; ns?: string }> = { local: { dir: localDir }, mount: { dir: path.join(mount.dir, 'fuse'), ns: '/fuse' } }
  log(`fuse: mount ${mount.dir} (node ${nodeId}), local ${localDir}`)

  const workloads = new Map(WORKLOADS.map((w) => [w.key, { ...w, detail: {} } as Workload]))
  const mountPid = mount.child.pid ?? 0
  const record = (key: string, where: Where, value: number, detail: Record<string, number>, m: Measured<unknown>): void => {
    const w = workloads.get(key)!
    recordSide(w, where, value, detail, m)
    log(`  ${where} ${w.name}: ${formatValue(value, w.unit)} ${w.unit}`)
  }
  // Runs a measurement with the CPU meter on; the mount's figures carry its CPU and I/O.
  const measured = measurer(mountGroups(cluster, mountPid), mountPid)
  const tryDrop = async (): Promise<void> => {
    if (cold) await dropCaches()
  }

  for (const where of ['local', 'mount'] as const) {
    const { dir } = roots[where]
    log(`fuse: ${where}: sequential write and read of ${opts.sizeBytes} bytes`)
    const seq = path.join(dir, 'seq.bin')
    const runs: Array<Measured<{ seconds: number }>> = []
    for (let i = 0; i < (where === 'local' ? LOCAL_WRITE_RUNS : 1); i++) {
      // From settled memory, as dfsio's writes (see settleMemory).
      if (!(await settleMemory())) await sync()
      runs.push(await measured(() => py('write', seq, opts.sizeBytes)))
    }
    if (runs.length > 1) log(`  local write runs: ${runs.map((x) => fixed(mbPerS(opts.sizeBytes, x.value.seconds * 1000))).join(', ')} MB/s; the median is the baseline`)
    let r = runs.sort((a, b) => a.value.seconds - b.value.seconds)[Math.floor(runs.length / 2)]!
    record('seqWrite', where, mbPerS(opts.sizeBytes, r.value.seconds * 1000), { bytes: opts.sizeBytes, seconds: r.value.seconds, runs: runs.length }, r)
    await tryDrop()
    r = await measured(() => py('read', seq, opts.sizeBytes))
    record('seqRead', where, mbPerS(opts.sizeBytes, r.value.seconds * 1000), { bytes: opts.sizeBytes, seconds: r.value.seconds, cold: cold ? 1 : 0 }, r)
    await rm(seq)
  }

  for (const where of ['local', 'mount'] as const) {
    const { dir } = roots[where]
    log(`fuse: ${where}: fio, 4 KiB at random in a ${FIO_FILE_BYTES / 2 ** 20} MiB file, ${opts.fioSeconds} s each`)
    const file = path.join(dir, 'fio.bin')
    await py('write', file, FIO_FILE_BYTES)
    await tryDrop()
    let r = await measured(() => fio(file, 'randread', opts.fioSeconds))
    record('randRead', where, r.value.iops, r.value.detail, r)
    await tryDrop()
    r = await measured(() => fio(file, 'randwrite', opts.fioSeconds))
    record('randWrite', where, r.value.iops, r.value.detail, r)
    await rm(file)
  }

  for (const where of ['local', 'mount'] as const) {
    const { dir } = roots[where]
    log(`fuse: ${where}: create, stat and unlink of ${opts.files} empty files, one at a time`)
    const files = path.join(dir, 'files')
    await mkdir(files)
    let r = await measured(() => py('create', files, opts.files))
    record('create', where, opts.files / r.value.seconds, { files: opts.files, seconds: r.value.seconds }, r)
    // Past every cache of what create just made: each stat asks the mount, which asks the namenode.
    await sleep(STAT_AFTER_CREATE_MS)
    r = await measured(() => py('stat', files, opts.files))
    record('stat', where, opts.files / r.value.seconds, { files: opts.files, seconds: r.value.seconds }, r)
    r = await measured(() => py('unlink', files, opts.files))
    record('unlink', where, opts.files / r.value.seconds, { files: opts.files, seconds: r.value.seconds }, r)
    await rm(files, { recursive: true })
  }

  for (const where of ['local', 'mount'] as const) {
    const { dir, ns } = roots[where]
    log(`fuse: ${where}: ls -l of ${opts.files} entries${where === 'mount' ? ', made through the client library so the mount has never seen them' : ''}`)
    const listed = path.join(dir, 'listed')
    if (ns) await fillThroughClient(client, `${ns}/listed`, opts.files)
    else {
      await mkdir(listed)
      await py('create', listed, opts.files)
    }
    await tryDrop()
    const r = await measured(() => lsLong(listed, opts.files))
    record('lsL', where, r.value, { entries: opts.files, seconds: r.value, cold: cold ? 1 : 0 }, r)
    if (ns) await client.delete(`${ns}/listed`, true)
    else await rm(listed, { recursive: true })
  }

  const results = [...workloads.values()]
  const rows = results.map((w) => {
    const ratio = w.mount !== undefined && w.local !== undefined ? ratioOf(w) : NaN
    return [w.name, w.unit, formatValue(w.mount, w.unit), formatValue(w.local, w.unit), fixed(ratio, 2), targetText(w.target, w.unit), metText(w), ...cpuCells(w.cpu)]
  })
  const out = table(['workload', 'unit', 'mount', 'local', 'x local', 'target', 'met?', ...CPU_HEADERS], rows, [false, false, true, true, true, true, false, true, true, true])
  const read = workloads.get('seqRead')!
  const amplification = read.mountIo ? read.mountIo.rchar / opts.sizeBytes : NaN
  process.stdout.write(
    `\nfuse: a FUSE mount (loam mount --node ${nodeId}) of 3 datanodes at replication 3, block size 64 MiB, beside ${localDir} on the local disk. ` +
      `Sequential: ${fixed(opts.sizeBytes / 2 ** 20, 0)} MiB in 1 MiB calls, one fsync at the end (local: median of ${LOCAL_WRITE_RUNS} writes), MB = 10^6 bytes. ` +
      `fio: psync, iodepth 1, one job, ${opts.fioSeconds} s on a ${FIO_FILE_BYTES / 2 ** 20} MiB file. Files: ${opts.files} empty files, one at a time; stat ${STAT_AFTER_CREATE_MS / 1000} s after create, past every attribute cache. ` +
      `${cold ? 'Page cache dropped before every read and before ls -l.' : 'Page cache NOT dropped (not root): reads are warm.'} ` +
      `x local = mount / local (for ls -l, local seconds / mount seconds): below 1 is slower. ` +
      `cpu = cores busy on average during the mount's run (100% = one core).\n\n${out}\n` +
      `\nsequential read: the mount process read ${fixed(amplification, 1)} bytes (files and sockets) for each byte it delivered\n`,
  )
  const files = await writeResults('fuse', startedAt, {
    loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') },
    options: { ...opts, fioFileBytes: FIO_FILE_BYTES, fioBlockBytes: FIO_BLOCK_BYTES, coldReads: cold, nodeId, statAfterCreateMs: STAT_AFTER_CREATE_MS },
    results: results.map((w) => ({ ...w, ratio: w.mount !== undefined && w.local !== undefined ? ratioOf(w) : null, met: met(w) ?? null })),
  })
  process.stdout.write(`\nwrote ${files.join(' and ')}\n`)
}

/** For throughput, the mount's figure over the local one; for a duration (ls -l), the local time over the mount's, so below 1 is slower either way. */
function ratioOf(w: Workload): number {
  return w.unit === 's' ? w.local! / w.mount! : w.mount! / w.local!
}

function met(w: Workload): boolean | undefined {
  const t = w.target
  if (!t || w.mount === undefined) return undefined
  if (t.kind === 'ratio') return w.local === undefined ? undefined : ratioOf(w) >= t.value
  return t.kind === 'min' ? w.mount >= t.value : w.mount < t.value
}

function metText(w: Workload): string {
  const m = met(w)
  return m === undefined ? '-' : m ? 'yes' : 'NO'
}

function targetText(t: Target | undefined, unit: Unit): string {
  if (!t) return '-'
  if (t.kind === 'ratio') return `>= ${t.value} x local`
  return `${t.kind === 'min' ? '>=' : '<'} ${formatValue(t.value, unit)} ${unit}`
}

function formatValue(v: number | undefined, unit: Unit): string {
  if (v === undefined) return '-'
  if (unit === 's') return fixed(v, 2)
  if (unit === 'MB/s') return fixed(v)
  return thousands(v)
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** One fio job (4 KiB at random offsets, one at a time, for a bounded time): its IOPS, and its latencies in µs. */
async function fio(file: string, rw: 'randread' | 'randwrite', seconds: number): Promise<{ iops: number; detail: Record<string, number> }> {
  const job = await fioJob(file, rw, seconds)
  const side = rw === 'randread' ? job.read : job.write
  const lat = side.clat_ns ?? side.lat_ns
  const detail: Record<string, number> = { ops: side.io_bytes / FIO_BLOCK_BYTES, seconds: side.runtime / 1000, meanLatencyUs: (lat?.mean ?? NaN) / 1000 }
  const p99 = lat?.percentile?.['99.000000']
  if (p99 !== undefined) detail.p99LatencyUs = p99 / 1000
  const syncLat = job.sync?.lat_ns
  if (rw === 'randwrite' && syncLat) {
    detail.fsyncMeanUs = syncLat.mean / 1000
    const s99 = syncLat.percentile?.['99.000000']
    if (s99 !== undefined) detail.fsyncP99Us = s99 / 1000
  }
  return { iops: side.iops, detail }
}

/** `ls -l` in a child process; returns its seconds, and checks it listed every entry. */
async function lsLong(dir: string, entries: number): Promise<number> {
  const t0 = performance.now()
  const { stdout } = await childRun('ls', ['-l', dir], `ls -l ${dir}`)
  const seconds = (performance.now() - t0) / 1000
  // `total N` and then one line an entry.
  const lines = stdout.split('\n').filter((l) => l !== '').length - 1
  if (lines !== entries) throw new Error(`ls -l ${dir}: listed ${lines} entries, expected ${entries}`)
  return seconds
}

/** Makes a directory of empty files through the client library, never through the mount. */
async function fillThroughClient(client: LoamClient, dir: string, files: number): Promise<void> {
  await client.mkdirs(dir)
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < files; i = next++) {
      const w = await client.create(`${dir}/f${String(i).padStart(7, '0')}`)
      await w.close()
    }
  }
  await Promise.all(Array.from({ length: Math.min(FILL_CONCURRENCY, files) }, worker))
}
