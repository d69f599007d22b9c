// A service task's volumes, mounted inside its sandbox before its command starts
// and unmounted after it ends. Each mount is its own `loam mount --foreground`
// process (a FUSE server never shares a process with what reads through it),
// and nothing is removed from a sandbox while a mount is still under it: an
// `rm -r` that crossed into a mounted volume would delete the service's data.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Logger } from '../common/log.js'
import { mkdirp } from '../common/mkdirp.js'
import { LoamError } from '../rpc/errors.js'
import type { TaskVolume } from '../rpc/messages.js'

/** How long a volume mount may take to serve before the task fails to start. */
export const VOLUME_MOUNT_TIMEOUT_MS = 30_000
/** How long an unmounting mount process may take to exit before it is killed and the mount detached lazily. */
const UNMOUNT_WAIT_MS = 5_000
/** Volumes one task may mount. */
export const TASK_VOLUMES_MAX = 8

export interface MountedVolumes {
  /** Absolute mountpoints by volume name: what the task's environment names. */
  readonly paths: Map<string, string>
  /** Unmounts every volume; never throws (what cannot be unmounted is detached lazily and logged). */
  release(): Promise<void>
}

/** What is wrong with a volume's path inside a sandbox, or undefined. */
export function checkVolumePath(p: string): string | undefined {
  if (p === '' || path.isAbsolute(p)) return `volume path '${p.slice(0, 80)}' must be a relative path inside the task's sandbox`
  const parts = p.split('/')
  if (parts.some((c) => c === '..' || c === '.' || c === '')) return `volume path '${p.slice(0, 80)}' must not hold '.', '..' or empty components`
  if (['stdout', 'stderr', 'task.json'].includes(parts[0]!)) return `volume path '${p}' would hide the task's ${parts[0]}`
  return undefined
}

/** Mounts each volume at sandbox/path with the given CLI; on any failure, what was mounted is released and the error thrown. */
export async function mountVolumes(sandbox: string, volumes: TaskVolume[], cli: string[], env: NodeJS.ProcessEnv, log: Logger): Promise<MountedVolumes> {
  const mounted: Array<{ dir: string; child: ChildProcess }> = []
  const paths = new Map<string, string>()
  const release = async (): Promise<void> => {
    await Promise.all(mounted.splice(0).map((m) => unmountOne(m.dir, m.child, log)))
  }
  try {
    for (const v of volumes) {
      const dir = path.join(sandbox, v.path)
      await mkdirp(dir)
      const child = spawn(cli[0]!, [...cli.slice(1), 'mount', dir, '--volume', v.name, '--node', v.nodeId, '--foreground'], { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
      mounted.push({ dir, child })
      await waitServing(child, v.name, dir)
      paths.set(v.name, dir)
      log.info({ volume: v.name, dir, mountPid: child.pid }, 'volume mounted for a task')
    }
  } catch (err) {
    await release()
    throw err
  }
  return { paths, release }
}

function waitServing(child: ChildProcess, name: string, dir: string): Promise<void> {
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`it did not serve within ${VOLUME_MOUNT_TIMEOUT_MS / 1000} s`), VOLUME_MOUNT_TIMEOUT_MS)
    function fail(why: string): void {
      clearTimeout(timer)
      const last = stderr.trim().split('\n').at(-1) ?? ''
      reject(new LoamError('io', `cannot mount volume ${name} at ${dir}: ${why}${last ? ` (${last.slice(0, 300)})` : ''}`))
    }
    child.once('message', (m: { ready?: boolean; error?: string }) => {
      if (m.ready) {
        clearTimeout(timer)
        child.stderr?.resume()
        resolve()
      } else fail(m.error ?? 'the mount process said nothing useful')
    })
    child.once('exit', (code) => fail(`the mount process exited with status ${code}`))
  })
}

async function unmountOne(dir: string, child: ChildProcess, log: Logger): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const inTime = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), UNMOUNT_WAIT_MS)))])
    clearTimeout(timer)
    if (!inTime) {
      log.warn({ dir, mountPid: child.pid }, 'a volume mount did not stop in time: killed, detached lazily')
      child.kill('SIGKILL')
    }
  }
  await detachLazily([dir], log)
}

/** Every mountpoint at or under dir, deepest first (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const root = path.resolve(dir)
  const found: string[] = []
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4]
    if (!field) continue
    // Octal escapes (\040 for a space) as the kernel writes them.
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    if (mp === root || mp.startsWith(root + '/')) found.push(mp)
  }
  return found.sort((a, b) => b.length - a.length)
}

/** Lazily detaches whatever is still mounted at or under the given directories. */
export async function detachLazily(dirs: string[], log: Logger): Promise<void> {
  for (const dir of dirs) {
    for (const mp of await mountsUnder(dir)) {
      try {
        await promisify(execFile)('fusermount', ['-uz', mp])
        log.warn({ mountpoint: mp }, 'detached a leftover mount')
      } catch (err) {
        log.error({ mountpoint: mp, err: String((err as { stderr?: string }).stderr ?? (err as Error).message).trim() }, 'cannot detach a leftover mount')
      }
    }
  }
}
