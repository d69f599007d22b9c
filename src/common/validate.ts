// Rules on file parameters that the client checks before sending and the namenode checks on arrival.
import { BLOCK_SIZE_MAX_BYTES, BLOCK_SIZE_MIN_BYTES, CHUNK_BYTES, GROUPS_PER_CALLER_MAX, PRINCIPAL_NAME_BYTES_MAX, REPLICATION_MAX, REPLICATION_MIN } from '../limits.js'
import { LoamError } from '../rpc/errors.js'

/**
 * A user or group name: bounded, and without NUL, '/' or ':' (which would make
 * 'USER:GROUP', a lease's user-and-client key or a log line ambiguous). Empty is
 * allowed: a header without a user is 'nobody', a chown without a group keeps it.
 */
export function checkPrincipalName(name: string, what: 'user' | 'group'): void {
  if (Buffer.byteLength(name) > PRINCIPAL_NAME_BYTES_MAX) throw new LoamError('invalid-argument', `a ${what} name is at most ${PRINCIPAL_NAME_BYTES_MAX} bytes (this one has ${Buffer.byteLength(name)})`)
  if (/[\0/:]/.test(name)) throw new LoamError('invalid-argument', `${what} name ${JSON.stringify(name.slice(0, 64))} holds NUL, '/' or ':', which no ${what} name may`)
}

/** Who a frame header says the caller is. */
export function checkCaller(user: string, groups: readonly string[]): void {
  checkPrincipalName(user, 'user')
  if (groups.length > GROUPS_PER_CALLER_MAX) throw new LoamError('invalid-argument', `a call names ${groups.length} groups, more than the ${GROUPS_PER_CALLER_MAX} allowed`)
  for (const g of groups) checkPrincipalName(g, 'group')
}

export function checkReplication(replication: number): void {
  if (!Number.isInteger(replication) || replication < REPLICATION_MIN || replication > REPLICATION_MAX) {
    throw new LoamError('invalid-argument', `replication ${replication} is outside ${REPLICATION_MIN}..${REPLICATION_MAX}`)
  }
}

export function checkBlockSize(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < BLOCK_SIZE_MIN_BYTES || bytes > BLOCK_SIZE_MAX_BYTES || bytes % CHUNK_BYTES !== 0) {
    throw new LoamError(
      'invalid-argument',
      `block size ${bytes} must be a multiple of the ${CHUNK_BYTES / 1024} KiB checksum chunk between ${BLOCK_SIZE_MIN_BYTES} and ${BLOCK_SIZE_MAX_BYTES} bytes`,
    )
  }
}
