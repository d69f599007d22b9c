// sched: the scheduler's pure core (src/scheduler/core.ts) driven by a
// simulated cluster of 100 and 1,000 nodes, no processes: many small data-local
// jobs arriving over simulated time, tasks of random short durations, the
// cluster kept busy (about 80% of its slots) so that jobs compete for slots, as
// in the delay-scheduling paper (Zaharia et al., EuroSys 2010), and some files
// far more popular than others, so that jobs compete for the same nodes. The same
// workload runs under delay scheduling and under plain FIFO placement without
// delay (and, to tell the two changes apart, fair job order without delay).
// Reported: the locality tasks got and how long they waited, placement
// decisions per second of core wall-clock time, and, in a second simulation with
// two roles always wanting more, how far DRF's dominant shares are from their
// weights.
import { SchedulerCore, type Placement } from '../src/scheduler/core.js'
import { LOCALITY_WAIT_DEFAULT_MS } from '../src/scheduler/limits.js'
import { resources, type Resources } from '../src/scheduler/resources.js'
import type { SchedulerConfig } from '../src/scheduler/spec.js'
import { fixed, log, noteLoad, table, targetTable, thousands, writeResults, type Target } from './lib.js'

export interface SchedOptions {
  /** Cluster sizes to simulate. */
  nodes: number[]
  /** Simulated time jobs arrive over (the first fifth is warm-up, left out of the figures). */
  simSeconds: number
}

const SLOTS_PER_NODE = 4
const NODE = resources(SLOTS_PER_NODE, SLOTS_PER_NODE * 2048)
const TASK = resources(1, 2048)
const REPLICATION = 3
const TASK_MS_MIN = 1_000
const TASK_MS_MAX = 10_000
/** Offered load: task-seconds arriving per slot-second. */
const LOAD = 0.8
const WARMUP_FRACTION = 0.2
/** Jobs per file on average, and how skewed the files' popularity is (Zipf exponent; 0: uniform). */
const READS_PER_FILE = 4
const ZIPF_S = 1
const SEED = 0x5c4ed
/**
 * Tasks per job, after the Facebook trace in the delay-scheduling paper (Table
 * 1): most jobs small, a few large. [weight, fewest, most].
 */
const JOB_SIZES: Array<[number, number, number]> = [
  [0.4, 1, 1],
  [0.15, 2, 2],
  [0.2, 3, 20],
  [0.12, 21, 60],
  [0.08, 61, 150],
  [0.05, 151, 300],
]

const TARGET_NODE_LOCAL = 0.95
const TARGET_NODE_LOCAL_NODES = 1000
const TARGET_DECISIONS_PER_S = 10_000
const TARGET_DRF_ERROR = 0.05

type Policy = 'delay scheduling' | 'FIFO, no delay' | 'fair, no delay'
const POLICIES: Array<{ name: Policy; config: SchedulerConfig }> = [
  { name: 'delay scheduling', config: { localityWaitMs: LOCALITY_WAIT_DEFAULT_MS, jobOrder: 'fair' } },
  { name: 'FIFO, no delay', config: { localityWaitMs: 0, jobOrder: 'fifo' } },
  { name: 'fair, no delay', config: { localityWaitMs: 0, jobOrder: 'fair' } },
]

interface LocalityRun {
  nodes: number
  racks: number
  slots: number
  policy: Policy
  localityWaitMs: number
  jobs: number
  /** Tasks placed inside the measured window (after warm-up, before arrivals stop). */
  tasks: number
  nodeLocal: number
  rackLocal: number
  any: number
  waitMeanMs: number
  waitP99Ms: number
  /** Busy slots over the measured window. */
  utilization: number
  /** Submission to last task's end, of jobs submitted in the window (all finish: the run drains). */
  jobResponseMeanS: number
  smallJobResponseMeanS: number
  /** Every placement of the run, over the wall-clock time spent inside core calls. */
  placements: number
  coreMs: number
  decisionsPerS: number
  scheduleCalls: number
  scheduleP99Us: number
  scheduleMaxUs: number
  simWallS: number
}

interface DrfRun {
  nodes: number
  weights: [number, number]
  /** Role a's part of the two dominant shares, as the weights say it should be. */
  want: number
  mean: number
  meanError: number
  maxError: number
  samples: number
  cpuUsed: number
  memUsed: number
  decisionsPerS: number
}

export async function runSched(opts: SchedOptions): Promise<void> {
  for (const n of opts.nodes) if (n < 4) throw new Error(`--nodes ${n}: a simulated cluster needs at least 4 nodes (2 racks of 2, for 3 replicas)`)
  const startedAt = new Date()
  const loadAtStart = noteLoad('at the start')
  const runs: LocalityRun[] = []
  const drf: DrfRun[] = []
  for (const nodes of opts.nodes) {
    const cluster = makeCluster(nodes)
    const workload = makeWorkload(cluster, opts.simSeconds * 1000, SEED + nodes)
    const tasks = workload.reduce((s, j) => s + j.tasks.length, 0)
    log(`sched: ${nodes} nodes in ${cluster.racks} racks, ${nodes * SLOTS_PER_NODE} slots; ${workload.length} jobs, ${tasks} tasks over ${opts.simSeconds} s simulated`)
    for (const policy of POLICIES) {
      const run = simulateLocality(cluster, workload, policy.name, policy.config, opts.simSeconds * 1000)
      runs.push(run)
      log(`  ${policy.name}: ${pct(run.nodeLocal)} node-local, utilization ${pct(run.utilization)}, ${thousands(run.decisionsPerS)} decisions/s (${fixed(run.simWallS, 1)} s)`)
    }
    for (const weights of [
      [1, 1],
      [2, 1],
    ] as Array<[number, number]>) {
      const run = simulateDrf(cluster, weights, Math.min(opts.simSeconds, 120) * 1000)
      drf.push(run)
      log(`  DRF ${weights.join(':')}: mean ${pct(run.mean)} (want ${pct(run.want)}), max error ${fixed(run.maxError * 100, 2)} points`)
    }
  }

  const targets: Target[] = []
  const delayAtTarget = runs.find((r) => r.nodes === TARGET_NODE_LOCAL_NODES && r.policy === 'delay scheduling')
  if (delayAtTarget) {
    targets.push({ what: `NODE_LOCAL tasks, delay scheduling, ${TARGET_NODE_LOCAL_NODES} nodes`, want: `>= ${pct(TARGET_NODE_LOCAL)}`, got: pct(delayAtTarget.nodeLocal), met: delayAtTarget.nodeLocal >= TARGET_NODE_LOCAL })
  }
  const slowest = runs.reduce<LocalityRun | undefined>((w, r) => (w === undefined || r.decisionsPerS < w.decisionsPerS ? r : w), undefined)
  if (slowest) {
    targets.push({
      what: `placement decisions/s (slowest run: ${slowest.nodes} nodes, ${slowest.policy})`,
      want: `>= ${thousands(TARGET_DECISIONS_PER_S)}`,
      got: thousands(slowest.decisionsPerS),
      met: slowest.decisionsPerS >= TARGET_DECISIONS_PER_S,
    })
  }
  for (const d of drf) {
    targets.push({ what: `DRF share error, ${d.nodes} nodes, weights ${d.weights.join(':')} (max over samples)`, want: `<= ${fixed(TARGET_DRF_ERROR * 100, 0)} points`, got: `${fixed(d.maxError * 100, 2)} points`, met: d.maxError <= TARGET_DRF_ERROR, info: true })
  }

  const localityTable = table(
    ['nodes', 'policy', 'tasks', 'NODE_LOCAL', 'RACK_LOCAL', 'ANY', 'wait mean s', 'wait p99 s', 'util', 'job resp s', '1-task job s', 'decisions/s', 'sched p99 us'],
    runs.map((r) => [
      `${r.nodes} (${r.racks} racks)`,
      r.policy,
      thousands(r.tasks),
      pct(r.nodeLocal),
      pct(r.rackLocal),
      pct(r.any),
      fixed(r.waitMeanMs / 1000, 2),
      fixed(r.waitP99Ms / 1000, 2),
      pct(r.utilization),
      fixed(r.jobResponseMeanS, 1),
      fixed(r.smallJobResponseMeanS, 1),
      thousands(r.decisionsPerS),
      thousands(r.scheduleP99Us),
    ]),
    [false, false, true, true, true, true, true, true, true, true, true, true, true],
  )
  const drfTable = table(
    ['DRF: nodes', 'weights a:b', "a's part wanted", "a's part mean", 'mean error', 'max error', 'samples', 'cpus used', 'mem used', 'decisions/s'],
    drf.map((d) => [String(d.nodes), d.weights.join(':'), pct(d.want), pct(d.mean), `${fixed(d.meanError * 100, 2)} pts`, `${fixed(d.maxError * 100, 2)} pts`, String(d.samples), pct(d.cpuUsed), pct(d.memUsed), thousands(d.decisionsPerS)]),
    [false, false, true, true, true, true, true, true, true, true],
  )
  process.stdout.write(
    `\nsched: the scheduler core on a simulated cluster (no processes). Nodes of ${SLOTS_PER_NODE} slots (${SLOTS_PER_NODE} cpus, ${SLOTS_PER_NODE * 2} GiB), ` +
      `tasks of 1 cpu, 2 GiB, ${TASK_MS_MIN / 1000}-${TASK_MS_MAX / 1000} s. A job reads one file, a task per block; blocks have ${REPLICATION} replicas placed as HDFS does ` +
      `(one node, then two on one other rack); files of 1-300 blocks (the Facebook-trace job mix), each read by ${READS_PER_FILE} jobs on average, ` +
      `the i-th most popular by weight 1/i^${ZIPF_S} (hot files draw jobs to the same nodes); jobs arrive as a Poisson process at ${pct(LOAD)} offered load, ` +
      `two roles of weight 1; ${opts.simSeconds} s simulated, the first ${pct(WARMUP_FRACTION)} left out; 'util' is busy slots over that time. ` +
      `Locality wait ${LOCALITY_WAIT_DEFAULT_MS / 1000} s (node), ${LOCALITY_WAIT_DEFAULT_MS / 1000} s (rack) with delay scheduling, 0 without. ` +
      `decisions/s = placements / wall-clock time inside core calls (submit, schedule, taskFinished); sched p99 = one schedule() call.\n\n` +
      `${localityTable}\n\n` +
      `DRF: two roles always wanting more, a cpu-heavy one (a: 1 cpu, 1 GiB) and a memory-heavy one (b: 0.5 cpu, 3 GiB), tasks of ${TASK_MS_MIN / 1000}-${TASK_MS_MAX / 1000} s; ` +
      `sampled every second after ${DRF_WARMUP_MS / 1000} s; error = |a's part of the two dominant shares - a's weight / (sum of weights)|.\n\n` +
      `${drfTable}\n\n${targetTable(targets)}\n`,
  )
  const files = await writeResults('sched', startedAt, {
    loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') },
    options: opts,
    setup: {
      slotsPerNode: SLOTS_PER_NODE,
      node: NODE,
      task: TASK,
      replication: REPLICATION,
      taskMs: [TASK_MS_MIN, TASK_MS_MAX],
      offeredLoad: LOAD,
      warmupFraction: WARMUP_FRACTION,
      jobSizes: JOB_SIZES,
      readsPerFile: READS_PER_FILE,
      zipfExponent: ZIPF_S,
      seed: SEED,
    },
    locality: runs,
    drf,
    targets,
  })
  process.stdout.write(`\nwrote ${files.join(' and ')}\n`)
}

// ---------------------------------------------------------------------------
// The simulated cluster and workload, the same for every policy.

interface Cluster {
  nodes: number
  racks: number
  /** Node i is datanode `dn<i>` on rack `rackOf[i]`, with an agent `agent<i>`. */
  rackOf: number[]
  /** Nodes of each rack. */
  members: number[][]
}

function makeCluster(nodes: number): Cluster {
  // 20 racks for a cluster of 100, 40 for 1,000; at least 2 nodes a rack for HDFS's second and third replicas.
  const racks = Math.max(2, Math.min(nodes <= 100 ? 20 : 40, Math.floor(nodes / 2)))
  const rackOf = Array.from({ length: nodes }, (_, i) => i % racks)
  const members: number[][] = Array.from({ length: racks }, () => [])
  rackOf.forEach((r, i) => members[r]!.push(i))
  return { nodes, racks, rackOf, members }
}

function addAgents(core: SchedulerCore, cluster: Cluster, each: Resources): void {
  for (let i = 0; i < cluster.nodes; i++) core.addAgent({ id: `agent${i}`, nodeId: `dn${i}`, rack: `/rack${cluster.rackOf[i]}`, resources: each })
}

interface SimTask {
  id: string
  preferredNodes: string[]
  durationMs: number
}

interface SimJob {
  id: string
  atMs: number
  role: string
  tasks: SimTask[]
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** HDFS's default placement for a block written from outside the cluster: a random node, then two nodes of one other rack. */
function replicas(cluster: Cluster, random: () => number): string[] {
  const first = Math.floor(random() * cluster.nodes)
  let rack = Math.floor(random() * (cluster.racks - 1))
  if (rack >= cluster.rackOf[first]!) rack++
  const members = cluster.members[rack]!
  const i = Math.floor(random() * members.length)
  let j = Math.floor(random() * (members.length - 1))
  if (j >= i) j++
  return [`dn${first}`, `dn${members[i]}`, `dn${members[j]}`]
}

interface SimFile {
  /** Each block's replicas. */
  blocks: string[][]
}

/** A job size (tasks, one per block) from JOB_SIZES. */
function jobSize(random: () => number): number {
  const total = JOB_SIZES.reduce((s, [w]) => s + w, 0)
  let u = random() * total
  for (const [w, lo, hi] of JOB_SIZES) {
    if (u < w) return lo + Math.floor(random() * (hi - lo + 1))
    u -= w
  }
  const [, lo, hi] = JOB_SIZES[JOB_SIZES.length - 1]!
  return lo + Math.floor(random() * (hi - lo + 1))
}

/**
 * Jobs arriving as a Poisson process at LOAD, each reading every block of one
 * file: files are written once (replicas placed as HDFS does) and read by many
 * jobs, the i-th most popular with weight 1/i^ZIPF_S, so a few hot files draw
 * jobs to the same nodes, as recent data does in a shared warehouse.
 */
function makeWorkload(cluster: Cluster, simMs: number, seed: number): SimJob[] {
  const random = mulberry32(seed)
  const meanTaskMs = (TASK_MS_MIN + TASK_MS_MAX) / 2
  const meanSize = JOB_SIZES.reduce((s, [w, lo, hi]) => s + (w * (lo + hi)) / 2, 0) / JOB_SIZES.reduce((s, [w]) => s + w, 0)
  const expectedJobs = (LOAD * cluster.nodes * SLOTS_PER_NODE * simMs) / (meanSize * meanTaskMs)
  const files: SimFile[] = Array.from({ length: Math.max(1, Math.round(expectedJobs / READS_PER_FILE)) }, () => ({
    blocks: Array.from({ length: jobSize(random) }, () => replicas(cluster, random)),
  }))
  // Cumulative popularity, for picking a file by binary search.
  const cumulative: number[] = []
  files.reduce((s, _, i) => (cumulative[i] = s + 1 / Math.pow(i + 1, ZIPF_S)), 0)
  // Tasks per job as popularity weighs the files, and so the arrival rate that offers LOAD of the slots.
  const meanTasks = files.reduce((s, f, i) => s + f.blocks.length / Math.pow(i + 1, ZIPF_S), 0) / cumulative[cumulative.length - 1]!
  const jobsPerMs = (LOAD * cluster.nodes * SLOTS_PER_NODE) / (meanTasks * meanTaskMs)
  const jobs: SimJob[] = []
  for (let at = 0, n = 0; ; n++) {
    at += Math.max(1, Math.round(-Math.log(1 - random()) / jobsPerMs))
    if (at > simMs) break
    const u = random() * cumulative[cumulative.length - 1]!
    let lo = 0
    let hi = cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cumulative[mid]! <= u) lo = mid + 1
      else hi = mid
    }
    const id = `job${n}`
    const tasks = files[lo]!.blocks.map((preferredNodes, k) => ({ id: `${id}-${k}`, preferredNodes, durationMs: TASK_MS_MIN + Math.floor(random() * (TASK_MS_MAX - TASK_MS_MIN + 1)) }))
    jobs.push({ id, atMs: at, role: random() < 0.5 ? 'etl' : 'adhoc', tasks })
  }
  return jobs
}

// ---------------------------------------------------------------------------
// Driving the core: events in time order, schedule() after each instant's
// events, and at the times the core asks to be woken (nextWakeMs).

/** Task ends, earliest first (a binary heap of parallel arrays). */
class EndHeap {
  private readonly at: number[] = []
  private readonly ids: string[] = []

  get size(): number {
    return this.at.length
  }

  peek(): number {
    return this.at.length > 0 ? this.at[0]! : Infinity
  }

  push(atMs: number, id: string): void {
    let i = this.at.length
    this.at.push(atMs)
    this.ids.push(id)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.at[parent]! <= atMs) break
      this.at[i] = this.at[parent]!
      this.ids[i] = this.ids[parent]!
      i = parent
    }
    this.at[i] = atMs
    this.ids[i] = id
  }

  pop(): string {
    const top = this.ids[0]!
    const lastAt = this.at.pop()!
    const lastId = this.ids.pop()!
    const n = this.at.length
    if (n > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && this.at[r]! < this.at[l]! ? r : l
        if (this.at[c]! >= lastAt) break
        this.at[i] = this.at[c]!
        this.ids[i] = this.ids[c]!
        i = c
      }
      this.at[i] = lastAt
      this.ids[i] = lastId
    }
    return top
  }
}

function simulateLocality(cluster: Cluster, workload: SimJob[], policy: Policy, config: SchedulerConfig, simMs: number): LocalityRun {
  const wallStart = performance.now()
  const core = new SchedulerCore(config)
  addAgents(core, cluster, NODE)
  const warmupMs = simMs * WARMUP_FRACTION
  const duration = new Map<string, number>()
  const jobOf = new Map<string, { job: SimJob; left: number; doneMs: number }>()
  const ends = new EndHeap()
  const counts = { NODE_LOCAL: 0, RACK_LOCAL: 0, ANY: 0, NO_PREF: 0 }
  const waits: number[] = []
  const scheduleUs: number[] = []
  let coreMs = 0
  let placements = 0
  let running = 0
  let busySlotMs = 0
  let lastMs = 0
  let next = 0
  let now = 0
  const responses: number[] = []
  const smallResponses: number[] = []

  for (;;) {
    const wake = core.nextWakeMs()
    const nextArrival = next < workload.length ? workload[next]!.atMs : Infinity
    now = Math.min(nextArrival, ends.peek(), wake !== undefined && wake > now ? wake : Infinity)
    if (now === Infinity) break
    // Busy slots over the measured window.
    const from = Math.max(lastMs, warmupMs)
    const to = Math.min(now, simMs)
    if (to > from) busySlotMs += running * (to - from)
    lastMs = now

    let t0 = performance.now()
    while (next < workload.length && workload[next]!.atMs <= now) {
      const job = workload[next++]!
      for (const task of job.tasks) duration.set(task.id, task.durationMs)
      jobOf.set(job.id, { job, left: job.tasks.length, doneMs: 0 })
      core.submit({ id: job.id, role: job.role, resources: TASK, tasks: job.tasks }, now)
    }
    while (ends.peek() <= now) {
      const id = ends.pop()
      core.taskFinished(id)
      running--
      const jobId = id.slice(0, id.lastIndexOf('-'))
      const j = jobOf.get(jobId)!
      if (--j.left === 0) {
        jobOf.delete(jobId)
        if (j.job.atMs >= warmupMs && j.job.atMs <= simMs) {
          responses.push(now - j.job.atMs)
          if (j.job.tasks.length === 1) smallResponses.push(now - j.job.atMs)
        }
      }
    }
    coreMs += performance.now() - t0
    t0 = performance.now()
    const placed: Placement[] = core.schedule(now)
    const callMs = performance.now() - t0
    coreMs += callMs
    scheduleUs.push(callMs * 1000)
    for (const p of placed) {
      const d = duration.get(p.taskId)!
      duration.delete(p.taskId)
      ends.push(now + d, p.taskId)
      running++
      placements++
      if (now >= warmupMs && now <= simMs) {
        counts[p.locality]++
        waits.push(p.waitedMs)
      }
    }
  }
  if (jobOf.size !== 0 || running !== 0) throw new Error(`sched: ${policy}: ${jobOf.size} jobs did not finish`)
  const tasks = counts.NODE_LOCAL + counts.RACK_LOCAL + counts.ANY + counts.NO_PREF
  waits.sort((a, b) => a - b)
  scheduleUs.sort((a, b) => a - b)
  return {
    nodes: cluster.nodes,
    racks: cluster.racks,
    slots: cluster.nodes * SLOTS_PER_NODE,
    policy,
    localityWaitMs: core.waits.nodeWaitMs,
    jobs: workload.length,
    tasks,
    nodeLocal: counts.NODE_LOCAL / tasks,
    rackLocal: counts.RACK_LOCAL / tasks,
    any: counts.ANY / tasks,
    waitMeanMs: mean(waits),
    waitP99Ms: quantile(waits, 0.99),
    utilization: busySlotMs / ((simMs - warmupMs) * cluster.nodes * SLOTS_PER_NODE),
    jobResponseMeanS: mean(responses) / 1000,
    smallJobResponseMeanS: mean(smallResponses) / 1000,
    placements,
    coreMs,
    decisionsPerS: placements / (coreMs / 1000),
    scheduleCalls: scheduleUs.length,
    scheduleP99Us: quantile(scheduleUs, 0.99),
    scheduleMaxUs: scheduleUs[scheduleUs.length - 1] ?? 0,
    simWallS: (performance.now() - wallStart) / 1000,
  }
}

// ---------------------------------------------------------------------------
// DRF: two roles that always have more tasks queued than they can run.

const DRF_WARMUP_MS = 20_000
const DRF_JOB_TASKS = 5_000
const DRF_ROLES: Array<{ name: string; need: Resources }> = [
  { name: 'a', need: resources(1, 1024) },
  { name: 'b', need: resources(0.5, 3072) },
]

function simulateDrf(cluster: Cluster, weights: [number, number], simMs: number): DrfRun {
  const random = mulberry32(SEED ^ cluster.nodes)
  const core = new SchedulerCore({ roleWeights: { a: weights[0], b: weights[1] } })
  addAgents(core, cluster, NODE)
  const ends = new EndHeap()
  const queued = [0, 0]
  let jobs = 0
  let placements = 0
  let coreMs = 0
  const samples: number[] = []
  const used = { cpu: 0, mem: 0 }
  const want = weights[0] / (weights[0] + weights[1])
  // Enough queued that neither role ever runs dry: the cluster holds at most this many tasks of either.
  const low = cluster.nodes * SLOTS_PER_NODE * 2
  let nextSample = DRF_WARMUP_MS
  for (let now = 0; now <= simMs; ) {
    const t0 = performance.now()
    for (let r = 0; r < DRF_ROLES.length; r++) {
      while (queued[r]! < low) {
        const id = `drf${jobs++}`
        core.submit({ id, role: DRF_ROLES[r]!.name, resources: DRF_ROLES[r]!.need, tasks: Array.from({ length: DRF_JOB_TASKS }, (_, k) => ({ id: `${id}-${k}` })) }, now)
        queued[r]! += DRF_JOB_TASKS
      }
    }
    while (ends.peek() <= now) core.taskFinished(ends.pop())
    for (const p of core.schedule(now)) {
      ends.push(now + TASK_MS_MIN + Math.floor(random() * (TASK_MS_MAX - TASK_MS_MIN + 1)), p.taskId)
      queued[p.role === 'a' ? 0 : 1]!--
      placements++
    }
    coreMs += performance.now() - t0
    while (now >= nextSample) {
      const shares = core.roleShares()
      const a = shares.find((s) => s.role === 'a')!.dominantShare
      const b = shares.find((s) => s.role === 'b')!.dominantShare
      samples.push(a / (a + b))
      const total = core.clusterTotal()
      const usage = shares.reduce((s, r) => ({ cpu: s.cpu + r.usage.milliCpus / total.milliCpus, mem: s.mem + r.usage.memMiB / total.memMiB }), { cpu: 0, mem: 0 })
      used.cpu += usage.cpu
      used.mem += usage.mem
      nextSample += 1000
    }
    now = Math.min(ends.peek(), nextSample)
  }
  const errors = samples.map((s) => Math.abs(s - want))
  return {
    nodes: cluster.nodes,
    weights,
    want,
    mean: mean(samples),
    meanError: mean(errors),
    maxError: Math.max(...errors),
    samples: samples.length,
    cpuUsed: used.cpu / samples.length,
    memUsed: used.mem / samples.length,
    decisionsPerS: placements / (coreMs / 1000),
  }
}

// ---------------------------------------------------------------------------

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((s, x) => s + x, 0) / xs.length
}

/** xs sorted ascending. */
function quantile(xs: readonly number[], q: number): number {
  return xs.length === 0 ? NaN : xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-'
}
