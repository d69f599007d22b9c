// Whole reads and writes at a position, and the durability of names: the datanode's file I/O helpers.
import { constants as fsConstants } from 'node:fs'
import fs, { type FileHandle } from 'node:fs/promises'

export async function writeFully(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < buf.byteLength) {
    const { bytesWritten } = await fh.write(buf, done, buf.byteLength - done, position + done)
    done += bytesWritten
  }
}

/** Several buffers at position in one syscall where the kernel takes them all (it nearly always does). */
export async function writevFully(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  const total = bufs.reduce((sum, b) => sum + b.length, 0)
  const { bytesWritten } = bufs.length === 1 ? await fh.write(bufs[0]!, 0, total, position) : await fh.writev(bufs, position)
  if (bytesWritten === total) return
  const rest = Buffer.concat(bufs).subarray(bytesWritten)
  await writeFully(fh, rest, position + bytesWritten)
}

/** Reads up to buf.length bytes at position; fewer only at end of file. */
export async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done
}

/** Makes renames and creations in a directory durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

export async function fileSize(p: string): Promise<number | undefined> {
  try {
    return (await fs.stat(p)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
