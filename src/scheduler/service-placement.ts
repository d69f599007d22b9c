// Where a service instance runs: on the agent whose datanode holds the most of
// its volumes' bytes (its reads stay local, and its writes' first replica lands
// there), ties to the least loaded; with no data yet, the least loaded. Pure.
import * as R from './resources.js'

export interface ServiceCandidate {
  agentId: string
  /** The agent's datanode ('' if none). */
  nodeId: string
  total: R.Resources
  free: R.Resources
}

export interface ServicePlacement {
  agentId: string
  nodeId: string
  /** NODE_LOCAL when the node holds some of the volumes' bytes; ANY otherwise. */
  locality: 'NODE_LOCAL' | 'ANY'
}

/** Dominant share of an agent in use: max of cpus and memory used over its total. */
function load(c: ServiceCandidate): number {
  const used = R.sub(c.total, c.free)
  return Math.max(c.total.milliCpus > 0 ? used.milliCpus / c.total.milliCpus : 1, c.total.memMiB > 0 ? used.memMiB / c.total.memMiB : 1)
}

/**
 * The agent for one instance, or undefined when none has room. needsNode: only
 * agents with a datanode qualify (a volume is attached to a datanode).
 */
export function placeService(candidates: readonly ServiceCandidate[], need: R.Resources, bytesByNode: ReadonlyMap<string, number>, needsNode: boolean): ServicePlacement | undefined {
  let best: { c: ServiceCandidate; bytes: number; load: number } | undefined
  for (const c of candidates) {
    if (needsNode && !c.nodeId) continue
    if (!R.fits(need, c.free)) continue
    const entry = { c, bytes: bytesByNode.get(c.nodeId) ?? 0, load: load(c) }
    if (!best || entry.bytes > best.bytes || (entry.bytes === best.bytes && (entry.load < best.load || (entry.load === best.load && c.agentId < best.c.agentId)))) best = entry
  }
  if (!best) return undefined
  return { agentId: best.c.agentId, nodeId: best.c.nodeId, locality: best.bytes > 0 ? 'NODE_LOCAL' : 'ANY' }
}

/** Delay before restarting an instance that ended: doubling from 1 s per quick failure in a row, at most 30 s. */
export function restartDelayMs(quickFailures: number): number {
  if (quickFailures <= 0) return 0
  return Math.min(1_000 * 2 ** (quickFailures - 1), 30_000)
}

/** The volume instance `index` of a service uses for a spec volume: NAME for the first, NAME-i after (a StatefulSet's claims). */
export function instanceVolumeName(name: string, index: number): string {
  return index === 0 ? name : `${name}-${index}`
}
