// A seeded PRNG for the tools that must replay a run from its seed (chaos, fuzz):
// mulberry32, small, fast, and the same sequence for the same seed everywhere.
import { pattern } from './data.js'

export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  /** In [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing')
    return items[Math.floor(this.next() * items.length)]!
  }
  /** One of weighted choices: [weight, value] pairs. */
  weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
    const total = choices.reduce((s, [w]) => s + w, 0)
    let x = this.next() * total
    for (const [w, v] of choices) {
      x -= w
      if (x < 0) return v
    }
    return choices[choices.length - 1]![1]
  }
  /** n deterministic pseudo-random bytes. */
  bytes(n: number): Buffer {
    return pattern(n, this.int(0, 0x7fffffff))
  }
  /** A seed for a sub-actor, derived from this one's stream: each actor's choices repeat for a seed. */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 4294967296))
  }
}
