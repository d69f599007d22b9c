// The namenode's block keys (HDFS's block key manager), as pure state: random
// keys, one signing at a time for BLOCK_KEY_ROTATION_MS, the next made a whole
// rotation before it signs so every datanode holds it by then; a key is kept
// until the last token it signed has expired.
import { randomBytes, randomInt } from 'node:crypto'
import path from 'node:path'
import { BLOCK_KEY_BYTES, type BlockKey } from '../rpc/block-token.js'
import { assert, LoamError } from '../rpc/errors.js'

export interface TimedBlockKey extends BlockKey {
  /** When it starts to sign (it signs until the next one starts). */
  signFromMs: number
}

export class BlockKeys {
  private keys: TimedBlockKey[]

  constructor(
    private readonly rotationMs: number,
    private readonly tokenLifetimeMs: number,
    kept: TimedBlockKey[] = [],
  ) {
    this.keys = [...kept].sort((a, b) => a.signFromMs - b.signFromMs)
  }

  /** Drops expired keys and makes new ones until one signs now and the next is ready; true when the set changed. */
  rotate(nowMs: number): boolean {
    const before = this.keys.length
    this.keys = this.keys.filter((k) => k.expiresMs >= nowMs)
    let changed = this.keys.length !== before
    if (this.keys.length === 0) {
      this.keys.push(this.make(nowMs))
      changed = true
    }
    // Keys ahead: the one signing now, and the next.
    while (this.keys[this.keys.length - 1]!.signFromMs <= nowMs) {
      this.keys.push(this.make(this.keys[this.keys.length - 1]!.signFromMs + this.rotationMs))
      changed = true
    }
    return changed
  }

  /** The key that signs now (rotate first). */
  signing(nowMs: number): BlockKey {
    const k = this.keys.filter((x) => x.signFromMs <= nowMs).pop()
    assert(k, 'a block key signs now (the keys are rotated every second)')
    return k
  }

  /** Every key a datanode needs: those that signed tokens still valid, the one signing, the next. */
  all(): TimedBlockKey[] {
    return [...this.keys]
  }

  private make(signFromMs: number): TimedBlockKey {
    const last = this.keys[this.keys.length - 1]
    const id = last ? (last.id + 1) >>> 0 : randomInt(0, 2 ** 31)
    return { id, key: randomBytes(BLOCK_KEY_BYTES), signFromMs, expiresMs: signFromMs + this.rotationMs + this.tokenLifetimeMs }
  }
}

/** Where the namenode keeps its block keys: in its data directory, readable by its user alone. */
export function blockKeysFile(dataDir: string): string {
  return path.join(path.resolve(dataDir), 'block-keys')
}

/** The keys as the namenode keeps them in its data directory (0600), so tokens outlive a restart. */
export function encodeBlockKeys(keys: readonly TimedBlockKey[]): string {
  return JSON.stringify(keys.map((k) => ({ id: k.id, key: Buffer.from(k.key).toString('hex'), signFromMs: k.signFromMs, expiresMs: k.expiresMs })))
}

export function decodeBlockKeys(text: string, file: string): TimedBlockKey[] {
  try {
    const raw = JSON.parse(text) as Array<{ id: number; key: string; signFromMs: number; expiresMs: number }>
    return raw.map((k) => {
      const key = Buffer.from(k.key, 'hex')
      if (!Number.isInteger(k.id) || key.length !== BLOCK_KEY_BYTES || !Number.isFinite(k.signFromMs) || !Number.isFinite(k.expiresMs)) throw new Error('a malformed key')
      return { id: k.id, key, signFromMs: k.signFromMs, expiresMs: k.expiresMs }
    })
  } catch (err) {
    throw new LoamError('io', `${file} does not hold block keys (${(err as Error).message}); remove it and the namenode makes new ones (open block tokens are then refused and asked for again)`)
  }
}
