// Rules on file parameters that the client checks before sending and the namenode checks on arrival.
import { BLOCK_SIZE_MAX_BYTES, BLOCK_SIZE_MIN_BYTES, CHUNK_BYTES, REPLICATION_MAX, REPLICATION_MIN } from '../limits.js'
import { LoamError } from '../rpc/errors.js'

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
