// `loam cluster up`: every role on this machine, each its own process, in the foreground.
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Command } from 'commander'
import { LoamClient } from '../client/client.js'
import { parseAddress } from '../common/address.js'
import { parseDuration } from '../common/units.js'
import { LoamError } from '../rpc/errors.js'
import { isInsecureEnv, loadSecurity, processSecurity, SECRET_FILE_ENV, writeSecretFile } from '../rpc/security.js'
import { dashboardToken } from '../dashboard/access.js'
import { checkTimings, writeReadyFile } from './daemon-commands.js'
import type { MountNotice } from './mount-commands.js'
import { runDemo } from './demo.js'
import { action } from './run.js'
import { mkdirp } from '../common/mkdirp.js'
import { CLI_PATH, loamCommand } from '../common/loam-command.js'

const START_TIMEOUT_MS = 60_000
const SECRET_FILE_NAME = 'secret'

export interface RoleRecord {
  id?: string
  rack?: string
  rpc: string
  http: string
  pid: number
  data: string
  argv: string[]
  /** A node's agent: where it serves task logs. */
  agentRpc?: string
}

export interface ClusterRecord {
  namenode: RoleRecord
  scheduler: RoleRecord
  /** Each node: a datanode and an agent in one process (`loam node`). */
  nodes: RoleRecord[]
  mount: string | null
  /** The mount process's /status and /metrics. */
  mountHttp: string | null
  /** The cluster secret every role and client proves it holds. */
  secretFile: string
  /** The dashboard's address, with its access token. */
  dashboard: string
}

interface UpFlags {
  dir: string
  nodes: string
  racks: string
  host: string
  port: string
  httpPort: string
  heartbeat: string
  deadAfter: string
  replication?: string
  blockSize?: string
  leaseLimit?: string
  blockTokenLifetime?: string
  scanPeriod?: string
  readyFile?: string
  logLevel: string
  demo?: boolean
  mount?: string
  localityWait: string
  roleWeight?: string[]
  cpus?: string
}

/** The cluster secret in DIR: kept when there is one, else made (0600). */
async function clusterSecretFile(dir: string): Promise<string> {
  await mkdirp(dir)
  const file = path.join(dir, SECRET_FILE_NAME)
  try {
    writeSecretFile(file)
  } catch (err) {
    if (!(err instanceof LoamError && err.code === 'exists')) throw err
  }
  return file
}

async function waitForFile(file: string, child: ChildProcess, log: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n')
      throw new LoamError('io', `a role stopped while starting (exit ${child.exitCode ?? child.signalCode}); its log ${log} ends:\n${tail}`)
    }
    const text = await readFile(file, 'utf8').catch(() => '')
    if (text) return JSON.parse(text) as Record<string, unknown>
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new LoamError('timeout', `a role did not start within ${START_TIMEOUT_MS / 1000} s; see ${log}`)
}

/** Starts one role with its stdout/stderr in DIR/log; returns its record once it serves. */
async function startRole(args: string[], dir: string, children: ChildProcess[]): Promise<{ record: Record<string, unknown>; child: ChildProcess }> {
  await mkdirp(dir)
  const readyFile = path.join(dir, 'ready.json')
  await rm(readyFile, { force: true })
  const log = path.join(dir, 'log')
  const fd = openSync(log, 'a', 0o600)
  const [node, ...loam] = loamCommand()
  const child = spawn(node!, [...loam, ...args, '--ready-file', readyFile], { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  children.push(child)
  return { record: await waitForFile(readyFile, child, log), child }
}

/** Starts `loam mount --foreground` (logging to DIR/log) and waits until it serves; returns it and its HTTP address. */
async function startMount(mountDir: string, nnRpc: string, nodeId: string, dir: string, host: string, logLevel: string): Promise<{ child: ChildProcess; http: string }> {
  await mkdirp(dir)
  const log = path.join(dir, 'log')
  const fd = openSync(log, 'a', 0o600)
  const [node, ...loam] = loamCommand()
  const args = [...loam, 'mount', mountDir, '--foreground', '--namenode', nnRpc, '--node', nodeId, '--host', host, '--http-port', '0', '--log-level', logLevel]
  const child = spawn(node!, args, { stdio: ['ignore', fd, fd, 'ipc'] })
  closeSync(fd)
  const notice = await new Promise<MountNotice>((resolve) => {
    child.once('message', (m: MountNotice) => resolve(m))
    child.once('exit', (code) => resolve({ error: `the mount process exited (${code}); see ${log}` }))
  })
  if ('error' in notice) throw new LoamError('io', `cannot mount ${mountDir}: ${notice.error}`)
  return { child, http: notice.http }
}

/** The full command line that restarts a role on the same ports and directories. */
function restartArgv(args: string[], rpc: string, http: string): string[] {
  const out = [...args]
  const set = (flag: string, value: string): void => {
    const i = out.indexOf(flag)
    if (i >= 0) out[i + 1] = value
    else out.push(flag, value)
  }
  set('--port', String(parseAddress(rpc).port))
  set('--http-port', String(parseAddress(http).port))
  return [...loamCommand(), ...out]
}

async function waitForDatanodes(client: LoamClient, want: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    const r = await client.report().catch(() => undefined)
    if (r && r.datanodes.filter((d) => d.state === 'live').length >= want && !r.safemode) return
    if (Date.now() > deadline) throw new LoamError('timeout', `the datanodes did not all register within ${START_TIMEOUT_MS / 1000} s`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

function stopAll(children: ChildProcess[]): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null)
  return new Promise((resolve) => {
    if (running.length === 0) return resolve()
    let left = running.length
    const kill = setTimeout(() => running.forEach((c) => c.kill('SIGKILL')), 10_000)
    for (const c of running) {
      c.once('exit', () => {
        if (--left === 0) {
          clearTimeout(kill)
          resolve()
        }
      })
      c.kill('SIGTERM')
    }
  })
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('run a whole cluster on this machine')
  cluster
    .command('init')
    .description('write a new cluster secret (DIR/secret, readable by its owner only); every role and client needs it')
    .option('--dir <dir>', 'where to write it', '.')
    .action(
      action(async (f: { dir: string }) => {
        await mkdirp(path.resolve(f.dir))
        const file = path.resolve(f.dir, SECRET_FILE_NAME)
        writeSecretFile(file)
        process.stdout.write(`wrote the cluster secret ${file}; give it to every role and client with --secret-file ${file} or ${SECRET_FILE_ENV}=${file}\n`)
      }),
    )
  cluster
    .command('token')
    .description("print the dashboard's access token, made from the cluster secret (open http://NAMENODE:9870/?token=TOKEN)")
    .action(
      action(async () => {
        process.stdout.write(dashboardToken(processSecurity().secret) + '\n')
      }),
    )
  cluster
    .command('up')
    .description('start a namenode and datanodes (each its own process) in the foreground; Ctrl-C stops all')
    .requiredOption('--dir <dir>', 'where every role keeps its data and log')
    .option('--nodes <n>', 'datanodes', '3')
    .option('--racks <n>', 'racks the datanodes are spread over', '2')
    .option('--host <addr>', 'address every role listens on', '127.0.0.1')
    .option('--port <port>', 'namenode RPC port (0 picks a free one)', '8020')
    .option('--http-port <port>', 'namenode HTTP port', '9870')
    .option('--heartbeat <duration>', 'datanode heartbeat interval', '3s')
    .option('--dead-after <duration>', 'a datanode silent this long is dead', '30s')
    .option('--replication <n>', 'default replication')
    .option('--block-size <size>', 'default block size')
    .option('--lease-limit <duration>', 'a writer silent this long loses its open files to lease recovery')
    .option('--block-token-lifetime <duration>', 'how long a block access token is good for (default 10m)')
    .option('--scan-period <duration>', 'every datanode verifies all its replicas once per this period', '7d')
    .option('--ready-file <file>', 'write the cluster record (roles, addresses, pids, argv) here once up')
    .option('--log-level <level>', 'log level of every role', 'info')
    .option('--demo', 'once up, show a put, a listing and a get')
    .option('--mount <dir>', 'also mount the cluster filesystem on DIR (as node dn1)')
    .option('--locality-wait <duration>', "the scheduler's delay-scheduling wait", '3s')
    .option('--role-weight <role=weight...>', "the scheduler's DRF weight of a role (default 1)")
    .option('--cpus <n>', "cpus each node's agent offers (default: this machine's)")
    .action(
      action(async (f: UpFlags) => {
        const nodes = Number(f.nodes)
        const racks = Number(f.racks)
        if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) throw new LoamError('invalid-argument', `--nodes '${f.nodes}' must be a whole number from 1 to 64`)
        if (!Number.isInteger(racks) || racks < 1 || racks > nodes) throw new LoamError('invalid-argument', `--racks '${f.racks}' must be from 1 to the number of nodes (${nodes})`)
        checkTimings(parseDuration(f.heartbeat, '--heartbeat'), parseDuration(f.deadAfter, '--dead-after'))
        const dir = path.resolve(f.dir)
        const children: ChildProcess[] = []
        const mounts: ChildProcess[] = []
        let stopping = false
        const shutdown = async (code: number): Promise<never> => {
          stopping = true
          // The mount goes first: it closes its open files while the cluster still serves them.
          await stopAll(mounts)
          await stopAll(children)
          if (f.readyFile) await rm(f.readyFile, { force: true })
          process.exit(code)
        }
        process.on('SIGINT', () => void shutdown(0))
        process.on('SIGTERM', () => void shutdown(0))
        try {
          // Every role is started with the secret named on its command line (so a restart from its argv has it);
          // the mount and the demo inherit it from the environment.
          const secretFile = process.env[SECRET_FILE_ENV] ?? (await clusterSecretFile(dir))
          process.env[SECRET_FILE_ENV] = secretFile
          const security = ['--secret-file', secretFile, ...(isInsecureEnv() ? ['--insecure'] : [])]
          const common = ['--heartbeat', f.heartbeat, '--dead-after', f.deadAfter, '--log-level', f.logLevel, ...security]
          const nnDir = path.join(dir, 'namenode')
          const nnArgs = ['namenode', '--data', path.join(nnDir, 'meta'), '--host', f.host, '--port', f.port, '--http-port', f.httpPort, ...common]
          if (f.replication) nnArgs.push('--replication', f.replication)
          if (f.blockSize) nnArgs.push('--block-size', f.blockSize)
          if (f.leaseLimit) nnArgs.push('--lease-limit', f.leaseLimit)
          if (f.blockTokenLifetime) nnArgs.push('--block-token-lifetime', f.blockTokenLifetime)
          const nn = await startRole(nnArgs, nnDir, children)
          const nnRpc = String(nn.record.rpc)
          const schedDir = path.join(dir, 'scheduler')
          const schedArgs = ['scheduler', '--namenode', nnRpc, '--data', path.join(schedDir, 'state'), '--host', f.host, '--port', '0', '--http-port', '0', '--heartbeat', '1s', '--dead-after', f.deadAfter, '--locality-wait', f.localityWait, '--log-level', f.logLevel, ...security]
          for (const rw of f.roleWeight ?? []) schedArgs.push('--role-weight', rw)
          const sched = await startRole(schedArgs, schedDir, children)
          const schedRpc = String(sched.record.rpc)
          const record: ClusterRecord = {
            namenode: { rpc: nnRpc, http: String(nn.record.http), pid: Number(nn.record.pid), data: nnDir, argv: restartArgv(nnArgs, nnRpc, String(nn.record.http)) },
            scheduler: { rpc: schedRpc, http: String(sched.record.http), pid: Number(sched.record.pid), data: schedDir, argv: restartArgv(schedArgs, schedRpc, String(sched.record.http)) },
            nodes: [],
            mount: null,
            mountHttp: null,
            secretFile,
            dashboard: `http://${String(nn.record.http)}/?token=${dashboardToken(loadSecurity({ secretFile }).secret)}`,
          }
          const started = await Promise.all(
            Array.from({ length: nodes }, async (_, i) => {
              const id = `dn${i + 1}`
              const rack = `/r${(i % racks) + 1}`
              const nodeDir = path.join(dir, id)
              const args = ['node', '--namenode', nnRpc, '--scheduler', schedRpc, '--data', path.join(nodeDir, 'data'), '--work', path.join(nodeDir, 'work'), '--id', id, '--rack', rack, '--host', f.host, '--port', '0', '--http-port', '0', '--agent-port', '0', '--log-level', f.logLevel, '--scan-period', f.scanPeriod ?? '7d', ...security]
              if (f.cpus) args.push('--cpus', f.cpus)
              const dn = await startRole(args, nodeDir, children)
              const rpc = String(dn.record.rpc)
              const http = String(dn.record.http)
              return { id, rack, rpc, http, pid: Number(dn.record.pid), data: nodeDir, argv: restartArgv(args, rpc, http), agentRpc: String(dn.record.agentRpc) }
            }),
          )
          record.nodes = started
          const client = new LoamClient({ namenode: parseAddress(nnRpc) })
          try {
            await waitForDatanodes(client, nodes)
          } finally {
            client.close()
          }
          if (f.mount) {
            const mountDir = path.resolve(f.mount)
            await mkdirp(mountDir)
            const mount = await startMount(mountDir, nnRpc, started[0]!.id, path.join(dir, 'mount'), f.host, f.logLevel)
            mounts.push(mount.child)
            record.mount = mountDir
            record.mountHttp = mount.http
          }
          if (f.readyFile) await writeReadyFile(f.readyFile, record)
          for (const c of [...children, ...mounts]) {
            c.on('exit', (code, signal) => {
              if (!stopping) process.stderr.write(`loam: role pid ${c.pid} stopped (${signal ?? `exit ${code}`}); see its log under ${dir}\n`)
            })
          }
          process.stdout.write(`Loam is up: namenode ${nnRpc} (status: http://${record.namenode.http}/status), scheduler ${schedRpc}, ${nodes} nodes (datanode + agent) in ${racks} racks, data and logs in ${dir}\n`)
          process.stdout.write(`Dashboard: ${record.dashboard}\n`)
          if (record.mount) process.stdout.write(`The cluster filesystem is mounted on ${record.mount}.\n`)
          if (f.demo) await runDemo(CLI_PATH, nnRpc, schedRpc, dir, record.mount)
          process.stdout.write('Ctrl-C stops the cluster.\n')
        } catch (err) {
          await stopAll(mounts)
          await stopAll(children)
          throw err
        }
      }),
    )
}
