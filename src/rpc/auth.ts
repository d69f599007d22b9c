// Cluster membership, as pure functions: the hello messages and the proofs that
// both ends of a connection hold the cluster secret. No sockets here (see secure-channel.ts).
//
//   client -> server  hello:  "LOAM" | version | flags | client nonce
//   server -> client  hello:  "LOAM" | version | flags | server nonce | server proof
//   client -> server  proof:  client proof
//   server -> client  accept: one byte
//
// A proof is HMAC-SHA256(secret, label | both nonces | flags): fresh nonces on both
// sides make a recorded exchange useless, and the labels keep one side's proof
// from serving as the other's. With encryption on, the TLS key of the connection
// is derived the same way, so the encrypted channel is bound to this exchange.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { LoamError } from './errors.js'

export interface Security {
  secret: Buffer
  /** Encrypt every connection (TLS with a key derived per connection); off only with --insecure. */
  encrypt: boolean
}

const MAGIC = Buffer.from('LOAM')
export const AUTH_VERSION = 1
export const NONCE_BYTES = 32
export const PROOF_BYTES = 32
export const HELLO_BYTES = MAGIC.length + 2 + NONCE_BYTES
export const SERVER_HELLO_BYTES = HELLO_BYTES + PROOF_BYTES
export const ACCEPT_BYTE = 0x01
/** A secret file holds this many random bytes, in hex. */
export const SECRET_BYTES = 32
const FLAG_ENCRYPT = 1

export interface Hello {
  encrypt: boolean
  nonce: Buffer
}

export type ProofLabel = 'client' | 'server' | 'tls'

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES)
}

export function encodeHello(hello: Hello): Buffer {
  return Buffer.concat([MAGIC, Buffer.from([AUTH_VERSION, hello.encrypt ? FLAG_ENCRYPT : 0]), hello.nonce])
}

/** Reads the hello at the start of buf; 'protocol' for anything that is not one. */
export function decodeHello(buf: Buffer): Hello {
  if (buf.length < HELLO_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new LoamError('protocol', 'the peer did not open with a Loam handshake')
  }
  const version = buf[MAGIC.length]!
  if (version !== AUTH_VERSION) throw new LoamError('protocol', `the peer speaks handshake version ${version}, this process ${AUTH_VERSION}; run one Loam version across the cluster`)
  const flags = buf[MAGIC.length + 1]!
  if ((flags & ~FLAG_ENCRYPT) !== 0) throw new LoamError('protocol', `the peer's handshake has unknown flags ${flags}`)
  return { encrypt: (flags & FLAG_ENCRYPT) !== 0, nonce: Buffer.from(buf.subarray(MAGIC.length + 2, HELLO_BYTES)) }
}

export function proof(secret: Buffer, label: ProofLabel, clientNonce: Buffer, serverNonce: Buffer, encrypt: boolean): Buffer {
  return createHmac('sha256', secret)
    .update(`loam ${label} v${AUTH_VERSION}`)
    .update(clientNonce)
    .update(serverNonce)
    .update(Buffer.from([encrypt ? FLAG_ENCRYPT : 0]))
    .digest()
}

/** Compares a received proof in constant time. */
export function proofMatches(expected: Buffer, got: Buffer): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got)
}

/** A new secret file's text. */
export function newSecretText(): string {
  return randomBytes(SECRET_BYTES).toString('hex') + '\n'
}

/** The secret in a secret file's text; what makes a file unusable is said without quoting it. */
export function parseSecret(text: string, file: string): Buffer {
  const hex = text.trim()
  if (!/^[0-9a-f]+$/i.test(hex) || hex.length < SECRET_BYTES * 2 || hex.length % 2 !== 0) {
    throw new LoamError('invalid-argument', `${file} is not a cluster secret (${SECRET_BYTES * 2} or more hex digits); make one with 'loam cluster init'`)
  }
  return Buffer.from(hex, 'hex')
}
