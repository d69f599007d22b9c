// Jobs through real processes: a scheduler, nodes that are each a datanode and
// an agent, tasks run as processes reading their input split from local disk.
import test, { type ExecutionContext } from 'ava'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { restartSchedulerBehindPausedNode } from './helpers/paused-node.js'
import { MiB, pattern } from './helpers/data.js'

interface TaskJson {
  id: string
  index: number
  node: string | null
  locality: string | null
  waitedMs: number
  state: string
  exitCode: number | null
  attempts: number
  input: { path: string; offset: number; length: number } | null
}
interface JobJson {
  id: string
  state: string
  tasks: TaskJson[]
}

async function run(c: TestCluster, spec: unknown, opts: { wait?: boolean } = { wait: true }): Promise<JobJson> {
  const r = await c.loam(['job', 'run', '-', '--json', ...(opts.wait ? ['--wait'] : [])], { input: Buffer.from(JSON.stringify(spec)) })
  if (!r.stdout.length) throw new Error(`job run: ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as JobJson
}

async function status(c: TestCluster, id: string): Promise<JobJson> {
  const r = await c.loam(['job', 'status', id, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout.toString()) as JobJson
}

/** A file of one block per datanode-sized piece, replication 1. */
async function put(c: TestCluster, p: string, bytes: number, replication = 1): Promise<void> {
  const r = await c.loam(['fs', 'put', '-', p, '--replication', String(replication), '--block-size', '1MiB'], { input: pattern(bytes, 7) })
  if (r.code !== 0) throw new Error(r.stderr)
}

// Each task reads its split through `loam fs cat` (short-circuit on its own node) and prints how many bytes it got.
const COUNT = 'loam fs cat "$LOAM_INPUT_PATH" --offset "$LOAM_INPUT_OFFSET" --length "$LOAM_INPUT_LENGTH" | wc -c'

test('a data-local job: one task per block, every one NODE_LOCAL, each reading exactly its split', async (t) => {
  const c = await startCluster(t, { nodes: 3, replication: 1 })
  await put(c, '/in/a', 5 * MiB + 123)
  const job = await run(c, { id: 'count', cmd: COUNT, cpus: 0.5, mem: 64, input: '/in/a' })
  t.is(job.state, 'FINISHED', JSON.stringify(job))
  t.is(job.tasks.length, 6)
  const located = (await c.client().getBlockLocations('/in/a', 0, 0)).blocks
  for (const task of job.tasks) {
    t.is(task.locality, 'NODE_LOCAL', `${task.id} on ${task.node}`)
    t.is(task.node, located[task.index]!.locations[0]!.id, 'it ran where its block is')
    t.deepEqual(task.input, { path: '/in/a', offset: task.index * MiB, length: task.index < 5 ? MiB : 123 })
    const out = await c.loam(['logs', task.id])
    t.is(out.stdout.toString().trim(), String(task.input!.length), `${task.id} read its whole split`)
  }
})

test('a job over a glob or a directory: one task per block of every file it names, each given its own split; a glob that matches nothing is refused', async (t) => {
  const c = await startCluster(t, { nodes: 2, racks: 1, replication: 1 })
  await put(c, '/data/part-0', MiB + 4321)
  await put(c, '/data/part-1', 1000)
  await put(c, '/data/notes', 500)
  // Each task prints the split it was given, then how many bytes reading that split returned.
  const echo = `echo "$LOAM_INPUT_PATH $LOAM_INPUT_OFFSET $LOAM_INPUT_LENGTH"; ${COUNT}`
  const splits = async (job: JobJson): Promise<string[]> => {
    t.is(job.state, 'FINISHED', JSON.stringify(job))
    const out: string[] = []
    for (const task of job.tasks) {
      const log = (await c.loam(['logs', task.id])).stdout.toString().trim().split('\n')
      const { path, offset, length } = task.input!
      t.deepEqual(log, [`${path} ${offset} ${length}`, String(length)], `${task.id}: its environment names the split it reports, and reading it returns the whole split`)
      out.push(`${path} ${offset} ${length}`)
    }
    return out.sort()
  }
  const parts = ['/data/part-0 0 1048576', `/data/part-0 1048576 4321`, '/data/part-1 0 1000']
  t.deepEqual(await splits(await run(c, { id: 'glob', cmd: echo, cpus: 0.5, mem: 32, input: '/data/part-*' })), parts, 'the glob names part-0 (2 blocks) and part-1 (1), not notes')
  t.deepEqual(await splits(await run(c, { id: 'dir', cmd: echo, cpus: 0.5, mem: 32, input: '/data' })), ['/data/notes 0 500', ...parts], 'a directory names all its files')

  const r = await c.loam(['job', 'run', '-'], { input: Buffer.from(JSON.stringify({ id: 'none', cmd: echo, cpus: 0.5, mem: 32, input: '/data/none-*' })) })
  t.not(r.code, 0)
  t.regex(r.stderr, /^loam: input \/data\/none-\* matches no file\n$/)
  const ls = JSON.parse((await c.loam(['job', 'ls', '--json'])).stdout.toString()) as Array<{ id: string }>
  t.deepEqual(ls.map((j) => j.id).sort(), ['dir', 'glob'], 'nothing was started for the glob that matches nothing')
})

test('a task that fails is retried up to `retries`; a job whose task keeps failing FAILS; bad specs are refused with the field named', async (t) => {
  const c = await startCluster(t, { nodes: 2, racks: 1 })
  // Fails on its first attempt only: the first run leaves a mark in the cluster.
  const flaky = 'if loam fs stat /marks/$LOAM_TASK_ID >/dev/null 2>&1; then echo second; else echo x | loam fs put - /marks/$LOAM_TASK_ID && exit 3; fi'
  const job = await run(c, { id: 'flaky', cmd: flaky, instances: 2, cpus: 0.5, mem: 32, retries: 1 })
  t.is(job.state, 'FINISHED')
  t.deepEqual(job.tasks.map((x) => x.attempts), [2, 2])
  const bad = await run(c, { id: 'bad', cmd: 'exit 7', cpus: 0.5, mem: 32, retries: 2 })
  t.is(bad.state, 'FAILED')
  t.is(bad.tasks[0]!.attempts, 3)
  t.is(bad.tasks[0]!.exitCode, 7)
  for (const [spec, message] of [
    ['{not json', /job spec is not valid JSON/],
    [JSON.stringify({ id: 'x' }), /job spec: cmd is missing/],
    [JSON.stringify({ id: 'x', cmd: 'true', cpus: 4096 }), /more than any agent has/],
    [JSON.stringify({ id: 'x', cmd: 'true', input: '/no/such/file' }), /^loam: input: \/no(\/such\/file)?: no such file/],
    [JSON.stringify({ id: 'x', cmd: 'true', bogus: 1 }), /job spec: bogus is not a job field/],
  ] as const) {
    const r = await c.loam(['job', 'run', '-'], { input: Buffer.from(spec) })
    t.is(r.code === 0 ? 'accepted' : 'refused', 'refused', spec)
    t.regex(r.stderr, message)
  }
  const ls = JSON.parse((await c.loam(['job', 'ls', '--json'])).stdout.toString()) as Array<{ id: string }>
  t.deepEqual(ls.map((j) => j.id).sort(), ['bad', 'flaky'], 'nothing was started for a refused spec')

  // A node that fails a task every time: after two failures there, the task goes to another node.
  await put(c, '/in/one', 1000)
  const home = (await c.client().getBlockLocations('/in/one', 0, 0)).blocks[0]!.locations[0]!.id
  const picky = await run(c, { id: 'picky', cmd: `[ "$LOAM_NODE_ID" != "${home}" ] || exit 5`, input: '/in/one', cpus: 0.5, mem: 32, retries: 4 })
  t.is(picky.state, 'FINISHED', JSON.stringify(picky))
  t.is(picky.tasks[0]!.attempts, 3, 'two attempts on its data-local node, then one elsewhere')
  t.not(picky.tasks[0]!.node, home)
})

test('delay scheduling: with its node busy, a task waits, then goes RACK_LOCAL', async (t) => {
  const c = await startCluster(t, { nodes: 3, racks: 2, replication: 1, localityWait: '1500ms', cpus: 1 })
  // Racks: dn1, dn3 on /r1; dn2 on /r2. A block on a node of /r1 has a rack-mate.
  let file = ''
  for (let i = 0; i < 20 && !file; i++) {
    await put(c, `/in/f${i}`, 1000)
    const node = (await c.client().getBlockLocations(`/in/f${i}`, 0, 0)).blocks[0]!.locations[0]!.id
    if (node !== 'dn2') file = `/in/f${i}`
  }
  t.truthy(file, 'a block landed on /r1')
  // Long enough that a slow machine cannot see it end while the waiter waits; killed below.
  const blocker = await run(c, { id: 'blocker', cmd: 'sleep 120', cpus: 1, mem: 32, input: file }, { wait: false })
  await waitFor(async () => (await status(c, 'blocker')).tasks[0]!.state === 'RUNNING', 20_000, 'the blocker to run')
  const busyNode = (await status(c, 'blocker')).tasks[0]!.node!
  t.is((await status(c, 'blocker')).tasks[0]!.locality, 'NODE_LOCAL')
  const job = await run(c, { id: 'waiter', cmd: 'true', cpus: 1, mem: 32, input: file })
  const task = job.tasks[0]!
  t.is(task.locality, 'RACK_LOCAL', JSON.stringify(task))
  t.not(task.node, busyNode)
  t.true(task.waitedMs >= 1400, `it waited for a node-local slot first: ${task.waitedMs} ms`)
  t.is(blocker.state, 'RUNNING')
  t.is((await status(c, 'blocker')).tasks[0]!.state, 'RUNNING', 'the node-local slot was busy all along')
  t.is((await c.loam(['job', 'kill', 'blocker'])).code, 0)
})

test('scheduler kill -9 and restart mid-job: no task lost, none run twice', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  // Every run of a task leaves its own mark: exactly one per task afterwards means none ran twice.
  const cmd = 'sleep 3 && echo x | loam fs put - /runs/$LOAM_TASK_ID.$(date +%s%N)'
  await run(c, { id: 'steady', cmd, instances: 6, cpus: 0.5, mem: 32, retries: 0 }, { wait: false })
  await waitFor(async () => (await status(c, 'steady')).tasks.some((x) => x.state === 'RUNNING'), 20_000, 'tasks to run')
  await c.killScheduler()
  await c.restartScheduler()
  await waitFor(async () => (await status(c, 'steady')).state !== 'RUNNING', 60_000, 'the job to end')
  const job = await status(c, 'steady')
  t.is(job.state, 'FINISHED', JSON.stringify(job))
  const marks = (await c.loam(['fs', 'ls', '/runs', '--json'])).stdout.toString()
  const names = (JSON.parse(marks) as Array<{ name: string }>).map((m) => m.name.replace(/\.\d+$/, ''))
  t.true(job.tasks.every((x) => x.attempts >= 1))
  t.deepEqual(names.sort(), job.tasks.map((x) => x.id).sort(), 'each task ran exactly once')
})

test('scheduler kill -9 and restart while a task uses all of its agent: the task is adopted, not run again, and the agent takes new work after it', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1, cpus: 1 })
  // It runs until /flags/go exists: as long as the test needs, however slow the machine.
  const cmd = 'echo started && until loam fs stat /flags/go >/dev/null 2>&1; do sleep 0.2; done && echo x | loam fs put - /runs/$LOAM_TASK_ID.$(date +%s%N)'
  await run(c, { id: 'whole', cmd, instances: 1, cpus: 1, mem: 32, retries: 1 }, { wait: false })
  // Started on the agent, not only placed: a launch the agent never heard of is rightly launched again.
  await waitFor(async () => (await c.loam(['logs', 'whole.0'])).stdout.toString().includes('started'), 20_000, 'the task to start')
  await c.killScheduler()
  await c.restartScheduler()
  const agents = async (): Promise<Array<{ usedCpus: number; cpus: number }>> => (JSON.parse((await c.loam(['job', 'agents', '--json'])).stdout.toString()) as { agents: Array<{ usedCpus: number; cpus: number }> }).agents
  await waitFor(async () => (await agents()).length === 1, 20_000, 'the agent to register again')
  t.deepEqual(
    (await agents()).map((a) => [a.usedCpus, a.cpus]),
    [[1, 1]],
    'the adopted task holds the whole agent, whose total stays what it has',
  )
  // As large as the whole agent: accepted, and placed once the adopted task ends.
  t.is((await run(c, { id: 'next', cmd: 'true', instances: 1, cpus: 1, mem: 32 }, { wait: false })).state, 'RUNNING')
  t.is((await status(c, 'next')).tasks[0]!.state, 'PENDING', 'the agent is full')
  t.is((await c.loam(['fs', 'put', '-', '/flags/go'], { input: Buffer.from('x') })).code, 0)
  await waitFor(async () => (await status(c, 'next')).state !== 'RUNNING', 30_000, 'the next job to end')
  t.is((await status(c, 'next')).state, 'FINISHED')
  const job = await status(c, 'whole')
  t.is(job.state, 'FINISHED', JSON.stringify(job))
  t.is(job.tasks[0]!.attempts, 1, 'adopted, not launched again')
  const marks = JSON.parse((await c.loam(['fs', 'ls', '/runs', '--json'])).stdout.toString()) as Array<{ name: string }>
  t.is(marks.length, 1, 'it ran once')
})

test('a job killed just before a scheduler kill -9: its task is killed after the restart, not adopted', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1 })
  await run(c, { id: 'doomed', cmd: 'echo started && exec sleep 1000', instances: 1, cpus: 0.5, mem: 32 }, { wait: false })
  await waitFor(async () => (await c.loam(['logs', 'doomed.0'])).stdout.toString().includes('started'), 20_000, 'the task to start')
  // The kill never reaches the node before the scheduler dies.
  await restartSchedulerBehindPausedNode(c, 0, async () => t.is((await c.loam(['job', 'kill', 'doomed'])).code, 0))
  await waitFor(async () => (await status(c, 'doomed')).tasks[0]!.state !== 'RUNNING', 30_000, 'the task to be killed')
  const job = await status(c, 'doomed')
  t.is(job.state, 'KILLED')
  t.is(job.tasks[0]!.state, 'KILLED', JSON.stringify(job))
})

test('logs --follow goes on into the next attempt of a retried task, and ends with its last', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1 })
  // The first attempt waits for /flags/go and fails; the second succeeds.
  const cmd = 'if loam fs stat /flags/failed >/dev/null 2>&1; then echo second; else echo first; until loam fs stat /flags/go >/dev/null 2>&1; do sleep 0.2; done; echo x | loam fs put - /flags/failed; exit 3; fi'
  await run(c, { id: 'twice', cmd, instances: 1, cpus: 0.5, mem: 32, retries: 1 }, { wait: false })
  await waitFor(async () => (await c.loam(['logs', 'twice.0'])).stdout.toString().includes('first'), 20_000, 'the first attempt to start')
  const following = c.loam(['logs', 'twice.0', '--follow'])
  t.is((await c.loam(['fs', 'put', '-', '/flags/go'], { input: Buffer.from('x') })).code, 0)
  const r = await following
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.toString(), 'first\nsecond\n')
  t.regex(r.stderr, /attempt twice\.0\.2/)
  t.is((await status(c, 'twice')).tasks[0]!.attempts, 2)
})

/**
 * Two busy roles on 2 nodes x 4 cpus, tasks of 0.25 cpu (32 slots, one ~3% of the cluster): `first` fills the
 * cluster alone, then `second` arrives, and as tasks end both converge to their weighted dominant shares.
 */
async function drfConverges(t: ExecutionContext, first: string, second: string, weights: Record<string, number>): Promise<void> {
  const c = await startCluster(t, { nodes: 2, racks: 1, cpus: 4, roleWeights: weights })
  const weight = (role: string): number => weights[role] ?? 1
  const ideal = (role: string): number => weight(role) / (weight(first) + weight(second))
  const running = async (id: string): Promise<number> => (await status(c, id)).tasks.filter((x) => x.state === 'RUNNING').length
  await run(c, { id: 'first', role: first, cmd: 'sleep 2', instances: 200, cpus: 0.25, mem: 16 }, { wait: false })
  await waitFor(async () => (await running('first')) === 32, 30_000, 'the first role to fill the cluster')
  await run(c, { id: 'second', role: second, cmd: 'sleep 2', instances: 200, cpus: 0.25, mem: 16 }, { wait: false })
  // As the first role's tasks end, their slots go to the second role until it holds its share.
  let shares: Array<{ role: string; dominantShare: number }> = []
  await waitFor(
    async () => {
      const state = JSON.parse((await c.loam(['job', 'agents', '--json'])).stdout.toString()) as { roles: Array<{ role: string; dominantShare: number }> }
      shares = state.roles
      return (shares.find((r) => r.role === second)?.dominantShare ?? 0) >= ideal(second) - 0.05
    },
    30_000,
    'the second role to reach its share',
  )
  // Sampled a few times while both roles stay busy: each within 5% of its ideal (and one slot, the grain of the count).
  for (let i = 0; i < 3; i++) {
    const [a, b] = [await running('first'), await running('second')]
    t.true(Math.abs(a / 32 - ideal(first)) <= 0.05 + 1 / 32 && Math.abs(b / 32 - ideal(second)) <= 0.05 + 1 / 32, `${first} ${a}, ${second} ${b} of 32 slots`)
    await new Promise((r) => setTimeout(r, 700))
  }
  t.true(shares.every((r) => Math.abs(r.dominantShare - ideal(r.role)) <= 0.05), JSON.stringify(shares))
  await c.loam(['job', 'kill', 'first'])
  await c.loam(['job', 'kill', 'second'])
}

test('DRF through real agents: a role alone takes the whole cluster; a second busy role converges to an equal dominant share', async (t) => {
  await drfConverges(t, 'analytics', 'etl', {})
})

test('weighted DRF through real agents: a role of weight 2 arriving at a cluster full of a role of weight 1 converges to 2/3 of it', async (t) => {
  await drfConverges(t, 'etl', 'analytics', { analytics: 2, etl: 1 })
})
