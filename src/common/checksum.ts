// Chunk checksums: one xxhash64 (seed 0) per CHUNK_BYTES of data, stored and
// sent as 8 bytes big-endian each, concatenated. The same code computes them
// on the client, checks them on every datanode of a pipeline, and verifies
// them on read, so a damaged chunk is caught wherever it was damaged.

import xxhash from 'xxhash-wasm'
import { CHECKSUM_BYTES, CHUNK_BYTES } from '../limits.js'

type XXHashAPI = Awaited<ReturnType<typeof xxhash>>

let hasher: XXHashAPI | undefined
let loading: Promise<void> | undefined

/** Loads the wasm hasher once; every later call returns at once. */
export async function initChecksums(): Promise<void> {
  if (hasher !== undefined) return
  // Concurrent first callers share one instantiation.
  loading ??= xxhash().then(
    (api) => {
      hasher = api
    },
    (err: unknown) => {
      loading = undefined
      throw err
    },
  )
  await loading
}

function h64(): XXHashAPI['h64Raw'] {
  if (hasher === undefined) {
    throw new Error('checksums used before initChecksums() resolved: await initChecksums() at startup')
  }
  return hasher.h64Raw
}

function checkChunkBytes(chunkBytes: number): void {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) {
    throw new Error(`chunk size must be a positive integer, got ${chunkBytes}`)
  }
}

/** Number of chunks (the last may be partial) that cover `lengthBytes`. */
export function chunkCount(lengthBytes: number, chunkBytes: number = CHUNK_BYTES): number {
  return Math.ceil(lengthBytes / chunkBytes)
}

/** One checksum per chunk of `data`, big-endian, concatenated. */
export function chunkChecksums(data: Uint8Array, chunkBytes: number = CHUNK_BYTES): Buffer {
  checkChunkBytes(chunkBytes)
  const hash = h64()
  const chunks = chunkCount(data.byteLength, chunkBytes)
  const out = Buffer.allocUnsafe(chunks * CHECKSUM_BYTES)
  for (let i = 0; i < chunks; i++) {
    const start = i * chunkBytes
    out.writeBigUInt64BE(hash(data.subarray(start, start + chunkBytes)), i * CHECKSUM_BYTES)
  }
  return out
}

/**
 * Index of the first chunk of `data` whose checksum differs, or -1 when all
 * match. A checksum array of the wrong length cannot describe the data: that
 * reports chunk 0 as bad.
 */
export function firstBadChunk(data: Uint8Array, checksums: Uint8Array, chunkBytes: number = CHUNK_BYTES): number {
  checkChunkBytes(chunkBytes)
  const hash = h64()
  const chunks = chunkCount(data.byteLength, chunkBytes)
  if (checksums.byteLength !== chunks * CHECKSUM_BYTES) return 0
  // A DataView reads any Uint8Array, not only Buffers, without copying.
  const view = new DataView(checksums.buffer, checksums.byteOffset, checksums.byteLength)
  for (let i = 0; i < chunks; i++) {
    const start = i * chunkBytes
    if (hash(data.subarray(start, start + chunkBytes)) !== view.getBigUint64(i * CHECKSUM_BYTES)) return i
  }
  return -1
}
