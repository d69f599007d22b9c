// Block access tokens (as in HDFS): the namenode, having checked a caller's
// permission on a file, hands it a short-lived token per block and operation,
// signed with one of its block keys; datanodes, given the keys by the namenode
// (never by anyone else, and no key ever goes to a client), check the token on
// every block operation. Pure functions: no clock, no I/O.
//
//   version u8 | op u8 | key id u32 | block id u64 | expires (ms since the epoch) u64 | HMAC-SHA256 of the rest
import { createHmac, timingSafeEqual } from 'node:crypto'
import { LoamError } from './errors.js'

export const BlockOp = { READ: 1, WRITE: 2, COPY: 3 } as const
export type BlockOp = (typeof BlockOp)[keyof typeof BlockOp]

const VERSION = 2
const BODY_BYTES = 22
const MAC_BYTES = 32
export const BLOCK_TOKEN_BYTES = BODY_BYTES + MAC_BYTES
export const BLOCK_KEY_BYTES = 32

/** A key the namenode signs tokens with, for a while, and until when tokens signed with it can be valid. */
export interface BlockKey {
  id: number
  key: Uint8Array
  expiresMs: number
}

export interface BlockToken {
  blockId: number
  op: BlockOp
  expiresMs: number
}

export function issueBlockToken(key: BlockKey, token: BlockToken): Buffer {
  const body = Buffer.alloc(BODY_BYTES)
  body[0] = VERSION
  body[1] = token.op
  body.writeUInt32BE(key.id, 2)
  body.writeBigUInt64BE(BigInt(token.blockId), 6)
  body.writeBigUInt64BE(BigInt(token.expiresMs), 14)
  return Buffer.concat([body, mac(key.key, body)])
}

/**
 * Throws 'permission' unless token opens blockId for one of ops, 'token-expired'
 * once it is past its time or signed with a key not (or no longer) among keys.
 */
export function verifyBlockToken(keys: ReadonlyMap<number, BlockKey>, token: Uint8Array | undefined, blockId: number, ops: readonly BlockOp[], nowMs: number): BlockToken {
  const again = "ask the namenode for the block's locations again"
  if (!token || token.length === 0) throw new LoamError('permission', `block ${blockId}: no block access token; ${again}`)
  const t = Buffer.from(token.buffer, token.byteOffset, token.byteLength)
  if (t.length !== BLOCK_TOKEN_BYTES || t[0] !== VERSION) throw notIssued(blockId, again)
  const keyId = t.readUInt32BE(2)
  const key = keys.get(keyId)
  // A key this node does not hold: the namenode rotated its keys (or restarted) since the token was issued.
  if (!key || nowMs > key.expiresMs) throw new LoamError('token-expired', `block ${blockId}: the block access token is signed with block key ${keyId}, which this datanode does not hold (any more); ${again}`)
  if (!timingSafeEqual(mac(key.key, t.subarray(0, BODY_BYTES)), t.subarray(BODY_BYTES))) throw notIssued(blockId, again)
  const decoded: BlockToken = { op: t[1] as BlockOp, blockId: Number(t.readBigUInt64BE(6)), expiresMs: Number(t.readBigUInt64BE(14)) }
  if (decoded.blockId !== blockId) throw new LoamError('permission', `block ${blockId}: the block access token is for block ${decoded.blockId}`)
  if (!ops.includes(decoded.op)) throw new LoamError('permission', `block ${blockId}: the block access token is for ${opName(decoded.op)}, not ${ops.map(opName).join(' or ')}`)
  if (nowMs > decoded.expiresMs) throw new LoamError('token-expired', `block ${blockId}: the block access token expired ${nowMs - decoded.expiresMs} ms ago; ${again}`)
  return decoded
}

function notIssued(blockId: number, again: string): LoamError {
  return new LoamError('permission', `block ${blockId}: the block access token is not one this cluster's namenode issued; ${again}`)
}

function opName(op: number): string {
  return op === BlockOp.READ ? 'reading' : op === BlockOp.WRITE ? 'writing' : op === BlockOp.COPY ? 'copying' : `operation ${op}`
}

function mac(key: Uint8Array, body: Buffer): Buffer {
  return createHmac('sha256', key).update(body).digest()
}
