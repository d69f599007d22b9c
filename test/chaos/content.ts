// What the chaos test writes and how it checks it: a seeded PRNG for every
// decision, and file contents that are a pure function of (seed, version key),
// so an acknowledged file is checked by regenerating its bytes, never by
// keeping them.
import { createCipheriv, createHash } from 'node:crypto'
import type { LoamClient } from '../../src/client/client.js'
import { LoamError, toLoamError } from '../../src/rpc/errors.js'
import { Rng } from '../helpers/rng.js'


/** A seed from a name, for actors that need their own stream. */
export function seedOf(seed: number, name: string): number {
  return createHash('sha256').update(`${seed}/${name}`).digest().readUInt32LE(0)
}

/** One acknowledged content of a path: its bytes are content(seed, key) cut at size. */
export interface Version {
  key: string
  size: number
}

/** The byte stream of a version: AES-128-CTR over zeros, keyed by (seed, key); deterministic at disk speed. */
export function contentStream(seed: number, key: string): (n: number) => Buffer {
  const k = createHash('sha256').update(`loam-chaos/${seed}/${key}`).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', k, Buffer.alloc(16))
  return (n) => cipher.update(Buffer.alloc(n))
}

/**
 * A file size from 0 to about 5 MiB, weighted towards the edges that break
 * block stores: empty files, a byte, exact block multiples and one either side,
 * partial checksum chunks.
 */
export function chooseSize(rng: Rng, blockSizeBytes: number, maxBytes: number): number {
  const r = rng.next()
  if (r < 0.05) return 0
  if (r < 0.12) return rng.int(1, 70 * 1024)
  if (r < 0.27) {
    const blocks = rng.int(1, Math.max(1, Math.floor(maxBytes / blockSizeBytes)))
    return Math.min(maxBytes, Math.max(0, blocks * blockSizeBytes + rng.pick([-1, 0, 0, 1])))
  }
  // Mostly small-to-medium: most of the run's bytes should go to verification, not to filling disks.
  const x = rng.next()
  return Math.floor(x * x * maxBytes)
}

export type VerifyOutcome =
  | { kind: 'match'; matched: Version | null; bytes: number }
  | { kind: 'mismatch'; length: number; detail: string; bytes: number; badOffset?: number }
  | { kind: 'error'; error: LoamError; bytes: number }

/**
 * Reads path and says which candidate it is (null: the path does not exist).
 * Only a definite answer is 'match' or 'mismatch'; a read that fails is 'error'
 * (with 'not-found' when the path is missing and absence was not a candidate).
 */
export async function verifyPath(client: LoamClient, seed: number, path: string, candidates: ReadonlyArray<Version | null>): Promise<VerifyOutcome> {
  let reader
  try {
    reader = await client.open(path)
  } catch (err) {
    const e = toLoamError(err)
    if (e.code === 'not-found' && candidates.includes(null)) return { kind: 'match', matched: null, bytes: 0 }
    return { kind: 'error', error: e, bytes: 0 }
  }
  const length = reader.status.lengthBytes
  const alive = candidates.filter((c): c is Version => c !== null && c.size === length).map((v) => ({ v, next: contentStream(seed, v.key), badAt: -1 }))
  const describe = (): string => candidates.map((c) => (c ? `${c.key} (${c.size} bytes)` : 'absent')).join(' or ')
  if (alive.length === 0) {
    return { kind: 'mismatch', length, detail: `${path} is ${length} bytes long; expected ${describe()}`, bytes: 0 }
  }
  let pos = 0
  try {
    for await (const piece of reader.read()) {
      for (const a of alive) {
        if (a.badAt >= 0) continue
        const want = a.next(piece.length)
        if (!want.equals(piece)) {
          let i = 0
          while (i < piece.length && want[i] === piece[i]) i++
          a.badAt = pos + i
        }
      }
      pos += piece.length
    }
  } catch (err) {
    return { kind: 'error', error: toLoamError(err), bytes: pos }
  }
  if (pos !== length) return { kind: 'error', error: new LoamError('io', `${path}: read ended at ${pos} of ${length} bytes`), bytes: pos }
  const good = alive.find((a) => a.badAt < 0)
  if (good) return { kind: 'match', matched: good.v, bytes: pos }
  const first = alive[0]!
  return { kind: 'mismatch', length, detail: `${path}: bytes differ from ${first.v.key} at offset ${first.badAt}; expected ${describe()}`, badOffset: first.badAt, bytes: pos }
}
