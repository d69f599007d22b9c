// The pure scheduler core driven by seeded random operations (agents coming,
// changing and going; jobs submitted, finished, retried, cancelled; time
// passing), checked after every step against what must always hold: the books
// balance, every placement's locality is what its preferences say, and no
// decision possible at an instant was left unmade.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { SchedulerCore, type Placement } from '../src/scheduler/core.js'
import { localityOf } from '../src/scheduler/delay.js'
import { fits, resources, type Resources } from '../src/scheduler/resources.js'

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

interface ModelTask {
  nodes: string[]
  racks: string[]
}

interface ModelJob {
  demand: Resources
  /** Pending tasks as the test knows them. */
  pending: Map<string, ModelTask>
}

const RACKS = ['/r1', '/r2', '/r3']
const SHAPES = [resources(1, 1024), resources(0.5, 3072), resources(2, 512), resources(0.25, 256)]
const ROLES = ['etl', 'adhoc', 'prod']

/** Runs `steps` random operations; returns every placement made, for comparing runs. */
function run(t: ExecutionContext, seed: number, steps: number, jobOrder: 'fair' | 'fifo' = 'fair'): Placement[] {
  const random = mulberry32(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
  const core = new SchedulerCore({ localityWaitMs: 1_500, rackLocalityWaitMs: 1_000, roleWeights: { prod: 2 }, jobOrder })
  const agents = new Map<string, { nodeId: string | undefined; rack: string }>()
  const jobs = new Map<string, ModelJob>()
  const running = new Map<string, string>() // task -> job
  /** Each task's preferences from its submission, for when it is queued again. */
  const models = new Map<string, ModelTask>()
  const log: Placement[] = []
  let now = 0
  let nextId = 0

  const addAgent = (): void => {
    const id = `a${nextId++}`
    // Most agents sit on a datanode; some are compute only.
    const nodeId = random() < 0.85 ? `dn${Math.floor(random() * 16)}` : undefined
    if (nodeId !== undefined && [...agents.values()].some((a) => a.nodeId === nodeId)) return
    const rack = pick(RACKS)
    core.addAgent({ id, nodeId, rack, resources: resources(1 + Math.floor(random() * 4), 1024 * (1 + Math.floor(random() * 6))) })
    agents.set(id, { nodeId, rack })
  }
  for (let i = 0; i < 10; i++) addAgent()

  for (let step = 0; step < steps; step++) {
    const r = random()
    if (r < 0.25) {
      const id = `j${nextId++}`
      const demand = pick(SHAPES)
      const tasks = Array.from({ length: 1 + Math.floor(random() * 6) }, (_, i) => {
        const replicas = random() < 0.15 ? 0 : 1 + Math.floor(random() * 3)
        const nodes = [...new Set(Array.from({ length: replicas }, () => `dn${Math.floor(random() * 16)}`))]
        const racks = random() < 0.5 ? [...new Set(nodes.map(() => pick(RACKS)))] : undefined
        return { id: `${id}-${i}`, preferredNodes: nodes, preferredRacks: racks }
      })
      try {
        core.submit({ id, role: pick(ROLES), resources: demand, tasks }, now)
      } catch (err) {
        // Only refusal there can be here: no agent big enough.
        t.regex((err as Error).message, /more than any agent has|no agent is registered/)
        continue
      }
      const pending = new Map<string, ModelTask>()
      for (const task of tasks) {
        const derived = [...new Set(task.preferredNodes.flatMap((n) => [...agents.values()].filter((a) => a.nodeId === n).map((a) => a.rack)))]
        const model = { nodes: task.preferredNodes, racks: task.preferredRacks ?? derived }
        models.set(task.id, model)
        pending.set(task.id, model)
      }
      jobs.set(id, { demand, pending })
    } else if (r < 0.5 && running.size > 0) {
      const taskId = pick([...running.keys()])
      running.delete(taskId)
      core.taskFinished(taskId)
    } else if (r < 0.55 && running.size > 0) {
      const taskId = pick([...running.keys()])
      const jobId = running.get(taskId)!
      running.delete(taskId)
      const cancelled = core.job(jobId)!.cancelled
      t.is(core.retryTask(taskId, now), !cancelled, 'retried unless its job was cancelled')
      if (!cancelled) jobs.get(jobId)!.pending.set(taskId, models.get(taskId)!)
    } else if (r < 0.58 && agents.size > 3) {
      const id = pick([...agents.keys()])
      for (const lost of core.removeAgent(id, now)) {
        running.delete(lost.taskId)
        if (lost.requeued) jobs.get(lost.jobId)!.pending.set(lost.taskId, models.get(lost.taskId)!)
      }
      agents.delete(id)
    } else if (r < 0.62) {
      addAgent()
    } else if (r < 0.64 && agents.size > 0) {
      const id = pick([...agents.keys()])
      const rack = pick(RACKS)
      core.updateAgent(id, { resources: resources(1 + Math.floor(random() * 4), 1024 * (1 + Math.floor(random() * 6))), rack })
      agents.get(id)!.rack = rack
    } else if (r < 0.66 && jobs.size > 0) {
      const id = pick([...jobs.keys()])
      if (core.job(id) !== undefined) {
        for (const taskId of core.cancelJob(id)) t.true(running.has(taskId))
        jobs.get(id)!.pending.clear()
      }
    } else {
      now += Math.floor(random() * 800)
      const placed = core.schedule(now)
      for (const p of placed) {
        const job = jobs.get(p.jobId)!
        const task = job.pending.get(p.taskId)
        t.truthy(task, `${p.taskId} was pending`)
        job.pending.delete(p.taskId)
        t.false(running.has(p.taskId), `${p.taskId} placed twice`)
        running.set(p.taskId, p.jobId)
        const agent = agents.get(p.agentId)!
        t.is(p.locality, localityOf(task!.nodes, task!.racks, agent.nodeId, agent.rack), `${p.taskId}: locality as its preferences say`)
        t.true(p.waitedMs >= 0)
      }
      log.push(...placed)
      checkNothingMissed(t, core, agents, jobs)
    }
    core.checkInvariants()
    for (const id of [...jobs.keys()]) if (core.job(id) === undefined) jobs.delete(id)
    t.is(core.counts().runningTasks, running.size)
    t.is(core.counts().pendingTasks, [...jobs.values()].reduce((s, j) => s + j.pending.size, 0))
  }
  t.true(log.length > steps / 10, `placed ${log.length} tasks`)
  return log
}

/**
 * After schedule(): every agent left with room for some job's task is one that
 * job declines for now: none of its pending tasks is local to it (or, once the
 * job accepts rack-local slots, on its rack), and the job does not yet accept any slot.
 */
function checkNothingMissed(t: ExecutionContext, core: SchedulerCore, agents: Map<string, { nodeId: string | undefined; rack: string }>, jobs: Map<string, ModelJob>): void {
  for (const [agentId, a] of agents) {
    const free = core.agent(agentId)!.free
    for (const [jobId, job] of jobs) {
      if (job.pending.size === 0 || !fits(job.demand, free)) continue
      const accepts = core.job(jobId)!.accepts
      t.not(accepts, 'ANY', `job ${jobId} accepts any slot, yet ${agentId} has room for it`)
      for (const [taskId, task] of job.pending) {
        const locality = localityOf(task.nodes, task.racks, a.nodeId, a.rack)
        t.not(locality, 'NODE_LOCAL', `${taskId} is node-local to ${agentId}, which has room`)
        t.not(locality, 'NO_PREF', `${taskId} can run anywhere, and ${agentId} has room`)
        if (accepts === 'RACK_LOCAL') t.not(locality, 'RACK_LOCAL', `${taskId} is rack-local to ${agentId}, which has room, and its job accepts that`)
      }
    }
  }
}

test.serial('random operations keep every invariant and miss no possible placement (fair job order)', (t) => {
  for (const seed of [1, 2, 3]) run(t, seed, 1_500)
})

test.serial('random operations keep every invariant and miss no possible placement (fifo job order)', (t) => {
  for (const seed of [4, 5]) run(t, seed, 1_500, 'fifo')
})

test.serial('the same operations give the same decisions', (t) => {
  t.deepEqual(run(t, 7, 800), run(t, 7, 800))
})
