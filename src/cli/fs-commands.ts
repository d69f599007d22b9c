// `loam fs ...`: the filesystem commands. Parsing and printing only; the work is in src/client.
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { readdir, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { Command } from 'commander'
import { LoamClient, namenodeAddress } from '../client/client.js'
import { fileStatusJson } from '../client/json.js'
import { putStream } from '../client/put.js'
import { parseDuration, parseSize } from '../common/units.js'
import { LoamError } from '../rpc/errors.js'
import { InodeType, type FileStatus } from '../rpc/messages.js'
import { progress } from './progress.js'
import { action, printJson } from './run.js'
import { mkdirp } from '../common/mkdirp.js'

export interface ClientFlags {
  namenode?: string
  timeout?: string
}

export function clientFrom(flags: ClientFlags): LoamClient {
  return new LoamClient({ namenode: namenodeAddress(flags.namenode), timeoutMs: flags.timeout ? parseDuration(flags.timeout, '--timeout') : undefined })
}

/** Runs fn with a client that is closed afterwards, whatever happens. */
export async function withClient(flags: ClientFlags, fn: (c: LoamClient) => Promise<void>): Promise<void> {
  const client = clientFrom(flags)
  try {
    await fn(client)
  } finally {
    client.close()
  }
}

export function clientOptions(cmd: Command): Command {
  return cmd.option('--namenode <host:port>', 'namenode address (default: $LOAM_NAMENODE or 127.0.0.1:8020)').option('--timeout <duration>', 'give up on an unanswered call after this long (default 30s)')
}

function modeString(s: FileStatus): string {
  const t = s.type === InodeType.DIRECTORY ? 'd' : s.type === InodeType.SYMLINK ? 'l' : '-'
  let out = t
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (s.mode >> shift) & 7
    out += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (bits & 1 ? 'x' : '-')
  }
  return out
}

function longLine(s: FileStatus): string {
  const when = new Date(s.mtimeMs).toISOString().slice(0, 16).replace('T', ' ')
  const repl = s.type === InodeType.FILE ? String(s.replication) : '-'
  return `${modeString(s)} ${repl.padStart(3)} ${s.owner.padEnd(8)} ${s.group.padEnd(10)} ${String(s.lengthBytes).padStart(12)} ${when} ${s.path}`
}

function joinRemote(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`
}

function parseMode(text: string): number {
  if (!/^[0-7]{3,4}$/.test(text)) throw new LoamError('invalid-argument', `mode '${text}' is not an octal mode such as 755 or 0644`)
  return parseInt(text, 8)
}

async function isRemoteDir(client: LoamClient, p: string): Promise<boolean> {
  try {
    return (await client.stat(p)).type === InodeType.DIRECTORY
  } catch (err) {
    if (err instanceof LoamError && err.code === 'not-found') return false
    throw err
  }
}

interface PutFlags extends ClientFlags {
  replication?: string
  blockSize?: string
  force?: boolean
}

async function putFile(client: LoamClient, local: string, target: string, flags: PutFlags): Promise<void> {
  const size = local === '-' ? 0 : (await stat(local)).size
  const input = local === '-' ? process.stdin : createReadStream(local, { highWaterMark: 1 << 20 })
  const bar = progress(`put ${path.basename(target)}`, size)
  try {
    await putStream(client, target, input, {
      force: flags.force,
      replication: flags.replication !== undefined ? Number(flags.replication) : undefined,
      blockSizeBytes: flags.blockSize !== undefined ? parseSize(flags.blockSize, '--block-size') : undefined,
      onChunk: (n) => bar.add(n),
    })
  } finally {
    bar.done()
  }
}

async function putTree(client: LoamClient, local: string, target: string, flags: PutFlags): Promise<void> {
  if (local !== '-' && (await stat(local)).isDirectory()) {
    await client.mkdirs(target, { parents: true })
    for (const name of (await readdir(local)).sort()) await putTree(client, path.join(local, name), joinRemote(target, name), flags)
    return
  }
  await putFile(client, local, target, flags)
}

async function getFile(client: LoamClient, src: string, local: string): Promise<void> {
  const reader = await client.open(src)
  if (local === '-') {
    for await (const piece of reader.read()) if (!process.stdout.write(piece)) await once(process.stdout, 'drain')
    return
  }
  const tmp = `${local}.loam-${process.pid}.tmp`
  const bar = progress(`get ${path.basename(src)}`, reader.status.lengthBytes)
  try {
    await pipeline(
      (async function* () {
        for await (const piece of reader.read()) {
          bar.add(piece.length)
          yield piece
        }
      })(),
      createWriteStream(tmp, { mode: 0o644 }),
    )
    await rename(tmp, local)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  } finally {
    bar.done()
  }
}

async function getTree(client: LoamClient, src: string, local: string): Promise<void> {
  const st = await client.stat(src)
  if (st.type !== InodeType.DIRECTORY) return getFile(client, src, local)
  await mkdirp(local, 0o755)
  for await (const child of client.list(src)) await getTree(client, child.path, path.join(local, child.name))
}

async function localIsDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false
}

export function registerFsCommands(program: Command): void {
  const fs = program.command('fs').description('work with files in the cluster filesystem')

  clientOptions(fs.command('put').argument('<paths...>', "LOCAL... DST: local files or directories ('-' reads standard input), then the destination in the cluster"))
    .description('copy local files into the cluster')
    .option('--replication <n>', 'replicas of each block (default: the namenode default)')
    .option('--block-size <size>', 'block size, a multiple of 64KiB (default 64MiB)')
    .option('-f, --force', 'overwrite an existing file')
    .action(
      action(async (paths: string[], flags: PutFlags) => {
        const locals = paths.slice(0, -1)
        const dst = paths[paths.length - 1]!
        if (locals.length === 0) throw new LoamError('invalid-argument', 'put needs LOCAL... DST: at least one source and a destination')
        if (flags.replication !== undefined && !/^\d+$/.test(flags.replication)) throw new LoamError('invalid-argument', `replication '${flags.replication}' is not a whole number`)
        await withClient(flags, async (client) => {
          const dstIsDir = await isRemoteDir(client, dst)
          if (locals.length > 1 && !dstIsDir) throw new LoamError('not-a-directory', `${dst}: not a directory (several sources need a directory to go into)`)
          for (const local of locals) {
            if (local !== '-') await stat(local).catch(() => { throw new LoamError('not-found', `${local}: no such local file or directory`) })
            await putTree(client, local, dstIsDir && local !== '-' ? joinRemote(dst, path.basename(local)) : dst, flags)
          }
        })
      }),
    )

  clientOptions(fs.command('get').argument('<src>', 'path in the cluster').argument('<local>', "local destination ('-' writes standard output)"))
    .description('copy a file or directory out of the cluster')
    .action(
      action(async (src: string, local: string, flags: ClientFlags) => {
        await withClient(flags, async (client) => {
          const target = local !== '-' && (await localIsDir(local)) ? path.join(local, path.posix.basename(src)) : local
          await getTree(client, src, target)
        })
      }),
    )

  clientOptions(fs.command('cat').argument('<path>'))
    .description('print a file, or a byte range of it')
    .option('--offset <bytes>', 'start here', '0')
    .option('--length <bytes>', 'read at most this many bytes')
    .action(
      action(async (p: string, flags: ClientFlags & { offset: string; length?: string }) => {
        const offset = parseSize(flags.offset, '--offset')
        const length = flags.length !== undefined ? parseSize(flags.length, '--length') : Infinity
        await withClient(flags, async (client) => {
          const reader = await client.open(p)
          for await (const piece of reader.read(offset, length)) if (!process.stdout.write(piece)) await once(process.stdout, 'drain')
        })
      }),
    )

  clientOptions(fs.command('stat').argument('<path>'))
    .description("show a file's or directory's attributes")
    .option('--json', 'print JSON')
    .action(
      action(async (p: string, flags: ClientFlags & { json?: boolean }) => {
        await withClient(flags, async (client) => {
          const s = await client.stat(p)
          const j = fileStatusJson({ ...s, path: p })
          if (flags.json) printJson(j)
          else for (const [k, v] of Object.entries(j)) process.stdout.write(`${k.padEnd(13)}${String(v)}\n`)
        })
      }),
    )

  clientOptions(fs.command('ls').argument('[path]', 'directory or file', '/'))
    .description('list a directory')
    .option('-R, --recursive', 'list subdirectories too')
    .option('-l, --long', 'mode, replication, owner, group, size, time')
    .option('--json', 'print JSON')
    .action(
      action(async (p: string, flags: ClientFlags & { recursive?: boolean; long?: boolean; json?: boolean }) => {
        await withClient(flags, async (client) => {
          const all: FileStatus[] = []
          const walk = async (dir: string): Promise<void> => {
            for await (const s of client.list(dir)) {
              if (flags.json) all.push(s)
              else process.stdout.write((flags.long ? longLine(s) : s.path) + '\n')
              if (flags.recursive && s.type === InodeType.DIRECTORY) await walk(s.path)
            }
          }
          await walk(p)
          if (flags.json) printJson(all.map(fileStatusJson))
        })
      }),
    )

  clientOptions(fs.command('mkdir').argument('<paths...>'))
    .description('make directories')
    .option('-p, --parents', 'make parents as needed; no error if it exists')
    .action(
      action(async (paths: string[], flags: ClientFlags & { parents?: boolean }) => {
        await withClient(flags, async (client) => {
          for (const p of paths) await client.mkdirs(p, { parents: flags.parents })
        })
      }),
    )

  clientOptions(fs.command('rm').argument('<paths...>'))
    .description('remove files or directories')
    .option('-r, --recursive', 'remove directories and their contents')
    .action(
      action(async (paths: string[], flags: ClientFlags & { recursive?: boolean }) => {
        await withClient(flags, async (client) => {
          for (const p of paths) await client.delete(p, flags.recursive ?? false)
        })
      }),
    )

  clientOptions(fs.command('mv').argument('<src>').argument('<dst>'))
    .description('rename or move (atomic; replaces an existing file)')
    .action(
      action(async (src: string, dst: string, flags: ClientFlags) => {
        await withClient(flags, async (client) => {
          const target = (await isRemoteDir(client, dst)) ? joinRemote(dst, path.posix.basename(src)) : dst
          await client.rename(src, target, true)
        })
      }),
    )

  clientOptions(fs.command('setrep').argument('<replication>').argument('<path>'))
    .description("change a file's replication")
    .action(
      action(async (n: string, p: string, flags: ClientFlags) => {
        if (!/^\d+$/.test(n)) throw new LoamError('invalid-argument', `replication '${n}' is not a whole number`)
        await withClient(flags, async (client) => {
          await client.setReplication(p, Number(n))
        })
      }),
    )

  clientOptions(fs.command('chmod').argument('<mode>', 'octal, such as 755').argument('<path>'))
    .description('change permissions')
    .action(
      action(async (mode: string, p: string, flags: ClientFlags) => {
        const m = parseMode(mode)
        await withClient(flags, async (client) => {
          await client.chmod(p, m)
        })
      }),
    )

  clientOptions(fs.command('chown').argument('<owner>', 'USER[:GROUP]').argument('<path>'))
    .description('change owner and group')
    .action(
      action(async (owner: string, p: string, flags: ClientFlags) => {
        const [user = '', group = ''] = owner.split(':')
        if (!user && !group) throw new LoamError('invalid-argument', `'${owner}' names no user or group`)
        await withClient(flags, async (client) => {
          await client.chown(p, user, group)
        })
      }),
    )
}

