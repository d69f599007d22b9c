// The scheduler's pure core: agents, roles, jobs and their tasks in, placements
// out. No sockets, no disks, no clock: every call that depends on time is given
// `nowMs` by the caller (milliseconds of a monotonic clock from 0, never going
// back), and equal calls give equal decisions (nothing random).
// The daemon around it (src/scheduler/server.ts) registers agents, persists
// jobs, starts the placed tasks as processes and reports back when they end.
//
// Driving it:
//   addAgent / updateAgent / removeAgent   as agents come, change and go
//   submit(job, now)                       a job and its tasks, queued
//   schedule(now) -> Placement[]           every placement possible at `now`
//   taskFinished(id) / retryTask(id, now)  as task processes end
//   nextWakeMs()                           when schedule() next has something to decide
//   hold(id, agent, role, r) / unhold(id)  work placed outside the queue (a task found
//                                          running after a restart, a service instance)
//
// Policy: resources are offered to roles by weighted Dominant Resource Fairness
// (src/scheduler/drf.ts), within a role to its jobs fewest-running-tasks first,
// and each job takes or declines an offer by delay scheduling
// (src/scheduler/delay.ts). Only what changed since the last schedule() is looked
// at again: agents with freed resources are offered to every job, and the agents
// that stayed free are offered only to jobs that may now take what they declined
// (new tasks, or a wait that ran out). Every other job declined them already and
// would again, so the decisions are those of offering every free agent to every
// job, at a fraction of the cost.

import { LoamError, assert } from '../rpc/errors.js'
import { accrue, afterLaunch, allowedLevel, initialDelay, LEVEL_ANY, LEVEL_RACK, msUntilNextLevel, type DelayState, type Locality, type LocalityWaits } from './delay.js'
import { dominantShare, offerOrder } from './drf.js'
import { AGENTS_MAX, JOBS_MAX, LOCALITY_WAIT_DEFAULT_MS, QUEUED_TASKS_MAX, ROLES_MAX, ROLE_WEIGHT_DEFAULT } from './limits.js'
import * as R from './resources.js'
import { checkResources, type Resources } from './resources.js'
import { checkAgentSpec, checkId, checkJobSpec, checkTime, checkWaitMs, checkWeight, type AgentSpec, type JobSpec, type SchedulerConfig } from './spec.js'

export interface Placement {
  readonly taskId: string
  readonly jobId: string
  readonly role: string
  readonly agentId: string
  /** The agent's datanode, if it has one. */
  readonly nodeId: string | undefined
  readonly rack: string
  readonly locality: Locality
  /** From the time the task was queued (submitted, or requeued) to this placement. */
  readonly waitedMs: number
  /** What the task holds on the agent until it finishes. */
  readonly resources: Resources
}

/** A task that was running on an agent when it was removed. */
export interface LostTask {
  readonly taskId: string
  readonly jobId: string
  /** True: queued again, to be placed by a later schedule(); false: its job was cancelled, and the task is gone. */
  readonly requeued: boolean
}

export interface AgentView {
  readonly id: string
  readonly nodeId: string | undefined
  readonly rack: string
  readonly total: Resources
  readonly used: Resources
  /** total - used; negative in a dimension after an update shrank the agent below what it runs. */
  readonly free: Resources
  readonly runningTasks: string[]
  /** Ids of the holds on it (see hold()). */
  readonly holds: string[]
}

export interface TaskView {
  readonly id: string
  readonly jobId: string
  readonly role: string
  readonly state: 'pending' | 'running'
  readonly agentId: string | undefined
  readonly locality: Locality | undefined
  /** When the task was last queued. */
  readonly queuedAtMs: number
  /** Times it has been placed. */
  readonly attempts: number
}

export interface JobView {
  readonly id: string
  readonly role: string
  readonly pendingTasks: number
  readonly runningTasks: number
  readonly cancelled: boolean
  /** The least local placement the job accepts now (delay scheduling). */
  readonly accepts: 'NODE_LOCAL' | 'RACK_LOCAL' | 'ANY'
  /** Time the job has been skipped since its last launch. */
  readonly skippedMs: number
}

export interface RoleView {
  readonly role: string
  readonly weight: number
  /** Resources of the role's running tasks. */
  readonly usage: Resources
  /** max(cpus used / cluster cpus, mem used / cluster mem). */
  readonly dominantShare: number
  readonly weightedShare: number
  readonly jobs: number
  readonly runningTasks: number
  readonly pendingTasks: number
}

interface Agent {
  readonly id: string
  readonly nodeId: string | undefined
  rack: string
  total: Resources
  used: Resources
  free: Resources
  readonly running: Set<Task>
  readonly holds: Set<Hold>
  /** The schedule() call that last offered this agent to every job. */
  offeredInCall: number
}

interface Task {
  readonly id: string
  readonly job: Job
  readonly preferredNodes: readonly string[]
  readonly preferredRacks: readonly string[]
  state: 'pending' | 'running'
  queuedAtMs: number
  agent: Agent | undefined
  locality: Locality | undefined
  attempts: number
}

/** Resources taken on an agent by work the core did not place: counted in the agent's use and its role's share. */
interface Hold {
  readonly id: string
  readonly agent: Agent
  readonly role: Role
  readonly resources: Resources
}

interface Job {
  readonly id: string
  /** Submission order: breaks ties in the offer order. */
  readonly seq: number
  readonly role: Role
  /** What each task needs. */
  readonly demand: Resources
  /** Every pending task, in queue order, and the same tasks indexed by where their data is. */
  readonly pending: Set<Task>
  readonly pendingByNode: Map<string, Set<Task>>
  readonly pendingByRack: Map<string, Set<Task>>
  readonly pendingNoPref: Set<Task>
  readonly running: Set<Task>
  readonly delay: DelayState
  cancelled: boolean
  /** In role.queue (it has pending tasks), at the position queueKey gives. */
  queued: boolean
  queueKey: number
  /** Declined an offer for locality in the current schedule() call. */
  declined: boolean
}

interface Role {
  readonly name: string
  weight: number
  /** Set by config or setRoleWeight: the role stays when it has no jobs. */
  pinned: boolean
  usage: Resources
  /** Jobs with pending tasks, in the order they are offered resources. */
  readonly queue: Job[]
  jobs: number
  /** Holds counted in usage: the role stays while it has any. */
  holds: number
  running: number
  pending: number
}

function invalid(message: string): LoamError {
  return new LoamError('invalid-argument', message)
}

function first<T>(set: Set<T>): T {
  const next = set.values().next()
  assert(next.done !== true, 'an index set is never left empty')
  return next.value
}

function indexAdd(index: Map<string, Set<Task>>, key: string, task: Task): void {
  let set = index.get(key)
  if (set === undefined) {
    set = new Set()
    index.set(key, set)
  }
  set.add(task)
}

function indexDelete(index: Map<string, Set<Task>>, key: string, task: Task): void {
  const set = index.get(key)
  assert(set !== undefined && set.delete(task), `task ${task.id} is indexed under ${key}`)
  if (set.size === 0) index.delete(key)
}

export class SchedulerCore {
  readonly waits: LocalityWaits
  private readonly fifo: boolean
  private readonly agents = new Map<string, Agent>()
  private readonly agentsByNode = new Map<string, Agent>()
  private readonly roles = new Map<string, Role>()
  private readonly jobs = new Map<string, Job>()
  private readonly tasks = new Map<string, Task>()
  private readonly holds = new Map<string, Hold>()
  private total: Resources = R.ZERO
  private pendingTotal = 0
  private jobSeq = 0

  /** Agents that can take some task (cpus and memory left), in the order they became so. */
  private readonly freeAgents = new Set<Agent>()
  /** Agents whose free resources grew since the last schedule(): offered to every job. */
  private readonly dirtyAgents = new Set<Agent>()
  /** Jobs that may take what they declined before (new tasks, or their wait ran out). */
  private readonly dirtyJobs = new Set<Job>()
  /** Jobs skipped at the last schedule(): their wait grows until the next one. */
  private readonly skipped = new Set<Job>()
  /** Roles with pending tasks in offer order, while no share or queue changed. */
  private roleOrder: Role[] | undefined
  /** Per task shape: does some agent have that much in all? Cleared when agents change. */
  private readonly fitsSomeAgent = new Map<string, boolean>()

  /** The latest time passed in: time never goes back. */
  private lastNowMs = 0
  private lastScheduleMs: number | undefined
  private call = 0

  constructor(config: SchedulerConfig = {}) {
    const nodeWaitMs = config.localityWaitMs ?? LOCALITY_WAIT_DEFAULT_MS
    checkWaitMs(nodeWaitMs, 'localityWaitMs')
    const rackWaitMs = config.rackLocalityWaitMs ?? nodeWaitMs
    checkWaitMs(rackWaitMs, 'rackLocalityWaitMs')
    this.waits = { nodeWaitMs, rackWaitMs }
    if (config.jobOrder !== undefined && config.jobOrder !== 'fair' && config.jobOrder !== 'fifo') {
      throw invalid(`jobOrder '${String(config.jobOrder)}' must be 'fair' or 'fifo'`)
    }
    this.fifo = config.jobOrder === 'fifo'
    const weights = Object.entries(config.roleWeights ?? {})
    if (weights.length > ROLES_MAX) throw invalid(`roleWeights: ${weights.length} roles, more than ${ROLES_MAX}`)
    for (const [role, weight] of weights) {
      checkId(role, 'role')
      checkWeight(weight, `role ${role}`)
      this.roles.set(role, this.newRole(role, weight, true))
    }
  }

  // -------------------------------------------------------------------------
  // Agents

  addAgent(spec: AgentSpec): void {
    checkAgentSpec(spec)
    if (this.agents.has(spec.id)) throw invalid(`agent ${spec.id} is already registered`)
    if (spec.nodeId !== undefined) {
      const other = this.agentsByNode.get(spec.nodeId)
      if (other !== undefined) throw invalid(`agent ${spec.id}: datanode ${spec.nodeId} already has agent ${other.id}; remove that one first`)
    }
    if (this.agents.size >= AGENTS_MAX) throw invalid(`agent ${spec.id}: ${AGENTS_MAX} agents are registered, the most there may be`)
    const total = R.add(R.ZERO, spec.resources)
    const agent: Agent = { id: spec.id, nodeId: spec.nodeId, rack: spec.rack, total, used: R.ZERO, free: total, running: new Set(), holds: new Set(), offeredInCall: 0 }
    this.agents.set(agent.id, agent)
    if (agent.nodeId !== undefined) this.agentsByNode.set(agent.nodeId, agent)
    this.total = R.add(this.total, total)
    this.agentsChanged()
    this.freed(agent)
  }

  /** New totals (running tasks keep theirs, even where the agent now has less) and/or a new rack. */
  updateAgent(id: string, update: { resources?: Resources; rack?: string }): void {
    const agent = this.registeredAgent(id)
    if (typeof update !== 'object' || update === null) throw invalid(`agent ${id}: an update is { resources?, rack? }`)
    if (update.resources !== undefined) checkResources(update.resources, `agent ${id}`)
    if (update.rack !== undefined) checkId(update.rack, `agent ${id}: rack`)
    if (update.resources !== undefined) {
      this.total = R.add(R.sub(this.total, agent.total), update.resources)
      agent.total = R.add(R.ZERO, update.resources)
      agent.free = R.sub(agent.total, agent.used)
      if (R.exhausted(agent.free)) this.freeAgents.delete(agent)
      this.agentsChanged()
    }
    if (update.rack !== undefined) agent.rack = update.rack
    this.freed(agent)
  }

  /**
   * An agent left (stopped, or silent past its timeout): the tasks it ran are
   * queued again, to be placed elsewhere, and returned so the caller can record
   * their failed attempt; tasks of a cancelled job are dropped instead. Its
   * holds are dropped: the caller knows what they were.
   */
  removeAgent(id: string, nowMs: number): LostTask[] {
    const agent = this.registeredAgent(id)
    checkTime(nowMs, this.lastNowMs)
    this.lastNowMs = nowMs
    const lost: LostTask[] = []
    for (const task of [...agent.running]) {
      this.release(task)
      const job = task.job
      if (job.cancelled) {
        this.tasks.delete(task.id)
        lost.push({ taskId: task.id, jobId: job.id, requeued: false })
        this.retireIfDone(job)
      } else {
        this.enqueue(task, nowMs)
        lost.push({ taskId: task.id, jobId: job.id, requeued: true })
      }
    }
    for (const hold of [...agent.holds]) this.unhold(hold.id)
    assert(agent.running.size === 0 && R.equals(agent.used, R.ZERO), `agent ${id} runs nothing once its tasks are released`)
    this.agents.delete(id)
    if (agent.nodeId !== undefined) this.agentsByNode.delete(agent.nodeId)
    this.freeAgents.delete(agent)
    this.dirtyAgents.delete(agent)
    this.total = R.sub(this.total, agent.total)
    this.agentsChanged()
    return lost
  }

  /**
   * Takes `resources` on an agent for work placed outside the queue (a task an
   * agent still runs after a scheduler restart, a service instance): they count
   * in the agent's use and in the role's dominant share until unhold(id). The
   * agent may end up over-committed (its free resources negative): what runs, runs.
   */
  hold(id: string, agentId: string, role: string, resources: Resources): void {
    const agent = this.registeredAgent(agentId)
    if (typeof id !== 'string' || id === '') throw invalid('a hold has an id')
    if (this.holds.has(id)) throw invalid(`hold ${id} is already taken`)
    checkId(role, `hold ${id}: role`)
    checkResources(resources, `hold ${id}`)
    if (!this.roles.has(role) && this.roles.size >= ROLES_MAX) throw invalid(`hold ${id}: role ${role} would be one more than the ${ROLES_MAX} roles there may be`)
    if (this.holds.size >= QUEUED_TASKS_MAX) throw invalid(`hold ${id}: ${QUEUED_TASKS_MAX} holds are taken, the most there may be`)
    const r = this.roleNamed(role)
    const hold: Hold = { id, agent, role: r, resources: R.add(R.ZERO, resources) }
    this.holds.set(id, hold)
    agent.holds.add(hold)
    agent.used = R.add(agent.used, hold.resources)
    agent.free = R.sub(agent.free, hold.resources)
    if (R.exhausted(agent.free)) this.freeAgents.delete(agent)
    r.usage = R.add(r.usage, hold.resources)
    r.holds++
    this.roleOrder = undefined
  }

  /** A hold ends: its resources are free again, offered at the next schedule(). False when there was no such hold. */
  unhold(id: string): boolean {
    const hold = this.holds.get(id)
    if (hold === undefined) return false
    const { agent, role } = hold
    this.holds.delete(id)
    agent.holds.delete(hold)
    agent.used = R.sub(agent.used, hold.resources)
    agent.free = R.add(agent.free, hold.resources)
    role.usage = R.sub(role.usage, hold.resources)
    role.holds--
    this.dropRoleIfIdle(role)
    this.roleOrder = undefined
    this.freed(agent)
    return true
  }

  // -------------------------------------------------------------------------
  // Roles, jobs and tasks

  setRoleWeight(role: string, weight: number): void {
    checkId(role, 'role')
    checkWeight(weight, `role ${role}`)
    const existing = this.roles.get(role)
    if (existing === undefined) {
      if (this.roles.size >= ROLES_MAX) throw invalid(`role ${role}: ${ROLES_MAX} roles exist, the most there may be`)
      this.roles.set(role, this.newRole(role, weight, true))
      return
    }
    existing.weight = weight
    existing.pinned = true
    this.roleOrder = undefined
  }

  /** Queues a job's tasks. Refused, changing nothing, when any part of it is wrong. */
  submit(spec: JobSpec, nowMs: number): void {
    checkTime(nowMs, this.lastNowMs)
    checkJobSpec(spec)
    if (this.jobs.has(spec.id)) throw invalid(`job ${spec.id} already exists`)
    if (this.jobs.size >= JOBS_MAX) throw invalid(`job ${spec.id}: ${JOBS_MAX} jobs are queued or running, the most there may be`)
    if (!this.roles.has(spec.role) && this.roles.size >= ROLES_MAX) throw invalid(`job ${spec.id}: role ${spec.role} would be one more than the ${ROLES_MAX} roles there may be`)
    if (this.tasks.size + spec.tasks.length > QUEUED_TASKS_MAX) {
      throw invalid(`job ${spec.id}: ${spec.tasks.length} tasks more than the ${this.tasks.size} held would exceed the ${QUEUED_TASKS_MAX} tasks there may be`)
    }
    for (const t of spec.tasks) {
      const other = this.tasks.get(t.id)
      if (other !== undefined) throw invalid(`job ${spec.id}: task id ${t.id} is already used by job ${other.job.id}`)
    }
    if (!this.someAgentFits(spec.resources)) {
      throw invalid(
        this.agents.size === 0
          ? `job ${spec.id}: no agent is registered to run it`
          : `job ${spec.id}: each task needs ${R.format(spec.resources)}, more than any agent has`,
      )
    }

    this.lastNowMs = nowMs
    const role = this.roleNamed(spec.role)
    const job: Job = {
      id: spec.id,
      seq: ++this.jobSeq,
      role,
      demand: R.add(R.ZERO, spec.resources),
      pending: new Set(),
      pendingByNode: new Map(),
      pendingByRack: new Map(),
      pendingNoPref: new Set(),
      running: new Set(),
      delay: initialDelay(),
      cancelled: false,
      queued: false,
      queueKey: 0,
      declined: false,
    }
    this.jobs.set(job.id, job)
    role.jobs++
    for (const t of spec.tasks) {
      const preferredNodes = [...(t.preferredNodes ?? [])]
      const preferredRacks = t.preferredRacks !== undefined ? [...t.preferredRacks] : this.racksOf(preferredNodes)
      const task: Task = { id: t.id, job, preferredNodes, preferredRacks, state: 'pending', queuedAtMs: nowMs, agent: undefined, locality: undefined, attempts: 0 }
      this.tasks.set(task.id, task)
      this.enqueue(task, nowMs)
    }
  }

  /** A running task ended and will not run again (done, failed for good, or killed): its resources are free. */
  taskFinished(taskId: string): void {
    const task = this.runningTask(taskId)
    this.release(task)
    this.tasks.delete(task.id)
    this.retireIfDone(task.job)
  }

  /**
   * A running task failed and should run again: its resources are free and it
   * is queued, to be placed by a later schedule(). False (and the task gone)
   * when its job was cancelled meanwhile.
   */
  retryTask(taskId: string, nowMs: number): boolean {
    const task = this.runningTask(taskId)
    checkTime(nowMs, this.lastNowMs)
    this.lastNowMs = nowMs
    this.release(task)
    if (task.job.cancelled) {
      this.tasks.delete(task.id)
      this.retireIfDone(task.job)
      return false
    }
    this.enqueue(task, nowMs)
    return true
  }

  /**
   * Drops a job's pending tasks; returns its running ones, which the caller
   * kills and reports with taskFinished. The job is gone once none runs.
   */
  cancelJob(jobId: string): string[] {
    const job = this.jobs.get(jobId)
    if (job === undefined) throw invalid(`job ${jobId} is not queued or running`)
    for (const task of [...job.pending]) {
      this.unindex(task)
      this.tasks.delete(task.id)
    }
    if (job.queued) this.queueRemove(job)
    job.cancelled = true
    this.dirtyJobs.delete(job)
    this.skipped.delete(job)
    const running = [...job.running].map((t) => t.id)
    this.retireIfDone(job)
    return running
  }

  // -------------------------------------------------------------------------
  // Deciding

  /** Every placement possible at `nowMs`, in the order they were decided. */
  schedule(nowMs: number): Placement[] {
    checkTime(nowMs, this.lastNowMs)
    this.lastNowMs = nowMs
    this.call++
    const placements: Placement[] = []

    // 1. Jobs skipped at the last decision have waited since; those whose wait ran out may take more now.
    if (this.lastScheduleMs !== undefined) {
      const elapsedMs = nowMs - this.lastScheduleMs
      for (const job of this.skipped) {
        const before = allowedLevel(job.delay, this.waits)
        accrue(job.delay, elapsedMs)
        if (allowedLevel(job.delay, this.waits) !== before) this.dirtyJobs.add(job)
      }
    }
    this.skipped.clear()
    const declined: Job[] = []

    // 2. Agents with freed resources, offered to every job.
    for (const agent of this.dirtyAgents) {
      agent.offeredInCall = this.call
      this.offer(agent, undefined, nowMs, placements, declined)
    }
    this.dirtyAgents.clear()

    // 3. Agents that stayed free, offered to the jobs that may now take what they declined.
    const dirty = [...this.dirtyJobs].filter((j) => j.queued)
    this.dirtyJobs.clear()
    if (dirty.length > 0) {
      for (const agent of this.freeAgents) {
        if (agent.offeredInCall !== this.call) this.offer(agent, dirty, nowMs, placements, declined)
      }
    }

    // 4. Skipped: jobs that declined an offer, and jobs that go on declining an agent still free.
    for (const job of declined) {
      job.declined = false
      if (job.queued) this.skipped.add(job)
    }
    if (this.freeAgents.size > 0) {
      const fitsFree = new Map<string, boolean>()
      for (const role of this.roles.values()) {
        for (const job of role.queue) {
          if (this.skipped.has(job)) continue
          const key = shapeKey(job.demand)
          let fit = fitsFree.get(key)
          if (fit === undefined) {
            fit = false
            for (const agent of this.freeAgents) {
              if (R.fits(job.demand, agent.free)) {
                fit = true
                break
              }
            }
            fitsFree.set(key, fit)
          }
          if (!fit) continue
          assert(allowedLevel(job.delay, this.waits) !== LEVEL_ANY && job.pendingNoPref.size === 0, `job ${job.id} takes any agent, yet one it fits stayed free`)
          this.skipped.add(job)
        }
      }
    }
    this.lastScheduleMs = nowMs
    return placements
  }

  /**
   * When schedule() next has something to decide: now (the latest time passed
   * in) after any change since the last call, else when the first skipped job's
   * wait runs out; undefined when nothing will change until something else does.
   */
  nextWakeMs(): number | undefined {
    if (this.dirtyAgents.size > 0 || this.dirtyJobs.size > 0) return this.lastNowMs
    if (this.lastScheduleMs === undefined) return undefined
    let wake: number | undefined
    for (const job of this.skipped) {
      const ms = msUntilNextLevel(job.delay, this.waits)
      if (ms !== undefined && (wake === undefined || this.lastScheduleMs + ms < wake)) wake = this.lastScheduleMs + ms
    }
    return wake
  }

  // -------------------------------------------------------------------------
  // Looking

  agent(id: string): AgentView | undefined {
    const a = this.agents.get(id)
    return a && { id: a.id, nodeId: a.nodeId, rack: a.rack, total: a.total, used: a.used, free: a.free, runningTasks: [...a.running].map((t) => t.id), holds: [...a.holds].map((h) => h.id) }
  }

  task(id: string): TaskView | undefined {
    const t = this.tasks.get(id)
    return t && { id: t.id, jobId: t.job.id, role: t.job.role.name, state: t.state, agentId: t.agent?.id, locality: t.locality, queuedAtMs: t.queuedAtMs, attempts: t.attempts }
  }

  job(id: string): JobView | undefined {
    const j = this.jobs.get(id)
    if (j === undefined) return undefined
    const level = allowedLevel(j.delay, this.waits)
    return {
      id: j.id,
      role: j.role.name,
      pendingTasks: j.pending.size,
      runningTasks: j.running.size,
      cancelled: j.cancelled,
      accepts: level === LEVEL_ANY ? 'ANY' : level === LEVEL_RACK ? 'RACK_LOCAL' : 'NODE_LOCAL',
      skippedMs: j.delay.waitedMs,
    }
  }

  roleShares(): RoleView[] {
    return [...this.roles.values()].map((r) => {
      const share = dominantShare(r.usage, this.total)
      return { role: r.name, weight: r.weight, usage: r.usage, dominantShare: share, weightedShare: share / r.weight, jobs: r.jobs, runningTasks: r.running, pendingTasks: r.pending }
    })
  }

  /** Everything the registered agents offer together. */
  clusterTotal(): Resources {
    return this.total
  }

  counts(): { agents: number; roles: number; jobs: number; pendingTasks: number; runningTasks: number } {
    return { agents: this.agents.size, roles: this.roles.size, jobs: this.jobs.size, pendingTasks: this.pendingTotal, runningTasks: this.tasks.size - this.pendingTotal }
  }

  /** Recounts everything from scratch and throws on the first disagreement (tests call it after every step). */
  checkInvariants(): void {
    let total: Resources = R.ZERO
    let running = 0
    for (const a of this.agents.values()) {
      total = R.add(total, a.total)
      let used: Resources = R.ZERO
      for (const t of a.running) {
        assert(t.state === 'running' && t.agent === a, `task ${t.id} runs on agent ${a.id}`)
        used = R.add(used, t.job.demand)
      }
      for (const h of a.holds) {
        assert(h.agent === a && this.holds.get(h.id) === h, `hold ${h.id} is on agent ${a.id}`)
        used = R.add(used, h.resources)
      }
      assert(R.equals(used, a.used), `agent ${a.id}: used is the sum of its tasks and holds`)
      assert(R.equals(a.free, R.sub(a.total, a.used)), `agent ${a.id}: free is total - used`)
      assert(this.freeAgents.has(a) === !R.exhausted(a.free), `agent ${a.id}: in the free set exactly when it has cpus and memory left`)
      if (a.nodeId !== undefined) assert(this.agentsByNode.get(a.nodeId) === a, `datanode ${a.nodeId} maps to agent ${a.id}`)
      running += a.running.size
    }
    assert(this.agentsByNode.size <= this.agents.size && this.agents.size <= AGENTS_MAX, 'agents within bounds')
    assert(R.equals(total, this.total), 'the cluster total is the sum of the agents')
    let pending = 0
    const usage = new Map<Role, Resources>()
    for (const j of this.jobs.values()) {
      assert(j.pending.size + j.running.size > 0 || j.cancelled, `job ${j.id} has tasks left`)
      assert(j.queued === j.pending.size > 0, `job ${j.id} is queued exactly when it has pending tasks`)
      assert(!j.cancelled || j.pending.size === 0, `cancelled job ${j.id} has no pending task`)
      let indexed = j.pendingNoPref.size
      for (const t of j.pending) {
        assert(t.state === 'pending' && t.job === j && this.tasks.get(t.id) === t, `pending task ${t.id} belongs to job ${j.id}`)
        for (const n of t.preferredNodes) assert(j.pendingByNode.get(n)?.has(t) === true, `task ${t.id} indexed under datanode ${n}`)
        for (const r of t.preferredRacks) assert(j.pendingByRack.get(r)?.has(t) === true, `task ${t.id} indexed under rack ${r}`)
        if (t.preferredNodes.length > 0 || t.preferredRacks.length > 0) indexed++
      }
      assert(indexed === j.pending.size, `job ${j.id}: every pending task indexed once by preference`)
      for (const t of j.running) {
        assert(t.state === 'running' && t.agent !== undefined && this.agents.get(t.agent.id) === t.agent, `running task ${t.id} is on a registered agent`)
        usage.set(j.role, R.add(usage.get(j.role) ?? R.ZERO, j.demand))
      }
      pending += j.pending.size
    }
    const holds = new Map<Role, number>()
    for (const h of this.holds.values()) {
      assert(h.agent.holds.has(h) && this.agents.get(h.agent.id) === h.agent, `hold ${h.id} is on a registered agent`)
      usage.set(h.role, R.add(usage.get(h.role) ?? R.ZERO, h.resources))
      holds.set(h.role, (holds.get(h.role) ?? 0) + 1)
    }
    assert(pending === this.pendingTotal, 'pending tasks counted')
    assert(pending + running === this.tasks.size, 'every task is pending or running')
    assert(this.tasks.size <= QUEUED_TASKS_MAX && this.jobs.size <= JOBS_MAX && this.roles.size <= ROLES_MAX, 'tasks, jobs and roles within bounds')
    for (const r of this.roles.values()) {
      assert(R.equals(r.usage, usage.get(r) ?? R.ZERO), `role ${r.name}: usage is the sum of its running tasks and holds`)
      assert(r.holds === (holds.get(r) ?? 0), `role ${r.name}: holds counted`)
      assert(this.roles.get(r.name) === r && (r.pinned || r.jobs > 0 || r.holds > 0), `role ${r.name} is kept only while pinned, with jobs or holds`)
      for (let i = 0; i < r.queue.length; i++) {
        const j = r.queue[i]!
        assert(j.role === r && j.queued && j.queueKey === this.queueKey(j), `job ${j.id} queued in role ${r.name} at its current key`)
        if (i > 0) assert(this.queuedBefore(r.queue[i - 1]!, j.queueKey, j.seq), `role ${r.name}: queue in offer order`)
      }
    }
  }

  // -------------------------------------------------------------------------
  // Internals

  private newRole(name: string, weight: number, pinned: boolean): Role {
    return { name, weight, pinned, usage: R.ZERO, queue: [], jobs: 0, holds: 0, running: 0, pending: 0 }
  }

  /** The role of that name, created (unpinned, default weight) when new: the caller checked ROLES_MAX. */
  private roleNamed(name: string): Role {
    let role = this.roles.get(name)
    if (role === undefined) {
      role = this.newRole(name, ROLE_WEIGHT_DEFAULT, false)
      this.roles.set(name, role)
    }
    return role
  }

  private registeredAgent(id: string): Agent {
    const agent = this.agents.get(id)
    if (agent === undefined) throw invalid(`agent ${id} is not registered`)
    return agent
  }

  private runningTask(id: string): Task {
    const task = this.tasks.get(id)
    if (task === undefined) throw invalid(`task ${id} is not queued or running`)
    if (task.state !== 'running') throw invalid(`task ${id} is queued, not running`)
    return task
  }

  private racksOf(nodes: readonly string[]): string[] {
    const racks: string[] = []
    for (const n of nodes) {
      const rack = this.agentsByNode.get(n)?.rack
      if (rack !== undefined && !racks.includes(rack)) racks.push(rack)
    }
    return racks
  }

  private someAgentFits(need: Resources): boolean {
    const key = shapeKey(need)
    let fit = this.fitsSomeAgent.get(key)
    if (fit === undefined) {
      fit = false
      for (const a of this.agents.values()) {
        if (R.fits(need, a.total)) {
          fit = true
          break
        }
      }
      this.fitsSomeAgent.set(key, fit)
    }
    return fit
  }

  private agentsChanged(): void {
    this.fitsSomeAgent.clear()
    // Shares are fractions of the cluster total.
    this.roleOrder = undefined
  }

  /** The agent has more free resources than before: it is offered to every job at the next schedule(). */
  private freed(agent: Agent): void {
    if (!R.exhausted(agent.free)) this.freeAgents.add(agent)
    this.dirtyAgents.add(agent)
  }

  /** Offers `agent` to the roles in DRF order, and within a role to its jobs (all, or just `only`), until it is full or every job declines. */
  private offer(agent: Agent, only: Job[] | undefined, nowMs: number, placements: Placement[], declined: Job[]): void {
    for (;;) {
      if (R.exhausted(agent.free)) return
      let placed = false
      for (const role of this.offerOrder()) {
        const jobs = only === undefined ? role.queue : this.queuedOf(role, only)
        for (const job of jobs) {
          if (!R.fits(job.demand, agent.free)) continue
          if (this.tryLaunch(job, agent, nowMs, placements)) {
            placed = true
            break
          }
          if (!job.declined) {
            job.declined = true
            declined.push(job)
          }
        }
        if (placed) break
      }
      if (!placed) return
    }
  }

  /** Launches one of the job's tasks on the agent if delay scheduling lets it; false when the job declines. */
  private tryLaunch(job: Job, agent: Agent, nowMs: number, placements: Placement[]): boolean {
    let task: Task | undefined
    let locality: Locality = 'NODE_LOCAL'
    const local = agent.nodeId === undefined ? undefined : job.pendingByNode.get(agent.nodeId)
    if (local !== undefined) {
      task = first(local)
    } else if (job.pendingNoPref.size > 0) {
      task = first(job.pendingNoPref)
      locality = 'NO_PREF'
    } else {
      const allowed = allowedLevel(job.delay, this.waits)
      const rackLocal = allowed >= LEVEL_RACK ? job.pendingByRack.get(agent.rack) : undefined
      if (rackLocal !== undefined) {
        task = first(rackLocal)
        locality = 'RACK_LOCAL'
      } else if (allowed >= LEVEL_ANY) {
        task = first(job.pending)
        locality = 'ANY'
      }
    }
    if (task === undefined) return false
    placements.push(this.launch(task, agent, locality, nowMs))
    return true
  }

  private launch(task: Task, agent: Agent, locality: Locality, nowMs: number): Placement {
    const job = task.job
    const role = job.role
    assert(task.state === 'pending' && R.fits(job.demand, agent.free), `task ${task.id} is pending and fits agent ${agent.id}`)
    this.unindex(task)
    task.state = 'running'
    task.agent = agent
    task.locality = locality
    task.attempts++
    agent.used = R.add(agent.used, job.demand)
    agent.free = R.sub(agent.free, job.demand)
    agent.running.add(task)
    if (R.exhausted(agent.free)) this.freeAgents.delete(agent)
    role.usage = R.add(role.usage, job.demand)
    role.running++
    job.running.add(task)
    afterLaunch(job.delay, locality)
    this.requeue(job)
    this.roleOrder = undefined
    return {
      taskId: task.id,
      jobId: job.id,
      role: role.name,
      agentId: agent.id,
      nodeId: agent.nodeId,
      rack: agent.rack,
      locality,
      waitedMs: nowMs - task.queuedAtMs,
      resources: job.demand,
    }
  }

  /** A running task stops holding its agent's resources (finished, failed, or its agent left). */
  private release(task: Task): void {
    const agent = task.agent
    const job = task.job
    assert(task.state === 'running' && agent !== undefined, `task ${task.id} is running`)
    agent.used = R.sub(agent.used, job.demand)
    agent.free = R.add(agent.free, job.demand)
    agent.running.delete(task)
    job.role.usage = R.sub(job.role.usage, job.demand)
    job.role.running--
    job.running.delete(task)
    task.agent = undefined
    this.freed(agent)
    this.requeue(job)
    this.roleOrder = undefined
  }

  /** Queues a task (new, or to run again) under its preferences. */
  private enqueue(task: Task, nowMs: number): void {
    const job = task.job
    task.state = 'pending'
    task.queuedAtMs = nowMs
    task.agent = undefined
    task.locality = undefined
    job.pending.add(task)
    for (const n of task.preferredNodes) indexAdd(job.pendingByNode, n, task)
    for (const r of task.preferredRacks) indexAdd(job.pendingByRack, r, task)
    if (task.preferredNodes.length === 0 && task.preferredRacks.length === 0) job.pendingNoPref.add(task)
    job.role.pending++
    this.pendingTotal++
    this.requeue(job)
    this.dirtyJobs.add(job)
    this.roleOrder = undefined
  }

  /** Takes a pending task out of its job's indexes (it is being placed, or dropped). */
  private unindex(task: Task): void {
    const job = task.job
    assert(task.state === 'pending' && job.pending.delete(task), `task ${task.id} is pending`)
    for (const n of task.preferredNodes) indexDelete(job.pendingByNode, n, task)
    for (const r of task.preferredRacks) indexDelete(job.pendingByRack, r, task)
    if (task.preferredNodes.length === 0 && task.preferredRacks.length === 0) job.pendingNoPref.delete(task)
    job.role.pending--
    this.pendingTotal--
  }

  private retireIfDone(job: Job): void {
    if (job.pending.size > 0 || job.running.size > 0) return
    assert(!job.queued, `job ${job.id} without pending tasks is not queued`)
    this.jobs.delete(job.id)
    this.dirtyJobs.delete(job)
    this.skipped.delete(job)
    job.role.jobs--
    this.dropRoleIfIdle(job.role)
  }

  private dropRoleIfIdle(role: Role): void {
    if (role.jobs === 0 && role.holds === 0 && !role.pinned) this.roles.delete(role.name)
  }

  // Each role's queue holds its jobs with pending tasks, ordered by (key, seq):
  // key is the job's running tasks ('fair') or 0 ('fifo'). A job's place is
  // found again by binary search on the key it was queued with.

  private queueKey(job: Job): number {
    return this.fifo ? 0 : job.running.size
  }

  private queuedBefore(other: Job, key: number, seq: number): boolean {
    return other.queueKey < key || (other.queueKey === key && other.seq < seq)
  }

  private queueSearch(queue: readonly Job[], key: number, seq: number): number {
    let lo = 0
    let hi = queue.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.queuedBefore(queue[mid]!, key, seq)) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private queueRemove(job: Job): void {
    const queue = job.role.queue
    const i = this.queueSearch(queue, job.queueKey, job.seq)
    assert(queue[i] === job, `job ${job.id} is in its role's queue where its key puts it`)
    queue.splice(i, 1)
    job.queued = false
  }

  /** Puts the job where it now belongs in its role's queue: in it when it has pending tasks, at its current key. */
  private requeue(job: Job): void {
    const want = job.pending.size > 0
    if (job.queued && (!want || job.queueKey !== this.queueKey(job))) this.queueRemove(job)
    if (want && !job.queued) {
      job.queueKey = this.queueKey(job)
      job.role.queue.splice(this.queueSearch(job.role.queue, job.queueKey, job.seq), 0, job)
      job.queued = true
    }
  }

  private offerOrder(): Role[] {
    this.roleOrder ??= offerOrder(
      [...this.roles.values()].filter((r) => r.queue.length > 0),
      this.total,
    )
    return this.roleOrder
  }

  /** The jobs of `only` in `role`'s queue, in queue order. */
  private queuedOf(role: Role, only: readonly Job[]): Job[] {
    return only.filter((j) => j.role === role && j.queued).sort((a, b) => a.queueKey - b.queueKey || a.seq - b.seq)
  }
}

function shapeKey(r: Resources): string {
  return `${r.milliCpus}/${r.memMiB}/${r.diskMiB}`
}
