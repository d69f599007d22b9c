// `loam agent` (runs tasks for the scheduler) and `loam node` (a datanode and an
// agent in one process: what a worker machine runs). Each writes its ready file,
// logs structured lines and stops cleanly (tasks killed) on SIGTERM/SIGINT.
import { statfs } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Command } from 'commander'
import { Registry } from 'prom-client'
import { formatAddress, parseAddress } from '../common/address.js'
import { startStatusServer } from '../common/http.js'
import { createLogger } from '../common/log.js'
import { mkdirp } from '../common/mkdirp.js'
import { parseDuration, parseSize } from '../common/units.js'
import { Datanode, type DatanodeHandle } from '../datanode/server.js'
import { LoamError } from '../rpc/errors.js'
import { schedulerAddress, startAgent, type AgentHandle } from '../scheduler/agent.js'
import { AGENT_DISK_MIB_MAX } from '../scheduler/limits.js'
import { sandboxName } from '../scheduler/task-runner.js'
import { logLevel, daemonProcess, port, stopOnSignal, writeReadyFile } from './daemon-commands.js'
import { action } from './run.js'

export { schedulerAddress } from '../scheduler/agent.js'

const MIB = 1024 * 1024
/** An agent offers this share of the machine's memory unless told otherwise (the rest is the OS's and the daemons'). */
const AGENT_MEM_SHARE_DEFAULT = 0.8

interface ResourceFlags {
  scheduler?: string
  cpus?: string
  mem?: string
  disk?: string
  heartbeat?: string
}

interface AgentFlags extends ResourceFlags {
  work?: string
  id?: string
  nodeId?: string
  rack: string
  host: string
  advertise?: string
  port: string
  httpPort: string
  readyFile?: string
  logLevel: string
}

interface NodeFlags extends ResourceFlags {
  namenode?: string
  data?: string
  work?: string
  id?: string
  rack: string
  capacity?: string
  host: string
  advertise?: string
  port: string
  httpPort: string
  agentPort: string
  blockReportInterval: string
  scanPeriod: string
  readyFile?: string
  logLevel: string
}

export function parseCpus(text: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new LoamError('invalid-argument', `--cpus '${text}' must be a number of cpus more than 0, such as 4 or 0.5`)
  return n
}

/** MiB: a plain number is MiB; a size with a unit (4GiB, 512MiB) is converted. */
export function parseMib(text: string, what: string): number {
  const mib = /^\s*\d+\s*$/.test(text) ? Number(text) : Math.floor(parseSize(text, what) / MIB)
  if (!Number.isSafeInteger(mib) || mib <= 0) throw new LoamError('invalid-argument', `${what} '${text}' must be more than 0 MiB (a number of MiB, or a size such as 4GiB)`)
  return mib
}

function checkHost(text: string, what: string): string {
  if (!text || /[\s/]/.test(text)) throw new LoamError('invalid-argument', `${what} '${text}' is not a host name or address`)
  return text
}

function checkRack(rack: string): string {
  if (!rack.startsWith('/')) throw new LoamError('invalid-argument', `--rack '${rack}' must start with '/', such as /r1`)
  return rack
}

/** The free space of the work directory's filesystem, in MiB. */
async function freeDiskMib(dir: string): Promise<number> {
  try {
    const s = await statfs(dir)
    return Math.min(Math.floor((s.bavail * s.bsize) / MIB), AGENT_DISK_MIB_MAX)
  } catch {
    return 0
  }
}

/** Cpus, memory, disk and heartbeat an agent offers, from its flags or the machine. */
async function resources(f: ResourceFlags, workDir: string): Promise<{ cpus: number; memMib: number; diskMib: number; heartbeatMs: number | undefined }> {
  const cpus = f.cpus !== undefined ? parseCpus(f.cpus) : os.availableParallelism()
  const memMib = f.mem !== undefined ? parseMib(f.mem, '--mem') : Math.max(1, Math.floor((os.totalmem() / MIB) * AGENT_MEM_SHARE_DEFAULT))
  const heartbeatMs = f.heartbeat !== undefined ? parseDuration(f.heartbeat, '--heartbeat') : undefined
  if (heartbeatMs !== undefined && heartbeatMs <= 0) throw new LoamError('invalid-argument', '--heartbeat must be longer than 0')
  if (f.disk !== undefined) return { cpus, memMib, diskMib: parseMib(f.disk, '--disk'), heartbeatMs }
  try {
    await mkdirp(workDir)
  } catch (err) {
    throw new LoamError('io', `cannot use ${workDir} as the agent's work directory: ${(err as Error).message}`)
  }
  return { cpus, memMib, diskMib: await freeDiskMib(workDir), heartbeatMs }
}

function resourceOptions(cmd: Command, portFlag: string): Command {
  return cmd
    .option('--scheduler <host:port>', 'scheduler address (default: $LOAM_SCHEDULER or 127.0.0.1:5050)')
    .option('--cpus <n>', 'cpus to offer (default: every cpu of this machine)')
    .option('--mem <MiB>', 'memory to offer, in MiB or as a size such as 8GiB (default: 80% of this machine\'s)')
    .option('--disk <MiB>', 'disk to offer, in MiB or as a size (default: the free space of the work directory)')
    .option('--heartbeat <duration>', 'agent heartbeat interval (default: what the scheduler asks for)')
    .option(portFlag, 'port the agent serves task logs on (0 picks a free one)', '0')
}

export function registerAgentCommands(program: Command): void {
  resourceOptions(
    program
      .command('agent')
      .description('run an agent: runs the scheduler\'s tasks on this machine')
      .option('--work <dir>', 'work directory: task sandboxes and logs (default: a directory under the system temp directory)')
      .option('--id <id>', 'agent id (default: this machine\'s host name)')
      .option('--node-id <id>', 'the datanode on this machine, for data-local tasks')
      .option('--rack <rack>', 'rack, such as /r1', '/default-rack')
      .option('--host <addr>', 'address to listen on', '127.0.0.1')
      .option('--advertise <addr>', 'address the scheduler and clients reach this agent at (default: --host)'),
    '--port <port>',
  )
    .option('--http-port <port>', 'HTTP port for /status and /metrics (0 picks a free one)', '0')
    .option('--ready-file <file>', 'write {"rpc", "http", "pid", "agentId"} here once serving')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .action(
      action(async (f: AgentFlags) => {
        const level = logLevel(f.logLevel)
        const scheduler = schedulerAddress(f.scheduler)
        const agentId = f.id ?? os.hostname()
        const workDir = path.resolve(f.work ?? path.join(os.tmpdir(), `loam-agent-${sandboxName(agentId)}`))
        const agentPort = port(f.port, '--port')
        const httpPort = port(f.httpPort, '--http-port')
        const host = checkHost(f.host, '--host')
        const advertise = f.advertise === undefined ? undefined : checkHost(f.advertise, '--advertise')
        const rack = checkRack(f.rack)
        const res = await resources(f, workDir)
        const log = createLogger('agent', level)
        daemonProcess(log)
        const registry = new Registry()
        const agent = await startAgent({ scheduler, agentId, nodeId: f.nodeId ?? '', rack, host, advertise, port: agentPort, workDir, ...res, registry, log })
        const http = await startStatusServer(host, httpPort, () => agent.status(), { registry }).catch(async (err: unknown) => {
          await agent.stop()
          throw err
        })
        stopOnSignal(async () => {
          await agent.stop()
          await http.close()
        })
        if (f.readyFile) await writeReadyFile(f.readyFile, { rpc: formatAddress(agent.rpc), http: formatAddress(http.address), pid: process.pid, agentId: agent.agentId, workDir: agent.workDir })
      }),
    )

  // `loam node decommission|recommission ID` (src/cli/admin-commands.ts) may already own the name: the worker
  // daemon is that command's own action, its options read only before a subcommand's name (positional options,
  // which commander honours only when every command above is positional too: `loam` has no options of its own
  // but --version and --help), so `loam node decommission ID --namenode H:P` keeps its own --namenode. None is
  // mandatory to commander (its check would reach into the subcommands): --data and --work are checked in the action.
  const existing = program.commands.find((c) => c.name() === 'node')
  if (existing) program.enablePositionalOptions()
  const node = (existing ?? program.command('node'))
    .enablePositionalOptions()
    .description(existing ? 'run a worker machine (a datanode and an agent in one process), or administer datanodes' : 'run a worker machine: a datanode and an agent in one process')
  resourceOptions(
    node
      .option('--namenode <host:port>', 'namenode address (default: $LOAM_NAMENODE or 127.0.0.1:8020)')
      .option('--data <dirs>', 'datanode data directories, comma-separated (required)')
      .option('--work <dir>', 'agent work directory: task sandboxes and logs (required)')
      .option('--host <addr>', 'address to listen on', '127.0.0.1')
      .option('--advertise <addr>', 'address clients, peers and the scheduler reach this node at (default: --host)')
      .option('--port <port>', 'datanode RPC and block transfer port (0 picks a free one)', '9866')
      .option('--http-port <port>', 'datanode HTTP port for /status and /metrics', '9864')
      .option('--rack <rack>', 'rack, such as /r1', '/default-rack')
      .option('--id <name>', 'node id: the datanode\'s and the agent\'s (default: kept in the data directory)')
      .option('--capacity <size>', 'use at most this much space for blocks')
      .option('--block-report-interval <duration>', 'full block report interval', '10m')
      .option('--scan-period <duration>', 'verify every replica in the background once per this period', '7d'),
    '--agent-port <port>',
  )
    .option('--ready-file <file>', 'write {"rpc", "http", "pid", "id", "agentRpc"} here once serving')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .action(
      action(async (f: NodeFlags) => {
        if (f.data === undefined) throw new LoamError('invalid-argument', "required option '--data <dirs>' not specified")
        if (f.work === undefined) throw new LoamError('invalid-argument', "required option '--work <dir>' not specified")
        const level = logLevel(f.logLevel)
        const namenode = parseAddress(f.namenode ?? process.env.LOAM_NAMENODE ?? '127.0.0.1:8020', '--namenode')
        const scheduler = schedulerAddress(f.scheduler)
        const host = checkHost(f.host, '--host')
        const advertise = f.advertise === undefined ? undefined : checkHost(f.advertise, '--advertise')
        const rack = checkRack(f.rack)
        const dataDirs = f.data.split(',').filter(Boolean)
        if (dataDirs.length === 0) throw new LoamError('invalid-argument', '--data names no directory')
        const workDir = path.resolve(f.work)
        const dnPort = port(f.port, '--port')
        const httpPort = port(f.httpPort, '--http-port')
        const agentPort = port(f.agentPort, '--agent-port')
        const capacityBytes = f.capacity ? parseSize(f.capacity, '--capacity') : undefined
        const blockReportIntervalMs = parseDuration(f.blockReportInterval, '--block-report-interval')
        const scanPeriodMs = parseDuration(f.scanPeriod, '--scan-period')
        const res = await resources(f, workDir)
        const log = createLogger('node', level)
        daemonProcess(log)
        const dn: DatanodeHandle = await Datanode.start({
          namenode,
          dataDirs,
          host,
          advertise,
          port: dnPort,
          httpPort,
          rack,
          id: f.id,
          capacityBytes,
          blockReportIntervalMs,
          scanPeriodMs,
          log: log.child({ part: 'datanode' }),
        })
        let agent: AgentHandle
        try {
          agent = await startAgent({
            scheduler,
            agentId: dn.id,
            nodeId: dn.id,
            rack,
            host,
            advertise,
            port: agentPort,
            workDir,
            ...res,
            taskEnv: { LOAM_NAMENODE: formatAddress(namenode) },
            registry: dn.registry,
            log: log.child({ part: 'agent' }),
          })
        } catch (err) {
          await dn.stop()
          throw err
        }
        // Tasks first (they may be reading from this datanode), then the datanode.
        stopOnSignal(async () => {
          await agent.stop()
          await dn.stop()
        })
        if (f.readyFile) {
          await writeReadyFile(f.readyFile, {
            rpc: formatAddress(dn.rpc),
            http: formatAddress(dn.http),
            pid: process.pid,
            id: dn.id,
            agentId: agent.agentId,
            agentRpc: formatAddress(agent.rpc),
            workDir: agent.workDir,
          })
        }
      }),
    )
}
