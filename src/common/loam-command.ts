// How one Loam process starts another: the same Node, with the V8 flags every
// loam process runs with, on this build's command.
import { fileURLToPath } from 'node:url'

export const CLI_PATH = fileURLToPath(new URL('../cli/main.js', import.meta.url))

/**
 * V8 starts a full mark-compact whenever the ArrayBuffer bytes allocated since
 * the last one pass its old-generation limit, which for a small heap (a
 * datanode's is ~11 MB) is ~16 MB above it. A process moving 200 MB/s
 * allocates that much in socket reads within tens of milliseconds, all of it
 * young and freed by the next scavenge, so without a floor under the limit a
 * datanode ran ~15 full collections a second that freed nothing, 40% of the
 * machine's CPU in a replication-3 write. Raising the limit's floor to 128 MiB
 * reserves nothing; it only lets scavenges do that work. The shebang of
 * src/cli/main.ts carries the same flags (test/loam-command.test.ts holds them together).
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128']

/** The argv that runs `loam`: the executable first. */
export function loamCommand(): string[] {
  return [process.execPath, ...NODE_FLAGS, CLI_PATH]
}
