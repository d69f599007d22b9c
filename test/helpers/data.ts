// Test data and small helpers for the integration tests: deterministic bytes
// (cheap to make at any size, never held twice), hashes, local temp dirs, the
// JSON shapes of `loam fsck --json` and `loam report --json`, and where a
// replica lives on a datanode's disk.
import { spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { CLI, type TestCluster, type Teardown } from './cluster.js'

const PIECE_BYTES = 4 * 1024 * 1024

/** A keystream that depends only on seed: AES-128-CTR over zeros is deterministic and runs at disk speed. */
function patternStream(seed: number): (n: number) => Buffer {
  const key = createHash('sha256').update(`loam-test-${seed}`).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return (n) => cipher.update(Buffer.alloc(n))
}

/** size deterministic pseudo-random bytes. */
export function pattern(size: number, seed: number): Buffer {
  return patternStream(seed)(size)
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Writes size deterministic bytes to file in pieces; returns their sha256. */
export async function writePatternFile(file: string, size: number, seed: number): Promise<string> {
  const next = patternStream(seed)
  const hash = createHash('sha256')
  const fh = await open(file, 'w')
  try {
    for (let done = 0; done < size; ) {
      const piece = next(Math.min(PIECE_BYTES, size - done))
      hash.update(piece)
      await fh.write(piece, 0, piece.length)
      done += piece.length
    }
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of createReadStream(file, { highWaterMark: PIECE_BYTES })) hash.update(piece as Buffer)
  return hash.digest('hex')
}

export interface HashedRun {
  code: number
  stderr: string
  bytes: number
  sha256: string
}

/** Runs `loam ARGS` against the cluster and hashes its standard output as it streams (for outputs too big to keep). */
export function loamHashed(c: TestCluster, args: string[], env: NodeJS.ProcessEnv = {}): Promise<HashedRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...c.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    const hash = createHash('sha256')
    let bytes = 0
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => {
      hash.update(b)
      bytes += b.length
    })
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stderr, bytes, sha256: hash.digest('hex') }))
  })
}

/** A Teardown that collects cleanups, for a cluster shared by a whole test file (run them in test.after.always). */
export class Cleanups implements Teardown {
  private readonly fns: Array<() => Promise<void> | void> = []
  teardown(fn: () => Promise<void> | void): void {
    this.fns.push(fn)
  }
  async run(): Promise<void> {
    const errors: unknown[] = []
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        await fn()
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) throw errors[0]
  }
}

/** A local temporary directory, removed by the teardown. */
export async function localTempDir(t: Teardown, prefix = 'loam-local-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export type BlockState = 'HEALTHY' | 'UNDER_REPLICATED' | 'CORRUPT' | 'MISSING'

/** `loam fsck PATH --json`, as documented in issue 2. */
export interface FsckJson {
  healthy: boolean
  files: number
  blocks: Array<{ id: number; path: string; length: number; expected: number; replicas: Array<{ node: string; rack: string }>; state: BlockState; corrupt?: Array<{ node: string; rack: string }> }>
}

/** `loam report --json`, as documented in issue 2. */
export interface ReportJson {
  safemode: boolean
  datanodes: Array<{ id: string; address: string; rack: string; state: string; capacity: number; used: number; blocks: number }>
}

export async function fsckJson(c: TestCluster, p: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; json: FsckJson; stderr: string }> {
  const r = await c.loam(['fsck', p, '--json'], { env })
  let json: FsckJson
  try {
    json = JSON.parse(r.stdout.toString()) as FsckJson
  } catch {
    throw new Error(`fsck ${p} --json printed no JSON (exit ${r.code}): ${r.stdout.toString()} ${r.stderr}`)
  }
  return { code: r.code, json, stderr: r.stderr }
}

export async function reportJson(c: TestCluster): Promise<ReportJson> {
  const r = await c.loam(['report', '--json'])
  if (r.code !== 0) throw new Error(`loam report --json exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as ReportJson
}

/** Where a finalized replica's data file lives under a cluster node's directory (record.nodes[i].data). */
export function replicaDataPath(nodeDir: string, blockId: number): string {
  const sub = `subdir${(blockId % 64).toString(16).padStart(2, '0')}`
  return path.join(nodeDir, 'data', 'current', 'finalized', sub, `blk_${blockId}`)
}

/** Inverts every bit of the byte at offset in file, in place; returns the old and new byte. */
export async function flipByte(file: string, offset: number): Promise<{ before: number; after: number }> {
  const fh = await open(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    const { bytesRead } = await fh.read(b, 0, 1, offset)
    if (bytesRead !== 1) throw new Error(`${file} has no byte at ${offset}`)
    const before = b[0]!
    b[0] = before ^ 0xff
    await fh.write(b, 0, 1, offset)
    await fh.sync()
    return { before, after: b[0]! }
  } finally {
    await fh.close()
  }
}

export const KiB = 1024
export const MiB = 1024 * 1024
