// Block access tokens (as in HDFS): the namenode, having checked a caller's
// permission on a file, hands it a short-lived token per block and operation;
// datanodes check it on every block operation. Pure functions: no clock, no I/O.
//
//   version u8 | op u8 | block id u64 | expires (ms since the epoch) u64 | HMAC-SHA256 of the rest
import { createHmac, timingSafeEqual } from 'node:crypto'
import { LoamError } from './errors.js'

export const BlockOp = { READ: 1, WRITE: 2, COPY: 3 } as const
export type BlockOp = (typeof BlockOp)[keyof typeof BlockOp]

const VERSION = 1
const BODY_BYTES = 18
const MAC_BYTES = 32
export const BLOCK_TOKEN_BYTES = BODY_BYTES + MAC_BYTES

export interface BlockToken {
  blockId: number
  op: BlockOp
  expiresMs: number
}

/** The key tokens are signed with, derived from the cluster secret (never the secret itself). */
export function blockTokenKey(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('loam block access tokens v1').digest()
}

export function issueBlockToken(key: Buffer, token: BlockToken): Buffer {
  const body = Buffer.alloc(BODY_BYTES)
  body[0] = VERSION
  body[1] = token.op
  body.writeBigUInt64BE(BigInt(token.blockId), 2)
  body.writeBigUInt64BE(BigInt(token.expiresMs), 10)
  return Buffer.concat([body, mac(key, body)])
}

/** Throws 'permission' unless token opens blockId for one of ops, 'token-expired' once it is past its time. */
export function verifyBlockToken(key: Buffer, token: Uint8Array | undefined, blockId: number, ops: readonly BlockOp[], nowMs: number): BlockToken {
  const again = "ask the namenode for the block's locations again"
  if (!token || token.length === 0) throw new LoamError('permission', `block ${blockId}: no block access token; ${again}`)
  const t = Buffer.from(token.buffer, token.byteOffset, token.byteLength)
  if (t.length !== BLOCK_TOKEN_BYTES || t[0] !== VERSION || !timingSafeEqual(mac(key, t.subarray(0, BODY_BYTES)), t.subarray(BODY_BYTES))) {
    throw new LoamError('permission', `block ${blockId}: the block access token is not one this cluster's namenode issued; ${again}`)
  }
  const decoded: BlockToken = { op: t[1] as BlockOp, blockId: Number(t.readBigUInt64BE(2)), expiresMs: Number(t.readBigUInt64BE(10)) }
  if (decoded.blockId !== blockId) throw new LoamError('permission', `block ${blockId}: the block access token is for block ${decoded.blockId}`)
  if (!ops.includes(decoded.op)) throw new LoamError('permission', `block ${blockId}: the block access token is for ${opName(decoded.op)}, not ${ops.map(opName).join(' or ')}`)
  if (nowMs > decoded.expiresMs) throw new LoamError('token-expired', `block ${blockId}: the block access token expired ${nowMs - decoded.expiresMs} ms ago; ${again}`)
  return decoded
}

function opName(op: number): string {
  return op === BlockOp.READ ? 'reading' : op === BlockOp.WRITE ? 'writing' : op === BlockOp.COPY ? 'copying' : `operation ${op}`
}

function mac(key: Buffer, body: Buffer): Buffer {
  return createHmac('sha256', key).update(body).digest()
}
