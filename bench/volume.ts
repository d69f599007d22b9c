// volume: a stateful service's workload on a volume mount (`loam mount --volume
// NAME --node dn1`, the volume attached to dn1, so the first replica of every
// block is on the mount's node) beside the same workload on a directory on the
// local disk, in the same run: SQLite small transactions and point selects
// (python3's sqlite3, its defaults: rollback journal, synchronous=FULL), and
// fio's 4 KiB random writes with an fsync after each. Every workload runs in a
// child process, as the service would; this process only times and reports.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { formatBytes } from '../src/common/units.js'
import { BLOCK_SIZE_DEFAULT_BYTES } from '../src/limits.js'
import { startCluster, type TestCluster } from '../test/helpers/cluster.js'
import { mountCluster } from '../test/helpers/mount.js'
import { fixed, log, noteLoad, table, thousands, writeResults, type Cleanup } from './lib.js'
import {
  CPU_HEADERS, FIO_BLOCK_BYTES, FIO_FILE_BYTES, cpuCells, dropCaches, fio as fioJob, measurer, mountGroups, py, recordSide, requireTools, sync, workDir,
  type FioLat, type Measured, type SideFigures, type Where,
} from './tools.js'

export interface VolumeOptions {
  /** The volume's size (its quota on logical bytes). */
  volumeSizeBytes: number
  /** SQLite write phase: transactions of ROWS_PER_TRANSACTION inserts each. */
  transactions: number
  /** SQLite read phase: point selects by the indexed key. */
  queries: number
  /** Each SQLite phase stops starting transactions or queries after this long and counts those done. */
  sqlSeconds: number
  /** The fio run lasts this long. */
  fioSeconds: number
}

const VOLUME_NAME = 'bench'
const VOLUME_REPLICATION = 3
const ROWS_PER_TRANSACTION = 5
/** Bytes of the random value in every row (its key is 16 hex digits). */
const ROW_VALUE_BYTES = 100
/** A child that takes this much longer than its own bound is hung (on the mount, most likely): it is killed and the run fails. */
const CHILD_GRACE_MS = 300_000
/** What the volume benchmark runs, and the package each comes in. */
const TOOLS = [['fio', 'fio'], ['python3', 'python3'], ['fusermount', 'fuse']] as const

type Unit = 'tx/s' | 'queries/s' | 'IOPS'

/** Latency percentiles in microseconds: p50, p90, p99, p99.9, max, mean. */
type Latency = Record<'p50' | 'p90' | 'p99' | 'p999' | 'max' | 'mean', number>

interface Workload extends SideFigures<Record<string, unknown>> {
  key: string
  name: string
  unit: Unit
  /** The latency shown in the table, per side. */
  latency: Partial<Record<Where, Latency>>
}

const WORKLOADS: Array<Omit<Workload, 'detail' | 'latency'>> = [
  { key: 'sqlWrite', name: `SQLite: ${ROWS_PER_TRANSACTION}-insert transactions`, unit: 'tx/s' },
  { key: 'sqlRead', name: 'SQLite: point selects', unit: 'queries/s' },
  { key: 'syncWrite', name: '4 KiB random write, fsync each', unit: 'IOPS' },
]

// The SQLite workload and the fio file's layout, as one small program: each
// command times itself and prints JSON.
const TOOL = String.raw`
import json, os, random, sqlite3, sys, time

MIB = 1 << 20
SEED = 0x10a3

def out(**fields):
    print(json.dumps(fields))

def latency(seconds):
    # Microseconds, nearest-rank percentiles.
    xs = sorted(seconds)
    if not xs:
        return None
    at = lambda p: xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1e6
    return dict(p50=at(50), p90=at(90), p99=at(99), p999=at(99.9), max=xs[-1] * 1e6, mean=sum(xs) / len(xs) * 1e6)

def keys():
    # The same keys in the same order every time, so the read phase can ask for rows that exist.
    rnd = random.Random(SEED)
    while True:
        yield '%016x' % rnd.getrandbits(64)

def write(db, transactions, rows, value_bytes, seconds):
    for p in (db, db + '-journal'):
        if os.path.exists(p):
            os.unlink(p)
    con = sqlite3.connect(db, isolation_level=None)
    journal = con.execute('PRAGMA journal_mode').fetchone()[0]
    synchronous = con.execute('PRAGMA synchronous').fetchone()[0]
    con.execute('CREATE TABLE kv (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL)')
    con.execute('CREATE INDEX kv_k ON kv (k)')
    values = random.Random(SEED + 1)
    ks = keys()
    lat = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while len(lat) < transactions and time.perf_counter() < deadline:
        batch = [(next(ks), values.randbytes(value_bytes)) for _ in range(rows)]
        s = time.perf_counter()
        con.execute('BEGIN')
        con.executemany('INSERT INTO kv (k, v) VALUES (?, ?)', batch)
        con.execute('COMMIT')
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    con.close()
    out(seconds=total, transactions=len(lat), rows=len(lat) * rows, journalMode=journal, synchronous=synchronous,
        dbBytes=os.path.getsize(db), latencyUs=latency(lat))

def read(db, queries, rows, seconds):
    every = [k for k, _ in zip(keys(), range(rows))]
    pick = random.Random(SEED + 2)
    con = sqlite3.connect(db, isolation_level=None)
    lat = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while len(lat) < queries and time.perf_counter() < deadline:
        k = every[pick.randrange(rows)]
        s = time.perf_counter()
        row = con.execute('SELECT v FROM kv WHERE k = ?', (k,)).fetchone()
        lat.append(time.perf_counter() - s)
        if row is None:
            sys.exit(f'{db}: no row for key {k}')
    total = time.perf_counter() - t0
    # Untimed: the database is whole and holds every row written.
    check = con.execute('PRAGMA integrity_check').fetchone()[0]
    count = con.execute('SELECT count(*) FROM kv').fetchone()[0]
    con.close()
    if check != 'ok' or count != rows:
        sys.exit(f'{db}: integrity_check {check!r}, {count} rows, expected {rows}')
    out(seconds=total, queries=len(lat), latencyUs=latency(lat))

def layout(path, size):
    buf = bytearray(os.urandom(MIB))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done, i = 0, 0
    while done < size:
        buf[0:8] = i.to_bytes(8, 'little')
        done += os.write(fd, memoryview(buf)[:min(MIB, size - done)])
        i += 1
    os.fsync(fd)
    os.close(fd)
    out(bytes=done)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == 'write':
    write(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]))
elif cmd == 'read':
    read(args[0], int(args[1]), int(args[2]), float(args[3]))
else:
    layout(args[0], int(args[1]))
`

interface SqlWrite {
  seconds: number
  transactions: number
  rows: number
  journalMode: string
  synchronous: number
  dbBytes: number
  latencyUs: Latency | null
}

interface SqlRead {
  seconds: number
  queries: number
  latencyUs: Latency | null
}

interface VolumeJson {
  name: string
  sizeBytes: number
  usedBytes: number
  replication: number
  blockSizeBytes: number
  attachedNode: string | null
  epoch: number
  nodes: Array<{ node: string; bytes: number }>
}

export async function runVolume(cleanup: Cleanup, opts: VolumeOptions): Promise<void> {
  const startedAt = new Date()
  requireTools('volume', TOOLS)
  requireSqlite()
  const loadAtStart = noteLoad('at the start')
  const { tool, localDir } = await workDir(cleanup, 'volume', TOOL)
  const cold = await dropCaches()
  if (!cold) log('volume: cannot drop the page cache (needs root): the read phase starts warm')

  log(`volume: starting a cluster (namenode + 3 datanodes in 2 racks, --log-level warn); volume ${VOLUME_NAME}: ${formatBytes(opts.volumeSizeBytes)}, replication ${VOLUME_REPLICATION}`)
  const cluster = await startCluster(cleanup, { nodes: 3, racks: 2, logLevel: 'warn' })
  const nodeId = cluster.record.nodes[0]?.id ?? ''
  await loam(cluster, ['volume', 'create', VOLUME_NAME, '--size', String(opts.volumeSizeBytes), '--replication', String(VOLUME_REPLICATION)])
  await loam(cluster, ['volume', 'attach', VOLUME_NAME, '--node', nodeId])
  const mount = await mountCluster(cleanup, cluster, { nodeId, extraArgs: ['--volume', VOLUME_NAME] })
  const mountPid = mount.child.pid ?? 0
  const roots: Record<Where, string> = { local: localDir, mount: mount.dir }
  log(`volume: mount ${mount.dir} (volume ${VOLUME_NAME}, node ${nodeId}), local ${localDir}`)

  const workloads = new Map(WORKLOADS.map((w) => [w.key, { ...w, detail: {}, latency: {} } as Workload]))
  const record = (key: string, where: Where, value: number, detail: Record<string, unknown>, lat: Latency | null | undefined, m: Measured<unknown>): void => {
    const w = workloads.get(key)!
    recordSide(w, where, value, detail, m)
    if (lat) w.latency[where] = lat
    log(`  ${where} ${w.name}: ${thousands(value)} ${w.unit}${lat ? `, p50 ${thousands(lat.p50)} µs, p99 ${thousands(lat.p99)} µs` : ''}`)
  }
  const measured = measurer(mountGroups(cluster, mountPid), mountPid)
  const sqlLimitMs = opts.sqlSeconds * 1000 + CHILD_GRACE_MS

  for (const where of ['local', 'mount'] as const) {
    const db = path.join(roots[where], 'db.sqlite')
    log(`volume: ${where}: SQLite, up to ${opts.transactions} transactions of ${ROWS_PER_TRANSACTION} inserts (${opts.sqlSeconds} s at most), then up to ${opts.queries} point selects`)
    await sync()
    const w = await measured(() => py<SqlWrite>(tool, ['write', db, String(opts.transactions), String(ROWS_PER_TRANSACTION), String(ROW_VALUE_BYTES), String(opts.sqlSeconds)], sqlLimitMs))
    // The tool reports what SQLite runs with: the defaults are the point (rollback journal, FULL = 2).
    if (w.value.journalMode !== 'delete' || w.value.synchronous !== 2) {
      throw new Error(`SQLite ran with journal_mode=${w.value.journalMode}, synchronous=${w.value.synchronous}; expected its defaults, delete and 2 (FULL)`)
    }
    const { latencyUs: wLat, ...wRest } = w.value
    record('sqlWrite', where, w.value.transactions / w.value.seconds, wRest, wLat, w)
    // A service restarting on its data: a fresh connection, and a cold page cache where that is allowed.
    if (cold) await dropCaches()
    const r = await measured(() => py<SqlRead>(tool, ['read', db, String(opts.queries), String(w.value.rows), String(opts.sqlSeconds)], sqlLimitMs))
    const { latencyUs: rLat, ...rRest } = r.value
    record('sqlRead', where, r.value.queries / r.value.seconds, { ...rRest, rows: w.value.rows, cold: cold ? 1 : 0 }, rLat, r)
  }

  for (const where of ['local', 'mount'] as const) {
    const file = path.join(roots[where], 'fio.bin')
    log(`volume: ${where}: fio, 4 KiB random writes with an fsync after each, in a ${FIO_FILE_BYTES / 2 ** 20} MiB file, ${opts.fioSeconds} s`)
    await py(tool, ['layout', file, String(FIO_FILE_BYTES)], CHILD_GRACE_MS)
    await sync()
    const r = await measured(() => fio(file, opts.fioSeconds))
    record('syncWrite', where, r.value.iops, r.value.detail, r.value.fsyncLatency, r)
  }

  const volume = JSON.parse(await loam(cluster, ['volume', 'inspect', VOLUME_NAME, '--json'])) as VolumeJson
  const blockSizeBytes = volume.blockSizeBytes || BLOCK_SIZE_DEFAULT_BYTES
  const results = [...workloads.values()]
  const lat = (w: Workload, where: Where, p: 'p50' | 'p99'): string => thousands(w.latency[where]?.[p] ?? NaN)
  const rows = results.map((w) => [
    w.name, w.unit, thousands(w.mount ?? NaN), thousands(w.local ?? NaN), fixed(ratioOf(w), 2),
    lat(w, 'mount', 'p50'), lat(w, 'mount', 'p99'), lat(w, 'local', 'p50'), lat(w, 'local', 'p99'),
    ...cpuCells(w.cpu),
  ])
  const out = table(
    ['workload', 'unit', 'mount', 'local', 'x local', 'mount p50 µs', 'p99 µs', 'local p50 µs', 'p99 µs', ...CPU_HEADERS],
    rows,
    [false, false, true, true, true, true, true, true, true, true, true, true],
  )
  const sqlW = workloads.get('sqlWrite')!
  const sqlR = workloads.get('sqlRead')!
  const counts = (w: Workload, field: string): string => (['mount', 'local'] as const).map((s) => `${s} ${thousands(Number(w.detail[s]?.[field]))}`).join(', ')
  const perNode = volume.nodes.map((n) => `${n.node} ${formatBytes(n.bytes)}`).join(', ')
  process.stdout.write(
    `\nvolume: a volume mount (loam mount --volume ${VOLUME_NAME} --node ${nodeId}; the volume ${formatBytes(opts.volumeSizeBytes)}, replication ${VOLUME_REPLICATION}, ` +
      `block size ${formatBytes(blockSizeBytes)}, attached to ${nodeId}) on a cluster of 3 datanodes, beside ${localDir} on the local disk. ` +
      `SQLite (python3's sqlite3, journal_mode=delete, synchronous=FULL): transactions of ${ROWS_PER_TRANSACTION} inserts of a ${ROW_VALUE_BYTES}-byte value into a table with an index ` +
      `(${counts(sqlW, 'transactions')} done, ${opts.sqlSeconds} s at most), then point selects by the indexed key on a fresh connection, each its own read transaction ` +
      `(${counts(sqlR, 'queries')}; ${cold ? 'page cache dropped before' : 'page cache NOT dropped: not root'}). ` +
      `fio: psync, iodepth 1, one job, --fsync=1, ${opts.fioSeconds} s on a ${FIO_FILE_BYTES / 2 ** 20} MiB file laid out first. ` +
      `Latency: per transaction, per query, and for fio the fsync (the write before it is in the JSON). ` +
      `x local = mount / local: below 1 is slower. cpu = cores busy on average during the mount's run (100% = one core).\n\n${out}\n` +
      `\nvolume ${VOLUME_NAME} afterwards: ${formatBytes(volume.usedBytes)} used, attached to ${volume.attachedNode ?? 'nothing'} (epoch ${volume.epoch}); replica bytes per node: ${perNode}\n`,
  )
  const files = await writeResults('volume', startedAt, {
    loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') },
    options: {
      ...opts,
      volumeName: VOLUME_NAME,
      replication: VOLUME_REPLICATION,
      blockSizeBytes,
      nodeId,
      rowsPerTransaction: ROWS_PER_TRANSACTION,
      rowValueBytes: ROW_VALUE_BYTES,
      fioFileBytes: FIO_FILE_BYTES,
      fioBlockBytes: FIO_BLOCK_BYTES,
      coldReads: cold,
    },
    ratios: Object.fromEntries(results.map((w) => [w.key, ratioOrNull(w)])),
    results: results.map((w) => ({ ...w, ratio: ratioOrNull(w) })),
    volume,
  })
  process.stdout.write(`\nwrote ${files.join(' and ')}\n`)
}

function ratioOf(w: Workload): number {
  return w.mount !== undefined && w.local !== undefined ? w.mount / w.local : NaN
}

function ratioOrNull(w: Workload): number | null {
  const r = ratioOf(w)
  return Number.isFinite(r) ? r : null
}

async function loam(cluster: TestCluster, args: string[]): Promise<string> {
  const r = await cluster.loam(args)
  if (r.code !== 0) throw new Error(`loam ${args.join(' ')} failed: ${r.stderr.trim()}`)
  return r.stdout.toString()
}

function requireSqlite(): void {
  try {
    execFileSync('python3', ['-c', 'import sqlite3'], { stdio: 'ignore' })
  } catch {
    throw new Error(`the volume benchmark needs python3's sqlite3 module: install with 'apt-get install -y libsqlite3-0 python3' (a python3 built without it needs rebuilding with libsqlite3-dev)`)
  }
}

/** Percentiles of a fio latency (ns) in µs. */
function fioLatency(l: FioLat | undefined): Latency | undefined {
  const p = l?.percentile
  if (!l || !p) return undefined
  const at = (k: string): number => (p[k] ?? NaN) / 1000
  return { p50: at('50.000000'), p90: at('90.000000'), p99: at('99.000000'), p999: at('99.900000'), max: l.max / 1000, mean: l.mean / 1000 }
}

/** One fio job: 4 KiB writes at random offsets, one at a time (psync, iodepth 1), each followed by an fsync, for a bounded time. */
async function fio(file: string, seconds: number): Promise<{ iops: number; fsyncLatency?: Latency; detail: Record<string, unknown> }> {
  const job = await fioJob(file, 'randwrite', seconds, seconds * 1000 + CHILD_GRACE_MS)
  const fsyncLatency = fioLatency(job.sync?.lat_ns)
  const detail = {
    ops: job.write.io_bytes / FIO_BLOCK_BYTES,
    seconds: job.write.runtime / 1000,
    writeLatencyUs: fioLatency(job.write.clat_ns) ?? null,
    fsyncLatencyUs: fsyncLatency ?? null,
  }
  return { iops: job.write.iops, fsyncLatency, detail }
}
