// What the benchmarks that run ordinary tools (python3, fio, ls) in child
// processes against a mount beside a local directory share (fuse, volume): the
// check that the tools are installed, the work directory, sync and the page
// cache, child processes, fio, and the CPU and I/O figures of each run.
import { execFile, execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import type { TestCluster } from '../test/helpers/cluster.js'
import { CpuMeter, formatCpu, type Cleanup, type CpuGroups } from './lib.js'

/** The file fio reads and writes at random, laid out in full first: big enough that 4 KiB offsets rarely repeat in a run. */
export const FIO_FILE_BYTES = 256 * 1024 * 1024
export const FIO_BLOCK_BYTES = 4096
const CHILD_OUTPUT_BYTES_MAX = 64 * 1024 * 1024

const run = promisify(execFile)

export type Where = 'mount' | 'local'

/** Throws, saying what to install, unless every [command, package] is on the PATH. */
export function requireTools(benchmark: string, tools: ReadonlyArray<readonly [command: string, pkg: string]>): void {
  const missing: string[] = []
  for (const [tool, pkg] of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    } catch {
      missing.push(pkg)
    }
  }
  if (missing.length > 0) throw new Error(`the ${benchmark} benchmark needs ${missing.join(', ')}: install with 'apt-get install -y ${missing.join(' ')}'`)
}

/**
 * A temporary directory, removed at cleanup, holding the benchmark's Python
 * program (`tool`) and the local side's directory (`localDir`).
 */
export async function workDir(cleanup: Cleanup, benchmark: string, toolSource: string): Promise<{ tool: string; localDir: string }> {
  const work = await mkdtemp(path.join(os.tmpdir(), `loam-bench-${benchmark}-`))
  cleanup.teardown(() => rm(work, { recursive: true, force: true }))
  const tool = path.join(work, 'tool.py')
  await writeFile(tool, toolSource)
  // Same filesystem as the cluster's replicas (os.tmpdir()), so both sides share one disk.
  const localDir = path.join(work, 'local')
  await mkdir(localDir)
  return { tool, localDir }
}

export async function sync(): Promise<void> {
  await run('sync')
}

/** Empties the page cache (and the kernel's dentry and inode caches) so the next read comes from disk; false where that is not allowed (not root). */
export async function dropCaches(): Promise<boolean> {
  try {
    await sync()
    await writeFile('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch {
    return false
  }
}

/** After dropping the page cache: time for the freed memory to go back to the host (free page reporting). */
const SETTLE_MS = 3000

/**
 * Drops the page cache and waits for the freed memory to go back to the host;
 * false where not allowed (not root). Every write a benchmark compares starts
 * from here: on a VM like this one a buffered write into memory freed seconds
 * before costs a twelfth of the CPU of one into memory the host has reclaimed
 * (0.16 against 1.9 CPU-seconds per GiB), so a baseline that rewrites the file
 * it just deleted would measure recycled pages, not the disk.
 */
export async function settleMemory(): Promise<boolean> {
  if (!(await dropCaches())) return false
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  return true
}

/**
 * Runs a child to its end and returns what it printed; a failure says `what`
 * failed and why. With timeoutMs, a child still running after that long is
 * killed (SIGKILL) and the run fails.
 */
export async function childRun(file: string, args: string[], what: string, timeoutMs?: number): Promise<{ stdout: string }> {
  try {
    const { stdout } = await run(file, args, timeoutMs === undefined ? { maxBuffer: CHILD_OUTPUT_BYTES_MAX } : { maxBuffer: CHILD_OUTPUT_BYTES_MAX, timeout: timeoutMs, killSignal: 'SIGKILL' })
    return { stdout }
  } catch (err) {
    const e = err as { stderr?: string; signal?: string | null; message: string }
    const why = timeoutMs !== undefined && e.signal === 'SIGKILL' ? `killed after ${timeoutMs / 1000} s` : (e.stderr ?? '').trim() || e.message
    throw new Error(`${what} failed: ${why}`, { cause: err })
  }
}

/** Runs a command of the benchmark's Python program (`python3 TOOL ARGS...`), which prints one JSON object. */
export async function py<T>(tool: string, args: string[], timeoutMs?: number): Promise<T> {
  const { stdout } = await childRun('python3', [tool, ...args], `python3 ${args.slice(0, 2).join(' ')}`, timeoutMs)
  return JSON.parse(stdout) as T
}

// ---------------------------------------------------------------------------
// fio

export interface FioLat {
  mean: number
  max: number
  percentile?: Record<string, number>
}

export interface FioSide {
  runtime: number
  io_bytes: number
  iops: number
  clat_ns?: FioLat
  lat_ns?: FioLat
}

export interface FioJob {
  error: number
  read: FioSide
  write: FioSide
  sync?: { lat_ns?: FioLat }
}

/**
 * One fio job on a file laid out already: FIO_BLOCK_BYTES at random offsets, one
 * at a time (psync, iodepth 1), for a bounded time; randwrite fsyncs after every
 * write. Returns fio's report of the job.
 */
export async function fio(file: string, rw: 'randread' | 'randwrite', seconds: number, timeoutMs?: number): Promise<FioJob> {
  const args = [
    `--name=${rw}`, `--filename=${file}`, `--rw=${rw}`, `--bs=${FIO_BLOCK_BYTES}`, `--size=${FIO_FILE_BYTES}`,
    '--ioengine=psync', '--iodepth=1', '--numjobs=1', '--time_based', `--runtime=${seconds}`,
    // The file is laid out already; never preallocate (fallocate on a mount would write zeros through it).
    '--fallocate=none', '--output-format=json',
  ]
  if (rw === 'randwrite') args.push('--fsync=1')
  const { stdout } = await childRun('fio', args, `fio ${rw} on ${file}`, timeoutMs)
  // fio may print notes before its JSON.
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: FioJob[] }
  const job = report.jobs[0]
  if (!job) throw new Error(`fio ${rw} on ${file}: no job in its report`)
  if (job.error !== 0) throw new Error(`fio ${rw} on ${file}: error ${job.error}`)
  return job
}

// ---------------------------------------------------------------------------
// Figures of each run: the mount's side carries the CPU of the cluster's
// processes and the mount process's I/O.

export interface ProcessIo {
  rchar: number
  wchar: number
  readBytes: number
}

export interface Measured<T> {
  value: T
  cpu: Record<string, number>
  io: ProcessIo
}

/** A process's I/O counters so far, NaN where /proc cannot tell. */
export function processIo(pid: number): ProcessIo {
  try {
    const fields = new Map(readFileSync(`/proc/${pid}/io`, 'utf8').split('\n').map((l) => l.split(': ') as [string, string]))
    return { rchar: Number(fields.get('rchar')), wchar: Number(fields.get('wchar')), readBytes: Number(fields.get('read_bytes')) }
  } catch {
    return { rchar: NaN, wchar: NaN, readBytes: NaN }
  }
}

/** The CPU groups of a mount's run: the mount process, the namenode, the datanodes. */
export function mountGroups(cluster: TestCluster, mountPid: number): CpuGroups {
  return { mount: [mountPid], namenode: [cluster.record.namenode.pid], datanodes: cluster.record.nodes.map((n) => n.pid) }
}

/** A function that runs a measurement with the CPU meter on groups and the I/O counters of mountPid read before and after. */
export function measurer(groups: CpuGroups, mountPid: number): <T>(fn: () => Promise<T>) => Promise<Measured<T>> {
  return async <T>(fn: () => Promise<T>): Promise<Measured<T>> => {
    const meter = new CpuMeter(groups)
    const io0 = processIo(mountPid)
    const value = await fn()
    const cpu = meter.stop()
    const io1 = processIo(mountPid)
    return { value, cpu, io: { rchar: io1.rchar - io0.rchar, wchar: io1.wchar - io0.wchar, readBytes: io1.readBytes - io0.readBytes } }
  }
}

/** One workload's figures on either side. */
export interface SideFigures<D> {
  mount?: number
  local?: number
  /** What each side's run reported: counts, seconds, latencies. */
  detail: Partial<Record<Where, D>>
  /** Cores busy on average during the mount's run: the mount process, the namenode, the datanodes, everything else (the tool itself). */
  cpu?: Record<string, number>
  /** What the mount process read and wrote during its run (/proc/PID/io: rchar and wchar count files and sockets, readBytes the disk). */
  mountIo?: ProcessIo
}

/** Records one side's figure and what its run reported; the mount's side also its CPU and I/O. */
export function recordSide<D>(w: SideFigures<D>, where: Where, value: number, detail: D, m: Measured<unknown>): void {
  w[where] = value
  w.detail[where] = detail
  if (where === 'mount') {
    w.cpu = m.cpu
    w.mountIo = m.io
  }
}

/** The CPU columns of a results table, and their cells for one workload. */
export const CPU_HEADERS = ['cpu mount', 'cpu nn', 'cpu dns']

export function cpuCells(cpu: Record<string, number> | undefined): string[] {
  return [formatCpu(cpu?.mount), formatCpu(cpu?.namenode), formatCpu(cpu?.datanodes)]
}
