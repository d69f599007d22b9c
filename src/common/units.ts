// Sizes (4KiB, 64MiB, 10GiB) and durations (500ms, 3s, 2m) as people write them.
import { LoamError } from '../rpc/errors.js'

// formatBytes has no dependencies so the dashboard's browser code can use it too.
export { formatBytes } from './format.js'

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
}

export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined
  if (!m || unit === undefined) throw new LoamError('invalid-argument', `${what} '${text}' is not a size (for example 4KiB, 64MiB, 10GiB)`)
  const bytes = Math.round(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes)) throw new LoamError('invalid-argument', `${what} '${text}' is too large`)
  return bytes
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Milliseconds; a bare number is seconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/.exec(text)
  if (!m) throw new LoamError('invalid-argument', `${what} '${text}' is not a duration (for example 500ms, 3s, 2m, 7d)`)
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!)
}
