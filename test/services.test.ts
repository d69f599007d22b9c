// Services through real processes: instances restarted when they exit or fail
// their health check, and a service with a volume that follows its data when
// its node dies.
import test from 'ava'
import { rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import type { ServiceStatusJson } from '../src/cli/service-commands.js'
import { parseAddress } from '../src/common/address.js'
import { RpcClient } from '../src/rpc/client.js'
import { toLoamError, type LoamError } from '../src/rpc/errors.js'
import { SchedulerService, type SchedulerServiceSpec } from '../src/rpc/service.js'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { restartSchedulerBehindPausedNode } from './helpers/paused-node.js'
import { parsePrometheus } from './helpers/prometheus.js'

type ServiceJson = ServiceStatusJson

async function deploy(c: TestCluster, spec: unknown): Promise<{ code: number; stderr: string; status?: ServiceJson }> {
  const r = await c.loam(['service', 'deploy', '-', '--json'], { input: Buffer.from(typeof spec === 'string' ? spec : JSON.stringify(spec)) })
  return { code: r.code, stderr: r.stderr, status: r.code === 0 ? (JSON.parse(r.stdout.toString()) as ServiceJson) : undefined }
}

async function status(c: TestCluster, id: string): Promise<ServiceJson> {
  const r = await c.loam(['service', 'status', id, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout.toString()) as ServiceJson
}

async function until(c: TestCluster, id: string, pred: (s: ServiceJson) => boolean, what: string, timeoutMs = 60_000): Promise<ServiceJson> {
  let last: ServiceJson | undefined
  try {
    await waitFor(async () => pred((last = await status(c, id))), timeoutMs, what)
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last)}`, { cause: err })
  }
  return last!
}

/** A port free right now on 127.0.0.1, for a service to listen on. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

async function fsText(c: TestCluster, p: string): Promise<string> {
  const r = await c.loam(['fs', 'cat', p])
  if (r.code !== 0) throw new Error(`cat ${p}: ${r.stderr}`)
  return r.stdout.toString()
}

test('a service that exits or fails its health check is restarted; bad specs are refused with the field named, nothing started', async (t) => {
  const c = await startCluster(t, { nodes: 2, racks: 1 })
  t.is((await deploy(c, { id: 'crashy', cmd: 'echo up; sleep 1; exit 3', cpus: 0.25, mem: 32 })).code, 0)
  const crashed = await until(c, 'crashy', (s) => s.tasks[0]!.restarts >= 2, 'crashy to be restarted twice')
  t.regex(crashed.tasks[0]!.message ?? '', /failed: exited with status 3|^$/)
  t.true(crashed.tasks[0]!.attempts >= 2)
  // The latest attempt's log (it may have just started: read until its first line is there).
  await waitFor(async () => (await c.loam(['logs', 'crashy.0'])).stdout.toString().startsWith('up\n'), 30_000, "crashy's log")

  // Healthy while /flags/sick does not exist; two failed checks in a row and it is killed and started again.
  const web = { id: 'web', cmd: 'exec sleep 1000', cpus: 0.25, mem: 32, healthCheck: { cmd: '! loam fs stat /flags/sick', intervalSeconds: 0.3, gracePeriodSeconds: 0, maxConsecutiveFailures: 2 } }
  t.is((await deploy(c, web)).code, 0)
  const healthy = await until(c, 'web', (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.health === 'HEALTHY', 'web to be healthy')
  t.is(healthy.tasks[0]!.restarts, 0)
  t.is((await c.loam(['fs', 'put', '-', '/flags/sick'], { input: Buffer.from('x') })).code, 0)
  const restarted = await until(c, 'web', (s) => s.tasks[0]!.restarts >= 1, 'web to be restarted after failing its checks')
  t.regex(restarted.tasks[0]!.message ?? '', /health check failed/)
  t.is((await c.loam(['fs', 'rm', '/flags/sick'])).code, 0)
  await until(c, 'web', (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.health === 'HEALTHY', 'web to be healthy again')

  // Scaling: two instances, then one; removing: the service goes.
  t.is((await c.loam(['service', 'scale', 'web', '2'])).code, 0)
  await until(c, 'web', (s) => s.tasks.length === 2 && s.tasks.every((x) => x.state === 'RUNNING'), 'two instances')
  t.is((await c.loam(['service', 'scale', 'web', '1'])).code, 0)
  await until(c, 'web', (s) => s.tasks.length === 1, 'one instance')
  t.is((await c.loam(['service', 'rm', 'crashy'])).code, 0)
  await waitFor(async () => (await c.loam(['service', 'status', 'crashy'])).code !== 0, 30_000, 'crashy to go')

  // A volume attached elsewhere, and specs that cannot run.
  t.is((await c.loam(['volume', 'create', 'held', '--size', '16MiB'])).code, 0)
  t.is((await c.loam(['volume', 'attach', 'held', '--node', 'dn1'])).code, 0)
  for (const [spec, message] of [
    ['{not json', /service spec is not valid JSON/],
    [{ id: 'x' }, /service spec: cmd is missing/],
    [{ id: 'x', cmd: 'true', cpus: 4000 }, /more than any agent/],
    [{ id: 'x', cmd: 'true', volumes: [{ name: 'held', size: '16MiB', path: 'data' }] }, /volume held is attached to node dn1/],
    [{ id: 'x', cmd: 'true', volumes: [{ name: 'v', size: '16MiB', path: '../out' }] }, /volumes\[0\]\.path/],
    [{ id: 'x', cmd: 'true', volumes: [{ name: 'v', path: 'data' }] }, /volumes\[0\]\.size is missing/],
    [{ id: 'x', cmd: 'true', healthCheck: { port: 0 } }, /healthCheck\.port/],
    [{ id: 'web', cmd: 'true' }, /service web exists/],
  ] as const) {
    const r = await deploy(c, spec)
    t.not(r.code, 0, JSON.stringify(spec))
    t.regex(r.stderr, message)
    t.is(r.stderr.trim().split('\n').length, 1, 'one line')
  }
  const ls = JSON.parse((await c.loam(['service', 'ls', '--json'])).stdout.toString()) as Array<{ id: string }>
  t.deepEqual(ls.map((s) => s.id), ['web'], 'nothing started for a refused spec')
  t.is((await c.loam(['volume', 'inspect', 'v'])).code, 1, 'no volume created for a refused spec')
})

test('an HTTP health check: an instance whose port stops answering 200 on the path is restarted, a healthy one is not', async (t) => {
  const c = await startCluster(t, { nodes: 2, racks: 1 })
  // A tiny server: 200 on /healthz while the file named by SICK does not exist, 500 once it does; 404 elsewhere.
  const server = path.join(c.dir, 'server.cjs')
  await writeFile(server, `require('http').createServer((q, s) => { s.statusCode = q.url !== '/healthz' ? 404 : require('fs').existsSync(process.env.SICK) ? 500 : 200; s.end() }).listen(Number(process.argv[2]), '127.0.0.1')\n`)
  const [sickPort, wellPort] = [await freePort(), await freePort()]
  const sickFlag = path.join(c.dir, 'sick')
  const service = (id: string, port: number, flag: string): unknown => ({
    id,
    cmd: `exec "${process.execPath}" "${server}" ${port}`,
    cpus: 0.25,
    mem: 32,
    env: { SICK: flag },
    healthCheck: { port, path: '/healthz', intervalSeconds: 0.3, gracePeriodSeconds: 0, maxConsecutiveFailures: 2 },
  })
  for (const [id, port, flag] of [['sick', sickPort, sickFlag], ['well', wellPort, path.join(c.dir, 'never')]] as const) {
    const r = await deploy(c, service(id, port, flag))
    t.is(r.code, 0, r.stderr)
    const up = await until(c, id, (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.health === 'HEALTHY', `${id} to be healthy`)
    t.is(up.tasks[0]!.restarts, 0)
  }
  await writeFile(sickFlag, '')
  const restarted = await until(c, 'sick', (s) => s.tasks[0]!.restarts >= 1, 'sick to be restarted after failing its checks')
  t.regex(restarted.tasks[0]!.message ?? '', new RegExp(`health check failed.*GET http://127\\.0\\.0\\.1:${sickPort}/healthz: 500`))
  await rm(sickFlag)
  await until(c, 'sick', (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.health === 'HEALTHY', 'sick to be healthy again')
  const well = await status(c, 'well')
  t.is(well.tasks[0]!.restarts, 0, 'the healthy instance was never restarted')
  t.is(well.tasks[0]!.health, 'HEALTHY')
})

test('a service with a volume runs where its replicas are, and after kill -9 of its node comes back on another node holding them, with its data', async (t) => {
  const c = await startCluster(t, { nodes: 3, racks: 2, deadAfter: '4s' })
  // First boot writes a payload and its checksum into the volume; every boot checks the payload and logs itself.
  const cmd = [
    'cd data',
    '[ -f payload ] || { head -c 3000000 /dev/urandom > payload && md5sum payload > payload.md5; }',
    'md5sum -c payload.md5 > check-$LOAM_NODE_ID 2>&1',
    'echo "$LOAM_NODE_ID" > boot-$(date +%s%N)',
    'exec sleep 1000',
  ].join(' && ')
  const spec = { id: 'db', cmd, cpus: 0.5, mem: 64, volumes: [{ name: 'dbvol', size: '64MiB', path: 'data', replication: 2 }], healthCheck: { cmd: 'test -f data/payload.md5', intervalSeconds: 0.5, gracePeriodSeconds: 30 } }
  const deployed = await deploy(c, spec)
  t.is(deployed.code, 0, deployed.stderr)
  const first = await until(c, 'db', (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.health === 'HEALTHY', 'db to be healthy')
  const node1 = first.tasks[0]!.node!
  const vol = JSON.parse((await c.loam(['volume', 'inspect', 'dbvol', '--json'])).stdout.toString()) as { attachedNode: string; epoch: number; nodes: Array<{ node: string; bytes: number }> }
  t.is(vol.attachedNode, node1, 'the volume is attached where the instance runs')
  const holders = vol.nodes.filter((n) => n.bytes > 0).map((n) => n.node)
  t.true(holders.includes(node1), `its first replicas are local: ${JSON.stringify(vol.nodes)}`)
  t.is(holders.length, 2, 'replication 2')
  const md5 = await fsText(c, '/volumes/dbvol/payload.md5')

  // The machine dies: the node process, the instance and its mount, all at once.
  const idx = c.record.nodes.findIndex((n) => n.id === node1)
  await c.killNodeTree(idx)
  const moved = await until(c, 'db', (s) => s.tasks[0]!.state === 'RUNNING' && s.tasks[0]!.node !== node1 && s.tasks[0]!.health === 'HEALTHY', 'db to come back elsewhere', 90_000)
  const node2 = moved.tasks[0]!.node ?? ''
  t.true(holders.includes(node2), `it came back on ${node2}, which holds its replicas (${holders.join(', ')})`)
  t.is(moved.tasks[0]!.locality, 'NODE_LOCAL')
  t.true(moved.tasks[0]!.restarts >= 1)
  const after = JSON.parse((await c.loam(['volume', 'inspect', 'dbvol', '--json'])).stdout.toString()) as { attachedNode: string; epoch: number }
  t.is(after.attachedNode, node2)
  t.true(after.epoch > vol.epoch, 'attached under a new epoch: the old holder is fenced')
  // Its data came with it: the same payload, checked on the new node.
  t.is(await fsText(c, '/volumes/dbvol/payload.md5'), md5)
  t.regex(await fsText(c, `/volumes/dbvol/check-${node2}`), /payload: OK/)
  const boots = (await c.loam(['fs', 'ls', '/volumes/dbvol', '--json'])).stdout.toString()
  t.is((JSON.parse(boots) as Array<{ name: string }>).filter((e) => e.name.startsWith('boot-')).length, 2, 'two boots: one per node')

  // A second instance gets a volume of its own; scaled away, its volume is detached and kept; scaled back, it is used again.
  const inspect = async (name: string): Promise<{ attachedNode: string | null; usedBytes: number }> => JSON.parse((await c.loam(['volume', 'inspect', name, '--json'])).stdout.toString()) as { attachedNode: string | null; usedBytes: number }
  for (const round of [1, 2]) {
    t.is((await c.loam(['service', 'scale', 'db', '2'])).code, 0)
    const two = await until(c, 'db', (s) => s.tasks.length === 2 && s.tasks.every((x) => x.health === 'HEALTHY'), `two healthy instances (round ${round})`)
    t.deepEqual(two.tasks[1]!.volumes, ['dbvol-1'])
    t.is((await inspect('dbvol-1')).attachedNode, two.tasks[1]!.node)
    t.is((await c.loam(['service', 'scale', 'db', '1'])).code, 0)
    await until(c, 'db', (s) => s.tasks.length === 1, `one instance (round ${round})`)
    await waitFor(async () => !(await inspect('dbvol-1')).attachedNode, 30_000, 'dbvol-1 to be detached')
    t.true((await inspect('dbvol-1')).usedBytes >= 3_000_000, 'its data stays')
  }
})

test("a deploy uses only the requester's own volumes (or any, as the superuser), a refused deploy creates none, and only the owner (or the superuser) scales, removes or kills what they started", async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1 })
  const nn = c.client()
  // A user this machine has: tasks run as the user who started them.
  const owner = { user: 'nobody', groups: ['nogroup'] }
  await nn.nn.call('CreateVolume', { name: 'theirs', sizeBytes: 16 * 1024 * 1024, replication: 1, blockSizeBytes: 0 }, owner)
  const as = (who: { user: string; groups: string[] }): RpcClient<SchedulerServiceSpec> => {
    const client = new RpcClient(parseAddress(c.scheduler), SchedulerService, { peerName: 'scheduler', ...who })
    t.teardown(() => client.close())
    return client
  }
  const spec = (id: string, ...names: string[]): { json: string } => ({ json: JSON.stringify({ id, cmd: 'exec sleep 1000', cpus: 0.25, mem: 32, volumes: names.map((name) => ({ name, size: '16MiB', path: name })) }) })

  const refused = await as({ user: 'mallory', groups: ['mallory'] })
    .call('DeployService', spec('steal', 'fresh', 'theirs'))
    .then(() => undefined, (err: unknown) => toLoamError(err))
  t.is(refused?.code, 'permission')
  t.regex(refused?.message ?? '', /^service spec: volumes: volume theirs belongs to user nobody, not mallory; .*$/)
  t.is(await nn.nn.call('GetVolume', { name: 'fresh' }).then(() => 'exists', (err: unknown) => toLoamError(err).code), 'not-found', 'the volume listed before the refused one was not created')
  t.is((await c.loam(['service', 'status', 'steal'])).code, 1, 'nothing deployed')

  await as(owner).call('DeployService', spec('own', 'theirs', 'mine'))
  t.is((await nn.nn.call('GetVolume', { name: 'mine' })).volume!.owner, 'nobody', 'a new volume belongs to the requester')
  await until(c, 'own', (s) => s.tasks[0]!.state === 'RUNNING', "the owner's service to run on its volumes")

  // What a user started is theirs to change: another user is refused, with nothing changed.
  const mallory = as({ user: 'mallory', groups: ['mallory'] })
  const refusal = (p: Promise<unknown>): Promise<LoamError | undefined> => p.then(() => undefined, (err: unknown) => toLoamError(err))
  t.regex((await refusal(mallory.call('ScaleService', { id: 'own', instances: 0 })))?.message ?? '', /^service own belongs to user nobody, not mallory: only its owner or the superuser may scale it$/)
  t.is((await refusal(mallory.call('RemoveService', { id: 'own' })))?.code, 'permission')
  t.is((await until(c, 'own', (s) => s.tasks.length === 1, 'the service as it was')).state, 'RUNNING')
  await as(owner).call('SubmitJob', { json: JSON.stringify({ id: 'owned-job', cmd: 'exec sleep 1000', cpus: 0.25, mem: 32 }) })
  t.regex((await refusal(mallory.call('KillJob', { id: 'owned-job' })))?.message ?? '', /^job owned-job belongs to user nobody, not mallory: only its owner or the superuser may kill it$/)
  t.is((await refusal(mallory.call('SubmitJob', { json: JSON.stringify({ id: 'owned-job', cmd: 'true', cpus: 0.25, mem: 32 }) })))?.code, 'exists', 'a running job is not replaced')
  await as(owner).call('KillJob', { id: 'owned-job' })
  t.regex((await refusal(mallory.call('SubmitJob', { json: JSON.stringify({ id: 'owned-job', cmd: 'true', cpus: 0.25, mem: 32 }) })))?.message ?? '', /job id owned-job is taken by a job of user nobody/, "an ended job's id stays its owner's")
  t.is((await c.loam(['job', 'kill', 'owned-job'])).code, 0, 'the superuser kills any job')

  // The cluster's own user (the namenode's) is the superuser: any volume will do.
  await nn.nn.call('CreateVolume', { name: 'spare', sizeBytes: 16 * 1024 * 1024, replication: 1, blockSizeBytes: 0 }, owner)
  const admin = await deploy(c, { id: 'admin', cmd: 'exec sleep 1000', cpus: 0.25, mem: 32, volumes: [{ name: 'spare', size: '16MiB', path: 'spare' }] })
  t.is(admin.code, 0, admin.stderr)
})

test('two 1-cpu instances fill a 2-cpu node and both run, counted in their role\'s share and the task metrics; a third waits for room', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1, cpus: 2 })
  t.is((await deploy(c, { id: 'pair', cmd: 'echo up; exec sleep 1000', instances: 2, cpus: 1, mem: 32 })).code, 0)
  await until(c, 'pair', (s) => s.tasks.every((x) => x.state === 'RUNNING'), 'both instances to run')
  for (const id of ['pair.0', 'pair.1']) {
    await waitFor(async () => (await c.loam(['logs', id])).stdout.toString().startsWith('up\n'), 30_000, `${id} to start on the agent`)
  }
  const agents = JSON.parse((await c.loam(['job', 'agents', '--json'])).stdout.toString()) as { agents: Array<{ usedCpus: number }>; roles: Array<{ role: string; dominantShare: number }> }
  t.deepEqual(agents.agents.map((a) => a.usedCpus), [2])
  t.is(agents.roles.find((r) => r.role === 'default')?.dominantShare, 1, "the instances count in their role's share")
  const metrics = parsePrometheus(await (await fetch(`http://${c.record.scheduler.http}/metrics`)).text())
  const sample = (name: string, labels: Record<string, string>): number | undefined => metrics.find((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v))?.value
  t.is(sample('loam_scheduler_tasks', { state: 'RUNNING' }), 2, 'service instances are tasks in the metrics')
  t.is(sample('loam_scheduler_tasks_by_locality', { locality: 'ANY' }), 2)
  t.is((await c.loam(['service', 'scale', 'pair', '3'])).code, 0)
  const waiting = await until(c, 'pair', (s) => /waiting for an agent/.test(s.tasks[2]?.message ?? ''), 'the third to wait')
  t.is(waiting.tasks[2]!.state, 'PENDING')
})

test('a service removed just before a scheduler kill -9: its instance is killed after the restart, not adopted', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1 })
  t.is((await deploy(c, { id: 'gone', cmd: 'echo up; exec sleep 1000', cpus: 0.5, mem: 32 })).code, 0)
  await waitFor(async () => (await c.loam(['logs', 'gone.0'])).stdout.toString().startsWith('up\n'), 30_000, 'the instance to start')
  // The kill never reaches the node before the scheduler dies.
  await restartSchedulerBehindPausedNode(c, 0, async () => t.is((await c.loam(['service', 'rm', 'gone'])).code, 0))
  await waitFor(async () => (await c.loam(['service', 'status', 'gone'])).code !== 0, 30_000, 'the service to go')
  const agents = JSON.parse((await c.loam(['job', 'agents', '--json'])).stdout.toString()) as { agents: Array<{ usedCpus: number; tasks: string[] }> }
  t.deepEqual(agents.agents.map((a) => [a.usedCpus, a.tasks]), [[0, []]], 'nothing runs or is held')
})
