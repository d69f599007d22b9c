// The fuzz run: a real cluster (test/helpers/cluster.ts) in a temporary
// directory full of sentinel files; rounds of attacks on every daemon port,
// from a seed; between rounds and at the end, a real client's round trip,
// `loam report`, the namespace's invariants, the sentinel tree and the
// daemons' logs. Every failure carries the seed and the number of the attack
// that caused it, and `--seed S --attack N` replays that attack alone.
import { randomInt } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { LoamClient } from '../../src/client/client.js'
import { initChecksums } from '../../src/common/checksum.js'
import { parseAddress } from '../../src/common/address.js'
import { toLoamError } from '../../src/rpc/errors.js'
import { FrameKind } from '../../src/rpc/messages.js'
import { codecs } from '../../src/rpc/schema.js'
import { startCluster, type TestCluster } from '../helpers/cluster.js'
import { Cleanups, pattern } from '../helpers/data.js'
import { ALL_METHODS, ATTACKS, CALL_WAIT_MS, chooseAttack, probe, Slowloris, type AttackEnv, type Failure, type Recorder, type Target } from './attacks.js'
import { diffTrees, isAlive, LogScanner, logTail, namespaceProblems, roundTrip, rssBytes, SENTINEL_FILES, snapshotTree, within, type HealthFile } from './checks.js'
import { Rng } from '../helpers/rng.js'
import { attackSeed, ODD_NAMES, SANDBOX, SNAPSHOT_NAMES, VOLUME_NAMES, type World } from './generators.js'
import { RawConn, requestFrame } from './wire.js'

/** Attacks in flight at once (the machine has few cores, and the daemons need theirs). */
const LANES = 3
const SLOWLORIS_CONNECTIONS = 3
/** A round of attacks lasts a quarter of the run, within these bounds; a health check follows each. */
const ROUND_MS_MIN = 4_000
const ROUND_MS_MAX = 15_000
/** A health check (round trip, probes, invariants) finishes by then, or the cluster stopped serving. */
const HEALTH_MS = 90_000
const HEALTH_FILE_BYTES_MAX = 3 * 1024 * 1024
/** Health files read back every round (the newest ones). */
const HEALTH_FILES_KEPT = 8
/** A daemon whose resident memory passes this after hostile input holds on to what it was sent. */
const RSS_BYTES_MAX = 1536 * 1024 * 1024
const FAILURE_EXAMPLES_MAX = 3
const MUTATIONS_KEPT = 4000

export interface FuzzOptions {
  seconds: number
  seed?: number
  /** Run only these attacks, one after another, then the final checks (replay). */
  attacks?: number[]
  log?: (line: string) => void
  signal?: AbortSignal
  /** Copy the daemons' logs out before teardown: 'on-failure' (default), 'always' or 'never'. */
  keepLogs?: 'on-failure' | 'always' | 'never'
  onCluster?: (c: TestCluster) => void
}

export interface FailureGroup {
  kind: string
  role: string
  what: string
  count: number
  examples: Failure[]
}

export interface FuzzReport {
  seed: number
  seconds: number
  elapsedMs: number
  aborted: boolean
  attacks: number
  attacksByKind: Record<string, number>
  requests: Record<string, number>
  outcomes: Record<string, Record<string, number>>
  rounds: number
  rssMaxBytes: Record<string, number>
  failures: FailureGroup[]
  keptLogs?: string
  ok: boolean
}

class Stats implements Recorder {
  readonly requests: Record<string, number> = {}
  readonly outcomes: Record<string, Record<string, number>> = {}
  readonly attacksByKind: Record<string, number> = {}
  readonly groups = new Map<string, FailureGroup>()
  readonly mutations: Array<{ attack: number; summary: string }> = []
  attacks = 0

  constructor(
    private readonly roleOf: (target: string) => string,
    private readonly log: (line: string) => void,
  ) {}

  request(kind: string): void {
    this.requests[kind] = (this.requests[kind] ?? 0) + 1
  }
  outcome(kind: string, label: string): void {
    const o = (this.outcomes[kind] ??= {})
    o[label] = (o[label] ?? 0) + 1
  }
  fail(f: Failure): void {
    const role = this.roleOf(f.target)
    const kind = f.kind.split('/')[0]!
    // One group per kind of failure: the numbers in its words (counts, ports, sizes) vary between instances.
    const what = f.what.replace(/\d+/g, 'N')
    const key = `${kind}|${role}|${what}`
    let g = this.groups.get(key)
    if (!g) {
      g = { kind, role, what, count: 0, examples: [] }
      this.groups.set(key, g)
      this.log(`FAIL [${f.target}] ${f.kind}: ${f.what} (attack ${f.attack})`)
    }
    g.count++
    if (g.examples.length < FAILURE_EXAMPLES_MAX) g.examples.push(f)
  }
  mutated(attack: number, summary: string): void {
    this.mutations.push({ attack, summary })
    if (this.mutations.length > MUTATIONS_KEPT) this.mutations.shift()
  }
  attacked(kind: string): void {
    this.attacks++
    this.attacksByKind[kind] = (this.attacksByKind[kind] ?? 0) + 1
  }
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now()
  const seed = opts.seed ?? randomInt(0, 2 ** 31)
  const log = opts.log ?? (() => undefined)
  const cleanups = new Cleanups()
  const root = await mkdtemp(path.join(os.tmpdir(), 'loam-fuzz-'))
  const report: FuzzReport = { seed, seconds: opts.seconds, elapsedMs: 0, aborted: false, attacks: 0, attacksByKind: {}, requests: {}, outcomes: {}, rounds: 0, rssMaxBytes: {}, failures: [], ok: false }
  let stats: Stats | undefined
  let cluster: TestCluster | undefined
  try {
    await initChecksums()
    // Sentinels: files named as a daemon names its own, around the cluster's directory, that nothing may touch.
    for (const f of SENTINEL_FILES) {
      const p = path.join(root, 'sentinel', f)
      await mkdir(path.dirname(p), { recursive: true })
      await writeFile(p, `sentinel ${f}\n`)
    }
    // The cluster's directory is made inside root (startCluster uses the temp dir), and its daemons inherit TMPDIR=root.
    const tmpdir = process.env.TMPDIR
    process.env.TMPDIR = root
    try {
      cluster = await startCluster(cleanups, { nodes: 3, racks: 2, blockSize: '1MiB', heartbeat: '1s', deadAfter: '10s', logLevel: 'warn' })
    } finally {
      if (tmpdir === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = tmpdir
    }
    const c = cluster
    opts.onCluster?.(c)
    const since = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`
    log(`cluster up (${since()})`)
    const rec = c.record
    const nodes = rec.nodes.map((n, i) => ({ ...n, id: n.id ?? `dn${i + 1}` }))
    const targets: Target[] = [
      { name: 'namenode', role: 'namenode', rpc: parseAddress(rec.namenode.rpc), http: parseAddress(rec.namenode.http), pid: rec.namenode.pid },
      ...nodes.map((n) => ({ name: n.id, role: 'datanode' as const, rpc: parseAddress(n.rpc), http: parseAddress(n.http), pid: n.pid })),
      { name: 'scheduler', role: 'scheduler', rpc: parseAddress(rec.scheduler.rpc), http: parseAddress(rec.scheduler.http), pid: rec.scheduler.pid },
      // An agent shares its node's process (and HTTP port) with the datanode.
      ...nodes.map((n) => ({ name: `agent-${n.id}`, role: 'agent' as const, rpc: parseAddress(n.agentRpc!), http: parseAddress(n.http), pid: n.pid })),
    ]
    const logs = new Map<string, string>([['namenode', path.join(rec.namenode.data, 'log')], ['scheduler', path.join(rec.scheduler.data, 'log')], ...nodes.map((n) => [n.id, path.join(n.data, 'log')] as [string, string])])
    const logOf = (t: Target): string => logs.get(t.role === 'agent' ? t.name.slice('agent-'.length) : t.name)!
    const scanner = new LogScanner(logs)
    const world: World = { nodeIds: nodes.map((n) => n.id), realBlocks: [], dataDirs: new Map(nodes.map((n) => [n.id, n.data])) }
    const st = new Stats((name) => targets.find((t) => t.name === name)?.role ?? name, log)
    stats = st
    const before = await snapshotTree(root, [c.dir])
    const client = new LoamClient({ namenode: parseAddress(rec.namenode.rpc), timeoutMs: 15_000, shortCircuit: false })
    cleanups.teardown(() => client.close())
    const healthFiles: HealthFile[] = []
    const healthRng = new Rng(attackSeed(seed, -1))
    const fuzzEndMs = Date.now() + opts.seconds * 1000
    log(`loam fuzz: seed ${seed}, ${opts.seconds} s against a namenode, a scheduler and ${rec.nodes.length} nodes (datanode and agent) in ${c.dir}`)

    const fail = (what: string, detail: string, target = 'cluster'): void => st.fail({ kind: 'health', target, what, detail, attack: -1 })

    /** Every check between rounds; false when a daemon is gone (nothing more to learn from attacking). */
    const health = async (round: number, final: boolean): Promise<boolean> => {
      let up = true
      for (const t of targets) {
        if (!isAlive(t.pid)) {
          fail(`${t.role} process died`, `${t.name} (pid ${t.pid}); its log ends:\n${await logTail(logOf(t))}`, t.name)
          up = false
          continue
        }
        const rss = await rssBytes(t.pid)
        report.rssMaxBytes[t.name] = Math.max(report.rssMaxBytes[t.name] ?? 0, rss)
        if (rss > RSS_BYTES_MAX) fail(`${t.role} holds over ${RSS_BYTES_MAX >> 20} MiB of memory`, `${t.name}: ${rss >> 20} MiB resident`, t.name)
      }
      if (!up) return false
      try {
        await within(HEALTH_MS, 'the health check', async () => {
          // Each daemon answers a fresh connection at once, and its HTTP status page.
          for (const t of targets) {
            const conn = await RawConn.open(t.rpc).catch((err: Error) => err)
            if (conn instanceof Error) {
              fail(`${t.role} does not accept connections`, `${t.name}: ${conn.message}`, t.name)
              continue
            }
            const p = t.role === 'namenode' ? { method: 'DatanodeReport', body: codecs.Empty.encode({}), expectKind: FrameKind.RESPONSE } : probe(t)
            conn.send(requestFrame(1, p.method, p.body))
            const answer = await conn.final(1, CALL_WAIT_MS)
            conn.destroy()
            if (answer === 'timeout' || answer === 'closed') fail(`${t.role} stopped answering`, `${t.name}: a valid call on a fresh connection: ${answer === 'closed' ? 'closed' : `no answer in ${CALL_WAIT_MS} ms`}`, t.name)
            else if (answer.header.kind !== p.expectKind) fail(`${t.role} answers a valid call wrongly`, `${t.name}: ${JSON.stringify(answer.header.error)}`, t.name)
            // The scheduler's /status is its cluster state; an agent's HTTP port is its node's (checked as the datanode's).
            if (t.role === 'scheduler' || t.role === 'agent') continue
            try {
              const res = await fetch(`http://${t.http.host}:${t.http.port}/status`, { signal: AbortSignal.timeout(CALL_WAIT_MS) })
              const json = (await res.json()) as { role?: string }
              if (res.status !== 200 || json.role !== t.role) fail(`${t.role}'s /status is wrong`, `${t.name}: HTTP ${res.status} ${JSON.stringify(json).slice(0, 200)}`, t.name)
            } catch (err) {
              fail(`${t.role}'s /status does not answer`, `${t.name}: ${(err as Error).message}`, t.name)
            }
          }
          // A real client: mkdir, put, stat, get, and every recent health file still reads back the same.
          // The first file has several blocks: their ids are what the datanode attacks aim at.
          const size = round === 0 ? HEALTH_FILE_BYTES_MAX - 5 : healthRng.pick([0, 1, 65_536, 1024 * 1024, 1024 * 1024 + 1, healthRng.int(0, HEALTH_FILE_BYTES_MAX)])
          try {
            const r = await roundTrip(client, round, size, healthFiles.slice(-HEALTH_FILES_KEPT))
            for (const p of r.problems) fail('a real client read back something other than it wrote', p)
            healthFiles.push(r.file)
            world.realBlocks = r.blocks
          } catch (err) {
            const e = toLoamError(err)
            fail('a real client could not mkdir/put/stat/get', `round ${round}: ${e.code}: ${e.message}`)
          }
          const dn = await client.report().catch((err: unknown) => toLoamError(err))
          if (dn instanceof Error) fail('DatanodeReport failed', `${dn.code}: ${dn.message}`)
          else {
            if (dn.safemode) fail('the namenode went into safe mode', JSON.stringify(dn).slice(0, 300))
            const notLive = world.nodeIds.filter((id) => !dn.datanodes.some((d) => d.id === id && d.state === 'live'))
            if (notLive.length > 0) fail('a datanode is not live', `${notLive.join(', ')}: ${JSON.stringify(dn.datanodes.map((d) => [d.id, d.state]))}`)
          }
          const problems = await namespaceProblems(client, final)
          for (const p of problems) {
            const suspects = st.mutations.filter((mm) => /volumes|snapshots|Volume|Snapshot/.test(mm.summary)).slice(-5)
            fail(`the namespace breaks an invariant: ${p.replace(/'.*$|[0-9]+/g, '').slice(0, 80)}`, `${p}${suspects.length ? `\n      successful calls that may have done it:\n${suspects.map((s) => `        attack ${s.attack}: ${s.summary}`).join('\n')}` : ''}`)
          }
        })
      } catch (err) {
        fail('a daemon stopped serving', (err as Error).message)
      }
      const changed = diffTrees(before, await snapshotTree(root, [c.dir]))
      for (const line of changed) fail('a file outside the cluster directory was touched', line)
      for (const f of await scanner.scan()) fail(`the ${f.role === 'namenode' || f.role === 'scheduler' ? f.role : 'datanode'} logged ${f.what.slice(0, 100)}`, `${f.role}: ${f.line}`, f.role)
      return true
    }

    const env = (attack: number): AttackEnv => ({ targets, world, rec: st, rng: new Rng(attackSeed(seed, attack)), attack, untilMs: Math.max(fuzzEndMs, Date.now() + 10_000) })
    const runAttack = async (i: number): Promise<void> => {
      const e = env(i)
      const { kind, target, method } = chooseAttack(i, e.rng, targets)
      e.method = method
      st.attacked(kind.name)
      try {
        await kind.run(e, target)
      } catch (err) {
        st.fail({ kind: kind.name, target: target.name, what: 'the fuzzer itself threw', detail: (err as Error).stack ?? String(err), attack: i })
      }
    }

    await seedSandbox(client)
    log(`sandbox seeded (${since()})`)
    let alive = await health(0, false)
    log(`first health check done (${since()})`)
    report.rounds = 1
    if (opts.attacks) {
      for (const i of opts.attacks) {
        const { kind, target, method } = chooseAttack(i, env(i).rng, targets)
        log(`attack ${i}: ${kind.name}${method ? ` (${method})` : ''} on ${target.name}`)
        await runAttack(i)
      }
    } else if (alive) {
      const slow = new Slowloris(env(-2))
      await slow.start(SLOWLORIS_CONNECTIONS)
      const roundMs = Math.min(ROUND_MS_MAX, Math.max(ROUND_MS_MIN, (opts.seconds * 1000) / 4))
      let next = 0
      while (alive && Date.now() < fuzzEndMs && !opts.signal?.aborted) {
        const until = Math.min(fuzzEndMs, Date.now() + roundMs)
        const lane = async (): Promise<void> => {
          while (Date.now() < until && !opts.signal?.aborted) await runAttack(next++)
        }
        await Promise.all(Array.from({ length: LANES }, lane))
        alive = await health(report.rounds, false)
        report.rounds++
        log(`round ${report.rounds - 1}: ${st.attacks} attacks, ${Object.values(st.requests).reduce((s, n) => s + n, 0)} requests, ${st.groups.size} kinds of failure so far (${Math.round((Date.now() - started) / 1000)} s)`)
      }
      await slow.stop()
    }
    report.aborted = opts.signal?.aborted ?? false
    log(`attacks over (${since()})`)
    if (alive) {
      alive = await health(report.rounds, true)
      report.rounds++
      log(`final health check done (${since()})`)
    }
    if (alive) {
      // The command-line client too: report, put, cat, stat.
      const r = await c.loam(['report'])
      const m = /(\d+) of (\d+) datanodes live/.exec(r.stdout.toString())
      if (r.code !== 0 || !m || Number(m[1]) < world.nodeIds.length) st.fail({ kind: 'health', target: 'cluster', what: "'loam report' fails or shows a datanode down", detail: `exit ${r.code}: ${r.stdout.toString().trim()} ${r.stderr.trim()}`, attack: -1 })
      const data = pattern(1024 * 1024 + 17, seed)
      const put = await c.loam(['fs', 'put', '-', '/health/final'], { input: data })
      const cat = put.code === 0 ? await c.loam(['fs', 'cat', '/health/final']) : put
      const stat = put.code === 0 ? await c.loam(['fs', 'stat', '/health/final']) : put
      if (put.code !== 0 || cat.code !== 0 || !cat.stdout.equals(data) || stat.code !== 0) st.fail({ kind: 'health', target: 'cluster', what: "'loam fs put/cat/stat' failed at the end", detail: `put ${put.code} ${put.stderr.trim()}; cat ${cat.code} ${cat.stdout.length} bytes ${cat.stderr.trim()}; stat ${stat.code} ${stat.stderr.trim()}`, attack: -1 })
      log(`loam report, fs put, cat, stat done (${since()})`)
    }
  } finally {
    report.elapsedMs = Date.now() - started
    if (stats) {
      report.attacks = stats.attacks
      report.attacksByKind = stats.attacksByKind
      report.requests = stats.requests
      report.outcomes = stats.outcomes
      report.failures = [...stats.groups.values()]
    }
    report.ok = report.failures.length === 0 && cluster !== undefined
    const keep = opts.keepLogs ?? 'on-failure'
    if (cluster && (keep === 'always' || (keep === 'on-failure' && !report.ok))) {
      report.keptLogs = await mkdtemp(path.join(os.tmpdir(), 'loam-fuzz-logs-'))
      const rec = cluster.record
      const files: Array<[string, string]> = [['namenode.log', path.join(rec.namenode.data, 'log')], ...rec.nodes.map((n, i) => [`${n.id ?? `dn${i + 1}`}.log`, path.join(n.data, 'log')] as [string, string]), ['cluster-up.log', path.join(cluster.dir, 'cluster-up.log')]]
      for (const [name, from] of files) await copyFile(from, path.join(report.keptLogs, name)).catch(() => undefined)
    }
    await cleanups.run().catch(() => undefined)
    await rm(root, { recursive: true, force: true })
  }
  return report
}

/** Something for the attacks to hit: directories and files with odd names in the sandbox, and volumes with a snapshot. */
async function seedSandbox(client: LoamClient): Promise<void> {
  const quietly = <T>(p: Promise<T>): Promise<T | undefined> => p.catch(() => undefined)
  // Writable by every user the hostile headers name (and sticky), so their calls reach past the permission checks.
  await client.mkdirs(SANDBOX, { parents: true, mode: 0o1777 })
  await client.chmod(SANDBOX, 0o1777)
  await Promise.all(ODD_NAMES.map((name) => quietly(client.mkdirs(`${SANDBOX}/${name}/${name}`, { parents: true, mode: 0o777 }))))
  const files = async (dir: string, names: readonly string[]): Promise<void> => {
    await Promise.all(
      names.map(async (name) => {
        const w = await quietly(client.create(`${dir}/${name}/f`, { overwrite: true, createParents: true, replication: 1 }))
        if (w) {
          await quietly(w.write(pattern(100, name.length)))
          await quietly(w.close())
        }
      }),
    )
  }
  await files(SANDBOX, ODD_NAMES.slice(0, 4))
  await Promise.all(
    VOLUME_NAMES.slice(0, 2).map(async (name) => {
      await quietly(client.nn.call('CreateVolume', { name, sizeBytes: 64 * 1024 * 1024, replication: 0, blockSizeBytes: 0 }))
      await files(`/volumes/${name}`, ['a'])
      await quietly(client.nn.call('SnapshotVolume', { volume: name, snapshot: SNAPSHOT_NAMES[0]! }))
    }),
  )
}

export function formatReport(r: FuzzReport): string[] {
  const lines: string[] = []
  const secs = (ms: number): string => `${Math.round(ms / 1000)} s`
  lines.push(`loam fuzz: seed ${r.seed}, ${r.seconds} s of attacks (${secs(r.elapsedMs)} in all), ${r.attacks} attacks, ${r.rounds} health checks${r.aborted ? ', ABORTED' : ''}`)
  lines.push(`attacks by kind: ${Object.entries(r.attacksByKind).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`)
  const covered = new Set(Object.keys(r.requests).map((k) => (k.startsWith('write/') ? 'WriteBlock' : k === 'read' ? 'ReadBlock' : k.split('/').pop()!)))
  const all = Object.values(ALL_METHODS).flat()
  const missing = all.filter((mm) => !covered.has(mm))
  lines.push(`methods called with hostile arguments: ${all.length - missing.length} of ${all.length}${missing.length ? ` (not this run: ${missing.join(', ')})` : ''}`)
  lines.push('requests and outcomes:')
  const width = Math.max(...Object.keys(r.requests).map((k) => k.length), 10)
  for (const [kind, n] of Object.entries(r.requests).sort((a, b) => a[0].localeCompare(b[0]))) {
    const o = r.outcomes[kind] ?? {}
    lines.push(`  ${kind.padEnd(width)} ${String(n).padStart(6)}  ${Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k} ${c}`).join(', ')}`)
  }
  lines.push(`peak memory: ${Object.entries(r.rssMaxBytes).map(([k, b]) => `${k} ${b >> 20} MiB`).join(', ')}`)
  if (r.failures.length === 0) {
    lines.push('no failures: every daemon stayed up and serving, every bad request got a typed error or a closed connection, nothing outside the cluster was touched')
  } else {
    lines.push(`FAILURES: ${r.failures.length} kinds, ${r.failures.reduce((s, f) => s + f.count, 0)} in all`)
    for (const f of r.failures) {
      lines.push(`  [${f.role}] ${f.kind}: ${f.what}  (x${f.count})`)
      for (const e of f.examples) {
        lines.push(`      ${e.attack >= 0 ? `attack ${e.attack}` : e.attack === -2 ? 'slowloris lane' : 'health check'} on ${e.target}: ${e.detail.split('\n').join('\n      ')}`)
        if (e.attack >= 0) lines.push(`      replay: npm run fuzz -- --seed ${r.seed} --attack ${e.attack}`)
      }
    }
    lines.push(`seed ${r.seed}: npm run fuzz -- --seconds ${r.seconds} --seed ${r.seed}`)
  }
  if (r.keptLogs) lines.push(`daemon logs kept in ${r.keptLogs}`)
  return lines
}

export { ATTACKS }
