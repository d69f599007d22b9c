// What every benchmark shares: cleanup that always runs, a deterministic data
// pattern that never holds a whole file in memory, CPU accounting of the
// cluster's processes, tables, and the JSON written under bench/results/.
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Teardown } from '../test/helpers/cluster.js'

/** bench/results/ of the source tree (this file runs from dist/bench/). */
export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))

/** Cleanup registered as things start; run newest first, once, whatever happened. */
export class Cleanup implements Teardown {
  private readonly fns: Array<() => Promise<void> | void> = []
  private running: Promise<void> | undefined

  teardown(fn: () => Promise<void> | void): void {
    this.fns.push(fn)
  }

  /** Runs everything registered so far; a second call while one runs joins it. */
  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.fns.length > 0) {
        const fn = this.fns.pop()!
        try {
          await fn()
        } catch (err) {
          process.stderr.write(`bench: cleanup step failed: ${(err as Error).message}\n`)
        }
      }
      this.running = undefined
    })()
    return this.running
  }
}

// ---------------------------------------------------------------------------
// Data: one pseudo-random 1 MiB piece, repeated, with the piece number and the
// chunk number stamped at the start of every 64 KiB, so no two chunks of a
// file are alike and a misplaced or repeated chunk fails verification.

export const PIECE_BYTES = 1024 * 1024
const STAMP_EVERY_BYTES = 64 * 1024

export class Pattern {
  private readonly base: Buffer

  constructor(seed = 0x10a3) {
    this.base = Buffer.allocUnsafe(PIECE_BYTES)
    // xorshift32: deterministic and fast enough for 1 MiB once.
    let x = seed >>> 0 || 1
    for (let i = 0; i < PIECE_BYTES; i += 4) {
      x ^= x << 13
      x >>>= 0
      x ^= x >>> 17
      x ^= x << 5
      x >>>= 0
      this.base.writeUInt32LE(x, i)
    }
  }

  /** A fresh buffer holding the base piece; piece() stamps it in place. */
  buffer(): Buffer {
    return Buffer.from(this.base)
  }

  /** Stamps piece number `index` into buf (a buffer from buffer()); returns buf. */
  piece(index: number, buf: Buffer): Buffer {
    for (let off = 0, chunk = 0; off < PIECE_BYTES; off += STAMP_EVERY_BYTES, chunk++) {
      buf.writeUInt32LE(index >>> 0, off)
      buf.writeUInt32LE((chunk ^ 0x5a5a0000) >>> 0, off + 4)
    }
    return buf
  }
}

/** Checks a stream of pieces of any size against the pattern, in order. */
export class Verifier {
  private readonly expected: Buffer
  private stamped = -1
  pos = 0

  constructor(
    private readonly pattern: Pattern,
    readonly totalBytes: number,
    private readonly what: string,
  ) {
    this.expected = pattern.buffer()
  }

  check(data: Uint8Array): void {
    let done = 0
    while (done < data.length) {
      const index = Math.floor(this.pos / PIECE_BYTES)
      const inPiece = this.pos % PIECE_BYTES
      if (this.stamped !== index) {
        this.pattern.piece(index, this.expected)
        this.stamped = index
      }
      const n = Math.min(data.length - done, PIECE_BYTES - inPiece)
      if (Buffer.compare(data.subarray(done, done + n), this.expected.subarray(inPiece, inPiece + n)) !== 0) {
        throw new Error(`${this.what}: the bytes read at offset ${this.pos} differ from what was written`)
      }
      done += n
      this.pos += n
    }
    if (this.pos > this.totalBytes) throw new Error(`${this.what}: read ${this.pos} bytes, more than the ${this.totalBytes} written`)
  }

  finish(): void {
    if (this.pos !== this.totalBytes) throw new Error(`${this.what}: read ${this.pos} bytes, expected ${this.totalBytes}`)
  }
}

// ---------------------------------------------------------------------------
// CPU: this process from process.cpuUsage(), other processes from /proc.

const CLOCK_TICKS_PER_S = 100

/** User+system CPU seconds a process has used so far, or NaN where /proc cannot tell. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S
  } catch {
    return NaN
  }
}

export interface CpuGroups {
  [group: string]: number[]
}

/** Busy CPU seconds of the whole machine so far (every core, every process), or NaN. */
export function machineCpuSeconds(): number {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    const busy = fields.reduce((s, v, i) => (i === 3 || i === 4 ? s : s + v), 0)
    return busy / CLOCK_TICKS_PER_S
  } catch {
    return NaN
  }
}

/**
 * CPU time used over a span by this process (`bench`), by named groups of other
 * processes, and by everything else on the machine (`other`: other people's work,
 * the kernel's writeback), each as cores busy on average (1.0 = one core).
 */
export class CpuMeter {
  private readonly selfStart = process.cpuUsage()
  private readonly start: Record<string, number>
  private readonly machineStart = machineCpuSeconds()
  private readonly startMs = performance.now()

  constructor(private readonly groups: CpuGroups) {
    this.start = sumGroups(groups)
  }

  stop(): Record<string, number> {
    const wallS = (performance.now() - this.startMs) / 1000
    const self = process.cpuUsage(this.selfStart)
    const out: Record<string, number> = { bench: (self.user + self.system) / 1e6 / wallS }
    const end = sumGroups(this.groups)
    for (const g of Object.keys(this.groups)) out[g] = (end[g]! - this.start[g]!) / wallS
    const machine = (machineCpuSeconds() - this.machineStart) / wallS
    // Tick-granular counters over a short span can come out slightly negative.
    out.other = Math.max(0, machine - Object.values(out).reduce((s, v) => s + (Number.isNaN(v) ? 0 : v), 0))
    return out
  }
}

function sumGroups(groups: CpuGroups): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [g, pids] of Object.entries(groups)) out[g] = pids.reduce((s, pid) => s + processCpuSeconds(pid), 0)
  return out
}

export function formatCpu(cores: number | undefined): string {
  return cores === undefined || Number.isNaN(cores) ? '-' : `${Math.round(cores * 100)}%`
}

// ---------------------------------------------------------------------------
// Output.

export function table(headers: string[], rows: string[][], rightAlign: boolean[] = headers.map((_, i) => i > 0)): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

export interface Target {
  what: string
  want: string
  got: string
  met: boolean
  /** Shown for context; not one of the targets. */
  info?: boolean
}

export function targetTable(targets: Target[]): string {
  return table(
    ['target', 'want', 'got', 'met'],
    targets.map((t) => [t.what + (t.info ? ' (info)' : ''), t.want, t.got, t.met ? 'yes' : 'NO']),
    [false, true, true, false],
  )
}

/** One-minute load average: above the core count, other work shares the machine and figures drop. */
export function loadAverage(): number {
  return Math.round(os.loadavg()[0]! * 100) / 100
}

/** Says so on stderr when other work is running; returns the load for the JSON. */
export function noteLoad(when: string): number {
  const load = loadAverage()
  if (load > os.cpus().length) log(`bench: load average ${load} on ${os.cpus().length} cores ${when}: other work shares this machine, expect lower figures`)
  return load
}

export function machine(): Record<string, unknown> {
  return {
    host: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memBytes: os.totalmem(),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  }
}

/** Writes bench/results/<name>-<timestamp>.json and <name>-latest.json; returns their paths. */
export async function writeResults(name: string, startedAt: Date, body: Record<string, unknown>): Promise<string[]> {
  await mkdir(RESULTS_DIR, { recursive: true })
  // ISO 8601 without colons or milliseconds, so the name is a valid file name everywhere.
  const stamp = startedAt.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-')
  const text = JSON.stringify({ benchmark: name, startedAt: startedAt.toISOString(), machine: machine(), ...body }, null, 2) + '\n'
  const files = [path.join(RESULTS_DIR, `${name}-${stamp}.json`), path.join(RESULTS_DIR, `${name}-latest.json`)]
  for (const f of files) await writeFile(f, text)
  return files
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

/** MB/s with MB = 10^6 bytes, as dd and TestDFSIO print it. */
export function mbPerS(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}

export function fixed(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-'
}

export function thousands(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'
}
