// Dominant Resource Fairness between roles in the pure scheduler core: the role
// with the lowest weighted dominant share gets the next offer, a role alone
// takes the whole cluster, busy roles converge to their weighted shares, and
// the example of Ghodsi et al. (NSDI 2011) comes out as in the paper.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { SchedulerCore, type Placement } from '../src/scheduler/core.js'
import { compareRoles, dominantShare, dominantShares, offerOrder, weightedShare } from '../src/scheduler/drf.js'
import { resources, type Resources } from '../src/scheduler/resources.js'

const GiB = 1024

/** `n` agents of 4 cpus and 8 GiB each, without datanodes (tasks here have no input). */
function cluster(n: number, config: ConstructorParameters<typeof SchedulerCore>[0] = {}): SchedulerCore {
  const core = new SchedulerCore(config)
  for (let i = 1; i <= n; i++) core.addAgent({ id: `a${i}`, rack: `/r${1 + (i % 2)}`, resources: resources(4, 8 * GiB) })
  return core
}

function submitMany(core: SchedulerCore, role: string, job: string, count: number, need: Resources, nowMs: number): void {
  core.submit({ id: job, role, resources: need, tasks: Array.from({ length: count }, (_, i) => ({ id: `${job}-${i}` })) }, nowMs)
}

function share(core: SchedulerCore, role: string): number {
  return core.roleShares().find((r) => r.role === role)?.dominantShare ?? 0
}

/** Role a's part of the dominant shares held by a and b together. */
function split(core: SchedulerCore, a: string, b: string): number {
  return share(core, a) / (share(core, a) + share(core, b))
}

function within(t: ExecutionContext, got: number, want: number, tolerance: number, what: string): void {
  t.true(Math.abs(got - want) <= tolerance, `${what}: ${got.toFixed(3)}, want ${want.toFixed(3)} ± ${tolerance}`)
}

test('two roles with equal weights and equal demands split the cluster 50/50', (t) => {
  const core = cluster(10)
  submitMany(core, 'alice', 'ja', 100, resources(1, GiB), 0)
  submitMany(core, 'bob', 'jb', 100, resources(1, GiB), 0)
  const placed = core.schedule(0)
  t.is(placed.length, 40, 'the cluster is full')
  within(t, split(core, 'alice', 'bob'), 0.5, 0.05, "alice's part")
  t.is(share(core, 'alice'), 0.5)
  core.checkInvariants()
})

test('weights 2:1 split the dominant shares 2/3 and 1/3', (t) => {
  const core = cluster(10, { roleWeights: { alice: 2, bob: 1 } })
  submitMany(core, 'alice', 'ja', 100, resources(1, GiB), 0)
  submitMany(core, 'bob', 'jb', 100, resources(1, GiB), 0)
  t.is(core.schedule(0).length, 40)
  within(t, split(core, 'alice', 'bob'), 2 / 3, 0.05, "alice's part")
})

test('a role alone takes the whole cluster', (t) => {
  const core = cluster(10, { roleWeights: { alice: 1, bob: 5 } })
  submitMany(core, 'alice', 'ja', 100, resources(1, GiB), 0)
  t.is(core.schedule(0).length, 40)
  t.is(share(core, 'alice'), 1)
  t.deepEqual(core.roleShares().find((r) => r.role === 'alice')?.usage, resources(40, 40 * GiB), 'every cpu')
  for (let i = 1; i <= 10; i++) t.is(core.agent(`a${i}`)?.free.milliCpus, 0)
})

test("the DRF paper's example: 9 cpus, 18 GB; A's tasks <1 cpu, 4 GB>, B's <3 cpus, 1 GB>: A runs 3, B runs 2", (t) => {
  const core = new SchedulerCore()
  core.addAgent({ id: 'only', rack: '/r1', resources: resources(9, 18 * GiB) })
  submitMany(core, 'A', 'ja', 10, resources(1, 4 * GiB), 0)
  submitMany(core, 'B', 'jb', 10, resources(3, 1 * GiB), 0)
  const placed = core.schedule(0)
  const count = (role: string): number => placed.filter((p) => p.role === role).length
  t.is(count('A'), 3)
  t.is(count('B'), 2)
  // Both end at a dominant share of 2/3: A of memory (12 of 18 GB), B of cpus (6 of 9).
  t.is(share(core, 'A'), 2 / 3)
  t.is(share(core, 'B'), 2 / 3)
  t.deepEqual(core.agent('only')?.free, resources(0, 18 * GiB - 12 * GiB - 2 * GiB))
})

test('progressive filling: each offer goes to the role with the lowest dominant share', (t) => {
  const core = new SchedulerCore()
  core.addAgent({ id: 'only', rack: '/r1', resources: resources(9, 18 * GiB) })
  submitMany(core, 'A', 'ja', 10, resources(1, 4 * GiB), 0)
  submitMany(core, 'B', 'jb', 10, resources(3, 1 * GiB), 0)
  // A (0) ties B (0) and wins by name; then B (0) < A (2/9); A (2/9) < B (1/3); B (1/3) < A (4/9); A (4/9) < B (2/3).
  t.deepEqual(
    core.schedule(0).map((p) => p.role),
    ['A', 'B', 'A', 'B', 'A'],
  )
})

/**
 * Tasks of `durationMs` each: whenever one finishes, schedule() hands its
 * resources out again. Returns alice's part of the dominant shares, sampled
 * every 100 ms from `fromMs` to `toMs`.
 */
function turnover(core: SchedulerCore, fromMs: number, toMs: number, durationMs: (p: Placement) => number, before: (nowMs: number) => void = () => {}): number[] {
  const ends: Array<{ atMs: number; taskId: string }> = []
  const samples: number[] = []
  for (let now = 0; now <= toMs; now += 10) {
    before(now)
    for (let i = ends.length - 1; i >= 0; i--) {
      if (ends[i]!.atMs <= now) {
        core.taskFinished(ends[i]!.taskId)
        ends.splice(i, 1)
      }
    }
    for (const p of core.schedule(now)) ends.push({ atMs: now + durationMs(p), taskId: p.taskId })
    if (now >= fromMs && now % 100 === 0) samples.push(split(core, 'alice', 'bob'))
  }
  core.checkInvariants()
  return samples
}

test('when resources free up the lower share gets them: a second busy role converges from 0 to 50%', (t) => {
  const core = cluster(10)
  submitMany(core, 'alice', 'ja', 5_000, resources(1, GiB), 0)
  const samples = turnover(
    core,
    3_000,
    6_000,
    () => 1_000,
    (now) => {
      if (now === 500) submitMany(core, 'bob', 'jb', 5_000, resources(1, GiB), now)
    },
  )
  t.true(samples.length > 20)
  for (const s of samples) within(t, s, 0.5, 0.05, "alice's part once bob's tasks turned over")
})

test('two busy roles with weights 2:1 and unequal task lengths converge to 2/3 and 1/3', (t) => {
  const core = cluster(20, { roleWeights: { alice: 2, bob: 1 } })
  submitMany(core, 'alice', 'ja', 20_000, resources(1, GiB), 0)
  submitMany(core, 'bob', 'jb', 20_000, resources(1, GiB), 0)
  // Bob's tasks last three times as long as alice's: shares are of what runs, not of what was handed out.
  const samples = turnover(core, 2_000, 8_000, (p) => (p.role === 'alice' ? 300 : 900))
  const mean = samples.reduce((s, v) => s + v, 0) / samples.length
  within(t, mean, 2 / 3, 0.05, "alice's mean part")
  for (const s of samples) within(t, s, 2 / 3, 0.05, "alice's part")
})

test('DRF with different dominant resources: a cpu-heavy and a memory-heavy role equalize dominant shares', (t) => {
  const core = cluster(20)
  // alice's dominant resource is cpu (1/80 of the cluster per task), bob's is memory (4 GiB: 1/40 per task).
  submitMany(core, 'alice', 'ja', 1_000, resources(1, 512), 0)
  submitMany(core, 'bob', 'jb', 1_000, resources(0.5, 4 * GiB), 0)
  core.schedule(0)
  within(t, split(core, 'alice', 'bob'), 0.5, 0.05, "alice's part of the dominant shares")
  const total = core.clusterTotal()
  const bob = core.roleShares().find((r) => r.role === 'bob')!
  t.is(bob.dominantShare, bob.usage.memMiB / total.memMiB, "memory is bob's dominant resource")
})

test('setRoleWeight changes who gets the next offers', (t) => {
  const core = cluster(10)
  submitMany(core, 'alice', 'ja', 1_000, resources(1, GiB), 0)
  submitMany(core, 'bob', 'jb', 1_000, resources(1, GiB), 0)
  core.setRoleWeight('bob', 3)
  const samples = turnover(core, 3_000, 5_000, () => 500)
  for (const s of samples) within(t, s, 1 / 4, 0.05, "alice's part with weights 1:3")
})

test('drf functions: dominant shares, weights, and the offer order', (t) => {
  const total = resources(9, 18 * GiB)
  t.is(dominantShare(resources(3, 12 * GiB), total), 2 / 3)
  t.is(dominantShare(resources(6, 2 * GiB), total), 2 / 3)
  t.is(dominantShare(resources(0, 0), total), 0)
  t.is(dominantShare(resources(1, 1), resources(0, 0)), 0, 'an empty cluster gives no share')
  t.deepEqual(
    dominantShares(
      new Map([
        ['A', resources(3, 12 * GiB)],
        ['B', resources(0.9, 0)],
      ]),
      total,
    ),
    new Map([
      ['A', 2 / 3],
      ['B', 0.1],
    ]),
  )
  const a = { name: 'a', weight: 2, usage: resources(6, 0) }
  const b = { name: 'b', weight: 1, usage: resources(3, 0) }
  const c = { name: 'c', weight: 1, usage: resources(0, 9 * GiB) }
  t.is(weightedShare(a, total), 1 / 3)
  t.true(compareRoles(a, b, total) < 0, 'equal weighted shares: by name')
  t.true(compareRoles(c, b, total) > 0, 'c holds half the memory, b a third of the cpus')
  t.deepEqual(
    offerOrder([c, b, a], total).map((r) => r.name),
    ['a', 'b', 'c'],
  )
})

test("holds (a task adopted after a restart, a service instance) count in the agent's use and the role's share; unhold lets pending tasks run", (t) => {
  const core = cluster(2)
  // The whole of agent a1, as a task found running on it after a restart would: its total stays 4 cpus.
  core.hold('svc.0.1', 'a1', 'bob', resources(4, GiB))
  core.checkInvariants()
  t.deepEqual(core.agent('a1')!.total, resources(4, 8 * GiB))
  t.deepEqual(core.agent('a1')!.free, resources(0, 7 * GiB))
  t.is(share(core, 'bob'), 0.5, "the hold is half of the cluster's cpus")
  // A task as large as a whole agent is accepted: totals are not shrunk by holds.
  submitMany(core, 'bob', 'jb', 8, resources(1, GiB), 0)
  submitMany(core, 'alice', 'ja', 8, resources(1, GiB), 0)
  core.submit({ id: 'big', role: 'carol', resources: resources(4, GiB), tasks: [{ id: 'big-0' }] }, 0)
  core.cancelJob('big')
  const placed = core.schedule(0)
  core.checkInvariants()
  t.deepEqual(
    placed.map((p) => [p.role, p.agentId]),
    Array.from({ length: 4 }, () => ['alice', 'a2']),
    "alice's share is below bob's held half: she gets every free cpu",
  )
  t.is(core.schedule(1).length, 0, 'nothing is free')
  t.true(core.unhold('svc.0.1'))
  t.false(core.unhold('svc.0.1'), 'a hold ends once')
  core.checkInvariants()
  const after = core.schedule(2)
  t.deepEqual(
    after.map((p) => [p.role, p.agentId]),
    Array.from({ length: 4 }, () => ['bob', 'a1']),
    "the freed agent goes to bob, whose share fell to 0 below alice's",
  )
  core.checkInvariants()
})

test('a hold may take a whole agent or more; removing the agent drops its holds and their role', (t) => {
  const core = new SchedulerCore()
  core.addAgent({ id: 'a1', rack: '/r1', resources: resources(1, GiB) })
  core.hold('job.0.1', 'a1', 'alice', resources(1, 512))
  core.hold('job.1.1', 'a1', 'alice', resources(1, 512))
  core.checkInvariants()
  t.deepEqual(core.agent('a1')!.free, resources(-1, 0))
  t.throws(() => core.hold('job.1.1', 'a1', 'alice', resources(1, 1)), { message: /already taken/ })
  t.throws(() => core.hold('x', 'a9', 'alice', resources(1, 1)), { message: /not registered/ })
  t.deepEqual(core.removeAgent('a1', 0), [])
  core.checkInvariants()
  t.deepEqual(core.roleShares(), [], 'the role went with its last hold')
  t.false(core.unhold('job.0.1'))
})
