// Block access tokens as the namenode would issue them, for tests that play the
// namenode's part: signed with the block keys the namenode keeps in its data
// directory (readable by its user, which runs the tests). No key comes from the
// cluster secret: holding the secret does not let anyone mint tokens.
import { readFileSync } from 'node:fs'
import { BLOCK_KEY_ROTATION_MS, BLOCK_TOKEN_LIFETIME_DEFAULT_MS } from '../../src/limits.js'
import { BlockKeys, blockKeysFile, decodeBlockKeys } from '../../src/namenode/block-keys.js'
import { BlockOp, issueBlockToken, verifyBlockToken, type BlockKey } from '../../src/rpc/block-token.js'

export { BlockOp }

let keysFile: string | undefined

/** Sign with the keys of the namenode started with argv (startCluster calls it for the cluster it starts). */
export function useBlockKeysOf(namenodeArgv: readonly string[]): void {
  const dataDir = namenodeArgv[namenodeArgv.indexOf('--data') + 1]
  if (!namenodeArgv.includes('--data') || !dataDir) throw new Error(`the namenode's command line names no --data: ${namenodeArgv.join(' ')}`)
  keysFile = blockKeysFile(dataDir)
}

function keys(): BlockKeys {
  if (!keysFile) throw new Error('no cluster started in this process: no namenode block keys to sign tokens with')
  return new BlockKeys(BLOCK_KEY_ROTATION_MS, BLOCK_TOKEN_LIFETIME_DEFAULT_MS, decodeBlockKeys(readFileSync(keysFile, 'utf8'), keysFile))
}

/** A token for blockId and op, valid for lifetimeMs from now (negative: already expired). */
export function blockToken(blockId: number, op: BlockOp, lifetimeMs = 10 * 60_000): Buffer {
  const now = Date.now()
  return issueBlockToken(keys().signing(now), { blockId, op, expiresMs: now + lifetimeMs })
}

/** What a datanode holding the namenode's keys says of token: undefined when it opens blockId for one of ops. */
export function blockTokenRefusal(token: Uint8Array | undefined, blockId: number, ops: readonly BlockOp[]): string | undefined {
  try {
    verifyBlockToken(new Map<number, BlockKey>(keys().all().map((k) => [k.id, k])), token, blockId, ops, Date.now())
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}
