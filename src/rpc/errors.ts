// One typed error for everything a user can meet. The code crosses the wire
// unchanged; src/cli maps it to an exit status and src/fuse to an errno.

export const ERROR_CODES = [
  'not-found',
  'exists',
  'not-empty',
  'not-a-directory',
  'is-a-directory',
  'permission',
  'lease',
  'quota',
  'no-space',
  'stale-generation',
  'safe-mode',
  'unavailable',
  'timeout',
  'invalid-argument',
  'corrupt',
  'io',
  'protocol',
  'no-xattr',
  'stale-epoch',
  'cross-volume',
  'read-only',
  'token-expired',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]

export function isErrorCode(code: string): code is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code)
}

export class LoamError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string) {
    super(message)
    this.name = 'LoamError'
    this.code = code
  }
}

/** Any thrown value as a LoamError: typed errors pass through, the rest become 'io'. */
export function toLoamError(err: unknown): LoamError {
  if (err instanceof LoamError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new LoamError('io', message)
}

/** The one line a user sees for an error: the CLI prints it, the dashboard shows it. */
export function errorLine(err: unknown): string {
  if (err instanceof Error) return `loam: ${err.message}`
  return `loam: ${String(err)}`
}

/** Fail loudly when an invariant Loam relies on does not hold. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`)
}
