// `loam namenode` and `loam datanode`: start a daemon, write its ready file, stop cleanly on SIGTERM/SIGINT.
import { rename, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { parseAddress } from '../common/address.js'
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../common/log.js'
import { parseDuration, parseSize } from '../common/units.js'
import { Datanode } from '../datanode/server.js'
import { Namenode } from '../namenode/server.js'
import { LEASE_LIMIT_MIN_MS } from '../limits.js'
import { LoamError } from '../rpc/errors.js'
import { action } from './run.js'

export async function writeReadyFile(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 })
  await rename(tmp, file)
}

export function logLevel(text: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(text)) throw new LoamError('invalid-argument', `--log-level '${text}' is not one of ${LOG_LEVELS.join(', ')}`)
  return text as LogLevel
}

export function port(text: string, what: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < 0 || n > 65535) throw new LoamError('invalid-argument', `${what} '${text}' is not a port number (0 picks a free one)`)
  return n
}

export function checkTimings(heartbeatMs: number, deadAfterMs: number): void {
  if (heartbeatMs <= 0) throw new LoamError('invalid-argument', '--heartbeat must be longer than 0')
  if (deadAfterMs <= heartbeatMs) throw new LoamError('invalid-argument', `--dead-after (${deadAfterMs} ms) must be longer than --heartbeat (${heartbeatMs} ms), or every node would be declared dead between heartbeats`)
}

/**
 * What every daemon does first: files it creates (data, metadata, logs) are its
 * own alone, 0600/0700 whatever the umask it was started with; and a stray
 * rejection (a peer vanishing mid-call, say) is logged, never taking it down.
 */
export function daemonProcess(log: Logger): void {
  process.umask(0o077)
  process.on('unhandledRejection', (err) => log.error({ err: err instanceof Error ? err.stack : String(err) }, 'unhandled rejection'))
}

function leaseLimit(text: string): number {
  const ms = parseDuration(text, '--lease-limit')
  if (ms < LEASE_LIMIT_MIN_MS) throw new LoamError('invalid-argument', `--lease-limit ${text} is too short: writers renew their leases a few times within it; use at least ${LEASE_LIMIT_MIN_MS} ms`)
  return ms
}

/** Stops the daemon on SIGTERM or SIGINT, once. */
export function stopOnSignal(stop: () => Promise<void>): void {
  let stopping = false
  const handler = (): void => {
    if (stopping) return
    stopping = true
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.on('SIGTERM', handler)
  process.on('SIGINT', handler)
}

interface NamenodeFlags {
  data: string
  host: string
  port: string
  httpPort: string
  readyFile?: string
  heartbeat: string
  deadAfter: string
  replication: string
  blockSize: string
  leaseLimit: string
  blockTokenLifetime: string
  superuser?: string
  supergroup: string
  logLevel: string
}

interface DatanodeFlags {
  namenode?: string
  data: string
  host: string
  advertise?: string
  port: string
  httpPort: string
  rack: string
  id?: string
  capacity?: string
  readyFile?: string
  blockReportInterval: string
  scanPeriod: string
  logLevel: string
}

export function registerDaemonCommands(program: Command): void {
  program
    .command('namenode')
    .description('run the namenode: the namespace and the block map')
    .requiredOption('--data <dir>', 'metadata directory')
    .option('--host <addr>', 'address to listen on and advertise', '127.0.0.1')
    .option('--port <port>', 'RPC port (0 picks a free one)', '8020')
    .option('--http-port <port>', 'HTTP port for /status and /metrics', '9870')
    .option('--ready-file <file>', 'write {"rpc", "http", "pid"} here once serving')
    .option('--heartbeat <duration>', 'datanode heartbeat interval', '3s')
    .option('--dead-after <duration>', 'a datanode silent this long is dead', '30s')
    .option('--replication <n>', 'default replication', '3')
    .option('--block-size <size>', 'default block size', '64MiB')
    .option('--lease-limit <duration>', 'a writer silent this long loses its open files to lease recovery', '60s')
    .option('--block-token-lifetime <duration>', 'how long a block access token it issues is good for', '10m')
    .option('--superuser <user>', "a user that passes every permission check, besides the namenode's own")
    .option('--supergroup <group>', 'members of this group pass every permission check', 'supergroup')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .action(
      action(async (f: NamenodeFlags) => {
        const heartbeatMs = parseDuration(f.heartbeat, '--heartbeat')
        const deadAfterMs = parseDuration(f.deadAfter, '--dead-after')
        checkTimings(heartbeatMs, deadAfterMs)
        const log = createLogger('namenode', logLevel(f.logLevel))
        daemonProcess(log)
        const nn = await Namenode.start({
          dataDir: f.data,
          host: f.host,
          port: port(f.port, '--port'),
          httpPort: port(f.httpPort, '--http-port'),
          heartbeatMs,
          deadAfterMs,
          replication: Number(f.replication),
          blockSizeBytes: parseSize(f.blockSize, '--block-size'),
          leaseLimitMs: leaseLimit(f.leaseLimit),
          blockTokenLifetimeMs: parseDuration(f.blockTokenLifetime, '--block-token-lifetime'),
          superuser: f.superuser,
          supergroup: f.supergroup,
          log,
        })
        stopOnSignal(nn.stop)
        if (f.readyFile) await writeReadyFile(f.readyFile, { rpc: `${nn.rpc.host}:${nn.rpc.port}`, http: `${nn.http.host}:${nn.http.port}`, pid: process.pid })
      }),
    )

  program
    .command('datanode')
    .description('run a datanode: block replicas on local disks')
    .option('--namenode <host:port>', 'namenode address (default: $LOAM_NAMENODE or 127.0.0.1:8020)')
    .requiredOption('--data <dirs>', 'data directories, comma-separated')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--advertise <addr>', 'address clients and peers reach this node at (default: --host)')
    .option('--port <port>', 'RPC and block transfer port (0 picks a free one)', '9866')
    .option('--http-port <port>', 'HTTP port for /status and /metrics', '9864')
    .option('--rack <rack>', 'rack, such as /r1', '/default-rack')
    .option('--id <name>', 'datanode id (default: kept in the data directory)')
    .option('--capacity <size>', 'use at most this much space')
    .option('--ready-file <file>', 'write {"rpc", "http", "pid", "id"} here once serving')
    .option('--block-report-interval <duration>', 'full block report interval', '10m')
    .option('--scan-period <duration>', 'verify every replica in the background once per this period', '7d')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .action(
      action(async (f: DatanodeFlags) => {
        if (!f.rack.startsWith('/')) throw new LoamError('invalid-argument', `--rack '${f.rack}' must start with '/', such as /r1`)
        const log = createLogger('datanode', logLevel(f.logLevel))
        daemonProcess(log)
        const dn = await Datanode.start({
          namenode: parseAddress(f.namenode ?? process.env.LOAM_NAMENODE ?? '127.0.0.1:8020', '--namenode'),
          dataDirs: f.data.split(',').filter(Boolean),
          host: f.host,
          advertise: f.advertise,
          port: port(f.port, '--port'),
          httpPort: port(f.httpPort, '--http-port'),
          rack: f.rack,
          id: f.id,
          capacityBytes: f.capacity ? parseSize(f.capacity, '--capacity') : undefined,
          blockReportIntervalMs: parseDuration(f.blockReportInterval, '--block-report-interval'),
          scanPeriodMs: parseDuration(f.scanPeriod, '--scan-period'),
          log,
        })
        stopOnSignal(dn.stop)
        if (f.readyFile) await writeReadyFile(f.readyFile, { rpc: `${dn.rpc.host}:${dn.rpc.port}`, http: `${dn.http.host}:${dn.http.port}`, pid: process.pid, id: dn.id })
      }),
    )
}
