import fs, { type FileHandle } from 'node:fs/promises'

import { BLOCK_SIZE_MAX_BYTES, CHUNK_BYTES } from '../limits.js'
import { assert } from '../rpc/errors.js'
import { writeFully } from './file-io.js'

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
  private fh: Promise<FileHandle> | undefined
  private readonly marked = new Set<number>()
  /** Mark writes go one after another, each with every mark made so far: a later one never undoes an earlier. */
  private queue: Promise<void> = Promise.resolve()

  constructor(readonly path: string) {}

  /** Marks chunks first..last (one write, once per chunk until cleared); settles when the marks are written. */
  mark(first: number, last: number): Promise<void> {
    assert(Number.isSafeInteger(first) && first >= 0 && last >= first && last < CHUNKS_MAX, 'marked chunks lie within a block')
    let fresh = false
    for (let c = first; c <= last; c++) {
      if (this.marked.has(c)) continue
      this.marked.add(c)
      fresh = true
    }
    if (!fresh) return this.queue
    const firstByte = first >> 3
    const lastByte = last >> 3
    return this.enqueue(async () => {
      const fh = await this.open()
      const bits = Buffer.alloc(lastByte - firstByte + 1)
      for (const c of this.marked) if (c >> 3 >= firstByte && c >> 3 <= lastByte) bits[(c >> 3) - firstByte]! |= 1 << (c & 7)
      await writeFully(fh, bits, HEADER_BYTES + firstByte)
    })
  }

  /** Forgets every mark: only once every write marked so far is synced and none is in flight. */
  clear(): Promise<void> {
    if (this.marked.size === 0) return this.queue
    this.marked.clear()
    return this.enqueue(async () => {
      await (await this.open()).truncate(HEADER_BYTES)
    })
  }

  /** Closes the file, leaving it for recovery (a writer that ends without finalizing). */
  async close(): Promise<void> {
    await this.queue.catch(() => undefined)
    const fh = this.fh
    this.fh = undefined
    await (await fh?.catch(() => undefined))?.close()
  }

  /** The chunks marked (none when there is no file). A mark outlives re-stamps: the bytes it covers are what they were. */
  static async load(path: string): Promise<ReadonlySet<number>> {
    let buf: Buffer
    try {
      buf = await fs.readFile(path)
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
    await fs.rm(path, { force: true })
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.queue.catch(() => undefined).then(op)
    this.queue = next
    return next
  }

  private open(): Promise<FileHandle> {
    this.fh ??= (async () => {
      const fh = await fs.open(this.path, 'w+', 0o600)
      await writeFully(fh, MAGIC, 0)
      return fh
    })()
    return this.fh
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
