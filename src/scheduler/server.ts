// The scheduler daemon: agents register and heartbeat; jobs are submitted as
// JSON specs, split into one task per input block, placed by SchedulerCore
// (delay scheduling, DRF) and launched through the agents' heartbeats. Every
// decision is durable (StateFile) before an agent hears of it; after a restart
// the tasks recorded as running are reconciled with what the agents report.
import { performance } from 'node:perf_hooks'
import { Gauge, Registry } from 'prom-client'
import { formatAddress, type Address } from '../common/address.js'
import { startStatusServer } from '../common/http.js'
import type { Logger } from '../common/log.js'
import { processIdentity } from '../common/identity.js'
import { mkdirp } from '../common/mkdirp.js'
import { LoamClient } from '../client/client.js'
import { AGENT_DEAD_AFTER_DEFAULT_MS, AGENT_HEARTBEAT_DEFAULT_MS, FINISHED_JOBS_KEPT, JOB_SPEC_BYTES_MAX, RECONCILE_GRACE_DEFAULT_MS, SCHEDULER_ANNOUNCE_INTERVAL_MS, SERVICE_INSTANCES_MAX } from '../limits.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import type { LaunchTask, RegisterAgentRequest, TaskState } from '../rpc/messages.js'
import { RpcServer, type CallContext, type Handlers } from '../rpc/server.js'
import { SchedulerService, type SchedulerServiceSpec } from '../rpc/service.js'
import { SchedulerCore, type Placement } from './core.js'
import { splitInput } from './input.js'
import { parseJobSpec } from './job-spec.js'
import { PREFERRED_NODES_PER_TASK_MAX } from './limits.js'
import * as R from './resources.js'
import { mayManage, requester, type Requester } from './owners.js'
import { Services, type ServiceHost } from './services.js'
import type { ServiceCandidate } from './service-placement.js'
import { StateFile, type JobRecord, type TaskRecord } from './state.js'

export interface SchedulerOptions {
  namenode: Address
  dataDir: string
  host: string
  port: number
  httpPort: number
  heartbeatMs?: number
  deadAfterMs?: number
  localityWaitMs?: number
  roleWeights?: Record<string, number>
  reconcileGraceMs?: number
  log: Logger
}

export interface SchedulerHandle {
  rpc: Address
  http: Address
  stop(): Promise<void>
}

interface AgentEntry {
  req: RegisterAgentRequest
  lastSeenMs: number
  launches: LaunchTask[]
  kills: Set<string>
  forget: Set<string>
  /**
   * Launches the core holds resources for (SchedulerCore.hold) rather than placed: job tasks
   * found running after a scheduler restart, and service tasks (placed outside the batch queue).
   */
  held: Set<string>
}

const ENDED = new Set(['FINISHED', 'FAILED', 'KILLED'])
/** How often service instances waiting to start are looked at. */
const SERVICE_TICK_MS = 500

export class Scheduler {
  private readonly core: SchedulerCore
  /** The OS user this scheduler runs as: the agents' user. */
  private readonly ownUser = processIdentity().user
  private readonly agents = new Map<string, AgentEntry>()
  /** Task records by the id of their current launch (`${taskId}.${attempt}`). */
  private readonly byLaunch = new Map<string, { job: JobRecord; task: TaskRecord }>()
  private readonly byTask = new Map<string, { job: JobRecord; task: TaskRecord }>()
  private generation = 0
  /** The core's jobs (one per requeue) that hold each job's tasks. */
  private readonly coreJobs = new Map<string, Set<string>>()
  /** Some pending tasks were refused by the core (no agent could run them then): queuePending tries again. */
  private stalled = false
  private readonly started = performance.now()
  private timer: NodeJS.Timeout | undefined
  private readonly intervals: NodeJS.Timeout[] = []
  private readonly heartbeatMs: number
  private readonly deadAfterMs: number
  private readonly services: Services

  private constructor(
    private readonly state: StateFile,
    private readonly nn: LoamClient,
    private readonly opts: SchedulerOptions,
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? AGENT_HEARTBEAT_DEFAULT_MS
    this.deadAfterMs = opts.deadAfterMs ?? AGENT_DEAD_AFTER_DEFAULT_MS
    this.core = new SchedulerCore({ localityWaitMs: opts.localityWaitMs, roleWeights: opts.roleWeights })
    this.services = new Services(state, nn, this.serviceHost(), opts.log)
  }

  static async start(opts: SchedulerOptions): Promise<SchedulerHandle> {
    await mkdirp(opts.dataDir)
    const state = await StateFile.open(opts.dataDir)
    const s = new Scheduler(state, new LoamClient({ namenode: opts.namenode }), opts)
    s.restore()
    const registry = new Registry()
    const rpc = new RpcServer(SchedulerService, s.handlers(), opts.log, { registry, service: 'scheduler' })
    const rpcAddress = await rpc.listen(opts.host, opts.port)
    const http = await startStatusServer(opts.host, opts.httpPort, () => s.clusterState(), { registry })
    s.registerMetrics(registry)
    s.intervals.push(setInterval(() => s.checkAgents(), Math.min(1000, s.heartbeatMs)))
    s.intervals.push(setInterval(() => s.services.tick(), SERVICE_TICK_MS))
    s.intervals.push(setTimeout(() => s.reconcileLeftovers(), opts.reconcileGraceMs ?? RECONCILE_GRACE_DEFAULT_MS))
    const announcement = { rpcAddress: formatAddress(rpcAddress), httpAddress: formatAddress(http.address) }
    const announce = (): void => void s.nn.nn.call('AnnounceScheduler', announcement).catch((err: unknown) => opts.log.debug({ err: toLoamError(err).message }, 'cannot tell the namenode where the scheduler serves; trying again'))
    announce()
    s.intervals.push(setInterval(announce, SCHEDULER_ANNOUNCE_INTERVAL_MS))
    opts.log.info({ rpc: rpcAddress, http: http.address, jobs: state.jobs.size }, 'scheduler serving')
    return {
      rpc: rpcAddress,
      http: http.address,
      stop: async () => {
        for (const t of s.intervals) clearTimeout(t)
        clearTimeout(s.timer)
        await rpc.close()
        await http.close()
        await state.flush()
        s.nn.close()
      },
    }
  }

  private now(): number {
    return performance.now() - this.started
  }

  /** After a restart: pending tasks queue again; running ones wait for their agents to report them. */
  private restore(): void {
    for (const job of this.state.jobs.values()) {
      for (const task of job.tasks) {
        this.byTask.set(task.id, { job, task })
        if (task.attempts > 0) this.byLaunch.set(launchId(task), { job, task })
      }
    }
    // Pending tasks go to the core once agents exist (it refuses work no agent could run): see reconcileLeftovers and register.
  }

  private handlers(): Handlers<SchedulerServiceSpec> {
    return {
      RegisterAgent: (req, ctx) => {
        this.checkAgentCaller(ctx)
        this.register(req)
        return { heartbeatIntervalMs: this.heartbeatMs }
      },
      AgentHeartbeat: async (req, ctx) => {
        this.checkAgentCaller(ctx)
        const agent = this.agents.get(req.agentId)
        if (!agent) return { launch: [], kill: [], forget: [], reregister: true }
        agent.lastSeenMs = this.now()
        this.report(agent, req.tasks)
        this.schedule()
        const launch = agent.launches.splice(0)
        const kill = [...agent.kills]
        agent.kills.clear()
        const forget = [...agent.forget]
        agent.forget.clear()
        // A launch is durable before the agent hears of it (everything taken above was recorded before it was queued).
        await this.state.flush()
        return { launch, kill, forget, reregister: false }
      },
      SubmitJob: async (req, ctx) => {
        if (req.json.length > JOB_SPEC_BYTES_MAX) throw new LoamError('invalid-argument', `job spec is over ${JOB_SPEC_BYTES_MAX} bytes`)
        const job = await this.submit(req.json, requester(ctx))
        await this.state.flush()
        return { json: JSON.stringify(this.jobStatus(job)) }
      },
      JobStatus: (req) => ({ json: JSON.stringify(this.jobStatus(this.mustJob(req.id))) }),
      ListJobs: () => ({ json: JSON.stringify([...this.state.jobs.values()].map((j) => ({ id: j.id, state: j.state, role: j.spec.role, tasks: j.tasks.length, finished: j.tasks.filter((t) => t.state === 'FINISHED').length }))) }),
      KillJob: async (req, ctx) => {
        const job = this.mustJob(req.id)
        if (!(await mayManage(this.nn, job.user, requester(ctx)))) {
          throw new LoamError('permission', `job ${job.id} belongs to user ${job.user ?? 'the superuser'}, not ${requester(ctx).user}: only its owner or the superuser may kill it`)
        }
        this.endJob(job, 'KILLED')
        await this.state.flush()
        return { json: JSON.stringify(this.jobStatus(job)) }
      },
      TaskLocation: (req) => {
        const found = this.byTask.get(req.id)
        const where = found && found.task.attempts > 0 ? { launch: launchId(found.task), agentId: found.task.agentId, state: found.task.state } : this.services.locate(req.id)
        if (!where) throw new LoamError('not-found', `task ${req.id}: no such task, or it has not run yet (see 'loam job status' or 'loam service status')`)
        const agent = this.agents.get(where.agentId)
        const address = agent ? formatAddress({ host: agent.req.host, port: agent.req.rpcPort }) : ''
        return { json: JSON.stringify({ task: req.id, launch: where.launch, agent: where.agentId, address, state: where.state }) }
      },
      DeployService: async (req, ctx) => {
        if (req.json.length > JOB_SPEC_BYTES_MAX) throw new LoamError('invalid-argument', `service spec is over ${JOB_SPEC_BYTES_MAX} bytes`)
        const svc = await this.services.deploy(req.json, (id) => this.state.jobs.has(id), requester(ctx))
        await this.state.flush()
        return { json: JSON.stringify(this.services.status(svc.id)) }
      },
      ServiceStatus: (req) => ({ json: JSON.stringify(this.services.status(req.id)) }),
      ListServices: () => ({ json: JSON.stringify(this.services.list()) }),
      ScaleService: async (req, ctx) => {
        if (!Number.isInteger(req.instances) || req.instances > SERVICE_INSTANCES_MAX) throw new LoamError('invalid-argument', `instances ${req.instances} must be a whole number from 0 to ${SERVICE_INSTANCES_MAX}`)
        const svc = await this.services.scale(req.id, req.instances, requester(ctx))
        await this.state.flush()
        return { json: JSON.stringify(this.services.status(svc.id)) }
      },
      RemoveService: async (req, ctx) => {
        const svc = await this.services.remove(req.id, requester(ctx))
        await this.state.flush()
        return { json: JSON.stringify(this.services.status(svc.id)) }
      },
      ClusterState: () => ({ json: JSON.stringify(this.clusterState()) }),
    }
  }

  // ---------------------------------------------------------------- agents

  /** Agents run as the scheduler's own user or root: anyone else registering or reporting as one could take over a real agent's id. */
  private checkAgentCaller(ctx: CallContext): void {
    if (ctx.user !== 'root' && ctx.user !== this.ownUser) {
      throw new LoamError('permission', `user ${ctx.user} may not register or report as an agent: agents run as ${this.ownUser} (the scheduler's user) or root`)
    }
  }

  private register(req: RegisterAgentRequest): void {
    if (!req.agentId) throw new LoamError('invalid-argument', 'an agent registers with an id')
    const total = R.resources(req.cpus, req.memMib, req.diskMib)
    const previous = this.agents.get(req.agentId)
    if (previous) this.lose(req.agentId, 'the agent registered again')
    const entry: AgentEntry = { req, lastSeenMs: this.now(), launches: [], kills: new Set(), forget: new Set(), held: new Set() }
    this.core.addAgent({ id: req.agentId, nodeId: req.nodeId || undefined, rack: req.rack || '/default', resources: total })
    this.agents.set(req.agentId, entry)
    // Tasks it still runs that the core does not know (this scheduler restarted), and service tasks: adopted, their resources held.
    for (const t of req.tasks) {
      if (ENDED.has(t.state)) continue
      const found = this.byLaunch.get(t.taskId)
      const demand =
        found && found.task.state === 'RUNNING' && found.task.agentId === req.agentId && !this.core.task(found.task.id)
          ? { role: found.job.spec.role, resources: R.resources(found.job.spec.cpus, found.job.spec.mem) }
          : this.services.demandOf(t.taskId, req.agentId)
      if (demand) this.hold(entry, t.taskId, demand.role, demand.resources)
    }
    this.opts.log.info({ agent: req.agentId, node: req.nodeId, rack: req.rack, cpus: req.cpus, memMib: req.memMib, adopted: entry.held.size }, 'agent registered')
    this.report(entry, req.tasks)
    this.queuePending()
    this.schedule()
  }

  /** What an agent says of its tasks. */
  private report(agent: AgentEntry, tasks: TaskState[]): void {
    for (const t of tasks) {
      const found = this.byLaunch.get(t.taskId)
      const current = found && found.task.state === 'RUNNING' && launchId(found.task) === t.taskId && found.task.agentId === agent.req.agentId
      if (!ENDED.has(t.state)) {
        // Running, but not as far as we know (an older attempt, a removed service), or of a job that ended: stop it.
        // Asked again at every report until it ends: a kill asked before a scheduler restart was not persisted.
        if (current ? found.job.state !== 'RUNNING' : !this.services.running(t.taskId, agent.req.agentId, t)) agent.kills.add(t.taskId)
        continue
      }
      agent.forget.add(t.taskId)
      if (current) this.ended(agent, found.job, found.task, t)
      else this.services.ended(t.taskId, agent.req.agentId, t)
    }
  }

  private ended(agent: AgentEntry, job: JobRecord, task: TaskRecord, t: TaskState): void {
    const launch = launchId(task)
    this.release(agent, task, launch)
    task.exitCode = t.state === 'KILLED' ? null : t.exitCode
    task.message = t.message
    if (t.state === 'FINISHED') {
      task.state = 'FINISHED'
    } else if (t.state === 'KILLED' || job.state !== 'RUNNING') {
      task.state = 'KILLED'
    } else if (task.attempts <= job.spec.retries) {
      task.state = 'PENDING'
      this.steerAway(task)
      this.requeue(job, [task])
    } else {
      task.state = 'FAILED'
      this.endJob(job, 'FAILED')
    }
    this.state.changed()
    this.opts.log.info({ job: job.id, task: task.id, attempt: task.attempts, state: t.state, exitCode: t.exitCode, now: task.state }, 'task ended')
    this.maybeFinish(job)
  }

  /**
   * After its second failure on one node, a task prefers the other nodes (its other replicas
   * first): a node that keeps failing it (a bad disk, a missing tool) is not tried forever.
   */
  private steerAway(task: TaskRecord): void {
    const failedHere = (task.failedNodes ?? []).filter((n) => n === task.node).length + 1
    task.failedNodes = [...(task.failedNodes ?? []), task.node].slice(-PREFERRED_NODES_PER_TASK_MAX)
    if (failedHere < 2) return
    const bad = new Set(task.failedNodes)
    const others = [...this.agents.values()].map((a) => a.req.nodeId || a.req.agentId).filter((n) => !bad.has(n))
    const replicas = task.preferredNodes.filter((n) => !bad.has(n))
    const preferred = [...new Set([...replicas, ...others])].slice(0, PREFERRED_NODES_PER_TASK_MAX)
    if (preferred.length === 0) return
    task.preferredNodes = preferred
    task.preferredRacks = []
  }

  /** The resources a task held go back to the core: as a placed task, or as a held launch. */
  private release(agent: AgentEntry | undefined, task: TaskRecord, launch: string): void {
    if (!(agent && this.releaseHeld(agent, launch)) && this.core.task(task.id)) this.core.taskFinished(task.id)
  }

  private hold(agent: AgentEntry, launch: string, role: string, resources: R.Resources): void {
    this.core.hold(launch, agent.req.agentId, role, resources)
    agent.held.add(launch)
  }

  private releaseHeld(agent: AgentEntry, launch: string): boolean {
    if (!agent.held.delete(launch)) return false
    this.core.unhold(launch)
    return true
  }

  /** What the services borrow: agents, their free resources, launches and kills. */
  private serviceHost(): ServiceHost {
    return {
      candidates: () => {
        const out: ServiceCandidate[] = []
        for (const a of this.agents.values()) {
          const view = this.core.agent(a.req.agentId)
          if (view) out.push({ agentId: a.req.agentId, nodeId: a.req.nodeId, total: R.resources(a.req.cpus, a.req.memMib, a.req.diskMib), free: view.free })
        }
        return out
      },
      agentAlive: (id) => this.agents.has(id),
      hold: (agentId, launch, role, need) => {
        const agent = this.agents.get(agentId)
        if (!agent) throw new LoamError('unavailable', `agent ${agentId} is gone; the instance is placed again`)
        this.hold(agent, launch, role, need)
      },
      release: (agentId, launch) => {
        const agent = this.agents.get(agentId)
        if (agent) this.releaseHeld(agent, launch)
        this.schedule()
      },
      launch: (agentId, task) => this.agents.get(agentId)?.launches.push(task),
      kill: (agentId, launch) => this.agents.get(agentId)?.kills.add(launch),
      namenode: formatAddress(this.opts.namenode),
    }
  }

  private checkAgents(): void {
    const now = this.now()
    for (const [id, agent] of this.agents) {
      if (now - agent.lastSeenMs > this.deadAfterMs) this.lose(id, `no heartbeat for ${Math.round((now - agent.lastSeenMs) / 1000)} s`)
    }
    if (this.stalled) this.queuePending()
    this.schedule()
  }

  /** An agent is gone: its tasks are lost and run again elsewhere. */
  private lose(agentId: string, why: string): void {
    const agent = this.agents.get(agentId)
    if (!agent) return
    this.agents.delete(agentId)
    const lost = this.core.removeAgent(agentId, this.now())
    const again: Array<{ job: JobRecord; task: TaskRecord }> = []
    for (const l of lost) {
      const found = this.byTask.get(l.taskId)
      if (!found) continue
      found.task.state = l.requeued ? 'PENDING' : 'KILLED'
      found.task.message = `lost with agent ${agentId}: ${why}`
    }
    for (const launch of agent.held) {
      const found = this.byLaunch.get(launch)
      if (found && found.task.state === 'RUNNING') again.push(found)
    }
    for (const f of again) {
      f.task.state = 'PENDING'
      f.task.message = `lost with agent ${agentId}: ${why}`
      this.requeue(f.job, [f.task])
    }
    this.services.agentLost(agentId, why)
    this.state.changed()
    this.opts.log.warn({ agent: agentId, why, lost: lost.length + again.length }, 'agent lost')
  }

  /** Tasks recorded as running before a restart that no agent reported: lost, run again. */
  private reconcileLeftovers(): void {
    for (const job of this.state.jobs.values()) {
      if (job.state !== 'RUNNING') continue
      const lost = job.tasks.filter((t) => t.state === 'RUNNING' && !this.core.task(t.id) && !this.agents.get(t.agentId)?.held.has(launchId(t)))
      for (const t of lost) {
        t.state = 'PENDING'
        t.message = 'no agent reported it after the scheduler restarted'
      }
      if (lost.length > 0) this.requeue(job, lost)
    }
    this.services.reconcile(new Set([...this.agents.values()].flatMap((a) => [...a.held])))
    this.queuePending()
    this.state.changed()
    this.schedule()
  }

  // ---------------------------------------------------------------- jobs

  private async submit(text: string, who: Requester): Promise<JobRecord> {
    const spec = parseJobSpec(text)
    if (this.state.services.has(spec.id)) throw new LoamError('exists', `job id ${spec.id} is a service's id; choose another`)
    const existing = this.state.jobs.get(spec.id)
    if (existing?.state === 'RUNNING') throw new LoamError('exists', `job ${spec.id} is running; kill it first or use another id`)
    if (existing && !(await mayManage(this.nn, existing.user, who))) throw new LoamError('permission', `job id ${spec.id} is taken by a job of user ${existing.user ?? 'the superuser'}; choose another`)
    const need = R.resources(spec.cpus, spec.mem)
    if (![...this.agents.keys()].some((id) => R.fits(need, this.core.agent(id)!.total))) {
      throw new LoamError('invalid-argument', `job spec: cpus ${spec.cpus} and mem ${spec.mem} MiB are more than any agent has (${this.agents.size} registered; see 'loam job agents')`)
    }
    const splits = spec.input ? await splitInput(this.nn, spec.input) : []
    const count = spec.input ? splits.length : spec.instances
    const tasks: TaskRecord[] = Array.from({ length: count }, (_, index) => {
      const split = splits[index]
      return {
        id: `${spec.id}.${index}`,
        index,
        state: 'PENDING',
        attempts: 0,
        agentId: '',
        node: '',
        locality: '',
        waitedMs: 0,
        exitCode: null,
        message: '',
        input: split ? { path: split.path, offset: split.offset, length: split.length } : null,
        preferredNodes: split?.nodes ?? [],
        preferredRacks: split?.racks ?? [],
      }
    })
    const job: JobRecord = { id: spec.id, spec, user: who.user, state: 'RUNNING', submittedMs: Date.now(), finishedMs: 0, tasks }
    if (existing) for (const t of existing.tasks) this.byTask.delete(t.id)
    this.state.jobs.set(job.id, job)
    for (const t of tasks) this.byTask.set(t.id, { job, task: t })
    this.requeue(job, tasks)
    this.trimFinished()
    this.state.changed()
    this.schedule()
    return job
  }

  /** Tasks (pending again) go to the core as a job of their own: the core's job ids are internal. */
  private requeue(job: JobRecord, tasks: TaskRecord[], quiet = false): void {
    if (tasks.length === 0 || this.agents.size === 0) return
    const id = `${job.id}#${++this.generation}`
    try {
      this.core.submit(
        {
          id,
          role: job.spec.role,
          resources: R.resources(job.spec.cpus, job.spec.mem),
          tasks: tasks.map((t) => ({ id: t.id, preferredNodes: t.preferredNodes, preferredRacks: t.preferredRacks })),
        },
        this.now(),
      )
    } catch (err) {
      // No agent left could run them (or the core is full): they wait, pending, and are offered again at the next check.
      if (!quiet && !this.stalled) this.opts.log.warn({ job: job.id, tasks: tasks.length, err: toLoamError(err).message }, 'tasks wait for an agent')
      this.stalled = true
      return
    }
    const ids = this.coreJobs.get(job.id) ?? new Set<string>()
    ids.add(id)
    this.coreJobs.set(job.id, ids)
  }

  /** Pending tasks the core does not hold (restored, or queued while no agent was registered). */
  private queuePending(): void {
    // Tasks refused again are not logged again at every check.
    const quiet = this.stalled
    this.stalled = false
    for (const job of this.state.jobs.values()) {
      if (job.state !== 'RUNNING') continue
      this.requeue(
        job,
        job.tasks.filter((t) => t.state === 'PENDING' && !this.core.task(t.id)),
        quiet,
      )
    }
  }

  private schedule(): void {
    clearTimeout(this.timer)
    let placements: Placement[]
    try {
      placements = this.core.schedule(this.now())
    } catch (err) {
      this.opts.log.error({ err: toLoamError(err).message }, 'scheduling failed')
      return
    }
    for (const p of placements) this.launch(p)
    if (placements.length > 0) this.state.changed()
    const wake = this.core.nextWakeMs()
    if (wake !== undefined) this.timer = setTimeout(() => this.schedule(), Math.max(10, Math.min(1000, wake - this.now())))
  }

  private launch(p: Placement): void {
    const found = this.byTask.get(p.taskId)
    const agent = this.agents.get(p.agentId)
    if (!found || !agent) return
    const { job, task } = found
    task.state = 'RUNNING'
    task.attempts++
    task.agentId = p.agentId
    task.node = p.nodeId ?? p.agentId
    task.locality = p.locality === 'NO_PREF' ? 'ANY' : p.locality
    task.waitedMs = Math.round(p.waitedMs)
    const launch = launchId(task)
    this.byLaunch.set(launch, found)
    const env: Record<string, string> = {
      ...job.spec.env,
      LOAM_TASK_ID: task.id,
      LOAM_TASK_INDEX: String(task.index),
      LOAM_JOB_ID: job.id,
      LOAM_NAMENODE: formatAddress(this.opts.namenode),
    }
    if (task.input) Object.assign(env, { LOAM_INPUT_PATH: task.input.path, LOAM_INPUT_OFFSET: String(task.input.offset), LOAM_INPUT_LENGTH: String(task.input.length) })
    agent.launches.push({ taskId: launch, jobId: job.id, cmd: job.spec.cmd, env, cpus: job.spec.cpus, memMib: job.spec.mem, volumes: [], healthCheck: null, user: job.user ?? '' })
  }

  private endJob(job: JobRecord, state: 'FAILED' | 'KILLED'): void {
    if (job.state !== 'RUNNING') return
    job.state = state
    job.finishedMs = Date.now()
    for (const t of job.tasks) {
      if (t.state === 'PENDING') t.state = 'KILLED'
      if (t.state === 'RUNNING') this.agents.get(t.agentId)?.kills.add(launchId(t))
    }
    for (const id of this.coreJobs.get(job.id) ?? []) if (this.core.job(id)) this.core.cancelJob(id)
    this.coreJobs.delete(job.id)
    this.state.changed()
  }

  private maybeFinish(job: JobRecord): void {
    if (job.state === 'RUNNING' && job.tasks.every((t) => t.state === 'FINISHED')) {
      job.state = 'FINISHED'
      job.finishedMs = Date.now()
      this.state.changed()
    }
  }

  private trimFinished(): void {
    const done = [...this.state.jobs.values()].filter((j) => j.state !== 'RUNNING').sort((a, b) => a.finishedMs - b.finishedMs)
    for (const j of done.slice(0, Math.max(0, done.length - FINISHED_JOBS_KEPT))) {
      this.state.jobs.delete(j.id)
      for (const t of j.tasks) this.byTask.delete(t.id)
    }
  }

  private mustJob(id: string): JobRecord {
    const job = this.state.jobs.get(id)
    if (!job) throw new LoamError('not-found', `job ${id}: no such job (see 'loam job ls')`)
    return job
  }

  private jobStatus(job: JobRecord): unknown {
    return {
      id: job.id,
      state: job.state,
      role: job.spec.role,
      tasks: job.tasks.map((t) => ({
        id: t.id,
        index: t.index,
        node: t.node || null,
        agent: t.agentId || null,
        locality: t.locality || null,
        waitedMs: t.waitedMs,
        state: t.state,
        exitCode: t.exitCode,
        attempts: t.attempts,
        message: t.message || undefined,
        input: t.input,
      })),
    }
  }

  private clusterState(): unknown {
    return {
      agents: [...this.agents.values()].map((a) => {
        const view = this.core.agent(a.req.agentId)
        return { id: a.req.agentId, node: a.req.nodeId || null, rack: a.req.rack, cpus: a.req.cpus, memMib: a.req.memMib, usedCpus: view ? R.cpusOf(view.used) : 0, usedMemMib: view?.used.memMiB ?? 0, tasks: view ? [...view.runningTasks, ...view.holds] : [] }
      }),
      roles: this.core.roleShares().map((r) => ({ role: r.role, weight: r.weight, dominantShare: r.dominantShare, running: r.runningTasks, pending: r.pendingTasks })),
      jobs: [...this.state.jobs.values()].map((j) => ({ id: j.id, state: j.state, tasks: j.tasks.length })),
      services: this.services.list(),
    }
  }

  private registerMetrics(registry: Registry): void {
    // Job tasks and service instances alike: both run on the agents.
    const tasks = (pred: (t: { state: string; locality: string }) => boolean): number =>
      [...this.state.jobs.values()].reduce((n, j) => n + j.tasks.filter(pred).length, 0) + [...this.state.services.values()].reduce((n, s) => n + s.instances.filter(pred).length, 0)
    const g = (name: string, help: string, labels: string[], collect: (set: (l: Record<string, string>, v: number) => void) => void): void => {
      new Gauge({
        name,
        help,
        labelNames: labels,
        registers: [registry],
        collect() {
          this.reset()
          collect((l, v) => this.set(l, v))
        },
      })
    }
    g('loam_scheduler_tasks', 'Tasks by state', ['state'], (set) => {
      for (const s of ['PENDING', 'RUNNING', 'FINISHED', 'FAILED', 'KILLED']) set({ state: s }, tasks((t) => t.state === s))
    })
    g('loam_scheduler_tasks_by_locality', 'Tasks launched, by the locality they got', ['locality'], (set) => {
      for (const l of ['NODE_LOCAL', 'RACK_LOCAL', 'ANY']) set({ locality: l }, tasks((t) => t.locality === l))
    })
    g('loam_scheduler_drf_dominant_share', 'Dominant share of each role', ['role'], (set) => {
      for (const r of this.core.roleShares()) set({ role: r.role }, r.dominantShare)
    })
    g('loam_scheduler_agents', 'Registered agents', [], (set) => set({}, this.agents.size))
  }
}

function launchId(task: TaskRecord): string {
  return `${task.id}.${task.attempts}`
}
