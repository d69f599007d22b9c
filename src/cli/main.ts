#!/usr/bin/env -S node --initial-old-space-size=128
// The `loam` command.
import path from 'node:path'
import { Command, CommanderError } from 'commander'
import { INSECURE_ENV, SECRET_FILE_ENV } from '../rpc/security.js'
import { registerAdminCommands } from './admin-commands.js'
import { registerAgentCommands } from './agent-commands.js'
import { registerClusterCommands } from './cluster.js'
import { registerDaemonCommands } from './daemon-commands.js'
import { registerFsCommands } from './fs-commands.js'
import { registerMountCommands } from './mount-commands.js'
import { registerVolumeCommands } from './volume-commands.js'
import { registerJobCommands } from './job-commands.js'
import { registerServiceCommands } from './service-commands.js'
import { errorLine, exitStatus } from './run.js'
import { LOAM_VERSION } from '../common/version.js'

// `loam fs cat F | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

const program = new Command('loam')
  .description('Loam: a distributed filesystem and storage-volume layer with a locality-aware scheduler')
  .version(LOAM_VERSION)
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(`loam: ${text.replace(/^error: /, '').trim()}\n`) })
  .showHelpAfterError(false)
  // Through the environment, so every connection of this process and every process it starts uses them.
  .hook('preAction', (_program, cmd) => {
    const o = cmd.optsWithGlobals<{ secretFile?: string; insecure?: boolean }>()
    // Absolute, for children that start elsewhere (tasks start in their sandbox).
    const secretFile = o.secretFile ?? process.env[SECRET_FILE_ENV]
    if (secretFile) process.env[SECRET_FILE_ENV] = path.resolve(secretFile)
    if (o.insecure) process.env[INSECURE_ENV] = '1'
  })

/** Every command that talks to a cluster takes these, before or after its own arguments. */
function securityOptions(c: Command): Command {
  return c
    .option('--secret-file <file>', `the cluster secret every connection proves it holds (default: $${SECRET_FILE_ENV})`)
    .option('--insecure', `do not encrypt connections (benchmarks only; the whole cluster must agree; default: $${INSECURE_ENV})`)
}

registerFsCommands(program)
registerAdminCommands(program)
registerDaemonCommands(program)
registerAgentCommands(program)
registerClusterCommands(program)
registerMountCommands(program)
registerVolumeCommands(program)
registerJobCommands(program)
registerServiceCommands(program)
program.commands.forEach(function override(c: Command): void {
  securityOptions(c)
  c.exitOverride()
  c.configureOutput({ outputError: (text, write) => write(`loam: ${text.replace(/^error: /, '').trim()}\n`) })
  c.commands.forEach(override)
})

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = exitStatus(err)
  } else {
    process.stderr.write(errorLine(err) + '\n')
    process.exitCode = exitStatus(err)
  }
}
