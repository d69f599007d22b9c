// One errno per typed error: what a program on the mount sees.
import { toLoamError, type ErrorCode } from '../rpc/errors.js'

const ERRNO: Record<ErrorCode, number> = {
  'not-found': 2, // ENOENT
  exists: 17, // EEXIST
  'not-empty': 39, // ENOTEMPTY
  'not-a-directory': 20, // ENOTDIR
  'is-a-directory': 21, // EISDIR
  permission: 13, // EACCES
  lease: 16, // EBUSY: another client holds the file open for writing
  quota: 122, // EDQUOT
  'no-space': 28, // ENOSPC
  'stale-generation': 5, // EIO
  'safe-mode': 30, // EROFS: the namespace is read-only until the datanodes report
  unavailable: 5, // EIO
  timeout: 5, // EIO: a bounded wait, never a hang
  'invalid-argument': 22, // EINVAL
  corrupt: 5, // EIO
  io: 5, // EIO
  protocol: 5, // EIO
  'no-xattr': 61, // ENODATA
  'stale-epoch': 116, // ESTALE: the volume was attached elsewhere since this mount began (fenced)
  'cross-volume': 18, // EXDEV: mv falls back to copy and delete
  'read-only': 30, // EROFS: a snapshot, or a mount made --read-only
  'token-expired': 13, // EACCES: a block access token outlived its time (the client asks for a new one first)
}

/** The negative errno FUSE replies with for any thrown value. */
export function errnoOf(err: unknown): number {
  return -ERRNO[toLoamError(err).code]
}
