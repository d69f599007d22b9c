// Where every block's replicas are. Not persisted: rebuilt from the namespace
// at start (which blocks exist) and from datanode reports (where they live).
import type { BlockRef } from '../rpc/messages.js'

export interface BlockInfo {
  id: number
  genStamp: number
  lengthBytes: number
  inodeId: number
  replication: number
  complete: boolean
  replicas: Set<string>
  corrupt: Set<string>
  /** Nodes that may hold the block while it is being written: its pipeline, and nodes reporting it unfinished. */
  writers: Set<string>
  /** When the writer committed its length (0 for blocks loaded at start). */
  committedMs: number
  /** Inodes whose block lists name this block: more than one once a snapshot shares it. */
  refs: number
}

export type ReplicaVerdict = 'ok' | 'unknown' | 'stale'

export class BlockMap {
  readonly blocks = new Map<number, BlockInfo>()

  add(block: BlockRef, inodeId: number, replication: number, complete: boolean): BlockInfo {
    const existing = this.blocks.get(block.id)
    if (existing) {
      existing.genStamp = block.genStamp
      existing.lengthBytes = block.lengthBytes
      existing.replication = replication
      existing.complete = complete
      return existing
    }
    const info: BlockInfo = { ...block, inodeId, replication, complete, replicas: new Set(), corrupt: new Set(), writers: new Set(), committedMs: 0, refs: 1 }
    this.blocks.set(block.id, info)
    return info
  }

  /** One more inode names the block (a snapshot's copy, or another at load). */
  ref(id: number): void {
    const info = this.blocks.get(id)
    if (info) info.refs++
  }

  /** One inode less names the block; true (and the block is forgotten) when none is left. */
  unref(id: number): boolean {
    const info = this.blocks.get(id)
    if (!info) return false
    if (--info.refs > 0) return false
    this.blocks.delete(id)
    return true
  }


  /** Records that node holds a replica; says whether that replica should be kept. */
  addReplica(nodeId: string, replica: BlockRef): ReplicaVerdict {
    const info = this.blocks.get(replica.id)
    if (!info) return 'unknown'
    if (replica.genStamp < info.genStamp) {
      info.replicas.delete(nodeId)
      return 'stale'
    }
    if (info.complete && replica.lengthBytes !== info.lengthBytes) {
      info.replicas.delete(nodeId)
      return 'stale'
    }
    if (!info.corrupt.has(nodeId)) info.replicas.add(nodeId)
    return 'ok'
  }

  removeReplica(nodeId: string, blockId: number): void {
    const info = this.blocks.get(blockId)
    info?.replicas.delete(nodeId)
    info?.corrupt.delete(nodeId)
  }

  markCorrupt(nodeId: string, blockId: number): BlockInfo | undefined {
    const info = this.blocks.get(blockId)
    if (!info) return undefined
    info.replicas.delete(nodeId)
    info.corrupt.add(nodeId)
    return info
  }

  /** Blocks with at least one healthy replica, for leaving safe mode. */
  reportedCount(): number {
    let n = 0
    for (const b of this.blocks.values()) if (b.replicas.size > 0 || !b.complete) n++
    return n
  }
}
