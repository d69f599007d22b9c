// Delay scheduling in the pure scheduler core: a job waits for a node-local
// slot, takes a rack-local one after localityWaitMs, any slot after a second
// wait, and records the locality it got and how long each task waited.
import test from 'ava'
import { SchedulerCore, type Placement } from '../src/scheduler/core.js'
import { accrue, afterLaunch, allowedLevel, initialDelay, localityOf, msUntilNextLevel, LEVEL_ANY, LEVEL_NODE, LEVEL_RACK } from '../src/scheduler/delay.js'
import { LOCALITY_WAIT_DEFAULT_MS } from '../src/scheduler/limits.js'
import { resources } from '../src/scheduler/resources.js'

const W = LOCALITY_WAIT_DEFAULT_MS
/** Each agent has two slots of this size. */
const SLOT = resources(1, 1024)

/**
 * Three nodes, each an agent on its datanode with two slots: dn1 and dn2 in
 * rack /r1, dn3 in /r2.
 */
function threeNodes(config: ConstructorParameters<typeof SchedulerCore>[0] = {}): SchedulerCore {
  const core = new SchedulerCore(config)
  core.addAgent({ id: 'a1', nodeId: 'dn1', rack: '/r1', resources: resources(2, 2048) })
  core.addAgent({ id: 'a2', nodeId: 'dn2', rack: '/r1', resources: resources(2, 2048) })
  core.addAgent({ id: 'a3', nodeId: 'dn3', rack: '/r2', resources: resources(2, 2048) })
  return core
}

/** Fills a node's two slots with a job of node-local tasks; returns the task ids. */
function fill(core: SchedulerCore, node: string, nowMs: number): string[] {
  const ids = [`${node}-busy-1`, `${node}-busy-2`]
  core.submit({ id: `fill-${node}`, role: 'other', resources: SLOT, tasks: ids.map((id) => ({ id, preferredNodes: [node] })) }, nowMs)
  const placed = core.schedule(nowMs)
  if (placed.length !== 2 || placed.some((p) => p.nodeId !== node)) throw new Error(`could not fill ${node}: ${JSON.stringify(placed)}`)
  return ids
}

/** One task whose single replica (replication 1) is on `node`. */
function waitingJob(core: SchedulerCore, node: string, nowMs: number, id = 'job'): void {
  core.submit({ id, role: 'etl', resources: SLOT, tasks: [{ id: `${id}-t1`, preferredNodes: [node] }] }, nowMs)
}

function brief(ps: Placement[]): Array<[string, string, string, number]> {
  return ps.map((p) => [p.taskId, p.agentId, p.locality, p.waitedMs])
}

test('replication 1, one task per node: every task runs NODE_LOCAL on the node holding its block, at once', (t) => {
  const core = threeNodes()
  core.submit(
    {
      id: 'scan',
      role: 'etl',
      resources: SLOT,
      tasks: [
        { id: 'scan-b3', preferredNodes: ['dn3'] },
        { id: 'scan-b1', preferredNodes: ['dn1'] },
        { id: 'scan-b2', preferredNodes: ['dn2'] },
      ],
    },
    0,
  )
  const placed = core.schedule(0)
  t.deepEqual(
    brief(placed).sort(),
    [
      ['scan-b1', 'a1', 'NODE_LOCAL', 0],
      ['scan-b2', 'a2', 'NODE_LOCAL', 0],
      ['scan-b3', 'a3', 'NODE_LOCAL', 0],
    ],
  )
  t.is(core.task('scan-b1')?.locality, 'NODE_LOCAL')
  t.is(core.task('scan-b1')?.state, 'running')
  t.is(core.nextWakeMs(), undefined, 'nothing left to decide')
  core.checkInvariants()
})

test("its node's slots busy, a task waits localityWaitMs, then takes a rack-local slot", (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  waitingJob(core, 'dn1', 100)
  t.deepEqual(core.schedule(100), [], 'dn2 and dn3 are free, but the job waits for dn1')
  t.is(core.nextWakeMs(), 100 + W, 'the daemon is told when to decide again')
  t.deepEqual(core.schedule(1_000), [])
  t.deepEqual(core.schedule(100 + W - 1), [], 'nothing placed before localityWaitMs')
  t.is(core.job('job')?.accepts, 'NODE_LOCAL')
  const placed = core.schedule(100 + W)
  t.deepEqual(brief(placed), [['job-t1', 'a2', 'RACK_LOCAL', W]], 'dn2 shares dn1 rack; dn3 does not')
  t.is(core.task('job-t1')?.locality, 'RACK_LOCAL')
  core.checkInvariants()
})

test('its whole rack busy, a task takes any slot after the second wait', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  fill(core, 'dn2', 0)
  waitingJob(core, 'dn1', 0)
  t.deepEqual(core.schedule(0), [])
  t.deepEqual(core.schedule(W), [], 'rack-local allowed now, but the rack is full')
  t.is(core.job('job')?.accepts, 'RACK_LOCAL')
  t.is(core.nextWakeMs(), 2 * W)
  t.deepEqual(core.schedule(2 * W - 1), [])
  t.deepEqual(brief(core.schedule(2 * W)), [['job-t1', 'a3', 'ANY', 2 * W]])
  core.checkInvariants()
})

test('the second wait is its own setting (rackLocalityWaitMs)', (t) => {
  const core = threeNodes({ localityWaitMs: 1_000, rackLocalityWaitMs: 5_000 })
  fill(core, 'dn1', 0)
  fill(core, 'dn2', 0)
  waitingJob(core, 'dn1', 0)
  t.deepEqual(core.schedule(0), [])
  t.deepEqual(core.schedule(5_999), [])
  t.deepEqual(brief(core.schedule(6_000)), [['job-t1', 'a3', 'ANY', 6_000]])
})

test('a node-local slot freed during the wait is taken at once, NODE_LOCAL', (t) => {
  const core = threeNodes()
  const busy = fill(core, 'dn1', 0)
  waitingJob(core, 'dn1', 0)
  t.deepEqual(core.schedule(0), [])
  core.taskFinished(busy[0]!)
  t.is(core.nextWakeMs(), 0, 'a change: decide now')
  t.deepEqual(brief(core.schedule(1_200)), [['job-t1', 'a1', 'NODE_LOCAL', 1_200]])
  core.checkInvariants()
})

test('the wait only grows while free slots are declined: on a full cluster nothing times out', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  fill(core, 'dn2', 0)
  const third = fill(core, 'dn3', 0)
  waitingJob(core, 'dn1', 0)
  t.deepEqual(core.schedule(0), [])
  t.is(core.nextWakeMs(), undefined, 'no free slot: no wait to run out')
  t.deepEqual(core.schedule(60_000), [])
  // A slot frees on the other rack at 60 s: only now does the job start to be skipped.
  core.taskFinished(third[0]!)
  t.deepEqual(core.schedule(60_000), [])
  t.is(core.nextWakeMs(), 60_000 + W, 'rack-local allowed then (though nothing on the rack is free)')
  t.deepEqual(core.schedule(60_000 + W), [])
  t.is(core.nextWakeMs(), 60_000 + 2 * W)
  t.deepEqual(core.schedule(60_000 + 2 * W - 1), [])
  t.deepEqual(brief(core.schedule(60_000 + 2 * W)), [['job-t1', 'a3', 'ANY', 60_000 + 2 * W]], 'waitedMs counts from submission')
})

test('a launch resets the wait: after a rack-local launch the job takes rack-local slots at once, and any slot rackLocalityWaitMs later', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  const rackBusy = fill(core, 'dn2', 0)
  core.submit({ id: 'job', role: 'etl', resources: SLOT, tasks: [1, 2, 3].map((i) => ({ id: `t${i}`, preferredNodes: ['dn1'] })) }, 0)
  t.deepEqual(core.schedule(0), [])
  t.deepEqual(core.schedule(W), [], 'rack-local allowed, rack full')
  t.is(core.nextWakeMs(), 2 * W)
  for (const id of rackBusy) core.taskFinished(id)
  t.deepEqual(
    brief(core.schedule(W + 1_000)),
    [
      ['t1', 'a2', 'RACK_LOCAL', W + 1_000],
      ['t2', 'a2', 'RACK_LOCAL', W + 1_000],
    ],
  )
  t.is(core.job('job')?.accepts, 'RACK_LOCAL')
  // t3 now waits rackLocalityWaitMs from that launch, not from submission (which would be 2W).
  t.is(core.nextWakeMs(), 2 * W + 1_000)
  t.deepEqual(core.schedule(2 * W), [])
  t.deepEqual(brief(core.schedule(2 * W + 1_000)), [['t3', 'a3', 'ANY', 2 * W + 1_000]])
  core.checkInvariants()
})

test('localityWaitMs 0 places at once wherever there is room (no delay)', (t) => {
  const core = threeNodes({ localityWaitMs: 0 })
  fill(core, 'dn1', 0)
  fill(core, 'dn2', 0)
  waitingJob(core, 'dn1', 0)
  t.deepEqual(brief(core.schedule(0)), [['job-t1', 'a3', 'ANY', 0]])
})

test('tasks without input are placed at once, NO_PREF, and leave the job waiting for its local tasks', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  core.submit({ id: 'mixed', role: 'etl', resources: SLOT, tasks: [{ id: 'local', preferredNodes: ['dn1'] }, { id: 'free' }] }, 0)
  t.deepEqual(brief(core.schedule(0)), [['free', 'a2', 'NO_PREF', 0]])
  t.is(core.job('mixed')?.accepts, 'NODE_LOCAL')
  t.deepEqual(brief(core.schedule(W)), [['local', 'a2', 'RACK_LOCAL', W]])
})

test('preferred racks come from the agents on the preferred datanodes, or as given', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  // dn9 has no agent: its rack is unknown unless given.
  core.submit({ id: 'a', role: 'etl', resources: SLOT, tasks: [{ id: 'a1', preferredNodes: ['dn9'] }] }, 0)
  core.submit({ id: 'b', role: 'etl', resources: SLOT, tasks: [{ id: 'b1', preferredNodes: ['dn9'], preferredRacks: ['/r2'] }] }, 0)
  t.deepEqual(core.schedule(0), [])
  const placed = core.schedule(W)
  t.deepEqual(brief(placed), [['b1', 'a3', 'RACK_LOCAL', W]], 'b knows its block is on /r2; a has no rack-local slot anywhere')
  t.deepEqual(brief(core.schedule(2 * W)).map((p) => p.slice(0, 3)), [['a1', 'a2', 'ANY']])
})

test('waits are per job: a job that just arrived waits its own localityWaitMs', (t) => {
  const core = threeNodes()
  fill(core, 'dn1', 0)
  waitingJob(core, 'dn1', 0, 'early')
  t.deepEqual(core.schedule(0), [])
  waitingJob(core, 'dn1', 2_000, 'late')
  t.deepEqual(core.schedule(2_000), [])
  t.deepEqual(brief(core.schedule(W)), [['early-t1', 'a2', 'RACK_LOCAL', W]])
  t.is(core.nextWakeMs(), 2_000 + W)
  t.deepEqual(brief(core.schedule(2_000 + W)), [['late-t1', 'a2', 'RACK_LOCAL', W]])
})

test('delay state: levels, waits and the time left, as in Zaharia et al. Algorithm 2', (t) => {
  const w = { nodeWaitMs: 3_000, rackWaitMs: 2_000 }
  const s = initialDelay()
  t.is(allowedLevel(s, w), LEVEL_NODE)
  t.is(msUntilNextLevel(s, w), 3_000)
  accrue(s, 3_000)
  t.is(allowedLevel(s, w), LEVEL_RACK)
  t.is(msUntilNextLevel(s, w), 2_000)
  accrue(s, 2_000)
  t.is(allowedLevel(s, w), LEVEL_ANY)
  t.is(msUntilNextLevel(s, w), undefined)
  afterLaunch(s, 'RACK_LOCAL')
  t.deepEqual(s, { level: LEVEL_RACK, waitedMs: 0 })
  t.is(allowedLevel(s, w), LEVEL_RACK)
  t.is(msUntilNextLevel(s, w), 2_000)
  afterLaunch(s, 'NO_PREF')
  t.deepEqual(s, { level: LEVEL_RACK, waitedMs: 0 }, 'a task without preference changes nothing')
  afterLaunch(s, 'ANY')
  t.is(allowedLevel(s, w), LEVEL_ANY)
  afterLaunch(s, 'NODE_LOCAL')
  t.deepEqual(s, { level: LEVEL_NODE, waitedMs: 0 }, 'a node-local launch sends the job back to waiting for node-local slots')

  t.is(localityOf(['dn1', 'dn2'], ['/r1'], 'dn2', '/r1'), 'NODE_LOCAL')
  t.is(localityOf(['dn1', 'dn2'], ['/r1'], 'dn3', '/r1'), 'RACK_LOCAL')
  t.is(localityOf(['dn1', 'dn2'], ['/r1'], undefined, '/r2'), 'ANY')
  t.is(localityOf([], [], 'dn1', '/r1'), 'NO_PREF')
})
