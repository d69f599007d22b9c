// Resource vectors: what an agent offers and what a task needs. Integers only
// (cpus in thousandths, memory and disk in MiB), so adding and subtracting the
// same tasks in any order always comes back to exactly zero.

import { LoamError } from '../rpc/errors.js'
import { AGENT_DISK_MIB_MAX, AGENT_MEM_MIB_MAX, AGENT_MILLICPUS_MAX, MILLICPUS_PER_CPU } from './limits.js'

export interface Resources {
  /** Thousandths of a cpu: 1500 is 1.5 cpus. */
  readonly milliCpus: number
  readonly memMiB: number
  readonly diskMiB: number
}

export const ZERO: Resources = Object.freeze({ milliCpus: 0, memMiB: 0, diskMiB: 0 })

/**
 * A vector from cpus as people write them (`1.5`) and MiB; cpus are rounded to
 * the nearest thousandth. Not checked: pass the result to checkAgentResources or
 * checkTaskResources where input enters.
 */
export function resources(cpus: number, memMiB: number, diskMiB = 0): Resources {
  return { milliCpus: Math.round(cpus * MILLICPUS_PER_CPU), memMiB, diskMiB }
}

export function cpusOf(r: Resources): number {
  return r.milliCpus / MILLICPUS_PER_CPU
}

/** True when `need` fits in `free` in every dimension. */
export function fits(need: Resources, free: Resources): boolean {
  return need.milliCpus <= free.milliCpus && need.memMiB <= free.memMiB && need.diskMiB <= free.diskMiB
}

export function add(a: Resources, b: Resources): Resources {
  return { milliCpus: a.milliCpus + b.milliCpus, memMiB: a.memMiB + b.memMiB, diskMiB: a.diskMiB + b.diskMiB }
}

/** a - b; may go negative (an agent updated to less than it already runs). */
export function sub(a: Resources, b: Resources): Resources {
  return { milliCpus: a.milliCpus - b.milliCpus, memMiB: a.memMiB - b.memMiB, diskMiB: a.diskMiB - b.diskMiB }
}

export function equals(a: Resources, b: Resources): boolean {
  return a.milliCpus === b.milliCpus && a.memMiB === b.memMiB && a.diskMiB === b.diskMiB
}

/** True when any of cpus and memory is used up: such an agent can take no task, whatever its size. */
export function exhausted(free: Resources): boolean {
  return free.milliCpus <= 0 || free.memMiB <= 0
}

export function format(r: Resources): string {
  return `${cpusOf(r)} cpus, ${r.memMiB} MiB mem, ${r.diskMiB} MiB disk`
}

/**
 * What an agent registers and what a task asks for: cpus and memory at least one
 * thousandth and 1 MiB, disk may be 0, each no more than the largest agent may have.
 */
export function checkResources(r: Resources, what: string): void {
  if (typeof r !== 'object' || r === null) throw new LoamError('invalid-argument', `${what}: resources must be given as { milliCpus, memMiB, diskMiB }`)
  checkDimension(r.milliCpus, 1, AGENT_MILLICPUS_MAX, what, 'cpus', MILLICPUS_PER_CPU)
  checkDimension(r.memMiB, 1, AGENT_MEM_MIB_MAX, what, 'mem (MiB)', 1)
  checkDimension(r.diskMiB, 0, AGENT_DISK_MIB_MAX, what, 'disk (MiB)', 1)
}

function checkDimension(value: unknown, min: number, max: number, what: string, name: string, scale: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const shown = typeof value === 'number' ? String(value / scale) : JSON.stringify(value)
    const unit = scale === 1 ? 'a whole number' : `a multiple of ${1 / scale}`
    throw new LoamError('invalid-argument', `${what}: ${name} ${shown} must be ${unit} from ${min / scale} to ${max / scale}`)
  }
}
