// The agent's tasks as processes: a fresh sandbox directory each, `/bin/sh -c cmd`
// in its own process group, stdout and stderr kept as files in the sandbox, a
// kill that reaches every process of the group, and no leftovers from a previous
// incarnation of the agent (their pid files are in the sandboxes).
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { chmod, chown, copyFile, open, readdir, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { constants as osConstants } from 'node:os'
import type { Logger } from '../common/log.js'
import { mkdirp } from '../common/mkdirp.js'
import { NAME_BYTES_MAX } from '../limits.js'
import { assert, LoamError } from '../rpc/errors.js'
import { INSECURE_ENV, SECRET_FILE_ENV } from '../rpc/security.js'
import type { LaunchTask, ReadLogResponse, TaskState } from '../rpc/messages.js'
import { HEALTH_FAILURES_MAX, HEALTH_INTERVAL_MAX_MS, HEALTH_INTERVAL_MIN_MS, HealthChecker, type SpawnIds } from './health-check.js'
import { ID_BYTES_MAX } from './limits.js'
import { agentUser, taskUser, type TaskUser } from './task-user.js'
import { checkVolumePath, detachLazily, mountsUnder, mountVolumes, TASK_VOLUMES_MAX, type MountedVolumes } from './volume-mounts.js'
import { CLI_PATH, loamCommand } from '../common/loam-command.js'

// ---------------------------------------------------------------- limits of one agent
/** Tasks one agent runs at once; a launch beyond it fails at once (the scheduler places it again). */
export const AGENT_TASKS_RUNNING_MAX = 256
/** Tasks one agent holds (running, or ended and not yet forgotten): every one travels in each heartbeat. */
export const AGENT_TASKS_HELD_MAX = 1024
/** Sandboxes of forgotten (and leftover) tasks kept for their logs; the oldest go first. */
export const AGENT_SANDBOXES_KEPT_MAX = 256
/** Bytes one ReadLog answers with (and the default when the caller asks for 0). */
export const LOG_READ_BYTES_MAX = 512 * 1024
/** A task's command line, its environment entries and their total size. */
export const TASK_CMD_BYTES_MAX = 64 * 1024
export const TASK_ENV_ENTRIES_MAX = 256
export const TASK_ENV_BYTES_MAX = 128 * 1024
/** A task's state message in heartbeats (longer ones are cut). */
export const TASK_MESSAGE_BYTES_MAX = 256
/** A killed task's process group gets SIGTERM, then SIGKILL after this long. */
export const TASK_KILL_GRACE_MS = 3_000

export type TaskStateName = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED'
export const LOG_STREAMS = ['stdout', 'stderr'] as const
export type LogStream = (typeof LOG_STREAMS)[number]

/** What the sandbox records about its task: read back by a later incarnation of the agent. */
interface TaskRecordFile {
  taskId: string
  jobId: string
  pid: number
  /** The process's start time in clock ticks since boot (/proc/PID/stat), to tell a reused pid apart; '' where unknown. */
  pidStart: string
  startedAtMs: number
}

interface Task {
  readonly id: string
  readonly jobId: string
  readonly sandbox: string
  state: TaskStateName
  exitCode: number
  message: string
  pid: number
  child: ChildProcess | undefined
  /** Why it is being killed ('' while nobody asked). */
  killReason: string
  killTimer: NodeJS.Timeout | undefined
  checker: HealthChecker | undefined
  mounts: MountedVolumes | undefined
  readonly exited: Promise<void>
  markExited(): void
}

/** A forgotten or leftover task: nothing runs, its logs stay readable until its sandbox is collected. */
interface Retired {
  readonly sandbox: string
}

export interface TaskRunnerOptions {
  workDir: string
  /** Environment every task starts from (the agent's own, plus what the agent adds: LOAM_SCHEDULER, ...). */
  baseEnv: NodeJS.ProcessEnv
  log: Logger
  /** Called when a task ends (to report it soon). */
  onEnded?: (taskId: string) => void
}

/** The `loam` command this process runs from (dist/src/cli/main.js): tasks call it through a wrapper on their PATH. */

export class TaskRunner {
  private readonly held = new Map<string, Task>()
  /** By age: the first is collected first. */
  private readonly retired = new Map<string, Retired>()
  private readonly tasksDir: string
  readonly binDir: string
  private stopping = false
  private readonly agentUser = agentUser()

  private constructor(private readonly opts: TaskRunnerOptions) {
    this.tasksDir = path.join(opts.workDir, 'tasks')
    this.binDir = path.join(opts.workDir, 'bin')
  }

  /** Prepares the work directory, writes the `loam` wrapper, and kills what a previous incarnation left running. */
  static async open(opts: TaskRunnerOptions): Promise<TaskRunner> {
    assert(path.isAbsolute(opts.workDir), 'the work directory is absolute')
    const runner = new TaskRunner(opts)
    try {
      await mkdirp(runner.tasksDir)
      await mkdirp(runner.binDir)
      // Tasks of other users reach their sandboxes and the loam wrapper through these, and list nothing.
      await chmod(opts.workDir, 0o711)
      await chmod(runner.tasksDir, 0o711)
      await chmod(runner.binDir, 0o711)
    } catch (err) {
      throw new LoamError('io', `cannot use ${opts.workDir} as the agent's work directory: ${(err as Error).message}`)
    }
    await runner.writeCliWrapper()
    await runner.recoverLeftovers()
    return runner
  }

  get runningCount(): number {
    let n = 0
    for (const t of this.held.values()) if (t.state === 'RUNNING') n++
    return n
  }

  /** Every task held, with its state: what a heartbeat or a registration reports. */
  states(): TaskState[] {
    return [...this.held.values()].map((t) => ({ taskId: t.id, state: t.state, exitCode: t.exitCode, message: t.message, health: t.checker?.health ?? '' }))
  }

  sandboxOf(taskId: string): string | undefined {
    return (this.held.get(taskId) ?? this.retired.get(taskId))?.sandbox
  }

  /**
   * Starts a task. A launch of a task this agent already holds is a repeat of one it has
   * seen (a scheduler resending after a lost answer) and is ignored: a task runs at most once
   * per id. A launch that cannot start is held as FAILED with the reason.
   */
  async launch(spec: LaunchTask): Promise<void> {
    const id = spec.taskId
    if (typeof id !== 'string' || id.length === 0 || Buffer.byteLength(id) > ID_BYTES_MAX) {
      this.opts.log.warn({ taskId: String(id).slice(0, 64) }, 'ignored a launch with an empty or overlong task id')
      return
    }
    if (this.held.has(id)) {
      this.opts.log.warn({ taskId: id }, 'ignored a second launch of a task this agent holds')
      return
    }
    if (this.stopping) return
    if (this.held.size >= AGENT_TASKS_HELD_MAX) {
      // Nothing more can be held (or reported): the scheduler finds the task missing and places it again.
      this.opts.log.error({ taskId: id, held: this.held.size }, `ignored a launch: the agent holds ${AGENT_TASKS_HELD_MAX} tasks; the scheduler should forget ended ones`)
      return
    }
    const name = sandboxName(id)
    const task = newTask(id, String(spec.jobId ?? ''), path.join(this.tasksDir, name))
    this.held.set(id, task)
    // The same id may have run here before (a forgotten task, or one left by a previous incarnation): a fresh sandbox.
    this.retired.delete(id)

    const runAs = taskUser(spec.user, this.agentUser)
    const invalid = checkLaunch(spec, name) ?? (typeof runAs === 'string' ? runAs : undefined) ?? (this.runningCount > AGENT_TASKS_RUNNING_MAX ? `the agent runs ${AGENT_TASKS_RUNNING_MAX} tasks already` : undefined)
    if (invalid || typeof runAs === 'string') {
      this.end(task, 'FAILED', -1, `not started: ${invalid}`)
      return
    }
    let out: FileHandle | undefined
    let err: FileHandle | undefined
    try {
      await removeSandbox(task.sandbox, this.opts.log)
      await mkdirp(task.sandbox)
      if (runAs) await chown(task.sandbox, runAs.uid, runAs.gid)
      // The logs stay the agent's: the task writes them through the descriptors it is given.
      out = await open(path.join(task.sandbox, 'stdout'), 'w', 0o600)
      err = await open(path.join(task.sandbox, 'stderr'), 'w', 0o600)
    } catch (e) {
      await out?.close()
      this.end(task, 'FAILED', -1, `not started: cannot prepare its sandbox ${task.sandbox}: ${(e as Error).message}`)
      return
    }
    try {
      if (task.killReason || this.stopping) {
        this.end(task, 'KILLED', -1, task.killReason || 'the agent stopped before the task started')
        return
      }
      const env = this.taskEnv(spec, task)
      if (runAs) await this.asUser(env, task, runAs)
      if (spec.volumes?.length) {
        try {
          // A mount joins the cluster as the agent does, whatever the task's own environment says of the secret.
          const mountEnv = { ...env, [SECRET_FILE_ENV]: this.opts.baseEnv[SECRET_FILE_ENV], [INSECURE_ENV]: this.opts.baseEnv[INSECURE_ENV] }
          task.mounts = await mountVolumes(task.sandbox, spec.volumes, loamCommand(), mountEnv, this.opts.log)
        } catch (e) {
          this.end(task, 'FAILED', -1, `not started: ${(e as Error).message}`)
          return
        }
        for (const [name, dir] of task.mounts.paths) env[`LOAM_VOLUME_${name.toUpperCase().replace(/-/g, '_')}`] = dir
        env.LOAM_VOLUME_PATH = task.mounts.paths.values().next().value
        if (task.killReason || this.stopping) {
          await task.mounts.release()
          this.end(task, 'KILLED', -1, task.killReason || 'the agent stopped before the task started')
          return
        }
      }
      let child: ChildProcess
      try {
        child = spawn('/bin/sh', ['-c', spec.cmd], { cwd: task.sandbox, env, detached: true, stdio: ['ignore', out.fd, err.fd], ...ids(runAs) })
      } catch (e) {
        this.end(task, 'FAILED', -1, `not started: ${(e as Error).message}`)
        return
      }
      task.child = child
      child.once('error', (e) => {
        if (!task.pid) this.end(task, 'FAILED', -1, `not started: ${e.message}`)
      })
      child.once('exit', (code, signal) => void this.onExit(task, code, signal))
      if (child.pid) {
        task.pid = child.pid
        // Written before anything else can happen to this process, so a later incarnation finds it.
        try {
          writeRecord(task.sandbox, { taskId: id, jobId: task.jobId, pid: child.pid, pidStart: processStart(child.pid), startedAtMs: Date.now() })
        } catch (e) {
          // A task no later incarnation could find might run twice: it does not run at all.
          this.end(task, 'FAILED', -1, `not started: cannot record its pid in ${task.sandbox}: ${(e as Error).message}`)
          signalGroup(child.pid, 'SIGKILL')
          return
        }
        this.opts.log.info({ taskId: id, jobId: task.jobId, taskPid: child.pid }, 'task started')
        if (spec.healthCheck) task.checker = new HealthChecker(spec.healthCheck, task.sandbox, env, ids(runAs), (detail) => this.kill(id, `health check failed: ${detail}`))
        if (task.killReason) this.signal(task, 'SIGTERM')
      }
    } finally {
      await out.close()
      await err.close()
    }
  }

  /** SIGTERM to the task's process group, SIGKILL after the grace period; it ends KILLED. Unknown or ended tasks: nothing. */
  kill(taskId: string, reason = 'killed on request'): void {
    const task = this.held.get(taskId)
    if (!task || task.state !== 'RUNNING' || task.killReason) return
    task.killReason = reason
    if (task.pid) this.signal(task, 'SIGTERM')
    // A task still starting is signalled once it has a pid (launch checks killReason).
  }

  /** Drops an ended task from what is reported; its sandbox stays for its logs until collected. Running tasks stay. */
  forget(taskId: string): void {
    const task = this.held.get(taskId)
    if (!task || task.state === 'RUNNING') return
    this.held.delete(taskId)
    this.retire(taskId, task.sandbox)
  }

  /** Kills every running task and waits until their processes are gone (bounded by the kill grace). */
  async stopAll(): Promise<void> {
    this.stopping = true
    const running = [...this.held.values()].filter((t) => t.state === 'RUNNING')
    for (const t of running) this.kill(t.id, 'the agent stopped')
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(running.map((t) => t.exited)), new Promise((r) => (timer = setTimeout(r, TASK_KILL_GRACE_MS + 1_000)))])
    clearTimeout(timer)
    for (const t of this.held.values()) {
      if (t.killTimer) {
        clearTimeout(t.killTimer)
        t.killTimer = undefined
        if (t.pid) signalGroup(t.pid, 'SIGKILL')
      }
    }
  }

  /** Bytes of a task's log from offset; `ended` once the task has ended and the bytes reach the end. */
  async readLog(taskId: string, stream: string, offsetBytes: number, maxBytes: number): Promise<ReadLogResponse> {
    if (!(LOG_STREAMS as readonly string[]).includes(stream)) throw new LoamError('invalid-argument', `log stream '${String(stream).slice(0, 32)}' is not one of ${LOG_STREAMS.join(', ')}`)
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw new LoamError('invalid-argument', `log offset ${offsetBytes} is not a byte offset`)
    const task = this.held.get(taskId)
    const retired = task ? undefined : this.retired.get(taskId)
    if (!task && !retired) throw new LoamError('not-found', `task ${taskId.slice(0, ID_BYTES_MAX)}: not known to this agent (never run here, or its sandbox was collected)`)
    // Whether it has ended is read before the file's size: an end seen here means every byte is in the file.
    const ended = !task || task.state !== 'RUNNING'
    const want = Math.min(maxBytes > 0 ? maxBytes : LOG_READ_BYTES_MAX, LOG_READ_BYTES_MAX)
    const file = path.join((task ?? retired)!.sandbox, stream)
    let handle: FileHandle
    try {
      handle = await open(file, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new LoamError('io', `task ${taskId}: cannot read its ${stream}: ${(err as Error).message}`)
      // Never started (or its sandbox is gone): an empty log.
      if (offsetBytes > 0) throw new LoamError('invalid-argument', `task ${taskId}: offset ${offsetBytes} is past the end of its ${stream} (0 bytes)`)
      return { data: new Uint8Array(), ended }
    }
    try {
      const size = (await handle.stat()).size
      if (offsetBytes > size) throw new LoamError('invalid-argument', `task ${taskId}: offset ${offsetBytes} is past the end of its ${stream} (${size} bytes)`)
      const n = Math.min(want, size - offsetBytes)
      const data = Buffer.alloc(n)
      const { bytesRead } = n > 0 ? await handle.read(data, 0, n, offsetBytes) : { bytesRead: 0 }
      return { data: data.subarray(0, bytesRead), ended: ended && offsetBytes + bytesRead >= size }
    } finally {
      await handle.close()
    }
  }

  /**
   * A task of another user joins the cluster with a copy of the secret it may read (a client
   * holds the secret; the agent's own copy is its user's alone) and acts as that user.
   */
  private async asUser(env: NodeJS.ProcessEnv, task: Task, runAs: TaskUser): Promise<void> {
    const secret = this.opts.baseEnv[SECRET_FILE_ENV]
    if (secret) {
      const copy = path.join(task.sandbox, TASK_SECRET_FILE)
      await copyFile(secret, copy)
      await chown(copy, runAs.uid, runAs.gid)
      await chmod(copy, 0o400)
      env[SECRET_FILE_ENV] = copy
    }
    env.USER = env.LOGNAME = runAs.user
  }

  private taskEnv(spec: LaunchTask, task: Task): NodeJS.ProcessEnv {
    // LOAM_TASK_ID is the scheduler's task id when it gives one (a retry runs under a new launch id, LOAM_LAUNCH_ID).
    const env: NodeJS.ProcessEnv = { ...this.opts.baseEnv, LOAM_TASK_ID: task.id, ...spec.env, LOAM_LAUNCH_ID: task.id, LOAM_SANDBOX: task.sandbox }
    env.PATH = [this.binDir, env.PATH ?? '/usr/local/bin:/usr/bin:/bin'].join(path.delimiter)
    return env
  }

  private async onExit(task: Task, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const status = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)
    const how = signal ? `killed by ${signal}` : `exited with status ${code}`
    task.checker?.stop()
    // Its volumes are unmounted before its end is reported: the scheduler may attach them elsewhere next.
    await task.mounts?.release()
    if (task.killReason) this.end(task, 'KILLED', status, `${task.killReason} (${how})`)
    else this.end(task, code === 0 ? 'FINISHED' : 'FAILED', status, how)
    // What the shell left behind in its group (background jobs) goes with it: SIGTERM now, SIGKILL after the grace.
    // With the group empty, nothing is left to signal (and its id may soon be another process's).
    if (groupAlive(task.pid)) {
      if (!task.killTimer) this.signal(task, 'SIGTERM')
    } else {
      clearTimeout(task.killTimer)
      task.killTimer = undefined
    }
    task.markExited()
  }

  private end(task: Task, state: Exclude<TaskStateName, 'RUNNING'>, exitCode: number, message: string): void {
    if (task.state !== 'RUNNING') return
    task.state = state
    task.exitCode = exitCode
    task.message = truncate(message, TASK_MESSAGE_BYTES_MAX)
    if (!task.pid) task.markExited()
    const level = state === 'FINISHED' ? 'info' : 'warn'
    this.opts.log[level]({ taskId: task.id, state, exitCode, message: task.message }, 'task ended')
    this.opts.onEnded?.(task.id)
  }

  /** Signals the task's whole process group; a SIGTERM arms the SIGKILL that follows after the grace. */
  private signal(task: Task, sig: 'SIGTERM' | 'SIGKILL'): void {
    signalGroup(task.pid, sig)
    if (sig === 'SIGTERM' && !task.killTimer) {
      task.killTimer = setTimeout(() => {
        task.killTimer = undefined
        signalGroup(task.pid, 'SIGKILL')
      }, TASK_KILL_GRACE_MS)
      task.killTimer.unref()
    }
  }

  private retire(taskId: string, sandbox: string): void {
    this.retired.delete(taskId)
    this.retired.set(taskId, { sandbox })
    while (this.retired.size > AGENT_SANDBOXES_KEPT_MAX) {
      const [oldest, r] = this.retired.entries().next().value as [string, Retired]
      this.retired.delete(oldest)
      void removeSandbox(r.sandbox, this.opts.log).catch((err: Error) => this.opts.log.warn({ sandbox: r.sandbox, err: err.message }, 'cannot remove an old sandbox'))
    }
  }

  private async writeCliWrapper(): Promise<void> {
    if (!existsSync(CLI_PATH)) throw new LoamError('io', `the loam command is not at ${CLI_PATH}; is this a complete build?`)
    const file = path.join(this.binDir, 'loam')
    const script = `#!/bin/sh\n# Written by the Loam agent: the loam command for its tasks.\nexec ${loamCommand().map(shellQuote).join(' ')} "$@"\n`
    const tmp = `${file}.tmp-${process.pid}`
    await writeFile(tmp, script, { mode: 0o755 })
    await chmod(tmp, 0o755)
    await rename(tmp, file)
  }

  /** Tasks a previous incarnation left running were lost with it (the scheduler runs them again elsewhere): kill them. */
  private async recoverLeftovers(): Promise<void> {
    const names = await readdir(this.tasksDir).catch(() => [] as string[])
    const found: Array<{ record: TaskRecordFile; sandbox: string }> = []
    for (const name of names) {
      const sandbox = path.join(this.tasksDir, name)
      const record = await readRecord(sandbox)
      if (record) found.push({ record, sandbox })
    }
    const killed: number[] = []
    for (const { record } of found) {
      if (!leftoverAlive(record)) continue
      this.opts.log.warn({ taskId: record.taskId, taskPid: record.pid }, 'killing a task left running by a previous agent: it was lost with it')
      signalGroup(record.pid, 'SIGTERM')
      killed.push(record.pid)
    }
    const deadline = Date.now() + TASK_KILL_GRACE_MS
    while (killed.some(groupAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    for (const pid of killed) if (groupAlive(pid)) signalGroup(pid, 'SIGKILL')
    // Their volume mounts outlived them (separate processes): detached, which ends those processes too.
    await detachLazily([this.tasksDir], this.opts.log)
    // Their logs stay readable (as ended tasks) until collected, oldest first.
    found.sort((a, b) => a.record.startedAtMs - b.record.startedAtMs)
    for (const { record, sandbox } of found) this.retire(record.taskId, sandbox)
  }
}

function newTask(id: string, jobId: string, sandbox: string): Task {
  let markExited!: () => void
  const exited = new Promise<void>((resolve) => (markExited = resolve))
  return { id, jobId, sandbox, state: 'RUNNING', exitCode: 0, message: '', pid: 0, child: undefined, killReason: '', killTimer: undefined, checker: undefined, mounts: undefined, exited, markExited }
}

/** What is wrong with a launch, or undefined. */
function checkLaunch(spec: LaunchTask, sandboxDirName: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(spec.taskId)) return 'its task id holds a control character'
  if (Buffer.byteLength(sandboxDirName) > NAME_BYTES_MAX) return `its task id makes a sandbox name longer than ${NAME_BYTES_MAX} bytes`
  if (typeof spec.cmd !== 'string' || spec.cmd.trim() === '') return 'it has no command'
  if (spec.cmd.includes('\0')) return 'its command holds a NUL byte'
  if (Buffer.byteLength(spec.cmd) > TASK_CMD_BYTES_MAX) return `its command is longer than ${TASK_CMD_BYTES_MAX} bytes`
  const env = Object.entries(spec.env ?? {})
  if (env.length > TASK_ENV_ENTRIES_MAX) return `its environment has ${env.length} entries, more than ${TASK_ENV_ENTRIES_MAX}`
  let bytes = 0
  for (const [k, v] of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) return `environment name ${JSON.stringify(k.slice(0, 64))} is not a variable name`
    if (String(v).includes('\0')) return `environment variable ${k} holds a NUL byte`
    bytes += Buffer.byteLength(k) + Buffer.byteLength(String(v)) + 2
  }
  if (bytes > TASK_ENV_BYTES_MAX) return `its environment is ${bytes} bytes, more than ${TASK_ENV_BYTES_MAX}`
  const volumes = spec.volumes ?? []
  if (volumes.length > TASK_VOLUMES_MAX) return `it asks for ${volumes.length} volumes, more than ${TASK_VOLUMES_MAX}`
  for (const v of volumes) {
    if (!v.name || !v.nodeId) return 'a volume without a name or node'
    const bad = checkVolumePath(v.path)
    if (bad) return bad
  }
  const hc = spec.healthCheck
  if (hc) {
    if (!hc.cmd && !(hc.port > 0 && hc.port < 65536)) return 'its health check has neither a command nor a port'
    if (hc.intervalMs < HEALTH_INTERVAL_MIN_MS || hc.intervalMs > HEALTH_INTERVAL_MAX_MS) return `its health check interval must be from ${HEALTH_INTERVAL_MIN_MS} to ${HEALTH_INTERVAL_MAX_MS} ms`
    if (hc.timeoutMs < 1 || hc.maxFailures < 1 || hc.maxFailures > HEALTH_FAILURES_MAX) return `its health check needs a timeout and from 1 to ${HEALTH_FAILURES_MAX} failures`
  }
  return undefined
}

/** Removes a sandbox, but never through a mount still under it (that would delete a volume's data). */
async function removeSandbox(sandbox: string, log: Logger): Promise<void> {
  if ((await mountsUnder(sandbox)).length > 0) {
    await detachLazily([sandbox], log)
    if ((await mountsUnder(sandbox)).length > 0) throw new LoamError('io', `${sandbox} still has a mount under it; it is kept`)
  }
  await rm(sandbox, { recursive: true, force: true })
}

/**
 * A task id as one directory name, one to one: letters, digits and `_.:@+=,-` stay,
 * every other byte (and a leading dot) becomes %XX.
 */
export function sandboxName(taskId: string): string {
  let out = ''
  for (const byte of Buffer.from(taskId, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9_.:@+=,-]/.test(c) && !(c === '.' && out === '') ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

function writeRecord(sandbox: string, record: TaskRecordFile): void {
  const file = path.join(sandbox, 'task.json')
  const tmp = `${file}.tmp`
  writeFileSync(tmp, JSON.stringify(record) + '\n', { mode: 0o600 })
  renameSync(tmp, file)
}

async function readRecord(sandbox: string): Promise<TaskRecordFile | undefined> {
  try {
    const r = JSON.parse(await readFile(path.join(sandbox, 'task.json'), 'utf8')) as Partial<TaskRecordFile>
    if (typeof r.taskId !== 'string' || !Number.isInteger(r.pid) || (r.pid ?? 0) <= 1) return undefined
    return { taskId: r.taskId, jobId: String(r.jobId ?? ''), pid: r.pid!, pidStart: String(r.pidStart ?? ''), startedAtMs: Number(r.startedAtMs) || 0 }
  } catch {
    return undefined
  }
}

/**
 * Whether a recorded task's process group may still run. A live process with the
 * recorded pid but another start time is someone else (the pid was reused, so our
 * group is long gone: the kernel does not reuse a pid while a group of that id lives).
 */
function leftoverAlive(record: TaskRecordFile): boolean {
  const start = processStart(record.pid)
  if (start && record.pidStart && start !== record.pidStart) return false
  return groupAlive(record.pid)
}

/** The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat); '' if unknown or gone. */
export function processStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''
  } catch {
    return ''
  }
}

/** Whether any process of the group lives (zombies do not count: they run nothing). */
export function groupAlive(pgid: number): boolean {
  if (!existsSync('/proc/self/stat')) {
    try {
      process.kill(-pgid, 0)
      return true
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM'
    }
  }
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return false
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8')
    } catch {
      continue
    }
    // After "pid (comm) ": state, ppid, pgrp, ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true
  }
  return false
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  if (pgid <= 1) return
  try {
    process.kill(-pgid, sig)
  } catch {
    // Already gone.
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

function truncate(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s
  return Buffer.from(s).subarray(0, maxBytes - 3).toString('utf8').replace(/\uFFFD$/, '') + '...'
}

/** The name of a task's copy of the cluster secret, in its sandbox. */
const TASK_SECRET_FILE = '.loam-secret'

/** Spawn options for a task of another user (its commands and checks alike). */
function ids(runAs: TaskUser | undefined): SpawnIds {
  return runAs ? { uid: runAs.uid, gid: runAs.gid } : {}
}
