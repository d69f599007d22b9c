// One datanode's part of a write pipeline (client -> dn1 -> dn2 -> dn3): each
// packet is forwarded downstream before it is written here, and acknowledged
// upstream, in order, only once it is on this disk (fsynced when asked) and
// every node downstream has acknowledged it.
//
// A pipeline either creates a replica or, with req.update, reopens the one
// here at req.oldGenStamp under the block's new gen stamp and writes into it
// in place: packets at any offset, in arrival order. With req.copyFromBlock as
// well (copy-on-write for a block a snapshot shares), the block is a new one:
// its replica is first made here as a copy of this node's finalized replica of
// req.copyFromBlock, which stays as it is, and the copy is updated. req.resize
// cuts or zero-extends the replica before the first packet.
import { RpcClient, type ClientStream } from '../rpc/client.js'
import { CHUNK_BYTES, DISK_WRITE_BYTES_MAX, PACKET_BYTES_MAX, WRITE_BEHIND_BYTES } from '../limits.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { FrameKind, type BlockRef, type Packet, type PacketAck, type WriteBlockRequest, type WriteBlockResponse } from '../rpc/messages.js'
import { codecs, decodeBody } from '../rpc/schema.js'
import type { CallContext } from '../rpc/server.js'
import { DatanodeService, type DatanodeServiceSpec } from '../rpc/service.js'
import type { ReplicaStore, ReplicaWriter } from './replica-store.js'

export interface PipelineNode {
  readonly id: string
  readonly store: ReplicaStore
  readonly metrics: { bytesWritten: number; checksumFailures: number }
  blockReceived(block: BlockRef): Promise<void>
}

interface InFlight {
  seqno: number
  local: boolean
  downstream: boolean
}

function batchLength(pieces: Buffer[]): number {
  return pieces.reduce((sum, p) => sum + p.length, 0)
}

/** The replica this pipeline writes: a new one, the one here reopened for an update, or a copy of another made for one. */
async function openReplica(store: ReplicaStore, req: WriteBlockRequest, block: BlockRef): Promise<ReplicaWriter> {
  if (!req.update) {
    if (req.copyFromBlock) throw new LoamError('invalid-argument', `block ${block.id}: a copy of block ${req.copyFromBlock} is made only for an update`)
    return store.createRbw(block.id, block.genStamp)
  }
  if (req.copyFromBlock) return store.cloneForUpdate(req.copyFromBlock, req.copyFromGenStamp, block.id, block.genStamp)
  return store.openForUpdate(block.id, req.oldGenStamp, block.genStamp)
}

export async function runWritePipeline(node: PipelineNode, req: WriteBlockRequest, ctx: CallContext): Promise<BlockRef> {
  const upstream = ctx.stream
  if (!upstream) throw new LoamError('protocol', 'WriteBlock is a stream')
  if (!req.block || req.block.id <= 0) throw new LoamError('invalid-argument', 'WriteBlock names no block')
  const block = req.block
  const writer = await openReplica(node.store, req, block)
  // A failed start leaves an updated (or copied) replica for block recovery (its bytes predate us), and removes a new one.
  const giveUp = (): Promise<void> => (req.update ? writer.release() : writer.abort())
  if (req.resize) {
    try {
      await writer.resize(req.resizeBytes)
    } catch (err) {
      await giveUp().catch(() => undefined)
      throw err
    }
  }

  let mirrorClient: RpcClient<DatanodeServiceSpec> | undefined
  let mirror: ClientStream<WriteBlockResponse> | undefined
  const next = req.downstream[0]
  if (next) {
    mirrorClient = new RpcClient({ host: next.host, port: next.rpcPort }, DatanodeService, { peerName: `datanode ${next.id}` })
    try {
      mirror = await mirrorClient.openStream('WriteBlock', { ...req, block, downstream: req.downstream.slice(1) })
    } catch (err) {
      await giveUp()
      mirrorClient.close()
      const message = `cannot reach the next datanode: ${(err as Error).message}`
      // Tell the writer which node failed, so its recovery leaves that one out.
      upstream.send(FrameKind.ACK, codecs.PacketAck.encode({ seqno: 0, ok: false, failedNode: next.id, message }))
      throw new LoamError('unavailable', `pipeline: datanode ${next.id}: ${message}`)
    }
  }

  const inflight: InFlight[] = []
  let failure: { node: string; message: string } | undefined
  const fail = (nodeId: string, err: unknown): void => {
    if (failure) return
    failure = { node: nodeId, message: toLoamError(err).message }
    const ack: PacketAck = { seqno: inflight[0]?.seqno ?? 0, ok: false, failedNode: nodeId, message: failure.message }
    upstream.send(FrameKind.ACK, codecs.PacketAck.encode(ack))
  }
  const flushAcks = (): void => {
    // Acknowledgements are cumulative: one for the newest packet done stands for every one before it.
    let done: InFlight | undefined
    while (!failure && inflight.length > 0 && inflight[0]!.local && (inflight[0]!.downstream || !mirror)) done = inflight.shift()
    if (done) upstream.send(FrameKind.ACK, codecs.PacketAck.encode({ seqno: done.seqno, ok: true, failedNode: '', message: '' }))
  }

  // Downstream acknowledgements arrive in packet order.
  const downstreamDone = mirror
    ? (async () => {
        for (;;) {
          const frame = await mirror.next()
          if (!frame) return
          const ack = decodeBody(codecs.PacketAck, frame.header.body, 'packet acknowledgement')
          if (!ack.ok) throw new LoamError('io', `${ack.failedNode}: ${ack.message}`)
          for (const p of inflight) {
            if (p.seqno > ack.seqno) break
            p.downstream = true
          }
          flushAcks()
        }
      })().catch((err: unknown) => {
        const e = toLoamError(err)
        const failedNode = /^([^:]+): /.exec(e.message)?.[1] ?? next!.id
        fail(e.code === 'io' ? failedNode : next!.id, err)
      })
    : Promise.resolve()

  // An updated or resized replica starts at the length it has, not 0.
  let lengthBytes = writer.lengthBytes
  let finished = false
  // Packets received and forwarded but not yet on this disk: written together while more are queued.
  let batch: Array<{ entry: InFlight; packet: Packet; payload: Buffer }> = []
  let batchBytes = 0
  // Write-behind: flush in the background as data arrives instead of all of it when the block ends.
  let unflushedBytes = 0
  let flushing: Promise<void> | undefined
  const writeBatch = async (): Promise<void> => {
    const packets = batch
    batch = []
    batchBytes = 0
    const withData = packets.filter((p) => p.payload.length > 0)
    const first = withData[0]
    if (first) {
      const data = withData.map((p) => p.payload)
      const bytes = batchLength(data)
      const sums = Buffer.concat(withData.map((p) => p.packet.checksums))
      // The last node of the pipeline checks every packet (as in HDFS): the same bytes pass through every node.
      await writer.write(first.packet.offsetBytes, data, sums, { verify: !mirror })
      node.metrics.bytesWritten += bytes
      lengthBytes = Math.max(lengthBytes, first.packet.offsetBytes + bytes)
      unflushedBytes += bytes
    }
    const tail = packets[packets.length - 1]!.packet
    if (!tail.last && !tail.sync && !flushing && unflushedBytes >= WRITE_BEHIND_BYTES) {
      unflushedBytes = 0
      flushing = writer.sync().then(
        () => (flushing = undefined),
        () => (flushing = undefined), // a failing disk shows at the next write, sync or finalize
      )
    }
    if (tail.last) {
      await flushing
      const info = await writer.finalize(lengthBytes)
      await node.blockReceived({ id: info.id, genStamp: info.genStamp, lengthBytes: info.lengthBytes })
      finished = true
    } else if (tail.sync) {
      await flushing
      await writer.sync()
    }
    for (const p of packets) p.entry.local = true
    flushAcks()
  }

  const writeBatchOrFail = async (): Promise<void> => {
    try {
      await writeBatch()
    } catch (err) {
      if (toLoamError(err).code === 'corrupt') node.metrics.checksumFailures++
      fail(node.id, err)
    }
  }

  try {
    while (!failure && !finished) {
      // A writer that vanishes ends the stream here: the error goes up and the replica is kept for recovery.
      const frame = await upstream.next()
      if (!frame) throw new LoamError('unavailable', 'the writer closed the stream before the last packet')
      if (frame.header.kind !== FrameKind.DATA) continue
      const packet = decodeBody(codecs.Packet, frame.header.body, 'packet header')
      if (frame.payload.length > PACKET_BYTES_MAX) throw new LoamError('protocol', `a packet of ${frame.payload.length} bytes is over the limit of ${PACKET_BYTES_MAX}`)
      const entry: InFlight = { seqno: packet.seqno, local: false, downstream: false }
      inflight.push(entry)
      if (mirror && !mirror.send(FrameKind.DATA, frame.header.body ?? new Uint8Array(), frame.payload)) await mirror.drain()
      const previous = batch[batch.length - 1]
      // One write takes packets that follow each other, each but the last of whole chunks (so their checksums
      // line up as those of one payload); any other packet goes to disk on its own, in order.
      const joins = !previous || (previous.packet.offsetBytes + previous.payload.length === packet.offsetBytes && previous.payload.length % CHUNK_BYTES === 0)
      if (previous && (!joins || batchBytes + frame.payload.length > DISK_WRITE_BYTES_MAX)) await writeBatchOrFail()
      if (failure) break
      batch.push({ entry, packet, payload: frame.payload })
      batchBytes += frame.payload.length
      // Write now unless more packets are already waiting to join this write.
      if (packet.last || packet.sync || upstream.queue.waiting === 0) await writeBatchOrFail()
    }
    if (mirror) {
      if (failure) mirror.abort(new LoamError('io', 'pipeline failed upstream'))
      else await mirror.result.catch(() => undefined)
      await downstreamDone
    }
    flushAcks()
    if (failure) throw new LoamError('io', `pipeline failed at ${failure.node}: ${failure.message}`)
    return { id: block.id, genStamp: block.genStamp, lengthBytes }
  } finally {
    // An unfinished replica stays on disk: if the writer died, lease recovery finalizes what it holds.
    if (!finished) await writer.release().catch(() => undefined)
    mirrorClient?.close()
  }
}
