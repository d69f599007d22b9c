// Dominant Resource Fairness (Ghodsi et al., NSDI 2011) over cpus and memory,
// with weights: a role's dominant share is the largest fraction of the cluster's
// cpus or memory its running tasks hold, divided by its weight. The next offer
// goes to the role with the lowest weighted dominant share that can use it, so
// busy roles converge to equal weighted dominant shares, and a role alone may
// take the whole cluster. Pure: no state beyond what is passed in.

import type { Resources } from './resources.js'

export interface RoleUsage {
  readonly name: string
  /** Positive; see ROLE_WEIGHT_MIN/MAX. */
  readonly weight: number
  /** Resources of the role's running tasks. */
  readonly usage: Resources
}

/** The larger of the cpu and memory fractions `usage` holds of `total`; a dimension the cluster lacks counts as 0. */
export function dominantShare(usage: Resources, total: Resources): number {
  const cpu = total.milliCpus > 0 ? usage.milliCpus / total.milliCpus : 0
  const mem = total.memMiB > 0 ? usage.memMiB / total.memMiB : 0
  return cpu > mem ? cpu : mem
}

export function dominantShares(usage: ReadonlyMap<string, Resources>, total: Resources): Map<string, number> {
  const out = new Map<string, number>()
  for (const [role, used] of usage) out.set(role, dominantShare(used, total))
  return out
}

export function weightedShare(role: RoleUsage, total: Resources): number {
  return dominantShare(role.usage, total) / role.weight
}

/** Offer order: lowest weighted dominant share first; equal shares by role name, so the order is deterministic. */
export function compareRoles(a: RoleUsage, b: RoleUsage, total: Resources): number {
  const d = weightedShare(a, total) - weightedShare(b, total)
  if (d !== 0) return d
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}

/** The roles in the order they are offered resources (a new array). */
export function offerOrder<R extends RoleUsage>(roles: Iterable<R>, total: Resources): R[] {
  // Shares computed once per role, not once per comparison.
  const keyed = [...roles].map((role) => ({ role, share: weightedShare(role, total) }))
  keyed.sort((a, b) => a.share - b.share || (a.role.name < b.role.name ? -1 : a.role.name > b.role.name ? 1 : 0))
  return keyed.map((k) => k.role)
}
