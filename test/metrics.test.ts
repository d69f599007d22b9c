// /metrics on every daemon parses as Prometheus text, and its counters move
// when work is done (a replica corrupted on disk and a file asked for more
// replicas than there are nodes included); /status on every daemon is JSON
// naming its role.
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import { startCluster, waitFor } from './helpers/cluster.js'
import { flipByte, localTempDir, pattern, replicaDataPath } from './helpers/data.js'
import { mountCluster, sh } from './helpers/mount.js'
import { parsePrometheus, scrape, total, type Sample } from './helpers/prometheus.js'

test('parsePrometheus: reads samples and labels, and refuses what is not the text format', (t) => {
  const text = '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="1",b="q\\"uote"} 3\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 0.5\nh_count 2\n'
  t.deepEqual(parsePrometheus(text), [
    { name: 'x_total', labels: { a: '1', b: 'q"uote' }, value: 3 },
    { name: 'h_bucket', labels: { le: '+Inf' }, value: 2 },
    { name: 'h_sum', labels: {}, value: 0.5 },
    { name: 'h_count', labels: {}, value: 2 },
  ])
  t.throws(() => parsePrometheus('undeclared 1\n'))
  t.throws(() => parsePrometheus('# TYPE y gauge\ny{a=1} 1\n'))
  t.throws(() => parsePrometheus('# TYPE y gauge\ny one\n'))
  // prom-client writes an event loop lag not yet measured as Nan, which Prometheus reads as NaN.
  t.deepEqual(parsePrometheus('# TYPE g gauge\ng{a="x"} Nan\ng{a="y"} -Inf\n').map((x) => x.value), [NaN, -Infinity])
})

test('every daemon serves /status and /metrics, and the counters follow the work done', async (t) => {
  // A short scan period: the scanner finds the replica corrupted below within seconds.
  const c = await startCluster(t, { nodes: 3, blockSize: '1MiB', cpus: 2, localityWait: '1s', scanPeriod: '2s' })
  const mount = await mountCluster(t, c, { nodeId: 'dn1' })
  const local = await localTempDir(t)
  const daemons = { namenode: c.record.namenode.http, datanode: c.record.nodes[0]!.http, scheduler: c.record.scheduler.http, mount: mount.http }
  for (const [role, http] of Object.entries(daemons)) {
    const status = (await (await fetch(`http://${http}/status`)).json()) as Record<string, unknown>
    t.is(typeof status, 'object', role)
    if (role !== 'scheduler') t.is(status.role, role)
  }

  const sum = (samples: Sample[][], name: string, labels: Record<string, string> = {}): number => samples.reduce((n, s) => n + total(s, name, labels), 0)
  const scrapeAll = async (): Promise<{ nn: Sample[]; dns: Sample[][]; sched: Sample[]; mnt: Sample[] }> => ({
    nn: await scrape(daemons.namenode),
    dns: await Promise.all(c.record.nodes.map((n) => scrape(n.http))),
    sched: await scrape(daemons.scheduler),
    mnt: await scrape(daemons.mount),
  })
  const before = await scrapeAll()

  // Work: a put (3 blocks, 3 replicas each), a file written and one read through the mount, a job of 2 tasks.
  await writeFile(path.join(local, 'f.bin'), pattern(2.5 * 1024 * 1024, 3))
  const put = await c.loam(['fs', 'put', path.join(local, 'f.bin'), '/m/f.bin'])
  t.is(put.code, 0, put.stderr)
  await sh(`head -c 300000 /dev/zero > ${mount.dir}/m/through-mount.bin && cat ${mount.dir}/m/f.bin > /dev/null`, { timeoutMs: 60_000 })
  const job = await c.loam(['job', 'run', '-', '--wait'], { input: Buffer.from(JSON.stringify({ id: 'm', cmd: 'true', cpus: 0.1, mem: 16, instances: 2 })) })
  t.is(job.code, 0, job.stderr)
  // A read over TCP (short-circuit reads from disk pass no datanode's counters), and a task's log from its agent.
  t.is((await c.loam(['fs', 'cat', '/m/f.bin'], { env: { LOAM_SHORT_CIRCUIT: '0' } })).code, 0)
  t.is((await c.loam(['logs', 'm.0'])).code, 0)
  const after = await scrapeAll()

  // Namenode: calls per method with their latencies, the namespace's counts.
  t.true(total(after.nn, 'loam_rpc_calls_total', { service: 'namenode', method: 'Create', code: 'ok' }) >= total(before.nn, 'loam_rpc_calls_total', { service: 'namenode', method: 'Create', code: 'ok' }) + 2)
  t.true(total(after.nn, 'loam_rpc_duration_seconds_count', { method: 'AddBlock' }) >= total(before.nn, 'loam_rpc_duration_seconds_count', { method: 'AddBlock' }) + 3)
  t.is(total(after.nn, 'loam_namenode_files'), total(before.nn, 'loam_namenode_files') + 2)
  t.is(total(after.nn, 'loam_namenode_directories'), total(before.nn, 'loam_namenode_directories') + 1)
  t.true(total(after.nn, 'loam_namenode_blocks') >= 4)
  for (const name of ['loam_namenode_under_replicated_blocks', 'loam_namenode_corrupt_blocks', 'loam_namenode_missing_blocks', 'loam_namenode_replication_pending_copies']) {
    t.true(after.nn.some((s) => s.name === name), name)
  }
  // Datanodes: every replica's bytes written, some read back; served calls by method.
  t.true(sum(after.dns, 'loam_datanode_bytes_written_total') - sum(before.dns, 'loam_datanode_bytes_written_total') >= 3 * 2.5 * 1024 * 1024)
  t.true(sum(after.dns, 'loam_datanode_bytes_read_total') > sum(before.dns, 'loam_datanode_bytes_read_total'))
  t.true(sum(after.dns, 'loam_rpc_calls_total', { service: 'datanode', method: 'WriteBlock' }) > sum(before.dns, 'loam_rpc_calls_total', { service: 'datanode', method: 'WriteBlock' }))
  t.true(after.dns[0]!.some((s) => s.name === 'loam_datanode_checksum_failures_total'))
  // The agent in each node process: its RPCs on the node's /metrics.
  t.is(sum(after.dns, 'loam_rpc_calls_total', { service: 'agent', method: 'ReadLog' }), sum(before.dns, 'loam_rpc_calls_total', { service: 'agent', method: 'ReadLog' }) + 1)
  // Scheduler: tasks by state and by locality, agents, the role's dominant share.
  t.is(total(after.sched, 'loam_scheduler_tasks', { state: 'FINISHED' }), total(before.sched, 'loam_scheduler_tasks', { state: 'FINISHED' }) + 2)
  t.is(total(after.sched, 'loam_scheduler_tasks_by_locality'), total(before.sched, 'loam_scheduler_tasks_by_locality') + 2)
  t.is(total(after.sched, 'loam_scheduler_agents'), 3)
  t.true(total(after.sched, 'loam_rpc_calls_total', { service: 'scheduler', method: 'SubmitJob' }) >= 1)
  // The mount: operations by kind, with latencies.
  t.true(total(after.mnt, 'loam_fuse_operations_total', { op: 'write', result: 'ok' }) > total(before.mnt, 'loam_fuse_operations_total', { op: 'write', result: 'ok' }))
  t.true(total(after.mnt, 'loam_fuse_operations_total', { op: 'read', result: 'ok' }) > total(before.mnt, 'loam_fuse_operations_total', { op: 'read', result: 'ok' }))
  t.true(total(after.mnt, 'loam_fuse_operation_duration_seconds_count', { op: 'create' }) >= 1)

  // Latencies per method on a datanode and on the scheduler too: one observation a call served.
  const moved = (a: Sample[][], b: Sample[][], name: string, labels: Record<string, string>): number => sum(a, name, labels) - sum(b, name, labels)
  const writes = { service: 'datanode', method: 'WriteBlock' }
  t.true(moved(after.dns, before.dns, 'loam_rpc_calls_total', writes) >= 3)
  t.is(moved(after.dns, before.dns, 'loam_rpc_duration_seconds_count', writes), moved(after.dns, before.dns, 'loam_rpc_calls_total', writes))
  const submits = { service: 'scheduler', method: 'SubmitJob' }
  t.is(moved([after.sched], [before.sched], 'loam_rpc_duration_seconds_count', submits), 1)
  t.is(total(after.sched, 'loam_rpc_duration_seconds_bucket', { ...submits, le: '+Inf' }), total(after.sched, 'loam_rpc_duration_seconds_count', submits))
  t.true(moved([after.sched], [before.sched], 'loam_rpc_duration_seconds_sum', submits) > 0)

  // DRF: a role's running task gives it the dominant share the scheduler reports (its cpus of the cluster's here), and killing it gives it back.
  const share = await c.loam(['job', 'run', '-'], { input: Buffer.from(JSON.stringify({ id: 'share', role: 'analytics', cmd: 'sleep 600', cpus: 1, mem: 16 })) })
  t.is(share.code, 0, share.stderr)
  const drf = async (): Promise<number> => total(await scrape(daemons.scheduler), 'loam_scheduler_drf_dominant_share', { role: 'analytics' })
  await waitFor(async () => (await drf()) > 0, 30_000, 'the analytics role to hold a share')
  const state = JSON.parse((await c.loam(['job', 'agents', '--json'])).stdout.toString()) as { agents: Array<{ cpus: number; memMib: number }>; roles: Array<{ role: string; dominantShare: number }> }
  const expected = Math.max(1 / state.agents.reduce((n, a) => n + a.cpus, 0), 16 / state.agents.reduce((n, a) => n + a.memMib, 0))
  t.true(Math.abs(state.roles.find((r) => r.role === 'analytics')!.dominantShare - expected) < 1e-9)
  t.true(Math.abs((await drf()) - expected) < 1e-9, `${await drf()} vs ${expected}`)
  t.is((await c.loam(['job', 'kill', 'share'])).code, 0)
  await waitFor(async () => (await drf()) === 0, 30_000, 'the analytics share to go back to 0')

  // Under-replicated blocks: 4 replicas asked of a 3-block file on 3 nodes leave its 3 blocks short, until 3 are asked again.
  const underReplicated = async (): Promise<number> => total(await scrape(daemons.namenode), 'loam_namenode_under_replicated_blocks')
  t.is(await underReplicated(), 0)
  t.is((await c.loam(['fs', 'setrep', '4', '/m/f.bin'])).code, 0)
  await waitFor(async () => (await underReplicated()) === 3, 30_000, 'three under-replicated blocks')
  t.is((await c.loam(['fs', 'setrep', '3', '/m/f.bin'])).code, 0)
  await waitFor(async () => (await underReplicated()) === 0, 30_000, 'no under-replicated block')

  // A byte flipped in a replica on disk: that datanode's scanner finds it, and its checksum failures count it.
  const located = (await c.client().getBlockLocations('/m/f.bin', 0, 0)).blocks[0]!
  const victim = c.record.nodes.find((n) => n.id === located.locations[0]!.id)!
  const failures = async (): Promise<number> => total(await scrape(victim.http), 'loam_datanode_checksum_failures_total')
  const failuresBefore = await failures()
  await flipByte(replicaDataPath(victim.data, located.block!.id), 1000)
  await waitFor(async () => (await failures()) > failuresBefore, 60_000, `the scanner on ${victim.id} to count the corrupt replica`)
})
