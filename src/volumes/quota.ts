// A mount's own count of a volume's logical bytes. The volume is attached to
// this mount's node alone, so the count stays exact; a write that would pass
// the size fails at once (EDQUOT) instead of at the next fsync, and the
// namenode checks again when lengths are committed.
import { LoamError } from '../rpc/errors.js'

export class VolumeQuota {
  constructor(
    readonly name: string,
    private sizeBytes: number,
    private usedBytes: number,
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
}
