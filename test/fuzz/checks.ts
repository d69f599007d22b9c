// What the fuzzer checks between rounds and at the end: every daemon alive and
// serving real clients, no file outside the cluster's directories touched,
// nothing in the daemons' logs that only a bug writes, and a namespace whose
// every name is one the contract allows.
import { createHash } from 'node:crypto'
import { lstat, open, readdir, readFile, readlink } from 'node:fs/promises'
import path from 'node:path'
import type { LoamClient } from '../../src/client/client.js'
import { InodeType } from '../../src/rpc/messages.js'
import { toLoamError } from '../../src/rpc/errors.js'
import { alive } from '../helpers/cluster.js'
import { pattern, sha256 } from '../helpers/data.js'
import { nameProblem, SANDBOX, type RealBlock } from './generators.js'

// ---------------------------------------------------------------- the tree around the cluster

/** What a sentinel directory holds: file names a confused daemon might write to, with content to compare. */
export const SENTINEL_FILES = ['blk_1', 'blk_1.meta', 'VERSION', 'node-id', 'cluster-id', 'ready.json', 'log', 'meta/CURRENT', 'etc/passwd', 'fuzz/a', 'health/x', 'current/finalized/subdir01/blk_1']

/** path -> type, mode, size, mtime and content hash of everything under root, except the excluded subtrees. */
export async function snapshotTree(root: string, exclude: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const walk = async (dir: string): Promise<void> => {
    let names: string[]
    try {
      names = await readdir(dir)
    } catch {
      return
    }
    for (const name of names.sort()) {
      const p = path.join(dir, name)
      if (exclude.some((e) => p === e || p.startsWith(e + path.sep))) continue
      let st
      try {
        st = await lstat(p)
      } catch {
        continue
      }
      const head = `${st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other'} mode ${(st.mode & 0o7777).toString(8)} mtime ${st.mtimeMs}`
      if (st.isDirectory()) {
        out.set(p, head)
        await walk(p)
      } else if (st.isSymbolicLink()) {
        out.set(p, `${head} -> ${await readlink(p).catch(() => '?')}`)
      } else if (st.isFile()) {
        out.set(p, `${head} ${st.size} bytes sha256 ${createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 16)}`)
      } else {
        out.set(p, head)
      }
    }
  }
  await walk(root)
  return out
}

/** Every difference between two snapshots, one line each. */
export function diffTrees(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = []
  for (const [p, v] of after) {
    const was = before.get(p)
    if (was === undefined) out.push(`created ${p} (${v})`)
    else if (was !== v) out.push(`changed ${p}: ${was} -> ${v}`)
  }
  for (const p of before.keys()) if (!after.has(p)) out.push(`removed ${p}`)
  return out
}

// ---------------------------------------------------------------- logs

export interface LogFinding {
  role: string
  what: string
  line: string
}

/** Reads each log from where it was read last; returns the lines only a bug writes (errors, unhandled rejections, stack traces). */
export class LogScanner {
  private readonly offsets = new Map<string, number>()

  constructor(private readonly logs: ReadonlyMap<string, string>) {}

  async scan(): Promise<LogFinding[]> {
    const out: LogFinding[] = []
    for (const [role, file] of this.logs) {
      const from = this.offsets.get(role) ?? 0
      let text: string
      try {
        const fh = await open(file, 'r')
        try {
          const size = (await fh.stat()).size
          const buf = Buffer.alloc(Math.max(0, size - from))
          await fh.read(buf, 0, buf.length, from)
          // Only whole lines: the rest is read next time.
          const end = buf.lastIndexOf(0x0a) + 1
          text = buf.subarray(0, end).toString('utf8')
          this.offsets.set(role, from + end)
        } finally {
          await fh.close()
        }
      } catch {
        continue
      }
      for (const line of text.split('\n')) {
        if (!line.trim()) continue
        let rec: { level?: number; msg?: string; err?: string; method?: string } | undefined
        try {
          rec = JSON.parse(line) as typeof rec
        } catch {
          rec = undefined
        }
        if (rec && typeof rec.level === 'number') {
          if (rec.level >= 50) out.push({ role, what: `${rec.level >= 60 ? 'fatal' : 'error'}: ${rec.msg ?? ''}${rec.method ? ` (${rec.method})` : ''}`, line: line.slice(0, 1500) })
        } else if (/Error|Exception|^\s+at \S+/.test(line)) {
          out.push({ role, what: 'stderr: an uncaught error', line: line.slice(0, 1500) })
        }
      }
    }
    return out
  }
}

// ---------------------------------------------------------------- processes

/** Resident memory of a process, from /proc (0 when it cannot be read). */
export async function rssBytes(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const m = /VmRSS:\s+(\d+) kB/.exec(text)
  return m ? Number(m[1]) * 1024 : 0
}

export function isAlive(pid: number): boolean {
  return alive(pid)
}

/** The last lines of a log, for a daemon that died. */
export async function logTail(file: string, lines = 25): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-lines).join('\n')
}

// ---------------------------------------------------------------- a real client's round trip

export interface HealthFile {
  path: string
  size: number
  sha256: string
}

/** Runs fn, failing with 'what took over ms' if it does not finish in time. */
export async function within<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function readAll(client: LoamClient, p: string): Promise<{ bytes: number; sha256: string }> {
  const r = await client.open(p)
  const hash = createHash('sha256')
  let bytes = 0
  for await (const piece of r.read()) {
    hash.update(piece)
    bytes += piece.length
  }
  return { bytes, sha256: hash.digest('hex') }
}

/**
 * mkdir, put, stat, get of a new file, and every earlier health file read back
 * unchanged; returns the new file and the blocks of all of them (the fuzzer's
 * "real blocks").
 */
export async function roundTrip(client: LoamClient, round: number, size: number, earlier: readonly HealthFile[]): Promise<{ file: HealthFile; blocks: RealBlock[]; problems: string[] }> {
  const problems: string[] = []
  const dir = `/health/r${round}`
  await client.mkdirs(dir, { parents: true })
  const data = pattern(size, 9000 + round)
  const file: HealthFile = { path: `${dir}/f`, size, sha256: sha256(data) }
  const w = await client.create(file.path, { replication: 3 })
  await w.write(data)
  await w.close()
  const st = await client.stat(file.path)
  if (st.lengthBytes !== size || st.type !== InodeType.FILE) problems.push(`${file.path}: stat says ${st.lengthBytes} bytes of type ${st.type}, ${size} were written`)
  for (const f of [...earlier, file]) {
    const got = await readAll(client, f.path)
    if (got.sha256 !== f.sha256) problems.push(`${f.path}: read back ${got.bytes} bytes that differ from the ${f.size} written`)
  }
  const blocks: RealBlock[] = []
  for (const f of [...earlier, file]) {
    const res = await client.getBlockLocations(f.path, 0, 0)
    for (const lb of res.blocks) if (lb.block && lb.complete) blocks.push({ block: lb.block, nodes: lb.locations.map((l) => l.id) })
  }
  return { file, blocks, problems }
}

// ---------------------------------------------------------------- the namespace

/** Names the root may hold: the sandbox, the health files, and what the volume layer makes. */
const ROOT_NAMES = new Set([SANDBOX.slice(1), 'health', 'volumes', '.snapshots'])
const WALK_ENTRIES_MAX = 20_000

/**
 * Invariants of the namespace after hostile calls: the root holds nothing the
 * fuzzer could not have made inside its sandbox; no name anywhere breaks the
 * path rules; every volume's directory and every snapshot's exist.
 */
export async function namespaceProblems(client: LoamClient, deep: boolean): Promise<string[]> {
  const problems: string[] = []
  try {
    for await (const e of client.list('/')) if (!ROOT_NAMES.has(e.name)) problems.push(`the root holds '${e.name.slice(0, 80)}', outside the fuzzer's sandbox`)
    let seen = 0
    const dirs = deep ? ['/fuzz', '/volumes', '/.snapshots'] : []
    while (dirs.length > 0 && seen < WALK_ENTRIES_MAX) {
      const dir = dirs.pop()!
      try {
        for await (const e of client.list(dir)) {
          if (++seen > WALK_ENTRIES_MAX) break
          const why = nameProblem(e.name)
          if (why) problems.push(`${dir} holds an entry named ${JSON.stringify(e.name.slice(0, 80))}: ${why}`)
          else if (e.type === InodeType.DIRECTORY) dirs.push(`${dir === '/' ? '' : dir}/${e.name}`)
        }
      } catch (err) {
        const e = toLoamError(err)
        if (e.code !== 'not-found' && e.code !== 'not-a-directory') problems.push(`listing ${dir.slice(0, 200)}: ${e.code}: ${e.message.slice(0, 200)}`)
      }
    }
    const vols = await client.nn.call('ListVolumes', {})
    for (const info of vols.volumes) {
      const vol = info.volume
      if (!vol) continue
      const where = [{ what: `volume ${vol.name}`, p: info.path }, ...vol.snapshots.map((s) => ({ what: `snapshot ${s.name} of volume ${vol.name}`, p: `/.snapshots/${vol.name}/${s.name}` }))]
      for (const { what, p } of where) {
        try {
          const st = await client.stat(p)
          if (st.type !== InodeType.DIRECTORY) problems.push(`${what}: ${p} is not a directory`)
        } catch (err) {
          problems.push(`${what}: ${p} is gone (${toLoamError(err).code}) while its record remains`)
        }
      }
      try {
        await client.nn.call('GetVolume', { name: vol.name })
      } catch (err) {
        const e = toLoamError(err)
        problems.push(`GetVolume ${vol.name}: ${e.code}: ${e.message.slice(0, 200)}`)
      }
    }
  } catch (err) {
    const e = toLoamError(err)
    problems.push(`walking the namespace: ${e.code}: ${e.message.slice(0, 300)}`)
  }
  return problems
}
