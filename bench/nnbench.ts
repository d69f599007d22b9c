// nnbench: namenode operations per second with 1, 8 and 32 concurrent clients,
// each client its own LoamClient (its own TCP connection) with one call in
// flight, as HDFS's NNBench runs one stream of calls per map task. Every
// mutation is durable before the namenode answers; that is the server's
// business, this only measures. A raw LevelDB baseline in the same run shows
// what one durable commit costs on this disk.
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Level } from 'level'
import { LoamClient } from '../src/client/client.js'
import { parseAddress } from '../src/common/address.js'
import { startCluster, type TestCluster } from '../test/helpers/cluster.js'
import { CpuMeter, fixed, formatCpu, log, noteLoad, table, targetTable, thousands, writeResults, type Cleanup, type CpuGroups, type Target } from './lib.js'

export interface NnbenchOptions {
  /** Operations of each kind at each concurrency. */
  ops: number
  /** At concurrency 1 the count is capped here: one call in flight is slow by nature. */
  opsSingle: number
  clients: number[]
  /** A measurement stops starting new operations after this long, and counts what finished. */
  maxSeconds: number
  leveldbOps: number
}

const OPS = ['create', 'mkdir', 'stat', 'getBlockLocations', 'rename', 'delete'] as const
type Op = (typeof OPS)[number]

interface Measurement {
  op: Op
  clients: number
  ops: number
  ms: number
  opsPerS: number
  p50Ms: number
  p99Ms: number
  /** Mutations the namenode folded into one synced batch, on average (0 for reads). */
  mutationsPerBatch: number
  cpu: Record<string, number>
}

interface Baseline {
  name: string
  ops: number
  ms: number
  opsPerS: number
}

const TARGETS: Array<{ op: Op; opsPerS: number }> = [
  { op: 'create', opsPerS: 5000 },
  { op: 'stat', opsPerS: 30_000 },
]
const TARGET_CLIENTS = 32

export async function runNnbench(cleanup: Cleanup, opts: NnbenchOptions): Promise<void> {
  const startedAt = new Date()
  const loadAtStart = noteLoad('at the start')
  log('nnbench: LevelDB baseline')
  const baseline = await leveldbBaseline(cleanup, opts, Math.max(...opts.clients))

  log('nnbench: starting a cluster (namenode + 3 datanodes in 2 racks, --log-level warn)')
  const cluster = await startCluster(cleanup, { nodes: 3, racks: 2, logLevel: 'warn' })
  const groups: CpuGroups = { namenode: [cluster.record.namenode.pid], datanodes: cluster.record.nodes.map((n) => n.pid) }
  const results: Measurement[] = []
  for (const k of opts.clients) results.push(...(await atConcurrency(cleanup, cluster, groups, k, k === 1 ? Math.min(opts.ops, opts.opsSingle) : opts.ops, opts.maxSeconds)))

  const targets: Target[] = []
  for (const t of TARGETS) {
    const m = results.find((r) => r.op === t.op && r.clients === TARGET_CLIENTS)
    if (m) targets.push({ what: `${t.op} at ${TARGET_CLIENTS} clients`, want: `>= ${thousands(t.opsPerS)} ops/s`, got: `${thousands(m.opsPerS)} ops/s`, met: m.opsPerS >= t.opsPerS })
  }

  const byOp = table(
    ['ops/s', ...opts.clients.map((k) => `${k} client${k === 1 ? '' : 's'}`)],
    OPS.map((op) => [op, ...opts.clients.map((k) => thousands(results.find((r) => r.op === op && r.clients === k)?.opsPerS ?? NaN))]),
  )
  const detail = table(
    ['op', 'clients', 'ops', 'ops/s', 'p50 ms', 'p99 ms', 'mut/batch', 'cpu bench', 'cpu nn', 'cpu other'],
    results.map((r) => [r.op, String(r.clients), String(r.ops), thousands(r.opsPerS), fixed(r.p50Ms, 2), fixed(r.p99Ms, 2), r.mutationsPerBatch ? fixed(r.mutationsPerBatch) : '-', formatCpu(r.cpu.bench), formatCpu(r.cpu.namenode), formatCpu(r.cpu.other)]),
    [false, true, true, true, true, true, true, true, true, true],
  )
  const base = table(
    ['LevelDB baseline (same disk)', 'ops', 'ops/s'],
    baseline.map((b) => [b.name, String(b.ops), thousands(b.opsPerS)]),
  )
  process.stdout.write(
    `\nnnbench: one call in flight per client, each client its own connection; create = create + close of an empty file (2 durable RPCs); ` +
      `mut/batch = mutations per synced LevelDB batch on the namenode; cpu = cores busy on average (100% = one core) in this process (the clients), the namenode, and everything else on the machine\n\n` +
      `${byOp}\n\n${detail}\n\n${base}\n\n${targetTable(targets)}\n`,
  )
  const files = await writeResults('nnbench', startedAt, { loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') }, options: opts, results, leveldbBaseline: baseline, targets })
  process.stdout.write(`\nwrote ${files.join(' and ')}\n`)
}

async function atConcurrency(cleanup: Cleanup, cluster: TestCluster, groups: CpuGroups, k: number, total: number, maxSeconds: number): Promise<Measurement[]> {
  log(`nnbench: ${k} client(s), ${total} ops of each kind`)
  const root = `/nnbench/k${k}`
  const clients = Array.from({ length: k }, () => new LoamClient({ namenode: parseAddress(cluster.namenode) }))
  let closed = false
  const closeAll = (): void => {
    if (closed) return
    closed = true
    for (const c of clients) c.close()
  }
  cleanup.teardown(closeAll)
  try {
    // Untimed: each client's directory (which also opens its connection), and one create
    // so the checksum module is loaded before the clock starts.
    await Promise.all(clients.map((c, i) => c.mkdirs(`${root}/c${i}`, { parents: true })))
    await (await clients[0]!.create(`${root}/warmup`)).close()
    const share = (c: number): number => Math.floor(total / k) + (c < total % k ? 1 : 0)
    const dir = (c: number): string => `${root}/c${c}`
    // Later ops work on what earlier ones made; a measurement cut short by the time limit leaves fewer.
    const created = clients.map(() => 0)
    const renamed = clients.map(() => 0)
    const plan: Record<Op, { count(c: number): number; run(cl: LoamClient, c: number, i: number): Promise<unknown>; after?(c: number, done: number): void }> = {
      create: { count: share, run: async (cl, c, i) => (await cl.create(`${dir(c)}/f${i}`)).close(), after: (c, n) => (created[c] = n) },
      mkdir: { count: share, run: (cl, c, i) => cl.mkdirs(`${dir(c)}/d${i}`) },
      stat: { count: (c) => created[c]!, run: (cl, c, i) => cl.stat(`${dir(c)}/f${i}`) },
      getBlockLocations: { count: (c) => created[c]!, run: (cl, c, i) => cl.getBlockLocations(`${dir(c)}/f${i}`, 0, 0) },
      rename: { count: (c) => created[c]!, run: (cl, c, i) => cl.rename(`${dir(c)}/f${i}`, `${dir(c)}/r${i}`), after: (c, n) => (renamed[c] = n) },
      delete: { count: (c) => renamed[c]!, run: (cl, c, i) => cl.delete(`${dir(c)}/r${i}`) },
    }
    const out: Measurement[] = []
    for (const op of OPS) {
      const p = plan[op]
      const counts = clients.map((_, c) => p.count(c))
      const latencies = new Float64Array(counts.reduce((s, n) => s + n, 0))
      let done = 0
      const before = await commitStats(cluster)
      const cpu = new CpuMeter(groups)
      const t0 = performance.now()
      const deadline = t0 + maxSeconds * 1000
      await Promise.all(
        clients.map(async (cl, c) => {
          let i = 0
          for (; i < counts[c]!; i++) {
            const s = performance.now()
            if (s > deadline) break
            await p.run(cl, c, i)
            latencies[done++] = performance.now() - s
          }
          p.after?.(c, i)
        }),
      )
      const ms = performance.now() - t0
      const usage = cpu.stop()
      const after = await commitStats(cluster)
      const sorted = latencies.subarray(0, done).sort()
      const batches = after.batches - before.batches
      const m: Measurement = {
        op,
        clients: k,
        ops: done,
        ms,
        opsPerS: done / (ms / 1000),
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        mutationsPerBatch: batches > 0 ? (after.mutations - before.mutations) / batches : 0,
        cpu: usage,
      }
      if (done < latencies.length) log(`  ${op}: stopped after ${maxSeconds} s with ${done} of ${latencies.length} done`)
      log(`  ${op}: ${thousands(m.opsPerS)} ops/s (p50 ${fixed(m.p50Ms, 2)} ms, p99 ${fixed(m.p99Ms, 2)} ms)`)
      out.push(m)
    }
    // Untimed: leave the namespace as it was, so the next concurrency starts alike, and let
    // the namenode finish removing the subtree in the background before anything is timed again.
    await clients[0]!.delete(root, true)
    await commitsSettled(cluster)
    return out
  } finally {
    closeAll()
  }
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** The namenode's counters of synced batches and the mutations in them, from /metrics. */
async function commitStats(cluster: TestCluster): Promise<{ batches: number; mutations: number }> {
  try {
    const text = await (await fetch(`http://${cluster.record.namenode.http}/metrics`)).text()
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
    return { batches: value('loam_namenode_commit_batches'), mutations: value('loam_namenode_commit_mutations') }
  } catch {
    return { batches: NaN, mutations: NaN }
  }
}

/** Waits (at most 30 s) until the namenode has committed nothing for half a second. */
async function commitsSettled(cluster: TestCluster): Promise<void> {
  const deadline = performance.now() + 30_000
  let last = await commitStats(cluster)
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500))
    const now = await commitStats(cluster)
    if (now.batches === last.batches || Number.isNaN(now.batches)) return
    last = now
  }
  log('nnbench: the namenode was still committing after 30 s; going on')
}

/** What durable commits cost on this disk without any namenode around them. */
async function leveldbBaseline(cleanup: Cleanup, opts: NnbenchOptions, inFlight: number): Promise<Baseline[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loam-bench-leveldb-'))
  cleanup.teardown(() => rm(dir, { recursive: true, force: true }))
  const db = new Level<string, Buffer>(path.join(dir, 'db'), { valueEncoding: 'buffer' })
  await db.open()
  cleanup.teardown(() => (db.status === 'open' ? db.close() : undefined))
  // About the size of an inode record plus its directory entry.
  const value = Buffer.alloc(160, 7)
  const out: Baseline[] = []
  const deadlineMs = opts.maxSeconds * 1000
  let key = 0

  let t0 = performance.now()
  let n = 0
  for (; n < opts.leveldbOps && performance.now() - t0 < deadlineMs; n++) await db.put(`k${key++}`, value, { sync: true })
  let ms = performance.now() - t0
  out.push({ name: 'synced put, one at a time', ops: n, ms, opsPerS: n / (ms / 1000) })

  t0 = performance.now()
  n = 0
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (n < opts.leveldbOps && performance.now() - t0 < deadlineMs) {
        n++
        await db.put(`k${key++}`, value, { sync: true })
      }
    }),
  )
  ms = performance.now() - t0
  out.push({ name: `synced put, ${inFlight} in flight`, ops: n, ms, opsPerS: n / (ms / 1000) })

  const batchOps = 1024
  t0 = performance.now()
  n = 0
  while (n < opts.leveldbOps * 4 && performance.now() - t0 < deadlineMs) {
    await db.batch(Array.from({ length: batchOps }, () => ({ type: 'put' as const, key: `k${key++}`, value })), { sync: true })
    n += batchOps
  }
  ms = performance.now() - t0
  out.push({ name: `synced batch of ${batchOps} puts (puts/s)`, ops: n, ms, opsPerS: n / (ms / 1000) })
  await db.close()
  for (const b of out) log(`  LevelDB ${b.name}: ${thousands(b.opsPerS)} ops/s`)
  return out
}
