// recovery: how fast a dead datanode's replicas come back, and what that costs
// the clients. One cluster (4 datanodes in 2 racks, replication 3), one run:
//
// 1. a reference write of one file at replication 3 through the client library
//    (dfsio's write, on this cluster, in this run);
// 2. files written until one datanode holds --size of replicas;
// 3. kill -9 that datanode: the time from the kill, and from the namenode
//    declaring it dead, until every block has 3 live replicas again, and so the
//    re-replication rate in MB/s beside the reference write rate;
// 4. the node restarted and the cluster settled: a client write with nothing
//    else running (A); then another datanode killed and, as soon as it is
//    declared dead, the same write while its replicas are copied (B). B / A is
//    what re-replication costs a writer; how much of B overlapped the recovery
//    is measured, not assumed.
//
// Every wait is bounded (--max-wait); the cluster and its directory go
// whatever happens (the caller's Cleanup).
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import type { ClusterRecord } from '../src/cli/cluster.js'
import type { LoamClient } from '../src/client/client.js'
import { fsck, type FsckReport } from '../src/client/fsck.js'
import { formatBytes } from '../src/common/units.js'
import { sleep, startCluster, type TestCluster } from '../test/helpers/cluster.js'
import { CpuMeter, fixed, formatCpu, log, mbPerS, noteLoad, Pattern, PIECE_BYTES, table, Verifier, writeResults, type Cleanup, type CpuGroups } from './lib.js'

export interface RecoveryOptions {
  /** Replica bytes the first victim must hold when it is killed. */
  sizeBytes: number
  /** The reference write and each of the writes A and B. */
  writeBytes: number
  blockSizeBytes: number
  /** Bound on every wait: a node declared dead, replication restored, the cluster settling. */
  maxWaitMs: number
  verify: boolean
  /** Of every role: warn keeps the logs (and the run) quiet; info shows each copy. */
  logLevel: string
  /** Where to copy every role's log before the cluster's directory goes (none when undefined). */
  logsDir?: string
}

const NODES = 4
const RACKS = 2
const REPLICATION = 3
const HEARTBEAT = '1s'
const DEAD_AFTER = '5s'
/** Files written to load the cluster hold at most this many blocks each. */
const LOAD_FILE_BLOCKS_MAX = 4
/** How often the namenode is asked whether the victim is dead yet (a cheap call). */
const DEAD_POLL_MS = 100
/** How often fsck and the datanodes' /status are sampled while replicas are copied. */
const SAMPLE_MS = 250
const STATUS_TIMEOUT_MS = 2000
/** Idle time (blocks short, nothing copying) worth a line on stderr. */
const IDLE_NOTE_MS = 2000
/** Under-replicated blocks named in a sample once no more than this many are left. */
const STRAGGLERS_SHOWN_MAX = 4
const CLIENT_TIMEOUT_MS = 30_000
/** Warnings and errors kept from each log for the JSON (the counts cover all of them). */
const LOG_LINES_KEPT = 20

interface Phase {
  name: string
  bytes: number
  ms: number
  mbPerS: number
  /** To the reference write rate. */
  ratio: number
  cpu: Record<string, number>
}

/** One look at the cluster while replicas are being copied; tMs counts from the kill. */
interface Sample {
  tMs: number
  underReplicatedBlocks: number
  /** Bytes of replicas still to be copied: (expected - live) x length, summed over blocks. */
  missingBytes: number
  /** Block transfers in progress over the live datanodes (a copy is two: its source and its target; a client pipeline one per node). */
  activeTransfers: number
  perNodeTransfers: Record<string, number>
  fsckMs: number
  /** The blocks still short of replicas, once there are few of them: where a tail stalls. */
  stragglers?: Array<{ id: number; path: string; replicas: string[] }>
}

interface Recovery {
  victim: string
  victimBytes: number
  victimBlocks: number
  killToDeadMs: number
  /** From the dead declaration until fsck first shows fewer replicas missing. */
  deadToFirstCopyMs: number
  deadToHealthyMs: number
  killToHealthyMs: number
  /** Time (between samples) with blocks under-replicated and no transfer in progress anywhere: waiting, not copying. */
  idleMs: number
  /** victimBytes / deadToHealthyMs. */
  mbPerS: number
  /** victimBytes / (deadToHealthyMs - idleMs): the rate while anything was being copied. */
  busyMbPerS: number
  peakActiveTransfers: number
  peakTransfersPerNode: Record<string, number>
  samples: Sample[]
  cpu: Record<string, number>
}

/** A write's progress: bytes handed to the writer by then (the pipeline holds a few MiB more than are acknowledged). */
interface Progress {
  tMs: number
  bytes: number
}

interface NodeHolding {
  bytes: number
  blocks: number
}

export async function runRecovery(cleanup: Cleanup, opts: RecoveryOptions): Promise<void> {
  const startedAt = new Date()
  const loadAtStart = noteLoad('at the start')
  const pattern = new Pattern()
  const blockMiB = opts.blockSizeBytes / 2 ** 20

  log(`recovery: starting a cluster (namenode + ${NODES} datanodes in ${RACKS} racks, replication ${REPLICATION}, ${blockMiB} MiB blocks, --heartbeat ${HEARTBEAT} --dead-after ${DEAD_AFTER}, --log-level ${opts.logLevel})`)
  const cluster = await startCluster(cleanup, {
    nodes: NODES,
    racks: RACKS,
    heartbeat: HEARTBEAT,
    deadAfter: DEAD_AFTER,
    replication: REPLICATION,
    blockSize: `${opts.blockSizeBytes}`,
    logLevel: opts.logLevel,
  })
  // Cleanup runs newest first: the logs are copied before the cluster and its directory go, also on failure.
  const logsDir = opts.logsDir
  if (logsDir) cleanup.teardown(() => keepLogs(cluster.record, logsDir))
  // An off-cluster client: placement, not the writer's node, decides where each first replica goes. Here every
  // datanode shares one disk, so "prefer free space" sees near-equal figures and the spread varies from run to run.
  const client = cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
  const watcher = cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
  await client.mkdirs('/recovery', { parents: true })
  const phases: Phase[] = []
  const files: Array<{ path: string; bytes: number }> = []
  let fileNo = 0
  const write = async (name: string, bytes: number, cpuGroups: CpuGroups, progress?: Progress[]): Promise<Phase> => {
    const p = `/recovery/f${String(fileNo++).padStart(3, '0')}.bin`
    const cpu = new CpuMeter(cpuGroups)
    const ms = await writeFile(client, p, bytes, opts.blockSizeBytes, pattern, progress)
    const phase: Phase = { name, bytes, ms, mbPerS: mbPerS(bytes, ms), ratio: NaN, cpu: cpu.stop() }
    files.push({ path: p, bytes })
    log(`  ${name}: ${formatBytes(bytes)} in ${fixed(ms / 1000, 2)} s, ${fixed(phase.mbPerS)} MB/s`)
    return phase
  }

  // 1. The reference: dfsio's write at replication 3, on this cluster, now.
  log('recovery: reference write')
  const reference = await write(`reference write, replication ${REPLICATION}`, opts.writeBytes, groups(cluster.record))
  reference.ratio = 1
  phases.push(reference)
  await expectAllReplicated(watcher, 'after the reference write')

  // 2. Load until one node holds --size of replicas.
  let holdings = byNode(await fsck(watcher, '/'))
  let loaded = 0
  const loadCpu = new CpuMeter(groups(cluster.record))
  const loadStart = performance.now()
  // With N nodes and replication R a node holds R/N of what is written; 4x --size is far past that.
  while (maxHolding(holdings).bytes < opts.sizeBytes) {
    if (loaded > 4 * opts.sizeBytes) throw new Error(`wrote ${formatBytes(loaded)} and no datanode holds ${formatBytes(opts.sizeBytes)} of replicas: placement is not spreading blocks as expected`)
    const shortBytes = ((opts.sizeBytes - maxHolding(holdings).bytes) * NODES) / REPLICATION
    const blocks = Math.min(LOAD_FILE_BLOCKS_MAX, Math.max(1, Math.ceil(shortBytes / opts.blockSizeBytes)))
    const p = `/recovery/f${String(fileNo++).padStart(3, '0')}.bin`
    await writeFile(client, p, blocks * opts.blockSizeBytes, opts.blockSizeBytes, pattern)
    files.push({ path: p, bytes: blocks * opts.blockSizeBytes })
    loaded += blocks * opts.blockSizeBytes
    holdings = byNode(await fsck(watcher, '/'))
  }
  if (loaded > 0) {
    const ms = performance.now() - loadStart
    const phase: Phase = { name: `load writes (${files.length - 1} file${files.length === 2 ? '' : 's'})`, bytes: loaded, ms, mbPerS: mbPerS(loaded, ms), ratio: NaN, cpu: loadCpu.stop() }
    phase.ratio = phase.mbPerS / reference.mbPerS
    phases.push(phase)
    log(`  ${phase.name}: ${formatBytes(loaded)} in ${fixed(ms / 1000, 2)} s, ${fixed(phase.mbPerS)} MB/s`)
  }
  await expectAllReplicated(watcher, 'after loading')
  log(`recovery: replicas held: ${[...holdings].map(([id, h]) => `${id} ${formatBytes(h.bytes)} (${h.blocks} blocks)`).join(', ')}`)

  // 3. Kill -9 the fullest node; time until every block has its replicas back.
  const first = await killAndRecover(cluster, watcher, opts, 'first')
  phases.push(recoveryPhase(`re-replication of ${first.victim}, dead -> healthy`, first, first.deadToHealthyMs, reference))
  phases.push(recoveryPhase(`re-replication of ${first.victim}, kill -> healthy`, first, first.killToHealthyMs, reference))
  await expectAllReplicated(watcher, `after re-replicating ${first.victim}`)

  // 4. Restart it, let the excess replicas go, then write with and without recovery running.
  const firstIndex = cluster.record.nodes.findIndex((n) => n.id === first.victim)
  log(`recovery: restarting ${first.victim} and waiting for its excess replicas to be removed`)
  const restartStart = performance.now()
  await cluster.restartNode(firstIndex)
  await waitSettled(watcher, opts.maxWaitMs)
  const settleMs = performance.now() - restartStart
  log(`  ${first.victim} back and every block at exactly ${REPLICATION} replicas after ${fixed(settleMs / 1000, 1)} s`)

  const calm = await write('client write, no recovery running (A)', opts.writeBytes, groups(cluster.record))
  calm.ratio = calm.mbPerS / reference.mbPerS
  phases.push(calm)
  await expectAllReplicated(watcher, 'after write A')

  let during: Phase | undefined
  let duringWindow = { startMs: 0, endMs: 0 }
  // Write B's progress, in ms from the kill: how many bytes it had written when replication was restored.
  const progress: Progress[] = []
  const second = await killAndRecover(cluster, watcher, opts, 'second', async (t0, victim) => {
    // Declared dead: re-replication is being planned now. The same write as A, at once.
    const startMs = performance.now() - t0
    const raw: Progress[] = []
    during = await write('client write during re-replication (B)', opts.writeBytes, groups(cluster.record, victim), raw)
    duringWindow = { startMs, endMs: performance.now() - t0 }
    progress.push(...raw.map((p) => ({ tMs: p.tMs - t0, bytes: p.bytes })))
  })
  if (!during) throw new Error('the write during re-replication did not run')
  const b: Phase = during
  b.ratio = b.mbPerS / reference.mbPerS
  phases.push(b)

  // How much of write B ran while replicas were still being copied, and its rate over that part alone.
  const healthyAtMs = second.killToHealthyMs
  const overlapMs = Math.max(0, Math.min(healthyAtMs, duringWindow.endMs) - duringWindow.startMs)
  const overlap = overlapMs / (duringWindow.endMs - duringWindow.startMs)
  const duringSamples = second.samples.filter((s) => s.tMs >= duringWindow.startMs && s.tMs <= duringWindow.endMs)
  const copiedDuringWrite = duringSamples.length > 1 ? duringSamples[0]!.missingBytes - duringSamples[duringSamples.length - 1]!.missingBytes : NaN
  const overlapBytes = [...progress].reverse().find((p) => p.tMs <= duringWindow.startMs + overlapMs)?.bytes ?? 0
  const overlapped: Phase = { name: 'client write B, the part while re-replication ran', bytes: overlapBytes, ms: overlapMs, mbPerS: mbPerS(overlapBytes, overlapMs), ratio: NaN, cpu: {} }
  overlapped.ratio = overlapped.mbPerS / reference.mbPerS
  if (overlapMs > 0 && overlap < 1) phases.push(overlapped)
  phases.push(recoveryPhase(`re-replication of ${second.victim} beside write B, dead -> healthy`, second, second.deadToHealthyMs, reference))
  await expectAllReplicated(watcher, `after re-replicating ${second.victim}`)
  const writeRatio = b.mbPerS / calm.mbPerS
  const overlappedRatio = overlapped.mbPerS / calm.mbPerS
  if (overlap < 0.5) log(`recovery: write B overlapped re-replication for only ${Math.round(overlap * 100)}% of its time: its rate is mostly that of a calm cluster; try a larger --write-size`)

  // Nothing was lost: every file reads back as written, through the replicas that are left and those copied.
  let verifyMs = NaN
  if (opts.verify) {
    const t = performance.now()
    for (const f of files) await readBack(watcher, f.path, f.bytes, pattern)
    verifyMs = performance.now() - t
    log(`recovery: ${files.length} files (${formatBytes(files.reduce((s, f) => s + f.bytes, 0))}) read back and verified in ${fixed(verifyMs / 1000, 1)} s`)
  }

  const logs = await readLogs(cluster.record)

  const out = table(
    ['recovery', 'bytes', 'seconds', 'MB/s', 'x ref write', 'cpu bench', 'cpu nn', 'cpu dns', 'cpu other'],
    phases.map((p) => [p.name, formatBytes(p.bytes), fixed(p.ms / 1000, 2), fixed(p.mbPerS), fixed(p.ratio, 2), formatCpu(p.cpu.bench), formatCpu(p.cpu.namenode), formatCpu(p.cpu.datanodes), formatCpu(p.cpu.other)]),
    [false, true, true, true, true, true, true, true, true],
  )
  const timing = table(
    ['victim', 'held', 'blocks', 'kill->dead s', 'dead->1st copy s', 'dead->healthy s', 'idle s', 'MB/s', 'MB/s not idle', 'peak transfers', 'peak per node'],
    [first, second].map((r) => [
      r.victim,
      formatBytes(r.victimBytes),
      String(r.victimBlocks),
      fixed(r.killToDeadMs / 1000, 2),
      fixed(r.deadToFirstCopyMs / 1000, 2),
      fixed(r.deadToHealthyMs / 1000, 2),
      fixed(r.idleMs / 1000, 2),
      fixed(r.mbPerS),
      fixed(r.busyMbPerS),
      String(r.peakActiveTransfers),
      Object.entries(r.peakTransfersPerNode).map(([id, n]) => `${id}:${n}`).join(' '),
    ]),
    [false, true, true, true, true, true, true, true, true, true, false],
  )
  const headline = table(
    ['headline', 'value'],
    [
      ['reference write, replication 3', `${fixed(reference.mbPerS)} MB/s`],
      [
        `re-replication of ${formatBytes(first.victimBytes)} (dead -> healthy)`,
        `${fixed(first.mbPerS)} MB/s = ${fixed(first.mbPerS / reference.mbPerS, 2)} x reference write` +
          (first.idleMs > IDLE_NOTE_MS ? ` (${fixed(first.idleMs / 1000, 1)} s of it idle; ${fixed(first.busyMbPerS)} MB/s without)` : ''),
      ],
      ['client write during re-replication / without (B / A)', `${fixed(writeRatio, 2)} (${fixed(b.mbPerS)} / ${fixed(calm.mbPerS)} MB/s)`],
      ['share of write B with re-replication still running', `${Math.round(overlap * 100)}% (${formatBytes(Math.max(0, copiedDuringWrite))} copied meanwhile)`],
      ['client write while re-replication ran / without', `${fixed(overlappedRatio, 2)} (${fixed(overlapped.mbPerS)} / ${fixed(calm.mbPerS)} MB/s over the first ${fixed(overlapMs / 1000, 1)} s of B)`],
    ],
    [false, false],
  )
  const logLine = Object.entries(logs.counts).map(([k, n]) => `${n} x ${k}`).join('; ') || 'none'
  process.stdout.write(
    `\nrecovery: ${NODES} datanodes in ${RACKS} racks, replication ${REPLICATION}, block size ${blockMiB} MiB, heartbeat ${HEARTBEAT}, dead after ${DEAD_AFTER}; ` +
      `writes of ${formatBytes(opts.writeBytes)} in ${PIECE_BYTES / 2 ** 20} MiB pieces from an off-cluster client; MB = 10^6 bytes; cpu = cores busy on average ` +
      `(100% = one core) in this process (the client), the namenode, the live datanodes together, and everything else on the machine; ` +
      `transfers = block streams in progress on the live datanodes (a re-replication copy counts at its source and its target, a client write once on each node of its pipeline); ` +
      `idle = time with blocks under-replicated and no transfer in progress on any live datanode\n\n` +
      `${out}\n\n${timing}\n\n${headline}\n\nwarnings and errors in the cluster's logs: ${logLine}\n`,
  )
  const written = await writeResults('recovery', startedAt, {
    loadAverage1m: { start: loadAtStart, end: noteLoad('at the end') },
    options: opts,
    cluster: { nodes: NODES, racks: RACKS, replication: REPLICATION, heartbeat: HEARTBEAT, deadAfter: DEAD_AFTER },
    phases,
    recoveries: [first, second],
    restartSettleMs: settleMs,
    writeDuringRecovery: { ratioToCalm: writeRatio, overlappedRatioToCalm: overlappedRatio, overlap, overlapMs, overlapBytes, window: duringWindow, copiedBytesDuringWrite: copiedDuringWrite, progress },
    verify: { files: files.length, bytes: files.reduce((s, f) => s + f.bytes, 0), ms: verifyMs },
    logs,
  })
  process.stdout.write(`\nwrote ${written.join(' and ')}\n`)
}

/** The namenode and the datanodes now running, for CPU metering (a killed process would make a group unreadable). */
function groups(record: ClusterRecord, except?: string): CpuGroups {
  return { namenode: [record.namenode.pid], datanodes: record.nodes.filter((n) => n.id !== except).map((n) => n.pid) }
}

function recoveryPhase(name: string, r: Recovery, ms: number, reference: Phase): Phase {
  const rate = mbPerS(r.victimBytes, ms)
  return { name, bytes: r.victimBytes, ms, mbPerS: rate, ratio: rate / reference.mbPerS, cpu: r.cpu }
}

/**
 * Kills the live node holding the most replica bytes, waits for the namenode
 * to declare it dead (then runs `whileRecovering`, timed from the kill), and
 * samples until fsck is healthy.
 */
async function killAndRecover(cluster: TestCluster, watcher: LoamClient, opts: RecoveryOptions, which: string, whileRecovering?: (killedAt: number, victim: string) => Promise<void>): Promise<Recovery> {
  const report = await fsck(watcher, '/')
  const [victim, held] = maxEntry(byNode(report))
  const index = cluster.record.nodes.findIndex((n) => n.id === victim)
  if (index < 0) throw new Error(`fsck names a datanode ${victim} this cluster did not start`)
  const others = cluster.record.nodes.filter((n) => n.id !== victim)
  log(`recovery: kill -9 ${victim} (${which} victim: ${formatBytes(held.bytes)} in ${held.blocks} blocks)`)

  const killedAt = performance.now()
  await cluster.killNode(index)
  const deadline = killedAt + opts.maxWaitMs
  for (;;) {
    const r = await watcher.report()
    if (r.datanodes.find((d) => d.id === victim)?.state === 'dead') break
    if (performance.now() > deadline) throw new Error(`${victim} was not declared dead within ${opts.maxWaitMs / 1000} s of the kill (dead-after ${DEAD_AFTER})`)
    await sleep(DEAD_POLL_MS)
  }
  const deadAt = performance.now()
  log(`  ${victim} declared dead ${fixed((deadAt - killedAt) / 1000, 2)} s after the kill`)

  const cpu = new CpuMeter(groups(cluster.record, victim))
  const samples: Sample[] = []
  let healthyAt = NaN
  let firstCopyAt = NaN
  let sampleError: Error | undefined
  let done = false
  const sampling = (async () => {
    while (!done) {
      const t = performance.now()
      const f = await fsck(watcher, '/')
      const fsckMs = performance.now() - t
      const perNodeTransfers: Record<string, number> = {}
      await Promise.all(others.map(async (n) => (perNodeTransfers[n.id!] = await activeTransfers(n.http))))
      const short = f.blocks.filter((b) => b.replicas.length < b.expected)
      const missingBytes = short.reduce((s, b) => s + (b.expected - b.replicas.length) * b.length, 0)
      const under = short.length
      const now = performance.now()
      const sample: Sample = { tMs: now - killedAt, underReplicatedBlocks: under, missingBytes, activeTransfers: Object.values(perNodeTransfers).reduce((s, v) => s + v, 0), perNodeTransfers, fsckMs }
      if (under > 0 && under <= STRAGGLERS_SHOWN_MAX) sample.stragglers = short.map((b) => ({ id: b.id, path: b.path, replicas: b.replicas.map((r) => r.node) }))
      samples.push(sample)
      if (Number.isNaN(firstCopyAt) && samples.length > 1 && missingBytes < samples[0]!.missingBytes) firstCopyAt = now
      if (f.healthy) {
        healthyAt = now
        if (Number.isNaN(firstCopyAt)) firstCopyAt = now
        return
      }
      if (now > deadAt + opts.maxWaitMs) throw new Error(`replication was not restored within ${opts.maxWaitMs / 1000} s of ${victim} being declared dead: ${under} blocks still under-replicated (${formatBytes(missingBytes)} of replicas missing)`)
      await sleep(SAMPLE_MS)
    }
  })().catch((err: Error) => {
    sampleError = err
  })
  try {
    if (whileRecovering) await whileRecovering(killedAt, victim)
    await sampling
  } finally {
    done = true
    await sampling
  }
  if (sampleError) throw sampleError
  const cpuUse = cpu.stop()
  const peakTransfersPerNode: Record<string, number> = {}
  for (const s of samples) for (const [id, n] of Object.entries(s.perNodeTransfers)) peakTransfersPerNode[id] = Math.max(peakTransfersPerNode[id] ?? 0, n)
  let idleMs = 0
  for (let i = 1; i < samples.length; i++) {
    const prev = samples[i - 1]!
    if (prev.underReplicatedBlocks > 0 && prev.activeTransfers === 0) idleMs += samples[i]!.tMs - prev.tMs
  }
  const start = samples[0]?.missingBytes ?? 0
  if (start !== held.bytes) log(`recovery: ${victim} held ${held.bytes} bytes of replicas, but ${start} bytes showed missing once it was dead`)
  const out: Recovery = {
    victim,
    victimBytes: held.bytes,
    victimBlocks: held.blocks,
    killToDeadMs: deadAt - killedAt,
    deadToFirstCopyMs: firstCopyAt - deadAt,
    deadToHealthyMs: healthyAt - deadAt,
    killToHealthyMs: healthyAt - killedAt,
    idleMs,
    mbPerS: mbPerS(held.bytes, healthyAt - deadAt),
    busyMbPerS: mbPerS(held.bytes, healthyAt - deadAt - idleMs),
    peakActiveTransfers: Math.max(0, ...samples.map((s) => s.activeTransfers)),
    peakTransfersPerNode,
    samples,
    cpu: cpuUse,
  }
  log(`  replication restored ${fixed(out.deadToHealthyMs / 1000, 2)} s after the dead declaration (${fixed(out.killToHealthyMs / 1000, 2)} s after the kill): ${fixed(out.mbPerS)} MB/s; peak ${out.peakActiveTransfers} transfers in progress`)
  if (idleMs > IDLE_NOTE_MS) {
    const stuck = samples.find((s) => s.underReplicatedBlocks > 0 && s.activeTransfers === 0)
    log(`  for ${fixed(idleMs / 1000, 1)} s blocks were under-replicated and no datanode was copying anything (${stuck?.stragglers?.map((b) => `block ${b.id} of ${b.path} on ${b.replicas.join(', ')}`).join('; ') ?? `${stuck?.underReplicatedBlocks} blocks`}): the namenode was waiting, not copying`)
  }
  return out
}

/** The number of block transfers a datanode says it has in progress, or NaN if it does not answer. */
async function activeTransfers(http: string): Promise<number> {
  try {
    const res = await fetch(`http://${http}/status`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) })
    const body = (await res.json()) as { activeTransfers?: number }
    return body.activeTransfers ?? NaN
  } catch {
    return NaN
  }
}

/** Replica bytes and blocks each live node holds, from an fsck report. */
function byNode(report: FsckReport): Map<string, NodeHolding> {
  const out = new Map<string, NodeHolding>()
  for (const b of report.blocks) {
    for (const r of b.replicas) {
      const h = out.get(r.node) ?? { bytes: 0, blocks: 0 }
      h.bytes += b.length
      h.blocks++
      out.set(r.node, h)
    }
  }
  return out
}

function maxEntry(holdings: Map<string, NodeHolding>): [string, NodeHolding] {
  const sorted = [...holdings].sort((a, b) => b[1].bytes - a[1].bytes || a[0].localeCompare(b[0]))
  if (!sorted[0]) throw new Error('no datanode holds any replica')
  return sorted[0]
}

function maxHolding(holdings: Map<string, NodeHolding>): NodeHolding {
  return holdings.size === 0 ? { bytes: 0, blocks: 0 } : maxEntry(holdings)[1]
}

/** A figure is only worth reporting if every block really has its replicas. */
async function expectAllReplicated(client: LoamClient, when: string): Promise<void> {
  const report = await fsck(client, '/')
  const bad = report.blocks.filter((b) => b.replicas.length < b.expected)
  if (bad.length > 0 || !report.healthy) throw new Error(`${when}: ${bad.length} blocks have fewer than their replicas (${bad.slice(0, 3).map((b) => `${b.id}: ${b.replicas.length}/${b.expected} ${b.state}`).join(', ')})`)
}

/** Every block at exactly its replication: the restarted node's extra copies are gone. */
async function waitSettled(client: LoamClient, maxWaitMs: number): Promise<void> {
  const deadline = performance.now() + maxWaitMs
  for (;;) {
    const report = await fsck(client, '/')
    const off = report.blocks.filter((b) => b.replicas.length !== b.expected)
    if (report.healthy && off.length === 0) return
    if (performance.now() > deadline) throw new Error(`the cluster did not settle within ${maxWaitMs / 1000} s of the restart: ${off.length} blocks not at their replication`)
    await sleep(SAMPLE_MS)
  }
}

async function writeFile(client: LoamClient, p: string, bytes: number, blockSizeBytes: number, pattern: Pattern, progress?: Progress[]): Promise<number> {
  const buf = pattern.buffer()
  const t0 = performance.now()
  const w = await client.create(p, { replication: REPLICATION, blockSizeBytes, overwrite: true })
  try {
    for (let i = 0, pos = 0; pos < bytes; i++, pos += PIECE_BYTES) {
      // write() copies what it is given before it resolves, so the buffer can be stamped again.
      const n = Math.min(PIECE_BYTES, bytes - pos)
      await w.write(pattern.piece(i, buf).subarray(0, n))
      progress?.push({ tMs: performance.now(), bytes: pos + n })
    }
    await w.close()
    progress?.push({ tMs: performance.now(), bytes })
  } catch (err) {
    w.abort(err as Error)
    throw err
  }
  return performance.now() - t0
}

async function readBack(client: LoamClient, p: string, bytes: number, pattern: Pattern): Promise<void> {
  const verifier = new Verifier(pattern, bytes, p)
  const reader = await client.open(p)
  for await (const piece of reader.read()) verifier.check(piece)
  verifier.finish()
}

/** Warnings and errors (pino level >= 40) in the namenode's and datanodes' logs, counted by role and message. */
async function readLogs(record: ClusterRecord): Promise<{ counts: Record<string, number>; lines: Record<string, string[]> }> {
  const counts: Record<string, number> = {}
  const lines: Record<string, string[]> = {}
  const roles = [{ id: 'namenode', data: record.namenode.data }, ...record.nodes.map((n) => ({ id: n.id ?? '?', data: n.data }))]
  for (const role of roles) {
    const text = await readFile(path.join(role.data, 'log'), 'utf8').catch(() => '')
    for (const line of text.split('\n')) {
      if (!line.trim()) continue
      let rec: { level?: number; msg?: string }
      try {
        rec = JSON.parse(line) as { level?: number; msg?: string }
      } catch {
        rec = { level: 50, msg: line.slice(0, 200) }
      }
      if ((rec.level ?? 0) < 40) continue
      const key = `${role.id}: ${rec.msg ?? '?'}`
      counts[key] = (counts[key] ?? 0) + 1
      const kept = (lines[role.id] ??= [])
      if (kept.length < LOG_LINES_KEPT) kept.push(line)
    }
  }
  return { counts, lines }
}

async function keepLogs(record: ClusterRecord, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  const roles = [{ id: 'namenode', data: record.namenode.data }, ...record.nodes.map((n) => ({ id: n.id ?? '?', data: n.data }))]
  for (const role of roles) await copyFile(path.join(role.data, 'log'), path.join(dir, `${role.id}.log`)).catch(() => undefined)
  log(`recovery: the roles' logs are in ${dir}`)
}
