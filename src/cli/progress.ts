// A progress bar for long transfers, shown only when stderr is a terminal.
import cliProgress from 'cli-progress'
import { formatBytes } from '../common/units.js'

export interface Progress {
  add(bytes: number): void
  done(): void
}

export function progress(label: string, totalBytes: number): Progress {
  if (!process.stderr.isTTY || totalBytes < 1024 * 1024) return { add: () => undefined, done: () => undefined }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% {done}/{size} {rate}/s`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  )
  const started = Date.now()
  let sent = 0
  bar.start(totalBytes, 0, { done: formatBytes(0), size: formatBytes(totalBytes), rate: '-' })
  return {
    add(bytes) {
      sent += bytes
      const secs = Math.max(0.001, (Date.now() - started) / 1000)
      bar.update(sent, { done: formatBytes(sent), size: formatBytes(totalBytes), rate: formatBytes(sent / secs) })
    },
    done() {
      bar.stop()
    },
  }
}
