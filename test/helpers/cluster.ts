// A real multi-process cluster for tests and benchmarks (like HDFS's MiniDFSCluster):
// `loam cluster up` on free ports in a temporary directory, always torn down.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { LoamClient } from '../../src/client/client.js'
import type { ClusterRecord } from '../../src/cli/cluster.js'
import { parseAddress } from '../../src/common/address.js'
import { createLogger } from '../../src/common/log.js'
import { INSECURE_ENV, SECRET_FILE_ENV, writeSecretFile } from '../../src/rpc/security.js'
import { detachLazily } from '../../src/scheduler/volume-mounts.js'
import { useBlockKeysOf } from './tokens.js'

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

/**
 * One cluster secret for every cluster this test process starts: clients in this
 * process and `loam` children find it in the environment, as a user's shell would.
 * A process that inherits one keeps it: a script a test starts may import these
 * helpers, and must still talk to its parent's clusters.
 */
export const SECRET_FILE = process.env[SECRET_FILE_ENV] || ((): string => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'loam-secret-'))
  const file = path.join(dir, 'secret')
  writeSecretFile(file)
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  return file
})()
process.env[SECRET_FILE_ENV] = SECRET_FILE

export interface ClusterOptions {
  nodes?: number
  racks?: number
  heartbeat?: string
  deadAfter?: string
  replication?: number
  blockSize?: string
  leaseLimit?: string
  blockTokenLifetime?: string
  scanPeriod?: string
  logLevel?: string
  localityWait?: string
  /** The scheduler's DRF weight of each role named (others weigh 1). */
  roleWeights?: Record<string, number>
  cpus?: number
  /** Unencrypted connections (benchmarks comparing the cost); this process must then run insecure too. */
  insecure?: boolean
}

export interface CliResult {
  code: number
  stdout: Buffer
  stderr: string
}

/** Anything that can register cleanup: an ava ExecutionContext, or a benchmark's own list. */
export interface Teardown {
  teardown(fn: () => Promise<void> | void): void
}

export class TestCluster {
  private readonly extra: ChildProcess[] = []
  private readonly clients: LoamClient[] = []

  constructor(
    readonly dir: string,
    readonly record: ClusterRecord,
    private readonly up: ChildProcess,
    readonly insecure = false,
  ) {}

  get namenode(): string {
    return this.record.namenode.rpc
  }

  get scheduler(): string {
    return this.record.scheduler.rpc
  }

  get env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, LOAM_NAMENODE: this.namenode, LOAM_SCHEDULER: this.scheduler, [SECRET_FILE_ENV]: this.record.secretFile }
    if (this.insecure) env[INSECURE_ENV] = '1'
    return env
  }

  client(opts: { nodeId?: string; shortCircuit?: boolean; timeoutMs?: number } = {}): LoamClient {
    const c = new LoamClient({ namenode: parseAddress(this.namenode), ...opts })
    this.clients.push(c)
    return c
  }

  /** Runs the `loam` command against this cluster; as: as another OS user (from /, which every user may enter). */
  loam(args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv; as?: { uid: number; gid: number } } = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], { env: { ...this.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'], ...(opts.as ? { ...opts.as, cwd: '/' } : {}) })
      const out: Buffer[] = []
      let err = ''
      child.stdout.on('data', (b: Buffer) => out.push(b))
      child.stderr.on('data', (b: Buffer) => (err += b.toString()))
      child.on('error', reject)
      // A command that exits before reading its input must not take the test process down with EPIPE.
      child.stdin.on('error', () => undefined)
      child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }))
      child.stdin.end(opts.input ?? Buffer.alloc(0))
    })
  }

  async kill(pid: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    try {
      process.kill(pid, signal)
    } catch {
      return
    }
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline && alive(pid)) await sleep(20)
  }

  killNamenode(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.kill(this.record.namenode.pid, signal)
  }

  /** Starts the namenode again from its recorded command line, and waits until it answers. */
  async restartNamenode(): Promise<void> {
    this.record.namenode.pid = this.respawn(this.record.namenode.argv, path.join(this.record.namenode.data, 'log'))
    const c = this.client({ timeoutMs: 2000 })
    await waitFor(async () => (await c.report().catch(() => undefined)) !== undefined, 30_000, 'the namenode to answer after restart')
  }

  killScheduler(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.kill(this.record.scheduler.pid, signal)
  }

  /** Starts the scheduler again from its recorded command line (same port and state), and waits until it answers. */
  async restartScheduler(): Promise<void> {
    this.record.scheduler.pid = this.respawn(this.record.scheduler.argv, path.join(this.record.scheduler.data, 'log'))
    await waitFor(async () => (await this.loam(['job', 'ls'])).code === 0, 30_000, 'the scheduler to answer after restart')
  }

  killNode(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.kill(this.record.nodes[i]!.pid, signal)
  }

  /** A machine's death: the node's process and everything it started (tasks, volume mounts), all at once with SIGKILL. */
  async killNodeTree(i: number): Promise<void> {
    const root = this.record.nodes[i]!.pid
    const pids = [root, ...descendants(root)]
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Gone already.
      }
    }
    for (const pid of pids) while (alive(pid)) await sleep(20)
  }

  async restartNode(i: number): Promise<void> {
    const node = this.record.nodes[i]!
    node.pid = this.respawn(node.argv, path.join(node.data, 'log'))
    const c = this.client({ timeoutMs: 2000 })
    await waitFor(async () => (await c.report().catch(() => undefined))?.datanodes.some((d) => d.id === node.id && d.state === 'live') ?? false, 30_000, `${node.id} to be live again`)
  }

  private respawn(argv: string[], log: string): number {
    const fd = openSync(log, 'a')
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd] })
    closeSync(fd)
    this.extra.push(child)
    return child.pid!
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close()
    if (this.up.exitCode === null && this.up.signalCode === null) {
      this.up.kill('SIGTERM')
      // A bounded wait whose timer does not keep the test process alive once the cluster is gone.
      let timer: NodeJS.Timeout | undefined
      await Promise.race([new Promise((r) => this.up.once('exit', r)), new Promise((r) => (timer = setTimeout(r, 15_000)))])
      clearTimeout(timer)
    }
    // Whatever is still running (restarted roles, or a cluster up that did not stop them) goes now.
    const pids = [this.record.namenode.pid, this.record.scheduler.pid, ...this.record.nodes.map((n) => n.pid), ...this.extra.map((c) => c.pid ?? 0)]
    for (const pid of pids) if (pid && alive(pid)) await this.kill(pid)
    // Mounts whose process was killed with its node stay behind, disconnected, until detached.
    await detachLazily([this.dir], quietLog)
    await rm(this.dir, { recursive: true, force: true })
  }
}

export async function startCluster(t: Teardown, opts: ClusterOptions = {}): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loam-test-'))
  const readyFile = path.join(dir, 'cluster.json')
  const args = [
    CLI, 'cluster', 'up', '--dir', path.join(dir, 'cluster'), '--port', '0', '--http-port', '0', '--ready-file', readyFile,
    '--nodes', String(opts.nodes ?? 3), '--racks', String(opts.racks ?? 2),
    '--heartbeat', opts.heartbeat ?? '1s', '--dead-after', opts.deadAfter ?? '10s', '--log-level', opts.logLevel ?? 'warn',
    '--secret-file', SECRET_FILE,
  ]
  if (opts.insecure) args.push('--insecure')
  if (opts.replication) args.push('--replication', String(opts.replication))
  if (opts.blockSize) args.push('--block-size', opts.blockSize)
  if (opts.leaseLimit) args.push('--lease-limit', opts.leaseLimit)
  if (opts.blockTokenLifetime) args.push('--block-token-lifetime', opts.blockTokenLifetime)
  if (opts.scanPeriod) args.push('--scan-period', opts.scanPeriod)
  if (opts.localityWait) args.push('--locality-wait', opts.localityWait)
  for (const [role, weight] of Object.entries(opts.roleWeights ?? {})) args.push('--role-weight', `${role}=${weight}`)
  if (opts.cpus) args.push('--cpus', String(opts.cpus))
  const logFd = openSync(path.join(dir, 'cluster-up.log'), 'a')
  const up = spawn(process.execPath, args, { stdio: ['ignore', logFd, logFd] })
  closeSync(logFd)
  const started: { cluster?: TestCluster } = {}
  t.teardown(async () => {
    if (started.cluster) await started.cluster.stop()
    else {
      up.kill('SIGTERM')
      await rm(dir, { recursive: true, force: true })
    }
  })
  await waitFor(async () => {
    if (up.exitCode !== null) throw new Error(`cluster up exited ${up.exitCode}: ${await readFile(path.join(dir, 'cluster-up.log'), 'utf8')}`)
    return (await readFile(readyFile, 'utf8').catch(() => '')) !== ''
  }, 60_000, 'the cluster to come up')
  started.cluster = new TestCluster(dir, JSON.parse(await readFile(readyFile, 'utf8')) as ClusterRecord, up, opts.insecure)
  useBlockKeysOf(started.cluster.record.namenode.argv)
  return started.cluster
}

const quietLog = createLogger('test', 'silent')

/** Every live process below pid (children, their children, ...), from /proc. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)])
    } catch {
      // Gone while listing.
    }
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c)
      queue.push(c)
    }
  }
  return out
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

export async function waitFor(pred: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await pred()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}
