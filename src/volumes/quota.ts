// A mount's own count of a volume's logical bytes. The volume is attached to
// this mount's node alone, so the count stays exact; a write that would pass
// the size fails at once (EDQUOT) instead of at the next fsync, and the
// namenode checks again when lengths are committed. The size can change under
// the mount (`loam volume resize`): before a write is refused for it, the
// size is learnt again, at most once per VOLUME_SIZE_REFRESH_MS.
import assert from 'node:assert/strict'
import { LoamError } from '../rpc/errors.js'

/** How often, at most, a mount refused a write for its volume's size asks the namenode for the size again. */
export const VOLUME_SIZE_REFRESH_MS = 1_000

export class VolumeQuota {
  private refreshedMs = 0
  private refreshing: Promise<void> | undefined

  /** fetchSizeBytes: the volume's size as the namenode holds it now. */
  constructor(
    readonly name: string,
    private sizeBytes: number,
    private usedBytes: number,
    private readonly fetchSizeBytes: () => Promise<number>,
    private readonly nowMs: () => number = Date.now,
  ) {}

  get used(): number {
    return this.usedBytes
  }

  /** Takes deltaBytes more, or throws 'quota' and takes nothing. */
  grow(deltaBytes: number): void {
    if (deltaBytes <= 0) return
    if (this.usedBytes + deltaBytes > this.sizeBytes) {
      throw new LoamError('quota', `volume ${this.name} is full: ${this.usedBytes} of ${this.sizeBytes} bytes used, ${deltaBytes} more asked for (grow it with 'loam volume resize')`)
    }
    this.usedBytes += deltaBytes
  }

  shrink(deltaBytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - Math.max(0, deltaBytes))
  }

  /**
   * Runs work (a write, a truncate: something that calls grow first and
   * changes nothing when refused); refused for quota, it runs once more if
   * the volume's size turns out to have changed since it was last learnt.
   */
  async retryOnResize<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (err) {
      if (!(err instanceof LoamError) || err.code !== 'quota') throw err
      const before = this.sizeBytes
      await this.refresh()
      if (this.sizeBytes === before) throw err
      return work()
    }
  }

  /** Learns the size again, unless it was learnt within VOLUME_SIZE_REFRESH_MS: a full volume does not hammer the namenode. */
  private refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing
    if (this.nowMs() - this.refreshedMs < VOLUME_SIZE_REFRESH_MS) return Promise.resolve()
    this.refreshedMs = this.nowMs()
    this.refreshing = this.fetchSizeBytes().then(
      (sizeBytes) => {
        assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0, `volume ${this.name}: size ${sizeBytes} from the namenode`)
        this.sizeBytes = sizeBytes
      },
      // Unreachable now: the refusal stands at the size known; the next one asks again.
      () => undefined,
    ).finally(() => (this.refreshing = undefined))
    return this.refreshing
  }
}
