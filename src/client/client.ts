// The library every other part uses to talk to a Loam cluster.
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import { formatAddress, parseAddress, type Address } from '../common/address.js'
import { initChecksums } from '../common/checksum.js'
import { checkBlockSize, checkReplication } from '../common/validate.js'
import { LEASE_RENEW_INTERVAL_MIN_MS, LEASE_RENEW_INTERVAL_MS, LIST_PAGE_ENTRIES_MAX, RPC_TIMEOUT_DEFAULT_MS } from '../limits.js'
import { RpcClient } from '../rpc/client.js'
import { LoamError } from '../rpc/errors.js'
import type { BlockRef, DatanodeInfo, DatanodeReportResponse, FileStatus, GetBlockLocationsResponse, LocatedBlock } from '../rpc/messages.js'
import { DatanodeService, NamenodeService, type DatanodeServiceSpec, type NamenodeServiceSpec } from '../rpc/service.js'
import { FileReader } from './file-reader.js'
import { FileWriter } from './file-writer.js'

export interface ClientOptions {
  namenode?: Address
  timeoutMs?: number
  /** This machine's datanode id, when it runs one: first replicas land here, reads prefer it. */
  nodeId?: string
  /** Read replicas on this machine straight from disk (default on). */
  shortCircuit?: boolean
  /** The volume attachment this client writes under (a volume mount). */
  epoch?: number
}

export interface CreateOptions {
  overwrite?: boolean
  replication?: number
  blockSizeBytes?: number
  mode?: number
  createParents?: boolean
}

/** The namenode from --namenode, else LOAM_NAMENODE, else 127.0.0.1:8020. */
export function namenodeAddress(flag?: string): Address {
  return parseAddress(flag ?? process.env.LOAM_NAMENODE ?? '127.0.0.1:8020', 'namenode address')
}

export class LoamClient {
  readonly nn: RpcClient<NamenodeServiceSpec>
  readonly clientName = `loam-${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  readonly timeoutMs: number
  readonly nodeId: string
  readonly shortCircuit: boolean
  private readonly datanodes = new Map<string, RpcClient<DatanodeServiceSpec>>()
  /** One lease covers every file this client writes: renewed while any is open (as in HDFS). */
  private openWriters = 0
  private renewTimer: NodeJS.Timeout | undefined
  private renewIntervalMs = Infinity

  constructor(opts: ClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? RPC_TIMEOUT_DEFAULT_MS
    this.nn = new RpcClient(opts.namenode ?? namenodeAddress(), NamenodeService, { peerName: 'namenode', timeoutMs: this.timeoutMs, epoch: opts.epoch })
    this.nodeId = opts.nodeId ?? process.env.LOAM_NODE_ID ?? ''
    this.shortCircuit = opts.shortCircuit ?? process.env.LOAM_SHORT_CIRCUIT !== '0'
  }

  get namenode(): string {
    return formatAddress(this.nn.address)
  }

  /** leaseLimitMs: the namenode's, so renewals come well within it however short it is set. */
  writerOpened(leaseLimitMs: number): void {
    const intervalMs = Math.max(LEASE_RENEW_INTERVAL_MIN_MS, Math.min(LEASE_RENEW_INTERVAL_MS, Math.floor((leaseLimitMs || Infinity) / 3)))
    if (this.openWriters++ > 0 && intervalMs >= this.renewIntervalMs) return
    clearInterval(this.renewTimer)
    this.renewIntervalMs = intervalMs
    this.renewTimer = setInterval(() => void this.renewLease().catch(() => undefined), intervalMs)
    this.renewTimer.unref()
  }

  writerClosed(): void {
    if (--this.openWriters > 0) return
    clearInterval(this.renewTimer)
    this.renewTimer = undefined
    this.renewIntervalMs = Infinity
  }

  close(): void {
    clearInterval(this.renewTimer)
    this.nn.close()
    for (const c of this.datanodes.values()) c.close()
    this.datanodes.clear()
  }

  /** A pooled connection to a datanode, for small calls. */
  datanode(dn: DatanodeInfo): RpcClient<DatanodeServiceSpec> {
    const key = `${dn.host}:${dn.rpcPort}`
    let c = this.datanodes.get(key)
    if (!c) {
      c = new RpcClient({ host: dn.host, port: dn.rpcPort }, DatanodeService, { peerName: `datanode ${dn.id}`, timeoutMs: this.timeoutMs })
      this.datanodes.set(key, c)
    }
    return c
  }

  async stat(path: string): Promise<FileStatus> {
    return must((await this.nn.call('GetFileInfo', { path })).status)
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path)
      return true
    } catch (err) {
      if (err instanceof LoamError && err.code === 'not-found') return false
      throw err
    }
  }

  async mkdirs(path: string, opts: { parents?: boolean; mode?: number } = {}): Promise<FileStatus> {
    return must((await this.nn.call('Mkdirs', { path, mode: opts.mode ?? 0o755, parents: opts.parents ?? false })).status)
  }

  /** Every entry of a directory (or the file itself), a page at a time. */
  async *list(path: string): AsyncGenerator<FileStatus> {
    let startAfter = ''
    for (;;) {
      const page = await this.nn.call('ListStatus', { path, startAfter, limit: LIST_PAGE_ENTRIES_MAX })
      yield* page.entries
      if (!page.hasMore || page.entries.length === 0) return
      startAfter = page.entries[page.entries.length - 1]!.name
    }
  }

  async rename(src: string, dst: string, overwrite = true): Promise<void> {
    await this.nn.call('Rename', { src, dst, overwrite })
  }

  async delete(path: string, recursive = false): Promise<void> {
    await this.nn.call('Delete', { path, recursive })
  }

  async setReplication(path: string, replication: number): Promise<FileStatus> {
    return must((await this.nn.call('SetReplication', { path, replication })).status)
  }

  async chmod(path: string, mode: number): Promise<FileStatus> {
    return must((await this.nn.call('SetPermission', { path, mode })).status)
  }

  async chown(path: string, owner: string, group: string): Promise<FileStatus> {
    return must((await this.nn.call('SetOwner', { path, owner, group })).status)
  }

  async setTimes(path: string, mtimeMs: number, atimeMs: number): Promise<FileStatus> {
    return must((await this.nn.call('SetTimes', { path, mtimeMs, atimeMs })).status)
  }

  async report(): Promise<DatanodeReportResponse> {
    return this.nn.call('DatanodeReport', {})
  }

  async create(path: string, opts: CreateOptions = {}): Promise<FileWriter> {
    // On the wire 0 means "the namenode's default": an explicit 0 is a mistake, not a request for the default.
    if (opts.replication !== undefined) checkReplication(opts.replication)
    if (opts.blockSizeBytes !== undefined) checkBlockSize(opts.blockSizeBytes)
    await initChecksums()
    const res = await this.nn.call('Create', {
      path,
      mode: opts.mode ?? 0o644,
      replication: opts.replication ?? 0,
      blockSizeBytes: opts.blockSizeBytes ?? 0,
      overwrite: opts.overwrite ?? false,
      createParents: opts.createParents ?? true,
      clientName: this.clientName,
    })
    return new FileWriter(this, path, must(res.status), res.leaseLimitMs ?? 0)
  }

  async open(path: string): Promise<FileReader> {
    await initChecksums()
    const res = await this.getBlockLocations(path, 0, 0)
    return new FileReader(this, path, must(res.status), res.blocks)
  }

  getBlockLocations(path: string, offsetBytes: number, lengthBytes: number): Promise<GetBlockLocationsResponse> {
    return this.nn.call('GetBlockLocations', { path, offsetBytes, lengthBytes, readerNode: this.nodeId })
  }

  async addBlock(path: string, inodeId: number, previous: BlockRef | null, excludedNodes: string[] = []): Promise<LocatedBlock> {
    return this.nn.call('AddBlock', { path, inodeId, clientName: this.clientName, previous, writerNode: this.nodeId, excludedNodes })
  }

  async recoverPipeline(path: string, inodeId: number, block: BlockRef, excludedNodes: string[]): Promise<LocatedBlock> {
    return this.nn.call('RecoverPipeline', { path, inodeId, clientName: this.clientName, block, excludedNodes, writerNode: this.nodeId })
  }

  async complete(path: string, inodeId: number, last: BlockRef | null): Promise<FileStatus> {
    return must((await this.nn.call('Complete', { path, inodeId, clientName: this.clientName, last })).status)
  }

  async renewLease(): Promise<void> {
    await this.nn.call('RenewLease', { clientName: this.clientName })
  }

  /** path: the file the replica was read for (the namenode checks that the caller may read it). */
  async reportBadReplica(path: string, block: BlockRef, nodeId: string): Promise<void> {
    await this.nn.call('ReportBadBlocks', { replicas: [{ block, nodeId }], path })
  }
}

function must(status: FileStatus | null): FileStatus {
  if (!status) throw new LoamError('protocol', 'the namenode answered without a file status')
  return status
}
