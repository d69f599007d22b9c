// Delay scheduling (Zaharia et al., EuroSys 2010, Algorithm 2): a job that is
// offered a slot where none of its tasks' data lives declines it and waits; once
// it has been skipped for `nodeWaitMs` (W1) it accepts rack-local slots, after a
// further `rackWaitMs` (W2) any slot. A launch resets the wait and sets the
// job's level to the locality it got, so a job that found node-local slots again
// goes back to waiting for them. Pure functions over a job's DelayState.

export type Locality = 'NODE_LOCAL' | 'RACK_LOCAL' | 'ANY' | 'NO_PREF'

/** 0: node-local only; 1: rack-local too; 2: anywhere. */
export type LocalityLevel = 0 | 1 | 2
export const LEVEL_NODE: LocalityLevel = 0
export const LEVEL_RACK: LocalityLevel = 1
export const LEVEL_ANY: LocalityLevel = 2

export interface LocalityWaits {
  /** W1: skipped this long at node level, a job accepts rack-local slots. */
  readonly nodeWaitMs: number
  /** W2: skipped this long more (or this long after a rack-local launch), any slot. */
  readonly rackWaitMs: number
}

/** One job's wait: the level of its last launch and the time it has been skipped since. */
export interface DelayState {
  level: LocalityLevel
  waitedMs: number
}

export function initialDelay(): DelayState {
  return { level: LEVEL_NODE, waitedMs: 0 }
}

/** The least local level the job may launch at now. */
export function allowedLevel(s: DelayState, w: LocalityWaits): LocalityLevel {
  if (s.level === LEVEL_ANY) return LEVEL_ANY
  if (s.level === LEVEL_RACK) return s.waitedMs >= w.rackWaitMs ? LEVEL_ANY : LEVEL_RACK
  if (s.waitedMs >= w.nodeWaitMs + w.rackWaitMs) return LEVEL_ANY
  return s.waitedMs >= w.nodeWaitMs ? LEVEL_RACK : LEVEL_NODE
}

/** The job was skipped (declined a slot for locality) and `ms` passed before the next decision. */
export function accrue(s: DelayState, ms: number): void {
  s.waitedMs += ms
}

/** A launch at `locality` resets the wait; a task without a preference leaves the job's wait alone. */
export function afterLaunch(s: DelayState, locality: Locality): void {
  if (locality === 'NO_PREF') return
  s.level = locality === 'NODE_LOCAL' ? LEVEL_NODE : locality === 'RACK_LOCAL' ? LEVEL_RACK : LEVEL_ANY
  s.waitedMs = 0
}

/** Further skipped time after which allowedLevel rises; undefined when it is already ANY. */
export function msUntilNextLevel(s: DelayState, w: LocalityWaits): number | undefined {
  const allowed = allowedLevel(s, w)
  if (allowed === LEVEL_ANY) return undefined
  if (s.level === LEVEL_RACK) return w.rackWaitMs - s.waitedMs
  return (allowed === LEVEL_NODE ? w.nodeWaitMs : w.nodeWaitMs + w.rackWaitMs) - s.waitedMs
}

/** The locality a task with these preferences gets on an agent on datanode `nodeId` (if any) in `rack`. */
export function localityOf(preferredNodes: readonly string[], preferredRacks: readonly string[], nodeId: string | undefined, rack: string): Locality {
  if (preferredNodes.length === 0 && preferredRacks.length === 0) return 'NO_PREF'
  if (nodeId !== undefined && preferredNodes.includes(nodeId)) return 'NODE_LOCAL'
  if (preferredRacks.includes(rack)) return 'RACK_LOCAL'
  return 'ANY'
}
