// Figures as people read them. No imports: the dashboard's browser code uses these too.

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = bytes
  let i = 0
  // 1023.99 KiB would print as 1024.0 KiB: move up once the rounded figure reaches 1024.
  while (Number(v.toFixed(1)) >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${bytes} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`
}

/** 3d 4h, 2h 5m, 4m 10s, 12s: the two largest units, for uptimes and ages. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  const parts: Array<[number, string]> = [[Math.floor(s / 86_400), 'd'], [Math.floor(s / 3600) % 24, 'h'], [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']]
  const first = parts.findIndex(([n]) => n > 0)
  if (first < 0) return '0s'
  return parts.slice(first, first + 2).filter(([n]) => n > 0).map(([n, u]) => `${n}${u}`).join(' ')
}
