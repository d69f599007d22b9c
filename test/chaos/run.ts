// The chaos test: a real cluster under concurrent writers and readers while
// datanodes and the namenode are killed with SIGKILL and replicas rot on disk.
// Every acknowledged operation is tracked exactly; at the end the cluster must
// heal by itself (fsck healthy, every injected corruption replaced) and every
// acknowledged file must read back bit-identical.
//
// What "acknowledged" means here: a file is acknowledged when close() returned;
// an atomic overwrite when rename() returned; a delete when delete() returned.
// A call that failed is never counted as done. When it may or may not have
// taken effect (the namenode died with the reply in flight), it is retried
// until the answer is definite, or the path is given every state it may be in
// and the first read settles which one it is.
import { copyFile, mkdir, mkdtemp, open, readFile, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { LoamClient } from '../../src/client/client.js'
import type { FileWriter } from '../../src/client/file-writer.js'
import { fsck, type FsckReport } from '../../src/client/fsck.js'
import { formatBytes } from '../../src/common/units.js'
import { LoamError, toLoamError } from '../../src/rpc/errors.js'
import { alive, sleep, startCluster, waitFor, type TestCluster } from '../helpers/cluster.js'
import { Cleanups, flipByte, replicaDataPath } from '../helpers/data.js'
import { Rng } from '../helpers/rng.js'
import { chooseSize, contentStream, seedOf, verifyPath, type Version } from './content.js'

const MiB = 1024 * 1024
const DATANODES = 5
const RACKS = 2
const REPLICATION = 3
/** Never more than replication-1 datanodes down at once: some replica of every block stays up. */
const DATANODES_DOWN_MAX = REPLICATION - 1
const BLOCK_SIZE_BYTES = 1 * MiB
const FILE_BYTES_MAX = 5 * MiB
/** Acknowledged bytes kept at once; above this, writers delete before they write more. */
const LIVE_BYTES_MAX = 192 * MiB
const WRITERS_DEFAULT = 4
const READERS_DEFAULT = 2
const CLIENT_TIMEOUT_MS = 10_000
/** How long one operation is retried through faults before it counts as failed. */
const OP_RETRY_MS = 60_000
const RETRY_BACKOFF_MIN_MS = 200
const RETRY_BACKOFF_MAX_MS = 3_000
/** Between operations a writer pauses this long, so the run verifies more than it fills disks. */
const WRITER_PAUSE_MS: [number, number] = [50, 500]
/** After a failed operation a writer pauses this long, so a down namenode is not hammered. */
const WRITER_PAUSE_AFTER_FAILURE_MS = 1_000
const FAULT_GAP_MS: [number, number] = [2_000, 6_000]
/** Some restarts come before --dead-after (4 s), some after, so both paths are taken. */
const DATANODE_DOWN_MS: [number, number] = [2_000, 9_000]
const NAMENODE_DOWN_MS: [number, number] = [1_000, 5_000]
const NAMENODE_KILL_GAP_MIN_MS = 25_000
const RESTART_WAIT_MS = 60_000
/** How often the namenode's log is read for the moments worth a kill. */
const LOG_POLL_MS = 100
const WORST_MOMENT_CHANCE = 0.5
const WORST_MOMENT_GAP_MIN_MS = 15_000
const HEAL_TIMEOUT_MS = 120_000
const FINAL_READERS = 3
/** The final read-back of every acknowledged file ends by then (a healthy cluster needs a fraction of it). */
const FINAL_CHECK_MS = 120_000
const PROGRESS_EVERY_MS = 10_000
/** Operations slower than this are written to the event log. */
const SLOW_OP_MS = 3_000
const EVENTS_MAX = 50_000
const PATH_HISTORY_MAX = 24
const EVIDENCE_LINES_PER_BLOCK_MAX = 25

export interface ChaosOptions {
  minutes: number
  seed?: number
  log?: (line: string) => void
  /** Ends the run early (Ctrl-C): the work stops, the cluster is torn down, the report says aborted. */
  signal?: AbortSignal
  writers?: number
  readers?: number
  /** Copy every role's log, the run's event log and fsck to a new temp dir before teardown: 'on-failure' (default), 'always' or 'never'. */
  keepLogs?: 'on-failure' | 'always' | 'never'
  /** Called once the cluster is up (main.ts uses it to kill the roles on a second Ctrl-C). */
  onCluster?: (cluster: TestCluster) => void
}

export interface LostFile {
  path: string
  expected: string
  problem: string
  evidence: string[]
}

export interface Corruption {
  blockId: number
  node: string
  path: string
  file: string
  offset: number
  before: number
  after: number
  atMs: number
  /** The block's other replicas when it was injected: at least one of them stays up until it is repaired. */
  others: string[]
  outcome: 'pending' | 'repaired' | 'obsolete' | 'unrepaired'
  how?: string
  evidence?: string[]
}

export interface ChaosReport {
  seed: number
  minutes: number
  elapsedMs: number
  aborted: boolean
  ops: {
    writesOk: number
    writesFailed: number
    overwritesOk: number
    overwritesFailed: number
    deletesOk: number
    deletesFailed: number
    readsOk: number
    readsFailed: number
  }
  /** Why operations failed: 'write: unavailable' -> how often, and one message. */
  failures: Array<{ what: string; count: number; example: string }>
  kills: { datanode: number; namenode: number }
  corruptions: { injected: number; repaired: number; obsolete: number; unrepaired: Corruption[] }
  bytesWritten: number
  bytesVerified: number
  /** Acknowledged files read back at the end. */
  filesVerified: number
  /** Deleted paths checked to be gone at the end. */
  deletesVerified: number
  fsckHealthy: boolean
  healedAfterMs: number | null
  openForWrite: number
  /** Wrong bytes served during the run, an acknowledged file missing mid-run, a role that would not restart. */
  anomalies: string[]
  lost: LostFile[]
  keptLogs?: string
  ok: boolean
}

interface Entry {
  /** What the path may hold; one element once it is certain. null: the path may be absent. */
  candidates: Array<Version | null>
  history: string[]
}

type Attempt<T> = { ok: true; value: T; attempts: number } | { ok: false; error: LoamError; attempts: number }

/** Paths with O(1) random choice. */
class PathSet {
  private readonly items: string[] = []
  private readonly index = new Map<string, number>()
  get size(): number {
    return this.items.length
  }
  add(p: string): void {
    if (this.index.has(p)) return
    this.index.set(p, this.items.length)
    this.items.push(p)
  }
  delete(p: string): void {
    const i = this.index.get(p)
    if (i === undefined) return
    const last = this.items.pop()!
    if (i < this.items.length) {
      this.items[i] = last
      this.index.set(last, i)
    }
    this.index.delete(p)
  }
  pick(rng: Rng, ok: (p: string) => boolean, tries = 16): string | undefined {
    for (let i = 0; i < tries && this.items.length > 0; i++) {
      const p = this.items[Math.floor(rng.next() * this.items.length)]!
      if (ok(p)) return p
    }
    return undefined
  }
  all(): string[] {
    return [...this.items]
  }
}

class Chaos {
  readonly startMs = Date.now()
  private readonly deadlineMs: number
  private readonly log: (line: string) => void
  private readonly events: string[] = []
  private readonly expected = new Map<string, Entry>()
  private readonly tracked = new PathSet()
  private readonly deleted = new Set<string>()
  private readonly busy = new Set<string>()
  private readonly down = new Set<number>()
  private namenodeDown = false
  private lastNamenodeKillMs = 0
  private readonly tasks = new Set<Promise<void>>()
  private liveBytes = 0
  readonly corruptions: Corruption[] = []
  readonly anomalies: string[] = []
  readonly lost: LostFile[] = []
  readonly ops = { writesOk: 0, writesFailed: 0, overwritesOk: 0, overwritesFailed: 0, deletesOk: 0, deletesFailed: 0, readsOk: 0, readsFailed: 0 }
  readonly kills = { datanode: 0, namenode: 0 }
  readonly failures = new Map<string, { count: number; example: string }>()
  bytesWritten = 0
  bytesVerified = 0
  filesVerified = 0
  deletesVerified = 0
  fsckHealthy = false
  healedAfterMs: number | null = null
  openForWrite = 0

  constructor(
    private readonly cluster: TestCluster,
    readonly seed: number,
    private readonly opts: ChaosOptions,
  ) {
    this.deadlineMs = this.startMs + opts.minutes * 60_000
    this.log = opts.log ?? (() => undefined)
  }

  private get aborted(): boolean {
    return this.opts.signal?.aborted ?? false
  }

  private stopping(): boolean {
    return this.aborted || Date.now() >= this.deadlineMs
  }

  private clock(): string {
    return `${((Date.now() - this.startMs) / 1000).toFixed(1).padStart(6)}s`
  }

  /** Recorded for the evidence; shown as it happens when loud. */
  private event(text: string, loud = false): void {
    const line = `[${this.clock()}] ${text}`
    this.events.push(line)
    // The newest events are the evidence that matters; a long run sheds its oldest.
    if (this.events.length > EVENTS_MAX) this.events.splice(0, EVENTS_MAX / 10)
    if (loud) this.log(line)
  }

  private anomaly(text: string): void {
    this.anomalies.push(`[${this.clock()}] ${text}`)
    this.event(`ANOMALY ${text}`, true)
  }

  private note(p: string, text: string): void {
    const e = this.expected.get(p)
    if (!e) return
    e.history.push(`[${this.clock()}] ${text}`)
    if (e.history.length > PATH_HISTORY_MAX) e.history.splice(0, e.history.length - PATH_HISTORY_MAX)
  }

  private track(p: string, candidates: Array<Version | null>, why: string, history: string[] = []): void {
    this.untrack(p)
    this.expected.set(p, { candidates, history })
    this.tracked.add(p)
    this.liveBytes += Math.max(0, ...candidates.map((c) => c?.size ?? 0))
    this.note(p, why)
  }

  private untrack(p: string): Entry | undefined {
    const e = this.expected.get(p)
    if (!e) return undefined
    this.expected.delete(p)
    this.tracked.delete(p)
    this.liveBytes -= Math.max(0, ...e.candidates.map((c) => c?.size ?? 0))
    return e
  }

  private settle(p: string, v: Version | null): void {
    const e = this.expected.get(p)
    if (!e || e.candidates.length === 1) return
    const history = e.history
    if (v === null) {
      this.untrack(p)
      this.deleted.add(p)
      return
    }
    this.track(p, [v], `settled by a read: holds ${v.key}`, history)
  }

  private spawnTask(fn: () => Promise<void>): void {
    const task = fn().catch((err) => this.anomaly(`background task failed: ${toLoamError(err).message}`))
    this.tasks.add(task)
    void task.finally(() => this.tasks.delete(task))
  }

  /** Retries fn through faults until it succeeds, definite(err) says the error is an answer, or the bound passes. */
  private async attempt<T>(fn: () => Promise<T>, definite: (e: LoamError, attempt: number) => boolean, boundMs = OP_RETRY_MS): Promise<Attempt<T>> {
    const deadline = Date.now() + boundMs
    let backoff = RETRY_BACKOFF_MIN_MS
    for (let attempts = 1; ; attempts++) {
      try {
        return { ok: true, value: await fn(), attempts }
      } catch (err) {
        const e = toLoamError(err)
        if (definite(e, attempts) || Date.now() + backoff > deadline || this.aborted) return { ok: false, error: e, attempts }
        await sleep(backoff)
        backoff = Math.min(backoff * 2, RETRY_BACKOFF_MAX_MS)
      }
    }
  }

  // ---- the workload ----

  /** create, write in pieces of random sizes (sometimes with a sync in the middle), close. */
  private async put(client: LoamClient, rng: Rng, p: string, v: Version, overwrite: boolean): Promise<Attempt<void>> {
    let writer: FileWriter | undefined
    const started = Date.now()
    let stage = 'create'
    try {
      writer = await client.create(p, { overwrite, createParents: true })
      stage = 'write'
      const next = contentStream(this.seed, v.key)
      let syncAt = rng.chance(0.2) ? rng.int(0, v.size) : -1
      for (let done = 0; done < v.size; ) {
        const n = Math.min(v.size - done, rng.chance(0.1) ? rng.int(1, 4096) : rng.int(4096, 512 * 1024))
        await writer.write(next(n))
        done += n
        if (syncAt >= 0 && done >= syncAt) {
          await writer.sync()
          syncAt = -1
        }
      }
      stage = 'close'
      await writer.close()
      return { ok: true, value: undefined, attempts: 1 }
    } catch (err) {
      writer?.abort()
      const e = toLoamError(err)
      return { ok: false, error: new LoamError(e.code, `${stage}: ${e.message}`), attempts: 1 }
    } finally {
      const tookMs = Date.now() - started
      if (tookMs > SLOW_OP_MS) this.event(`slow: writing ${p} (${v.size} bytes) took ${(tookMs / 1000).toFixed(1)} s, ending in ${stage}`)
    }
  }

  /** Reads p (retrying through faults) and checks it is one of its candidates; narrows the candidates to what it read. */
  private async check(client: LoamClient, p: string, why: string, boundMs = OP_RETRY_MS): Promise<boolean> {
    const entry = this.expected.get(p)
    if (!entry) return true
    let last: LoamError | undefined
    const deadline = Date.now() + boundMs
    let backoff = RETRY_BACKOFF_MIN_MS
    for (;;) {
      const r = await verifyPath(client, this.seed, p, entry.candidates)
      this.bytesVerified += r.kind === 'match' ? r.bytes : 0
      if (r.kind === 'match') {
        this.ops.readsOk++
        this.settle(p, r.matched)
        return true
      }
      if (r.kind === 'mismatch') {
        this.ops.readsOk++
        this.anomaly(`${why}: WRONG BYTES served for acknowledged ${r.detail}`)
        this.note(p, `${why}: read wrong bytes: ${r.detail}`)
        return false
      }
      last = r.error
      if (r.error.code === 'not-found') {
        this.anomaly(`${why}: acknowledged ${p} is MISSING: ${r.error.message}`)
        this.note(p, `${why}: missing`)
        return false
      }
      if (Date.now() + backoff > deadline || this.aborted) break
      await sleep(backoff)
      backoff = Math.min(backoff * 2, RETRY_BACKOFF_MAX_MS)
    }
    this.failed('readsFailed', last)
    this.event(`${why}: could not read ${p} within ${Math.round(boundMs / 1000)} s: ${last?.message ?? 'no answer'}`)
    this.note(p, `${why}: unreadable for now: ${last?.message ?? ''}`)
    return false
  }

  /** Counts a failed operation, by what it failed with (shown in the report, so a failure's cause is never hidden). */
  private failed(op: 'writesFailed' | 'overwritesFailed' | 'deletesFailed' | 'readsFailed', e: LoamError | undefined): void {
    this.ops[op]++
    const key = `${op.replace('Failed', '')}: ${e?.code ?? 'no answer'}`
    const f = this.failures.get(key)
    if (f) f.count++
    else this.failures.set(key, { count: 1, example: e?.message ?? '' })
  }

  private lock(p: string): boolean {
    if (this.busy.has(p)) return false
    this.busy.add(p)
    return true
  }

  /** A path to delete or overwrite: certain, and holding no rotten replica (so that its repair, not its deletion, is what removes it). */
  private pickCertain(rng: Rng): string | undefined {
    const rotten = new Set(this.corruptions.filter((c) => c.outcome === 'pending').map((c) => c.path))
    const p = this.tracked.pick(rng, (x) => !this.busy.has(x) && !rotten.has(x) && this.expected.get(x)?.candidates.length === 1)
    return p !== undefined && this.lock(p) ? p : undefined
  }

  async writer(k: number): Promise<void> {
    const rng = new Rng(seedOf(this.seed, `writer-${k}`))
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
    let seq = 0
    while (!this.stopping()) {
      const r = rng.next()
      let ok: boolean
      // Over the byte budget most operations delete, not all: writers stay busy writing when the namenode dies.
      if (this.tracked.size > 0 && ((this.liveBytes > LIVE_BYTES_MAX && rng.chance(0.6)) || r < 0.08)) ok = await this.deleteOne(client, rng)
      else if (this.tracked.size > 0 && r < 0.16) ok = await this.overwriteAtomically(client, rng, k, seq++)
      else if (this.tracked.size > 0 && r < 0.21) ok = await this.overwriteInPlace(client, rng, k, seq++)
      else ok = await this.writeNew(client, rng, k, seq++)
      await sleep(ok ? rng.int(...WRITER_PAUSE_MS) : WRITER_PAUSE_AFTER_FAILURE_MS)
    }
  }

  private async writeNew(client: LoamClient, rng: Rng, k: number, seq: number): Promise<boolean> {
    const p = `/chaos/w${k}/f${seq}`
    const v: Version = { key: p, size: chooseSize(rng, BLOCK_SIZE_BYTES, FILE_BYTES_MAX) }
    this.busy.add(p)
    try {
      const put = await this.put(client, rng, p, v, false)
      if (!put.ok) {
        this.failed('writesFailed', put.error)
        this.event(`write ${p} (${v.size} bytes) failed, not acknowledged: ${put.error.message}`)
        return false
      }
      this.ops.writesOk++
      this.bytesWritten += v.size
      this.track(p, [v], `written and acknowledged: ${v.key}, ${v.size} bytes`)
      this.event(`wrote ${p} (${v.size} bytes)`)
      return await this.check(client, p, 'read-back after write')
    } finally {
      this.busy.delete(p)
    }
  }

  /** Write a temporary file, then rename it over the target: a failure leaves the old content. */
  private async overwriteAtomically(client: LoamClient, rng: Rng, k: number, seq: number): Promise<boolean> {
    const p = this.pickCertain(rng)
    if (p === undefined) return true
    const tmp = `/chaos/tmp/w${k}-${seq}`
    try {
      const old = this.expected.get(p)!.candidates[0]!
      const v: Version = { key: `${p}#w${k}-${seq}`, size: chooseSize(rng, BLOCK_SIZE_BYTES, FILE_BYTES_MAX) }
      const put = await this.put(client, rng, tmp, v, false)
      if (!put.ok) {
        this.failed('overwritesFailed', put.error)
        this.event(`overwrite of ${p}: writing ${tmp} failed, ${p} keeps ${old.key}: ${put.error.message}`)
        return false
      }
      this.bytesWritten += v.size
      const mv = await this.attempt(() => client.rename(tmp, p, true), (e) => e.code === 'not-found')
      if (mv.ok) {
        this.ops.overwritesOk++
        this.track(p, [v], `overwritten by rename of ${tmp}: ${v.key}, ${v.size} bytes${mv.attempts > 1 ? ` (attempt ${mv.attempts})` : ''}`, this.expected.get(p)?.history)
        this.event(`overwrote ${p} with ${v.key} (${v.size} bytes) by rename`)
        return await this.check(client, p, 'read-back after rename')
      }
      if (mv.error.code === 'not-found' && mv.attempts > 1) {
        // An earlier attempt was applied and its answer lost: the target must hold the new content now.
        this.ops.overwritesOk++
        this.track(p, [old, v], `rename of ${tmp} answered not-found on attempt ${mv.attempts}: an earlier attempt took effect`, this.expected.get(p)?.history)
        const ok = await this.check(client, p, 'read-back after a rename retried')
        const now = this.expected.get(p)?.candidates
        if (ok && now?.length === 1 && now[0]?.key === old.key) this.anomaly(`acknowledged ${tmp} (${v.key}) vanished: the rename over ${p} answered not-found, yet ${p} still holds ${old.key}`)
        return ok
      }
      if (mv.error.code === 'not-found') {
        this.failed('overwritesFailed', mv.error)
        this.anomaly(`acknowledged ${tmp} (${v.key}, ${v.size} bytes) is MISSING: renaming it over ${p} answered ${mv.error.message}`)
        return false
      }
      this.failed('overwritesFailed', mv.error)
      // No definite answer within the bound: the target is the old or the new content; the next read says which.
      this.track(p, [old, v], `rename of ${tmp} over it failed without a definite answer: ${mv.error.message}`, this.expected.get(p)?.history)
      this.event(`overwrite of ${p}: rename failed, not acknowledged: ${mv.error.message}`)
      return false
    } finally {
      this.busy.delete(p)
    }
  }

  /** create(overwrite) on the target itself: the old content goes at once, so a failure leaves nothing to expect. */
  private async overwriteInPlace(client: LoamClient, rng: Rng, k: number, seq: number): Promise<boolean> {
    const p = this.pickCertain(rng)
    if (p === undefined) return true
    try {
      const v: Version = { key: `${p}#w${k}-${seq}`, size: chooseSize(rng, BLOCK_SIZE_BYTES, FILE_BYTES_MAX) }
      const history = this.untrack(p)?.history ?? []
      const put = await this.put(client, rng, p, v, true)
      if (!put.ok) {
        this.failed('overwritesFailed', put.error)
        this.event(`overwrite in place of ${p} failed, not acknowledged; ${p} is no longer tracked: ${put.error.message}`)
        return false
      }
      this.ops.overwritesOk++
      this.bytesWritten += v.size
      this.track(p, [v], `overwritten in place: ${v.key}, ${v.size} bytes`, history)
      this.event(`overwrote ${p} in place with ${v.key} (${v.size} bytes)`)
      return await this.check(client, p, 'read-back after overwrite in place')
    } finally {
      this.busy.delete(p)
    }
  }

  private async deleteOne(client: LoamClient, rng: Rng): Promise<boolean> {
    const p = this.pickCertain(rng)
    if (p === undefined) return true
    try {
      const old = this.expected.get(p)!.candidates[0]!
      const rm = await this.attempt(() => client.delete(p), (e) => e.code === 'not-found')
      if (rm.ok || (rm.error.code === 'not-found' && rm.attempts > 1)) {
        this.ops.deletesOk++
        this.untrack(p)
        this.deleted.add(p)
        this.event(`deleted ${p}${rm.ok ? '' : ' (an earlier attempt took effect)'}`)
        return true
      }
      this.failed('deletesFailed', rm.error)
      if (rm.error.code === 'not-found') {
        const e = this.untrack(p)
        this.lost.push({ path: p, expected: old.key, problem: `acknowledged file was already gone when deleted: ${rm.error.message}`, evidence: e?.history ?? [] })
        this.anomaly(`acknowledged ${p} is MISSING (found when deleting it)`)
        return false
      }
      this.track(p, [old, null], `delete failed without a definite answer: ${rm.error.message}`, this.expected.get(p)?.history)
      this.event(`delete of ${p} failed, not acknowledged: ${rm.error.message}`)
      return false
    } finally {
      this.busy.delete(p)
    }
  }

  async reader(k: number): Promise<void> {
    const rng = new Rng(seedOf(this.seed, `reader-${k}`))
    // Half the readers go through the datanodes' ReadBlock, half read local replicas from disk.
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS, shortCircuit: k % 2 === 0 })
    while (!this.stopping()) {
      const p = this.tracked.pick(rng, (x) => !this.busy.has(x))
      if (p === undefined || !this.lock(p)) {
        await sleep(100)
        continue
      }
      try {
        await this.check(client, p, `reader ${k}`, 30_000)
      } finally {
        this.busy.delete(p)
      }
      await sleep(rng.int(20, 200))
    }
  }

  // ---- the faults ----

  async faults(): Promise<void> {
    const rng = new Rng(seedOf(this.seed, 'faults'))
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
    const totalMs = this.deadlineMs - this.startMs
    while (!this.stopping()) {
      await sleep(rng.int(...FAULT_GAP_MS))
      if (this.stopping()) break
      await this.checkCorruptions(client)
      const elapsed = Date.now() - this.startMs
      // Every kind of fault happens at least once in a run, whatever the dice say.
      const due =
        this.kills.datanode === 0 && elapsed > 0.2 * totalMs ? 'datanode'
        : this.corruptions.length === 0 && elapsed > 0.3 * totalMs ? 'corrupt'
        : this.kills.namenode === 0 && elapsed > 0.4 * totalMs ? 'namenode'
        : undefined
      const r = rng.next()
      const choice = due ?? (r < 0.45 ? 'datanode' : r < 0.85 ? 'corrupt' : 'namenode')
      if (choice === 'datanode') await this.killDatanode(rng)
      else if (choice === 'corrupt') await this.corruptReplica(client, rng)
      else if (due === 'namenode' || Date.now() - this.lastNamenodeKillMs > NAMENODE_KILL_GAP_MIN_MS) await this.killNamenode(rng)
    }
  }

  /**
   * Now and then the namenode dies at the worst moment: just after it learned
   * of a corrupt replica and before the replica is replaced, when what it
   * knows about the corruption exists only in its memory.
   */
  async worstMoments(): Promise<void> {
    const rng = new Rng(seedOf(this.seed, 'worst-moments'))
    const file = path.join(this.cluster.record.namenode.data, 'log')
    let offset = await stat(file).then((s) => s.size, () => 0)
    let partial = ''
    while (!this.stopping()) {
      await sleep(LOG_POLL_MS)
      const size = await stat(file).then((s) => s.size, () => offset)
      if (size <= offset) continue
      const fh = await open(file, 'r')
      const buf = Buffer.alloc(Math.min(size - offset, 1 << 20))
      try {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset)
        offset += bytesRead
        partial += buf.subarray(0, bytesRead).toString()
      } finally {
        await fh.close()
      }
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      const report = lines.find((l) => l.includes('corrupt replica reported'))
      if (report) this.event(`namenode log: ${report}`)
      if (!report || this.namenodeDown || Date.now() - this.lastNamenodeKillMs < WORST_MOMENT_GAP_MIN_MS || !rng.chance(WORST_MOMENT_CHANCE)) continue
      const block = /"block":(\d+)/.exec(report)?.[1] ?? '?'
      const node = /"node":"([^"]+)"/.exec(report)?.[1] ?? '?'
      this.event(`the namenode logged a corrupt replica of block ${block} on ${node}: killing it before the repair`, true)
      await this.killNamenode(rng)
    }
  }

  private nodeIndex(id: string): number {
    return this.cluster.record.nodes.findIndex((n) => n.id === id)
  }

  private isUp(id: string): boolean {
    const i = this.nodeIndex(id)
    return i >= 0 && !this.down.has(i)
  }

  private async killDatanode(rng: Rng): Promise<void> {
    if (this.down.size >= DATANODES_DOWN_MAX) return
    const pending = this.corruptions.filter((c) => c.outcome === 'pending')
    const candidates = this.cluster.record.nodes
      .map((n, i) => ({ n, i }))
      .filter(({ n, i }) => {
        if (this.down.has(i)) return false
        // A block with a rotten replica must keep one good replica up until it is repaired.
        return pending.every((c) => !c.others.includes(n.id!) || c.others.some((o) => o !== n.id && this.isUp(o)))
      })
    if (candidates.length === 0) return
    const { n, i } = rng.pick(candidates)
    const downMs = rng.int(...DATANODE_DOWN_MS)
    this.down.add(i)
    await this.cluster.killNode(i)
    this.kills.datanode++
    this.event(`FAULT kill -9 datanode ${n.id} (pid ${n.pid}); restart in ${(downMs / 1000).toFixed(1)} s; down now: ${this.downNames()}`, true)
    this.spawnTask(async () => {
      await sleep(downMs)
      await this.restartDatanode(i)
    })
  }

  private downNames(): string {
    return [...this.down].map((i) => this.cluster.record.nodes[i]!.id).join(', ') || 'none'
  }

  private async restartDatanode(i: number): Promise<void> {
    const node = this.cluster.record.nodes[i]!
    try {
      await this.cluster.restartNode(i)
    } catch (err) {
      this.event(`restart of ${node.id}: the namenode did not see it live yet (${toLoamError(err).message}); waiting`)
    }
    try {
      await waitFor(async () => {
        if (!alive(node.pid)) throw new Error(`${node.id} (pid ${node.pid}) exited after its restart; see ${path.join(node.data, 'log')}`)
        return await datanodeRegistered(node.http)
      }, RESTART_WAIT_MS, `${node.id} to register again`)
      this.down.delete(i)
      this.event(`restarted datanode ${node.id} (pid ${node.pid}); down now: ${this.downNames()}`, true)
    } catch (err) {
      this.anomaly(`datanode ${node.id} did not come back: ${toLoamError(err).message}`)
    }
  }

  private async killNamenode(rng: Rng): Promise<void> {
    if (this.namenodeDown) return
    const downMs = rng.int(...NAMENODE_DOWN_MS)
    this.namenodeDown = true
    this.lastNamenodeKillMs = Date.now()
    await this.cluster.killNamenode()
    this.kills.namenode++
    this.event(`FAULT kill -9 namenode (pid ${this.cluster.record.namenode.pid}); restart in ${(downMs / 1000).toFixed(1)} s`, true)
    await sleep(downMs)
    await this.restartNamenode()
  }

  private async restartNamenode(): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        await this.cluster.restartNamenode()
        this.namenodeDown = false
        this.event(`restarted namenode (pid ${this.cluster.record.namenode.pid})`, true)
        return
      } catch (err) {
        const pid = this.cluster.record.namenode.pid
        const tail = (await readFile(path.join(this.cluster.record.namenode.data, 'log'), 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n  ')
        this.anomaly(`namenode restart ${attempt} failed (pid ${pid} ${alive(pid) ? 'running' : 'exited'}): ${toLoamError(err).message}; log ends:\n  ${tail}`)
        if (alive(pid)) await this.cluster.killNamenode()
      }
    }
  }

  /** Flips one byte of one replica of a block of an acknowledged file, while every other replica's node is up. */
  private async corruptReplica(client: LoamClient, rng: Rng): Promise<void> {
    if (this.namenodeDown) return
    for (let tries = 0; tries < 8; tries++) {
      const p = this.tracked.pick(rng, (x) => !this.busy.has(x) && (this.expected.get(x)?.candidates[0]?.size ?? 0) > 0 && this.expected.get(x)?.candidates.length === 1)
      if (p === undefined || !this.lock(p)) return
      try {
        const res = await client.getBlockLocations(p, 0, 0).catch(() => undefined)
        if (!res) return
        const busyBlocks = new Set(this.corruptions.filter((c) => c.outcome === 'pending').map((c) => c.blockId))
        const blocks = res.blocks.filter((b) => b.block && b.complete && b.block.lengthBytes > 0 && b.corrupt.length === 0 && b.locations.length >= REPLICATION && !busyBlocks.has(b.block.id) && b.locations.every((l) => this.isUp(l.id)))
        if (blocks.length === 0) continue
        const lb = rng.pick(blocks)
        const victim = rng.pick(lb.locations)
        const node = this.cluster.record.nodes[this.nodeIndex(victim.id)]
        if (!node) continue
        const block = lb.block!
        const file = replicaDataPath(node.data, block.id)
        const size = await stat(file).then((s) => s.size, () => -1)
        if (size !== block.lengthBytes) continue
        const offset = rng.int(0, size - 1)
        const { before, after } = await flipByte(file, offset)
        const others = lb.locations.filter((l) => l.id !== victim.id).map((l) => l.id)
        this.corruptions.push({ blockId: block.id, node: victim.id, path: p, file, offset, before, after, atMs: Date.now() - this.startMs, others, outcome: 'pending' })
        this.note(p, `FAULT byte ${offset} of block ${block.id} flipped on ${victim.id}`)
        this.event(`FAULT flipped byte ${offset} of block ${block.id} (${p}, ${block.lengthBytes} bytes) on ${victim.id}; good replicas on ${others.join(', ')}`, true)
        return
      } finally {
        this.busy.delete(p)
      }
    }
  }

  /**
   * A rotten replica is repaired once it is gone from its node (or holds the
   * right byte again) while its block still belongs to the file, with full
   * replication and no replica marked corrupt. Its file is kept from deletes
   * and overwrites until then, so a delete never passes for a repair.
   */
  private async checkCorruptions(client: LoamClient): Promise<void> {
    for (const c of this.corruptions) {
      if (c.outcome !== 'pending') continue
      const how = await replicaState(c)
      if (how === 'rotten') continue
      const res = await client.getBlockLocations(c.path, 0, 0).catch(() => undefined)
      const lb = res?.blocks.find((b) => b.block?.id === c.blockId)
      if (!lb) {
        if (res) {
          c.outcome = 'unrepaired'
          c.how = `block ${c.blockId} is no longer part of ${c.path}, which nothing deleted or overwrote`
          this.anomaly(`rotten replica of block ${c.blockId} on ${c.node}: ${c.how}`)
        }
        continue
      }
      if (lb.locations.length < REPLICATION || lb.corrupt.length > 0) continue
      c.outcome = 'repaired'
      c.how = `${how}; block on ${lb.locations.map((l) => l.id).join(', ')} at ${((Date.now() - this.startMs) / 1000).toFixed(1)} s`
      this.event(`corruption of block ${c.blockId} on ${c.node} repaired: ${c.how}`, true)
    }
  }

  // ---- the end ----

  async bringEverythingBack(): Promise<void> {
    await Promise.allSettled([...this.tasks])
    if (this.namenodeDown || !alive(this.cluster.record.namenode.pid)) await this.restartNamenode()
    await Promise.all(
      this.cluster.record.nodes.map(async (n, i) => {
        if (alive(n.pid)) return
        this.down.add(i)
        await this.restartDatanode(i)
      }),
    )
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
    await waitFor(async () => {
      const r = await client.report().catch(() => undefined)
      return r !== undefined && !r.safemode && r.datanodes.filter((d) => d.state === 'live').length === DATANODES
    }, RESTART_WAIT_MS, `all ${DATANODES} datanodes live and the namenode out of safe mode`).catch((err) => this.anomaly(toLoamError(err).message))
  }

  /** Waits (bounded) for fsck healthy, every rotten replica replaced, and every abandoned write closed by lease recovery. */
  async heal(): Promise<FsckReport | undefined> {
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
    const started = Date.now()
    let lastLog = 0
    let report: FsckReport | undefined
    for (;;) {
      const fresh = await fsck(client, '/').catch(() => undefined)
      report = fresh ?? report
      await this.checkCorruptions(client)
      const pending = this.corruptions.filter((c) => c.outcome === 'pending' && report?.blocks.some((b) => b.id === c.blockId))
      const healthy = fresh?.healthy ?? false
      if (fresh && healthy && pending.length === 0 && fresh.openForWrite === 0) {
        this.healedAfterMs = Date.now() - started
        break
      }
      if (Date.now() - started > HEAL_TIMEOUT_MS || this.aborted) break
      if (Date.now() - lastLog > PROGRESS_EVERY_MS) {
        lastLog = Date.now()
        const count = (s: string): number => report?.blocks.filter((b) => b.state === s).length ?? 0
        this.log(
          `[${this.clock()}] healing: ${report ? `fsck ${healthy ? 'healthy' : 'UNHEALTHY'}, ${count('UNDER_REPLICATED')} under-replicated, ${count('CORRUPT')} corrupt, ${count('MISSING')} missing, ${report.openForWrite} open for writing` : 'fsck unanswered'}; ${pending.length} rotten replicas not yet replaced`,
        )
      }
      await sleep(1000)
    }
    const cli = await this.cluster.loam(['fsck', '/'])
    this.fsckHealthy = (report?.healthy ?? false) && cli.code === 0
    this.openForWrite = report?.openForWrite ?? -1
    if (cli.code !== 0) this.event(`loam fsck / exited ${cli.code}:\n${cli.stdout.toString()}${cli.stderr}`, true)
    return report
  }

  /** Reads every acknowledged file; checks every deleted path is gone; classifies every corruption. */
  async verifyAll(report: FsckReport | undefined): Promise<void> {
    const paths = this.tracked.all()
    const deadline = Date.now() + FINAL_CHECK_MS
    let next = 0
    const readers = Array.from({ length: FINAL_READERS }, async (_, k) => {
      const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS, shortCircuit: k % 2 === 0 })
      for (;;) {
        const p = paths[next++]
        if (p === undefined || this.aborted) return
        const entry = this.expected.get(p)
        if (!entry) continue
        const want = entry.candidates.map((c) => c?.key ?? 'absent').join(' or ')
        let problem: string | undefined
        let badOffset: number | undefined
        const retryUntil = Math.min(deadline, Date.now() + 30_000)
        for (;;) {
          const r = await verifyPath(client, this.seed, p, entry.candidates)
          if (r.kind === 'match') {
            this.bytesVerified += r.bytes
            this.filesVerified++
            this.settle(p, r.matched)
            break
          }
          if (r.kind === 'mismatch') {
            problem = `different content: ${r.detail}`
            badOffset = r.badOffset
            break
          }
          if (r.error.code === 'not-found' || Date.now() > retryUntil) {
            problem = r.error.code === 'not-found' ? `missing: ${r.error.message}` : `unreadable: ${r.error.message}`
            break
          }
          await sleep(1000)
        }
        if (problem) this.lost.push({ path: p, expected: want, problem, evidence: await this.evidenceFor(client, p, entry, badOffset) })
      }
    })
    await Promise.all(readers)
    const client = this.cluster.client({ timeoutMs: CLIENT_TIMEOUT_MS })
    for (const p of this.deleted) {
      const st = await this.attempt(() => client.stat(p), (e) => e.code === 'not-found', 30_000)
      if (!st.ok && st.error.code === 'not-found') this.deletesVerified++
      else if (st.ok) this.lost.push({ path: p, expected: 'absent (deleted)', problem: `an acknowledged delete was undone: ${p} exists again (${st.value.lengthBytes} bytes)`, evidence: [] })
      else this.lost.push({ path: p, expected: 'absent (deleted)', problem: `could not check the deleted path: ${st.error.message}`, evidence: [] })
    }
    for (const c of this.corruptions) {
      const live = report?.blocks.find((b) => b.id === c.blockId)
      if (c.outcome === 'repaired') continue
      if (!live) {
        c.outcome = 'obsolete'
        c.how = `block ${c.blockId} no longer belongs to any file (its file was deleted or overwritten)`
        continue
      }
      c.outcome = 'unrepaired'
      c.how = `block ${c.blockId} is ${live.state} with replicas on ${live.replicas.map((r) => r.node).join(', ') || 'no node'}${live.corrupt.length ? `, corrupt on ${live.corrupt.map((r) => r.node).join(', ')}` : ''}; the rotten replica on ${c.node} is ${await replicaState(c)}`
      c.evidence = await this.logLines(c.blockId)
    }
  }

  /** What is known about a lost file: its history, its blocks now, and every role's log lines about them. */
  private async evidenceFor(client: LoamClient, p: string, entry: Entry, badOffset: number | undefined): Promise<string[]> {
    const out = [...entry.history.map((h) => `history: ${h}`)]
    const res = await client.getBlockLocations(p, 0, 0).catch((err: unknown) => {
      out.push(`blocks: ${toLoamError(err).message}`)
      return undefined
    })
    for (const lb of res?.blocks ?? []) {
      const b = lb.block!
      const bad = badOffset !== undefined && lb.offsetBytes <= badOffset && badOffset < lb.offsetBytes + b.lengthBytes
      out.push(`block ${b.id} gen ${b.genStamp} at ${lb.offsetBytes}+${b.lengthBytes}${bad ? ' (the first wrong byte is here)' : ''}: replicas ${lb.locations.map((l) => l.id).join(', ') || 'none'}${lb.corrupt.length ? `; corrupt on ${lb.corrupt.map((l) => l.id).join(', ')}` : ''}${lb.complete ? '' : '; incomplete'}`)
      for (const c of this.corruptions.filter((x) => x.blockId === b.id)) out.push(`  injected: byte ${c.offset} flipped on ${c.node} at ${(c.atMs / 1000).toFixed(1)} s, outcome ${c.outcome}`)
      if (bad || res!.blocks.length <= 6) out.push(...(await this.logLines(b.id)).map((l) => `  ${l}`))
    }
    return out
  }

  /** Lines of every role's log that name a block. */
  private async logLines(blockId: number): Promise<string[]> {
    const roles = [{ name: 'namenode', dir: this.cluster.record.namenode.data }, ...this.cluster.record.nodes.map((n) => ({ name: n.id!, dir: n.data }))]
    const needle = new RegExp(`"(block|id)":${blockId}[,}]`)
    const out: string[] = []
    for (const r of roles) {
      const text = await readFile(path.join(r.dir, 'log'), 'utf8').catch(() => '')
      const lines = text.split('\n').filter((l) => needle.test(l))
      out.push(...lines.slice(-EVIDENCE_LINES_PER_BLOCK_MAX).map((l) => `${r.name}: ${l}`))
    }
    return out
  }

  progress(): string {
    const o = this.ops
    const pending = this.corruptions.filter((c) => c.outcome === 'pending').length
    return (
      `[${this.clock()}] writes ${o.writesOk} ok/${o.writesFailed} failed, overwrites ${o.overwritesOk}/${o.overwritesFailed}, deletes ${o.deletesOk}/${o.deletesFailed}, reads ${o.readsOk}/${o.readsFailed}; ` +
      `${this.tracked.size} files (${formatBytes(this.liveBytes)}); down: ${this.downNames()}${this.namenodeDown ? ', namenode' : ''}; ` +
      `kills ${this.kills.datanode} dn/${this.kills.namenode} nn; corruptions ${this.corruptions.length} (${pending} pending)`
    )
  }

  eventLog(): string[] {
    return this.events
  }
}

/** 'rotten' while the flipped byte is still on disk; otherwise how it went. */
async function replicaState(c: Corruption): Promise<'rotten' | 'replica deleted' | 'replica rewritten'> {
  let fh
  try {
    fh = await open(c.file, 'r')
  } catch {
    return 'replica deleted'
  }
  try {
    const b = Buffer.alloc(1)
    const { bytesRead } = await fh.read(b, 0, 1, c.offset)
    return bytesRead === 1 && b[0] === c.after ? 'rotten' : 'replica rewritten'
  } finally {
    await fh.close()
  }
}

async function datanodeRegistered(http: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${http}/status`, { signal: AbortSignal.timeout(2000) })
    const body = (await res.json()) as { registered?: boolean }
    return body.registered === true
  } catch {
    return false
  }
}

/** Copies every role's log and the run's event log to a new directory that outlives the cluster. */
async function keepLogs(cluster: TestCluster, seed: number, events: string[], report: ChaosReport): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `loam-chaos-${seed}-`))
  const roles = [{ name: 'namenode', dir: cluster.record.namenode.data }, ...cluster.record.nodes.map((n) => ({ name: n.id!, dir: n.data }))]
  for (const r of roles) await copyFile(path.join(r.dir, 'log'), path.join(dir, `${r.name}.log`)).catch(() => undefined)
  await copyFile(path.join(cluster.dir, 'cluster-up.log'), path.join(dir, 'cluster-up.log')).catch(() => undefined)
  await writeFile(path.join(dir, 'events.log'), events.join('\n') + '\n')
  await writeFile(path.join(dir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  await mkdir(path.join(dir, 'fsck'), { recursive: true })
  const f = await cluster.loam(['fsck', '/', '--json'])
  await writeFile(path.join(dir, 'fsck', 'fsck.json'), f.stdout)
  return dir
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31)
  const log = opts.log ?? (() => undefined)
  const cleanups = new Cleanups()
  try {
    log(`chaos: seed ${seed}, ${opts.minutes} min, ${DATANODES} datanodes in ${RACKS} racks, replication ${REPLICATION}, ${formatBytes(BLOCK_SIZE_BYTES)} blocks`)
    const cluster = await startCluster(cleanups, {
      nodes: DATANODES,
      racks: RACKS,
      replication: REPLICATION,
      blockSize: '1MiB',
      heartbeat: '1s',
      deadAfter: '4s',
      leaseLimit: '5s',
      scanPeriod: '20s',
      logLevel: 'info',
    })
    opts.onCluster?.(cluster)
    log(`chaos: cluster up in ${cluster.dir}; namenode ${cluster.namenode}`)
    const chaos = new Chaos(cluster, seed, opts)
    const progress = setInterval(() => log(chaos.progress()), PROGRESS_EVERY_MS)
    try {
      const work = [
        ...Array.from({ length: opts.writers ?? WRITERS_DEFAULT }, (_, k) => chaos.writer(k)),
        ...Array.from({ length: opts.readers ?? READERS_DEFAULT }, (_, k) => chaos.reader(k)),
        chaos.faults(),
        chaos.worstMoments(),
      ]
      await Promise.all(work)
    } finally {
      clearInterval(progress)
    }
    log(chaos.progress())
    let report: FsckReport | undefined
    if (!opts.signal?.aborted) {
      log(`[end] workload stopped; bringing every role back and waiting up to ${HEAL_TIMEOUT_MS / 1000} s for the cluster to heal`)
      await chaos.bringEverythingBack()
      report = await chaos.heal()
      log(`[end] ${chaos.fsckHealthy ? `fsck healthy after ${((chaos.healedAfterMs ?? 0) / 1000).toFixed(1)} s` : 'fsck NOT healthy'}; reading back every acknowledged file`)
      await chaos.verifyAll(report)
    }
    const unrepaired = chaos.corruptions.filter((c) => c.outcome === 'unrepaired' || c.outcome === 'pending')
    const aborted = opts.signal?.aborted ?? false
    const result: ChaosReport = {
      seed,
      minutes: opts.minutes,
      elapsedMs: Date.now() - chaos.startMs,
      aborted,
      ops: chaos.ops,
      failures: [...chaos.failures].map(([what, f]) => ({ what, ...f })).sort((a, b) => b.count - a.count),
      kills: chaos.kills,
      corruptions: {
        injected: chaos.corruptions.length,
        repaired: chaos.corruptions.filter((c) => c.outcome === 'repaired').length,
        obsolete: chaos.corruptions.filter((c) => c.outcome === 'obsolete').length,
        unrepaired,
      },
      bytesWritten: chaos.bytesWritten,
      bytesVerified: chaos.bytesVerified,
      filesVerified: chaos.filesVerified,
      deletesVerified: chaos.deletesVerified,
      fsckHealthy: chaos.fsckHealthy,
      healedAfterMs: chaos.healedAfterMs,
      openForWrite: chaos.openForWrite,
      anomalies: chaos.anomalies,
      lost: chaos.lost,
      ok: false,
    }
    result.ok = !aborted && result.lost.length === 0 && result.fsckHealthy && unrepaired.length === 0 && result.anomalies.length === 0
    const keep = opts.keepLogs ?? 'on-failure'
    if (keep === 'always' || (keep === 'on-failure' && !result.ok && !aborted)) result.keptLogs = await keepLogs(cluster, seed, chaos.eventLog(), result).catch(() => undefined)
    return result
  } finally {
    await cleanups.run()
  }
}

/** The report as the lines main.ts prints. */
export function formatReport(r: ChaosReport): string[] {
  const o = r.ops
  const lines = [
    `chaos report (seed ${r.seed}, ${r.minutes} min, ${(r.elapsedMs / 1000).toFixed(0)} s in all${r.aborted ? ', ABORTED' : ''})`,
    `  operations: writes ${o.writesOk} ok / ${o.writesFailed} failed, overwrites ${o.overwritesOk} ok / ${o.overwritesFailed} failed, deletes ${o.deletesOk} ok / ${o.deletesFailed} failed, reads ${o.readsOk} ok / ${o.readsFailed} failed`,
    ...r.failures.map((f) => `    failed ${f.what} x${f.count}, for example: ${f.example}`),
    `  kills: datanode ${r.kills.datanode}, namenode ${r.kills.namenode}`,
    `  corruptions: ${r.corruptions.injected} injected, ${r.corruptions.repaired} repaired, ${r.corruptions.obsolete} went with their file, ${r.corruptions.unrepaired.length} not repaired`,
    `  bytes: ${formatBytes(r.bytesWritten)} written, ${formatBytes(r.bytesVerified)} verified; ${r.filesVerified} acknowledged files read back at the end, ${r.deletesVerified} deletes checked`,
    `  fsck: ${r.fsckHealthy ? `healthy after ${((r.healedAfterMs ?? 0) / 1000).toFixed(1)} s` : 'NOT healthy'}${r.openForWrite > 0 ? `, ${r.openForWrite} files still open for writing` : ''}`,
  ]
  for (const c of r.corruptions.unrepaired) {
    lines.push(`  not repaired: block ${c.blockId} (${c.path}) byte ${c.offset} on ${c.node}, injected at ${(c.atMs / 1000).toFixed(1)} s: ${c.how ?? c.outcome}`)
    for (const e of c.evidence ?? []) lines.push(`      ${e}`)
  }
  for (const a of r.anomalies) lines.push(`  anomaly: ${a}`)
  if (r.lost.length === 0) lines.push('lost: 0')
  else {
    lines.push(`lost: ${r.lost.length}`)
    for (const l of r.lost) {
      lines.push(`  ${l.path}: ${l.problem} (expected ${l.expected})`)
      for (const e of l.evidence) lines.push(`      ${e}`)
    }
  }
  if (r.keptLogs) lines.push(`logs, events and fsck kept in ${r.keptLogs}`)
  return lines
}
