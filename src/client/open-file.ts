// A file open through a mount: reads, and writes at any offset. Writes are
// buffered and sent in large packets; a block is changed in place through a
// pipeline to its replicas under a new generation stamp (src/datanode
// write-pipeline.ts), so a replica that misses a write is stale. fsync sends a
// sync packet down every open pipeline and records the new lengths at the
// namenode; close finishes the pipelines and gives the lease back.
import { CHUNK_BYTES, OPEN_FILE_DIRTY_BYTES_MAX, OPEN_FILE_PIPELINES_MAX, OPEN_FILE_READ_WINDOW_BYTES, PACKET_BYTES_MAX } from '../limits.js'
import { assert, LoamError } from '../rpc/errors.js'
import type { BlockRef, FileStatus, LocatedBlock } from '../rpc/messages.js'
import { BlockPipeline } from './block-pipeline.js'
import type { LoamClient } from './client.js'
import { FileReader } from './file-reader.js'
import type { VolumeQuota } from '../volumes/quota.js'

interface Extent {
  offset: number
  parts: Buffer[]
  length: number
}

interface BlockState {
  /** Generation and length as the replicas have them once the packets sent so far land. */
  ref: BlockRef
  located: LocatedBlock
  /** Added by this writer and not yet created on any datanode. */
  fresh: boolean
  pipeline?: BlockPipeline
  /** Data packets sent on the pipeline and not yet known acknowledged: sent again after a failure. */
  sent: SentPacket[]
  /** Nodes that failed in this block's pipelines. */
  excluded: string[]
  /** The length the namenode has recorded: fsync records lengths only when one moved. */
  committedLength: number
  /** The sync packet that last made this pipeline's data durable (-1: none on this pipeline). */
  syncedSeqno: number
  usedAt: number
}

interface SentPacket {
  seqno: number
  offset: number
  data: Buffer
}

export class OpenFile {
  private blocks: BlockState[]
  /** Buffered writes, not yet in any pipeline; in write order, never overlapping. */
  private dirty: Extent[] = []
  private dirtyBytes = 0
  /** Block ids changed since the namenode last recorded them. */
  private readonly changed = new Set<number>()
  private truncatedTo: number | undefined
  /** When this mount last changed the file's bytes: its mtime at the next commit. */
  private modifiedMs = 0
  private lengthBytes: number
  private clock = 0
  /** Writes run one at a time: a flush, a truncate and a commit never interleave. */
  private queue: Promise<unknown> = Promise.resolve()
  private failure: LoamError | undefined
  /** Read-ahead for a reader moving forward: window index -> its bytes. Dropped on any change. */
  private readonly windows = new Map<number, Promise<Buffer>>()
  private lastReadEnd = 0
  /** The newest buffer flush running in the background. */
  private flushing: Promise<void> | undefined
  writable = false

  constructor(
    private readonly client: LoamClient,
    public path: string,
    public status: FileStatus,
    located: LocatedBlock[],
    private readonly quota?: VolumeQuota,
  ) {
    this.blocks = located.map((lb) => ({ ref: { ...lb.block! }, located: lb, fresh: false, sent: [], excluded: [], committedLength: lb.block!.lengthBytes, syncedSeqno: -1, usedAt: 0 }))
    this.lengthBytes = status.lengthBytes
  }

  get size(): number {
    return this.lengthBytes
  }

  get blockSizeBytes(): number {
    return this.status.blockSizeBytes
  }

  /** Takes the lease; a file this client just created holds it already (leaseLimitMs from Create). */
  async openForWrite(created: boolean, leaseLimitMs = 0): Promise<void> {
    if (this.writable) return
    if (!created) {
      const res = await this.client.nn.call('OpenForWrite', { path: this.path, clientName: this.client.clientName })
      this.status = res.status ?? this.status
      leaseLimitMs = res.leaseLimitMs ?? 0
    }
    this.client.writerOpened(leaseLimitMs)
    this.writable = true
  }

  /** data must not be reused by the caller: it is kept until flushed. */
  write(offset: number, data: Buffer): Promise<void> {
    this.checkWritable()
    const end = offset + data.length
    // Overlapping buffered writes go out first, so later bytes always win.
    if (this.dirty.some((e) => e.offset < end && offset < e.offset + e.length)) {
      return this.serial(async () => {
        await this.flushDirty()
        this.buffer(offset, data)
      })
    }
    this.buffer(offset, data)
    if (this.dirtyBytes < OPEN_FILE_DIRTY_BYTES_MAX) return Promise.resolve()
    // The buffer goes out in the background while the next one fills; a writer waits only for the flush before.
    const previous = this.flushing
    const flush = this.serial(() => this.flushDirty())
    this.flushing = flush.then(
      () => undefined,
      () => undefined, // the failure is kept and thrown by the next write, fsync or close
    )
    return previous ?? Promise.resolve()
  }

  private buffer(offset: number, data: Buffer): void {
    this.quota?.grow(offset + data.length - this.lengthBytes)
    this.windows.clear()
    const last = this.dirty[this.dirty.length - 1]
    if (last && last.offset + last.length === offset) {
      last.parts.push(data)
      last.length += data.length
    } else {
      this.dirty.push({ offset, parts: [data], length: data.length })
    }
    this.dirtyBytes += data.length
    this.lengthBytes = Math.max(this.lengthBytes, offset + data.length)
    this.modifiedMs = Date.now()
  }

  /** Bytes [offset, offset+length) as this mount last wrote them (read-your-writes). */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.lengthBytes)
    if (end <= offset) return Buffer.alloc(0)
    if (this.writable) {
      if (this.dirty.length > 0 && (end > this.materializedBytes() || this.dirty.some((e) => e.offset < end && offset < e.offset + e.length))) {
        await this.serial(() => this.flushDirty())
      }
      await this.serial(() => this.settle(offset, end))
    }
    // A reader moving forward gets whole windows, the next one read ahead; a random reader gets what it asked for.
    const sequential = Math.abs(offset - this.lastReadEnd) <= OPEN_FILE_READ_WINDOW_BYTES
    this.lastReadEnd = end
    if (!sequential || this.blocks.some((b) => b.pipeline)) return this.readRange(offset, end)
    const w = OPEN_FILE_READ_WINDOW_BYTES
    const first = Math.floor(offset / w)
    const last = Math.floor((end - 1) / w)
    const parts: Buffer[] = []
    for (let i = first; i <= last; i++) {
      const data = await this.window(i)
      parts.push(data.subarray(Math.max(0, offset - i * w), Math.min(data.length, end - i * w)))
    }
    for (const k of this.windows.keys()) if (k < first) this.windows.delete(k)
    if ((last + 1) * w < this.materializedBytes()) this.window(last + 1).catch(() => undefined)
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  }

  private window(i: number): Promise<Buffer> {
    let data = this.windows.get(i)
    if (!data) {
      const w = OPEN_FILE_READ_WINDOW_BYTES
      data = this.readRange(i * w, Math.min((i + 1) * w, this.materializedBytes()))
      this.windows.set(i, data)
      data.catch(() => this.windows.delete(i))
    }
    return data
  }

  private async readRange(offset: number, end: number): Promise<Buffer> {
    // A block this writer added or changed carries its write token, which reads nothing: its read token then.
    // (A located block from GetBlockLocations has an empty read token, and its token is the read token.)
    const located = this.blocks.map((b, i) => ({ ...b.located, block: b.ref, offsetBytes: i * this.blockSizeBytes, token: b.located.readToken?.length ? b.located.readToken : b.located.token }))
    const reader = new FileReader(this.client, this.path, { ...this.status, lengthBytes: this.materializedBytes() }, located)
    const pieces: Buffer[] = []
    for await (const piece of reader.read(offset, end - offset)) pieces.push(piece)
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)
  }

  /** Durable on every live replica of each pipeline, lengths recorded at the namenode. */
  fsync(): Promise<void> {
    return this.serial(async () => {
      if (!this.writable) {
        if (this.dirty.length > 0) throw new LoamError('io', `${this.path}: buffered writes after the file was closed`)
        return
      }
      if (this.failure) throw this.failure
      await this.flushDirty()
      // Only pipelines with packets since their last sync: the others' data is durable already.
      const open = this.blocks.filter((b) => b.pipeline && b.pipeline.lastSent !== b.syncedSeqno)
      await Promise.all(
        open.map((b) =>
          this.onPipeline(b, async (p) => {
            const seqno = await p.send(b.ref.lengthBytes, Buffer.alloc(0), { sync: true })
            await p.acknowledged(seqno)
            b.syncedSeqno = seqno
          }),
        ),
      )
      await this.commit(false)
    })
  }

  truncate(lengthBytes: number): Promise<void> {
    this.checkWritable()
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new LoamError('invalid-argument', `${this.path}: cannot truncate to ${lengthBytes}`)
    return this.serial(async () => {
      this.quota?.grow(lengthBytes - this.lengthBytes)
      this.quota?.shrink(this.lengthBytes - lengthBytes)
      await this.flushDirty()
      this.windows.clear()
      const bs = this.blockSizeBytes
      const keep = Math.ceil(lengthBytes / bs)
      if (keep < this.blocks.length) {
        for (const b of this.blocks.splice(keep)) {
          b.pipeline?.abort(new LoamError('io', 'truncated'))
          this.changed.delete(b.ref.id)
        }
        this.truncatedTo = keep
      }
      const tail = this.blocks[keep - 1]
      const within = lengthBytes - (keep - 1) * bs
      if (tail && tail.ref.lengthBytes > within) {
        await this.finishPipeline(tail)
        await this.openPipeline(tail, within)
      }
      this.lengthBytes = lengthBytes
      this.modifiedMs = Date.now()
      await this.extendTo(lengthBytes)
      await this.commit(false)
    })
  }

  /** The last handle closed: everything durable, pipelines finished, lease given back. */
  close(): Promise<void> {
    return this.serial(async () => {
      if (!this.writable) return
      try {
        if (this.failure) throw this.failure
        await this.flushDirty()
        await Promise.all(this.blocks.filter((b) => b.pipeline).map((b) => this.finishPipeline(b)))
        await this.commit(true)
      } finally {
        // Committed, or failed: either way this handle is done; after a failure lease recovery settles the replicas.
        this.abandon()
      }
    })
  }

  /** Gives up without committing (the mount is going away): lease recovery keeps what replicas hold. */
  abandon(): void {
    for (const b of this.blocks) {
      b.pipeline?.abort(new LoamError('io', 'the file was closed'))
      b.pipeline = undefined
    }
    if (this.writable) this.client.writerClosed()
    this.writable = false
  }

  private checkWritable(): void {
    if (this.failure) throw this.failure
    if (!this.writable) throw new LoamError('permission', `${this.path}: not open for writing`)
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn)
    this.queue = run.catch(() => undefined)
    return run.catch((err: unknown) => {
      // A failed pipeline leaves replicas in an unknown state: this handle stops writing, recovery settles them.
      if (err instanceof LoamError && err.code !== 'invalid-argument' && err.code !== 'quota') this.failure ??= err
      throw err
    })
  }

  private materializedBytes(): number {
    return this.blocks.reduce((sum, b) => sum + b.ref.lengthBytes, 0)
  }

  /** Packets sent for [from, to) have reached every replica. */
  private async settle(from: number, to: number): Promise<void> {
    const bs = this.blockSizeBytes
    for (let i = Math.floor(from / bs); i * bs < to && i < this.blocks.length; i++) {
      const b = this.blocks[i]!
      if (b.pipeline) await this.onPipeline(b, (p) => p.acknowledged(p.lastSent))
    }
  }

  private async flushDirty(): Promise<void> {
    const extents = this.dirty.sort((a, b) => a.offset - b.offset)
    this.dirty = []
    this.dirtyBytes = 0
    for (const e of extents) {
      await this.extendTo(e.offset)
      let pos = e.offset
      while (pos < e.offset + e.length) {
        const bs = this.blockSizeBytes
        const index = Math.floor(pos / bs)
        const inBlock = pos - index * bs
        // Packets end on chunk boundaries, so only the first and last of a write need a partial chunk merged.
        const room = Math.min(PACKET_BYTES_MAX - (inBlock % CHUNK_BYTES), bs - inBlock, e.offset + e.length - pos)
        await this.ensureBlocks(index)
        await this.sendTo(this.blocks[index]!, inBlock, slice(e, pos - e.offset, pos - e.offset + room))
        pos += room
      }
    }
  }

  /** Makes the file at least lengthBytes long on the replicas (zeros, sparse on disk). */
  private async extendTo(lengthBytes: number): Promise<void> {
    const materialized = this.materializedBytes()
    if (lengthBytes <= materialized) return
    const bs = this.blockSizeBytes
    const index = Math.floor((lengthBytes - 1) / bs)
    await this.ensureBlocks(index)
    const b = this.blocks[index]!
    const within = lengthBytes - index * bs
    if (b.ref.lengthBytes < within) await this.sendTo(b, within - 1, Buffer.alloc(1))
  }

  /** Blocks up to index exist; every block before the last is full (zeros where never written). */
  private async ensureBlocks(index: number): Promise<void> {
    const bs = this.blockSizeBytes
    while (this.blocks.length <= index) {
      const tail = this.blocks[this.blocks.length - 1]
      if (tail && tail.ref.lengthBytes < bs) await this.sendTo(tail, bs - 1, Buffer.alloc(1))
      const lb = await this.client.nn.call('AddBlock', {
        path: this.path,
        inodeId: this.status.inodeId,
        clientName: this.client.clientName,
        previous: null,
        writerNode: this.client.nodeId,
        excludedNodes: [],
        randomWrites: true,
      })
      assert(lb.block, 'AddBlock names its block')
      this.blocks.push({ ref: { ...lb.block }, located: lb, fresh: true, sent: [], excluded: [], committedLength: 0, syncedSeqno: -1, usedAt: 0 })
      if (this.blocks.length <= index) await this.sendTo(this.blocks[this.blocks.length - 1]!, bs - 1, Buffer.alloc(1))
    }
  }

  private async sendTo(b: BlockState, offsetInBlock: number, data: Buffer): Promise<void> {
    if (!b.pipeline) await this.openPipeline(b)
    b.usedAt = ++this.clock
    await this.onPipeline(b, async (p) => {
      const acked = p.ackedSeqno
      if (b.sent.length > 64 && b.sent[0]!.seqno <= acked) b.sent = b.sent.filter((x) => x.seqno > acked)
      b.sent.push({ seqno: await p.send(offsetInBlock, data), offset: offsetInBlock, data })
    })
    b.ref.lengthBytes = Math.max(b.ref.lengthBytes, offsetInBlock + data.length)
    this.changed.add(b.ref.id)
  }

  /** A pipeline to the block's replicas: a new replica for a fresh block, else an update under a new generation. */
  private async openPipeline(b: BlockState, resizeBytes?: number): Promise<void> {
    const open = this.blocks.filter((x) => x.pipeline)
    if (open.length >= OPEN_FILE_PIPELINES_MAX) await this.finishPipeline(open.reduce((a, x) => (x.usedAt < a.usedAt ? x : a)))
    if (b.fresh) {
      b.pipeline = await BlockPipeline.open(b.located, this.client.clientName, this.client.timeoutMs, resizeBytes === undefined ? {} : { resizeBytes })
      b.fresh = false
    } else {
      const lb = await this.client.nn.call('UpdateBlock', { path: this.path, inodeId: this.status.inodeId, clientName: this.client.clientName, blockId: b.ref.id, excludedNodes: b.excluded })
      assert(lb.block, 'UpdateBlock names its block')
      const oldGenStamp = b.ref.genStamp
      // A block a snapshot shares comes back as a new block, made on each datanode as a copy of the old one.
      if (lb.copiedFrom) {
        this.changed.delete(b.ref.id)
        b.ref = { ...lb.block, lengthBytes: b.ref.lengthBytes }
      }
      b.ref.genStamp = lb.block.genStamp
      b.located = lb
      const mode = { oldGenStamp, copyFrom: lb.copiedFrom, ...(resizeBytes === undefined ? {} : { resizeBytes }) }
      b.pipeline = await BlockPipeline.open(lb, this.client.clientName, this.client.timeoutMs, mode)
    }
    if (resizeBytes !== undefined) b.ref.lengthBytes = resizeBytes
    // A resize happened at open and is not durable until a sync packet follows.
    b.syncedSeqno = resizeBytes === undefined ? -1 : -2
    this.changed.add(b.ref.id)
  }

  private async finishPipeline(b: BlockState): Promise<void> {
    if (!b.pipeline) return
    await this.onPipeline(b, async (p) => p.finish(await p.send(b.ref.lengthBytes, Buffer.alloc(0), { last: true })))
    b.pipeline = undefined
    b.sent = []
  }

  /**
   * Runs op on the block's pipeline; when a datanode of it fails, the block
   * goes on without that node under a new generation stamp (as HDFS recovers
   * a pipeline): every packet not yet acknowledged is sent again, in order
   * (writes in place are idempotent), and op runs again.
   */
  private async onPipeline<T>(b: BlockState, op: (p: BlockPipeline) => Promise<T>): Promise<T> {
    for (;;) {
      const p = b.pipeline
      assert(p, 'the block has an open pipeline')
      try {
        return await op(p)
      } catch (err) {
        if (p.failedNode === undefined) throw err
        const pending = b.sent.filter((x) => x.seqno > p.ackedSeqno)
        p.abort(new LoamError('io', 'pipeline replaced'))
        b.pipeline = undefined
        b.excluded.push(p.failedNode)
        if (b.excluded.length >= this.status.replication + 1) throw err
        await this.openPipeline(b)
        b.sent = []
        for (const x of pending) b.sent.push({ seqno: await b.pipeline!.send(x.offset, x.data), offset: x.offset, data: x.data })
      }
    }
  }

  private async commit(close: boolean): Promise<void> {
    // An update in place had its generation recorded when it began: fsync records only lengths that moved.
    if (!close && this.truncatedTo === undefined && this.blocks.every((b) => b.ref.lengthBytes === b.committedLength)) return
    const blocks = this.blocks.filter((b) => this.changed.has(b.ref.id)).map((b) => ({ ...b.ref }))
    const res = await this.client.nn.call('CommitBlocks', {
      path: this.path,
      inodeId: this.status.inodeId,
      clientName: this.client.clientName,
      blocks,
      truncate: this.truncatedTo !== undefined,
      blockCount: this.truncatedTo ?? 0,
      close,
      mtimeMs: this.modifiedMs,
      // A close is a release: the program's close(2) returned at its flush, when the data was committed already.
      background: close,
    })
    this.changed.clear()
    for (const b of this.blocks) b.committedLength = b.ref.lengthBytes
    this.truncatedTo = undefined
    if (res.status) this.status = res.status
  }
}

/** Bytes [from, to) of an extent: a view when they lie in one of its parts (the usual case), else a copy. */
function slice(e: Extent, from: number, to: number): Buffer {
  let start = 0
  for (let i = 0; i < e.parts.length; i++) {
    const part = e.parts[i]!
    if (from < start + part.length) {
      if (to <= start + part.length) return part.subarray(from - start, to - start)
      const pieces: Buffer[] = []
      for (let j = i, at = start; j < e.parts.length && at < to; at += e.parts[j]!.length, j++) {
        const p = e.parts[j]!
        pieces.push(p.subarray(Math.max(0, from - at), Math.min(p.length, to - at)))
      }
      return Buffer.concat(pieces, to - from)
    }
    start += part.length
  }
  return Buffer.alloc(0)
}
