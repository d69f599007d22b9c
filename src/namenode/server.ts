// The namenode process: receives RPCs, runs the namespace core, commits, replies.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import { Gauge, Registry } from 'prom-client'
import { parseAddress, type Address } from '../common/address.js'
import { startStatusServer } from '../common/http.js'
import { LOAM_VERSION } from '../common/version.js'
import { LoamClient } from '../client/client.js'
import { DashboardApi } from '../dashboard/api.js'
import type { NamenodeSummary } from '../dashboard/model.js'
import { dashboardToken } from '../dashboard/access.js'
import { dashboardRoutes } from '../dashboard/routes.js'
import type { Logger } from '../common/log.js'
import { BAD_REPLICA_CHECKS_IN_FLIGHT_MAX, BLOCK_KEY_ROTATION_MS, BLOCK_SIZE_DEFAULT_BYTES, BLOCK_TOKEN_LIFETIME_DEFAULT_MS, NAME_BYTES_MAX, DEAD_AFTER_DEFAULT_MS, HEARTBEAT_DEFAULT_MS, LEASE_LIMIT_DEFAULT_MS, LIST_PAGE_ENTRIES_MAX, REPLICATION_DEFAULT, SAFEMODE_THRESHOLD, SNAPSHOT_INODES_MAX, VOLUME_INSPECT_INODES_MAX, VOLUMES_MAX } from '../limits.js'
import { LoamError } from '../rpc/errors.js'
import { InodeType, CommandAction, type BlockRef, type DatanodeCommand, type DatanodeInfo, type DatanodeReportResponse, type FileStatus, type InodeRecord, type LocatedBlock, type VolumeInfo, type VolumeNodeBytes, type VolumeRecord } from '../rpc/messages.js'
import { BlockOp, issueBlockToken, type BlockKey } from '../rpc/block-token.js'
import { BlockKeys, blockKeysFile, decodeBlockKeys, encodeBlockKeys } from './block-keys.js'
import { RpcClient } from '../rpc/client.js'
import { processSecurity } from '../rpc/security.js'
import { RpcServer, type CallContext, type Handlers } from '../rpc/server.js'
import { DatanodeService, NamenodeService, type DatanodeServiceSpec, type NamenodeServiceSpec } from '../rpc/service.js'
import { BlockMap, type BlockInfo } from './blockmap.js'
import { Datanodes, sameHost, stateName, type DatanodeState } from './datanodes.js'
import { COUNT_FIELD, Counters, decodeId, decodeInode, decodeVolume, formatOps, inodeCountChanges, keys, StoreTxn, type InodeCounts } from './inode-store.js'
import { checkClientName, fileStatus, Namespace, ROOT_ID, type Caller, type Tree } from './namespace.js'
import { chooseTargets } from './placement.js'
import { checkChown, checkPath, checkSubtree, checkSuperuser, checkVolumeOwner, EXECUTE, READ, WRITE, type PathCheck, type Principal } from './permissions.js'
import { planReplication } from './replication.js'
import { LevelStore, type CommitOptions, type KvOp } from './store.js'
import { mkdirp } from '../common/mkdirp.js'
import { checkVolumeCount, volumePath } from '../volumes/volume.js'

export interface NamenodeOptions {
  dataDir: string
  host: string
  port: number
  httpPort: number
  heartbeatMs?: number
  deadAfterMs?: number
  replication?: number
  blockSizeBytes?: number
  /** A writer silent this long loses its files to lease recovery. */
  leaseLimitMs?: number
  /** Besides the namenode's own user, the user that passes every permission check. */
  superuser?: string
  /** Members of this group pass every permission check. */
  supergroup?: string
  /** How long a block access token opens its block. */
  blockTokenLifetimeMs?: number
  log: Logger
}

export interface NamenodeHandle {
  rpc: Address
  http: Address
  stop(): Promise<void>
}

/** Deletes handed to one datanode per heartbeat, so a large delete does not make one huge reply. */
const DELETES_PER_HEARTBEAT_MAX = 1000
/** Re-replication is bounded so it never starves client traffic (HDFS's max replication streams). */
const REPLICATION_LIMITS = { streamsPerNode: 2, workPerRound: 256 }
const PENDING_REPLICATION_TIMEOUT_MIN_MS = 60_000
/** How long after its commit a block's pipeline nodes have to report it before it counts as under-replicated. */
const PIPELINE_REPORT_GRACE_MS = 10_000

/** A lease: the client name that holds it and the user it writes as. */
interface Lease {
  holder: string
  user: string
}

function leaseOf(rec: InodeRecord): Lease {
  return { holder: rec.leaseHolder, user: rec.leaseUser }
}

/** User names hold no NUL (USER_NAME checks), so the pair is unambiguous. */
function leaseKey(lease: Lease): string {
  return `${lease.user}\0${lease.holder}`
}

export class Namenode {
  private readonly blockMap = new BlockMap()
  private readonly datanodes = new Datanodes()
  /** When each lease was last renewed, by leaseKey: a client name counts only together with its user. */
  private readonly leases = new Map<string, number>()
  private safemode = false
  private collecting = false
  private collectAgain = false
  private readonly startedMs = Date.now()
  private readonly heartbeatMs: number
  private readonly deadAfterMs: number
  private readonly defaults: { replication: number; blockSizeBytes: number }
  private timers: NodeJS.Timeout[] = []
  /** Copies scheduled and not yet reported: block id -> the copy's source and, per target node, when to give up on it. */
  private readonly pending = new Map<number, { source: string; targets: Map<string, number> }>()
  /** Replicas just told to go: block id -> node -> until when the node is not a copy target for it. */
  private readonly cooling = new Map<number, Map<string, number>>()
  private readonly pendingTimeoutMs: number
  private underReplicated = 0
  /** Files open for writing: inode id -> lease holder. */
  private readonly underConstruction = new Map<number, Lease>()
  private readonly recovering = new Set<number>()
  /** Replicas a client reported corrupt, being verified by their nodes: 'block@node'. */
  private readonly checkingReplicas = new Set<string>()
  private readonly leaseLimitMs: number
  private readonly datanodeClients = new Map<string, RpcClient<DatanodeServiceSpec>>()
  /** Where the scheduler serves, as it last announced (for the dashboard). */
  private schedulerAddress: Address | undefined
  /** Inodes of each type: counted at start, then kept by every commit. */
  private readonly inodes: InodeCounts = { files: 0, directories: 0, symlinks: 0 }
  private readonly superusers: Set<string>
  /** Sign block access tokens; datanodes are handed them (see blockKeysFile). */
  private readonly blockKeys: BlockKeys
  private readonly blockTokenLifetimeMs: number
  private readonly supergroup: string

  private constructor(
    private readonly store: LevelStore,
    private readonly counters: Counters,
    readonly clusterId: string,
    private readonly opts: NamenodeOptions,
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_DEFAULT_MS
    this.deadAfterMs = opts.deadAfterMs ?? DEAD_AFTER_DEFAULT_MS
    this.leaseLimitMs = opts.leaseLimitMs ?? LEASE_LIMIT_DEFAULT_MS
    this.pendingTimeoutMs = Math.max(PENDING_REPLICATION_TIMEOUT_MIN_MS, 2 * this.deadAfterMs)
    this.defaults = { replication: opts.replication ?? REPLICATION_DEFAULT, blockSizeBytes: opts.blockSizeBytes ?? BLOCK_SIZE_DEFAULT_BYTES }
    this.superusers = new Set([namenodeUser(), ...(opts.superuser ? [opts.superuser] : [])])
    this.supergroup = opts.supergroup ?? SUPERGROUP_DEFAULT
    this.blockTokenLifetimeMs = opts.blockTokenLifetimeMs ?? BLOCK_TOKEN_LIFETIME_DEFAULT_MS
    const file = blockKeysFile(opts.dataDir)
    this.blockKeys = new BlockKeys(BLOCK_KEY_ROTATION_MS, this.blockTokenLifetimeMs, existsSync(file) ? decodeBlockKeys(readFileSync(file, 'utf8'), file) : [])
    this.rotateBlockKeys()
  }

  /** New keys when one is due; kept (0600, written whole) so that tokens and datanodes' keys outlive a restart. */
  private rotateBlockKeys(): void {
    if (!this.blockKeys.rotate(Date.now())) return
    const file = blockKeysFile(this.opts.dataDir)
    writeFileSync(`${file}.tmp`, encodeBlockKeys(this.blockKeys.all()), { mode: 0o600 })
    renameSync(`${file}.tmp`, file)
  }

  /** The keys a registered datanode checks tokens against. */
  private blockKeysForDatanodes(): BlockKey[] {
    return this.blockKeys.all().map(({ id, key, expiresMs }) => ({ id, key, expiresMs }))
  }

  static async start(opts: NamenodeOptions): Promise<NamenodeHandle> {
    const dir = path.resolve(opts.dataDir)
    try {
      await mkdirp(dir)
    } catch (err) {
      throw new LoamError('io', `cannot use ${dir} as the namenode data directory: ${(err as Error).message}`)
    }
    const store = await LevelStore.open(path.join(dir, 'meta'), (err) => {
      opts.log.fatal({ err: err.message }, 'namespace store write failed; stopping so nothing unacknowledged is served')
      process.exit(70)
    })
    let clusterIdBuf = store.get(keys.counter('clusterId'))
    if (!store.get(keys.inode(ROOT_ID))) {
      clusterIdBuf = Buffer.from(randomUUID())
      await store.commit([...formatOps(namenodeUser(), opts.supergroup ?? SUPERGROUP_DEFAULT, Date.now()), { type: 'put', key: keys.counter('clusterId'), value: clusterIdBuf }])
      opts.log.info({ dir }, 'formatted a new namespace')
    }
    const nn = new Namenode(store, Counters.load(store), clusterIdBuf?.toString() ?? 'unknown', opts)
    await nn.loadBlocks()
    const registry = new Registry()
    const rpc = new RpcServer(NamenodeService, nn.handlers(), opts.log, { registry, service: 'namenode' })
    const rpcAddress = await rpc.listen(opts.host, opts.port)
    // The dashboard reads the namespace as any client does, through this namenode's RPCs.
    const dashboardClient = new LoamClient({ namenode: rpcAddress })
    const dashboard = new DashboardApi({ client: dashboardClient, summary: () => nn.summary(), scheduler: () => nn.schedulerAddress })
    const http = await startStatusServer(opts.host, opts.httpPort, () => nn.statusJson(), { registry, routes: dashboardRoutes(dashboard, dashboardToken(processSecurity().secret), opts.log) })
    nn.registerMetrics(registry)
    nn.timers.push(setInterval(() => nn.checkDatanodes(), Math.min(1000, nn.heartbeatMs)))
    nn.timers.push(setInterval(() => nn.monitorReplication(), Math.min(1000, nn.heartbeatMs)))
    nn.timers.push(setInterval(() => nn.monitorLeases(), 1000))
    nn.timers.push(setInterval(() => nn.rotateBlockKeys(), 1000))
    void nn.collect()
    opts.log.info({ rpc: rpcAddress, http: http.address, safemode: nn.safemode, blocks: nn.blockMap.blocks.size }, 'namenode serving')
    return {
      rpc: rpcAddress,
      http: http.address,
      stop: async () => {
        for (const t of nn.timers) clearInterval(t)
        for (const c of nn.datanodeClients.values()) c.close()
        dashboard.close()
        dashboardClient.close()
        await rpc.close()
        await http.close()
        await store.close()
      },
    }
  }

  /** Which blocks exist comes from the namespace; where they are comes from block reports. */
  private async loadBlocks(): Promise<void> {
    let after: Buffer | undefined
    for (;;) {
      const page = await this.store.scan(keys.inodePrefix, after, 5000)
      if (page.length === 0) break
      for (const [, v] of page) {
        const rec = decodeInode(v)
        this.inodes[COUNT_FIELD[rec.type]]++
        if (rec.type !== InodeType.FILE) continue
        if (rec.leaseHolder) this.underConstruction.set(rec.id, leaseOf(rec))
        rec.blocks.forEach((b, i) => {
          // A block named by several inodes (a snapshot shares it) is counted, not reset.
          if (this.blockMap.blocks.has(b.id)) this.blockMap.ref(b.id)
          else this.blockMap.add(b, rec.id, rec.replication, !rec.leaseHolder || i < rec.blocks.length - 1)
        })
      }
      after = page[page.length - 1]![0]
    }
    this.safemode = this.blockMap.blocks.size > 0
  }

  private caller(ctx: CallContext): Caller {
    return { user: ctx.user || 'nobody', group: ctx.groups[0] || ctx.user || 'nobody', nowMs: Date.now(), epoch: ctx.epoch, superuser: this.principal(ctx).superuser }
  }

  private principal(ctx: CallContext): Principal {
    const user = ctx.user || 'nobody'
    const groups = ctx.groups.length > 0 ? ctx.groups : [user]
    return { user, groups, superuser: this.superusers.has(user) || groups.includes(this.supergroup) }
  }

  /** Checks what ctx's user needs along path (see permissions.ts); in the same turn as the operation it guards. */
  private allow(ns: Namespace, ctx: CallContext, path: string, check: PathCheck): void {
    checkPath(this.principal(ctx), path, ns.inodesOf(path), check)
  }

  /** ctx: the caller the write path acts for (its volume epoch is checked). */
  private reader(ctx?: CallContext): Namespace {
    return new Namespace(new StoreTxn(this.store, this.counters), ctx && this.caller(ctx))
  }

  /** Runs one namespace operation and commits its writes as one durable batch. */
  private async mutate<T>(fn: (ns: Namespace) => T, ctx?: CallContext, opts?: CommitOptions): Promise<T> {
    if (this.safemode) {
      throw new LoamError('safe-mode', `the namenode is in safe mode: ${this.blockMap.reportedCount()} of ${this.blockMap.blocks.size} blocks reported; it leaves by itself once the datanodes report (see 'loam report')`)
    }
    const txn = new StoreTxn(this.store, this.counters)
    const result = fn(new Namespace(txn, ctx && this.caller(ctx)))
    await this.commit(txn.batch(), opts)
    return result
  }

  /** Every namespace change goes through here, so the inode counts follow it. */
  private commit(ops: KvOp[], opts?: CommitOptions): Promise<void> {
    const delta = inodeCountChanges(ops, (key) => this.store.get(key))
    for (const k of Object.values(COUNT_FIELD)) this.inodes[k] += delta[k]
    return this.store.commit(ops, opts)
  }

  private leaseExpired(lease: Lease): boolean {
    const renewed = this.leases.get(leaseKey(lease)) ?? this.startedMs
    return Date.now() - renewed > this.leaseLimitMs
  }

  /** Renews a lease the namespace has just let its caller act for (the file's recorded holder and user). */
  private renewLease(lease: Lease): void {
    if (lease.holder) this.leases.set(leaseKey(lease), Date.now())
  }

  /** Forgets blocks whose files are gone (after the removal is durable) and queues their replicas for deletion. */
  private invalidate(blocks: BlockRef[]): void {
    for (const b of blocks) {
      const info = this.blockMap.blocks.get(b.id)
      // A block a snapshot still names stays.
      if (!info || !this.blockMap.unref(b.id)) continue
      for (const nodeId of [...info.replicas, ...info.corrupt]) this.queueDelete(nodeId, b)
    }
  }

  private queueDelete(nodeId: string, block: BlockRef): void {
    const node = this.datanodes.nodes.get(nodeId)
    if (!node) return
    node.blocks.delete(block.id)
    node.pendingDeletes.push(block)
  }

  private status(path: string, rec: InodeRecord): FileStatus {
    const parts = path.split('/').filter(Boolean)
    return fileStatus(rec, parts[parts.length - 1] ?? '', path)
  }

  private located(info: BlockInfo | undefined, block: BlockRef, offsetBytes: number, order: (n: DatanodeState) => number): LocatedBlock {
    const nodes = (ids: Iterable<string>): DatanodeState[] => [...ids].map((id) => this.datanodes.nodes.get(id)).filter((n): n is DatanodeState => n !== undefined && n.alive)
    // A block being written is read from its pipeline (datanodes serve unfinished replicas at their generation).
    const holders = info && !info.complete && info.replicas.size === 0 ? info.writers : (info?.replicas ?? [])
    const locations = nodes(holders).sort((a, b) => order(a) - order(b) || Math.random() - 0.5)
    return {
      block,
      offsetBytes,
      locations: locations.map((n) => n.info),
      corrupt: nodes(info?.corrupt ?? []).map((n) => n.info),
      complete: info?.complete ?? true,
      token: this.blockToken(block.id, BlockOp.READ),
    }
  }

  /** A block access token: what the datanodes holding the block ask for before they serve it. */
  /** A writer's tokens for a block: to write it, and to read it back when the caller may read the file. */
  private writerTokens(ctx: CallContext, path: string, blockId: number): { token: Buffer; readToken?: Buffer } {
    const token = this.blockToken(blockId, BlockOp.WRITE)
    try {
      this.allow(this.reader(), ctx, path, { self: READ })
    } catch {
      return { token }
    }
    return { token, readToken: this.blockToken(blockId, BlockOp.READ) }
  }

  private blockToken(blockId: number, op: BlockOp): Buffer {
    const nowMs = Date.now()
    return issueBlockToken(this.blockKeys.signing(nowMs), { blockId, op, expiresMs: nowMs + this.blockTokenLifetimeMs })
  }

  private handlers(): Handlers<NamenodeServiceSpec> {
    return {
      Mkdirs: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { ancestor: WRITE | EXECUTE })
          return ns.mkdirs(req.path, req.mode || 0o755, req.parents, this.caller(ctx))
        })
        return { status: this.status(req.path, rec) }
      },
      Create: async (req, ctx) => {
        const { inode, freed } = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, req.createParents ? { ancestor: WRITE | EXECUTE, self: req.overwrite ? WRITE : undefined } : { parent: WRITE | EXECUTE, self: req.overwrite ? WRITE : undefined })
          return ns.create(req.path, { ...req, mode: req.mode || 0o644 }, this.defaults, this.caller(ctx), (old) => this.leaseExpired(leaseOf(old)))
        })
        this.renewLease(leaseOf(inode))
        this.underConstruction.set(inode.id, leaseOf(inode))
        this.invalidate(freed.blocks)
        return { status: this.status(req.path, inode), leaseLimitMs: this.leaseLimitMs }
      },
      AddBlock: async (req, ctx) => {
        const current = this.reader(ctx).underConstruction(req.path, req.inodeId, req.clientName)
        const targets = this.placeBlock(current, req.writerNode, req.excludedNodes, ctx.remoteAddress)
        const { inode, block } = await this.mutate((ns) => {
          const r = req.randomWrites ? ns.addUpdatingBlock(req.path, req.inodeId, req.clientName) : ns.addBlock(req.path, req.inodeId, req.clientName, req.previous)
          if (!req.randomWrites) this.afterBlockCommit(r.inode, req.previous)
          this.blockMap.add(r.block, r.inode.id, r.inode.replication, false).writers = new Set(targets.map((t) => t.id))
          return r
        }, ctx)
        this.renewLease(leaseOf(inode))
        const offsetBytes = inode.blocks.slice(0, -1).reduce((s, b) => s + b.lengthBytes, 0)
        return { block, offsetBytes, locations: targets, corrupt: [], complete: false, ...this.writerTokens(ctx, req.path, block.id) }
      },
      RecoverPipeline: async (req, ctx) => {
        if (!req.block) throw new LoamError('invalid-argument', 'RecoverPipeline names no block')
        const current = this.reader(ctx).underConstruction(req.path, req.inodeId, req.clientName)
        const targets = this.placeBlock(current, req.writerNode, req.excludedNodes, ctx.remoteAddress)
        const blockId = req.block.id
        const { inode, block, last } = await this.mutate((ns) => {
          const r = ns.bumpBlock(req.path, req.inodeId, req.clientName, blockId)
          const info = this.blockMap.blocks.get(blockId)
          // Replicas of the old generation, finished or not, are stale: never served, deleted.
          for (const nodeId of new Set([...(info?.replicas ?? []), ...(info?.writers ?? [])])) this.queueDelete(nodeId, { id: blockId, genStamp: req.block!.genStamp, lengthBytes: 0 })
          info?.replicas.clear()
          this.blockMap.add(r.block, r.inode.id, r.inode.replication, !r.last).writers = new Set(targets.map((t) => t.id))
          return r
        }, ctx)
        this.renewLease(leaseOf(inode))
        this.opts.log.info({ path: req.path, block: blockId, genStamp: block.genStamp, excluded: req.excludedNodes, targets: targets.map((t) => t.id) }, 'write pipeline recovered')
        const index = inode.blocks.findIndex((b) => b.id === blockId)
        const offsetBytes = inode.blocks.slice(0, index).reduce((s, b) => s + b.lengthBytes, 0)
        return { block, offsetBytes, locations: targets, corrupt: [], complete: !last, ...this.writerTokens(ctx, req.path, block.id) }
      },
      Complete: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          const r = ns.complete(req.path, req.inodeId, req.clientName, req.last, this.caller(ctx))
          this.afterBlockCommit(r, req.last)
          return r
        }, ctx)
        this.underConstruction.delete(rec.id)
        return { status: this.status(req.path, rec) }
      },
      RenewLease: (req, ctx) => {
        // Only a name that can hold a lease is kept (what Create accepts): any other cannot grow the table.
        checkClientName(req.clientName, 'renewing a lease')
        // A caller renews its own user's leases; the superuser (a mount writing for many users) every lease of the client.
        const caller = this.caller(ctx)
        this.renewLease({ holder: req.clientName, user: caller.user })
        if (caller.superuser) for (const lease of this.underConstruction.values()) if (lease.holder === req.clientName) this.renewLease(lease)
        return {}
      },
      GetBlockLocations: (req, ctx) => {
        const ns = this.reader()
        this.allow(ns, ctx, req.path, { self: READ })
        const rec = ns.get(req.path)
        if (rec.type === InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${req.path}: is a directory`)
        const reader = this.datanodes.nodes.get(req.readerNode)
        const order = (n: DatanodeState): number =>
          n.info.id === req.readerNode ? 0 : sameHost(n.info.host, ctx.remoteAddress) ? 1 : reader && n.info.rack === reader.info.rack ? 2 : 3
        const end = req.lengthBytes ? req.offsetBytes + req.lengthBytes : Infinity
        const blocks: LocatedBlock[] = []
        let offset = 0
        for (const b of rec.blocks) {
          const info = this.blockMap.blocks.get(b.id)
          if (offset + b.lengthBytes > req.offsetBytes && offset < end) blocks.push(this.located(info, { ...b, genStamp: info?.genStamp ?? b.genStamp }, offset, order))
          offset += b.lengthBytes
        }
        return { status: this.status(req.path, rec), blocks }
      },
      GetFileInfo: (req, ctx) => {
        const ns = this.reader()
        this.allow(ns, ctx, req.path, {})
        return { status: this.status(req.path, ns.get(req.path)) }
      },
      ListStatus: async (req, ctx) => {
        const ns = this.reader()
        const dir = ns.get(req.path)
        this.allow(ns, ctx, req.path, dir.type === InodeType.DIRECTORY ? { self: READ | EXECUTE } : {})
        if (dir.type !== InodeType.DIRECTORY) return { entries: [this.status(req.path, dir)], hasMore: false }
        const limit = Math.min(req.limit || LIST_PAGE_ENTRIES_MAX, LIST_PAGE_ENTRIES_MAX)
        const page = await this.store.scan(keys.entryPrefix(dir.id), req.startAfter ? keys.entry(dir.id, req.startAfter) : undefined, limit + 1)
        const entries: FileStatus[] = []
        for (const [k, v] of page.slice(0, limit)) {
          const child = this.store.get(keys.inode(decodeId(v)))
          if (!child) continue
          const name = keys.entryName(k)
          entries.push(fileStatus(decodeInode(child), name, req.path.replace(/\/+$/, '') + '/' + name))
        }
        return { entries, hasMore: page.length > limit }
      },
      Rename: async (req, ctx) => {
        const freed = await this.mutate((ns) => {
          this.allow(ns, ctx, req.src, { parent: WRITE | EXECUTE, sticky: true })
          this.allow(ns, ctx, req.dst, { parent: WRITE | EXECUTE, sticky: true })
          return ns.rename(req.src, req.dst, req.overwrite, this.caller(ctx))
        })
        this.invalidate(freed.blocks)
        return {}
      },
      Delete: async (req, ctx) => {
        const principal = this.principal(ctx)
        const subtree = req.recursive && !principal.superuser ? await this.subtreeOf(req.path) : undefined
        const freed = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { parent: WRITE | EXECUTE, sticky: true })
          if (subtree) checkSubtree(principal, ns.subtreeDirs(req.path, subtree.rootId, subtree.tree))
          return ns.delete(req.path, req.recursive, this.caller(ctx))
        })
        this.invalidate(freed.blocks)
        void this.collect()
        return {}
      },
      SetReplication: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { self: WRITE })
          return ns.setReplication(req.path, req.replication, this.caller(ctx))
        })
        for (const b of rec.blocks) {
          const info = this.blockMap.blocks.get(b.id)
          if (info) info.replication = rec.replication
        }
        return { status: this.status(req.path, rec) }
      },
      SetPermission: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { owner: true })
          return ns.setPermission(req.path, req.mode, this.caller(ctx))
        })
        return { status: this.status(req.path, rec) }
      },
      SetOwner: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, {})
          const current = ns.get(req.path)
          checkChown(this.principal(ctx), req.path, { ...current, isDir: current.type === InodeType.DIRECTORY }, req.owner, req.group)
          return ns.setOwner(req.path, req.owner, req.group, this.caller(ctx))
        })
        return { status: this.status(req.path, rec) }
      },
      SetTimes: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { self: WRITE })
          return ns.setTimes(req.path, req.mtimeMs, req.atimeMs, this.caller(ctx))
        })
        return { status: this.status(req.path, rec) }
      },
      OpenForWrite: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { self: WRITE })
          return ns.openForWrite(req.path, req.clientName)
        }, ctx)
        this.renewLease(leaseOf(rec))
        this.underConstruction.set(rec.id, leaseOf(rec))
        return { status: this.status(req.path, rec), leaseLimitMs: this.leaseLimitMs }
      },
      UpdateBlock: async (req, ctx) => {
        const current = this.reader(ctx).underConstruction(req.path, req.inodeId, req.clientName)
        const info = this.blockMap.blocks.get(req.blockId)
        // A block already being updated continues on its pipeline; otherwise on its healthy replicas.
        const pool = current.updatingBlocks.includes(req.blockId) ? info?.writers : info?.replicas
        const targets = [...(pool ?? [])]
          .filter((id) => !req.excludedNodes.includes(id))
          .map((id) => this.datanodes.nodes.get(id))
          .filter((n): n is DatanodeState => n !== undefined && n.alive)
          .map((n) => n.info)
        if (targets.length === 0) throw new LoamError('unavailable', `${req.path}: no live datanode holds block ${req.blockId}; wait for a datanode to come back (see 'loam fsck ${req.path}')`)
        // A block a snapshot shares is not changed in place: the file gets a copy (made by each target datanode) to change.
        if ((info?.refs ?? 1) > 1) {
          const c = await this.mutate((ns) => {
            const cow = ns.copyOnWrite(req.path, req.inodeId, req.clientName, req.blockId)
            this.blockMap.unref(req.blockId)
            this.blockMap.add(cow.block, cow.inode.id, cow.inode.replication, false).writers = new Set(targets.map((t) => t.id))
            return cow
          }, ctx)
          this.renewLease(leaseOf(c.inode))
          const offsetBytes = c.inode.blocks.slice(0, c.index).reduce((sum, b) => sum + b.lengthBytes, 0)
          return {
            block: c.block,
            offsetBytes,
            locations: targets,
            corrupt: [],
            complete: false,
            copiedFrom: { ...c.old, genStamp: info?.genStamp ?? c.old.genStamp },
            ...this.writerTokens(ctx, req.path, c.block.id),
            copiedFromToken: this.blockToken(c.old.id, BlockOp.READ),
          }
        }
        const r = await this.mutate((ns) => {
          const u = ns.updateBlock(req.path, req.inodeId, req.clientName, req.blockId)
          // Replicas that are not in the new pipeline keep the old generation: stale, deleted.
          for (const nodeId of new Set([...(info?.replicas ?? []), ...(info?.writers ?? [])])) {
            if (!targets.some((t) => t.id === nodeId)) this.queueDelete(nodeId, { id: req.blockId, genStamp: u.block.genStamp - 1, lengthBytes: 0 })
          }
          const b = this.blockMap.add(u.block, u.inode.id, u.inode.replication, false)
          b.replicas.clear()
          b.writers = new Set(targets.map((t) => t.id))
          return u
        }, ctx)
        this.renewLease(leaseOf(r.inode))
        const offsetBytes = r.inode.blocks.slice(0, r.index).reduce((sum, b) => sum + b.lengthBytes, 0)
        return { block: r.block, offsetBytes, locations: targets, corrupt: [], complete: false, ...this.writerTokens(ctx, req.path, r.block.id) }
      },
      CommitBlocks: async (req, ctx) => {
        const r = await this.mutate((ns) => {
          const c = ns.commitBlocks(req, this.caller(ctx))
          for (const id of c.finished) {
            const b = c.inode.blocks.find((x) => x.id === id)
            if (b) this.blockMap.add(b, c.inode.id, c.inode.replication, true).committedMs = Date.now()
          }
          for (const ref of req.blocks) {
            const info = this.blockMap.blocks.get(ref.id)
            if (info && !info.complete) Object.assign(info, { genStamp: ref.genStamp, lengthBytes: ref.lengthBytes })
          }
          return c
        }, ctx, { background: req.background })
        this.renewLease(leaseOf(r.inode))
        if (req.close) this.underConstruction.delete(r.inode.id)
        this.invalidate(r.freed.blocks)
        return { status: this.status(req.path, r.inode), leaseLimitMs: this.leaseLimitMs }
      },
      Link: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.src, {})
          this.allow(ns, ctx, req.dst, { parent: WRITE | EXECUTE })
          return ns.link(req.src, req.dst, this.caller(ctx))
        })
        return { status: this.status(req.dst, rec) }
      },
      Symlink: async (req, ctx) => {
        const rec = await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { parent: WRITE | EXECUTE })
          return ns.symlink(req.target, req.path, this.caller(ctx))
        })
        return { status: this.status(req.path, rec) }
      },
      SetXattr: async (req, ctx) => {
        await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { self: WRITE })
          ns.setXattr(req.path, req.name, req.value, req, this.caller(ctx))
        })
        return {}
      },
      RemoveXattr: async (req, ctx) => {
        await this.mutate((ns) => {
          this.allow(ns, ctx, req.path, { self: WRITE })
          ns.removeXattr(req.path, req.name, this.caller(ctx))
        })
        return {}
      },
      GetXattrs: (req, ctx) => {
        const ns = this.reader()
        this.allow(ns, ctx, req.path, { self: READ })
        return { xattrs: ns.get(req.path).xattrs }
      },
      CreateVolume: async (req, ctx) => {
        const count = (await this.store.scan(keys.volumePrefix, undefined, VOLUMES_MAX + 1)).length
        checkVolumeCount(count)
        const vol = await this.mutate((ns) => ns.createVolume(req, this.defaults, this.liveCapacityBytes(), this.caller(ctx)))
        return this.volumeInfo(vol)
      },
      ListVolumes: async () => {
        const page = await this.store.scan(keys.volumePrefix, undefined, VOLUMES_MAX)
        return { volumes: page.map(([, v]) => this.volumeInfo(decodeVolume(v))) }
      },
      GetVolume: async (req) => {
        const vol = this.reader().volume(req.name)
        return { ...this.volumeInfo(vol), nodes: await this.volumeNodeBytes(vol) }
      },
      DeleteVolume: async (req, ctx) => {
        const freed = await this.mutate((ns) => {
          checkVolumeOwner(this.principal(ctx), ns.volume(req.name), 'remove')
          return ns.deleteVolume(req.name, req.force, this.caller(ctx))
        })
        this.invalidate(freed.blocks)
        void this.collect()
        return {}
      },
      ResizeVolume: async (req, ctx) => {
        const vol = await this.mutate((ns) => {
          checkVolumeOwner(this.principal(ctx), ns.volume(req.name), 'resize')
          return ns.resizeVolume(req.name, req.sizeBytes, this.liveCapacityBytes())
        })
        return this.volumeInfo(vol)
      },
      AttachVolume: async (req, ctx) => {
        checkVolumeOwner(this.principal(ctx), this.reader().volume(req.name), 'attach (and so mount)')
        const node = this.datanodes.nodes.get(req.nodeId)
        if (!node) throw new LoamError('not-found', `datanode ${req.nodeId}: no such node (see 'loam report')`)
        if (!node.alive) throw new LoamError('unavailable', `datanode ${req.nodeId} is dead: attach the volume to a live node`)
        const before = this.reader().volume(req.name)
        const holderAlive = this.datanodes.nodes.get(before.attachedNode)?.alive ?? false
        const vol = await this.mutate((ns) => ns.attachVolume(req.name, req.nodeId, { force: req.force, holderAlive }))
        // Fencing: files left open under an earlier epoch (a holder's, taken over or detached) are recovered now (their pipelines end at the datanodes), not at lease expiry.
        if (vol.epoch !== before.epoch) {
          await this.recoverVolumeLeases(vol.name)
          this.opts.log.info({ volume: vol.name, node: vol.attachedNode, epoch: vol.epoch, from: before.attachedNode }, 'volume attached')
        }
        return this.volumeInfo(vol)
      },
      DetachVolume: async (req, ctx) => {
        const vol = await this.mutate((ns) => {
          checkVolumeOwner(this.principal(ctx), ns.volume(req.name), 'detach')
          return ns.detachVolume(req.name)
        })
        return this.volumeInfo(vol)
      },
      SnapshotVolume: async (req, ctx) => {
        const vol = this.reader().volume(req.volume)
        checkVolumeOwner(this.principal(ctx), vol, 'snapshot')
        const tree = await this.readTree(vol.rootId)
        for (const entries of tree.values()) {
          for (const [name, id] of entries) {
            const raw = this.store.get(keys.inode(id))
            const rec = raw ? decodeInode(raw) : undefined
            const tail = rec?.leaseHolder ? this.blockMap.blocks.get(rec.blocks[rec.blocks.length - 1]?.id ?? 0) : undefined
            if (tail && !tail.complete) throw new LoamError('lease', `volume ${req.volume}: ${name} is being written (by ${rec!.leaseHolder}); take the snapshot once it is closed`)
          }
        }
        const { blocks } = await this.mutate((ns) => ns.snapshotVolume(req.volume, req.snapshot, tree, this.caller(ctx)))
        for (const b of blocks) this.blockMap.ref(b.id)
        this.opts.log.info({ volume: req.volume, snapshot: req.snapshot, blocks: blocks.length }, 'snapshot taken')
        return { snapshots: this.reader().volume(req.volume).snapshots }
      },
      ListSnapshots: (req) => ({ snapshots: this.reader().volume(req.name).snapshots }),
      DeleteSnapshot: async (req, ctx) => {
        const freed = await this.mutate((ns) => {
          checkVolumeOwner(this.principal(ctx), ns.volume(req.volume), 'remove a snapshot of')
          return ns.deleteSnapshot(req.volume, req.snapshot, this.caller(ctx))
        })
        this.invalidate(freed.blocks)
        void this.collect()
        return { snapshots: this.reader().volume(req.volume).snapshots }
      },
      RestoreSnapshot: async (req, ctx) => {
        const source = this.reader().volume(req.volume)
        checkVolumeOwner(this.principal(ctx), source, 'restore a snapshot of')
        const snap = source.snapshots.find((x) => x.name === req.snapshot)
        if (!snap) throw new LoamError('not-found', `volume ${req.volume} has no snapshot ${req.snapshot} (see 'loam volume snapshots ${req.volume}')`)
        const tree = await this.readTree(snap.rootId)
        const { volume, blocks } = await this.mutate((ns) => ns.restoreSnapshot(req, tree, this.defaults, this.liveCapacityBytes(), this.caller(ctx)))
        for (const b of blocks) this.blockMap.ref(b.id)
        return this.volumeInfo(volume)
      },
      ReportBadBlocks: (req, ctx) => {
        // Datanodes (the superuser) verified the replica themselves; a client's word is checked first.
        const trusted = this.principal(ctx).superuser
        if (!trusted) {
          const ns = this.reader()
          this.allow(ns, ctx, req.path, { self: READ })
          const rec = ns.get(req.path)
          const foreign = req.replicas.find((r) => !rec.blocks.some((b) => b.id === r.block?.id))
          if (foreign) throw new LoamError('permission', `${req.path}: block ${foreign.block?.id ?? 0} is not a block of this file; report only replicas of the file read`)
        }
        for (const r of req.replicas) {
          // A report about a node the namenode does not know is about nothing it keeps.
          if (!r.block || !this.datanodes.nodes.has(r.nodeId)) continue
          // A reader of an older generation may have seen the block change under it (an update in place): not corruption.
          if (r.block.genStamp < (this.blockMap.blocks.get(r.block.id)?.genStamp ?? 0)) continue
          if (trusted) this.markCorrupt(r.nodeId, r.block.id, 'corrupt replica reported')
          else void this.checkReportedReplica(r.nodeId, r.block.id)
        }
        return {}
      },
      DatanodeReport: () => this.datanodeReport(),
      WhoAmI: (_req, ctx) => this.principal(ctx),
      AnnounceScheduler: (req, ctx) => {
        checkSuperuser(this.principal(ctx), 'announce a scheduler')
        const address = parseAddress(req.rpcAddress, 'scheduler address')
        if (this.schedulerAddress?.host !== address.host || this.schedulerAddress.port !== address.port) this.opts.log.info({ scheduler: req.rpcAddress, http: req.httpAddress }, 'scheduler announced')
        this.schedulerAddress = address
        return {}
      },
      Decommission: async (req, ctx) => {
        checkSuperuser(this.principal(ctx), 'decommission a datanode')
        const node = this.datanodes.nodes.get(req.nodeId)
        if (!node) throw new LoamError('not-found', `datanode ${req.nodeId}: no such datanode (see 'loam report')`)
        if (req.recommission) {
          await this.store.commit([{ type: 'del', key: keys.decommission(node.info.id) }])
          node.admin = 'normal'
        } else if (node.admin === 'normal') {
          const others = this.datanodes.live().filter((n) => n.info.id !== node.info.id)
          if (others.length === 0) {
            throw new LoamError('invalid-argument', `datanode ${node.info.id} is the last in-service live datanode: its replicas would have nowhere to go; add datanodes first`)
          }
          await this.store.commit([{ type: 'put', key: keys.decommission(node.info.id), value: Buffer.from('decommissioning') }])
          node.admin = 'decommissioning'
        }
        this.opts.log.info({ node: node.info.id, admin: node.admin }, 'datanode administrative state changed')
        return this.datanodeReport()
      },
      RegisterDatanode: (req, ctx) => {
        checkSuperuser(this.principal(ctx), 'register a datanode')
        if (!req.node?.id) throw new LoamError('invalid-argument', 'a datanode registers with an id')
        checkDatanodeInfo(req.node)
        const admin = this.store.get(keys.decommission(req.node.id))?.toString() === 'decommissioned' ? 'decommissioned' : this.store.get(keys.decommission(req.node.id)) ? 'decommissioning' : 'normal'
        this.datanodes.register(req.node, req, Date.now(), admin)
        this.opts.log.info({ node: req.node.id, host: req.node.host, port: req.node.rpcPort, rack: req.node.rack }, 'datanode registered')
        return { heartbeatIntervalMs: this.heartbeatMs, clusterId: this.clusterId, blockKeys: this.blockKeysForDatanodes() }
      },
      Heartbeat: (req, ctx) => {
        checkSuperuser(this.principal(ctx), 'send datanode heartbeats')
        const node = this.datanodes.nodes.get(req.nodeId)
        if (!node || !node.alive) return { commands: [], reregister: true, blockKeys: [] }
        node.lastHeartbeatMs = Date.now()
        node.capacityBytes = req.capacityBytes
        node.usedBytes = req.usedBytes
        node.remainingBytes = req.remainingBytes
        node.activeTransfers = req.activeTransfers
        // A copy that failed is planned again at once, not after the pending timeout.
        for (const b of req.failedCopies) if (this.pending.get(b.id)?.source === node.info.id) this.pending.delete(b.id)
        const commands: DatanodeCommand[] = node.pendingCommands.splice(0)
        if (node.pendingDeletes.length > 0) {
          commands.push({ action: CommandAction.DELETE, blocks: node.pendingDeletes.splice(0, DELETES_PER_HEARTBEAT_MAX), targets: [] })
        }
        return { commands, reregister: false, blockKeys: this.blockKeysForDatanodes() }
      },
      BlockReport: (req, ctx) => {
        checkSuperuser(this.principal(ctx), 'report blocks')
        const node = this.datanodes.nodes.get(req.nodeId)
        if (!node) throw new LoamError('unavailable', `datanode ${req.nodeId} is not registered; register first`)
        if (req.full) {
          const reported = new Set(req.replicas.map((r) => r.id))
          for (const id of node.blocks) if (!reported.has(id)) this.blockMap.removeReplica(node.info.id, id)
          node.blocks = reported
        }
        for (const r of req.replicas) {
          const verdict = this.blockMap.addReplica(node.info.id, r)
          if (verdict === 'ok') {
            node.blocks.add(r.id)
            this.replicated(r.id, node.info.id)
          } else {
            this.queueDelete(node.info.id, r)
          }
        }
        for (const r of req.beingWritten) {
          const info = this.blockMap.blocks.get(r.id)
          // Unknown blocks and older generations are garbage; an unfinished block's holders matter for lease recovery.
          if (!info || r.genStamp < info.genStamp) this.queueDelete(node.info.id, r)
          else if (!info.complete) info.writers.add(node.info.id)
        }
        this.checkSafemode()
        return {}
      },
    }
  }

  private datanodeClient(nodeId: string): RpcClient<DatanodeServiceSpec> | undefined {
    const node = this.datanodes.nodes.get(nodeId)
    if (!node?.alive) return undefined
    const key = `${nodeId}@${node.info.host}:${node.info.rpcPort}`
    let c = this.datanodeClients.get(key)
    if (!c) {
      c = new RpcClient({ host: node.info.host, port: node.info.rpcPort }, DatanodeService, { peerName: `datanode ${nodeId}`, timeoutMs: 10_000 })
      this.datanodeClients.set(key, c)
    }
    return c
  }

  /** Files whose writer stopped renewing its lease are recovered and closed. */
  private monitorLeases(): void {
    if (this.safemode) return
    for (const [inodeId, lease] of this.underConstruction) {
      if (this.recovering.has(inodeId) || !this.leaseExpired(lease)) continue
      this.recovering.add(inodeId)
      void this.recoverLease(inodeId, lease).finally(() => this.recovering.delete(inodeId))
    }
  }

  /**
   * Lease recovery: every block the writer may have left unfinished is
   * recovered (see recoverBlock) and the file is closed; a last block that no
   * node holds any of is dropped.
   */
  private async recoverLease(inodeId: number, lease: Lease): Promise<void> {
    const { holder } = lease
    try {
      const raw = this.store.get(keys.inode(inodeId))
      const rec = raw ? decodeInode(raw) : undefined
      if (!rec || leaseKey(leaseOf(rec)) !== leaseKey(lease)) {
        this.underConstruction.delete(inodeId)
        return
      }
      const updating = new Set(rec.updatingBlocks)
      const tail = rec.blocks[rec.blocks.length - 1]
      const updated: BlockRef[] = []
      for (const block of rec.blocks) {
        if (block === tail || !updating.has(block.id)) continue
        const r = await this.recoverBlock(block, true)
        if (r) updated.push(r)
      }
      let last: BlockRef | null = null
      if (tail) {
        const info = this.blockMap.blocks.get(tail.id)
        last = info?.complete && !updating.has(tail.id) ? tail : await this.recoverBlock(tail, updating.has(tail.id))
      }
      const { dropped } = await this.mutate((ns) => {
        const r = ns.finishLeaseRecovery(inodeId, last, Date.now(), updated)
        for (const b of [...updated, ...(last ? [last] : [])]) this.blockMap.add(b, inodeId, r.inode.replication, true).committedMs = Date.now()
        return r
      })
      if (dropped) this.invalidate([dropped])
      this.underConstruction.delete(inodeId)
      this.opts.log.info({ inode: inodeId, holder, lastBlock: last, updated }, 'lease recovered: file closed at what its replicas hold')
    } catch (err) {
      this.opts.log.warn({ inode: inodeId, holder, err: (err as Error).message }, 'lease recovery failed; will retry')
    }
  }

  /**
   * Block recovery: ask the nodes that may hold the block what verifies and
   * finalize under a new generation stamp. A block written in order keeps
   * every replica with the longest verified length. A block updated in place
   * may differ between replicas past the last acknowledged packet, so only one
   * replica is kept (whole, the first in pipeline order) and the rest are
   * replaced from it.
   */
  private async recoverBlock(block: BlockRef, updatedInPlace: boolean): Promise<BlockRef | null> {
    const info = this.blockMap.blocks.get(block.id)
    const known = [...(info?.writers ?? []), ...(info?.replicas ?? [])]
    const candidates = [...new Set(known.length > 0 ? known : this.datanodes.live().map((n) => n.info.id))]
    const found: Array<{ node: string; verifiedBytes: number; whole: boolean }> = []
    for (const node of candidates) {
      const r = await this.datanodeClient(node)?.call('InspectReplica', { blockId: block.id, token: this.blockToken(block.id, BlockOp.WRITE) }).catch(() => undefined)
      if (r && r.genStamp >= block.genStamp) found.push({ node, verifiedBytes: r.verifiedBytes, whole: r.verifiedBytes === r.lengthBytes })
    }
    const longest = Math.max(0, ...found.map((f) => f.verifiedBytes))
    if (longest === 0) return null
    const chosen = updatedInPlace ? [found.find((f) => f.whole) ?? found.find((f) => f.verifiedBytes === longest)!] : found.filter((f) => f.verifiedBytes >= longest)
    const lengthBytes = chosen[0]!.verifiedBytes
    const genStamp = await this.mutate((ns) => ns.newGenStamp())
    const recovered = { id: block.id, genStamp, lengthBytes }
    let done = 0
    for (const f of chosen) {
      const ok = await this.datanodeClient(f.node)?.call('RecoverReplica', { block: recovered, token: this.blockToken(recovered.id, BlockOp.WRITE) }).then(() => true, () => false)
      if (ok) done++
    }
    if (done === 0) throw new LoamError('unavailable', `no replica of block ${block.id} could be recovered`)
    return recovered
  }

  private liveCapacityBytes(): number {
    return this.datanodes.live().reduce((sum, n) => sum + n.capacityBytes, 0)
  }

  private volumeInfo(vol: VolumeRecord): VolumeInfo {
    const live = this.datanodes.live().length
    return {
      volume: vol,
      path: volumePath(vol.name),
      state: vol.attachedNode ? 'attached' : 'detached',
      nodes: [],
      warning: vol.replication > live ? `replication ${vol.replication} is above the ${live} live datanodes: blocks stay under-replicated until more join` : '',
      holderAlive: vol.attachedNode ? (this.datanodes.nodes.get(vol.attachedNode)?.alive ?? false) : false,
    }
  }

  /** Where a volume's bytes are: replica bytes per datanode, walking its tree (bounded). */
  private async volumeNodeBytes(vol: VolumeRecord): Promise<VolumeNodeBytes[]> {
    const bytes = new Map<string, number>()
    const dirs = [vol.rootId]
    let seen = 0
    while (dirs.length > 0 && seen < VOLUME_INSPECT_INODES_MAX) {
      const dir = dirs.pop()!
      let after: Buffer | undefined
      for (;;) {
        const page = await this.store.scan(keys.entryPrefix(dir), after, LIST_PAGE_ENTRIES_MAX)
        for (const [, v] of page) {
          const raw = this.store.get(keys.inode(decodeId(v)))
          if (!raw || ++seen > VOLUME_INSPECT_INODES_MAX) continue
          const rec = decodeInode(raw)
          if (rec.type === InodeType.DIRECTORY) dirs.push(rec.id)
          for (const b of rec.blocks) for (const node of this.blockMap.blocks.get(b.id)?.replicas ?? []) bytes.set(node, (bytes.get(node) ?? 0) + b.lengthBytes)
        }
        if (page.length < LIST_PAGE_ENTRIES_MAX) break
        after = page[page.length - 1]![0]
      }
    }
    return [...bytes.entries()].sort((a, b) => b[1] - a[1]).map(([nodeId, n]) => ({ nodeId, bytes: n }))
  }

  /** Every directory below rootId with its entries (bounded), for a snapshot or a restore. */
  /** purpose: what the tree is read for, in the error of one too large. */
  private async readTree(rootId: number, purpose = 'copy'): Promise<Tree> {
    const tree: Tree = new Map()
    const dirs = [rootId]
    let seen = 0
    while (dirs.length > 0) {
      const dir = dirs.pop()!
      const entries: Array<[string, number]> = []
      let after: Buffer | undefined
      for (;;) {
        const page = await this.store.scan(keys.entryPrefix(dir), after, LIST_PAGE_ENTRIES_MAX)
        for (const [k, v] of page) {
          if (++seen > SNAPSHOT_INODES_MAX) throw new LoamError('no-space', `more than ${SNAPSHOT_INODES_MAX} entries: too many to ${purpose} at once`)
          const id = decodeId(v)
          entries.push([keys.entryName(k), id])
          const raw = this.store.get(keys.inode(id))
          if (raw && decodeInode(raw).type === InodeType.DIRECTORY) dirs.push(id)
        }
        if (page.length < LIST_PAGE_ENTRIES_MAX) break
        after = page[page.length - 1]![0]
      }
      tree.set(dir, entries)
    }
    return tree
  }

  /** The subtree a recursive delete would remove, read for its permission check; undefined when path names no directory. */
  private async subtreeOf(path: string): Promise<{ rootId: number; tree: Tree } | undefined> {
    let rootId: number
    try {
      const rec = this.reader().get(path)
      if (rec.type !== InodeType.DIRECTORY) return undefined
      rootId = rec.id
    } catch {
      return undefined // the delete itself says what is wrong with the path
    }
    return { rootId, tree: await this.readTree(rootId, "check for a recursive delete; remove it in parts, or as the superuser") }
  }

  private markCorrupt(nodeId: string, blockId: number, why: string): void {
    const info = this.blockMap.markCorrupt(nodeId, blockId)
    // Copies in flight may come from this very replica (its node refuses to send a bad copy): plan afresh.
    this.pending.delete(blockId)
    this.opts.log.warn({ block: blockId, node: nodeId, healthy: info?.replicas.size ?? 0 }, why)
  }

  /**
   * A client's report of a corrupt replica: the replica's node verifies its
   * checksums first, so a false report marks nothing (and so deletes nothing).
   */
  private async checkReportedReplica(nodeId: string, blockId: number): Promise<void> {
    const key = `${blockId}@${nodeId}`
    if (this.checkingReplicas.has(key) || this.checkingReplicas.size >= BAD_REPLICA_CHECKS_IN_FLIGHT_MAX) return
    this.checkingReplicas.add(key)
    try {
      const r = await this.datanodeClient(nodeId)?.call('InspectReplica', { blockId, token: this.blockToken(blockId, BlockOp.WRITE) })
      const info = this.blockMap.blocks.get(blockId)
      if (!r || !info?.complete || r.genStamp !== info.genStamp) return
      if (r.verifiedBytes < info.lengthBytes) this.markCorrupt(nodeId, blockId, 'corrupt replica reported by a client and confirmed by its node')
      else this.opts.log.warn({ block: blockId, node: nodeId }, 'a client reported a replica corrupt, but its node verifies it whole; kept')
    } catch (err) {
      // Missing replicas are the block report's business.
      this.opts.log.debug({ block: blockId, node: nodeId, err: (err as Error).message }, 'could not verify a reported replica')
    } finally {
      this.checkingReplicas.delete(key)
    }
  }

  /** Recovers, now, every file of the volume left open for writing (the fenced holder's). */
  private async recoverVolumeLeases(name: string): Promise<void> {
    for (const [inodeId, lease] of [...this.underConstruction]) {
      const raw = this.store.get(keys.inode(inodeId))
      if (!raw || decodeInode(raw).volume !== name || this.recovering.has(inodeId)) continue
      this.recovering.add(inodeId)
      await this.recoverLease(inodeId, lease).finally(() => this.recovering.delete(inodeId))
    }
  }

  private datanodeReport(): DatanodeReportResponse {
    return {
      safemode: this.safemode,
      datanodes: [...this.datanodes.nodes.values()].map((n) => this.datanodes.report(n)).sort((a, b) => a.id.localeCompare(b.id)),
      reportedBlocks: this.blockMap.reportedCount(),
      totalBlocks: this.blockMap.blocks.size,
    }
  }

  /** A scheduled copy arrived: it no longer needs to be counted as pending. */
  private replicated(blockId: number, nodeId: string): void {
    const p = this.pending.get(blockId)
    if (!p) return
    p.targets.delete(nodeId)
    if (p.targets.size === 0) this.pending.delete(blockId)
  }

  /**
   * One round of the replication monitor: copy under-replicated blocks (fewest
   * replicas first), remove excess and replaced corrupt replicas, and finish
   * decommissions whose blocks are all safe elsewhere.
   */
  private monitorReplication(): void {
    if (this.safemode) return
    const now = Date.now()
    for (const [blockId, p] of this.pending) {
      for (const [nodeId, expiresMs] of p.targets) if (expiresMs < now || !this.datanodes.nodes.get(nodeId)?.alive) p.targets.delete(nodeId)
      if (p.targets.size === 0 || !this.datanodes.nodes.get(p.source)?.alive) this.pending.delete(blockId)
    }
    for (const [blockId, nodes] of this.cooling) {
      for (const [nodeId, untilMs] of nodes) if (untilMs < now) nodes.delete(nodeId)
      if (nodes.size === 0) this.cooling.delete(blockId)
    }
    const pendingView = new Map([...this.pending].map(([id, p]) => [id, [...p.targets.keys()]]))
    const coolingView = new Map([...this.cooling].map(([id, t]) => [id, [...t.keys()]]))
    // Copies in flight count against their source's streams: the bound holds across rounds, not per round.
    const streams = new Map<string, number>()
    for (const p of this.pending.values()) streams.set(p.source, (streams.get(p.source) ?? 0) + 1)
    const settled = [...this.blockMap.blocks.values()].filter((b) => !this.awaitingPipeline(b, now))
    const plan = planReplication(settled, this.datanodes.placementView(), pendingView, coolingView, { ...REPLICATION_LIMITS, streamsInUse: streams }, Math.random)
    this.underReplicated = plan.underReplicated
    for (const copy of plan.copies) {
      const info = this.blockMap.blocks.get(copy.blockId)
      const source = this.datanodes.nodes.get(copy.source)
      if (!info || !source) continue
      const targets = copy.targets.map((id) => this.datanodes.nodes.get(id)!.info)
      source.pendingCommands.push({ action: CommandAction.REPLICATE, blocks: [{ id: info.id, genStamp: info.genStamp, lengthBytes: info.lengthBytes }], targets, tokens: [this.blockToken(info.id, BlockOp.COPY)] })
      const p = this.pending.get(info.id) ?? { source: copy.source, targets: new Map<string, number>() }
      for (const t of copy.targets) p.targets.set(t, now + this.pendingTimeoutMs)
      this.pending.set(info.id, p)
    }
    for (const r of plan.removals) {
      const info = this.blockMap.blocks.get(r.blockId)
      if (!info) continue
      const cooling = this.cooling.get(r.blockId) ?? new Map<string, number>()
      cooling.set(r.node, now + 3 * this.heartbeatMs)
      this.cooling.set(r.blockId, cooling)
      this.blockMap.removeReplica(r.node, r.blockId)
      this.queueDelete(r.node, { id: info.id, genStamp: info.genStamp, lengthBytes: info.lengthBytes })
    }
    this.finishDecommissions()
  }

  /**
   * A block just committed while its pipeline nodes have not all reported it
   * yet (their reports follow the writer's ack): not under-replicated, only early.
   */
  private awaitingPipeline(b: BlockInfo, nowMs: number): boolean {
    if (!b.complete || nowMs - b.committedMs > PIPELINE_REPORT_GRACE_MS) return false
    for (const w of b.writers) if (!b.replicas.has(w) && this.datanodes.nodes.get(w)?.alive) return true
    return false
  }

  private finishDecommissions(): void {
    for (const node of this.datanodes.nodes.values()) {
      if (node.admin !== 'decommissioning') continue
      const safe = [...node.blocks].every((id) => {
        const info = this.blockMap.blocks.get(id)
        if (!info || !info.complete) return !info
        let elsewhere = 0
        for (const r of info.replicas) {
          const other = this.datanodes.nodes.get(r)
          if (r !== node.info.id && other?.alive && other.admin === 'normal') elsewhere++
        }
        return elsewhere >= info.replication
      })
      if (!safe) continue
      node.admin = 'decommissioned'
      void this.store.commit([{ type: 'put', key: keys.decommission(node.info.id), value: Buffer.from('decommissioned') }])
      this.opts.log.info({ node: node.info.id }, 'datanode decommissioned: every replica it held is safe elsewhere; it can be stopped')
    }
  }

  /** The previous block is complete now: its length and generation are final. */
  private afterBlockCommit(rec: InodeRecord, committed: BlockRef | null | undefined): void {
    if (!committed || committed.id === 0) return
    const b = rec.blocks.find((x) => x.id === committed.id)
    if (b) this.blockMap.add(b, rec.id, rec.replication, true).committedMs = Date.now()
  }

  private placeBlock(rec: InodeRecord, writerNode: string, excluded: string[], remoteAddress: string): DatanodeInfo[] {
    let writer = this.datanodes.nodes.get(writerNode)?.info.id
    if (!writer) {
      // A writer on a datanode's host counts as local to it (the emptiest one, when several share the host).
      const local = this.datanodes.live().filter((n) => sameHost(n.info.host, remoteAddress)).sort((a, b) => b.remainingBytes - a.remainingBytes)
      writer = local[0]?.info.id
    }
    const targets = chooseTargets(this.datanodes.placementView(), {
      replication: rec.replication,
      blockSizeBytes: rec.blockSizeBytes,
      writerNode: writer,
      excluded,
      random: Math.random,
    })
    // Space promised to this block counts until the nodes' next heartbeats say what is really left.
    for (const id of targets) {
      const node = this.datanodes.nodes.get(id)
      if (node) node.remainingBytes = Math.max(0, node.remainingBytes - rec.blockSizeBytes)
    }
    if (targets.length === 0) {
      const live = this.datanodes.live().length
      throw new LoamError('no-space', live === 0 ? 'no live datanode can take a block: start datanodes or check `loam report`' : `none of the ${live} live datanodes has room for a ${rec.blockSizeBytes}-byte block`)
    }
    return targets.map((id) => this.datanodes.nodes.get(id)!.info)
  }

  private checkSafemode(): void {
    if (!this.safemode) return
    const total = this.blockMap.blocks.size
    const reported = this.blockMap.reportedCount()
    if (total === 0 || reported / total >= SAFEMODE_THRESHOLD) {
      this.safemode = false
      this.opts.log.info({ reported, total }, 'left safe mode')
    }
  }

  private checkDatanodes(): void {
    for (const node of this.datanodes.expire(Date.now(), this.deadAfterMs)) {
      this.opts.log.warn({ node: node.info.id, silentMs: Date.now() - node.lastHeartbeatMs }, 'datanode is dead')
      for (const id of node.blocks) this.blockMap.removeReplica(node.info.id, id)
      node.blocks.clear()
    }
  }

  /** Removes detached subtrees (recursive deletes) in bounded batches, resuming after a restart. */
  private async collect(): Promise<void> {
    if (this.collecting) {
      this.collectAgain = true
      return
    }
    this.collecting = true
    try {
      do {
        this.collectAgain = false
        for (;;) {
          const roots = await this.store.scan(keys.collectPrefix, undefined, 64)
          if (roots.length === 0) break
          for (const [, v] of roots) await this.collectDirectory(decodeId(v))
        }
      } while (this.collectAgain)
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'collecting removed directories failed; retrying at the next delete or restart')
    } finally {
      this.collecting = false
    }
  }

  private async collectDirectory(dirId: number): Promise<void> {
    for (;;) {
      const entries = await this.store.scan(keys.entryPrefix(dirId), undefined, 512)
      const ops: KvOp[] = []
      const freed: BlockRef[] = []
      const uncharge = new Map<string, number>()
      for (const [k, v] of entries) {
        ops.push({ type: 'del', key: k })
        const childId = decodeId(v)
        const raw = this.store.get(keys.inode(childId))
        if (!raw) continue
        const rec = decodeInode(raw)
        if (rec.type === InodeType.DIRECTORY && rec.children > 0) {
          ops.push({ type: 'put', key: keys.collect(childId), value: v })
        } else if (rec.type === InodeType.FILE && rec.nlink > 1) {
          rec.nlink--
          const txn = new StoreTxn(this.store, this.counters)
          txn.putInode(rec)
          ops.push(...txn.batch())
        } else {
          ops.push({ type: 'del', key: keys.inode(childId) })
          freed.push(...rec.blocks)
          if (rec.volume && rec.lengthBytes > 0) uncharge.set(rec.volume, (uncharge.get(rec.volume) ?? 0) + rec.lengthBytes)
        }
      }
      // A volume's usage drops with the files removed (a volume being removed has no record left to update).
      for (const [name, bytes] of uncharge) {
        const txn = new StoreTxn(this.store, this.counters)
        const vol = txn.volume(name)
        if (!vol) continue
        vol.usedBytes = Math.max(0, vol.usedBytes - bytes)
        txn.putVolume(vol)
        ops.push(...txn.batch())
      }
      if (entries.length === 0) ops.push({ type: 'del', key: keys.inode(dirId) }, { type: 'del', key: keys.collect(dirId) })
      await this.commit(ops)
      this.invalidate(freed)
      if (entries.length === 0) return
    }
  }

  private registerMetrics(r: Registry): void {
    const g = (name: string, help: string, value: () => number): void => {
      new Gauge({ name, help, registers: [r], collect() { this.set(value()) } })
    }
    g('loam_namenode_files', 'Files in the namespace', () => this.inodes.files)
    g('loam_namenode_directories', 'Directories in the namespace', () => this.inodes.directories)
    g('loam_namenode_blocks', 'Blocks in the namespace', () => this.blockMap.blocks.size)
    g('loam_namenode_under_replicated_blocks', 'Complete blocks with fewer healthy replicas than their replication', () => this.underReplicated)
    g('loam_namenode_corrupt_blocks', 'Complete blocks with a replica reported corrupt', () => this.blockHealth().corruptBlocks)
    g('loam_namenode_missing_blocks', 'Complete blocks with no healthy replica', () => this.blockHealth().missingBlocks)
    g('loam_namenode_corrupt_replicas', 'Replicas reported corrupt', () => [...this.blockMap.blocks.values()].reduce((s, b) => s + b.corrupt.size, 0))
    g('loam_namenode_replication_pending_copies', 'Re-replication copies handed to datanodes and not yet reported', () => this.pendingCopies())
    g('loam_namenode_pending_deletes', 'Replica deletions waiting for their datanode\'s next heartbeat', () => [...this.datanodes.nodes.values()].reduce((s, n) => s + n.pendingDeletes.length, 0))
    g('loam_namenode_live_datanodes', 'Live datanodes', () => this.datanodes.live().length)
    g('loam_namenode_safemode', '1 while in safe mode', () => (this.safemode ? 1 : 0))
    g('loam_namenode_commit_batches', 'Synced metadata batches written', () => this.store.stats.batches)
    g('loam_namenode_commit_mutations', 'Mutations committed', () => this.store.stats.mutations)
  }

  /** Complete blocks with a corrupt replica, and with no healthy replica (one scan of the block map). */
  private blockHealth(): { corruptBlocks: number; missingBlocks: number } {
    let corruptBlocks = 0
    let missingBlocks = 0
    for (const b of this.blockMap.blocks.values()) {
      if (!b.complete) continue
      if (b.corrupt.size > 0) corruptBlocks++
      if (b.replicas.size === 0) missingBlocks++
    }
    return { corruptBlocks, missingBlocks }
  }

  private pendingCopies(): number {
    return [...this.pending.values()].reduce((s, p) => s + p.targets.size, 0)
  }

  /** What an operator asks first (the dashboard's overview, and /status). */
  summary(): NamenodeSummary {
    const nodes = { live: 0, dead: 0, decommissioning: 0, decommissioned: 0 }
    const capacity = { capacityBytes: 0, usedBytes: 0, remainingBytes: 0 }
    for (const n of this.datanodes.nodes.values()) {
      nodes[stateName(n)]++
      if (!n.alive) continue
      capacity.capacityBytes += n.capacityBytes
      capacity.usedBytes += n.usedBytes
      capacity.remainingBytes += n.remainingBytes
    }
    return {
      version: LOAM_VERSION,
      clusterId: this.clusterId,
      startedMs: this.startedMs,
      uptimeMs: Date.now() - this.startedMs,
      safemode: this.safemode,
      reportedBlocks: this.blockMap.reportedCount(),
      ...this.inodes,
      blocks: this.blockMap.blocks.size,
      underReplicatedBlocks: this.underReplicated,
      ...this.blockHealth(),
      pendingCopies: this.pendingCopies(),
      nodes,
      ...capacity,
    }
  }

  private statusJson(): unknown {
    return {
      role: 'namenode',
      ...this.summary(),
      datanodes: [...this.datanodes.nodes.values()].map((n) => this.datanodes.report(n)),
    }
  }
}

const SUPERGROUP_DEFAULT = 'supergroup'

/** The user the namenode runs as: the superuser, as in HDFS. */
function namenodeUser(): string {
  try {
    return os.userInfo().username
  } catch {
    return `uid-${process.getuid?.() ?? 0}`
  }
}

/** What a registering datanode says about itself is checked where it enters: its id names files and metrics, its ports are dialled. */
function checkDatanodeInfo(node: DatanodeInfo): void {
  if (Buffer.byteLength(node.id) > NAME_BYTES_MAX || /[\0/]/.test(node.id)) throw new LoamError('invalid-argument', `datanode id must be 1 to ${NAME_BYTES_MAX} bytes without NUL or '/'`)
  if (!node.host || Buffer.byteLength(node.host) > NAME_BYTES_MAX || node.host.includes('\0')) throw new LoamError('invalid-argument', `datanode ${node.id}: host must be 1 to ${NAME_BYTES_MAX} bytes without NUL`)
  if (!(node.rpcPort >= 1 && node.rpcPort <= 65535) || !(node.httpPort >= 0 && node.httpPort <= 65535)) throw new LoamError('invalid-argument', `datanode ${node.id}: ports must be from 1 to 65535`)
}
