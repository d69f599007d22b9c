// How every command ends: its output, or one line saying what went wrong.
import { CommanderError } from 'commander'
import { errorLine, LoamError } from '../rpc/errors.js'

/** Exit status per error: 2 for a usage mistake, 1 for everything else a command can meet. */
export function exitStatus(err: unknown): number {
  if (err instanceof LoamError && err.code === 'invalid-argument') return 2
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2
  return 1
}

export { errorLine }

/** Wraps a command's action: typed errors become one line on stderr and an exit status. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args)
    } catch (err) {
      if (!(err instanceof LoamError) && process.env.LOAM_DEBUG) console.error(err)
      process.stderr.write(errorLine(err) + '\n')
      process.exitCode = exitStatus(err)
    }
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}
