// Writes one file: cuts the byte stream into blocks and 64 KiB packets, asks
// the namenode for each block, and streams it down a datanode pipeline.
import { CHUNK_BYTES, LEASE_RENEW_INTERVAL_MS } from '../limits.js'
import { assert, LoamError } from '../rpc/errors.js'
import type { BlockRef, FileStatus } from '../rpc/messages.js'
import { BlockPipeline } from './block-pipeline.js'
import type { LoamClient } from './client.js'

export class FileWriter {
  private pipeline: BlockPipeline | undefined
  private previous: BlockRef | null = null
  /** Bytes of the current block sent in full chunks. */
  private blockBytes = 0
  /** The chunk being filled; it starts at blockBytes in the current block. */
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES)
  private chunkBytes = 0
  private lastSeqno = -1
  private closed = false
  private readonly renewTimer: NodeJS.Timeout
  bytesWritten = 0

  constructor(
    private readonly client: LoamClient,
    readonly path: string,
    readonly status: FileStatus,
  ) {
    this.renewTimer = setInterval(() => void client.renewLease().catch(() => undefined), LEASE_RENEW_INTERVAL_MS)
    this.renewTimer.unref()
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.closed) throw new LoamError('invalid-argument', `${this.path}: write after close`)
    let pos = 0
    while (pos < data.length) {
      const take = Math.min(data.length - pos, CHUNK_BYTES - this.chunkBytes)
      this.chunk.set(data.subarray(pos, pos + take), this.chunkBytes)
      this.chunkBytes += take
      pos += take
      this.bytesWritten += take
      if (this.chunkBytes === CHUNK_BYTES) await this.sendChunk(false)
    }
  }

  /** Returns once everything written so far is durable on every node of the pipeline. */
  async sync(): Promise<void> {
    if (this.chunkBytes > 0) {
      const pipeline = await this.currentPipeline()
      // The partial chunk stays buffered: the next packet rewrites it whole.
      const seqno = await pipeline.send(this.blockBytes, Buffer.from(this.chunk.subarray(0, this.chunkBytes)), { sync: true })
      await pipeline.acknowledged(seqno)
    } else if (this.pipeline) {
      const seqno = await this.pipeline.send(this.blockBytes, Buffer.alloc(0), { sync: true })
      await this.pipeline.acknowledged(seqno)
    }
  }

  async close(): Promise<FileStatus> {
    if (this.closed) throw new LoamError('invalid-argument', `${this.path}: already closed`)
    try {
      if (this.chunkBytes > 0 || this.pipeline) await this.finishBlock()
      this.closed = true
      return await this.client.complete(this.path, this.status.inodeId, this.previous)
    } finally {
      this.closed = true
      clearInterval(this.renewTimer)
    }
  }

  /** Gives up: the pipeline is torn down; the namenode recovers the file when the lease lapses. */
  abort(reason: Error = new LoamError('io', 'write aborted')): void {
    this.closed = true
    clearInterval(this.renewTimer)
    this.pipeline?.abort(reason)
    this.pipeline = undefined
  }

  private async currentPipeline(): Promise<BlockPipeline> {
    if (this.pipeline) return this.pipeline
    const located = await this.client.addBlock(this.path, this.status.inodeId, this.previous)
    this.pipeline = await BlockPipeline.open(located, this.client.clientName, this.client.timeoutMs)
    this.blockBytes = 0
    return this.pipeline
  }

  private async sendChunk(last: boolean): Promise<void> {
    const pipeline = await this.currentPipeline()
    const data = Buffer.from(this.chunk.subarray(0, this.chunkBytes))
    const ends = last || this.blockBytes + this.chunkBytes === this.status.blockSizeBytes
    this.lastSeqno = await pipeline.send(this.blockBytes, data, { last: ends })
    this.blockBytes += this.chunkBytes
    this.chunkBytes = 0
    assert(this.blockBytes <= this.status.blockSizeBytes, 'a block never exceeds its size')
    if (ends) await this.endBlock(pipeline)
  }

  private async finishBlock(): Promise<void> {
    if (this.chunkBytes > 0) return this.sendChunk(true)
    const pipeline = this.pipeline
    if (!pipeline) return
    this.lastSeqno = await pipeline.send(this.blockBytes, Buffer.alloc(0), { last: true })
    await this.endBlock(pipeline)
  }

  private async endBlock(pipeline: BlockPipeline): Promise<void> {
    try {
      await pipeline.finish(this.lastSeqno)
    } catch (err) {
      this.abort(err as Error)
      throw err
    }
    this.previous = { ...pipeline.block, lengthBytes: this.blockBytes }
    this.pipeline = undefined
    this.blockBytes = 0
  }
}
