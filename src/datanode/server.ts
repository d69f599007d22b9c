// The datanode process: serves block reads and pipelined writes, reports its
// replicas to the namenode and carries out the namenode's commands.
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Counter, Gauge, Registry } from 'prom-client'
import { formatAddress, type Address } from '../common/address.js'
import { initChecksums } from '../common/checksum.js'
import { startStatusServer } from '../common/http.js'
import type { Logger } from '../common/log.js'
import { HEARTBEAT_DEFAULT_MS } from '../limits.js'
import { BlockOp, verifyBlockToken, type BlockKey } from '../rpc/block-token.js'
import { RpcClient } from '../rpc/client.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { CommandAction, FrameKind, type BlockRef, type DatanodeCommand, type DatanodeInfo } from '../rpc/messages.js'
import { codecs } from '../rpc/schema.js'
import { RpcServer, type Handlers } from '../rpc/server.js'
import { DatanodeService, NamenodeService, type DatanodeServiceSpec, type NamenodeServiceSpec } from '../rpc/service.js'
import { ReplicaStore } from './replica-store.js'
import { BlockScanner, SCAN_PERIOD_DEFAULT_MS } from './scanner.js'
import { transferReplica } from './transfer.js'
import { runWritePipeline } from './write-pipeline.js'
import { mkdirp } from '../common/mkdirp.js'

export interface DatanodeOptions {
  namenode: Address
  dataDirs: string[]
  host: string
  /** The address others reach this node at; defaults to host. */
  advertise?: string
  port: number
  httpPort: number
  rack: string
  id?: string
  capacityBytes?: number
  blockReportIntervalMs?: number
  /** Every replica is verified by the background scanner once per this period. */
  scanPeriodMs?: number
  log: Logger
}

export interface DatanodeHandle {
  id: string
  rpc: Address
  http: Address
  /** Its /metrics: a process that serves more (`loam node`'s agent) registers there too. */
  registry: Registry
  stop(): Promise<void>
}

const BLOCK_REPORT_INTERVAL_DEFAULT_MS = 10 * 60_000
const REGISTER_BACKOFF_MAX_MS = 10_000
/** A copy for re-replication that makes no progress for this long is abandoned; the namenode reschedules it. */
const REPLICATION_TIMEOUT_MS = 60_000

export class Datanode {
  private info!: DatanodeInfo
  private registered = false
  private stopped = false
  private heartbeatMs = HEARTBEAT_DEFAULT_MS
  private timer: NodeJS.Timeout | undefined
  private lastFullReportMs = 0
  activeTransfers = 0
  scanner: BlockScanner | undefined
  /**
   * Replicas found damaged here (by id, at that generation): left out of full
   * block reports and reported bad again after each one, so a namenode that
   * restarted (and forgot) learns of them again.
   */
  private readonly badReplicas = new Map<number, BlockRef>()
  /** Copies that failed, told to the namenode with the next heartbeat so it plans them again at once. */
  private failedCopies: BlockRef[] = []
  readonly metrics = { bytesWritten: 0, bytesRead: 0, checksumFailures: 0 }
  /** The namenode's block keys, as its last registration or heartbeat reply gave them: what tokens are checked against. */
  private blockKeys = new Map<number, BlockKey>()

  private constructor(
    readonly store: ReplicaStore,
    readonly namenode: RpcClient<NamenodeServiceSpec>,
    private readonly opts: DatanodeOptions,
  ) {}

  static async start(opts: DatanodeOptions): Promise<DatanodeHandle> {
    await initChecksums()
    const dirs = opts.dataDirs.map((d) => path.resolve(d))
    for (const d of dirs) {
      try {
        await mkdirp(d)
      } catch (err) {
        throw new LoamError('io', `cannot use ${d} as a datanode data directory: ${(err as Error).message}`)
      }
    }
    const store = await ReplicaStore.open(dirs, { capacityBytes: opts.capacityBytes })
    const id = opts.id ?? (await persistentId(dirs[0]!))
    const namenode = new RpcClient(opts.namenode, NamenodeService, { peerName: 'namenode', timeoutMs: 10_000 })
    const dn = new Datanode(store, namenode, opts)
    const scanner = new BlockScanner(store, {
      periodMs: opts.scanPeriodMs ?? SCAN_PERIOD_DEFAULT_MS,
      onCorrupt: (replica) => dn.reportOwnCorruptReplica(replica),
      log: opts.log,
    })
    dn.scanner = scanner
    const registry = new Registry()
    const rpc = new RpcServer(DatanodeService, dn.handlers(), opts.log, { registry, service: 'datanode' }, undefined, false)
    const rpcAddress = await rpc.listen(opts.host, opts.port)
    const http = await startStatusServer(opts.host, opts.httpPort, () => dn.statusJson(), { registry })
    dn.registerMetrics(registry)
    dn.info = { id, host: opts.advertise ?? opts.host, rpcPort: rpcAddress.port, httpPort: http.address.port, rack: opts.rack }
    void dn.loop()
    scanner.start()
    opts.log.info({ id, rpc: rpcAddress, http: http.address, replicas: store.list().length }, 'datanode serving')
    return {
      id,
      rpc: rpcAddress,
      http: http.address,
      registry,
      stop: async () => {
        dn.stopped = true
        clearTimeout(dn.timer)
        await scanner.stop()
        namenode.close()
        await rpc.close()
        await http.close()
        await store.close()
      },
    }
  }

  get id(): string {
    return this.info.id
  }

  /** Register (retrying with backoff while the namenode is away), then heartbeat. */
  private async loop(): Promise<void> {
    let backoffMs = 200
    while (!this.stopped) {
      try {
        if (!this.registered) {
          await this.register()
          backoffMs = 200
        }
        await this.heartbeat()
        const interval = this.opts.blockReportIntervalMs ?? BLOCK_REPORT_INTERVAL_DEFAULT_MS
        if (Date.now() - this.lastFullReportMs > interval) await this.fullBlockReport()
        await this.sleep(this.heartbeatMs)
      } catch (err) {
        if (this.stopped) return
        this.registered = false
        this.opts.log.warn({ namenode: formatAddress(this.opts.namenode), err: (err as Error).message, retryInMs: backoffMs }, 'cannot reach the namenode; retrying')
        await this.sleep(backoffMs)
        backoffMs = Math.min(backoffMs * 2, REGISTER_BACKOFF_MAX_MS)
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.timer = setTimeout(resolve, ms)
    })
  }

  private async register(): Promise<void> {
    await this.store.refreshUsage()
    const res = await this.namenode.call('RegisterDatanode', { node: this.info, ...this.store.usage() })
    await this.checkClusterId(res.clusterId)
    this.heartbeatMs = res.heartbeatIntervalMs || HEARTBEAT_DEFAULT_MS
    this.takeBlockKeys(res.blockKeys)
    this.registered = true
    this.opts.log.info({ namenode: formatAddress(this.opts.namenode) }, 'registered with the namenode')
    await this.fullBlockReport()
  }

  /** A datanode serves one cluster for life: never report (and so lose) replicas to another namespace. */
  private async checkClusterId(clusterId: string): Promise<void> {
    const file = path.join(path.resolve(this.opts.dataDirs[0]!), 'cluster-id')
    const known = await readFile(file, 'utf8').catch(() => '')
    if (known && known !== clusterId) {
      this.opts.log.fatal({ known, namenode: clusterId }, 'this datanode belongs to another cluster; refusing to join')
      process.exit(78)
    }
    if (!known) await writeFile(file, clusterId, { mode: 0o600 })
  }

  private async fullBlockReport(): Promise<void> {
    const all = this.store.list()
    const ref = (r: { id: number; genStamp: number; lengthBytes: number }): BlockRef => ({ id: r.id, genStamp: r.genStamp, lengthBytes: r.lengthBytes })
    for (const [id, bad] of this.badReplicas) if (this.store.get(id)?.genStamp !== bad.genStamp) this.badReplicas.delete(id)
    const replicas = all.filter((r) => r.state === 'finalized' && !this.badReplicas.has(r.id)).map(ref)
    const beingWritten = all.filter((r) => r.state === 'rbw').map(ref)
    await this.namenode.call('BlockReport', { nodeId: this.info.id, replicas, full: true, beingWritten })
    if (this.badReplicas.size > 0) {
      await this.namenode.call('ReportBadBlocks', { replicas: [...this.badReplicas.values()].map((block) => ({ block, nodeId: this.info.id })), path: '' })
    }
    this.lastFullReportMs = Date.now()
  }

  private async heartbeat(): Promise<void> {
    await this.store.refreshUsage()
    const failedCopies = this.failedCopies.splice(0)
    const res = await this.namenode.call('Heartbeat', { nodeId: this.info.id, ...this.store.usage(), activeTransfers: this.activeTransfers, failedCopies }).catch((err: unknown) => {
      this.failedCopies.push(...failedCopies)
      throw err
    })
    if (res.reregister) {
      this.registered = false
      return
    }
    this.takeBlockKeys(res.blockKeys)
    for (const cmd of res.commands) await this.execute(cmd)
  }

  private async execute(cmd: DatanodeCommand): Promise<void> {
    if (cmd.action === CommandAction.DELETE) {
      for (const b of cmd.blocks) {
        const local = this.store.get(b.id)
        // Never delete a replica newer than the one the namenode meant.
        if (local && local.genStamp <= b.genStamp) await this.store.delete(b.id)
      }
    } else if (cmd.action === CommandAction.REPLICATE) {
      // Copies run beside heartbeats; the namenode bounds how many it hands one node.
      cmd.blocks.forEach((b, i) => void this.replicate(b, cmd.targets, cmd.tokens?.[i]))
    }
  }

  /** The namenode sends every key in use each time: the set replaces the last one. */
  private takeBlockKeys(keys: readonly BlockKey[]): void {
    this.blockKeys = new Map(keys.map((k) => [k.id, k]))
  }

  /** Every block operation needs the namenode's token for that block and operation. */
  private allowBlock(token: Uint8Array | undefined, blockId: number, ops: readonly BlockOp[]): void {
    verifyBlockToken(this.blockKeys, token, blockId, ops, Date.now())
  }

  private async replicate(block: BlockRef, targets: DatanodeInfo[], token: Uint8Array | undefined): Promise<void> {
    this.activeTransfers++
    try {
      await transferReplica(this.store, block, targets, `datanode-${this.info.id}`, REPLICATION_TIMEOUT_MS, token)
      this.opts.log.info({ block: block.id, targets: targets.map((t) => t.id) }, 'replica copied')
    } catch (err) {
      const e = toLoamError(err)
      this.opts.log.warn({ block: block.id, targets: targets.map((t) => t.id), err: e.message }, 'copying a replica failed')
      this.failedCopies.push(block)
      if (e.code === 'corrupt') await this.reportOwnCorruptReplica(block).catch(() => undefined)
    } finally {
      this.activeTransfers--
    }
  }

  /** The scanner found one of our replicas damaged: the namenode replaces it from a good copy, then deletes it. */
  async reportOwnCorruptReplica(replica: BlockRef): Promise<void> {
    this.metrics.checksumFailures++
    this.badReplicas.set(replica.id, { id: replica.id, genStamp: replica.genStamp, lengthBytes: replica.lengthBytes })
    this.opts.log.warn({ block: replica.id, genStamp: replica.genStamp }, 'scanner found a corrupt replica; reporting it')
    await this.namenode.call('ReportBadBlocks', { replicas: [{ block: replica, nodeId: this.info.id }], path: '' })
  }

  /** Tells the namenode a replica is complete; the writer's ack waits for this so a closed file is readable at once. */
  async blockReceived(block: BlockRef): Promise<void> {
    await this.namenode.call('BlockReport', { nodeId: this.info.id, replicas: [block], full: false, beingWritten: [] })
  }

  private handlers(): Handlers<DatanodeServiceSpec> {
    return {
      WriteBlock: async (req, ctx) => {
        if (!req.block) throw new LoamError('invalid-argument', 'WriteBlock names no block')
        this.allowBlock(req.token, req.block.id, [BlockOp.WRITE, BlockOp.COPY])
        if (req.copyFromBlock) this.allowBlock(req.copyFromToken, req.copyFromBlock, [BlockOp.READ])
        this.activeTransfers++
        try {
          const block = await runWritePipeline(this, req, ctx)
          return { block }
        } finally {
          this.activeTransfers--
        }
      },
      ReadBlock: async (req, ctx) => {
        const stream = ctx.stream!
        if (!req.block) throw new LoamError('invalid-argument', 'ReadBlock names no block')
        this.allowBlock(req.token, req.block.id, [BlockOp.READ])
        this.activeTransfers++
        try {
          let seqno = 0
          let sent = 0
          // Unfinished replicas too (a file being updated, read on the same mount): up to their length now.
          for await (const chunk of this.store.readChunks(req.block.id, req.block.genStamp, req.offsetBytes, req.lengthBytes)) {
            const body = codecs.Packet.encode({ seqno: seqno++, offsetBytes: chunk.offsetBytes, checksums: chunk.checksums, last: false, sync: false })
            if (!stream.send(FrameKind.DATA, body, chunk.data)) await stream.drain()
            if (stream.closed) throw new LoamError('unavailable', 'reader went away')
            sent += chunk.data.length
          }
          this.metrics.bytesRead += sent
          return { lengthBytes: sent }
        } catch (err) {
          throw toLoamError(err)
        } finally {
          this.activeTransfers--
        }
      },
      InspectReplica: async (req) => {
        this.allowBlock(req.token, req.blockId, [BlockOp.WRITE])
        const r = await this.store.inspect(req.blockId)
        return { genStamp: r.genStamp, lengthBytes: r.lengthBytes, verifiedBytes: r.verifiedBytes, finalized: r.state === 'finalized' }
      },
      RecoverReplica: async (req) => {
        if (!req.block) throw new LoamError('invalid-argument', 'RecoverReplica names no block')
        this.allowBlock(req.token, req.block.id, [BlockOp.WRITE])
        const info = await this.store.recover(req.block.id, req.block.genStamp, req.block.lengthBytes)
        await this.blockReceived({ id: info.id, genStamp: info.genStamp, lengthBytes: info.lengthBytes })
        this.opts.log.info({ block: info.id, genStamp: info.genStamp, length: info.lengthBytes }, 'replica recovered')
        return {}
      },
      ShortCircuit: (req) => {
        if (!req.block) throw new LoamError('invalid-argument', 'ShortCircuit names no block')
        // Reading the files straight from disk is reading the block: the same token.
        this.allowBlock(req.token, req.block.id, [BlockOp.READ])
        const r = this.store.get(req.block.id)
        if (!r) throw new LoamError('not-found', `block ${req.block?.id ?? 0}: no replica here`)
        if (r.genStamp !== req.block!.genStamp) throw new LoamError('stale-generation', `block ${r.id}: replica generation ${r.genStamp}, asked for ${req.block!.genStamp}`)
        // An unfinished replica changes under its files' names (and moves when finalized): this node serves it over TCP, between writes.
        if (r.state !== 'finalized') throw new LoamError('unavailable', `block ${r.id}: the replica here is being written; read it over TCP (ReadBlock)`)
        return { dataPath: r.dataPath, metaPath: r.metaPath, lengthBytes: r.lengthBytes, genStamp: r.genStamp }
      },
    }
  }

  private registerMetrics(registry: Registry): void {
    const m = this.metrics
    const counter = (name: string, help: string, value: () => number): void => {
      let last = 0
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const v = value()
          this.inc(v - last)
          last = v
        },
      })
    }
    counter('loam_datanode_bytes_written_total', 'Block bytes written to this datanode', () => m.bytesWritten)
    counter('loam_datanode_bytes_read_total', 'Block bytes served by this datanode', () => m.bytesRead)
    counter('loam_datanode_checksum_failures_total', 'Packets or replicas whose checksums did not match', () => m.checksumFailures)
    const store = this.store
    new Gauge({ name: 'loam_datanode_replicas', help: 'Replicas on this datanode', registers: [registry], collect() { this.set(store.list().length) } })
  }

  private statusJson(): unknown {
    return { role: 'datanode', id: this.info.id, rack: this.info.rack, registered: this.registered, replicas: this.store.list().length, ...this.store.usage(), activeTransfers: this.activeTransfers, scanner: this.scanner?.stats() }
  }
}

async function persistentId(dir: string): Promise<string> {
  const file = path.join(dir, 'node-id')
  const known = (await readFile(file, 'utf8').catch(() => '')).trim()
  if (known) return known
  const id = `dn-${randomBytes(4).toString('hex')}`
  await writeFile(file, id, { mode: 0o600 })
  return id
}
