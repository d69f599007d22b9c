// A stand-in scheduler for agent tests: serves SchedulerService's RegisterAgent and
// AgentHeartbeat on 127.0.0.1, records what agents send, and answers heartbeats
// with the launches, kills and forgets a test queues. It can stop and come back on
// the same port (a scheduler restart); a heartbeat from an agent it has not seen
// register since it started is answered with `reregister`.
import { createLogger } from '../../src/common/log.js'
import { formatAddress, type Address } from '../../src/common/address.js'
import { LoamError } from '../../src/rpc/errors.js'
import type { AgentHeartbeatRequest, LaunchTask, RegisterAgentRequest, TaskState } from '../../src/rpc/messages.js'
import { RpcServer, type Handlers } from '../../src/rpc/server.js'
import { SchedulerService, type SchedulerServiceSpec } from '../../src/rpc/service.js'

interface Pending {
  launch: LaunchTask[]
  kill: string[]
  forget: string[]
}

export class FakeScheduler {
  /** Every registration since the fake was made (across restarts), oldest first. */
  readonly registrations: RegisterAgentRequest[] = []
  /** Every heartbeat since the fake was made, oldest first. */
  readonly heartbeats: AgentHeartbeatRequest[] = []
  /** The latest state each task was reported in, by task id. */
  readonly tasks = new Map<string, TaskState>()
  private readonly known = new Set<string>()
  private readonly pending = new Map<string, Pending>()
  private server: RpcServer<SchedulerServiceSpec> | undefined
  private port = 0

  private constructor(private readonly heartbeatIntervalMs: number) {}

  static async start(opts: { heartbeatIntervalMs?: number } = {}): Promise<FakeScheduler> {
    const fake = new FakeScheduler(opts.heartbeatIntervalMs ?? 200)
    await fake.listen()
    return fake
  }

  get address(): Address {
    return { host: '127.0.0.1', port: this.port }
  }

  get addressText(): string {
    return formatAddress(this.address)
  }

  get running(): boolean {
    return this.server !== undefined
  }

  launch(agentId: string, task: Partial<LaunchTask> & { taskId: string; cmd: string }): void {
    this.queue(agentId).launch.push({ jobId: 'job', env: {}, cpus: 1, memMib: 64, volumes: [], healthCheck: null, user: '', ...task })
  }

  kill(agentId: string, taskId: string): void {
    this.queue(agentId).kill.push(taskId)
  }

  forget(agentId: string, taskId: string): void {
    this.queue(agentId).forget.push(taskId)
  }

  /** Forgets an agent without restarting: its next heartbeat is answered with `reregister`. */
  forgetAgent(agentId: string): void {
    this.known.delete(agentId)
  }

  /** Stops serving (the port is given back); agents lose it until restart(). */
  async stop(): Promise<void> {
    const s = this.server
    this.server = undefined
    this.known.clear()
    await s?.close()
  }

  /** A new server on the same port, knowing no agent. */
  async restart(): Promise<void> {
    await this.stop()
    await this.listen()
  }

  private queue(agentId: string): Pending {
    let p = this.pending.get(agentId)
    if (!p) this.pending.set(agentId, (p = { launch: [], kill: [], forget: [] }))
    return p
  }

  private async listen(): Promise<void> {
    const refuse = (method: string) => (): never => {
      throw new LoamError('unavailable', `the fake scheduler does not serve ${method}`)
    }
    // Every method refused, whatever the service grows to hold; then the two an agent calls.
    const handlers = Object.fromEntries(Object.keys(SchedulerService).map((k) => [k, refuse(k)])) as unknown as Handlers<SchedulerServiceSpec>
    handlers.RegisterAgent = (req) => {
      this.registrations.push(req)
      this.known.add(req.agentId)
      for (const t of req.tasks) this.tasks.set(t.taskId, t)
      return { heartbeatIntervalMs: this.heartbeatIntervalMs }
    }
    handlers.AgentHeartbeat = (req) => {
      this.heartbeats.push(req)
      if (!this.known.has(req.agentId)) return { launch: [], kill: [], forget: [], reregister: true }
      for (const t of req.tasks) this.tasks.set(t.taskId, t)
      const p = this.queue(req.agentId)
      const answer = { launch: p.launch.splice(0), kill: p.kill.splice(0), forget: p.forget.splice(0), reregister: false }
      return answer
    }
    const server = new RpcServer(SchedulerService, handlers, createLogger('fake-scheduler', 'silent'))
    const a = await server.listen('127.0.0.1', this.port)
    this.port = a.port
    this.server = server
  }
}
