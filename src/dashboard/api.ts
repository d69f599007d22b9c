// What each dashboard page shows, gathered through the client library (this
// namenode's own RPCs) and the scheduler's RPCs. Thin: the summaries are in model.ts.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { LoamClient } from '../client/client.js'
import { blockHealth } from '../client/fsck.js'
import { fileStatusJson, volumeJson } from '../client/json.js'
import { putStream } from '../client/put.js'
import { formatAddress, parseAddress, type Address } from '../common/address.js'
import { JOB_SPEC_BYTES_MAX, LIST_PAGE_ENTRIES_MAX, RPC_TIMEOUT_DEFAULT_MS } from '../limits.js'
import { RpcClient } from '../rpc/client.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { InodeType } from '../rpc/messages.js'
import { AgentService, SchedulerService, type SchedulerServiceSpec } from '../rpc/service.js'
import { parseInstances } from '../scheduler/spec.js'
import { LOG_READ_BYTES_MAX, LOG_STREAMS } from '../scheduler/task-runner.js'
import { mergeNodes, summarizeLocality, type BlockRow, type FilesPage, type JobsPage, type JobStatus, type NamenodeSummary, type NodesPage, type Overview, type SchedulerLink, type SchedulerState, type ServiceStatus, type TaskLog, type VolumesPage } from './model.js'

/** The end of a task's log the page shows, and how far into a long log it reads to find it. */
export const LOG_TAIL_BYTES_MAX = 64 * 1024
const LOG_SCAN_BYTES_MAX = 16 * 1024 * 1024
/** The dashboard's calls to the scheduler: short, so a page does not hang on a scheduler that is away. */
const SCHEDULER_CALL_TIMEOUT_MS = 5_000

export interface DashboardSources {
  /** A client of this namenode (over loopback), as any other client. */
  client: LoamClient
  summary(): NamenodeSummary
  /** Where the scheduler last said it serves (AnnounceScheduler), if it has. */
  scheduler(): Address | undefined
}

export class DashboardApi {
  private schedulerClient: RpcClient<SchedulerServiceSpec> | undefined

  constructor(private readonly src: DashboardSources) {}

  close(): void {
    this.schedulerClient?.close()
  }

  /** The scheduler's client, made again when it announces a new address. */
  private scheduler(): RpcClient<SchedulerServiceSpec> {
    const address = this.src.scheduler()
    if (!address) throw new LoamError('unavailable', 'no scheduler has announced itself to this namenode yet (start one: loam scheduler --namenode H:P)')
    if (!this.schedulerClient || formatAddress(this.schedulerClient.address) !== formatAddress(address)) {
      this.schedulerClient?.close()
      this.schedulerClient = new RpcClient(address, SchedulerService, { peerName: 'scheduler', timeoutMs: SCHEDULER_CALL_TIMEOUT_MS })
    }
    return this.schedulerClient
  }

  private async schedulerJson<T>(call: (c: RpcClient<SchedulerServiceSpec>) => Promise<{ json: string }>): Promise<T> {
    return JSON.parse((await call(this.scheduler())).json) as T
  }

  /** Scheduler data, or why there is none: the filesystem pages do not fail with it. */
  private async optional<T>(fetch: () => Promise<T>): Promise<{ link: SchedulerLink; value: T | null }> {
    const address = this.src.scheduler()
    try {
      const value = await fetch()
      return { link: { address: formatAddress(address!), error: null }, value }
    } catch (err) {
      return { link: { address: address ? formatAddress(address) : null, error: toLoamError(err).message }, value: null }
    }
  }

  async overview(): Promise<Overview> {
    const { link, value } = await this.optional(() => this.schedulerJson<SchedulerState>((c) => c.call('ClusterState', {})))
    return { namenode: this.src.summary(), scheduler: link, cluster: value }
  }

  async nodes(): Promise<NodesPage> {
    const report = await this.src.client.report()
    const { link, value } = await this.optional(() => this.schedulerJson<SchedulerState>((c) => c.call('ClusterState', {})))
    return { nowMs: Date.now(), ...mergeNodes(report.datanodes, value?.agents ?? []), scheduler: link }
  }

  async files(path: string): Promise<FilesPage> {
    const client = this.src.client
    const status = await client.stat(path)
    if (status.type === InodeType.DIRECTORY) {
      const page = await client.nn.call('ListStatus', { path, startAfter: '', limit: LIST_PAGE_ENTRIES_MAX })
      return { path, kind: 'directory', entries: page.entries.map(fileStatusJson), truncated: page.hasMore }
    }
    const located = await client.getBlockLocations(path, 0, 0)
    const blocks: BlockRow[] = located.blocks.map((lb) => {
      const replicas = lb.locations.map((n) => ({ node: n.id, rack: n.rack }))
      const corrupt = lb.corrupt.map((n) => ({ node: n.id, rack: n.rack }))
      return {
        id: lb.block?.id ?? 0,
        genStamp: lb.block?.genStamp ?? 0,
        offsetBytes: lb.offsetBytes,
        lengthBytes: lb.block?.lengthBytes ?? 0,
        health: lb.complete ? blockHealth(replicas.length, corrupt.length, status.replication) : 'BEING_WRITTEN',
        replicas,
        corrupt,
      }
    })
    return { path, kind: 'file', file: fileStatusJson({ ...status, path }), blocks }
  }

  /** Streams a file's bytes; an error before the first byte is a JSON error like any other. */
  async download(path: string, res: ServerResponse): Promise<void> {
    const reader = await this.src.client.open(path)
    const name = path.split('/').filter(Boolean).pop() ?? 'file'
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(reader.status.lengthBytes),
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
    })
    for await (const piece of reader.read()) {
      if (!res.write(piece)) await new Promise((r) => res.once('drain', r))
      if (res.destroyed) return
    }
    res.end()
  }

  /** The request's body becomes the file, as `loam fs put` writes one: never over an existing file. */
  async upload(path: string, req: IncomingMessage): Promise<FilesPage> {
    await putStream(this.src.client, path, req)
    return this.files(path)
  }

  async volumes(): Promise<VolumesPage> {
    const client = this.src.client
    const { volumes } = await client.nn.call('ListVolumes', {})
    // Inspect each for its bytes per node; one gone since the listing is left out.
    const inspected = await Promise.all(volumes.map((v) => client.nn.call('GetVolume', { name: v.volume!.name }).catch(() => undefined)))
    const report = await client.report()
    return { volumes: inspected.filter((v) => v !== undefined).map(volumeJson), liveNodes: report.datanodes.filter((d) => d.state === 'live').length }
  }

  /** Jobs and services, each with its tasks (the scheduler keeps a bounded number of finished jobs). */
  async jobs(): Promise<JobsPage> {
    const { link, value } = await this.optional(async () => {
      const jobIds = await this.schedulerJson<Array<{ id: string }>>((c) => c.call('ListJobs', {}))
      const serviceIds = await this.schedulerJson<Array<{ id: string }>>((c) => c.call('ListServices', {}))
      return {
        jobs: await Promise.all(jobIds.map((j) => this.schedulerJson<JobStatus>((c) => c.call('JobStatus', { id: j.id })))),
        services: await Promise.all(serviceIds.map((s) => this.schedulerJson<ServiceStatus>((c) => c.call('ServiceStatus', { id: s.id })))),
      }
    })
    const { jobs, services } = value ?? { jobs: [], services: [] }
    return { jobs, services, locality: summarizeLocality([...jobs.flatMap((j) => j.tasks), ...services.flatMap((s) => s.tasks)]), scheduler: link }
  }

  deployService(spec: string): Promise<ServiceStatus> {
    if (spec.length > JOB_SPEC_BYTES_MAX) throw new LoamError('invalid-argument', `service spec is over ${JOB_SPEC_BYTES_MAX} bytes`)
    return this.schedulerJson((c) => c.call('DeployService', { json: spec }))
  }

  scaleService(id: string, instances: string): Promise<ServiceStatus> {
    const n = parseInstances(instances)
    return this.schedulerJson((c) => c.call('ScaleService', { id, instances: n }))
  }

  removeService(id: string): Promise<ServiceStatus> {
    return this.schedulerJson((c) => c.call('RemoveService', { id }))
  }

  submitJob(spec: string): Promise<JobStatus> {
    if (spec.length > JOB_SPEC_BYTES_MAX) throw new LoamError('invalid-argument', `job spec is over ${JOB_SPEC_BYTES_MAX} bytes`)
    return this.schedulerJson((c) => c.call('SubmitJob', { json: spec }))
  }

  killJob(id: string): Promise<JobStatus> {
    return this.schedulerJson((c) => c.call('KillJob', { id }))
  }

  /** The end of a task's log (its latest attempt), read from the agent that ran it. */
  async taskLog(task: string, stream: string): Promise<TaskLog> {
    if (!(LOG_STREAMS as readonly string[]).includes(stream)) throw new LoamError('invalid-argument', `log stream '${stream.slice(0, 32)}' is not one of ${LOG_STREAMS.join(', ')}`)
    const where = await this.schedulerJson<{ launch: string; address: string; agent: string; state: string }>((c) => c.call('TaskLocation', { id: task }))
    if (!where.address) throw new LoamError('unavailable', `task ${task} ran on agent ${where.agent}, which is gone: its logs went with it`)
    const agent = new RpcClient(parseAddress(where.address, 'agent address'), AgentService, { peerName: `agent ${where.agent}`, timeoutMs: RPC_TIMEOUT_DEFAULT_MS })
    try {
      let tail = Buffer.alloc(0)
      let offset = 0
      while (offset < LOG_SCAN_BYTES_MAX) {
        const r = await agent.call('ReadLog', { taskId: where.launch, stream, offsetBytes: offset, maxBytes: LOG_READ_BYTES_MAX }).catch((err: unknown) => {
          // Placed but not yet started: the launch reaches its agent with the agent's next heartbeat. No output yet.
          if (where.state === 'RUNNING' && offset === 0 && toLoamError(err).code === 'not-found') return { data: Buffer.alloc(0), ended: false }
          throw err
        })
        offset += r.data.length
        tail = Buffer.concat([tail, r.data]).subarray(-LOG_TAIL_BYTES_MAX)
        if (r.ended || r.data.length === 0) break
      }
      return { task, stream: stream as TaskLog['stream'], text: tail.toString('utf8'), skippedBytes: offset - tail.length }
    } finally {
      agent.close()
    }
  }
}
