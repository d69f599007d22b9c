// Writes one file: cuts the byte stream into blocks and 64 KiB packets, asks
// the namenode for each block, and streams it down a datanode pipeline. A
// block finishes (last acks, fsync on every node) in the background while the
// next one streams; close() waits for all of them.
import { CHUNK_BYTES } from '../limits.js'
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

/**
 * One block on its way to the datanodes. It keeps every packet it sent until
 * the block is complete: if its pipeline fails, the block gets a new generation
 * stamp and targets without the failed node, and the packets go again.
 */
class BlockWrite {
  private readonly packets: SentPacket[] = []

  private constructor(
    private readonly writer: FileWriter,
    private pipeline: BlockPipeline,
    private recoveries: number,
  ) {}

  /** Opens the block's first pipeline, leaving out first nodes that cannot be reached. */
  static async open(writer: FileWriter, located: LocatedBlock): Promise<BlockWrite> {
    let recoveries = 0
    for (;;) {
      if (!located.block) throw new LoamError('protocol', 'the namenode allocated no block')
      try {
        return new BlockWrite(writer, await writer.openPipeline(located), recoveries)
      } catch (err) {
        if (!(err instanceof PipelineOpenError)) throw err
        writer.failedNodes.add(err.node)
        if (++recoveries > RECOVERIES_PER_BLOCK_MAX) throw err
        located = await writer.recoverPipeline(located.block)
      }
    }
  }

  get block(): BlockRef {
    return this.pipeline.block
  }

  async send(packet: SentPacket): Promise<void> {
    this.packets.push(packet)
    const p = this.pipeline
    try {
      await p.send(packet.offsetBytes, packet.data, { sync: packet.sync, last: packet.last })
    } catch (err) {
      if (p.failedNode === undefined) throw err
      p.abort(toLoamError(err))
      await this.replaceAndReplay(p.block, p.failedNode, err) // the replay includes this packet
    }
  }

  /** Every packet sent so far is acknowledged by every node of the pipeline. */
  acknowledged(): Promise<void> {
    return this.guarded((p) => p.acknowledged(p.lastSent))
  }

  /** The last packet is acknowledged and every node has answered: the block is durable. */
  finish(): Promise<void> {
    return this.guarded((p) => p.finish(p.lastSent))
  }

  abort(reason: Error): void {
    this.pipeline.abort(reason)
  }

  /** Runs fn on the pipeline; if the pipeline fails, replaces it (replaying every packet) and runs fn again. */
  private async guarded<T>(fn: (p: BlockPipeline) => Promise<T>): Promise<T> {
    for (;;) {
      const p = this.pipeline
      try {
        return await fn(p)
      } catch (err) {
        if (p.failedNode === undefined) throw err
        p.abort(toLoamError(err))
        await this.replaceAndReplay(p.block, p.failedNode, err)
      }
    }
  }

  private async replaceAndReplay(block: BlockRef, failedNode: string, cause: unknown): Promise<void> {
    let failed = failedNode
    let why = cause
    for (;;) {
      this.writer.failedNodes.add(failed)
      if (++this.recoveries > RECOVERIES_PER_BLOCK_MAX) {
        throw new LoamError('io', `${this.writer.path}: giving up on block ${block.id} after ${RECOVERIES_PER_BLOCK_MAX} pipeline failures: ${toLoamError(why).message}`)
      }
      const located = await this.writer.recoverPipeline(block)
      if (!located.block) throw new LoamError('protocol', 'the namenode gave no block for the recovered pipeline')
      block = located.block
      let p: BlockPipeline
      try {
        p = await this.writer.openPipeline(located)
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

export class FileWriter {
  private current: BlockWrite | undefined
  /** The previous block, finishing while this one streams (at most one: memory holds two blocks at most). */
  private finishing: Promise<void> | undefined
  /** The last block completed, and its length: its generation is read when needed, as a recovery may change it. */
  private previous: { block: BlockWrite; lengthBytes: number } | undefined
  /** Bytes of the current block sent in full chunks. */
  private blockBytes = 0
  /** The chunk being filled (allocated at the first write); it starts at blockBytes in the current block. */
  private chunk: Buffer | undefined
  private chunkBytes = 0
  readonly failedNodes = new Set<string>()
  private closed = false
  bytesWritten = 0

  constructor(
    private readonly client: LoamClient,
    readonly path: string,
    readonly status: FileStatus,
    leaseLimitMs: number,
  ) {
    client.writerOpened(leaseLimitMs)
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.closed) throw new LoamError('invalid-argument', `${this.path}: write after close`)
    let pos = 0
    this.chunk ??= Buffer.allocUnsafe(CHUNK_BYTES)
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
    await this.finishing
    if (this.chunkBytes === 0 && !this.current) return
    // A partial chunk stays buffered: the next packet rewrites it whole.
    await this.send({ offsetBytes: this.blockBytes, data: this.chunkCopy(), sync: true, last: false })
    await this.current!.acknowledged()
  }

  async close(): Promise<FileStatus> {
    if (this.closed) throw new LoamError('invalid-argument', `${this.path}: already closed`)
    try {
      if (this.chunkBytes > 0) await this.sendChunk(true)
      else if (this.current) await this.endBlock()
      await this.finishing
      return await this.client.complete(this.path, this.status.inodeId, this.previousBlock())
    } finally {
      this.finish()
    }
  }

  /** Gives up: the pipelines are torn down; the namenode recovers the file when the lease lapses. */
  abort(reason: Error = new LoamError('io', 'write aborted')): void {
    this.finish()
    this.current?.abort(reason)
    this.current = undefined
  }

  /** @internal for BlockWrite */
  openPipeline(located: LocatedBlock): Promise<BlockPipeline> {
    return BlockPipeline.open(located, this.client.clientName, this.client.timeoutMs)
  }

  /** @internal for BlockWrite */
  recoverPipeline(block: BlockRef): Promise<LocatedBlock> {
    return this.client.recoverPipeline(this.path, this.status.inodeId, block, [...this.failedNodes])
  }

  /** The filled part of the chunk, copied: packets are kept for replay while the chunk buffer is reused. */
  private chunkCopy(): Buffer {
    return this.chunk ? Buffer.from(this.chunk.subarray(0, this.chunkBytes)) : Buffer.alloc(0)
  }

  private finish(): void {
    if (!this.closed) this.client.writerClosed()
    this.closed = true
  }

  private async sendChunk(last: boolean): Promise<void> {
    const ends = last || this.blockBytes + this.chunkBytes === this.status.blockSizeBytes
    await this.send({ offsetBytes: this.blockBytes, data: this.chunkCopy(), sync: false, last: false })
    this.blockBytes += this.chunkBytes
    this.chunkBytes = 0
    assert(this.blockBytes <= this.status.blockSizeBytes, 'a block never exceeds its size')
    if (ends) await this.endBlock()
  }

  /** The block is complete: an empty last packet; its acknowledgements are awaited beside the next block. */
  private async endBlock(): Promise<void> {
    const block = this.current!
    await this.send({ offsetBytes: this.blockBytes, data: Buffer.alloc(0), sync: false, last: true })
    await this.finishing
    this.finishing = block.finish()
    this.finishing.catch(() => undefined) // observed by the next endBlock, sync or close
    this.previous = { block, lengthBytes: this.blockBytes }
    this.current = undefined
    this.blockBytes = 0
  }

  private async send(packet: SentPacket): Promise<void> {
    if (!this.current) {
      const located = await this.client.addBlock(this.path, this.status.inodeId, this.previousBlock(), [...this.failedNodes])
      this.current = await BlockWrite.open(this, located)
    }
    await this.current.send(packet)
  }

  private previousBlock(): BlockRef | null {
    return this.previous ? { ...this.previous.block.block, lengthBytes: this.previous.lengthBytes } : null
  }
}
