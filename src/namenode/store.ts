// The namenode's durable key-value store: LevelDB behind a small interface
// (sync reads, ordered commits, prefix scans) so a replicated engine can take
// its place. Commits are grouped: every mutation that arrives while one synced
// batch is being written goes into the next batch, so durability costs one
// fsync per group, not per mutation.
import { Level } from 'level'
import { COMMIT_BACKGROUND_WAIT_MS, COMMIT_GROUP_MUTATIONS_MAX, NAMESPACE_CACHE_ENTRIES_MAX } from '../limits.js'
import { LoamError } from '../rpc/errors.js'

export type KvOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }

/** background: nobody waits on the commit, so it may wait up to COMMIT_BACKGROUND_WAIT_MS for another to share its sync. */
export interface CommitOptions {
  background?: boolean
}

export interface MetaStore {
  /** The latest value, including commits not yet durable (they are ordered before anything later). */
  get(key: Buffer): Buffer | undefined
  /** Entries whose key starts with prefix, after startAfter, in key order. */
  scan(prefix: Buffer, startAfter: Buffer | undefined, limit: number): Promise<Array<[Buffer, Buffer]>>
  /** Applies ops atomically; visible to get() at once, resolved once durable. */
  commit(ops: KvOp[], opts?: CommitOptions): Promise<void>
  close(): Promise<void>
}

interface Pending {
  ops: KvOp[]
  seq: number
  resolve(): void
  reject(err: Error): void
}

interface OverlayEntry {
  value: Buffer | null
  seq: number
}

export class LevelStore implements MetaStore {
  /** Writes accepted but not yet in LevelDB, newest per key. */
  private readonly overlay = new Map<string, OverlayEntry>()
  /**
   * What LevelDB holds for recently read or written keys (null: absent), in two
   * generations: when the young one fills, it becomes the old one and the old
   * one is dropped. Keys are set in place, never deleted one by one (deleting
   * and re-adding a key in a large V8 Map makes its lookups slow).
   */
  private young = new Map<string, Buffer | null>()
  private old = new Map<string, Buffer | null>()
  private queue: Pending[] = []
  private flushing = false
  /** A background commit waiting for company (see commit). */
  private held: NodeJS.Timeout | undefined
  private seq = 0
  private failed: Error | undefined
  /** Synced batches written and mutations in them, for /metrics. */
  stats = { batches: 0, mutations: 0 }

  private constructor(
    private readonly db: Level<Buffer, Buffer>,
    private readonly onFatal: (err: Error) => void,
  ) {}

  static async open(dir: string, onFatal: (err: Error) => void): Promise<LevelStore> {
    const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    try {
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message
      throw new LoamError('io', `cannot open the namespace store in ${dir}: ${cause}; check that the directory is writable and no other namenode uses it`)
    }
    return new LevelStore(db, onFatal)
  }

  get(key: Buffer): Buffer | undefined {
    const k = key.toString('latin1')
    const o = this.overlay.get(k)
    if (o) return o.value ?? undefined
    const young = this.young.get(k)
    if (young !== undefined) return young ?? undefined
    const old = this.old.get(k)
    const v = old !== undefined ? old : (this.db.getSync(key) ?? null)
    this.remember(k, v)
    return v ?? undefined
  }

  private remember(k: string, v: Buffer | null): void {
    if (this.young.size >= NAMESPACE_CACHE_ENTRIES_MAX / 2 && !this.young.has(k)) {
      this.old = this.young
      this.young = new Map()
    }
    this.young.set(k, v)
  }

  async scan(prefix: Buffer, startAfter: Buffer | undefined, limit: number): Promise<Array<[Buffer, Buffer]>> {
    // Take the overlay as it is now: the result is the state at this moment.
    const pfx = prefix.toString('latin1')
    const after = startAfter?.toString('latin1')
    const overlaid = new Map<string, Buffer | null>()
    for (const [k, o] of this.overlay) {
      if (k.startsWith(pfx) && (after === undefined || k > after)) overlaid.set(k, o.value)
    }
    const out = new Map<string, Buffer>()
    // Start after startAfter when it lies inside the prefix, else at the prefix itself.
    const bound = startAfter && Buffer.compare(startAfter, prefix) >= 0 ? { gt: startAfter } : { gte: prefix }
    const it = this.db.iterator({ ...bound, lt: prefixEnd(prefix), limit: limit + overlaid.size })
    try {
      for (;;) {
        const entries = await it.nextv(1000)
        if (entries.length === 0) break
        for (const [k, v] of entries) out.set(k.toString('latin1'), v)
      }
    } finally {
      await it.close()
    }
    for (const [k, v] of overlaid) {
      if (v === null) out.delete(k)
      else out.set(k, v)
    }
    const keys = [...out.keys()].sort()
    return keys.slice(0, limit).map((k) => [Buffer.from(k, 'latin1'), out.get(k) as Buffer])
  }

  commit(ops: KvOp[], opts: CommitOptions = {}): Promise<void> {
    if (this.failed) return Promise.reject(new LoamError('io', `namespace store failed: ${this.failed.message}`))
    const seq = ++this.seq
    for (const op of ops) this.overlay.set(op.key.toString('latin1'), { value: op.type === 'put' ? op.value : null, seq })
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, seq, resolve, reject })
      if (this.flushing) return
      // A close after the program's close returned, say, usually comes just before the program's next create: one sync for both.
      if (opts.background) {
        this.held ??= setTimeout(() => void this.flush(), COMMIT_BACKGROUND_WAIT_MS)
        return
      }
      void this.flush()
    })
  }

  private async flush(): Promise<void> {
    clearTimeout(this.held)
    this.held = undefined
    if (this.flushing) return
    this.flushing = true
    while (this.queue.length > 0) {
      const group = this.queue.splice(0, COMMIT_GROUP_MUTATIONS_MAX)
      // Only the last write to each key matters (a group rewrites counters and parent directories often).
      const last = new Map<string, KvOp>()
      for (const p of group) for (const op of p.ops) last.set(op.key.toString('latin1'), op)
      const ops = [...last.values()]
      try {
        await this.db.batch(ops, { sync: true })
      } catch (err) {
        // What is in the overlay can no longer be trusted to reach disk: stop.
        this.failed = err as Error
        for (const p of [...group, ...this.queue]) p.reject(new LoamError('io', `namespace store write failed: ${(err as Error).message}`))
        this.queue = []
        this.flushing = false
        this.onFatal(err as Error)
        return
      }
      this.stats.batches++
      this.stats.mutations += group.length
      // The batch is in LevelDB now; drop overlay entries no later commit has replaced.
      const lastSeq = group[group.length - 1]!.seq
      for (const [k, op] of last) {
        this.remember(k, op.type === 'put' ? op.value : null)
        const o = this.overlay.get(k)
        if (o && o.seq <= lastSeq) this.overlay.delete(k)
      }
      for (const p of group) p.resolve()
    }
    this.flushing = false
  }

  async close(): Promise<void> {
    if (this.held) void this.flush()
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5))
    await this.db.close()
  }
}

function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
}
