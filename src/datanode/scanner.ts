// The background block scanner: reads every finalized replica at a bounded
// rate and checks it against its checksums, so that a replica rotting on disk
// is found (and, through onCorrupt, reported and replaced) before a reader
// needs it. The pace is the one pure decision here: enough to cover every
// replica once per period, never slower than a floor, never faster than a
// ceiling that leaves the disk to clients.

import { LoamError, assert, toLoamError } from '../rpc/errors.js'
import type { ReplicaStore } from './replica-store.js'

const MiB = 1024 * 1024
/** --scan-period's default: every replica verified at least once a week. */
export const SCAN_PERIOD_DEFAULT_MS = 7 * 24 * 60 * 60 * 1000
export const SCAN_MIN_BYTES_PER_SEC_DEFAULT = 1 * MiB
export const SCAN_MAX_BYTES_PER_SEC_DEFAULT = 64 * MiB
/** Least pause between two cycles, so a store of empty replicas and a tiny period is not a busy loop. */
const CYCLE_GAP_MIN_MS = 50
/** setTimeout's largest delay; longer waits are taken in steps. */
const TIMER_MAX_MS = 2 ** 31 - 1

export interface ScannedReplica {
  id: number
  genStamp: number
  lengthBytes: number
}

export interface ScannerOptions {
  /** Every finalized replica is verified at least once per period (default 7 days, set by the datanode's --scan-period). */
  periodMs: number
  /** Floor on the pace (default 1 MiB/s) so a nearly empty node still finishes quickly. */
  minBytesPerSec?: number
  /** Ceiling (default 64 MiB/s) so scanning never takes the disk from clients. */
  maxBytesPerSec?: number
  /** Called once per (id, genStamp) found corrupt; if it throws, the replica is reported again next cycle. */
  onCorrupt(replica: ScannedReplica, badChunk: number): Promise<void> | void
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }
}

export interface ScannerStats {
  replicasScanned: number
  /** Bytes read and checked, counted as they are read (a replica skipped part way still counts). */
  bytesScanned: number
  corruptFound: number
  cyclesCompleted: number
  /** Date.now() when the last full cycle ended; 0 before the first. */
  lastCycleCompletedMs: number
}

/** The scan rate: totalBytes spread over the period, clamped to [minBytesPerSec, maxBytesPerSec]. */
export function scanPaceBytesPerSec(totalBytes: number, periodMs: number, minBytesPerSec: number, maxBytesPerSec: number): number {
  assert(minBytesPerSec > 0 && minBytesPerSec <= maxBytesPerSec, 'scan pace bounds are positive and ordered')
  if (!(periodMs > 0)) return maxBytesPerSec
  const wanted = Math.max(0, totalBytes) / (periodMs / 1000)
  return Math.min(maxBytesPerSec, Math.max(minBytesPerSec, wanted))
}

/** Thrown from the pacing callback to end a verify when the scanner stops. */
class Stopped extends Error {}

const keyOf = (r: ScannedReplica): string => `${r.id}:${r.genStamp}`

export class BlockScanner {
  private readonly periodMs: number
  private readonly minBytesPerSec: number
  private readonly maxBytesPerSec: number
  private readonly counters: ScannerStats = { replicasScanned: 0, bytesScanned: 0, corruptFound: 0, cyclesCompleted: 0, lastCycleCompletedMs: 0 }
  /** Versions (id:genStamp) found corrupt, and those reported: kept apart so a failed report is retried, not recounted. */
  private readonly found = new Set<string>()
  private readonly reported = new Set<string>()
  private loop: Promise<void> | undefined
  private stopping = false
  /** Ends the current wait at once (stop). */
  private wake: (() => void) | undefined

  constructor(
    private readonly store: ReplicaStore,
    private readonly opts: ScannerOptions,
  ) {
    const { periodMs } = opts
    const minBytesPerSec = opts.minBytesPerSec ?? SCAN_MIN_BYTES_PER_SEC_DEFAULT
    const maxBytesPerSec = opts.maxBytesPerSec ?? Math.max(SCAN_MAX_BYTES_PER_SEC_DEFAULT, minBytesPerSec)
    if (!Number.isFinite(periodMs) || periodMs <= 0) {
      throw new LoamError('invalid-argument', `scan period ${periodMs} ms is not a positive duration; pass --scan-period like 7d or 12h`)
    }
    if (!Number.isFinite(minBytesPerSec) || minBytesPerSec <= 0 || !Number.isFinite(maxBytesPerSec) || maxBytesPerSec < minBytesPerSec) {
      throw new LoamError('invalid-argument', `scan pace bounds ${minBytesPerSec}..${maxBytesPerSec} bytes/s: want 0 < min <= max`)
    }
    this.periodMs = periodMs
    this.minBytesPerSec = minBytesPerSec
    this.maxBytesPerSec = maxBytesPerSec
  }

  /** Starts scanning in the background; a second start while running does nothing. */
  start(): void {
    if (this.loop !== undefined) return
    this.stopping = false
    this.loop = this.run().catch((err: unknown) => {
      // run catches per replica; this is the last line so nothing escapes as an unhandled rejection.
      this.opts.log?.warn({ err: toLoamError(err).message }, 'block scanner stopped on an error')
    })
  }

  /** Stops scanning: ends any wait at once, abandons the replica being read, and resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.stopping = true
    this.wake?.()
    await this.loop
    this.loop = undefined
  }

  stats(): ScannerStats {
    return { ...this.counters }
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const cycleStartMs = Date.now()
      const replicas = this.store
        .list()
        .filter((r) => r.state === 'finalized')
        .map((r) => ({ id: r.id, genStamp: r.genStamp, lengthBytes: r.lengthBytes }))
        .sort((a, b) => a.id - b.id)
      const totalBytes = replicas.reduce((sum, r) => sum + r.lengthBytes, 0)
      const pace = scanPaceBytesPerSec(totalBytes, this.periodMs, this.minBytesPerSec, this.maxBytesPerSec)
      for (const r of replicas) {
        if (this.stopping) return
        const outcome = await this.scanOne(r, pace)
        if (outcome === 'store-closed') {
          this.opts.log?.info({}, 'block scanner stopped: the replica store is closed')
          return
        }
      }
      if (this.stopping) return
      this.counters.cyclesCompleted++
      this.counters.lastCycleCompletedMs = Date.now()
      this.forgetGone()
      this.opts.log?.info(
        { replicas: replicas.length, bytes: totalBytes, paceBytesPerSec: Math.round(pace), tookMs: Date.now() - cycleStartMs, ...this.counters },
        'block scan cycle done',
      )
      // Cycles start a period apart; one that overran the period (the pace ceiling) is followed at once.
      await this.sleep(Math.max(CYCLE_GAP_MIN_MS, cycleStartMs + this.periodMs - Date.now()))
    }
  }

  /** Verifies one replica, paced, and reports it if corrupt. */
  private async scanOne(r: ScannedReplica, pace: number): Promise<'done' | 'skipped' | 'store-closed'> {
    const key = keyOf(r)
    if (this.reported.has(key)) return 'skipped' // known bad; the namenode replaces and deletes it
    if (!this.unchanged(r)) return 'skipped'
    // Time is measured from the end of the last wait, so reading counts toward the pace.
    let markMs = performance.now()
    const afterSpan = async (spanBytes: number): Promise<void> => {
      if (this.stopping) throw new Stopped()
      this.counters.bytesScanned += spanBytes
      await this.sleep(markMs + (spanBytes / pace) * 1000 - performance.now())
      markMs = performance.now()
      if (this.stopping) throw new Stopped()
    }
    let result: { ok: boolean; badChunk: number }
    try {
      result = await this.store.verify(r.id, { genStamp: r.genStamp, afterSpan })
    } catch (err) {
      if (err instanceof Stopped) return 'skipped'
      const e = toLoamError(err)
      if (e.code === 'unavailable') return 'store-closed'
      // Deleted or replaced meanwhile: nothing to say about the version we meant.
      if (e.code !== 'not-found' && e.code !== 'stale-generation') {
        this.opts.log?.warn({ block: r.id, genStamp: r.genStamp, err: e.message }, 'block scanner could not read a replica')
      }
      return 'skipped'
    }
    // Files moved, cut or deleted while we read them say nothing about the replica now.
    if (!this.unchanged(r)) return 'skipped'
    this.counters.replicasScanned++
    if (result.ok) return 'done'
    if (!this.found.has(key)) {
      this.found.add(key)
      this.counters.corruptFound++
      this.opts.log?.warn({ block: r.id, genStamp: r.genStamp, badChunk: result.badChunk }, 'block scanner found a corrupt replica')
    }
    try {
      await this.opts.onCorrupt({ id: r.id, genStamp: r.genStamp, lengthBytes: r.lengthBytes }, result.badChunk)
      this.reported.add(key)
    } catch (err) {
      this.opts.log?.warn({ block: r.id, genStamp: r.genStamp, err: toLoamError(err).message }, 'reporting a corrupt replica failed; will retry next cycle')
    }
    return 'done'
  }

  private unchanged(r: ScannedReplica): boolean {
    const now = this.store.get(r.id)
    return now !== undefined && now.state === 'finalized' && now.genStamp === r.genStamp && now.lengthBytes === r.lengthBytes
  }

  /** Drops remembered corrupt versions that are no longer here, so the sets stay as small as the store. */
  private forgetGone(): void {
    for (const set of [this.found, this.reported]) {
      for (const key of set) {
        const [id, genStamp] = key.split(':').map(Number)
        if (id === undefined || this.store.get(id)?.genStamp !== genStamp) set.delete(key)
      }
    }
  }

  /** Waits ms (none if <= 0), or less if stop() is called; timers are unref'd so they never hold the process open. */
  private async sleep(ms: number): Promise<void> {
    const untilMs = Date.now() + ms
    while (!this.stopping) {
      const leftMs = untilMs - Date.now()
      if (leftMs <= 0) return
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          this.wake = undefined
          resolve()
        }
        const timer = setTimeout(done, Math.min(leftMs, TIMER_MAX_MS))
        timer.unref()
        this.wake = done
      })
    }
  }
}
