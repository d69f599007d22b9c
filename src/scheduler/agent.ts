// The agent: the process on every worker machine that runs tasks for the scheduler.
// It registers (retrying with backoff while the scheduler is away) with the tasks it
// holds, heartbeats every task's state, carries out the launches, kills and forgets
// the answers carry, and serves its tasks' logs (AgentService.ReadLog).
import path from 'node:path'
import type { Registry } from 'prom-client'
import { formatAddress, parseAddress, type Address } from '../common/address.js'
import type { Logger } from '../common/log.js'
import { HEARTBEAT_DEFAULT_MS } from '../limits.js'
import { RpcClient } from '../rpc/client.js'
import { LoamError } from '../rpc/errors.js'
import type { AgentHeartbeatResponse } from '../rpc/messages.js'
import { RpcServer, type Handlers } from '../rpc/server.js'
import { AgentService, SchedulerService, type AgentServiceSpec, type SchedulerServiceSpec } from '../rpc/service.js'
import { AGENT_DISK_MIB_MAX, AGENT_MEM_MIB_MAX, AGENT_MILLICPUS_MAX, MILLICPUS_PER_CPU } from './limits.js'
import { checkId } from './spec.js'
import { TaskRunner } from './task-runner.js'

export const SCHEDULER_ADDRESS_DEFAULT = '127.0.0.1:5050'

/** The scheduler from --scheduler, else LOAM_SCHEDULER, else 127.0.0.1:5050. */
export function schedulerAddress(flag?: string): Address {
  return parseAddress(flag ?? process.env.LOAM_SCHEDULER ?? SCHEDULER_ADDRESS_DEFAULT, 'scheduler address')
}

/** Registration retries back off from the first to the last of these. */
const REGISTER_BACKOFF_MIN_MS = 200
const REGISTER_BACKOFF_MAX_MS = 10_000
/** A task's end is reported at once, but heartbeats never come closer together than this. */
const HEARTBEAT_GAP_MIN_MS = 100
/** How long a call to the scheduler may take. */
const SCHEDULER_CALL_TIMEOUT_MS = 10_000
/** How long stop() waits for a call to the scheduler in flight. */
const STOP_WAIT_MS = 1_000

export interface AgentOptions {
  scheduler: Address
  agentId: string
  /** The datanode on this machine ('' if none): where the scheduler finds data-local slots. */
  nodeId: string
  rack: string
  /** Address to listen on. */
  host: string
  /** Address the scheduler and clients reach this agent at (default: host). */
  advertise?: string
  /** 0 picks a free port. */
  port: number
  cpus: number
  memMib: number
  diskMib: number
  workDir: string
  /** Heartbeat interval; default: what the scheduler's RegisterAgentResponse says. */
  heartbeatMs?: number
  /** Set in every task's environment before the task's own env (LOAM_NAMENODE, ...). */
  taskEnv?: Record<string, string>
  /** Where its RPC metrics go (the /metrics of the process it runs in). */
  registry?: Registry
  log: Logger
}

export interface AgentHandle {
  agentId: string
  /** Where AgentService (ReadLog) is served. */
  rpc: Address
  workDir: string
  /** For /status: registered or not, and every task it holds with its state. */
  status(): unknown
  /** Stops heartbeating and serving, and kills every running task. */
  stop(): Promise<void>
}

/** Checks an agent's options; throws a one-line invalid-argument error. */
export function checkAgentOptions(opts: AgentOptions): void {
  checkId(opts.agentId, 'agent id')
  if (opts.nodeId !== '') checkId(opts.nodeId, 'node id')
  if (!opts.rack.startsWith('/')) throw new LoamError('invalid-argument', `rack '${opts.rack}' must start with '/', such as /r1`)
  checkId(opts.rack, 'rack')
  if (!Number.isFinite(opts.cpus) || opts.cpus <= 0 || opts.cpus * MILLICPUS_PER_CPU > AGENT_MILLICPUS_MAX) {
    throw new LoamError('invalid-argument', `cpus ${opts.cpus} must be more than 0 and at most ${AGENT_MILLICPUS_MAX / MILLICPUS_PER_CPU}`)
  }
  if (!Number.isInteger(opts.memMib) || opts.memMib <= 0 || opts.memMib > AGENT_MEM_MIB_MAX) {
    throw new LoamError('invalid-argument', `memory ${opts.memMib} MiB must be a whole number of MiB, more than 0 and at most ${AGENT_MEM_MIB_MAX}`)
  }
  if (!Number.isInteger(opts.diskMib) || opts.diskMib < 0 || opts.diskMib > AGENT_DISK_MIB_MAX) {
    throw new LoamError('invalid-argument', `disk ${opts.diskMib} MiB must be a whole number of MiB from 0 to ${AGENT_DISK_MIB_MAX}`)
  }
  if (opts.heartbeatMs !== undefined && (!Number.isInteger(opts.heartbeatMs) || opts.heartbeatMs <= 0)) {
    throw new LoamError('invalid-argument', `heartbeat interval ${opts.heartbeatMs} ms must be more than 0`)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new LoamError('invalid-argument', `port ${opts.port} is not a port number (0 picks a free one)`)
  for (const [what, host] of [['host', opts.host], ['advertise address', opts.advertise ?? opts.host]] as const) {
    if (!host || /\s/.test(host)) throw new LoamError('invalid-argument', `${what} '${host}' is not a host name or address`)
  }
}

export async function startAgent(opts: AgentOptions): Promise<AgentHandle> {
  checkAgentOptions(opts)
  const agent = new Agent(opts)
  return agent.start()
}

class Agent {
  private runner!: TaskRunner
  private readonly scheduler: RpcClient<SchedulerServiceSpec>
  private server: RpcServer<AgentServiceSpec> | undefined
  private rpc!: Address
  private readonly workDir: string
  private registered = false
  private stopped = false
  private heartbeatMs: number
  /** Resolves the loop's current wait early (a task ended, or the agent stops). */
  private wake: (() => void) | undefined
  /** A task ended while no wait was running: the next wait is short. */
  private changed = false
  private loopDone: Promise<void> = Promise.resolve()

  constructor(private readonly opts: AgentOptions) {
    this.workDir = path.resolve(opts.workDir)
    this.heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_DEFAULT_MS
    this.scheduler = new RpcClient(opts.scheduler, SchedulerService, { peerName: 'scheduler', timeoutMs: SCHEDULER_CALL_TIMEOUT_MS })
  }

  async start(): Promise<AgentHandle> {
    const env: NodeJS.ProcessEnv = { ...process.env, LOAM_SCHEDULER: formatAddress(this.opts.scheduler), ...this.opts.taskEnv }
    if (this.opts.nodeId) env.LOAM_NODE_ID = this.opts.nodeId
    // Leftovers of a previous incarnation are killed before anything new can start.
    this.runner = await TaskRunner.open({ workDir: this.workDir, baseEnv: env, log: this.opts.log, onEnded: () => this.poke() })
    this.server = new RpcServer(AgentService, this.handlers(), this.opts.log, this.opts.registry && { registry: this.opts.registry, service: 'agent' })
    try {
      this.rpc = await this.server.listen(this.opts.host, this.opts.port)
    } catch (err) {
      throw new LoamError('unavailable', `the agent cannot listen on ${formatAddress({ host: this.opts.host, port: this.opts.port })}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    this.loopDone = this.loop()
    this.opts.log.info({ agentId: this.opts.agentId, rpc: this.rpc, scheduler: formatAddress(this.opts.scheduler), workDir: this.workDir }, 'agent serving')
    return { agentId: this.opts.agentId, rpc: this.rpc, workDir: this.workDir, status: () => this.status(), stop: () => this.stop() }
  }

  private status(): unknown {
    return { role: 'agent', agentId: this.opts.agentId, nodeId: this.opts.nodeId, rack: this.opts.rack, scheduler: formatAddress(this.opts.scheduler), registered: this.registered, cpus: this.opts.cpus, memMib: this.opts.memMib, tasks: this.runner.states() }
  }

  private async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.wake?.()
    this.scheduler.close()
    // A call in flight ends with the closed connection; one still connecting is not waited for.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.loopDone, new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS)))])
    clearTimeout(timer)
    await this.server?.close()
    await this.runner.stopAll()
  }

  /** Register (retrying with backoff while the scheduler is away), then heartbeat. */
  private async loop(): Promise<void> {
    let backoffMs = REGISTER_BACKOFF_MIN_MS
    while (!this.stopped) {
      try {
        if (!this.registered) await this.register()
        const res = await this.heartbeat()
        backoffMs = REGISTER_BACKOFF_MIN_MS
        if (res.reregister) {
          this.registered = false
          this.opts.log.info({ scheduler: formatAddress(this.opts.scheduler) }, 'the scheduler does not know this agent; registering again')
          await this.register()
        }
        await this.idle(this.heartbeatMs)
      } catch (err) {
        if (this.stopped) return
        this.registered = false
        this.opts.log.warn({ scheduler: formatAddress(this.opts.scheduler), err: (err as Error).message, retryInMs: backoffMs }, 'cannot reach the scheduler; retrying')
        await this.idle(backoffMs, false)
        backoffMs = Math.min(backoffMs * 2, REGISTER_BACKOFF_MAX_MS)
      }
    }
  }

  private async register(): Promise<void> {
    const tasks = this.runner.states()
    const res = await this.scheduler.call('RegisterAgent', {
      agentId: this.opts.agentId,
      nodeId: this.opts.nodeId,
      rack: this.opts.rack,
      host: this.opts.advertise ?? this.opts.host,
      rpcPort: this.rpc.port,
      cpus: this.opts.cpus,
      memMib: this.opts.memMib,
      diskMib: this.opts.diskMib,
      tasks,
    })
    this.heartbeatMs = this.opts.heartbeatMs ?? (res.heartbeatIntervalMs || HEARTBEAT_DEFAULT_MS)
    this.registered = true
    this.opts.log.info({ scheduler: formatAddress(this.opts.scheduler), tasks: tasks.length, heartbeatMs: this.heartbeatMs }, 'registered with the scheduler')
  }

  /**
   * Reports every task's state and carries out the answer: forgets, then launches, then kills,
   * so that a kill of a task launched in the same answer (stopped as soon as it was placed) finds it.
   */
  private async heartbeat(): Promise<AgentHeartbeatResponse> {
    this.changed = false
    const res = await this.scheduler.call('AgentHeartbeat', { agentId: this.opts.agentId, tasks: this.runner.states() })
    for (const id of res.forget) this.runner.forget(id)
    for (const l of res.launch) {
      if (this.stopped) break
      await this.runner.launch(l)
    }
    for (const id of res.kill) this.runner.kill(id)
    return res
  }

  /** Waits ms; a task's end (when interruptible) shortens the wait to the minimum gap between heartbeats. */
  private idle(ms: number, interruptible = true): Promise<void> {
    if (this.stopped) return Promise.resolve()
    const startedMs = Date.now()
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const done = (): void => {
        clearTimeout(timer)
        this.wake = undefined
        resolve()
      }
      timer = setTimeout(done, interruptible && this.changed ? HEARTBEAT_GAP_MIN_MS : ms)
      this.wake = () => {
        if (this.stopped) return done()
        if (!interruptible) return
        clearTimeout(timer)
        timer = setTimeout(done, Math.max(0, startedMs + HEARTBEAT_GAP_MIN_MS - Date.now()))
      }
    })
  }

  /** A task ended: report it soon. */
  private poke(): void {
    this.changed = true
    this.wake?.()
  }

  private handlers(): Handlers<AgentServiceSpec> {
    return {
      ReadLog: (req) => this.runner.readLog(req.taskId, req.stream, req.offsetBytes, req.maxBytes),
    }
  }
}
