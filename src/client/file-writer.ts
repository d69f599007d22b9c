// Writes one file: cuts the byte stream into blocks and 64 KiB packets, asks
// the namenode for each block, and streams it down a datanode pipeline. If the
// pipeline fails, the block gets a new generation stamp and new targets without
// the failed node, and its packets are sent again: the writer keeps the
// current block's packets until the block is complete (at most one block of memory).
import { CHUNK_BYTES, LEASE_RENEW_INTERVAL_MS } from '../limits.js'
import { assert, LoamError, toLoamError } from '../rpc/errors.js'
import type { BlockRef, FileStatus, LocatedBlock } from '../rpc/messages.js'
import { BlockPipeline, PipelineOpenError } from './block-pipeline.js'
import type { LoamClient } from './client.js'

/** Pipeline failures one block may survive before the write fails. */
const RECOVERIES_PER_BLOCK_MAX = 3

interface SentPacket {
  offsetBytes: number
  data: Buffer
  sync: boolean
  last: boolean
}

export class FileWriter {
  private pipeline: BlockPipeline | undefined
  private previous: BlockRef | null = null
  /** Bytes of the current block sent in full chunks. */
  private blockBytes = 0
  /** The chunk being filled; it starts at blockBytes in the current block. */
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES)
  private chunkBytes = 0
  /** Everything sent for the current block, replayed on a new pipeline if the old one fails. */
  private packets: SentPacket[] = []
  private recoveries = 0
  private readonly failedNodes = new Set<string>()
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
    if (this.chunkBytes === 0 && !this.pipeline) return
    // A partial chunk stays buffered: the next packet rewrites it whole.
    await this.send({ offsetBytes: this.blockBytes, data: Buffer.from(this.chunk.subarray(0, this.chunkBytes)), sync: true, last: false })
    await this.guarded((p) => p.acknowledged(p.lastSent))
  }

  async close(): Promise<FileStatus> {
    if (this.closed) throw new LoamError('invalid-argument', `${this.path}: already closed`)
    try {
      if (this.chunkBytes > 0) await this.sendChunk(true)
      else if (this.pipeline) await this.endBlock()
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

  private async sendChunk(last: boolean): Promise<void> {
    const ends = last || this.blockBytes + this.chunkBytes === this.status.blockSizeBytes
    await this.send({ offsetBytes: this.blockBytes, data: Buffer.from(this.chunk.subarray(0, this.chunkBytes)), sync: false, last: false })
    this.blockBytes += this.chunkBytes
    this.chunkBytes = 0
    assert(this.blockBytes <= this.status.blockSizeBytes, 'a block never exceeds its size')
    if (ends) await this.endBlock()
  }

  /** The block is complete: an empty last packet, then every node's acknowledgement and response. */
  private async endBlock(): Promise<void> {
    await this.send({ offsetBytes: this.blockBytes, data: Buffer.alloc(0), sync: false, last: true })
    await this.guarded((p) => p.finish(p.lastSent))
    this.previous = { ...this.pipeline!.block, lengthBytes: this.blockBytes }
    this.pipeline = undefined
    this.packets = []
    this.recoveries = 0
    this.blockBytes = 0
  }

  private async send(packet: SentPacket): Promise<void> {
    this.packets.push(packet)
    const pipeline = this.pipeline
    if (!pipeline) {
      const located = await this.client.addBlock(this.path, this.status.inodeId, this.previous, [...this.failedNodes])
      if (!located.block) throw new LoamError('protocol', 'the namenode allocated no block')
      try {
        this.pipeline = await BlockPipeline.open(located, this.client.clientName, this.client.timeoutMs)
      } catch (err) {
        if (!(err instanceof PipelineOpenError)) throw err
        await this.replaceAndReplay(located.block, err.node, err)
        return
      }
    }
    const p = this.pipeline!
    try {
      await p.send(packet.offsetBytes, packet.data, { sync: packet.sync, last: packet.last })
    } catch (err) {
      if (p.failedNode === undefined) throw err
      p.abort(toLoamError(err))
      await this.replaceAndReplay(p.block, p.failedNode, err) // the replay includes this packet
    }
  }

  /** Runs fn on the pipeline; if the pipeline fails, replaces it (replaying every packet) and runs fn again. */
  private async guarded<T>(fn: (p: BlockPipeline) => Promise<T>): Promise<T> {
    for (;;) {
      const pipeline = this.pipeline
      assert(pipeline, 'a pipeline is open')
      try {
        return await fn(pipeline)
      } catch (err) {
        if (pipeline.failedNode === undefined) throw err
        pipeline.abort(toLoamError(err))
        await this.replaceAndReplay(pipeline.block, pipeline.failedNode, err)
      }
    }
  }

  /**
   * The pipeline for block lost failedNode: get a new generation stamp and
   * targets without the failed nodes, and send the block's packets again,
   * as often as RECOVERIES_PER_BLOCK_MAX allows.
   */
  private async replaceAndReplay(block: BlockRef, failedNode: string, cause: unknown): Promise<void> {
    this.pipeline = undefined
    let failed = failedNode
    let why = cause
    for (;;) {
      this.failedNodes.add(failed)
      if (++this.recoveries > RECOVERIES_PER_BLOCK_MAX) {
        throw new LoamError('io', `${this.path}: giving up on block ${block.id} after ${RECOVERIES_PER_BLOCK_MAX} pipeline failures: ${toLoamError(why).message}`)
      }
      const located: LocatedBlock = await this.client.recoverPipeline(this.path, this.status.inodeId, block, [...this.failedNodes])
      if (!located.block) throw new LoamError('protocol', 'the namenode gave no block for the recovered pipeline')
      block = located.block
      let p: BlockPipeline
      try {
        p = await BlockPipeline.open(located, this.client.clientName, this.client.timeoutMs)
      } catch (err) {
        if (!(err instanceof PipelineOpenError)) throw err
        failed = err.node
        why = err
        continue
      }
      try {
        for (const pk of this.packets) await p.send(pk.offsetBytes, pk.data, { sync: pk.sync, last: pk.last })
        this.pipeline = p
        return
      } catch (err) {
        if (p.failedNode === undefined) throw err
        p.abort(toLoamError(err))
        failed = p.failedNode
        why = err
      }
    }
  }
}
