// The replication monitor's decisions, as a pure function of the block map and
// the nodes: which blocks to copy where (fewest live replicas first, a bounded
// number of streams per source node), which excess replicas to remove, and
// which corrupt replicas can go now that enough good copies exist.
import { chooseTargets, type PlacementNode } from './placement.js'

export interface ReplicaSet {
  id: number
  genStamp: number
  lengthBytes: number
  replication: number
  complete: boolean
  replicas: ReadonlySet<string>
  corrupt: ReadonlySet<string>
}

export interface ReplicationLimits {
  /** Copies one node may be the source of at a time. */
  streamsPerNode: number
  /** Copies already running per source node (they count against streamsPerNode). */
  streamsInUse?: ReadonlyMap<string, number>
  /** Copies scheduled in one round across the cluster. */
  workPerRound: number
}

export interface CopyWork {
  blockId: number
  source: string
  targets: string[]
}

export interface RemoveWork {
  blockId: number
  node: string
}

export interface ReplicationPlan {
  copies: CopyWork[]
  removals: RemoveWork[]
  /** Blocks with no usable replica at all: nothing can be done but report them. */
  missing: number[]
  underReplicated: number
}

/**
 * pending: block id -> nodes a copy was already scheduled to (not yet reported), which count as replicas.
 * cooling: block id -> nodes just told to delete their copy, not targets until that has happened.
 */
export function planReplication(
  blocks: Iterable<ReplicaSet>,
  nodes: readonly PlacementNode[],
  pending: ReadonlyMap<number, readonly string[]>,
  cooling: ReadonlyMap<number, readonly string[]>,
  limits: ReplicationLimits,
  random: () => number,
): ReplicationPlan {
  const byId = new Map(nodes.map((n) => [n.id, n]))
  const usable = (id: string): boolean => byId.get(id)?.state === 'live'
  const source = (id: string): boolean => {
    const s = byId.get(id)?.state
    return s === 'live' || s === 'decommissioning'
  }
  const plan: ReplicationPlan = { copies: [], removals: [], missing: [], underReplicated: 0 }
  const needy: Array<{ block: ReplicaSet; live: string[]; sources: string[]; wanted: string[] }> = []

  for (const block of blocks) {
    if (!block.complete) continue
    const live = [...block.replicas].filter(usable)
    const sources = [...block.replicas].filter(source)
    const scheduled = pending.get(block.id) ?? []
    if (sources.length === 0) {
      plan.missing.push(block.id)
      continue
    }
    if (live.length + scheduled.length < block.replication) {
      plan.underReplicated++
      needy.push({ block, live, sources, wanted: [...live, ...scheduled] })
    } else if (scheduled.length === 0 && live.length > block.replication) {
      for (const node of chooseExcess(live, live.length - block.replication, byId)) plan.removals.push({ blockId: block.id, node })
    }
    // A corrupt replica goes once enough good copies exist to replace it.
    if (live.length >= block.replication) for (const node of block.corrupt) plan.removals.push({ blockId: block.id, node })
  }

  // Fewest live replicas first: a block with one copy left is one failure from loss.
  needy.sort((a, b) => a.live.length - b.live.length || a.block.id - b.block.id)
  const streams = new Map(limits.streamsInUse ?? [])
  for (const { block, sources, wanted } of needy) {
    if (plan.copies.length >= limits.workPerRound) break
    // Decommissioning nodes are preferred sources: they serve no new writes.
    const candidates = sources
      .filter((s) => (streams.get(s) ?? 0) < limits.streamsPerNode)
      .sort((a, b) => Number(byId.get(b)?.state === 'decommissioning') - Number(byId.get(a)?.state === 'decommissioning') || (streams.get(a) ?? 0) - (streams.get(b) ?? 0))
    const src = candidates[0]
    if (!src) continue
    const targets = chooseTargets(nodes, {
      replication: block.replication,
      blockSizeBytes: block.lengthBytes,
      existing: wanted,
      excluded: [...block.replicas, ...block.corrupt, ...(cooling.get(block.id) ?? [])],
      random,
    })
    if (targets.length === 0) {
      // Every other node is taken: a corrupt copy only blocks its node, so it goes first and the node is a target later.
      for (const node of block.corrupt) plan.removals.push({ blockId: block.id, node })
      continue
    }
    streams.set(src, (streams.get(src) ?? 0) + 1)
    plan.copies.push({ blockId: block.id, source: src, targets })
  }
  return plan
}

/** Which n of these replicas to remove: from the most crowded rack first, then the fullest node. */
export function chooseExcess(replicas: readonly string[], n: number, nodes: ReadonlyMap<string, PlacementNode>): string[] {
  const left = [...replicas]
  const out: string[] = []
  while (out.length < n && left.length > 1) {
    const perRack = new Map<string, number>()
    for (const id of left) {
      const rack = nodes.get(id)?.rack ?? ''
      perRack.set(rack, (perRack.get(rack) ?? 0) + 1)
    }
    const crowded = left.filter((id) => (perRack.get(nodes.get(id)?.rack ?? '') ?? 0) > 1)
    const pool = crowded.length > 0 ? crowded : left
    pool.sort((a, b) => (nodes.get(a)?.remainingBytes ?? 0) - (nodes.get(b)?.remainingBytes ?? 0))
    const victim = pool[0]!
    out.push(victim)
    left.splice(left.indexOf(victim), 1)
  }
  return out
}
