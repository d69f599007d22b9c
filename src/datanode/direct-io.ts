// Replica bytes written with O_DIRECT, whole pages at a time, from a few
// page-aligned staging buffers. A buffered write copies every byte into
// page-cache pages the kernel must first find: on a VM whose freed memory goes
// back to the host (as here) that costs ~1.9 CPU-seconds per GiB, against
// ~0.1 for the same bytes sent straight to the device, and the pipeline writes
// every byte three times. Reads are unchanged (buffered): the kernel drops
// cached pages a direct write covers, so they never see stale bytes.
//
// Anything that is not whole pages (a block's short tail, an fsync'd partial
// chunk, a merge inside a chunk) still goes through the page cache, as does
// every write where the filesystem refuses O_DIRECT (tmpfs on older kernels,
// some FUSE and overlay filesystems).
import { constants as fsConstants } from 'node:fs'
import fs, { type FileHandle } from 'node:fs/promises'
import { DIRECT_WRITE_SLOTS, DISK_WRITE_BYTES_MAX } from '../limits.js'
import { assert } from '../rpc/errors.js'

/** Offsets, lengths and buffer addresses of direct writes are multiples of this. */
export const DIRECT_ALIGN_BYTES = 4096
/** WebAssembly memory grows in pages of this size, each aligned to it. */
const WASM_PAGE_BYTES = 64 * 1024

/** Page-aligned staging buffers shared by every replica a datanode writes, and what its filesystems allow. */
export class DirectIo {
  private readonly free: Buffer[] = []
  private readonly slots: number
  /** Bytes written direct so far (the rest went through the page cache). */
  writtenBytes = 0
  /** Data dirs whose filesystem refused O_DIRECT: their writes stay buffered. */
  private readonly refused = new Set<string>()

  constructor(slots = DIRECT_WRITE_SLOTS) {
    assert(Number.isSafeInteger(slots) && slots >= 0, 'a whole number of staging slots')
    this.slots = slots
    if (slots === 0) return
    // WebAssembly memory is the one allocation Node offers that is page-aligned.
    const pages = Math.ceil((slots * DISK_WRITE_BYTES_MAX) / WASM_PAGE_BYTES)
    const memory = Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer)
    for (let i = 0; i < slots; i++) this.free.push(memory.subarray(i * DISK_WRITE_BYTES_MAX, (i + 1) * DISK_WRITE_BYTES_MAX))
  }

  /** A direct handle on the data file at path in dir, or undefined where there is none (buffered writes say why). */
  async open(dir: string, path: string): Promise<FileHandle | undefined> {
    if (this.refused.has(dir) || this.slots === 0) return undefined
    try {
      return await fs.open(path, fsConstants.O_WRONLY | fsConstants.O_DIRECT)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') this.refused.add(dir)
      return undefined
    }
  }

  /**
   * Writes pieces (lengthBytes in all) at offsetBytes through handle, a
   * handle from open(): true once written, false when it is not whole pages or
   * every staging buffer is busy (the caller writes it buffered instead).
   */
  async write(dir: string, handle: FileHandle, pieces: Buffer[], offsetBytes: number, lengthBytes: number): Promise<boolean> {
    if (offsetBytes % DIRECT_ALIGN_BYTES !== 0 || lengthBytes % DIRECT_ALIGN_BYTES !== 0 || lengthBytes > DISK_WRITE_BYTES_MAX) return false
    const slot = this.free.pop()
    if (slot === undefined) return false
    let done = 0
    try {
      let at = 0
      for (const piece of pieces) at += piece.copy(slot, at)
      assert(at === lengthBytes, 'the pieces fill the staged write')
      while (done < lengthBytes) {
        const { bytesWritten } = await handle.write(slot, done, lengthBytes - done, offsetBytes + done)
        // A short direct write ends on a page boundary, or the device is full (the next write says so).
        done += bytesWritten
      }
      this.writtenBytes += lengthBytes
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
      // A filesystem that opens O_DIRECT files but refuses their writes: buffered from now on. (After a short
      // write, the rest is simply misaligned; the caller writes it all again, buffered.)
      if (done === 0) this.refused.add(dir)
      return false
    } finally {
      this.free.push(slot)
    }
  }
}
