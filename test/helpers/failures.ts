// Helpers for the failure tests (test/failures*.test.ts): replicas as they sit
// on the datanodes' disks, whole-file reads through the client library, daemons
// started by hand, and the roles' logs shown when a test fails.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import type { LoamClient } from '../../src/client/client.js'
import { alive, CLI, sleep, waitFor, type CliResult, type TestCluster, type Teardown } from './cluster.js'

export interface ReplicaFile {
  id: number
  state: 'finalized' | 'rbw'
  file: string
  bytes: number
}

/** Every replica data file (not .meta) under one datanode data directory (the `--data` of a datanode). */
export async function replicaFiles(dataDir: string): Promise<ReplicaFile[]> {
  const out: ReplicaFile[] = []
  const add = async (dir: string, state: ReplicaFile['state']): Promise<void> => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const m = /^blk_(\d+)$/.exec(name)
      if (!m) continue
      const file = path.join(dir, name)
      const st = await stat(file).catch(() => undefined)
      if (st) out.push({ id: Number(m[1]), state, file, bytes: st.size })
    }
  }
  const finalized = path.join(dataDir, 'current', 'finalized')
  for (const sub of await readdir(finalized).catch(() => [] as string[])) await add(path.join(finalized, sub), 'finalized')
  await add(path.join(dataDir, 'current', 'rbw'), 'rbw')
  return out
}

/** The `--data` directory of a node of a TestCluster. */
export function nodeDataDir(c: TestCluster, nodeId: string): string {
  const n = c.record.nodes.find((x) => x.id === nodeId)
  if (!n) throw new Error(`no node ${nodeId} in the cluster record`)
  return path.join(n.data, 'data')
}

/** A whole file, read through the client library. */
export async function readAll(client: LoamClient, p: string): Promise<Buffer> {
  const pieces: Buffer[] = []
  for await (const piece of (await client.open(p)).read()) pieces.push(piece)
  return Buffer.concat(pieces)
}

/** The last lines of each role's log under a TestCluster's directory, shown (t.log) if the test did not pass. */
export function showLogsOnFailure(t: ExecutionContext, logs: () => string[], lines = 40): void {
  t.teardown(async () => {
    if (t.passed) return
    for (const log of logs()) {
      const text = await readFile(log, 'utf8').catch(() => '(no log)')
      t.log(`--- ${log}\n${text.trim().split('\n').slice(-lines).join('\n')}`)
    }
  })
}

export function clusterLogs(c: TestCluster): string[] {
  return [path.join(c.record.namenode.data, 'log'), ...c.record.nodes.map((n) => path.join(n.data, 'log')), path.join(c.dir, 'cluster-up.log')]
}

export interface Role {
  proc: ChildProcess
  log: string
  ready: { rpc: string; http: string; pid: number; id?: string }
}

/** Starts `loam ARGS --ready-file ...` with its output in LOG, and waits for its ready file; stopped by the teardown. */
export async function startRole(t: Teardown, dir: string, name: string, args: string[]): Promise<Role> {
  const log = path.join(dir, `${name}.log`)
  const readyFile = path.join(dir, `${name}.ready.json`)
  const fd = openSync(log, 'a')
  const proc = spawn(process.execPath, [CLI, ...args, '--ready-file', readyFile], { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  t.teardown(() => stopProcess(proc))
  await waitFor(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${name} stopped while starting: ${await readFile(log, 'utf8').catch(() => '')}`)
    return existsSync(readyFile)
  }, 30_000, `${name} to start`)
  return { proc, log, ready: JSON.parse(await readFile(readyFile, 'utf8')) as Role['ready'] }
}

/** SIGTERM, then SIGKILL if it is still there after 10 s. */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return
  const exited = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGTERM')
  await Promise.race([exited, sleep(10_000)])
  if (alive(proc.pid) && proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGKILL')
    await Promise.race([exited, sleep(5_000)])
  }
}

/** Fails unless the text is exactly one line starting with `loam: `, with no stack trace. */
export function isOneLineError(stderr: string): boolean {
  return /^loam: [^\n]+\n?$/.test(stderr) && !stderr.includes('    at ')
}

/** Probes until ok(value) holds, within timeoutMs; returns that value, or throws with the last value seen. */
export async function eventually<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  let last: T | undefined
  let lastError: unknown
  try {
    await waitFor(async () => {
      try {
        last = await probe()
        lastError = undefined
      } catch (err) {
        lastError = err
        return false
      }
      return ok(last)
    }, timeoutMs, what)
  } catch (err) {
    const seen = lastError !== undefined ? `last error: ${(lastError as Error).message}` : `last seen: ${JSON.stringify(last)?.slice(0, 3000)}`
    throw new Error(`${(err as Error).message}; ${seen}`, { cause: err })
  }
  return last as T
}

/**
 * `loam ARGS` with input on standard input. Unlike TestCluster.loam, a command that exits before reading
 * all its input (a put refused at once, a namenode that is down) is no error here: EPIPE on its stdin is ignored.
 */
export function runLoam(args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.stdin.on('error', () => undefined)
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }))
    child.stdin.end(opts.input ?? Buffer.alloc(0))
  })
}
