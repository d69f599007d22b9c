// The agent as a real process (`loam agent`, `loam node`) against a fake scheduler on a
// real socket: registration, task states in heartbeats, logs, kills that reach a whole
// process group, leftovers of a killed agent, a scheduler that restarts, its /status,
// /metrics and JSON log lines.
import test, { type ExecutionContext } from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { parseAddress } from '../src/common/address.js'
import { RpcClient } from '../src/rpc/client.js'
import { LoamError } from '../src/rpc/errors.js'
import { AgentService, type AgentServiceSpec } from '../src/rpc/service.js'
import { CLI, sleep, waitFor } from './helpers/cluster.js'
import { FakeScheduler } from './helpers/fake-scheduler.js'
import { scrape, total } from './helpers/prometheus.js'

const WAIT_MS = 20_000

interface Started {
  child: ChildProcess
  ready: Record<string, unknown>
  logFile: string
}

/** One test's world: a temporary directory, a fake scheduler, and every process it starts, all torn down. */
class World {
  readonly children: ChildProcess[] = []
  readonly clients: RpcClient<AgentServiceSpec>[] = []
  readonly workDirs = new Set<string>()
  fake!: FakeScheduler

  constructor(readonly dir: string) {}

  static async make(t: ExecutionContext): Promise<World> {
    const w = new World(await mkdtemp(path.join(os.tmpdir(), 'loam-agent-test-')))
    t.teardown(() => w.destroy())
    w.fake = await FakeScheduler.start({ heartbeatIntervalMs: 200 })
    return w
  }

  /** Starts a `loam` daemon and waits for its ready file. */
  async daemon(name: string, args: string[]): Promise<Started> {
    const readyFile = path.join(this.dir, `${name}.ready.json`)
    await rm(readyFile, { force: true })
    const logFile = path.join(this.dir, `${name}.log`)
    const fd = openSync(logFile, 'a')
    const child = spawn(process.execPath, [CLI, ...args, '--ready-file', readyFile], { stdio: ['ignore', fd, fd] })
    closeSync(fd)
    this.children.push(child)
    await waitFor(async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}): ${await readFile(logFile, 'utf8')}`)
      return (await readFile(readyFile, 'utf8').catch(() => '')) !== ''
    }, WAIT_MS, `${name} to be ready`)
    return { child, ready: JSON.parse(await readFile(readyFile, 'utf8')) as Record<string, unknown>, logFile }
  }

  /** A `loam agent` of the fake scheduler (extra may name another); logLevel null leaves the daemon's default. */
  async agent(id: string, extra: string[] = [], logLevel: string | null = 'warn'): Promise<Started & { client: RpcClient<AgentServiceSpec>; workDir: string }> {
    const workDir = path.join(this.dir, `work-${id}`)
    this.workDirs.add(workDir)
    const level = logLevel === null ? [] : ['--log-level', logLevel]
    const s = await this.daemon(`agent-${id}`, ['agent', '--scheduler', this.fake.addressText, '--id', id, '--work', workDir, '--port', '0', '--heartbeat', '200ms', '--cpus', '2', '--mem', '512', ...level, ...extra])
    const client = this.agentClient(String(s.ready.rpc))
    return { ...s, client, workDir }
  }

  agentClient(address: string): RpcClient<AgentServiceSpec> {
    const c = new RpcClient(parseAddress(address), AgentService, { peerName: 'agent', timeoutMs: 5_000 })
    this.clients.push(c)
    return c
  }

  /** Waits until the fake scheduler has heard the task in one of the states. */
  async taskState(taskId: string, states: string[]): Promise<{ state: string; exitCode: number; message: string }> {
    await waitFor(() => states.includes(this.fake.tasks.get(taskId)?.state ?? ''), WAIT_MS, `task ${taskId} to be ${states.join(' or ')} (now ${this.fake.tasks.get(taskId)?.state ?? 'unreported'})`)
    return this.fake.tasks.get(taskId)!
  }

  async destroy(): Promise<void> {
    for (const c of this.clients) c.close()
    await this.fake?.stop()
    for (const child of this.children) await stopChild(child)
    // Tasks outlive a SIGKILLed agent (their own process groups): every one recorded in a sandbox goes.
    for (const workDir of this.workDirs) for (const pid of recordedPids(workDir)) killGroup(pid)
    await rm(this.dir, { recursive: true, force: true })
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill(signal)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10_000)))])
  clearTimeout(timer)
}

function recordedPids(workDir: string): number[] {
  const tasks = path.join(workDir, 'tasks')
  let names: string[]
  try {
    names = readdirSync(tasks)
  } catch {
    return []
  }
  const pids: number[] = []
  for (const n of names) {
    try {
      pids.push((JSON.parse(readFileSync(path.join(tasks, n, 'task.json'), 'utf8')) as { pid: number }).pid)
    } catch {
      // no record: never started
    }
  }
  return pids
}

function killGroup(pgid: number): void {
  if (pgid > 1 && groupLives(pgid)) {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // gone
    }
  }
}

/** Whether any live (non-zombie) process has this process group id: read from /proc, apart from the agent's own code. */
function groupLives(pgid: number): boolean {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true
    } catch {
      // exited meanwhile
    }
  }
  return false
}

async function taskPid(workDir: string, taskId: string): Promise<number> {
  const file = path.join(workDir, 'tasks', taskId, 'task.json')
  await waitFor(async () => (await readFile(file, 'utf8').catch(() => '')) !== '', WAIT_MS, `${taskId}'s pid file`)
  return (JSON.parse(await readFile(file, 'utf8')) as { pid: number }).pid
}

async function log(client: RpcClient<AgentServiceSpec>, taskId: string, stream = 'stdout', offsetBytes = 0, maxBytes = 0): Promise<{ text: string; ended: boolean }> {
  const r = await client.call('ReadLog', { taskId, stream, offsetBytes, maxBytes })
  return { text: Buffer.from(r.data).toString(), ended: r.ended }
}

interface LogLine {
  level: number
  time: string
  role: string
  pid: number
  msg: string
}

/** A daemon's log: one JSON object a line, each with its level, time, role, pid and message. */
async function logLines(file: string): Promise<LogLine[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      let line: LogLine
      try {
        line = JSON.parse(l) as LogLine
      } catch {
        throw new Error(`${file}: a log line that is not JSON: ${l}`)
      }
      if (typeof line.level !== 'number' || typeof line.time !== 'string' || typeof line.role !== 'string' || typeof line.pid !== 'number' || typeof line.msg !== 'string') throw new Error(`${file}: a log line without level, time, role, pid or msg: ${l}`)
      return line
    })
}

/** pino's numbers for the levels. */
const INFO = 30
const WARN = 40

function refuses(address: string): Promise<boolean> {
  const a = parseAddress(address)
  return new Promise((resolve) => {
    const s = net.connect(a.port, a.host)
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', () => resolve(true))
  })
}

test.serial('an agent registers its resources, node id and rack, then heartbeats', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1', ['--node-id', 'dn1', '--rack', '/r1', '--disk', '100'])
  await waitFor(() => w.fake.heartbeats.filter((h) => h.agentId === 'a1').length >= 2, WAIT_MS, 'two heartbeats')
  t.like(w.fake.registrations[0], { agentId: 'a1', nodeId: 'dn1', rack: '/r1', host: '127.0.0.1', rpcPort: parseAddress(String(a.ready.rpc)).port, cpus: 2, memMib: 512, diskMib: 100, tasks: [] })
  t.like(a.ready, { pid: a.child.pid, agentId: 'a1' })
})

test.serial('a failing task ends FAILED with its exit code; ReadLog serves its stdout and stderr', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1')
  w.fake.launch('a1', { taskId: 't1', cmd: 'echo hello; echo oops >&2; exit 3' })
  t.like(await w.taskState('t1', ['FINISHED', 'FAILED', 'KILLED']), { state: 'FAILED', exitCode: 3, message: 'exited with status 3' })
  t.deepEqual(await log(a.client, 't1'), { text: 'hello\n', ended: true })
  t.deepEqual(await log(a.client, 't1', 'stderr'), { text: 'oops\n', ended: true })
  t.deepEqual(await log(a.client, 't1', 'stdout', 1, 2), { text: 'el', ended: false }, 'a window short of the end has not ended')
  t.deepEqual(await log(a.client, 't1', 'stdout', 6), { text: '', ended: true })

  const code = async (p: Promise<unknown>): Promise<string> => ((await t.throwsAsync(p, { instanceOf: LoamError })) as LoamError).code
  t.is(await code(log(a.client, 'nope')), 'not-found')
  t.is(await code(log(a.client, 't1', 'stdin')), 'invalid-argument')
  t.is(await code(log(a.client, 't1', 'stdout', 7)), 'invalid-argument')

  // Reported until forgotten; then gone from heartbeats, its logs still readable.
  const before = w.fake.heartbeats.length
  await sleep(500)
  t.true(w.fake.heartbeats.slice(before).every((h) => h.tasks.some((s) => s.taskId === 't1')), 'an ended task is reported again and again')
  w.fake.forget('a1', 't1')
  await waitFor(() => w.fake.heartbeats.length > 0 && !w.fake.heartbeats.at(-1)!.tasks.some((s) => s.taskId === 't1'), WAIT_MS, 't1 to be forgotten')
  t.deepEqual(await log(a.client, 't1'), { text: 'hello\n', ended: true })
})

test.serial('an agent serves /status and /metrics on its HTTP port; its log is JSON lines, and --log-level warn leaves out the info ones', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1', [], null)
  const http = String(a.ready.http)
  const status = async (): Promise<{ registered: boolean; tasks: Array<{ taskId: string; state: string }> }> => (await fetch(`http://${http}/status`)).json() as Promise<{ registered: boolean; tasks: Array<{ taskId: string; state: string }> }>
  await waitFor(async () => (await status()).registered, WAIT_MS, 'a1 to say it registered')
  w.fake.launch('a1', { taskId: 'm', cmd: 'echo metered' })
  await w.taskState('m', ['FINISHED'])
  t.like(await status(), { role: 'agent', agentId: 'a1', rack: '/default-rack', scheduler: w.fake.addressText, registered: true, cpus: 2, memMib: 512, tasks: [{ taskId: 'm', state: 'FINISHED' }] })

  // Each call it serves is counted and timed under its method; the process's own figures come with them.
  const readLog = { service: 'agent', method: 'ReadLog' }
  const before = await scrape(http)
  t.is((await log(a.client, 'm')).text, 'metered\n')
  const after = await scrape(http)
  t.is(total(after, 'loam_rpc_calls_total', { ...readLog, code: 'ok' }) - total(before, 'loam_rpc_calls_total', { ...readLog, code: 'ok' }), 1)
  t.is(total(after, 'loam_rpc_duration_seconds_count', readLog) - total(before, 'loam_rpc_duration_seconds_count', readLog), 1)
  t.true(after.some((s) => s.name === 'process_cpu_user_seconds_total'))

  // At the default level (info) it says it serves and that it registered; at warn, with no scheduler to reach,
  // it warns of that and says nothing at info.
  const quiet = await w.agent('a2', ['--scheduler', '127.0.0.1:1'], 'warn')
  await waitFor(async () => (await readFile(quiet.logFile, 'utf8')).includes('cannot reach the scheduler'), WAIT_MS, 'a2 to warn')
  const loud = await logLines(a.logFile)
  t.true(loud.every((l) => l.role === 'agent'))
  for (const msg of ['agent serving', 'registered with the scheduler']) t.true(loud.some((l) => l.level === INFO && l.msg === msg), msg)
  const warned = await logLines(quiet.logFile)
  t.true(warned.some((l) => l.level === WARN && l.msg === 'cannot reach the scheduler; retrying'))
  t.deepEqual(warned.filter((l) => l.level < WARN), [])
})

test.serial('a task finds `loam` on its PATH', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1')
  w.fake.launch('a1', { taskId: 'v', cmd: 'command -v loam; loam --version' })
  const s = await w.taskState('v', ['FINISHED', 'FAILED', 'KILLED'])
  t.like(s, { state: 'FINISHED', exitCode: 0 }, (await log(a.client, 'v', 'stderr')).text)
  t.is((await log(a.client, 'v')).text, `${path.join(a.workDir, 'bin', 'loam')}\n0.1.0\n`)
})

test.serial('a killed task ends KILLED and its whole process group is gone', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1')
  w.fake.launch('a1', { taskId: 'k', cmd: 'sleep 600 & sleep 600; wait' })
  await w.taskState('k', ['RUNNING'])
  const pid = await taskPid(a.workDir, 'k')
  await waitFor(() => groupLives(pid), WAIT_MS, 'the task to run')
  w.fake.kill('a1', 'k')
  t.like(await w.taskState('k', ['FINISHED', 'FAILED', 'KILLED']), { state: 'KILLED' })
  await waitFor(() => !groupLives(pid), WAIT_MS, 'the process group to be gone')
  t.false(groupLives(pid))
  t.like(await log(a.client, 'k'), { ended: true })
})

test.serial('a kill in the same answer as its launch (stopped as soon as placed) stops the task', async (t) => {
  const w = await World.make(t)
  await w.agent('a1')
  w.fake.launch('a1', { taskId: 'brief', cmd: 'sleep 600' })
  w.fake.kill('a1', 'brief')
  t.like(await w.taskState('brief', ['FINISHED', 'FAILED', 'KILLED']), { state: 'KILLED' })
})

test.serial('a task sees LOAM_TASK_ID, LOAM_SANDBOX and the env it was given, in its sandbox', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1')
  // A task id need not be a file name: its sandbox's name encodes it.
  const id = 'job/e.1'
  w.fake.launch('a1', { taskId: id, cmd: 'printf "%s\\n" "$LOAM_TASK_ID" "$LOAM_SANDBOX" "$GREETING" "$(pwd)" "$LOAM_SCHEDULER"', env: { GREETING: 'hi there' } })
  t.like(await w.taskState(id, ['FINISHED', 'FAILED', 'KILLED']), { state: 'FINISHED' })
  const sandbox = path.join(a.workDir, 'tasks', 'job%2Fe.1')
  t.is((await log(a.client, id)).text, [id, sandbox, 'hi there', sandbox, w.fake.addressText, ''].join('\n'))
})

test.serial('told to register again, the agent does so at once, with its tasks', async (t) => {
  const w = await World.make(t)
  await w.agent('a1')
  w.fake.launch('a1', { taskId: 'r', cmd: 'exit 0' })
  await w.taskState('r', ['FINISHED'])
  const registrations = w.fake.registrations.length
  w.fake.forgetAgent('a1')
  await waitFor(() => w.fake.registrations.length > registrations, WAIT_MS, 'the agent to register again')
  t.like(w.fake.registrations.at(-1), { agentId: 'a1', tasks: [{ taskId: 'r', state: 'FINISHED', exitCode: 0, message: 'exited with status 0' }] })
})

test.serial('an agent killed with SIGKILL and started again kills the task it left running', async (t) => {
  const w = await World.make(t)
  const a = await w.agent('a1')
  w.fake.launch('a1', { taskId: 'lost', cmd: 'sleep 600' })
  await w.taskState('lost', ['RUNNING'])
  const pid = await taskPid(a.workDir, 'lost')
  await stopChild(a.child, 'SIGKILL')
  await sleep(200)
  t.true(groupLives(pid), 'the task outlives its agent (its own process group)')

  const registrations = w.fake.registrations.length
  const again = await w.agent('a1')
  t.false(groupLives(pid), 'the leftover is killed before the agent serves')
  await waitFor(() => w.fake.registrations.length > registrations, WAIT_MS, 'the agent to register again')
  t.deepEqual(w.fake.registrations.at(-1)!.tasks, [], 'a lost task is not reported: the scheduler runs it again elsewhere')
  t.deepEqual(await log(again.client, 'lost'), { text: '', ended: true }, 'its logs stay readable')
})

test.serial('after the scheduler restarts, the agent registers again with its tasks, ended ones included', async (t) => {
  const w = await World.make(t)
  await w.agent('a1')
  w.fake.launch('a1', { taskId: 'long', cmd: 'sleep 600' })
  w.fake.launch('a1', { taskId: 'short', cmd: 'while [ ! -e go ]; do sleep 0.05; done; exit 7' })
  await w.taskState('long', ['RUNNING'])
  await w.taskState('short', ['RUNNING'])

  await w.fake.stop()
  await writeFile(path.join(w.dir, 'work-a1', 'tasks', 'short', 'go'), '')
  await sleep(1_000) // 'short' ends while nobody listens; the agent retries
  const registrations = w.fake.registrations.length
  await w.fake.restart()
  await waitFor(() => w.fake.registrations.length > registrations, WAIT_MS, 'the agent to register again')
  const tasks = w.fake.registrations.at(-1)!.tasks
  t.like(
    Object.fromEntries(tasks.map((s) => [s.taskId, s])),
    { long: { state: 'RUNNING' }, short: { state: 'FAILED', exitCode: 7 } },
  )
})

test.serial('bad flags: one line and exit status 2, nothing started', async (t) => {
  const w = await World.make(t)
  const run = (args: string[]): Promise<{ code: number; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
      child.on('close', (code) => resolve({ code: code ?? -1, stderr }))
    })
  const work = ['--work', path.join(w.dir, 'w')]
  const cases: Array<[string[], RegExp]> = [
    [['agent', '--scheduler', 'nope', ...work], /^loam: scheduler address 'nope' is not HOST:PORT/],
    [['agent', '--scheduler', '127.0.0.1:1', '--cpus', '0', ...work], /^loam: --cpus '0' must be a number of cpus more than 0/],
    [['agent', '--scheduler', '127.0.0.1:1', '--cpus', 'many', ...work], /^loam: --cpus 'many'/],
    [['agent', '--scheduler', '127.0.0.1:1', '--mem', '0', ...work], /^loam: --mem '0' must be more than 0 MiB/],
    [['agent', '--scheduler', '127.0.0.1:1', '--mem', 'lots', ...work], /^loam: --mem 'lots' is not a size/],
    [['agent', '--scheduler', '127.0.0.1:1', '--port', '70000', ...work], /^loam: --port '70000' is not a port number/],
    [['agent', '--scheduler', '127.0.0.1:1', '--rack', 'r1', ...work], /^loam: --rack 'r1' must start with '\/'/],
    [['node', '--namenode', 'x', '--scheduler', '127.0.0.1:1', '--data', path.join(w.dir, 'd'), ...work], /^loam: --namenode 'x' is not HOST:PORT/],
    [['node', '--scheduler', '127.0.0.1:1', '--data', path.join(w.dir, 'd'), '--cpus', '-1', ...work], /^loam: --cpus '-1'/],
    [['node', '--scheduler', '127.0.0.1:1', ...work], /^loam: required option '--data <dirs>' not specified/],
  ]
  for (const [args, line] of cases) {
    const r = await run(args)
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, line)
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  }
  // `loam node`'s datanode administration still parses its own --namenode (and needs no --data).
  const decommission = await run(['node', 'decommission', 'dn1', '--namenode', '127.0.0.1:1'])
  t.is(decommission.code, 1, decommission.stderr)
  t.regex(decommission.stderr, /^loam: cannot reach namenode at 127\.0\.0\.1:1/)
})

test.serial('`loam node` runs a datanode and an agent in one process, and SIGTERM stops both', async (t) => {
  const w = await World.make(t)
  const nn = await w.daemon('namenode', ['namenode', '--data', path.join(w.dir, 'nn'), '--port', '0', '--http-port', '0', '--log-level', 'warn'])
  const workDir = path.join(w.dir, 'node-work')
  w.workDirs.add(workDir)
  const node = await w.daemon('node', [
    'node', '--namenode', String(nn.ready.rpc), '--scheduler', w.fake.addressText, '--data', path.join(w.dir, 'dn'), '--work', workDir,
    '--id', 'dn7', '--rack', '/r2', '--port', '0', '--http-port', '0', '--agent-port', '0', '--heartbeat', '200ms', '--cpus', '1', '--mem', '256', '--log-level', 'warn',
  ])
  t.like(node.ready, { pid: node.child.pid, id: 'dn7' })
  for (const k of ['rpc', 'http', 'agentRpc']) t.regex(String(node.ready[k]), /^127\.0\.0\.1:\d+$/, k)
  await waitFor(() => w.fake.registrations.some((r) => r.agentId === 'dn7'), WAIT_MS, 'the node\'s agent to register')
  t.like(w.fake.registrations.find((r) => r.agentId === 'dn7'), { nodeId: 'dn7', rack: '/r2', cpus: 1, memMib: 256, rpcPort: parseAddress(String(node.ready.agentRpc)).port })

  w.fake.launch('dn7', { taskId: 'where', cmd: 'echo "$LOAM_NODE_ID $LOAM_NAMENODE"' })
  t.like(await w.taskState('where', ['FINISHED', 'FAILED', 'KILLED']), { state: 'FINISHED' })
  t.is((await log(w.agentClient(String(node.ready.agentRpc)), 'where')).text, `dn7 ${String(nn.ready.rpc)}\n`)

  w.fake.launch('dn7', { taskId: 'busy', cmd: 'sleep 600' })
  await w.taskState('busy', ['RUNNING'])
  const pid = await taskPid(workDir, 'busy')
  const exited = new Promise<number | null>((r) => node.child.once('exit', (code) => r(code)))
  node.child.kill('SIGTERM')
  t.is(await exited, 0)
  t.true(await refuses(String(node.ready.rpc)), 'the datanode stopped')
  t.true(await refuses(String(node.ready.agentRpc)), 'the agent stopped')
  t.false(groupLives(pid), 'its tasks were killed')
  // Both ran with --log-level warn: JSON lines, none of them at info.
  for (const d of [nn, node]) t.deepEqual((await logLines(d.logFile)).filter((l) => l.level < WARN), [], d.logFile)
})
