// The client end of one block's write pipeline: sends packets, keeps a bounded
// window of unacknowledged ones, and settles each when the whole pipeline has it.
import { PIPELINE_PACKETS_IN_FLIGHT_MAX } from '../limits.js'
import { RpcClient, type ClientStream } from '../rpc/client.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { FrameKind, type BlockRef, type LocatedBlock, type WriteBlockRequest, type WriteBlockResponse } from '../rpc/messages.js'
import { codecs, decodeBody } from '../rpc/schema.js'
import { DatanodeService, type DatanodeServiceSpec } from '../rpc/service.js'
import { chunkChecksums } from '../common/checksum.js'

/** The first node of a new pipeline could not be reached. */
export class PipelineOpenError extends LoamError {
  constructor(
    readonly node: string,
    cause: unknown,
  ) {
    super('unavailable', `cannot open a write pipeline at datanode ${node}: ${(cause as Error).message}`)
  }
}

interface Waiter {
  seqno: number
  resolve(): void
  reject(err: Error): void
}

export class BlockPipeline {
  private seqno = 0
  private acked = -1
  private readonly waiters: Waiter[] = []
  private windowWaiter: (() => void) | undefined
  private error: LoamError | undefined
  private readonly ackLoop: Promise<void>
  /** The node the pipeline names as failed; when it names none, the first node is the one we lost. */
  failedNode: string | undefined

  private constructor(
    readonly block: BlockRef,
    private readonly client: RpcClient<DatanodeServiceSpec>,
    private readonly stream: ClientStream<WriteBlockResponse>,
    readonly nodes: string[],
  ) {
    this.ackLoop = this.readAcks()
  }

  /**
   * mode.oldGenStamp: update the existing replicas in place. mode.copyFrom
   * (copy-on-write, located.block a new block id): each node first makes the
   * block's replica as a copy of its own finalized replica of copyFrom, which
   * stays as it is, then updates the copy. mode.resizeBytes: cut or
   * zero-extend the replicas first.
   */
  static async open(
    located: LocatedBlock,
    clientName: string,
    timeoutMs: number,
    mode: { oldGenStamp?: number; copyFrom?: BlockRef | null; resizeBytes?: number } = {},
  ): Promise<BlockPipeline> {
    const first = located.locations[0]
    const copyFrom = mode.copyFrom ?? undefined
    if (!located.block || !first) throw new LoamError('no-space', 'the namenode gave no datanode for the new block')
    const client = new RpcClient({ host: first.host, port: first.rpcPort }, DatanodeService, { peerName: `datanode ${first.id}`, timeoutMs })
    try {
      const request: WriteBlockRequest = {
        block: located.block,
        downstream: located.locations.slice(1),
        clientName,
        update: mode.oldGenStamp !== undefined || copyFrom !== undefined,
        oldGenStamp: mode.oldGenStamp ?? copyFrom?.genStamp ?? 0,
        resize: mode.resizeBytes !== undefined,
        resizeBytes: mode.resizeBytes ?? 0,
        copyFromBlock: copyFrom?.id ?? 0,
        copyFromGenStamp: copyFrom?.genStamp ?? 0,
        // The namenode's tokens for this block (and the one it is copied from): the pipeline passes them on.
        token: located.token,
        copyFromToken: located.copiedFromToken,
      }
      const stream = await client.openStream('WriteBlock', request, timeoutMs)
      return new BlockPipeline(located.block, client, stream, located.locations.map((l) => l.id))
    } catch (err) {
      client.close()
      throw new PipelineOpenError(first.id, err)
    }
  }

  /** Sends one packet (data at a chunk-aligned offset in the block, any offset when updating); resolves once it is sent, returns its seqno. */
  async send(offsetBytes: number, data: Buffer, flags: { sync?: boolean; last?: boolean } = {}): Promise<number> {
    while (!this.error && this.seqno - this.acked > PIPELINE_PACKETS_IN_FLIGHT_MAX) {
      await new Promise<void>((resolve) => (this.windowWaiter = resolve))
    }
    if (this.error) throw this.error
    const seqno = this.seqno++
    const body = codecs.Packet.encode({ seqno, offsetBytes, checksums: chunkChecksums(data), last: flags.last ?? false, sync: flags.sync ?? false })
    if (!this.stream.send(FrameKind.DATA, body, data)) await this.stream.drain()
    return seqno
  }

  /** Resolves when every node of the pipeline has acknowledged seqno. */
  acknowledged(seqno: number): Promise<void> {
    if (this.error) return Promise.reject(this.error)
    if (seqno <= this.acked) return Promise.resolve()
    return new Promise((resolve, reject) => this.waiters.push({ seqno, resolve, reject }))
  }

  /** Waits for the last packet's acknowledgement and the pipeline's response. */
  async finish(lastSeqno: number): Promise<void> {
    try {
      await this.acknowledged(lastSeqno)
      await this.stream.result
      await this.ackLoop
    } finally {
      this.client.close()
    }
  }

  abort(reason: Error): void {
    this.fail(toLoamError(reason))
    this.stream.abort(reason)
    this.client.close()
  }

  private async readAcks(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.stream.next()
        if (!frame) return
        if (frame.header.kind !== FrameKind.ACK) continue
        const ack = decodeBody(codecs.PacketAck, frame.header.body, 'packet acknowledgement')
        if (!ack.ok) {
          this.failedNode = ack.failedNode || this.nodes[0]
          throw new LoamError('io', `write pipeline for block ${this.block.id} failed at datanode ${ack.failedNode}: ${ack.message}`)
        }
        this.acked = ack.seqno
        while (this.waiters.length > 0 && this.waiters[0]!.seqno <= this.acked) this.waiters.shift()!.resolve()
        this.windowWaiter?.()
        this.windowWaiter = undefined
      }
    } catch (err) {
      this.fail(toLoamError(err))
    }
  }

  /** The newest packet every node has acknowledged, -1 before any. */
  get ackedSeqno(): number {
    return this.acked
  }

  /** The seqno of the last packet sent, -1 before any. */
  get lastSent(): number {
    return this.seqno - 1
  }

  private fail(err: LoamError): void {
    this.failedNode ??= this.nodes[0]
    this.error ??= err
    for (const w of this.waiters.splice(0)) w.reject(this.error)
    this.windowWaiter?.()
    this.windowWaiter = undefined
  }
}
