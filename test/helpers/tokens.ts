// Block access tokens as the namenode would issue them, for tests that play the namenode's part.
import { BlockOp, blockTokenKey, issueBlockToken } from '../../src/rpc/block-token.js'
import { processSecurity } from '../../src/rpc/security.js'

export { BlockOp }

/** A token for blockId and op, valid for lifetimeMs from now (negative: already expired). */
export function blockToken(blockId: number, op: BlockOp, lifetimeMs = 10 * 60_000): Buffer {
  return issueBlockToken(blockTokenKey(processSecurity().secret), { blockId, op, expiresMs: Date.now() + lifetimeMs })
}
