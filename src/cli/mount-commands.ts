// `loam mount DIR` and `loam umount DIR`: serve the cluster filesystem on a directory.
import { spawn, execFile } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { promisify } from 'node:util'
import path from 'node:path'
import type { Command } from 'commander'
import { Registry } from 'prom-client'
import { namenodeAddress } from '../client/client.js'
import { formatAddress } from '../common/address.js'
import { startStatusServer } from '../common/http.js'
import { createLogger } from '../common/log.js'
import { parseDuration } from '../common/units.js'
import { isMounted, serveMount } from '../fuse/mount.js'
import { RPC_TIMEOUT_DEFAULT_MS } from '../limits.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { logLevel, daemonProcess, port, stopOnSignal } from './daemon-commands.js'
import { action } from './run.js'
import { loamCommand } from '../common/loam-command.js'

interface MountFlags {
  namenode?: string
  node?: string
  foreground?: boolean
  readOnly?: boolean
  volume?: string
  timeout: string
  host: string
  httpPort: string
  log?: string
  logLevel: string
}

/** What a detached mount process tells the command that started it: ready, with where its /status and /metrics are. */
export type MountNotice = { ready: true; http: string } | { error: string }

export function registerMountCommands(program: Command): void {
  program
    .command('mount')
    .description('mount the cluster filesystem, or one volume, on DIR (detaches once the mount serves, unless --foreground)')
    .argument('<dir>', 'an existing empty directory')
    .option('--namenode <host:port>', 'the namenode (default: $LOAM_NAMENODE or 127.0.0.1:8020)')
    .option('--node <id>', "this machine's datanode id: new files' first replicas land here")
    .option('--foreground', 'serve in this process until unmounted or interrupted')
    .option('--read-only', 'refuse every change through this mount')
    .option('--volume <name>', 'mount just this volume (writable on the node it is attached to: --node)')
    .option('--timeout <duration>', 'a call that gets no answer fails with EIO after this long', `${RPC_TIMEOUT_DEFAULT_MS / 1000}s`)
    .option('--host <addr>', 'address its HTTP port listens on', '127.0.0.1')
    .option('--http-port <port>', 'HTTP port for /status and /metrics (0 picks a free one; the port is printed)', '0')
    .option('--log <file>', 'where a detached mount writes its log (default: discarded)')
    .option('--log-level <level>', 'log level', 'info')
    .action(action(async (dir: string, flags: MountFlags) => mountCommand(dir, flags)))

  program
    .command('umount')
    .description('unmount a Loam mount')
    .argument('<dir>', 'the mountpoint')
    .action(action(async (dir: string) => umountCommand(dir)))
}

async function mountCommand(dir: string, flags: MountFlags): Promise<void> {
  const target = path.resolve(dir)
  const timeoutMs = parseDuration(flags.timeout, '--timeout')
  const httpPort = port(flags.httpPort, '--http-port')
  const level = logLevel(flags.logLevel)
  const namenode = namenodeAddress(flags.namenode)
  if (await isMounted(target)) throw new LoamError('exists', `${target} is already a mountpoint; unmount it first (loam umount ${dir})`)
  if (!flags.foreground) return detach(target, flags)
  const log = createLogger('mount', level)
  daemonProcess(log)
  const registry = new Registry()
  let handle
  let http
  try {
    handle = await serveMount({ dir: target, namenode, nodeId: flags.node, timeoutMs, readOnly: flags.readOnly ?? false, volume: flags.volume, registry, log })
    const mount = handle
    http = await startStatusServer(flags.host, httpPort, () => mount.status(), { registry }).catch(async (err: unknown) => {
      await mount.unmount()
      throw new LoamError('unavailable', `cannot serve /status and /metrics on ${flags.host}:${httpPort}: ${(err as Error).message}`)
    })
  } catch (err) {
    notify({ error: toLoamError(err).message })
    throw err
  }
  log.info({ dir: target, http: http.address }, 'status and metrics served')
  notify({ ready: true, http: formatAddress(http.address) })
  stopOnSignal(() => handle.unmount())
  await handle.closed
  await http.close()
  // libfuse's thread and its handles do not all let go of the event loop once unmounted.
  process.exit(0)
}

/** Tells a waiting `loam mount` how starting went, then lets it go. */
function notify(notice: MountNotice): void {
  if (!process.send) return
  process.send(notice)
  process.disconnect()
}

async function detach(target: string, flags: MountFlags): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--foreground')
  const out = flags.log ? openSync(path.resolve(flags.log), 'a', 0o600) : 'ignore'
  const [node, ...loam] = loamCommand()
  const child = spawn(node!, [...loam, ...args, '--foreground'], { detached: true, stdio: ['ignore', out, out, 'ipc'] })
  if (typeof out === 'number') closeSync(out)
  const notice = await new Promise<MountNotice>((resolve) => {
    child.once('message', (m: MountNotice) => resolve(m))
    child.once('exit', (code) => resolve({ error: `the mount process exited (status ${code}) before serving ${target}` }))
  })
  if ('error' in notice) throw new LoamError('io', notice.error)
  process.stdout.write(`${target}: mounted; status and metrics on http://${notice.http}/\n`)
  child.disconnect?.()
  child.unref()
}

async function umountCommand(dir: string): Promise<void> {
  const target = path.resolve(dir)
  if (!(await isMounted(target))) throw new LoamError('not-found', `${target} is not mounted`)
  try {
    await promisify(execFile)('fusermount', ['-u', target])
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim()
    if (/busy/i.test(stderr)) throw new LoamError('lease', `${target} is busy: a process has a file or its working directory there; close it and try again`)
    throw new LoamError('io', `cannot unmount ${target}: ${stderr || (err as Error).message}`)
  }
}
