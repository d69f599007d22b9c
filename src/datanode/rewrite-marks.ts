import fs from 'node:fs'
import fsp from 'node:fs/promises'

import { BLOCK_SIZE_MAX_BYTES, CHUNK_BYTES } from '../limits.js'
import { assert } from '../rpc/errors.js'

/**
 * Chunks of a replica being rewritten since its last quiet sync, kept in a
 * small file beside it (blk_N.rewrites): a magic header, then one bit per
 * chunk.
 *
 * Why: a chunk's bytes and its checksum are two writes, and a crash can land
 * one without the other, or half of a multi-page write. For a chunk written
 * for the first time that costs only bytes nobody was told are safe. For a
 * chunk that already held bytes, it would make the chunk fail its checksum
 * and block recovery cut the replica there, taking the acknowledged bytes of
 * that chunk and of every chunk after it. So such a chunk is marked before
 * the write starts, and recovery takes a marked chunk's bytes as they are and
 * hashes them again (a write torn by a crash may leave old and new bytes
 * mixed, as a local disk does), while every unmarked chunk is verified as
 * ever: damage is still found wherever no write was under way.
 */
export class RewriteMarks {
  private fd: number | undefined
  private readonly marked = new Set<number>()

  constructor(readonly path: string) {}

  /**
   * Marks chunks first..last, once per chunk until cleared. Synchronous: one
   * small write into the page cache costs less than a trip to the thread
   * pool, and it is done before the data write that follows starts.
   */
  mark(first: number, last: number): void {
    assert(Number.isSafeInteger(first) && first >= 0 && last >= first && last < CHUNKS_MAX, 'marked chunks lie within a block')
    let fresh = false
    for (let c = first; c <= last; c++) {
      if (this.marked.has(c)) continue
      this.marked.add(c)
      fresh = true
    }
    if (!fresh) return
    const firstByte = first >> 3
    const bits = Buffer.alloc((last >> 3) - firstByte + 1)
    for (let c = firstByte * 8; c < (firstByte + bits.length) * 8; c++) if (this.marked.has(c)) bits[(c >> 3) - firstByte]! |= 1 << (c & 7)
    writeAllSync(this.open(), bits, HEADER_BYTES + firstByte)
  }

  /** Forgets every mark: only once every write marked so far is synced and none is in flight. */
  clear(): void {
    if (this.marked.size === 0) return
    // Zeros over the marked span, not a truncate: a data write, where a truncate would be a journaled metadata change.
    let lo = Infinity
    let hi = -1
    for (const c of this.marked) {
      lo = Math.min(lo, c >> 3)
      hi = Math.max(hi, c >> 3)
    }
    this.marked.clear()
    writeAllSync(this.open(), Buffer.alloc(hi - lo + 1), HEADER_BYTES + lo)
  }

  /** Closes the file, leaving it for recovery (a writer that ends without finalizing). */
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
  }

  /** The chunks marked (none when there is no file). A mark outlives re-stamps: the bytes it covers are what they were. */
  static async load(path: string): Promise<ReadonlySet<number>> {
    let buf: Buffer
    try {
      buf = await fsp.readFile(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set()
      throw err
    }
    const chunks = new Set<number>()
    if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return chunks
    const bits = buf.subarray(HEADER_BYTES, HEADER_BYTES + BITMAP_BYTES_MAX)
    for (let i = 0; i < bits.length; i++) for (let b = 0; b < 8; b++) if ((bits[i]! >> b) & 1) chunks.add(i * 8 + b)
    return chunks
  }

  static async remove(path: string): Promise<void> {
    await fsp.rm(path, { force: true })
  }

  private open(): number {
    if (this.fd === undefined) {
      this.fd = fs.openSync(this.path, 'w+', 0o600)
      writeAllSync(this.fd, MAGIC, 0)
    }
    return this.fd
  }
}

/** The marks file's name is its replica's data file's with this added. */
export const REWRITE_MARKS_SUFFIX = '.rewrites'

export function rewriteMarksPath(dataPath: string): string {
  return dataPath + REWRITE_MARKS_SUFFIX
}

const MAGIC = Buffer.from('LOAMRWM1')
const HEADER_BYTES = MAGIC.length
const CHUNKS_MAX = Math.ceil(BLOCK_SIZE_MAX_BYTES / CHUNK_BYTES)
const BITMAP_BYTES_MAX = Math.ceil(CHUNKS_MAX / 8)

function writeAllSync(fd: number, buf: Buffer, position: number): void {
  for (let done = 0; done < buf.length; ) done += fs.writeSync(fd, buf, done, buf.length - done, position + done)
}
