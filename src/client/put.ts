// Writing a whole file from a stream of bytes, as `loam fs put` and the dashboard's upload do.
import { LoamError } from '../rpc/errors.js'
import type { FileStatus } from '../rpc/messages.js'
import type { LoamClient } from './client.js'

export interface PutOptions {
  /** Replace a file already there (otherwise that is an 'exists' error and nothing changes). */
  force?: boolean
  replication?: number
  blockSizeBytes?: number
  /** Called with each chunk's length once it is written (a progress bar). */
  onChunk?: (bytes: number) => void
}

/**
 * Writes the bytes under a temporary name and renames them into place: a
 * failed put leaves no partial file, and the old one (with force) intact.
 */
export async function putStream(client: LoamClient, target: string, input: AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<FileStatus> {
  if (!opts.force && (await client.exists(target))) throw new LoamError('exists', `${target}: file exists (use --force to overwrite)`)
  const tmp = `${target}._COPYING_`
  const writer = await client.create(tmp, { overwrite: true, replication: opts.replication, blockSizeBytes: opts.blockSizeBytes })
  try {
    for await (const chunk of input) {
      await writer.write(chunk)
      opts.onChunk?.(chunk.length)
    }
    await writer.close()
    await client.rename(tmp, target, opts.force ?? false)
  } catch (err) {
    writer.abort()
    await client.delete(tmp).catch(() => undefined)
    throw err
  }
  return client.stat(target)
}
