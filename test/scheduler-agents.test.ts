// Agents coming and going, tasks failing and jobs being cancelled, in the pure
// scheduler core: an agent that fails gives back its running tasks to be run
// again elsewhere, and nothing is ever lost or counted twice.
import test from 'ava'
import { SchedulerCore } from '../src/scheduler/core.js'
import { LOCALITY_WAIT_DEFAULT_MS } from '../src/scheduler/limits.js'
import { resources } from '../src/scheduler/resources.js'

const W = LOCALITY_WAIT_DEFAULT_MS
const SLOT = resources(1, 1024)

/** dn1, dn2 in /r1 and dn3 in /r2, each an agent with two slots. */
function threeNodes(): SchedulerCore {
  const core = new SchedulerCore()
  core.addAgent({ id: 'a1', nodeId: 'dn1', rack: '/r1', resources: resources(2, 2048) })
  core.addAgent({ id: 'a2', nodeId: 'dn2', rack: '/r1', resources: resources(2, 2048) })
  core.addAgent({ id: 'a3', nodeId: 'dn3', rack: '/r2', resources: resources(2, 2048) })
  return core
}

test('a failed agent returns its running tasks; they run again elsewhere, after their own wait', (t) => {
  const core = threeNodes()
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [{ id: 'x', preferredNodes: ['dn1', 'dn3'] }, { id: 'y', preferredNodes: ['dn1'] }, { id: 'z', preferredNodes: ['dn2'] }] }, 0)
  t.deepEqual(
    core.schedule(0).map((p) => [p.taskId, p.agentId, p.locality]),
    [
      ['x', 'a1', 'NODE_LOCAL'],
      ['y', 'a1', 'NODE_LOCAL'],
      ['z', 'a2', 'NODE_LOCAL'],
    ],
  )
  const lost = core.removeAgent('a1', 10_000)
  t.deepEqual(lost, [
    { taskId: 'x', jobId: 'job', requeued: true },
    { taskId: 'y', jobId: 'job', requeued: true },
  ])
  t.is(core.agent('a1'), undefined)
  t.deepEqual(core.clusterTotal(), resources(4, 4096), 'the cluster shrank')
  t.deepEqual(core.counts(), { agents: 2, roles: 1, jobs: 1, pendingTasks: 2, runningTasks: 1 })
  t.like(core.task('x'), { state: 'pending', agentId: undefined, queuedAtMs: 10_000, attempts: 1 })
  core.checkInvariants()

  // x's other replica is on dn3: node-local at once. y's only one is gone: rack-local after the wait.
  t.deepEqual(
    core.schedule(10_000).map((p) => [p.taskId, p.agentId, p.locality, p.waitedMs]),
    [['x', 'a3', 'NODE_LOCAL', 0]],
  )
  t.deepEqual(core.schedule(10_000 + W - 1), [])
  t.deepEqual(
    core.schedule(10_000 + W).map((p) => [p.taskId, p.agentId, p.locality, p.waitedMs]),
    [['y', 'a2', 'RACK_LOCAL', W]],
  )
  t.is(core.task('y')?.attempts, 2)
  core.checkInvariants()
})

test('an agent that comes back on the same datanode serves node-local tasks again', (t) => {
  const core = threeNodes()
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [{ id: 'x', preferredNodes: ['dn1'] }] }, 0)
  core.schedule(0)
  core.removeAgent('a1', 1_000)
  t.deepEqual(core.schedule(1_000), [], 'waits for dn1')
  core.addAgent({ id: 'a1-again', nodeId: 'dn1', rack: '/r1', resources: resources(2, 2048) })
  t.deepEqual(
    core.schedule(1_500).map((p) => [p.taskId, p.agentId, p.locality]),
    [['x', 'a1-again', 'NODE_LOCAL']],
  )
})

test('a failed task is retried: its resources are free at once and it is queued with a new wait', (t) => {
  const core = threeNodes()
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [{ id: 'x', preferredNodes: ['dn2'] }] }, 0)
  core.schedule(0)
  t.deepEqual(core.agent('a2')?.used, SLOT)
  t.true(core.retryTask('x', 4_000))
  t.deepEqual(core.agent('a2')?.used, resources(0, 0))
  t.like(core.task('x'), { state: 'pending', queuedAtMs: 4_000, attempts: 1 })
  const [p] = core.schedule(4_500)
  t.like(p, { taskId: 'x', agentId: 'a2', locality: 'NODE_LOCAL', waitedMs: 500 })
  t.is(core.task('x')?.attempts, 2)
  core.taskFinished('x')
  t.is(core.task('x'), undefined)
  t.is(core.job('job'), undefined, 'a job is gone with its last task')
  t.throws(() => core.taskFinished('x'), { message: /task x is not queued or running/ }, 'finishing twice is refused')
  core.checkInvariants()
})

test('cancelling a job drops its queued tasks and returns the running ones to kill', (t) => {
  const core = threeNodes()
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [1, 2, 3, 4, 5, 6, 7, 8].map((i) => ({ id: `t${i}` })) }, 0)
  t.is(core.schedule(0).length, 6)
  t.deepEqual(core.cancelJob('job'), ['t1', 't2', 't3', 't4', 't5', 't6'])
  t.deepEqual(core.counts(), { agents: 3, roles: 1, jobs: 1, pendingTasks: 0, runningTasks: 6 })
  t.is(core.task('t7'), undefined)
  t.like(core.job('job'), { cancelled: true, pendingTasks: 0, runningTasks: 6 })
  t.deepEqual(core.cancelJob('job'), ['t1', 't2', 't3', 't4', 't5', 't6'], 'cancelling again changes nothing')
  core.taskFinished('t1')
  t.false(core.retryTask('t2', 100), 'a task of a cancelled job is not run again')
  t.deepEqual(core.removeAgent('a3', 200), [
    { taskId: 't5', jobId: 'job', requeued: false },
    { taskId: 't6', jobId: 'job', requeued: false },
  ])
  for (const id of ['t3', 't4']) core.taskFinished(id)
  t.is(core.job('job'), undefined)
  t.deepEqual(core.counts(), { agents: 2, roles: 0, jobs: 0, pendingTasks: 0, runningTasks: 0 })
  t.deepEqual(core.schedule(300), [])
  core.checkInvariants()
})

test('an agent updated with more resources takes more; one updated below what it runs takes nothing until tasks end', (t) => {
  const core = threeNodes()
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: Array.from({ length: 10 }, (_, i) => ({ id: `t${i}` })) }, 0)
  t.is(core.schedule(0).length, 6)
  core.updateAgent('a1', { resources: resources(4, 4096) })
  t.deepEqual(
    core.schedule(1).map((p) => p.agentId),
    ['a1', 'a1'],
  )
  t.deepEqual(core.clusterTotal(), resources(8, 8192))
  core.updateAgent('a2', { resources: resources(1, 2048) })
  t.deepEqual(core.agent('a2')?.free, resources(-1, 0), 'running tasks keep their resources')
  const onA2 = core.agent('a2')!.runningTasks
  core.taskFinished(onA2[0]!)
  t.deepEqual(core.schedule(2), [], 'a2 is exactly full now')
  core.taskFinished(onA2[1]!)
  t.deepEqual(
    core.schedule(3).map((p) => p.agentId),
    ['a2'],
  )
  core.checkInvariants()
})

test('a job no remaining agent can fit waits, and runs when a large enough agent registers', (t) => {
  const core = threeNodes()
  core.addAgent({ id: 'big', rack: '/r2', resources: resources(16, 65_536) })
  core.submit({ id: 'job', role: 'etl', resources: resources(8, 32_768), tasks: [{ id: 'x' }] }, 0)
  t.is(core.schedule(0)[0]?.agentId, 'big')
  core.removeAgent('big', 1)
  t.deepEqual(core.schedule(1), [])
  t.like(core.task('x'), { state: 'pending' })
  core.addAgent({ id: 'big2', rack: '/r1', resources: resources(8, 32_768) })
  t.is(core.schedule(2)[0]?.agentId, 'big2')
})

test('updating an agent to another rack changes what is rack-local to it', (t) => {
  const core = threeNodes()
  core.submit({ id: 'fill', role: 'etl', resources: resources(2, 2048), tasks: [{ id: 'f1', preferredNodes: ['dn1'] }, { id: 'f2', preferredNodes: ['dn2'] }] }, 0)
  core.schedule(0)
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [{ id: 'x', preferredNodes: ['dn1'] }] }, 0)
  t.deepEqual(core.schedule(0), [])
  core.updateAgent('a3', { rack: '/r1' })
  t.deepEqual(
    core.schedule(W).map((p) => [p.agentId, p.locality]),
    [['a3', 'RACK_LOCAL']],
  )
})

test('nextWakeMs: a new agent or job wants a decision now; a settled core wants none', (t) => {
  const core = new SchedulerCore()
  t.is(core.nextWakeMs(), undefined)
  core.addAgent({ id: 'a1', nodeId: 'dn1', rack: '/r1', resources: resources(1, 1024) })
  t.is(core.nextWakeMs(), 0, 'before any time was passed in, now is 0')
  t.deepEqual(core.schedule(5), [])
  t.is(core.nextWakeMs(), undefined)
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [{ id: 'x' }] }, 7)
  t.is(core.nextWakeMs(), 7)
  t.is(core.schedule(7).length, 1)
  t.is(core.nextWakeMs(), undefined)
})
