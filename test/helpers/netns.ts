// A small test network that a test builds, owns and removes: each host is a
// network namespace with one address in 198.18.0.0/15 (the range set aside for
// such test networks), plugged by a veth pair into a bridge that lives in a
// namespace of its own. Nothing is added to the root namespace, the hosts have
// no default route, and so their traffic can only reach each other (or their own
// loopback). A host can be cut off and restored; teardown kills every process
// started in it and deletes every namespace (the veths and the bridge go with them).
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { CLI, sleep, type CliResult, type Teardown } from './cluster.js'

/** Bounds on the `ip`/`tc` calls and on stopping processes. */
const IP_COMMAND_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const KILL_WAIT_MS = 5_000
const HOSTS_MAX = 250
/** Interface names are at most 15 bytes (IFNAMSIZ - 1). */
const IFNAME_BYTES_MAX = 15
const HOST_IF = 'eth0'
const BRIDGE = 'br0'

/**
 * How a host is cut off:
 * - 'blackhole': a blackhole qdisc on both ends of its veth; the link stays up and every packet,
 *   either way, is silently dropped (a partition: peers see silence, connects hang until timeouts).
 * - 'down': its own interface down; nothing passes, and its own sends fail at once (no route).
 */
export type CutMode = 'blackhole' | 'down'

export interface NetHost {
  /** The test's name for it: 'nn', 'dn1', 'client'. */
  name: string
  /** Its network namespace. */
  ns: string
  /** Its one address on the test network. */
  address: string
  /** Its veth's other end, a port of the bridge in the switch namespace. */
  port: string
}

export interface RunResult extends CliResult {
  /** Wall time until the process exited (or was killed), for the test's own bound. */
  ms: number
  /** The process outlived its time limit and was killed. */
  timedOut: boolean
}

export interface RunOptions {
  input?: Buffer
  env?: NodeJS.ProcessEnv
  /** Kill the process after this long and report timedOut (default 60 s): a hang fails the test, not the run. */
  limitMs?: number
}

interface IpResult {
  code: number
  stdout: string
  stderr: string
}

function ip(args: string[], cmd = 'ip'): Promise<IpResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: IP_COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : -1) : 0
      resolve({ code, stdout, stderr: stderr || (err && !stderr ? err.message : '') })
    })
  })
}

async function must(args: string[], cmd = 'ip'): Promise<string> {
  const r = await ip(args, cmd)
  if (r.code !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (exited(child)) return Promise.resolve()
  return Promise.race([new Promise<void>((resolve) => child.once('exit', () => resolve())), sleep(ms)])
}

export class TestNetwork {
  readonly hosts = new Map<string, NetHost>()
  /** Every namespace this network made, the switch last, for teardown. */
  private readonly namespaces: string[] = []
  private readonly children = new Set<ChildProcess>()
  private readonly cuts = new Map<string, CutMode>()
  private closed = false
  private readonly exitHook = (): void => this.closeSync()

  private constructor(
    readonly runId: string,
    /** The first three octets of the subnet: '198.18.7'. */
    readonly subnet: string,
    readonly switchNs: string,
    /** A temporary directory for the daemons' data and logs, removed at teardown. */
    readonly dir: string,
  ) {}

  /**
   * Builds a network of these hosts and registers its teardown with t before creating anything.
   * Throws, with what failed, when network namespaces cannot be made here (not root, no iproute2).
   */
  static async create(t: Teardown, names: string[]): Promise<TestNetwork> {
    if (names.length === 0 || names.length > HOSTS_MAX) throw new Error(`a test network has 1 to ${HOSTS_MAX} hosts, not ${names.length}`)
    for (const n of names) if (!/^[a-z][a-z0-9]{0,9}$/.test(n)) throw new Error(`host name '${n}': use 1 to 10 lowercase letters and digits, starting with a letter`)
    if (new Set(names).size !== names.length) throw new Error(`host names repeat: ${names.join(', ')}`)
    if (names.includes('sw')) throw new Error("host name 'sw' is taken by the switch namespace")
    // Unique per run: the pid and a random suffix name the namespaces; a random /24 of 198.18.0.0/15 numbers the hosts.
    const runId = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`
    const block = randomInt(0, 512)
    const subnet = `198.${18 + (block >> 8)}.${block & 255}`
    const dir = await mkdtemp(path.join(os.tmpdir(), 'loam-netns-'))
    const net = new TestNetwork(runId, subnet, `loam-${runId}-sw`, dir)
    process.on('exit', net.exitHook)
    t.teardown(() => net.close())
    await net.build(names)
    return net
  }

  host(name: string): NetHost {
    const h = this.hosts.get(name)
    if (!h) throw new Error(`no host '${name}' in this test network (hosts: ${[...this.hosts.keys()].join(', ')})`)
    return h
  }

  /** host:port of a host, for flags such as --namenode. */
  addr(name: string, port: number): string {
    return `${this.host(name).address}:${port}`
  }

  private async build(names: string[]): Promise<void> {
    const added = await ip(['netns', 'add', this.switchNs])
    if (added.code !== 0) {
      throw new Error(`network namespaces are not usable here, so this test cannot run: \`ip netns add\` failed (exit ${added.code}): ${added.stderr.trim()}. It needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.`)
    }
    this.namespaces.push(this.switchNs)
    const sw = this.switchNs
    await must(['-n', sw, 'link', 'add', BRIDGE, 'type', 'bridge'])
    await must(['-n', sw, 'link', 'set', BRIDGE, 'addrgenmode', 'none'])
    await must(['-n', sw, 'link', 'set', BRIDGE, 'up'])
    let i = 0
    for (const name of names) {
      i++
      const host: NetHost = { name, ns: `loam-${this.runId}-${name}`, address: `${this.subnet}.${i}`, port: `p-${name}` }
      if (host.port.length > IFNAME_BYTES_MAX) throw new Error(`interface name ${host.port} is longer than ${IFNAME_BYTES_MAX} bytes`)
      await must(['netns', 'add', host.ns])
      // Teardown runs the switch last: its bridge outlives the hosts' veths.
      this.namespaces.unshift(host.ns)
      this.hosts.set(name, host)
      await must(['-n', host.ns, 'link', 'set', 'lo', 'up'])
      await must(['-n', host.ns, 'link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', host.port, 'netns', sw])
      // IPv4 only: no link-local IPv6 addresses, so no IPv6 chatter either.
      await must(['-n', host.ns, 'link', 'set', HOST_IF, 'addrgenmode', 'none'])
      await must(['-n', sw, 'link', 'set', host.port, 'addrgenmode', 'none'])
      await must(['-n', sw, 'link', 'set', host.port, 'master', BRIDGE])
      await must(['-n', sw, 'link', 'set', host.port, 'up'])
      await must(['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', HOST_IF])
      await must(['-n', host.ns, 'link', 'set', HOST_IF, 'up'])
    }
  }

  private argv(host: NetHost, args: string[]): string[] {
    return ['netns', 'exec', host.ns, process.execPath, CLI, ...args]
  }

  /** Starts a long-running `loam` process (a daemon) inside a host, its output appended to log. */
  spawn(name: string, args: string[], opts: { log: string; env?: NodeJS.ProcessEnv }): ChildProcess {
    if (this.closed) throw new Error('this test network has been torn down')
    const fd = openSync(opts.log, 'a')
    try {
      // `ip netns exec` enters the namespace and execs node in place: child.pid is node's pid.
      const child = spawn('ip', this.argv(this.host(name), args), { env: { ...process.env, ...opts.env }, stdio: ['ignore', fd, fd] })
      this.track(child)
      return child
    } finally {
      closeSync(fd)
    }
  }

  /** Runs the `loam` command inside a host to completion, killing it if it outlives limitMs. */
  run(name: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const { child, done } = this.start(name, args, opts)
    child.stdin!.end(opts.input ?? Buffer.alloc(0))
    return done
  }

  /** Starts the `loam` command inside a host with its stdin left open, for the caller to feed and end. */
  start(name: string, args: string[], opts: { env?: NodeJS.ProcessEnv; limitMs?: number } = {}): { child: ChildProcess; done: Promise<RunResult> } {
    if (this.closed) throw new Error('this test network has been torn down')
    const limitMs = opts.limitMs ?? 60_000
    const started = Date.now()
    const child = spawn('ip', this.argv(this.host(name), args), { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    this.track(child)
    child.stdin!.on('error', () => undefined)
    const done = new Promise<RunResult>((resolve, reject) => {
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        child.kill('SIGKILL')
      }, limitMs)
      const out: Buffer[] = []
      let err = ''
      child.stdout!.on('data', (b: Buffer) => out.push(b))
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
      child.on('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      child.on('close', (code) => {
        clearTimeout(timer)
        resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err, ms: Date.now() - started, timedOut })
      })
    })
    return { child, done }
  }

  /** Runs a short command (not `loam`: ss, ip) inside a host and returns its output; throws if it fails. */
  async exec(name: string, cmd: string, args: string[]): Promise<string> {
    return must(['netns', 'exec', this.host(name).ns, cmd, ...args])
  }

  private track(child: ChildProcess): void {
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
  }

  /** Cuts a host off from every other host. */
  async cut(name: string, mode: CutMode = 'blackhole'): Promise<void> {
    const h = this.host(name)
    if (this.cuts.has(name)) throw new Error(`${name} is already cut off`)
    this.cuts.set(name, mode)
    if (mode === 'blackhole') {
      await must(['-n', h.ns, 'qdisc', 'add', 'dev', HOST_IF, 'root', 'blackhole'], 'tc')
      await must(['-n', this.switchNs, 'qdisc', 'add', 'dev', h.port, 'root', 'blackhole'], 'tc')
    } else {
      await must(['-n', h.ns, 'link', 'set', HOST_IF, 'down'])
    }
  }

  /** Plugs a cut-off host back in. */
  async restore(name: string): Promise<void> {
    const h = this.host(name)
    const mode = this.cuts.get(name)
    if (!mode) throw new Error(`${name} is not cut off`)
    if (mode === 'blackhole') {
      await must(['-n', h.ns, 'qdisc', 'del', 'dev', HOST_IF, 'root'], 'tc')
      await must(['-n', this.switchNs, 'qdisc', 'del', 'dev', h.port, 'root'], 'tc')
    } else {
      await must(['-n', h.ns, 'link', 'set', HOST_IF, 'up'])
    }
    this.cuts.delete(name)
  }

  /**
   * Stops every process started here (SIGTERM, then SIGKILL), kills whatever else still runs in
   * the namespaces, deletes them (and with them the veths and the bridge), removes the temporary
   * directory, and checks that nothing is left.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const children = [...this.children]
    for (const c of children) if (!exited(c)) c.kill('SIGTERM')
    await Promise.all(children.map((c) => waitExit(c, STOP_GRACE_MS)))
    for (const c of children) if (!exited(c)) c.kill('SIGKILL')
    await Promise.all(children.map((c) => waitExit(c, KILL_WAIT_MS)))
    const problems: string[] = []
    for (const ns of this.namespaces) {
      // Anything still inside is a descendant of a process started here.
      const deadline = Date.now() + KILL_WAIT_MS
      for (;;) {
        const pids = (await ip(['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean).map(Number)
        if (pids.length === 0) break
        if (Date.now() > deadline) {
          problems.push(`processes ${pids.join(', ')} still run in ${ns}`)
          break
        }
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL')
          } catch {
            // already gone
          }
        }
        await sleep(50)
      }
      const del = await ip(['netns', 'del', ns])
      if (del.code !== 0) problems.push(`\`ip netns del ${ns}\`: ${del.stderr.trim()}`)
    }
    const left = (await ip(['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => this.namespaces.includes(n))
    if (left.length > 0) problems.push(`namespaces left behind: ${left.join(', ')}`)
    await rm(this.dir, { recursive: true, force: true })
    process.off('exit', this.exitHook)
    if (problems.length > 0) throw new Error(`test network teardown: ${problems.join('; ')}`)
  }

  /** The same, synchronously, for a worker that exits before its teardown could run. */
  private closeSync(): void {
    if (this.closed) return
    this.closed = true
    for (const c of this.children) if (!exited(c)) c.kill('SIGKILL')
    for (const ns of this.namespaces) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: IP_COMMAND_TIMEOUT_MS }).stdout ?? ''
      for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      spawnSync('ip', ['netns', 'del', ns], { timeout: IP_COMMAND_TIMEOUT_MS })
    }
    spawnSync('rm', ['-rf', '--', this.dir], { timeout: IP_COMMAND_TIMEOUT_MS })
  }
}
