// The pure parts of services: where an instance goes, how long it waits to restart, how health is counted, what a spec may say.
import test from 'ava'
import { nextHealth } from '../src/scheduler/health-check.js'
import { parseServiceSpec } from '../src/scheduler/job-spec.js'
import * as R from '../src/scheduler/resources.js'
import { instanceVolumeName, placeService, restartDelayMs, type ServiceCandidate } from '../src/scheduler/service-placement.js'

const agent = (agentId: string, nodeId: string, freeCpus: number, totalCpus = 4): ServiceCandidate => ({ agentId, nodeId, total: R.resources(totalCpus, 4096), free: R.resources(freeCpus, 4096) })
const need = R.resources(1, 256)

test('an instance goes to the node holding the most of its volume; ties to the least loaded', (t) => {
  const agents = [agent('a1', 'dn1', 4), agent('a2', 'dn2', 2), agent('a3', 'dn3', 3)]
  t.deepEqual(placeService(agents, need, new Map([['dn2', 100], ['dn3', 50]]), true), { agentId: 'a2', nodeId: 'dn2', locality: 'NODE_LOCAL' })
  t.deepEqual(placeService(agents, need, new Map([['dn2', 100], ['dn3', 100]]), true), { agentId: 'a3', nodeId: 'dn3', locality: 'NODE_LOCAL' })
  t.deepEqual(placeService(agents, need, new Map(), true), { agentId: 'a1', nodeId: 'dn1', locality: 'ANY' })
})

test('a node without room, or an agent without a datanode for a volume, is passed over; none fits: undefined', (t) => {
  const agents = [agent('a1', 'dn1', 0.5), agent('a2', '', 4), agent('a3', 'dn3', 2)]
  t.is(placeService(agents, need, new Map([['dn1', 100]]), true)?.agentId, 'a3')
  t.is(placeService(agents, need, new Map([['dn1', 100]]), false)?.agentId, 'a2')
  t.is(placeService([agent('a1', 'dn1', 0.5)], need, new Map(), false), undefined)
})

test('restarts back off from 1 s, doubling, up to 30 s; volumes of later instances get their own names', (t) => {
  t.deepEqual([0, 1, 2, 3, 6, 20].map(restartDelayMs), [0, 1000, 2000, 4000, 30000, 30000])
  t.deepEqual([0, 1, 2].map((i) => instanceVolumeName('pg', i)), ['pg', 'pg-1', 'pg-2'])
})

test('health: a success resets; failures in the grace period before the first success do not count; maxFailures in a row kill', (t) => {
  const ok = { ok: true, detail: 'ok' }
  const bad = { ok: false, detail: 'exit 1' }
  t.deepEqual(nextHealth({ health: '', failures: 0 }, bad, true, 2), { health: '', failures: 0, kill: false })
  t.deepEqual(nextHealth({ health: '', failures: 0 }, ok, true, 2), { health: 'HEALTHY', failures: 0, kill: false })
  t.deepEqual(nextHealth({ health: 'HEALTHY', failures: 0 }, bad, true, 2), { health: 'HEALTHY', failures: 1, kill: false })
  t.deepEqual(nextHealth({ health: 'HEALTHY', failures: 1 }, bad, false, 2), { health: 'UNHEALTHY', failures: 2, kill: true })
  t.deepEqual(nextHealth({ health: 'HEALTHY', failures: 1 }, ok, false, 2), { health: 'HEALTHY', failures: 0, kill: false })
})

test('a service spec: defaults, volumes and health checks; mistakes name their field', (t) => {
  const s = parseServiceSpec(JSON.stringify({ id: 'pg', cmd: 'postgres', volumes: [{ name: 'pgdata', size: '1GiB', path: 'data' }], healthCheck: { port: 5432, path: '/health' } }))
  t.like(s, { id: 'pg', instances: 1, cpus: 1, mem: 128, role: 'default' })
  t.deepEqual(s.volumes, [{ name: 'pgdata', sizeBytes: 1 << 30, path: 'data', replication: 3 }])
  t.like(s.healthCheck, { cmd: '', port: 5432, path: '/health', intervalMs: 10_000, maxFailures: 3 })
  for (const [spec, message] of [
    [{ id: 'x', cmd: 'c', volumes: [{ name: 'v', size: '1GiB', path: '/abs' }] }, /volumes\[0\]\.path/],
    [{ id: 'x', cmd: 'c', volumes: [{ name: 'v', size: 'lots', path: 'd' }] }, /volumes\[0\]\.size/],
    [{ id: 'x', cmd: 'c', volumes: [{ name: 'Bad_Name', size: '1GiB', path: 'd' }] }, /volumes\[0\]\.name/],
    [{ id: 'x', cmd: 'c', volumes: [{ name: 'v', size: '1GiB', path: 'd' }, { name: 'v', size: '1GiB', path: 'e' }] }, /same volume or path twice/],
    [{ id: 'x', cmd: 'c', healthCheck: { cmd: 'true', port: 80 } }, /exactly one of cmd/],
    [{ id: 'x', cmd: 'c', healthCheck: { cmd: 'true', intervalSeconds: 0.01 } }, /intervalSeconds must be from/],
    [{ id: 'x', cmd: 'c', instances: 1.5 }, /instances must be a whole number/],
    [{ id: 'x', cmd: 'c', input: '/a' }, /input is not a service field/],
  ] as const) {
    t.throws(() => parseServiceSpec(JSON.stringify(spec)), { message: message }, JSON.stringify(spec))
  }
})
