// Copies a local replica to other datanodes (a REPLICATE command): read, verify,
// and push it down a write pipeline, as a client would.
import { BlockPipeline } from '../client/block-pipeline.js'
import { firstBadChunk } from '../common/checksum.js'
import { CHUNK_BYTES } from '../limits.js'
import { LoamError } from '../rpc/errors.js'
import type { BlockRef, DatanodeInfo } from '../rpc/messages.js'
import type { ReplicaStore } from './replica-store.js'

/** token: the namenode's copying token for the block, which the targets check. */
export async function transferReplica(store: ReplicaStore, block: BlockRef, targets: DatanodeInfo[], clientName: string, timeoutMs: number, token: Uint8Array | undefined): Promise<BlockRef> {
  const local = store.get(block.id)
  if (!local || local.state !== 'finalized') throw new LoamError('not-found', `block ${block.id}: no finalized replica here to copy`)
  if (local.genStamp !== block.genStamp) throw new LoamError('stale-generation', `block ${block.id}: local generation ${local.genStamp}, asked to copy ${block.genStamp}`)
  const ref = { id: local.id, genStamp: local.genStamp, lengthBytes: local.lengthBytes }
  const pipeline = await BlockPipeline.open({ block: ref, offsetBytes: 0, locations: targets, corrupt: [], complete: true, token }, clientName, timeoutMs)
  try {
    for await (const chunk of store.readChunks(local.id, local.genStamp, 0, 0)) {
      // Never spread a damaged copy: the caller reports it and the namenode picks another source.
      const bad = firstBadChunk(chunk.data, chunk.checksums)
      if (bad >= 0) throw new LoamError('corrupt', `block ${local.id}: local replica fails its checksum at chunk ${chunk.offsetBytes / CHUNK_BYTES + bad}`)
      await pipeline.send(chunk.offsetBytes, chunk.data)
    }
    const last = await pipeline.send(local.lengthBytes, Buffer.alloc(0), { last: true })
    await pipeline.finish(last)
    return ref
  } catch (err) {
    pipeline.abort(err as Error)
    throw err
  }
}
