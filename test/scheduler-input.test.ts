// Bad input to the pure scheduler core: every refusal is a LoamError with code
// 'invalid-argument' that names what was wrong, and leaves the core exactly as
// it was (a twin that never saw the bad call decides the same from then on).
import test from 'ava'
import { LoamError } from '../src/rpc/errors.js'
import { SchedulerCore } from '../src/scheduler/core.js'
import { AGENTS_MAX, ID_BYTES_MAX, JOBS_MAX, PREFERRED_NODES_PER_TASK_MAX, ROLES_MAX, TASKS_PER_JOB_MAX } from '../src/scheduler/limits.js'
import { resources, type Resources } from '../src/scheduler/resources.js'
import type { JobSpec } from '../src/scheduler/spec.js'

const GiB = 1024
const SLOT = resources(1, GiB)

/**
 * a1 (dn1, /r1): 4 cpus, 8 GiB; a2 (dn2, /r1): 2 cpus, 16 GiB; a3 (no
 * datanode, /r2): 8 cpus, 4 GiB. Job j1 fills a1 at 1 s; job j2's two tasks
 * wait for dn1.
 */
function base(): SchedulerCore {
  const core = new SchedulerCore()
  core.addAgent({ id: 'a1', nodeId: 'dn1', rack: '/r1', resources: resources(4, 8 * GiB) })
  core.addAgent({ id: 'a2', nodeId: 'dn2', rack: '/r1', resources: resources(2, 16 * GiB) })
  core.addAgent({ id: 'a3', rack: '/r2', resources: resources(8, 4 * GiB) })
  core.submit(job('j1', 4, ['dn1']), 1_000)
  const placed = core.schedule(1_000)
  core.submit(job('j2', 2, ['dn1']), 1_000)
  placed.push(...core.schedule(1_000))
  if (placed.length !== 4 || placed.some((p) => p.agentId !== 'a1')) throw new Error(`base: placed ${JSON.stringify(placed)}`)
  return core
}

function job(id: string, tasks: number, preferredNodes: string[] = [], need: Resources = SLOT, role = 'etl'): JobSpec {
  return { id, role, resources: need, tasks: Array.from({ length: tasks }, (_, i) => ({ id: `${id}-${i}`, preferredNodes })) }
}

/** Everything the core shows about itself. */
function snapshot(core: SchedulerCore): string {
  return JSON.stringify({
    counts: core.counts(),
    total: core.clusterTotal(),
    roles: core.roleShares(),
    agents: ['a1', 'a2', 'a3'].map((id) => core.agent(id)),
    jobs: ['j1', 'j2'].map((id) => core.job(id)),
    tasks: ['j1-0', 'j1-1', 'j1-2', 'j1-3', 'j2-0', 'j2-1'].map((id) => core.task(id)),
    wake: core.nextWakeMs(),
  })
}

type Bad = [name: string, call: (core: SchedulerCore) => unknown, message: RegExp]

// Input from JSON can be anything: these casts stand for what a daemon might pass on unchecked.
const bad: Bad[] = [
  ['agent: duplicate id', (c) => c.addAgent({ id: 'a1', rack: '/r1', resources: SLOT }), /agent a1 is already registered/],
  ['agent: a datanode that already has an agent', (c) => c.addAgent({ id: 'a9', nodeId: 'dn1', rack: '/r1', resources: SLOT }), /datanode dn1 already has agent a1/],
  ['agent: zero cpus', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(0, GiB) }), /agent a9: cpus 0 must be/],
  ['agent: negative memory', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(1, -1) }), /mem \(MiB\) -1 must be/],
  ['agent: fractional MiB', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(1, 1.5) }), /mem \(MiB\) 1.5 must be a whole number/],
  ['agent: NaN cpus', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(NaN, GiB) }), /cpus NaN/],
  ['agent: infinite memory', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(1, Infinity) }), /mem \(MiB\) Infinity/],
  ['agent: more cpus than any machine has', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(5_000, GiB) }), /cpus 5000 must be a multiple of 0.001 from 0.001 to 4096/],
  ['agent: negative disk', (c) => c.addAgent({ id: 'a9', rack: '/r1', resources: resources(1, GiB, -1) }), /disk \(MiB\) -1/],
  ['agent: no resources', (c) => c.addAgent({ id: 'a9', rack: '/r1' } as never), /resources must be given/],
  ['agent: empty id', (c) => c.addAgent({ id: '', rack: '/r1', resources: SLOT }), /agent id must be a non-empty string/],
  ['agent: id too long', (c) => c.addAgent({ id: 'x'.repeat(ID_BYTES_MAX + 1), rack: '/r1', resources: SLOT }), /longer than 255 bytes/],
  ['agent: control character in id', (c) => c.addAgent({ id: 'a\n9', rack: '/r1', resources: SLOT }), /control character/],
  ['agent: no rack', (c) => c.addAgent({ id: 'a9', resources: SLOT } as never), /agent a9: rack must be a non-empty string/],
  ['agent: empty datanode id', (c) => c.addAgent({ id: 'a9', nodeId: '', rack: '/r1', resources: SLOT }), /datanode id must be/],
  ['update: unknown agent', (c) => c.updateAgent('a9', { resources: SLOT }), /agent a9 is not registered/],
  ['update: zero memory', (c) => c.updateAgent('a1', { resources: resources(4, 0) }), /agent a1: mem \(MiB\) 0/],
  ['update: bad rack', (c) => c.updateAgent('a1', { rack: '' }), /rack must be a non-empty string/],
  ['remove: unknown agent', (c) => c.removeAgent('a9', 2_000), /agent a9 is not registered/],
  ['remove: time going back', (c) => c.removeAgent('a1', 999), /time 999 ms is before 1000 ms/],
  ['job: duplicate id', (c) => c.submit(job('j1', 1), 2_000), /job j1 already exists/],
  ['job: more cpus than any agent has', (c) => c.submit(job('big', 1, [], resources(9, GiB)), 2_000), /each task needs 9 cpus, 1024 MiB mem, 0 MiB disk, more than any agent has/],
  ['job: more memory than any agent has', (c) => c.submit(job('big', 1, [], resources(1, 17 * GiB)), 2_000), /more than any agent has/],
  ['job: every dimension fits some agent, but no agent fits all', (c) => c.submit(job('big', 1, [], resources(5, 10 * GiB)), 2_000), /more than any agent has/],
  ['job: more disk than any agent has', (c) => c.submit(job('big', 1, [], resources(1, GiB, 1)), 2_000), /more than any agent has/],
  ['job: zero cpus', (c) => c.submit(job('j9', 1, [], resources(0, GiB)), 2_000), /job j9: each task: cpus 0 must be/],
  ['job: cpus that round to zero', (c) => c.submit(job('j9', 1, [], resources(0.0001, GiB)), 2_000), /cpus 0 must be/],
  ['job: negative memory', (c) => c.submit(job('j9', 1, [], resources(1, -GiB)), 2_000), /mem \(MiB\) -1024/],
  ['job: no tasks', (c) => c.submit(job('j9', 0), 2_000), /tasks must be a non-empty list/],
  ['job: tasks not a list', (c) => c.submit({ id: 'j9', role: 'etl', resources: SLOT, tasks: 'x' } as never, 2_000), /tasks must be a non-empty list/],
  ['job: too many tasks', (c) => c.submit(job('j9', TASKS_PER_JOB_MAX + 1), 2_000), /100001 tasks, more than the 100000/],
  ['job: a task id twice', (c) => c.submit({ id: 'j9', role: 'etl', resources: SLOT, tasks: [{ id: 't' }, { id: 't' }] }, 2_000), /task id t appears twice/],
  ['job: a task id another job holds', (c) => c.submit({ id: 'j9', role: 'etl', resources: SLOT, tasks: [{ id: 'new' }, { id: 'j1-0' }] }, 2_000), /task id j1-0 is already used by job j1/],
  ['job: a preferred datanode twice', (c) => c.submit(job('j9', 1, ['dn1', 'dn2', 'dn1']), 2_000), /preferred datanode dn1 appears twice/],
  [
    'job: too many preferred datanodes',
    (c) => c.submit(job('j9', 1, Array.from({ length: PREFERRED_NODES_PER_TASK_MAX + 1 }, (_, i) => `dn${i}`)), 2_000),
    /preferred datanodes: 513, more than 512/,
  ],
  ['job: bad preferred rack', (c) => c.submit({ id: 'j9', role: 'etl', resources: SLOT, tasks: [{ id: 't', preferredRacks: [''] }] }, 2_000), /preferred rack must be/],
  ['job: empty role', (c) => c.submit(job('j9', 1, [], SLOT, ''), 2_000), /job j9: role must be a non-empty string/],
  ['job: time going back', (c) => c.submit(job('j9', 1), 999), /time 999 ms is before 1000 ms/],
  ['job: time not a number', (c) => c.submit(job('j9', 1), NaN), /time NaN ms is not a finite number/],
  ['finished: unknown task', (c) => c.taskFinished('nope'), /task nope is not queued or running/],
  ['finished: a task still queued', (c) => c.taskFinished('j2-0'), /task j2-0 is queued, not running/],
  ['retry: unknown task', (c) => c.retryTask('nope', 2_000), /task nope is not queued or running/],
  ['retry: a task still queued', (c) => c.retryTask('j2-1', 2_000), /task j2-1 is queued, not running/],
  ['retry: time going back', (c) => c.retryTask('j1-0', 0), /time 0 ms is before 1000 ms/],
  ['cancel: unknown job', (c) => c.cancelJob('j9'), /job j9 is not queued or running/],
  ['schedule: time going back', (c) => c.schedule(999), /time 999 ms is before/],
  ['schedule: infinite time', (c) => c.schedule(Infinity), /not a finite number/],
  ['schedule: negative time', (c) => c.schedule(-1), /time -1 ms is negative/],
  ['weight: zero', (c) => c.setRoleWeight('etl', 0), /role etl: weight 0 must be a number from 0.001 to 1000/],
  ['weight: negative', (c) => c.setRoleWeight('etl', -1), /weight -1/],
  ['weight: too large', (c) => c.setRoleWeight('etl', 1e6), /weight 1000000/],
  ['weight: NaN', (c) => c.setRoleWeight('etl', NaN), /weight NaN/],
  ['weight: empty role', (c) => c.setRoleWeight('', 1), /role must be a non-empty string/],
]

for (const [name, call, message] of bad) {
  test(`refused, changing nothing: ${name}`, (t) => {
    const core = base()
    const twin = base()
    const before = snapshot(core)
    const err = t.throws(() => call(core), { instanceOf: LoamError, message })
    t.is(err?.code, 'invalid-argument')
    t.is(snapshot(core), before, 'the core shows the same state')
    core.checkInvariants()
    // Same decisions from here on as a core that never saw the bad call.
    for (const c of [core, twin]) {
      c.taskFinished('j1-0')
      c.updateAgent('a2', { resources: resources(3, 16 * GiB) })
    }
    t.deepEqual(core.schedule(4_000), twin.schedule(4_000))
    t.is(snapshot(core), snapshot(twin))
  })
}

test('a job before any agent is registered is refused: nothing could run it', (t) => {
  const core = new SchedulerCore()
  const err = t.throws(() => core.submit(job('j', 1), 0), { instanceOf: LoamError, message: /job j: no agent is registered to run it/ })
  t.is(err?.code, 'invalid-argument')
  t.deepEqual(core.counts(), { agents: 0, roles: 0, jobs: 0, pendingTasks: 0, runningTasks: 0 })
})

test('bad configuration is refused', (t) => {
  const cases: Array<[ConstructorParameters<typeof SchedulerCore>[0], RegExp]> = [
    [{ localityWaitMs: -1 }, /localityWaitMs -1 must be from 0 to 600000 ms/],
    [{ localityWaitMs: NaN }, /localityWaitMs NaN/],
    [{ rackLocalityWaitMs: 600_001 }, /rackLocalityWaitMs 600001/],
    [{ jobOrder: 'lifo' as never }, /jobOrder 'lifo' must be 'fair' or 'fifo'/],
    [{ roleWeights: { etl: 0 } }, /role etl: weight 0/],
    [{ roleWeights: { '': 1 } }, /role must be a non-empty string/],
  ]
  for (const [config, message] of cases) {
    const err = t.throws(() => new SchedulerCore(config), { instanceOf: LoamError, message })
    t.is(err?.code, 'invalid-argument')
  }
})

test(`at most ${AGENTS_MAX} agents`, (t) => {
  const core = new SchedulerCore()
  for (let i = 0; i < AGENTS_MAX; i++) core.addAgent({ id: `a${i}`, nodeId: `dn${i}`, rack: `/r${i % 40}`, resources: SLOT })
  const err = t.throws(() => core.addAgent({ id: 'one-more', rack: '/r1', resources: SLOT }), { instanceOf: LoamError, message: /10000 agents are registered, the most there may be/ })
  t.is(err?.code, 'invalid-argument')
  t.is(core.counts().agents, AGENTS_MAX)
  core.removeAgent('a0', 0)
  t.notThrows(() => core.addAgent({ id: 'one-more', rack: '/r1', resources: SLOT }))
})

test(`at most ${ROLES_MAX} roles`, (t) => {
  const core = new SchedulerCore()
  core.addAgent({ id: 'a', rack: '/r1', resources: SLOT })
  for (let i = 0; i < ROLES_MAX; i++) core.setRoleWeight(`role${i}`, 1)
  t.throws(() => core.setRoleWeight('one-more', 1), { instanceOf: LoamError, message: /256 roles exist/ })
  t.throws(() => core.submit(job('j', 1, [], SLOT, 'one-more'), 0), { instanceOf: LoamError, message: /role one-more would be one more than the 256 roles/ })
  t.notThrows(() => core.submit(job('j', 1, [], SLOT, 'role7'), 0), 'an existing role is fine')
  t.is(core.counts().roles, ROLES_MAX)
})

test(`at most ${JOBS_MAX} jobs at once`, (t) => {
  const core = new SchedulerCore()
  core.addAgent({ id: 'a', rack: '/r1', resources: SLOT })
  for (let i = 0; i < JOBS_MAX; i++) core.submit(job(`j${i}`, 1), 0)
  const err = t.throws(() => core.submit(job('one-more', 1), 0), { instanceOf: LoamError, message: /10000 jobs are queued or running, the most there may be/ })
  t.is(err?.code, 'invalid-argument')
  // A finished job makes room.
  const [p] = core.schedule(0)
  core.taskFinished(p!.taskId)
  t.notThrows(() => core.submit(job('one-more', 1), 0))
})

test('implicit roles go when their last job does; weighted ones stay', (t) => {
  const core = new SchedulerCore({ roleWeights: { prod: 3 } })
  core.addAgent({ id: 'a', rack: '/r1', resources: resources(4, 4 * GiB) })
  core.submit(job('x', 1, [], SLOT, 'adhoc'), 0)
  core.submit(job('y', 1, [], SLOT, 'prod'), 0)
  t.deepEqual(core.roleShares().map((r) => r.role).sort(), ['adhoc', 'prod'])
  for (const p of core.schedule(0)) core.taskFinished(p.taskId)
  t.deepEqual(
    core.roleShares().map((r) => [r.role, r.weight]),
    [['prod', 3]],
  )
  t.is(core.job('x'), undefined, 'a finished job is gone; its id may be used again')
  t.notThrows(() => core.submit(job('x', 1), 0))
})
