// Block placement: which datanodes receive a new block, or the missing replicas
// of an existing one. Pure: the caller passes the topology and a random source,
// so equal inputs give equal targets and the policy can be simulated at a scale
// (1,000 nodes) no test cluster has. The policy is HDFS's default one.

import { REPLICATION_MAX } from '../limits.js'
import { LoamError, assert } from '../rpc/errors.js'

/**
 * Free space a node must keep beyond the block itself to be a target, so a
 * node that reported "exactly one block left" is not handed a block it will
 * fail to write once its metadata and checksum files are counted.
 */
export const PLACEMENT_RESERVE_BYTES = 1024 * 1024

/**
 * A node whose active transfers exceed this multiple of the mean over eligible
 * nodes loses every random comparison to a less busy one (HDFS's
 * considerLoad factor): free space alone would keep feeding a node that is
 * already the bottleneck of many pipelines.
 */
export const PLACEMENT_LOAD_FACTOR_MAX = 2

export interface PlacementNode {
  id: string
  /** e.g. '/r1' */
  rack: string
  host: string
  /** Free space the node reported. */
  remainingBytes: number
  /** Load: block transfers in progress on the node. */
  activeTransfers: number
  state: 'live' | 'dead' | 'decommissioning' | 'decommissioned'
}

export interface PlacementRequest {
  /**
   * The block's replication factor: replicas wanted in total, counting
   * `existing`. A new block gets up to `replication` targets; a block being
   * re-replicated gets up to `replication - existing.length`.
   */
  replication: number
  /** A target needs `blockSizeBytes + PLACEMENT_RESERVE_BYTES` remaining. */
  blockSizeBytes: number
  /** Id of the writer's datanode, when the writer runs on one. */
  writerNode?: string
  /** Nodes that already hold a replica: never chosen, but they count for rack spreading. */
  existing?: string[]
  /** Nodes that must not be chosen (e.g. one that failed in a pipeline). */
  excluded?: string[]
  /** Uniform in [0, 1); injected so that placement is deterministic under test. */
  random: () => number
}

/**
 * Choose the datanodes for a block's (remaining) replicas, in pipeline order.
 *
 * Placed replicas (existing ones first, in the order given, then chosen ones)
 * follow HDFS's rules: the first on the writer's node (else on the writer's
 * rack, else anywhere); the second on another rack; the third on the second's
 * rack on another node (if the first two share a rack, on another rack);
 * further ones on the racks holding the fewest replicas so far. Within those
 * rules a node is picked by "power of two choices": two random candidates,
 * the less loaded / roomier one wins, which favours free space without piling
 * every block onto the single emptiest node.
 *
 * Returns fewer targets than wanted when too few nodes qualify, [] when none;
 * the caller decides whether that is an error. O(n · targets).
 */
export function chooseTargets(nodes: readonly PlacementNode[], req: PlacementRequest): string[] {
  if (!Number.isInteger(req.replication) || req.replication < 0 || req.replication > REPLICATION_MAX) {
    throw new LoamError('invalid-argument', `placement: replication ${req.replication} is not an integer from 0 to ${REPLICATION_MAX}`)
  }
  if (!Number.isFinite(req.blockSizeBytes) || req.blockSizeBytes < 0) {
    throw new LoamError('invalid-argument', `placement: block size ${req.blockSizeBytes} bytes is not a finite size >= 0`)
  }
  const existing = new Set(req.existing ?? [])
  const excluded = new Set(req.excluded ?? [])
  const wanted = Math.max(0, req.replication - existing.size)
  if (wanted === 0) return []

  const needBytes = req.blockSizeBytes + PLACEMENT_RESERVE_BYTES
  const byId = new Map<string, PlacementNode>()
  const eligible: PlacementNode[] = []
  let transfersTotal = 0
  for (const node of nodes) {
    // The namenode keys datanodes by id; a repeat means its topology is broken.
    assert(!byId.has(node.id), `placement: node id ${node.id} appears twice in the topology`)
    byId.set(node.id, node)
    if (node.state !== 'live' || !(node.remainingBytes >= needBytes)) continue
    if (existing.has(node.id) || excluded.has(node.id)) continue
    eligible.push(node)
    transfersTotal += node.activeTransfers
  }
  const busyAbove = eligible.length === 0 ? 0 : (PLACEMENT_LOAD_FACTOR_MAX * transfersTotal) / eligible.length
  const isBusy = (node: PlacementNode): boolean => node.activeTransfers > busyAbove

  // Racks of the placed replicas in order; undefined for an existing replica
  // on a node the topology no longer knows (its rack cannot be counted).
  const placedRacks: (string | undefined)[] = []
  const replicasOnRack = new Map<string, number>()
  const place = (rack: string | undefined): void => {
    placedRacks.push(rack)
    if (rack !== undefined) replicasOnRack.set(rack, (replicasOnRack.get(rack) ?? 0) + 1)
  }
  for (const id of existing) place(byId.get(id)?.rack)

  const taken = new Set<string>()
  const isFree = (node: PlacementNode): boolean => !taken.has(node.id)

  const randomIndex = (length: number): number => {
    const r = req.random()
    assert(r >= 0 && r < 1, `placement: random() returned ${r}, outside [0, 1)`)
    return Math.min(length - 1, Math.floor(r * length))
  }
  // Power of two choices: the better of two distinct random candidates.
  const pickGood = (candidates: readonly PlacementNode[]): PlacementNode | undefined => {
    if (candidates.length <= 1) return candidates[0]
    const i = randomIndex(candidates.length)
    let j = randomIndex(candidates.length - 1)
    if (j >= i) j += 1
    const a = candidates[i]
    const b = candidates[j]
    assert(a !== undefined && b !== undefined, 'placement: candidate index in range')
    return better(a, b, isBusy)
  }

  // The free eligible nodes on the racks holding the fewest placed replicas:
  // with one replica placed that is "any other rack", with none "anywhere".
  const chooseSpread = (): PlacementNode | undefined => {
    let fewest = Infinity
    for (const node of eligible) {
      if (isFree(node)) fewest = Math.min(fewest, replicasOnRack.get(node.rack) ?? 0)
    }
    return pickGood(eligible.filter((node) => isFree(node) && (replicasOnRack.get(node.rack) ?? 0) === fewest))
  }
  const chooseOnRack = (rack: string): PlacementNode | undefined =>
    pickGood(eligible.filter((node) => isFree(node) && node.rack === rack))

  const chooseFirst = (): PlacementNode | undefined => {
    if (req.writerNode === undefined) return chooseSpread()
    const writer = byId.get(req.writerNode)
    if (writer === undefined) return chooseSpread()
    if (eligible.includes(writer)) return writer
    // The writer's own node cannot take it: stay on its rack, as HDFS does, so
    // the first hop of the pipeline still avoids the core switch.
    return chooseOnRack(writer.rack) ?? chooseSpread()
  }
  const chooseThird = (): PlacementNode | undefined => {
    const [first, second] = placedRacks
    // The second's rack saves a cross-rack hop in the pipeline while two
    // racks already hold the block. If the first two share a rack (no other
    // rack had room), spreading moves the third off it instead.
    if (first !== undefined && second !== undefined && first !== second) {
      const onSecond = chooseOnRack(second)
      if (onSecond !== undefined) return onSecond
    }
    return chooseSpread()
  }

  const targets: string[] = []
  while (targets.length < wanted) {
    const k = placedRacks.length
    const node = k === 0 ? chooseFirst() : k === 2 ? chooseThird() : chooseSpread()
    if (node === undefined) break // every eligible node is taken
    taken.add(node.id)
    targets.push(node.id)
    place(node.rack)
  }

  assert(targets.length <= req.replication, `placement: ${targets.length} targets for replication ${req.replication}`)
  assert(new Set(targets).size === targets.length, `placement: duplicate target in ${targets.join(',')}`)
  for (const id of targets) {
    assert(!existing.has(id) && !excluded.has(id), `placement: chose ${id}, which is existing or excluded`)
  }
  return targets
}

/** The better target of two: not overloaded, then more free space, then fewer transfers. */
function better(a: PlacementNode, b: PlacementNode, isBusy: (node: PlacementNode) => boolean): PlacementNode {
  const aBusy = isBusy(a)
  if (aBusy !== isBusy(b)) return aBusy ? b : a
  if (a.remainingBytes !== b.remainingBytes) return a.remainingBytes > b.remainingBytes ? a : b
  return b.activeTransfers < a.activeTransfers ? b : a
}

/**
 * Whether the replicas on `ids` survive the loss of a rack as well as the
 * cluster allows: they span at least min(2, racks with live nodes, distinct
 * ids) racks. Counting the ids keeps a replication-1 block from being
 * reported as mis-placed (HDFS's verifyBlockPlacement does the same); an id
 * the topology does not know adds no rack; no ids at all is not spread.
 */
export function isRackSpread(nodes: readonly PlacementNode[], ids: readonly string[]): boolean {
  const liveRacks = new Set<string>()
  const rackOf = new Map<string, string>()
  for (const node of nodes) {
    if (node.state === 'live') liveRacks.add(node.rack)
    rackOf.set(node.id, node.rack)
  }
  const distinct = new Set(ids)
  const racks = new Set<string>()
  for (const id of distinct) {
    const rack = rackOf.get(id)
    if (rack !== undefined) racks.add(rack)
  }
  // max(1, ...): a block with no replica at all is not spread while any rack is up.
  return racks.size >= Math.min(2, liveRacks.size, Math.max(1, distinct.size))
}
