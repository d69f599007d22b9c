// `loam scheduler`, `loam job ...` and `loam logs`: batch jobs on the cluster.
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { namenodeAddress } from '../client/client.js'
import { parseAddress } from '../common/address.js'
import { schedulerAddress } from '../scheduler/agent.js'
import { createLogger } from '../common/log.js'
import { parseDuration } from '../common/units.js'
import { LoamError } from '../rpc/errors.js'
import { RpcClient } from '../rpc/client.js'
import { AgentService, SchedulerService, type SchedulerServiceSpec } from '../rpc/service.js'
import { Scheduler } from '../scheduler/server.js'
import { logLevel, daemonProcess, stopOnSignal, writeReadyFile } from './daemon-commands.js'
import { action, printJson } from './run.js'
import type { JobStatus } from '../dashboard/model.js'

export interface SchedulerFlags {
  scheduler?: string
}

export async function withScheduler<T>(flags: SchedulerFlags, fn: (c: RpcClient<SchedulerServiceSpec>) => Promise<T>): Promise<T> {
  const c = new RpcClient(schedulerAddress(flags.scheduler), SchedulerService, { peerName: 'scheduler' })
  try {
    return await fn(c)
  } finally {
    c.close()
  }
}

function printStatus(job: JobStatus): void {
  const count = (s: string): number => job.tasks.filter((t) => t.state === s).length
  const localities = ['NODE_LOCAL', 'RACK_LOCAL', 'ANY'].map((l) => `${l} ${job.tasks.filter((t) => t.locality === l).length}`).join(', ')
  process.stdout.write(`${job.id}: ${job.state} (role ${job.role}); tasks ${job.tasks.length}: ${count('FINISHED')} finished, ${count('RUNNING')} running, ${count('PENDING')} pending, ${count('FAILED')} failed; ${localities}\n`)
  for (const t of job.tasks) {
    const input = t.input ? ` ${t.input.path}@${t.input.offset}+${t.input.length}` : ''
    process.stdout.write(`  ${t.id}  ${t.state.padEnd(8)} ${(t.node ?? '-').padEnd(8)} ${(t.locality ?? '-').padEnd(10)} attempts ${t.attempts}${t.exitCode === null ? '' : ` exit ${t.exitCode}`}${input}${t.message ? `  (${t.message})` : ''}\n`)
  }
}

interface ClusterStateJson {
  agents: Array<{ id: string; node: string | null; rack: string; cpus: number; memMib: number; usedCpus: number; usedMemMib: number; tasks: string[] }>
  roles: Array<{ role: string; weight: number; dominantShare: number; running: number; pending: number }>
}

export function registerJobCommands(program: Command): void {
  program
    .command('scheduler')
    .description('run the scheduler: agents, jobs and tasks; its state survives restarts')
    .option('--namenode <host:port>', 'the namenode (default: $LOAM_NAMENODE or 127.0.0.1:8020)')
    .requiredOption('--data <dir>', 'where its state is kept')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'RPC port (0 picks a free one)', '5050')
    .option('--http-port <port>', 'HTTP port for /status and /metrics', '5051')
    .option('--heartbeat <duration>', 'agent heartbeat interval', '1s')
    .option('--dead-after <duration>', 'an agent silent this long is dead and its tasks run elsewhere', '10s')
    .option('--locality-wait <duration>', 'how long a job waits for a node-local slot before rack-local, and again before any', '3s')
    .option('--role-weight <role=weight...>', 'DRF weight of a role (default 1)')
    .option('--ready-file <file>', 'write {"rpc", "http", "pid"} here once serving')
    .option('--log-level <level>', 'log level', 'info')
    .action(
      action(async (f: { namenode?: string; data: string; host: string; port: string; httpPort: string; heartbeat: string; deadAfter: string; localityWait: string; roleWeight?: string[]; readyFile?: string; logLevel: string }) => {
        const log = createLogger('scheduler', logLevel(f.logLevel))
        daemonProcess(log)
        const roleWeights: Record<string, number> = {}
        for (const rw of f.roleWeight ?? []) {
          const m = /^([^=]+)=(\d+(\.\d+)?)$/.exec(rw)
          if (!m) throw new LoamError('invalid-argument', `--role-weight '${rw}' must be ROLE=WEIGHT, e.g. analytics=2`)
          roleWeights[m[1]!] = Number(m[2])
        }
        const port = (text: string, what: string): number => {
          const n = Number(text)
          if (!Number.isInteger(n) || n < 0 || n > 65535) throw new LoamError('invalid-argument', `${what} '${text}' is not a port number`)
          return n
        }
        const handle = await Scheduler.start({
          namenode: namenodeAddress(f.namenode),
          dataDir: f.data,
          host: f.host,
          port: port(f.port, '--port'),
          httpPort: port(f.httpPort, '--http-port'),
          heartbeatMs: parseDuration(f.heartbeat, '--heartbeat'),
          deadAfterMs: parseDuration(f.deadAfter, '--dead-after'),
          localityWaitMs: parseDuration(f.localityWait, '--locality-wait'),
          roleWeights,
          log,
        })
        if (f.readyFile) await writeReadyFile(f.readyFile, { rpc: `${handle.rpc.host}:${handle.rpc.port}`, http: `${handle.http.host}:${handle.http.port}`, pid: process.pid })
        stopOnSignal(() => handle.stop())
      }),
    )

  const job = program.command('job').description('batch jobs: one task per input block, placed where the data is')

  withSchedulerOption(job.command('run').argument('<spec>', 'a JSON job spec file (- for stdin)'))
    .description('submit a job: {"id", "cmd", "cpus", "mem", "instances" or "input", "env", "retries", "role"}')
    .option('--wait', 'wait until it ends; exit 1 unless it FINISHED')
    .option('--json', 'print the status as JSON')
    .action(
      action(async (file: string, f: SchedulerFlags & { wait?: boolean; json?: boolean }) => {
        const text = await readSpec(file)
        await withScheduler(f, async (c) => {
          let status = JSON.parse((await c.call('SubmitJob', { json: text })).json) as JobStatus
          while (f.wait && status.state === 'RUNNING') {
            await new Promise((r) => setTimeout(r, 250))
            status = JSON.parse((await c.call('JobStatus', { id: status.id })).json) as JobStatus
          }
          if (f.json) printJson(status)
          else printStatus(status)
          if (f.wait && status.state !== 'FINISHED') process.exitCode = 1
        })
      }),
    )

  withSchedulerOption(job.command('status').argument('<id>', 'the job'))
    .description("a job's state and its tasks: node, locality, state, exit code, attempts, input split")
    .option('--json', 'print JSON')
    .action(
      action(async (id: string, f: SchedulerFlags & { json?: boolean }) => {
        await withScheduler(f, async (c) => {
          const status = JSON.parse((await c.call('JobStatus', { id })).json) as JobStatus
          if (f.json) printJson(status)
          else printStatus(status)
        })
      }),
    )

  withSchedulerOption(job.command('ls'))
    .description('every job the scheduler knows')
    .option('--json', 'print JSON')
    .action(
      action(async (f: SchedulerFlags & { json?: boolean }) => {
        await withScheduler(f, async (c) => {
          const jobs = JSON.parse((await c.call('ListJobs', {})).json) as Array<{ id: string; state: string; role: string; tasks: number; finished: number }>
          if (f.json) return printJson(jobs)
          for (const j of jobs) process.stdout.write(`${j.id}  ${j.state}  role ${j.role}  ${j.finished}/${j.tasks} tasks finished\n`)
        })
      }),
    )

  withSchedulerOption(job.command('agents'))
    .description("the scheduler's agents (resources in use, running tasks) and each role's dominant share")
    .option('--json', 'print JSON')
    .action(
      action(async (f: SchedulerFlags & { json?: boolean }) => {
        await withScheduler(f, async (c) => {
          const state = JSON.parse((await c.call('ClusterState', {})).json) as ClusterStateJson
          if (f.json) return printJson(state)
          for (const a of state.agents) process.stdout.write(`${a.id}  node ${a.node ?? '-'}  rack ${a.rack}  cpus ${a.usedCpus}/${a.cpus}  mem ${a.usedMemMib}/${a.memMib} MiB  tasks ${a.tasks.length}\n`)
          for (const r of state.roles) process.stdout.write(`role ${r.role}  weight ${r.weight}  dominant share ${(r.dominantShare * 100).toFixed(1)}%  running ${r.running}  pending ${r.pending}\n`)
        })
      }),
    )

  withSchedulerOption(job.command('kill').argument('<id>', 'the job'))
    .description('stop a job: its running tasks are killed, its pending ones dropped')
    .action(
      action(async (id: string, f: SchedulerFlags) => {
        await withScheduler(f, async (c) => {
          printStatus(JSON.parse((await c.call('KillJob', { id })).json) as JobStatus)
        })
      }),
    )

  withSchedulerOption(program.command('logs').argument('<task>', 'a task id, as job status shows it'))
    .description("a task's output (its latest attempt)")
    .option('--stderr', 'its standard error instead of its standard output')
    .option('--follow', 'keep printing until the task ends')
    .action(
      action(async (taskId: string, f: SchedulerFlags & { stderr?: boolean; follow?: boolean }) => {
        const locate = (): Promise<TaskLocation> => withScheduler(f, async (c) => JSON.parse((await c.call('TaskLocation', { id: taskId })).json) as TaskLocation)
        let where = await locate()
        for (;;) {
          await printLog(taskId, where, f)
          if (!f.follow) return
          // A retried task (or a restarted service instance) goes on in a new attempt: followed until one ends for good.
          const next = await nextAttempt(where, locate)
          if (!next) return
          process.stderr.write(`loam: task ${taskId}: attempt ${next.launch} on agent ${next.agent}\n`)
          where = next
        }
      }),
    )
}

interface TaskLocation {
  launch: string
  address: string
  agent: string
  state: string
}

const LOG_POLL_MS = 500

/** Prints one attempt's log: what there is, or (following) until the attempt ends. */
async function printLog(taskId: string, where: TaskLocation, f: { stderr?: boolean; follow?: boolean }): Promise<void> {
  if (!where.address) throw new LoamError('unavailable', `task ${taskId} ran on agent ${where.agent}, which is gone: its logs went with it`)
  const agent = new RpcClient(parseAddress(where.address, 'agent address'), AgentService, { peerName: `agent ${where.agent}` })
  try {
    let offset = 0
    for (;;) {
      const r = await agent.call('ReadLog', { taskId: where.launch, stream: f.stderr ? 'stderr' : 'stdout', offsetBytes: offset, maxBytes: 1 << 20 })
      if (r.data.length > 0) process.stdout.write(r.data)
      offset += r.data.length
      if (r.ended || (!f.follow && r.data.length === 0)) return
      if (r.data.length === 0) await new Promise((res) => setTimeout(res, LOG_POLL_MS))
    }
  } finally {
    agent.close()
  }
}

/** After an attempt ended: the next one once it is launched, or undefined when the task will not run again. */
async function nextAttempt(ended: TaskLocation, locate: () => Promise<TaskLocation>): Promise<TaskLocation | undefined> {
  for (;;) {
    const now = await locate()
    if (now.launch !== ended.launch) return now
    // PENDING: queued to run again; RUNNING: the scheduler has not heard of the end yet.
    if (now.state !== 'PENDING' && now.state !== 'RUNNING') return undefined
    await new Promise((res) => setTimeout(res, LOG_POLL_MS))
  }
}

export function withSchedulerOption(cmd: Command): Command {
  return cmd.option('--scheduler <host:port>', 'the scheduler (default: $LOAM_SCHEDULER or 127.0.0.1:5050)')
}

/** A spec from a file, or from standard input for '-'. */
export async function readSpec(file: string): Promise<string> {
  if (file === '-') return readStdin()
  return readFile(file, 'utf8').catch((err: Error) => Promise.reject(new LoamError('not-found', `cannot read ${file}: ${err.message}`)))
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
