// A real FUSE mount of a test cluster, served by its own `loam mount --foreground`
// process (a process serving a mount must never call into it), always torn down.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import type { MountNotice } from '../../src/cli/mount-commands.js'
import { isMounted } from '../../src/fuse/mount.js'
import { loamCommand } from '../../src/common/loam-command.js'
import { alive, CLI, sleep, waitFor, type Teardown, type TestCluster } from './cluster.js'

export interface MountOptions {
  nodeId?: string
  timeout?: string
  readOnly?: boolean
  extraArgs?: string[]
  /** More environment for the mount process. */
  env?: NodeJS.ProcessEnv
}

export interface TestMount {
  dir: string
  /** Its /status and /metrics. */
  http: string
  child: ChildProcess
  /** What the mount process logged (JSON lines). */
  log(): string
  /** `loam umount`, then waits for the serving process to exit. */
  unmount(): Promise<void>
}

export const run = promisify(execFile)

export async function mountCluster(t: Teardown, c: TestCluster, opts: MountOptions = {}): Promise<TestMount> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loam-mnt-'))
  // The mount runs as loam starts it: with the loam V8 flags.
  const [node, ...loam] = loamCommand()
  const args = [...loam, 'mount', dir, '--foreground', '--namenode', c.namenode, '--log-level', 'warn']
  if (opts.nodeId) args.push('--node', opts.nodeId)
  if (opts.timeout) args.push('--timeout', opts.timeout)
  if (opts.readOnly) args.push('--read-only')
  args.push(...(opts.extraArgs ?? []))
  const child = spawn(node!, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, ...opts.env } })
  let log = ''
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()))
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()))
  t.teardown(async () => {
    if (await isMounted(dir)) await run('fusermount', ['-uz', dir]).catch(() => undefined)
    if (child.pid && alive(child.pid)) {
      child.kill('SIGTERM')
      const deadline = Date.now() + 10_000
      while (alive(child.pid) && Date.now() < deadline) await sleep(50)
      if (alive(child.pid)) child.kill('SIGKILL')
    }
    await rm(dir, { recursive: true, force: true })
  })
  const notice = await new Promise<MountNotice>((resolve) => {
    child.once('message', (m: MountNotice) => resolve(m))
    child.once('exit', (code) => resolve({ error: `mount exited ${code}: ${log}` }))
  })
  if ('error' in notice) throw new Error(`mount failed: ${notice.error}`)
  return {
    dir,
    http: notice.http,
    child,
    log: () => log,
    unmount: async () => {
      await run(process.execPath, [CLI, 'umount', dir])
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, 15_000, 'the mount process to exit')
    },
  }
}

export interface ShOptions {
  cwd?: string
  /** Runs as this user (runuser -u USER). */
  user?: string
  env?: NodeJS.ProcessEnv
  /** Killed (SIGKILL) after this long: a mount that hangs fails the test instead of hanging it. */
  timeoutMs?: number
}

/** Runs a shell command in a child process (never in the test process, which must not block on a mount). */
export async function sh(command: string, opts: ShOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const argv = opts.user ? ['runuser', '-u', opts.user, '--', 'sh', '-c', command] : ['sh', '-c', command]
  return run(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 0, killSignal: 'SIGKILL' })
}

export interface ShStatus {
  /** The exit status; -1 if the command was killed (signal says by what). */
  code: number
  signal: string | null
  stdout: string
  stderr: string
}

/** sh() for a command that may fail: its exit status and output instead of a thrown error. */
export async function shStatus(command: string, opts: ShOptions = {}): Promise<ShStatus> {
  try {
    const { stdout, stderr } = await sh(command, opts)
    return { code: 0, signal: null, stdout, stderr }
  } catch (err) {
    const e = err as { code?: unknown; signal?: string | null; stdout?: string; stderr?: string }
    if (typeof e.code !== 'number' && !e.signal) throw err
    return { code: typeof e.code === 'number' ? e.code : -1, signal: e.signal ?? null, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

/**
 * Python helpers for programs run on a mount: err(f, *args) calls f and returns 'ok' or
 * the errno's name ('ENOENT'), so a test can assert on what a program sees.
 */
export const PY_ERRNO = `
import errno, os, sys
def err(f, *args, **kwargs):
    try:
        f(*args, **kwargs)
        return 'ok'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
`

/** Runs `python3 -c PROGRAM ARGS...` in a child process (killed after 2 minutes unless told); its standard output. */
export async function python(program: string, args: string[] = [], opts: ShOptions = {}): Promise<string> {
  const argv = [...(opts.user ? ['runuser', '-u', opts.user, '--'] : []), 'python3', '-c', program, ...args]
  try {
    const { stdout } = await run(argv[0]!, argv.slice(1), {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      maxBuffer: 64 * 1024 * 1024,
      timeout: opts.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
    })
    return stdout
  } catch (err) {
    // Not execFile's message: it repeats the whole program.
    const e = err as { code?: unknown; signal?: string | null; stdout?: string; stderr?: string }
    throw new Error(`python3 ${args.join(' ')} failed (${e.signal ? `killed by ${e.signal}` : `exit ${String(e.code)}`}): ${e.stderr ?? ''}${e.stdout ? `\nstdout: ${e.stdout}` : ''}`, { cause: err })
  }
}
