// The datanode's replicas on its local disks.
//
// A replica is a data file plus a meta file holding one checksum per chunk.
// Under each data dir D:
//   D/VERSION                                   {"layout":1,"storageId":"<uuid>"}
//   D/current/finalized/subdir<NN>/blk_<id>     NN = id % 64, two hex digits
//   D/current/finalized/subdir<NN>/blk_<id>.meta
//   D/current/rbw/blk_<id>[.meta]               replicas being written
//   D/current/rbw/blk_<id>.rewrites             chunks mid-rewrite (rewrite-marks.ts)
//   D/current/quarantine/                       replicas set aside at startup
//   D/current/tmp/blk_<id>[.meta]               copies being made (cloneForUpdate); emptied at startup
// Meta file: 32-byte header (magic "LOAMMETA", u32 version, u32 chunk bytes,
// u64 gen stamp, u64 reserved), then 8 bytes per chunk of the data file.
//
// All I/O in the data paths goes through FileHandles with positional reads and
// writes; the in-memory map is the truth between startup scans.

import { randomUUID } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import fs, { type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { chunkChecksums, chunkCount, firstBadChunk, initChecksums } from '../common/checksum.js'
import { BLOCK_SIZE_MAX_BYTES, CHECKSUM_BYTES, CHUNK_BYTES, DISK_WRITE_BYTES_MAX, PACKET_BYTES_MAX, REPLICA_META_HEADER_BYTES } from '../limits.js'
import { LoamError, assert } from '../rpc/errors.js'
import { DIRECT_ALIGN_BYTES, DirectIo } from './direct-io.js'
import { exists, fileSize, fsyncDir, readFully, writeFully, writevFully } from './file-io.js'
import { REWRITE_MARKS_SUFFIX, RewriteMarks, rewriteMarksPath } from './rewrite-marks.js'
import { mkdirp } from '../common/mkdirp.js'

export interface ReplicaInfo {
  id: number
  genStamp: number
  lengthBytes: number
  state: 'finalized' | 'rbw'
  dataPath: string
  metaPath: string
  /** The data dir (one of those given to open) that holds the replica. */
  dir: string
}

export interface StorageUsage {
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
}

/** What block recovery needs to know about a replica (ReplicaStore.inspect). */
export interface ReplicaInspection {
  genStamp: number
  /** Bytes in the data file on disk, verified or not. */
  lengthBytes: number
  /** End of the longest prefix of chunks that verify against their stored checksums. */
  verifiedBytes: number
  state: 'finalized' | 'rbw'
}

export const LAYOUT_VERSION = 1
const META_MAGIC = Buffer.from('LOAMMETA', 'ascii')
const META_VERSION = 1
export const META_HEADER_BYTES = REPLICA_META_HEADER_BYTES
const SUBDIRS = 64
const DIR_MODE = 0o700
const FILE_MODE = 0o600
/** Reads move this much data (and its checksums) per syscall, then are sliced into packets. */
const READ_SPAN_BYTES = 1024 * 1024
/** Meta headers read at once while scanning at startup. */
const SCAN_PARALLEL_MAX = 32

assert(READ_SPAN_BYTES % CHUNK_BYTES === 0, 'read span is whole chunks')
assert(PACKET_BYTES_MAX >= CHUNK_BYTES, 'a packet holds at least one chunk')
/** Packets carry whole chunks: the largest whole number that fits in a packet. */
const CHUNKS_PER_PACKET = Math.floor(PACKET_BYTES_MAX / CHUNK_BYTES)
/** Checksums of a whole replica at the block size limit: the most a zero-extension writes at once. */
const META_SUMS_BYTES_MAX = Math.ceil(BLOCK_SIZE_MAX_BYTES / CHUNK_BYTES) * CHECKSUM_BYTES
/** A write that merges with bytes on disk reads at most one partial chunk either side of its payload. */
const MERGE_BYTES_MAX = DISK_WRITE_BYTES_MAX + 2 * CHUNK_BYTES

/** The checksum of a full chunk of zeros, computed once (ReplicaStore.open) for zero-extensions. */
let zeroChunkSum: Buffer | undefined

interface Replica extends ReplicaInfo {
  dirIndex: number
}

interface DataDir {
  root: string
  storageId: string
  current: string
  rbw: string
  finalized: string
  quarantine: string
  tmp: string
  /** Filesystem device: dirs on one filesystem share its free space. */
  device: number
  totalBytes: number
  freeBytes: number
  /** Bytes of replicas here now, and when freeBytes was last read. */
  usedBytes: number
  usedAtRefreshBytes: number
}

function metaBytes(lengthBytes: number): number {
  return META_HEADER_BYTES + chunkCount(lengthBytes) * CHECKSUM_BYTES
}

function replicaBytes(lengthBytes: number): number {
  return lengthBytes + metaBytes(lengthBytes)
}

/** Checksums of lengthBytes of zeros counted from a chunk boundary; full chunks share the precomputed one. */
function zeroChecksums(lengthBytes: number): Buffer {
  assert(zeroChunkSum !== undefined, 'zero chunk checksum computed at open')
  assert(lengthBytes <= BLOCK_SIZE_MAX_BYTES, 'zero-extension within the block size limit')
  const fullChunks = Math.floor(lengthBytes / CHUNK_BYTES)
  const tailBytes = lengthBytes % CHUNK_BYTES
  const sums = Buffer.allocUnsafe(chunkCount(lengthBytes) * CHECKSUM_BYTES)
  assert(sums.length <= META_SUMS_BYTES_MAX, 'zero checksums within one block')
  if (fullChunks > 0) sums.fill(zeroChunkSum, 0, fullChunks * CHECKSUM_BYTES)
  if (tailBytes > 0) chunkChecksums(Buffer.alloc(tailBytes)).copy(sums, fullChunks * CHECKSUM_BYTES)
  return sums
}

function subdirName(id: number): string {
  return `subdir${(id % SUBDIRS).toString(16).padStart(2, '0')}`
}

function encodeMetaHeader(genStamp: number): Buffer {
  const header = Buffer.alloc(META_HEADER_BYTES)
  META_MAGIC.copy(header, 0)
  header.writeUInt32BE(META_VERSION, 8)
  header.writeUInt32BE(CHUNK_BYTES, 12)
  header.writeBigUInt64BE(BigInt(genStamp), 16)
  // Bytes 24..32 are reserved and stay zero.
  return header
}

/** The gen stamp from a meta header, or a reason the header is unusable. */
function decodeMetaHeader(header: Buffer): { genStamp: number } | { problem: string } {
  if (header.length < META_HEADER_BYTES) return { problem: `header is ${header.length} bytes, want ${META_HEADER_BYTES}` }
  if (!header.subarray(0, 8).equals(META_MAGIC)) return { problem: 'bad magic' }
  const version = header.readUInt32BE(8)
  if (version !== META_VERSION) return { problem: `meta version ${version}, want ${META_VERSION}` }
  const chunkBytes = header.readUInt32BE(12)
  if (chunkBytes !== CHUNK_BYTES) return { problem: `chunk size ${chunkBytes}, want ${CHUNK_BYTES}` }
  const genStamp = header.readBigUInt64BE(16)
  if (genStamp > BigInt(Number.MAX_SAFE_INTEGER)) return { problem: `gen stamp ${genStamp} out of range` }
  return { genStamp: Number(genStamp) }
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined
}

/** A filesystem error as a LoamError that says what was being done. */
function fsError(err: unknown, doing: string): LoamError {
  if (err instanceof LoamError) return err
  const message = err instanceof Error ? err.message : String(err)
  const code = errnoOf(err)
  if (code === 'ENOSPC' || code === 'EDQUOT') return new LoamError('no-space', `${doing}: disk full (${message})`)
  if (code === 'ENOENT') return new LoamError('not-found', `${doing}: ${message}`)
  return new LoamError('io', `${doing}: ${message}`)
}

function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0) throw new LoamError('invalid-argument', `block id ${id} is not a non-negative integer`)
}

function checkGenStamp(genStamp: number): void {
  if (!Number.isSafeInteger(genStamp) || genStamp < 0) {
    throw new LoamError('invalid-argument', `gen stamp ${genStamp} is not a non-negative integer`)
  }
}

/** Runs fn over items with at most `limit` in flight. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

async function readMetaHeader(metaPath: string): Promise<ReturnType<typeof decodeMetaHeader>> {
  const fh = await fs.open(metaPath, 'r')
  try {
    const header = Buffer.alloc(META_HEADER_BYTES)
    const n = await readFully(fh, header, 0)
    return decodeMetaHeader(header.subarray(0, n))
  } finally {
    await fh.close()
  }
}

/** How far a replica's files verify, and the marked chunks (see rewrite-marks.ts) within that which count at their bytes. */
interface VerifiedPrefix {
  dataBytes: number
  verifiedBytes: number
  /** Chunks that fail their stored checksum but were mid-rewrite: to hash again from their bytes. */
  rehash: number[]
}

/**
 * The end of the longest prefix of chunks whose data matches the checksum
 * stored for it, looking no further than the chunk that holds untilBytes - 1.
 * A chunk ends the prefix when its checksum is missing (data written, checksum
 * not), its data is missing (the reverse), or the two differ, unless it is
 * marked as being rewritten (then it counts, and is listed in rehash); the
 * last chunk counts at the length the data file gives it. Nothing verifies
 * under a meta header that does not decode or names another gen stamp.
 */
async function verifiedPrefix(data: FileHandle, meta: FileHandle, genStamp: number, untilBytes: number, marked: ReadonlySet<number>): Promise<VerifiedPrefix> {
  const [dataStat, metaStat] = await Promise.all([data.stat(), meta.stat()])
  const dataBytes = dataStat.size
  const rehash: number[] = []
  const header = Buffer.alloc(META_HEADER_BYTES)
  const decoded = decodeMetaHeader(header.subarray(0, await readFully(meta, header, 0)))
  if (!('genStamp' in decoded) || decoded.genStamp !== genStamp) return { dataBytes, verifiedBytes: 0, rehash }
  const storedSums = Math.max(0, Math.floor((metaStat.size - META_HEADER_BYTES) / CHECKSUM_BYTES))
  const endBytes = Math.min(dataBytes, storedSums * CHUNK_BYTES, Math.ceil(untilBytes / CHUNK_BYTES) * CHUNK_BYTES)
  let verifiedBytes = 0
  while (verifiedBytes < endBytes) {
    const spanBytes = Math.min(READ_SPAN_BYTES, endBytes - verifiedBytes)
    const dataBuf = Buffer.allocUnsafe(spanBytes)
    const sumBuf = Buffer.allocUnsafe(chunkCount(spanBytes) * CHECKSUM_BYTES)
    const [dataRead, sumRead] = await Promise.all([
      readFully(data, dataBuf, verifiedBytes),
      readFully(meta, sumBuf, META_HEADER_BYTES + (verifiedBytes / CHUNK_BYTES) * CHECKSUM_BYTES),
    ])
    // The files shrank while we read: only whole chunks that came back can count.
    const shrank = dataRead !== spanBytes || sumRead !== sumBuf.length
    const chunks = shrank ? Math.min(Math.floor(dataRead / CHUNK_BYTES), Math.floor(sumRead / CHECKSUM_BYTES)) : chunkCount(spanBytes)
    const firstChunk = verifiedBytes / CHUNK_BYTES
    let good = 0
    while (good < chunks) {
      const bad = firstBadChunk(dataBuf.subarray(good * CHUNK_BYTES, chunks * CHUNK_BYTES), sumBuf.subarray(good * CHECKSUM_BYTES, chunks * CHECKSUM_BYTES))
      if (bad === -1) {
        good = chunks
        break
      }
      good += bad
      if (!marked.has(firstChunk + good)) return { dataBytes, verifiedBytes: verifiedBytes + good * CHUNK_BYTES, rehash }
      rehash.push(firstChunk + good)
      good++
    }
    if (shrank) return { dataBytes, verifiedBytes: verifiedBytes + good * CHUNK_BYTES, rehash }
    verifiedBytes += spanBytes
  }
  return { dataBytes, verifiedBytes, rehash }
}

async function openDataDir(root: string): Promise<DataDir> {
  const current = path.join(root, 'current')
  const dir: DataDir = {
    root,
    storageId: '',
    current,
    rbw: path.join(current, 'rbw'),
    finalized: path.join(current, 'finalized'),
    quarantine: path.join(current, 'quarantine'),
    tmp: path.join(current, 'tmp'),
    device: 0,
    totalBytes: 0,
    freeBytes: 0,
    usedBytes: 0,
    usedAtRefreshBytes: 0,
  }
  await mkdirp(root, DIR_MODE)
  dir.storageId = await readOrCreateVersion(root)
  for (const d of [current, dir.rbw, dir.finalized, dir.quarantine, dir.tmp]) await mkdirp(d, DIR_MODE)
  // Copies a crash cut short (cloneForUpdate): never named as replicas, and their sources are whole.
  await Promise.all((await fs.readdir(dir.tmp)).map((name) => fs.rm(path.join(dir.tmp, name), { recursive: true, force: true })))
  // All subdirs up front, so finalize never needs a mkdir.
  await Promise.all(
    Array.from({ length: SUBDIRS }, (_, i) => mkdirp(path.join(dir.finalized, subdirName(i)), DIR_MODE)),
  )
  dir.device = (await fs.stat(root)).dev
  return dir
}

async function readOrCreateVersion(root: string): Promise<string> {
  const versionPath = path.join(root, 'VERSION')
  let text: string | undefined
  try {
    text = await fs.readFile(versionPath, 'utf8')
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
  if (text !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new LoamError('corrupt', `${versionPath}: not JSON; fix or remove it (removing it adopts the replicas under a new storage id)`)
    }
    const record = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { layout?: unknown; storageId?: unknown }
    if (record.layout !== LAYOUT_VERSION) {
      throw new LoamError(
        'invalid-argument',
        `${root}: data dir has layout ${JSON.stringify(record.layout)}, this datanode understands layout ${LAYOUT_VERSION}; use a Loam release that matches it or a fresh dir`,
      )
    }
    if (typeof record.storageId !== 'string' || record.storageId === '') {
      throw new LoamError('corrupt', `${versionPath}: no storageId`)
    }
    return record.storageId
  }
  // Write-then-rename so a crash never leaves a half-written VERSION.
  const storageId = randomUUID()
  const tmp = `${versionPath}.tmp`
  const fh = await fs.open(tmp, 'w', FILE_MODE)
  try {
    await fh.writeFile(`${JSON.stringify({ layout: LAYOUT_VERSION, storageId })}\n`)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await fs.rename(tmp, versionPath)
  await fsyncDir(root)
  return storageId
}

export class ReplicaStore {
  private readonly replicas = new Map<number, Replica>()
  private readonly writers = new Map<number, ReplicaWriter>()
  /** Per block id, the tail of a chain of mutations (create, finalize, abort, delete) run one at a time. */
  private readonly locks = new Map<number, Promise<void>>()
  private closed = false
  /** @internal staging buffers for the writers' O_DIRECT writes. */
  readonly directIo = new DirectIo()

  private constructor(
    private readonly dirs: DataDir[],
    private readonly capacityOptBytes: number | undefined,
  ) {}

  static async open(dirs: string[], opts: { capacityBytes?: number } = {}): Promise<ReplicaStore> {
    if (dirs.length === 0) throw new LoamError('invalid-argument', 'no data dirs given: pass --data DIR[,DIR]')
    const roots = dirs.map((d) => path.resolve(d))
    if (new Set(roots).size !== roots.length) throw new LoamError('invalid-argument', `a data dir is listed twice: ${roots.join(',')}`)
    const capacity = opts.capacityBytes
    if (capacity !== undefined && (!Number.isSafeInteger(capacity) || capacity < 0)) {
      throw new LoamError('invalid-argument', `capacity ${capacity} is not a non-negative number of bytes`)
    }
    await initChecksums()
    zeroChunkSum ??= chunkChecksums(Buffer.alloc(CHUNK_BYTES))
    const opened: DataDir[] = []
    for (const root of roots) opened.push(await openDataDir(root))
    const store = new ReplicaStore(opened, capacity)
    await store.scan()
    await store.refreshUsage()
    return store
  }

  /** One storage id per data dir, in the order given to open. */
  storages(): { dir: string; storageId: string }[] {
    return this.dirs.map((d) => ({ dir: d.root, storageId: d.storageId }))
  }

  list(): ReplicaInfo[] {
    return [...this.replicas.values()].map(publicInfo)
  }

  get(id: number): ReplicaInfo | undefined {
    const r = this.replicas.get(id)
    return r === undefined ? undefined : publicInfo(r)
  }

  async createRbw(id: number, genStamp: number): Promise<ReplicaWriter> {
    this.checkOpen()
    checkId(id)
    checkGenStamp(genStamp)
    return this.locked(id, async () => {
      const existing = this.replicas.get(id)
      if (existing !== undefined && existing.state === 'finalized' && existing.genStamp >= genStamp) {
        throw new LoamError('exists', `blk_${id}: a finalized replica with gen stamp ${existing.genStamp} is already here (asked for ${genStamp})`)
      }
      const writer = this.writers.get(id)
      // Two live writers on one replica would interleave: the newer gen stamp wins, an equal one waits its turn.
      if (writer !== undefined && writer.genStamp >= genStamp) {
        throw new LoamError('exists', `blk_${id}: a write with gen stamp ${writer.genStamp} is in progress here (asked for ${genStamp})`)
      }
      // A newer unfinished replica (an update whose writer died) awaits block recovery: an older copy must not replace it.
      if (writer === undefined && existing !== undefined && existing.state === 'rbw' && existing.genStamp > genStamp) {
        throw new LoamError('exists', `blk_${id}: an unfinished replica with gen stamp ${existing.genStamp} is here, newer than ${genStamp}; it awaits block recovery`)
      }
      if (this.usage().remainingBytes <= 0) throw new LoamError('no-space', `blk_${id}: no space left on this datanode`)
      if (writer !== undefined) {
        await writer.abortLocked(new LoamError('stale-generation', `blk_${id}: replaced by a write with gen stamp ${genStamp}`))
      } else if (existing !== undefined) {
        await this.removeReplica(existing)
      }

      const dirIndex = this.pickDir()
      const dir = this.dirs[dirIndex]
      assert(dir !== undefined, 'picked dir exists')
      const dataPath = path.join(dir.rbw, `blk_${id}`)
      const metaPath = `${dataPath}.meta`
      const handles: FileHandle[] = []
      try {
        handles.push(await fs.open(dataPath, 'w+', FILE_MODE))
        handles.push(await fs.open(metaPath, 'w+', FILE_MODE))
        await writeFully(handles[1] as FileHandle, encodeMetaHeader(genStamp), 0)
      } catch (err) {
        await Promise.allSettled(handles.map((h) => h.close()))
        await Promise.allSettled([fs.rm(dataPath, { force: true }), fs.rm(metaPath, { force: true })])
        throw fsError(err, `blk_${id}: creating replica in ${dir.root}`)
      }
      const replica: Replica = { id, genStamp, lengthBytes: 0, state: 'rbw', dataPath, metaPath, dir: dir.root, dirIndex }
      this.replicas.set(id, replica)
      this.account(replica, 1)
      const created = new ReplicaWriter(this, replica, handles[0] as FileHandle, handles[1] as FileHandle, dir.rbw, false)
      this.writers.set(id, created)
      return created
    })
  }

  /**
   * Reopens the replica here at oldGenStamp (finalized, or rbw left by an
   * earlier pipeline) as rbw under newGenStamp, keeping its bytes and
   * checksums, for writes at any offset and resizes: HDFS's append, generalized.
   * An older live writer of it (a pipeline whose end this node has not yet seen)
   * is ended first, keeping what it wrote.
   *
   * Crash safety: a finalized replica moves to rbw/ as recover does (data, then
   * meta; the startup scan undoes a move cut short), then the meta header takes
   * newGenStamp and is synced before any byte can change, so a replica still at
   * oldGenStamp holds its old bytes. Each step leaves the old finalized replica
   * or an rbw one that block recovery finalizes.
   */
  async openForUpdate(id: number, oldGenStamp: number, newGenStamp: number): Promise<ReplicaWriter> {
    this.checkOpen()
    checkId(id)
    checkGenStamp(oldGenStamp)
    checkGenStamp(newGenStamp)
    return this.locked(id, async () => {
      this.checkOpen()
      const writer = this.writers.get(id)
      if (writer !== undefined && writer.genStamp >= newGenStamp) {
        throw new LoamError('exists', `blk_${id}: a write with gen stamp ${writer.genStamp} is in progress here (an update to ${newGenStamp} must be newer)`)
      }
      const replica = this.replicas.get(id)
      if (replica === undefined) throw new LoamError('not-found', `blk_${id}: no replica here to update (expected one at gen stamp ${oldGenStamp})`)
      if (replica.genStamp !== oldGenStamp) {
        throw new LoamError('stale-generation', `blk_${id}: replica here has gen stamp ${replica.genStamp}, the update expects ${oldGenStamp}`)
      }
      if (newGenStamp <= oldGenStamp) {
        throw new LoamError('stale-generation', `blk_${id}: an update needs a gen stamp newer than ${oldGenStamp}, got ${newGenStamp}`)
      }
      if (writer !== undefined) {
        await writer.closeFiles(new LoamError('stale-generation', `blk_${id}: write ended by an update at gen stamp ${newGenStamp}`), 'aborted')
      }
      await this.dropRewriteMarks(replica)
      const [dataBytes, metaFileBytes] = await Promise.all([fileSize(replica.dataPath), fileSize(replica.metaPath)]).catch((err: unknown) => {
        throw fsError(err, `blk_${id}: reading the replica's size`)
      })
      // Files that disagree (a write torn by a crash) go through block recovery before they take writes.
      if (dataBytes !== replica.lengthBytes || metaFileBytes !== metaBytes(replica.lengthBytes)) {
        throw new LoamError(
          'corrupt',
          `blk_${id}: replica files hold ${dataBytes ?? 'no'} data and ${metaFileBytes ?? 'no'} meta bytes for ${replica.lengthBytes} bytes; it needs block recovery before an update`,
        )
      }
      const dir = this.dirs[replica.dirIndex]
      assert(dir !== undefined, 'replica dir exists')
      const handles: FileHandle[] = []
      try {
        if (replica.state === 'finalized') await this.moveToRbw(replica)
        handles.push(await fs.open(replica.dataPath, 'r+'))
        handles.push(await fs.open(replica.metaPath, 'r+'))
        const meta = handles[1] as FileHandle
        await writeFully(meta, encodeMetaHeader(newGenStamp), 0)
        replica.genStamp = newGenStamp
        await meta.datasync()
      } catch (err) {
        await Promise.allSettled(handles.map((h) => h.close()))
        throw fsError(err, `blk_${id}: reopening the replica at gen stamp ${newGenStamp} for an update`)
      }
      const updated = new ReplicaWriter(this, replica, handles[0] as FileHandle, handles[1] as FileHandle, dir.rbw, true)
      this.writers.set(id, updated)
      return updated
    })
  }

  /**
   * Copy-on-write (a block a snapshot shares changes under a new block id):
   * makes the replica newId, under newGenStamp, as a copy of the finalized
   * replica srcId here at srcGenStamp, and opens the copy as openForUpdate
   * does (its bytes kept, writes at any offset, resizes; an abort releases it
   * for block recovery). The source is only ever read: it stays as it is,
   * still served (and reported) at srcGenStamp.
   *
   * newId must not be here, but for an unfinished replica at an older gen
   * stamp that no writer holds open (left by an earlier attempt at this copy
   * whose pipeline failed): that one is replaced. The copy shares the source's
   * extents where the filesystem can reflink (else it is a plain copy), lies
   * in the source's data dir when that has room, and counts in full against
   * this node's space.
   *
   * Crash safety: the copy is made in current/tmp/ (emptied at startup),
   * re-stamped and synced there, and only then renamed into rbw/ (data, then
   * meta) and the dir synced before this returns. rbw/ never holds a partial
   * copy under a replica's name: a crash between the renames leaves a data or
   * a meta file alone there, which the startup scan sets aside.
   */
  async cloneForUpdate(srcId: number, srcGenStamp: number, newId: number, newGenStamp: number): Promise<ReplicaWriter> {
    this.checkOpen()
    checkId(srcId)
    checkGenStamp(srcGenStamp)
    checkId(newId)
    checkGenStamp(newGenStamp)
    if (srcId === newId) throw new LoamError('invalid-argument', `blk_${newId}: a copy-on-write makes a new block, not a copy of blk_${srcId} onto itself`)
    // Both ids locked, the lower first (nothing else holds two), so no update, recovery or delete of the source runs during the copy.
    const [lower, higher] = srcId < newId ? [srcId, newId] : [newId, srcId]
    return this.locked(lower, () => this.locked(higher, () => this.cloneLocked(srcId, srcGenStamp, newId, newGenStamp)))
  }

  async delete(id: number): Promise<boolean> {
    this.checkOpen()
    checkId(id)
    return this.locked(id, async () => {
      const writer = this.writers.get(id)
      if (writer !== undefined) {
        await writer.abortLocked(new LoamError('not-found', `blk_${id}: deleted while being written`))
        return true
      }
      const replica = this.replicas.get(id)
      if (replica === undefined) return false
      await this.removeReplica(replica)
      return true
    })
  }

  /**
   * Packets of whole chunks covering [offsetBytes, offsetBytes + lengthBytes)
   * clipped to the replica (lengthBytes 0: to the end), the first starting at
   * the chunk that holds offsetBytes, with the stored checksums of their chunks.
   * Not verified here: the reader checks them end to end. Argument errors
   * surface on the first next().
   */
  async *readChunks(
    id: number,
    genStamp: number,
    offsetBytes: number,
    lengthBytes: number,
  ): AsyncGenerator<{ offsetBytes: number; data: Buffer; checksums: Buffer }> {
    this.checkOpen()
    checkId(id)
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new LoamError('invalid-argument', `blk_${id}: bad range offset ${offsetBytes} length ${lengthBytes}`)
    }
    const { replica, data, meta } = await this.openForRead(id, genStamp)
    try {
      if (offsetBytes > replica.lengthBytes) {
        throw new LoamError('invalid-argument', `blk_${id}: offset ${offsetBytes} is beyond the replica's ${replica.lengthBytes} bytes`)
      }
      const wantEnd = lengthBytes === 0 ? replica.lengthBytes : Math.min(offsetBytes + lengthBytes, replica.lengthBytes)
      if (wantEnd <= offsetBytes) return
      // Whole chunks either side, so the reader can verify every byte it is given.
      const start = Math.floor(offsetBytes / CHUNK_BYTES) * CHUNK_BYTES
      const end = Math.min(Math.ceil(wantEnd / CHUNK_BYTES) * CHUNK_BYTES, replica.lengthBytes)
      for (let spanStart = start; spanStart < end; spanStart += READ_SPAN_BYTES) {
        const spanBytes = Math.min(READ_SPAN_BYTES, end - spanStart)
        const spanChunks = chunkCount(spanBytes)
        // Fresh buffers each span: the packets handed out are views into them.
        const dataBuf = Buffer.allocUnsafe(spanBytes)
        const sumBuf = Buffer.allocUnsafe(spanChunks * CHECKSUM_BYTES)
        const { dataRead, sumRead } = await this.readSpan(replica, genStamp, data, meta, dataBuf, sumBuf, spanStart)
        if (dataRead !== spanBytes || sumRead !== sumBuf.length) {
          if (replica.lengthBytes < spanStart + spanBytes) {
            throw new LoamError('io', `blk_${id}: replica was cut to ${replica.lengthBytes} bytes while being read; read it again`)
          }
          throw new LoamError('corrupt', `blk_${id}: replica files are shorter than its recorded ${replica.lengthBytes} bytes`)
        }
        for (let chunk = 0; chunk < spanChunks; chunk += CHUNKS_PER_PACKET) {
          const packetChunks = Math.min(CHUNKS_PER_PACKET, spanChunks - chunk)
          yield {
            offsetBytes: spanStart + chunk * CHUNK_BYTES,
            data: dataBuf.subarray(chunk * CHUNK_BYTES, (chunk + packetChunks) * CHUNK_BYTES),
            checksums: sumBuf.subarray(chunk * CHECKSUM_BYTES, (chunk + packetChunks) * CHECKSUM_BYTES),
          }
        }
      }
    } finally {
      await Promise.allSettled([data.close(), meta.close()])
    }
  }

  /**
   * Reads the whole replica and checks every chunk; badChunk is -1 when ok.
   * opts.genStamp: verify that version only ('stale-generation' if another is here).
   * opts.afterSpan: awaited after each span read (at most READ_SPAN_BYTES), before it is
   * checked, so a background reader can pace itself; what it throws ends the verify.
   */
  async verify(
    id: number,
    opts: { genStamp?: number; afterSpan?: (spanBytes: number) => Promise<void> } = {},
  ): Promise<{ ok: boolean; badChunk: number }> {
    this.checkOpen()
    checkId(id)
    const current = this.replicas.get(id)
    if (current === undefined) throw new LoamError('not-found', `blk_${id}: no replica here`)
    const genStamp = opts.genStamp ?? current.genStamp
    const { replica, data, meta } = await this.openForRead(id, genStamp)
    try {
      const header = Buffer.alloc(META_HEADER_BYTES)
      const headerRead = await readFully(meta, header, 0)
      const decoded = decodeMetaHeader(header.subarray(0, headerRead))
      if (!('genStamp' in decoded) || decoded.genStamp !== replica.genStamp) return { ok: false, badChunk: 0 }
      const lengthBytes = replica.lengthBytes
      for (let spanStart = 0; spanStart < lengthBytes; spanStart += READ_SPAN_BYTES) {
        const spanBytes = Math.min(READ_SPAN_BYTES, lengthBytes - spanStart)
        const dataBuf = Buffer.allocUnsafe(spanBytes)
        const sumBuf = Buffer.allocUnsafe(chunkCount(spanBytes) * CHECKSUM_BYTES)
        const { dataRead, sumRead } = await this.readSpan(replica, genStamp, data, meta, dataBuf, sumBuf, spanStart)
        if (opts.afterSpan !== undefined) await opts.afterSpan(dataRead)
        const firstChunk = spanStart / CHUNK_BYTES
        // A short file: the chunk where the data or its checksums run out is bad.
        const shortAt = Math.min(Math.floor(dataRead / CHUNK_BYTES), Math.floor(sumRead / CHECKSUM_BYTES))
        if (dataRead !== spanBytes || sumRead !== sumBuf.length) {
          const goodPrefix = shortAt * CHUNK_BYTES
          const bad = firstBadChunk(dataBuf.subarray(0, goodPrefix), sumBuf.subarray(0, shortAt * CHECKSUM_BYTES))
          return { ok: false, badChunk: firstChunk + (bad === -1 ? shortAt : bad) }
        }
        const bad = firstBadChunk(dataBuf, sumBuf)
        if (bad !== -1) return { ok: false, badChunk: firstChunk + bad }
      }
      // Checksums past the data mean the meta file does not describe this replica.
      const metaSize = (await meta.stat()).size
      if (metaSize !== metaBytes(lengthBytes)) return { ok: false, badChunk: chunkCount(lengthBytes) }
      return { ok: true, badChunk: -1 }
    } finally {
      await Promise.allSettled([data.close(), meta.close()])
    }
  }

  /**
   * How much of a replica verifies, for block recovery after its writer died.
   * Holds the id's lock, so no finalize, recovery or delete runs meanwhile. An
   * open writer's writes already in flight are awaited; writes it starts later
   * may be seen in part, which only ever shortens the verified prefix.
   */
  async inspect(id: number): Promise<ReplicaInspection> {
    this.checkOpen()
    checkId(id)
    return this.locked(id, async () => {
      this.checkOpen()
      const replica = this.replicas.get(id)
      if (replica === undefined) throw new LoamError('not-found', `blk_${id}: no replica here`)
      const v = await this.verifiedWhileWriting(replica, Infinity)
      return { genStamp: replica.genStamp, lengthBytes: v.dataBytes, verifiedBytes: v.verifiedBytes, state: replica.state }
    })
  }

  /**
   * Block recovery: finalizes the replica here (rbw or finalized) at newGenStamp
   * and lengthBytes, which must lie within what verifies (see inspect). Ends an
   * open writer (its later calls fail with 'stale-generation'). Idempotent: a
   * replica already finalized at newGenStamp and lengthBytes is returned as is.
   *
   * Crash safety: a finalized replica is first moved back into rbw/ (data, then
   * meta; the startup scan undoes a move cut short), cut and re-stamped there,
   * then finalized as finalize does (meta, then data). A crash at any point
   * leaves either the old finalized replica or an rbw one, which is never
   * reported and is recovered again.
   */
  async recover(id: number, newGenStamp: number, lengthBytes: number): Promise<ReplicaInfo> {
    this.checkOpen()
    checkId(id)
    checkGenStamp(newGenStamp)
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes > BLOCK_SIZE_MAX_BYTES) {
      throw new LoamError('invalid-argument', `blk_${id}: recovery length ${lengthBytes} is not a number of bytes up to ${BLOCK_SIZE_MAX_BYTES}`)
    }
    return this.locked(id, async () => {
      this.checkOpen()
      const replica = this.replicas.get(id)
      if (replica === undefined) throw new LoamError('not-found', `blk_${id}: no replica here to recover`)
      if (replica.genStamp > newGenStamp) {
        throw new LoamError('stale-generation', `blk_${id}: replica here has gen stamp ${replica.genStamp}, newer than the recovery's ${newGenStamp}`)
      }
      if (replica.genStamp === newGenStamp && replica.state === 'finalized') {
        if (replica.lengthBytes === lengthBytes) return publicInfo(replica)
        throw new LoamError(
          'stale-generation',
          `blk_${id}: already finalized at gen stamp ${newGenStamp} with ${replica.lengthBytes} bytes; recovering it to ${lengthBytes} bytes needs a newer gen stamp`,
        )
      }
      const refuse = (verifiedBytes: number): LoamError =>
        new LoamError('invalid-argument', `blk_${id}: recovery to ${lengthBytes} bytes, but only ${verifiedBytes} bytes here verify against their checksums`)

      let verified: VerifiedPrefix | undefined
      const writer = this.writers.get(id)
      if (writer !== undefined) {
        // Checked before ending the write, so a refused recovery leaves the writer alone.
        const issued = writer.writesIssued
        const before = await this.verifiedWhileWriting(replica, lengthBytes)
        if (lengthBytes > before.verifiedBytes) throw refuse(before.verifiedBytes)
        await writer.closeFiles(new LoamError('stale-generation', `blk_${id}: write ended by block recovery at gen stamp ${newGenStamp}`), 'aborted')
        // Writes started while we read may have changed the files: read them again.
        if (writer.writesIssued === issued) verified = before
      }
      verified ??= await this.verifiedPrefixOf(replica, lengthBytes)
      if (lengthBytes > verified.verifiedBytes) throw refuse(verified.verifiedBytes)

      try {
        if (replica.state === 'finalized') await this.moveToRbw(replica)
        const marks = rewriteMarksPath(replica.dataPath)
        await this.cutAndStamp(replica, newGenStamp, lengthBytes, verified.rehash)
        await this.moveToFinalized(replica)
        await RewriteMarks.remove(marks)
      } catch (err) {
        throw fsError(err, `blk_${id}: recovering to gen stamp ${newGenStamp} and ${lengthBytes} bytes`)
      }
      return publicInfo(replica)
    })
  }

  usage(): StorageUsage {
    let usedBytes = 0
    let sinceRefreshBytes = 0
    for (const d of this.dirs) {
      usedBytes += d.usedBytes
      sinceRefreshBytes += d.usedBytes - d.usedAtRefreshBytes
    }
    // Dirs on one filesystem share its space: count each filesystem once.
    let totalBytes = 0
    let freeBytes = 0
    const seen = new Set<number>()
    for (const d of this.dirs) {
      if (seen.has(d.device)) continue
      seen.add(d.device)
      totalBytes += d.totalBytes
      freeBytes += d.freeBytes
    }
    const capacityBytes = this.capacityOptBytes ?? totalBytes
    // What we wrote since the last statfs is already gone from the disk's free space.
    const diskFreeBytes = freeBytes - sinceRefreshBytes
    const remainingBytes = Math.max(0, Math.min(capacityBytes - usedBytes, diskFreeBytes))
    return { capacityBytes, usedBytes, remainingBytes }
  }

  /** Re-reads free space from the filesystems; the datanode calls it before each heartbeat. */
  async refreshUsage(): Promise<void> {
    const stats = await Promise.all(this.dirs.map((d) => fs.statfs(d.root)))
    this.dirs.forEach((d, i) => {
      const s = stats[i]
      assert(s !== undefined, 'statfs for each dir')
      d.totalBytes = s.blocks * s.bsize
      d.freeBytes = s.bavail * s.bsize
      d.usedAtRefreshBytes = d.usedBytes
    })
  }

  /** Closes open writers' files; their rbw replicas stay on disk for a later recovery. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.allSettled([...this.writers.values()].map((w) => w.closeFiles(new LoamError('unavailable', 'replica store closed'))))
    this.writers.clear()
    await Promise.allSettled([...this.locks.values()])
  }

  // ---- internals shared with ReplicaWriter ----

  /** Runs fn after every earlier mutation of this block id has finished. */
  async locked<T>(id: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => {
      release = resolve
    })
    const tail = prev.then(() => mine)
    this.locks.set(id, tail)
    await prev
    try {
      return await fn()
    } finally {
      release()
      if (this.locks.get(id) === tail) this.locks.delete(id)
    }
  }

  /** Adds (sign 1) or removes (sign -1) a replica's bytes from the usage counters. */
  account(replica: Replica, sign: 1 | -1): void {
    const dir = this.dirs[replica.dirIndex]
    assert(dir !== undefined, 'replica dir exists')
    dir.usedBytes += sign * replicaBytes(replica.lengthBytes)
  }

  setLength(replica: Replica, lengthBytes: number): void {
    if (this.replicas.get(replica.id) !== replica) return // replaced or deleted meanwhile: not ours to count
    this.account(replica, -1)
    replica.lengthBytes = lengthBytes
    this.account(replica, 1)
  }

  /** Bytes a replica may still grow by before the datanode is full. */
  remainingBytes(): number {
    return this.usage().remainingBytes
  }

  finalizedPaths(replica: Replica): { dir: string; dataPath: string; metaPath: string } {
    const dir = this.dirs[replica.dirIndex]
    assert(dir !== undefined, 'replica dir exists')
    const sub = path.join(dir.finalized, subdirName(replica.id))
    const dataPath = path.join(sub, `blk_${replica.id}`)
    return { dir: sub, dataPath, metaPath: `${dataPath}.meta` }
  }

  forgetWriter(writer: ReplicaWriter): void {
    if (this.writers.get(writer.id) === writer) this.writers.delete(writer.id)
  }

  /** Removes a replica's files and its entry; caller holds the id's lock. */
  async removeReplica(replica: Replica): Promise<void> {
    if (this.replicas.get(replica.id) === replica) {
      this.account(replica, -1)
      this.replicas.delete(replica.id)
    }
    try {
      await Promise.all([fs.rm(replica.dataPath, { force: true }), fs.rm(replica.metaPath, { force: true }), RewriteMarks.remove(rewriteMarksPath(replica.dataPath))])
    } catch (err) {
      throw fsError(err, `blk_${replica.id}: removing replica files`)
    }
  }

  // ---- private ----

  private checkOpen(): void {
    if (this.closed) throw new LoamError('unavailable', 'replica store is closed')
  }

  /** cloneForUpdate with both ids' locks held. */
  private async cloneLocked(srcId: number, srcGenStamp: number, newId: number, newGenStamp: number): Promise<ReplicaWriter> {
    this.checkOpen()
    const into = `blk_${srcId}: copying it into blk_${newId}`
    const src = this.replicas.get(srcId)
    if (src === undefined) throw new LoamError('not-found', `${into}: no replica here (expected a finalized one at gen stamp ${srcGenStamp})`)
    if (src.genStamp !== srcGenStamp) {
      throw new LoamError('stale-generation', `${into}: the replica here has gen stamp ${src.genStamp}, the copy expects ${srcGenStamp}`)
    }
    if (src.state !== 'finalized') {
      throw new LoamError('not-found', `${into}: the replica here at gen stamp ${srcGenStamp} is unfinished (it awaits block recovery); only a finalized one is copied`)
    }
    const writer = this.writers.get(newId)
    if (writer !== undefined) {
      throw new LoamError('exists', `blk_${newId}: a write with gen stamp ${writer.genStamp} is in progress here; a copy of blk_${srcId} into it is refused`)
    }
    const existing = this.replicas.get(newId)
    if (existing !== undefined && (existing.state === 'finalized' || existing.genStamp >= newGenStamp)) {
      const what = existing.state === 'finalized' ? 'a finalized replica' : 'an unfinished replica'
      throw new LoamError('exists', `blk_${newId}: ${what} with gen stamp ${existing.genStamp} is already here; a copy of blk_${srcId} into it at gen stamp ${newGenStamp} is refused`)
    }
    const [dataBytes, metaFileBytes] = await Promise.all([fileSize(src.dataPath), fileSize(src.metaPath)]).catch((err: unknown) => {
      throw fsError(err, `${into}: reading the replica's size`)
    })
    // Files that disagree (damage, or debris of a crash) are not copied: the copy would pass them on as a new replica.
    if (dataBytes !== src.lengthBytes || metaFileBytes !== metaBytes(src.lengthBytes)) {
      throw new LoamError('corrupt', `${into}: its files hold ${dataBytes ?? 'no'} data and ${metaFileBytes ?? 'no'} meta bytes for ${src.lengthBytes} bytes`)
    }
    const needBytes = replicaBytes(src.lengthBytes)
    const freedBytes = existing === undefined ? 0 : replicaBytes(existing.lengthBytes)
    if (needBytes > this.remainingBytes() + freedBytes) {
      throw new LoamError('no-space', `${into}: no space left on this datanode for a copy of ${needBytes} bytes`)
    }
    // The source's dir when it has room: on one filesystem the copy can share the source's extents.
    const dirIndex = this.dirFreeBytes(src.dirIndex) >= needBytes ? src.dirIndex : this.pickDir()
    const dir = this.dirs[dirIndex]
    assert(dir !== undefined, 'picked dir exists')
    const tmpData = path.join(dir.tmp, `blk_${newId}`)
    const tmpMeta = `${tmpData}.meta`
    const dataPath = path.join(dir.rbw, `blk_${newId}`)
    const metaPath = `${dataPath}.meta`
    const handles: FileHandle[] = []
    let renamed = false
    try {
      // COPYFILE_FICLONE: a reflink where the filesystem has them, a plain copy where not.
      await Promise.all([
        fs.copyFile(src.dataPath, tmpData, fsConstants.COPYFILE_FICLONE),
        fs.copyFile(src.metaPath, tmpMeta, fsConstants.COPYFILE_FICLONE),
      ])
      handles.push(await fs.open(tmpData, 'r+'))
      handles.push(await fs.open(tmpMeta, 'r+'))
      const [data, meta] = handles as [FileHandle, FileHandle]
      const header = Buffer.alloc(META_HEADER_BYTES)
      const decoded = decodeMetaHeader(header.subarray(0, await readFully(meta, header, 0)))
      const [dataStat, metaStat] = await Promise.all([data.stat(), meta.stat()])
      if (!('genStamp' in decoded) || decoded.genStamp !== srcGenStamp || dataStat.size !== src.lengthBytes || metaStat.size !== metaBytes(src.lengthBytes)) {
        const problem = 'problem' in decoded ? decoded.problem : `gen stamp ${decoded.genStamp} in its meta header`
        throw new LoamError('corrupt', `${into}: the copy does not match the replica (${problem}, ${dataStat.size} data and ${metaStat.size} meta bytes)`)
      }
      await writeFully(meta, encodeMetaHeader(newGenStamp), 0)
      await Promise.all([data.sync(), meta.sync()])
      if (existing !== undefined) {
        // Gone for good before the copy takes its name, so a crash never pairs the copy with the old replica's files.
        await this.removeReplica(existing)
        const existingDir = this.dirs[existing.dirIndex]
        assert(existingDir !== undefined, 'replaced replica dir exists')
        await fsyncDir(existingDir.rbw)
      }
      renamed = true // from here a failure may leave either file in rbw/
      await fs.rename(tmpData, dataPath)
      await fs.rename(tmpMeta, metaPath)
      await Promise.all([fsyncDir(dir.rbw), fsyncDir(dir.tmp)])
      this.checkOpen()
    } catch (err) {
      await Promise.allSettled(handles.map((h) => h.close()))
      await Promise.allSettled([tmpData, tmpMeta, ...(renamed ? [dataPath, metaPath] : [])].map((p) => fs.rm(p, { force: true })))
      throw fsError(err, into)
    }
    const replica: Replica = { id: newId, genStamp: newGenStamp, lengthBytes: src.lengthBytes, state: 'rbw', dataPath, metaPath, dir: dir.root, dirIndex }
    this.replicas.set(newId, replica)
    this.account(replica, 1)
    const cloned = new ReplicaWriter(this, replica, handles[0] as FileHandle, handles[1] as FileHandle, dir.rbw, true)
    this.writers.set(newId, cloned)
    return cloned
  }

  /** A data dir's free space, counting what we wrote since the last statfs. */
  private dirFreeBytes(dirIndex: number): number {
    const d = this.dirs[dirIndex]
    assert(d !== undefined, 'dir exists')
    return d.freeBytes - (d.usedBytes - d.usedAtRefreshBytes)
  }

  /** The data dir with most free space, counting what we wrote since the last statfs. */
  private pickDir(): number {
    let best = 0
    let bestFree = -Infinity
    let bestUsed = Infinity
    this.dirs.forEach((d, i) => {
      const free = this.dirFreeBytes(i)
      // Ties (dirs on one filesystem) go to the dir holding fewer of our bytes, so all dirs fill.
      if (free > bestFree || (free === bestFree && d.usedBytes < bestUsed)) {
        best = i
        bestFree = free
        bestUsed = d.usedBytes
      }
    })
    return best
  }

  /**
   * Before an rbw replica takes a new writer: marks left by the last one (see
   * rewrite-marks.ts) go once every chunk verifies without them. A chunk that
   * needs its mark (a write torn by a crash) first needs block recovery.
   */
  private async dropRewriteMarks(replica: Replica): Promise<void> {
    const marks = rewriteMarksPath(replica.dataPath)
    if (replica.state !== 'rbw' || (await RewriteMarks.load(marks)).size === 0) return
    const v = await this.verifiedPrefixOf(replica, Infinity)
    if (v.rehash.length > 0 || v.verifiedBytes < v.dataBytes) {
      throw new LoamError('corrupt', `blk_${replica.id}: a write was torn here when its writer stopped; the replica needs block recovery before an update`)
    }
    await RewriteMarks.remove(marks)
  }

  /**
   * verifiedPrefixOf with the replica's writer, if any, held still: a write lands its data and then its
   * chunk's checksum, and read between the two a chunk looks torn, which would cut every acknowledged byte of it.
   */
  private verifiedWhileWriting(replica: Replica, untilBytes: number): Promise<VerifiedPrefix> {
    const writer = this.writers.get(replica.id)
    return writer ? writer.exclusive(() => this.verifiedPrefixOf(replica, untilBytes)) : this.verifiedPrefixOf(replica, untilBytes)
  }

  /** How far a replica's files verify (see verifiedPrefix); caller holds the id's lock. */
  private async verifiedPrefixOf(replica: Replica, untilBytes: number): Promise<VerifiedPrefix> {
    let data: FileHandle | undefined
    let meta: FileHandle | undefined
    try {
      data = await fs.open(replica.dataPath, 'r')
      meta = await fs.open(replica.metaPath, 'r')
      // Only a replica being written can have a chunk mid-rewrite.
      const marked = replica.state === 'rbw' ? await RewriteMarks.load(rewriteMarksPath(replica.dataPath)) : new Set<number>()
      return await verifiedPrefix(data, meta, replica.genStamp, untilBytes, marked)
    } catch (err) {
      throw fsError(err, `blk_${replica.id}: reading the replica to verify it`)
    } finally {
      await Promise.allSettled([data?.close(), meta?.close()])
    }
  }

  /**
   * Moves a finalized replica's files back into rbw/. Data first: if the meta
   * never follows, the startup scan takes the data back as for a finalize cut
   * short, and the finalized replica is as it was.
   */
  private async moveToRbw(replica: Replica): Promise<void> {
    const dir = this.dirs[replica.dirIndex]
    assert(dir !== undefined, 'replica dir exists')
    assert(replica.state === 'finalized', 'only a finalized replica moves back to rbw')
    const finalDir = path.dirname(replica.dataPath)
    const dataPath = path.join(dir.rbw, `blk_${replica.id}`)
    const metaPath = `${dataPath}.meta`
    await fs.rename(replica.dataPath, dataPath)
    try {
      await fs.rename(replica.metaPath, metaPath)
    } catch (err) {
      await fs.rename(dataPath, replica.dataPath).catch(() => undefined)
      throw err
    }
    replica.state = 'rbw'
    replica.dataPath = dataPath
    replica.metaPath = metaPath
    await Promise.all([fsyncDir(dir.rbw), fsyncDir(finalDir)])
  }

  /**
   * Cuts an rbw replica's files to lengthBytes, re-checksums a partial last
   * chunk (it lies in a chunk that verified, so its bytes are trusted) and the
   * chunks listed in rehash (mid-rewrite when the writer stopped), writes
   * newGenStamp in the meta header and syncs both files. The in-memory entry
   * follows each step, so a failure part way leaves it describing the disk.
   */
  private async cutAndStamp(replica: Replica, newGenStamp: number, lengthBytes: number, rehash: readonly number[]): Promise<void> {
    assert(replica.state === 'rbw', 'recovery cuts a replica in rbw/')
    let data: FileHandle | undefined
    let meta: FileHandle | undefined
    try {
      data = await fs.open(replica.dataPath, 'r+')
      meta = await fs.open(replica.metaPath, 'r+')
      // Chunks hashed again from their bytes: those mid-rewrite, and a last chunk the cut leaves partial.
      const chunks = new Set(rehash.filter((c) => c * CHUNK_BYTES < lengthBytes))
      if (lengthBytes % CHUNK_BYTES !== 0) chunks.add(Math.floor(lengthBytes / CHUNK_BYTES))
      for (const chunk of chunks) {
        const bytes = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, lengthBytes - chunk * CHUNK_BYTES))
        if ((await readFully(data, bytes, chunk * CHUNK_BYTES)) !== bytes.length) {
          throw new LoamError('corrupt', `blk_${replica.id}: data file shrank below ${lengthBytes} bytes during recovery`)
        }
        await writeFully(meta, chunkChecksums(bytes), META_HEADER_BYTES + chunk * CHECKSUM_BYTES)
      }
      await Promise.all([data.truncate(lengthBytes), meta.truncate(metaBytes(lengthBytes))])
      this.setLength(replica, lengthBytes)
      await writeFully(meta, encodeMetaHeader(newGenStamp), 0)
      replica.genStamp = newGenStamp
      await Promise.all([data.sync(), meta.sync()])
    } finally {
      await Promise.allSettled([data?.close(), meta?.close()])
    }
  }

  /** Moves an rbw replica (files synced) into finalized/ as finalize does: meta, then data, then both dirs synced. */
  private async moveToFinalized(replica: Replica): Promise<void> {
    const dir = this.dirs[replica.dirIndex]
    assert(dir !== undefined, 'replica dir exists')
    const final = this.finalizedPaths(replica)
    await fs.rename(replica.metaPath, final.metaPath)
    replica.metaPath = final.metaPath
    await fs.rename(replica.dataPath, final.dataPath)
    replica.dataPath = final.dataPath
    await Promise.all([fsyncDir(final.dir), fsyncDir(dir.rbw)])
    // Reported (block reports carry finalized replicas only) once its name is durable.
    replica.state = 'finalized'
  }

  /**
   * Reads a span of data and its checksums as one picture: between the writes
   * of a writer open on that version, and never across a change of version
   * (an update or recovery re-stamps a replica before its bytes change), which
   * fails with 'stale-generation' rather than passing for damage.
   */
  private async readSpan(
    replica: Replica,
    genStamp: number,
    data: FileHandle,
    meta: FileHandle,
    dataBuf: Buffer,
    sumBuf: Buffer,
    spanStart: number,
  ): Promise<{ dataRead: number; sumRead: number }> {
    const read = async (): Promise<{ dataRead: number; sumRead: number }> => {
      const [dataRead, sumRead] = await Promise.all([
        readFully(data, dataBuf, spanStart),
        readFully(meta, sumBuf, META_HEADER_BYTES + (spanStart / CHUNK_BYTES) * CHECKSUM_BYTES),
      ])
      return { dataRead, sumRead }
    }
    const writer = this.writers.get(replica.id)
    const got = writer !== undefined && writer.genStamp === genStamp ? await writer.exclusive(read) : await read()
    if (replica.genStamp !== genStamp) {
      throw new LoamError('stale-generation', `blk_${replica.id}: replica changed to gen stamp ${replica.genStamp} while being read at ${genStamp}`)
    }
    return got
  }

  /** Opens a replica's files, retrying once if a finalize moved them between lookup and open. */
  private async openForRead(id: number, genStamp: number): Promise<{ replica: Replica; data: FileHandle; meta: FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const replica = this.replicas.get(id)
      if (replica === undefined) throw new LoamError('not-found', `blk_${id}: no replica here`)
      if (replica.genStamp !== genStamp) {
        throw new LoamError('stale-generation', `blk_${id}: replica here has gen stamp ${replica.genStamp}, asked for ${genStamp}`)
      }
      let data: FileHandle | undefined
      try {
        data = await fs.open(replica.dataPath, 'r')
        const meta = await fs.open(replica.metaPath, 'r')
        return { replica, data, meta }
      } catch (err) {
        await data?.close()
        if (errnoOf(err) === 'ENOENT' && attempt === 0) continue
        throw fsError(err, `blk_${id}: opening replica`)
      }
    }
  }

  /** Finds every replica on disk, completing or setting aside what a crash left half done. */
  private async scan(): Promise<void> {
    const found: Replica[] = []
    for (const [dirIndex, dir] of this.dirs.entries()) {
      // rbw first: a finalize interrupted between its two renames is completed here.
      await this.scanFolder(dirIndex, dir.rbw, 'rbw', found)
      for (let i = 0; i < SUBDIRS; i++) {
        await this.scanFolder(dirIndex, path.join(dir.finalized, subdirName(i)), 'finalized', found)
      }
    }
    // One replica per id: the newest gen stamp, finalized before rbw; the rest are set aside.
    const rank = (r: Replica): number => r.genStamp * 2 + (r.state === 'finalized' ? 1 : 0)
    for (const r of found) {
      const other = this.replicas.get(r.id)
      if (other !== undefined && rank(other) >= rank(r)) {
        await this.quarantine(r.dirIndex, [r.dataPath, r.metaPath])
        continue
      }
      if (other !== undefined) {
        this.account(other, -1)
        await this.quarantine(other.dirIndex, [other.dataPath, other.metaPath])
      }
      this.replicas.set(r.id, r)
      this.account(r, 1)
    }
  }

  private async scanFolder(dirIndex: number, folder: string, state: 'finalized' | 'rbw', found: Replica[]): Promise<void> {
    const dir = this.dirs[dirIndex]
    assert(dir !== undefined, 'scanned dir exists')
    const names = new Set(await fs.readdir(folder))
    const ids: number[] = []
    for (const name of names) {
      // Marks outlive their replica only when a crash cut short the removal or finalize that deletes them.
      if (name.endsWith(REWRITE_MARKS_SUFFIX) && !names.has(name.slice(0, -REWRITE_MARKS_SUFFIX.length))) await RewriteMarks.remove(path.join(folder, name))
      const m = /^blk_(\d+)(\.meta)?$/.exec(name)
      if (m === null) continue
      const id = Number(m[1])
      if (!Number.isSafeInteger(id)) {
        await this.quarantine(dirIndex, [path.join(folder, name)])
        continue
      }
      if (m[2] === undefined) ids.push(id)
      else if (!names.has(`blk_${id}`)) {
        // Meta without data: either half of an interrupted finalize (rbw data still to move) or debris.
        const rbwData = path.join(dir.rbw, `blk_${id}`)
        if (state === 'finalized' && (await exists(rbwData)) && !(await exists(`${rbwData}.meta`))) {
          await fs.rename(rbwData, path.join(folder, `blk_${id}`))
          await Promise.all([fsyncDir(folder), fsyncDir(dir.rbw)])
          ids.push(id)
        } else {
          await this.quarantine(dirIndex, [path.join(folder, name)])
        }
      }
    }
    await forEachLimit(ids, SCAN_PARALLEL_MAX, async (id) => {
      const dataPath = path.join(folder, `blk_${id}`)
      const metaPath = `${dataPath}.meta`
      if (state === 'rbw' && !(await exists(metaPath))) {
        // finalize renames meta first: a finalized meta with no finalized data means the data rename is pending.
        const finalSub = path.join(dir.finalized, subdirName(id))
        const finalMeta = path.join(finalSub, `blk_${id}.meta`)
        if ((await exists(finalMeta)) && !(await exists(path.join(finalSub, `blk_${id}`)))) return // moved by the finalized scan
      }
      let header: ReturnType<typeof decodeMetaHeader>
      try {
        header = await readMetaHeader(metaPath)
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err
        header = { problem: 'meta file missing' }
      }
      const lengthBytes = await fileSize(dataPath)
      if (!('genStamp' in header) || lengthBytes === undefined) {
        await this.quarantine(dirIndex, [dataPath, metaPath])
        return
      }
      found.push({ id, genStamp: header.genStamp, lengthBytes, state, dataPath, metaPath, dir: dir.root, dirIndex })
    })
  }

  /** Moves files aside (not deleted: an operator may want them), keeping earlier ones of the same name. */
  private async quarantine(dirIndex: number, files: string[]): Promise<void> {
    const dir = this.dirs[dirIndex]
    assert(dir !== undefined, 'quarantine dir exists')
    const stamp = Date.now()
    for (const file of files) {
      try {
        await fs.rename(file, path.join(dir.quarantine, `${path.basename(file)}.${stamp}`))
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err
      }
    }
  }
}

function publicInfo(r: Replica): ReplicaInfo {
  return { id: r.id, genStamp: r.genStamp, lengthBytes: r.lengthBytes, state: r.state, dataPath: r.dataPath, metaPath: r.metaPath, dir: r.dir }
}

type WriterState = 'open' | 'closing' | 'failed' | 'finalized' | 'aborted'

/**
 * Writes one replica being written (rbw): one FileHandle each for data and
 * meta, positional writes. A new replica (createRbw), one reopened for an
 * update (openForUpdate) or a copy of another made for one (cloneForUpdate);
 * each takes writes at any offset and resizes.
 */
export class ReplicaWriter {
  readonly id: number
  readonly genStamp: number
  private state: WriterState = 'open'
  private why: LoamError | undefined
  private readonly inflight = new Set<Promise<void>>()
  private rbwDirSynced = false
  private issued = 0
  /** The replica's length once every write and resize issued so far lands: decides which writes need no merging. */
  private issuedEndBytes: number
  /** Settles when the last exclusive operation (a merging write, a resize, a consistent read) has; later writes wait for it. */
  private barrier: Promise<void> | undefined
  /** The data file opened O_DIRECT at the first write of whole pages (see direct-io.ts); undefined where refused. */
  private direct: Promise<FileHandle | undefined> | undefined
  private readonly marks: RewriteMarks

  /** @internal made by ReplicaStore.createRbw, openForUpdate and cloneForUpdate (update: the bytes predate this writer). */
  constructor(
    private readonly store: ReplicaStore,
    private readonly replica: Replica,
    private readonly data: FileHandle,
    private readonly meta: FileHandle,
    private readonly rbwDir: string,
    readonly update: boolean,
  ) {
    this.id = replica.id
    this.genStamp = replica.genStamp
    this.issuedEndBytes = replica.lengthBytes
    this.marks = new RewriteMarks(rewriteMarksPath(replica.dataPath))
  }

  /** The replica's length: what it held when opened, then as writes and resizes land. */
  get lengthBytes(): number {
    return this.replica.lengthBytes
  }

  /** @internal writes started so far, to tell whether any came after a settle. */
  get writesIssued(): number {
    return this.issued
  }

  /** @internal waits for the writes in flight now; returns writesIssued as it was before them. */
  async settle(): Promise<number> {
    const issued = this.issued
    await Promise.allSettled([...this.inflight])
    return issued
  }

  /**
   * @internal runs fn once every write issued before it has settled; writes
   * issued meanwhile start after it. Ordering only: fn does its own I/O.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const op = Promise.allSettled([...this.inflight, this.barrier]).then(fn)
    const done = op.then(
      () => undefined,
      () => undefined,
    )
    this.barrier = done
    void done.then(() => {
      if (this.barrier === done) this.barrier = undefined
    })
    return op
  }

  /**
   * Writes data at offsetBytes, anywhere in the block: past the end, the gap
   * reads as zeros (sparse). checksums are those of the payload's own chunks
   * counted from its first byte (CHUNK_BYTES each, the last maybe short);
   * verify: false skips checking them, for a node whose downstream checks them.
   * data may be several consecutive packets, written with one writev (only the
   * last may end inside a chunk). Every chunk the write touches keeps a right
   * checksum: one covered by an aligned payload chunk takes the payload's, one
   * partly covered is hashed again from its merged bytes, after checking its
   * bytes on disk against their stored checksum.
   */
  async write(offsetBytes: number, data: Buffer | Buffer[], checksums: Buffer, opts: { verify?: boolean } = {}): Promise<void> {
    this.checkOpen()
    const pieces = Array.isArray(data) ? data.filter((d) => d.length > 0) : [data]
    const lengthBytes = pieces.reduce((sum, d) => sum + d.length, 0)
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes > BLOCK_SIZE_MAX_BYTES) {
      throw new LoamError('invalid-argument', `blk_${this.id}: write offset ${offsetBytes} is not a byte offset up to the block size limit ${BLOCK_SIZE_MAX_BYTES}`)
    }
    if (lengthBytes > DISK_WRITE_BYTES_MAX) {
      throw new LoamError('invalid-argument', `blk_${this.id}: write of ${lengthBytes} bytes exceeds ${DISK_WRITE_BYTES_MAX}`)
    }
    if (pieces.slice(0, -1).some((d) => d.length % CHUNK_BYTES !== 0)) {
      throw new LoamError('invalid-argument', `blk_${this.id}: only the last piece of a write may end inside a chunk`)
    }
    const endBytes = offsetBytes + lengthBytes
    if (endBytes > BLOCK_SIZE_MAX_BYTES) {
      throw new LoamError('invalid-argument', `blk_${this.id}: write to ${endBytes} passes the block size limit ${BLOCK_SIZE_MAX_BYTES}`)
    }
    if (checksums.length !== chunkCount(lengthBytes) * CHECKSUM_BYTES) {
      throw new LoamError(
        'invalid-argument',
        `blk_${this.id}: ${checksums.length} checksum bytes for ${lengthBytes} data bytes (want ${CHECKSUM_BYTES} per ${CHUNK_BYTES}-byte chunk)`,
      )
    }
    if (lengthBytes === 0) return
    if (opts.verify !== false) {
      let chunk = 0
      for (const piece of pieces) {
        const n = chunkCount(piece.length)
        const bad = firstBadChunk(piece, checksums.subarray(chunk * CHECKSUM_BYTES, (chunk + n) * CHECKSUM_BYTES))
        if (bad !== -1) {
          throw new LoamError('corrupt', `blk_${this.id}: packet at ${offsetBytes} damaged in transit (its chunk ${chunk + bad} fails its checksum)`)
        }
        chunk += n
      }
    }
    const growthBytes = Math.max(0, replicaBytes(endBytes) - replicaBytes(this.replica.lengthBytes))
    if (growthBytes > this.store.remainingBytes()) {
      throw new LoamError('no-space', `blk_${this.id}: no space left on this datanode for ${growthBytes} more bytes`)
    }
    // From checkOpen to here nothing awaits: closeFiles waits for every write that passed it.
    this.markRewrites(offsetBytes, endBytes)
    this.issued++
    // Aligned, starting within what is written and not ending inside a chunk with bytes after it: the payload's
    // checksums are the replica's, as for every packet of a new block. Anything else merges, one at a time.
    const plain =
      this.barrier === undefined &&
      offsetBytes % CHUNK_BYTES === 0 &&
      offsetBytes <= this.issuedEndBytes &&
      (endBytes % CHUNK_BYTES === 0 || endBytes >= this.issuedEndBytes)
    this.issuedEndBytes = Math.max(this.issuedEndBytes, endBytes)
    const op = plain ? this.writeAt(offsetBytes, pieces, checksums, endBytes) : this.exclusive(() => this.mergeWriteAt(offsetBytes, pieces, checksums, endBytes))
    await this.track(op)
  }

  /**
   * Cuts or zero-extends the replica to lengthBytes, after the writes issued
   * before it and before those issued after. Extending writes no zeros (a
   * sparse ftruncate); the chunk holding the old or the new end is hashed
   * again, added zero chunks take the precomputed checksum of zeros.
   */
  async resize(lengthBytes: number): Promise<void> {
    this.checkOpen()
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes > BLOCK_SIZE_MAX_BYTES) {
      throw new LoamError('invalid-argument', `blk_${this.id}: resize to ${lengthBytes} bytes is not a length up to the block size limit ${BLOCK_SIZE_MAX_BYTES}`)
    }
    const growthBytes = Math.max(0, replicaBytes(lengthBytes) - replicaBytes(this.replica.lengthBytes))
    if (growthBytes > this.store.remainingBytes()) {
      throw new LoamError('no-space', `blk_${this.id}: no space left on this datanode for ${growthBytes} more bytes`)
    }
    this.markRewrites(lengthBytes, lengthBytes + 1)
    this.issued++
    this.issuedEndBytes = lengthBytes
    const op = this.exclusive(async () => {
      try {
        if (lengthBytes > this.replica.lengthBytes) await this.extendTo(lengthBytes)
        else if (lengthBytes < this.replica.lengthBytes) {
          await this.cutTo(lengthBytes)
          this.landed(lengthBytes)
        }
      } catch (err) {
        throw fsError(err, `blk_${this.id}: resizing to ${lengthBytes} bytes`)
      }
    })
    await this.track(op)
  }

  /**
   * Marks, before a change of [fromBytes, toBytes) starts, the chunks it
   * rewrites that already hold bytes (see rewrite-marks.ts); past the end,
   * the old last chunk when a gap before the change grows it.
   */
  private markRewrites(fromBytes: number, toBytes: number): void {
    const heldBytes = this.issuedEndBytes
    const first = Math.floor(Math.min(fromBytes, heldBytes) / CHUNK_BYTES)
    const last = Math.min(Math.floor((toBytes - 1) / CHUNK_BYTES), Math.ceil(heldBytes / CHUNK_BYTES) - 1)
    if (last < first) return
    try {
      this.marks.mark(first, last)
    } catch (err) {
      throw fsError(err, `blk_${this.id}: marking chunks ${first}-${last} before rewriting them`)
    }
  }

  private async track(op: Promise<void>): Promise<void> {
    this.inflight.add(op)
    try {
      await op
    } finally {
      this.inflight.delete(op)
    }
  }

  /** The replica's length follows what landed, unless the replica was since recovered or removed. */
  private landed(lengthBytes: number): void {
    if (this.replica.state === 'rbw' && this.replica.genStamp === this.genStamp) this.store.setLength(this.replica, lengthBytes)
  }

  private async writeAt(offsetBytes: number, data: Buffer[], checksums: Buffer, endBytes: number): Promise<void> {
    try {
      await Promise.all([
        this.writeData(data, offsetBytes, endBytes - offsetBytes),
        writeFully(this.meta, checksums, META_HEADER_BYTES + (offsetBytes / CHUNK_BYTES) * CHECKSUM_BYTES),
      ])
    } catch (err) {
      throw fsError(err, `blk_${this.id}: writing at ${offsetBytes}`)
    }
    // Only after both land, so a reader never sees a length the checksums do not cover.
    if (endBytes > this.replica.lengthBytes) this.landed(endBytes)
  }

  /** Whole pages go straight to the device where the filesystem allows it; anything else through the page cache. */
  private async writeData(pieces: Buffer[], offsetBytes: number, lengthBytes: number): Promise<void> {
    if (offsetBytes % DIRECT_ALIGN_BYTES === 0 && lengthBytes % DIRECT_ALIGN_BYTES === 0) {
      const io = this.store.directIo
      this.direct ??= io.open(this.replica.dir, this.replica.dataPath)
      const handle = await this.direct
      if (handle && (await io.write(this.replica.dir, handle, pieces, offsetBytes, lengthBytes))) return
    }
    await writevFully(this.data, pieces, offsetBytes)
  }

  private async closeDirect(): Promise<void> {
    const handle = await this.direct
    this.direct = undefined
    await handle?.close()
  }

  /** A write that is not plain (see write): runs alone, so the length and the bytes it merges with hold still. */
  private async mergeWriteAt(offsetBytes: number, pieces: Buffer[], checksums: Buffer, endBytes: number): Promise<void> {
    try {
      // A gap before the write reads as zeros.
      if (offsetBytes > this.replica.lengthBytes) await this.extendTo(offsetBytes)
      const oldBytes = this.replica.lengthBytes
      const firstChunk = Math.floor(offsetBytes / CHUNK_BYTES)
      const lastChunk = Math.floor((endBytes - 1) / CHUNK_BYTES)
      const headBytes = offsetBytes - firstChunk * CHUNK_BYTES
      const tailKept = endBytes % CHUNK_BYTES !== 0 && endBytes < oldBytes
      if (headBytes === 0 && !tailKept) return await this.writeAt(offsetBytes, pieces, checksums, endBytes)

      // The touched chunks as they will be: old bytes either side of the payload, the payload over them.
      const rangeStart = firstChunk * CHUNK_BYTES
      const rangeEnd = Math.min((lastChunk + 1) * CHUNK_BYTES, Math.max(oldBytes, endBytes))
      assert(rangeEnd - rangeStart <= MERGE_BYTES_MAX, 'a merged write spans one payload and a chunk either side')
      const merged = Buffer.allocUnsafe(rangeEnd - rangeStart)
      if (headBytes > 0) (await this.readCheckedChunk(firstChunk, oldBytes, `writing at ${offsetBytes}`)).copy(merged, 0)
      if (tailKept && (lastChunk !== firstChunk || headBytes === 0)) {
        (await this.readCheckedChunk(lastChunk, oldBytes, `writing at ${offsetBytes}`)).copy(merged, lastChunk * CHUNK_BYTES - rangeStart)
      }
      let at = offsetBytes - rangeStart
      for (const piece of pieces) at += piece.copy(merged, at)
      let sums: Buffer
      if (headBytes === 0) {
        // Payload chunks line up with the replica's: only the last, merged with old bytes, is hashed again.
        sums = Buffer.from(checksums)
        const lastIndex = lastChunk - firstChunk
        chunkChecksums(merged.subarray(lastIndex * CHUNK_BYTES)).copy(sums, lastIndex * CHECKSUM_BYTES)
      } else {
        sums = chunkChecksums(merged)
      }
      assert(sums.length === (lastChunk - firstChunk + 1) * CHECKSUM_BYTES, 'one checksum per touched chunk')
      // Only the payload goes to disk: the old bytes merged in are already there.
      await Promise.all([writevFully(this.data, pieces, offsetBytes), writeFully(this.meta, sums, META_HEADER_BYTES + firstChunk * CHECKSUM_BYTES)])
      if (endBytes > oldBytes) this.landed(endBytes)
    } catch (err) {
      throw fsError(err, `blk_${this.id}: writing at ${offsetBytes}`)
    }
  }

  /** Zero-extends the replica to lengthBytes without writing zeros: a sparse ftruncate, and the checksums to match. */
  private async extendTo(lengthBytes: number): Promise<void> {
    const oldBytes = this.replica.lengthBytes
    assert(lengthBytes > oldBytes && lengthBytes <= BLOCK_SIZE_MAX_BYTES, 'extension grows the replica within the block size limit')
    const firstChunk = Math.floor(oldBytes / CHUNK_BYTES)
    const start = firstChunk * CHUNK_BYTES
    const sums = zeroChecksums(lengthBytes - start)
    if (oldBytes > start) {
      // The old last chunk grows: its bytes, then zeros up to its new end.
      const grown = Buffer.alloc(Math.min(CHUNK_BYTES, lengthBytes - start))
      ;(await this.readCheckedChunk(firstChunk, oldBytes, `extending to ${lengthBytes} bytes`)).copy(grown, 0)
      chunkChecksums(grown).copy(sums, 0)
    }
    await Promise.all([this.data.truncate(lengthBytes), writeFully(this.meta, sums, META_HEADER_BYTES + firstChunk * CHECKSUM_BYTES)])
    this.landed(lengthBytes)
  }

  /** A chunk's bytes on disk (those below oldBytes), checked against its stored checksum before it is hashed again. */
  private async readCheckedChunk(chunk: number, oldBytes: number, doing: string): Promise<Buffer> {
    const start = chunk * CHUNK_BYTES
    assert(start < oldBytes, 'the chunk read back holds bytes')
    const old = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, oldBytes - start))
    const sum = Buffer.allocUnsafe(CHECKSUM_BYTES)
    const [n, m] = await Promise.all([readFully(this.data, old, start), readFully(this.meta, sum, META_HEADER_BYTES + chunk * CHECKSUM_BYTES)])
    // A bad chunk must not be hashed again: that would make damage look whole.
    if (n !== old.length || m !== sum.length || firstBadChunk(old, sum) !== -1) {
      throw new LoamError('corrupt', `blk_${this.id}: chunk ${chunk} fails its checksum while ${doing}; the replica needs block recovery`)
    }
    return old
  }

  /** Makes everything written so far durable. */
  async sync(): Promise<void> {
    this.checkOpen()
    const quiet = this.inflight.size === 0 && this.barrier === undefined
    const issued = this.issued
    try {
      await Promise.all([this.data.datasync(), this.meta.datasync()])
      // Every write marked so far is durable, and none began meanwhile: no chunk is mid-rewrite.
      if (quiet && this.issued === issued) this.marks.clear()
      // The files' names must survive a crash too, once.
      if (!this.rbwDirSynced) {
        await fsyncDir(this.rbwDir)
        this.rbwDirSynced = true
      }
    } catch (err) {
      throw fsError(err, `blk_${this.id}: syncing`)
    }
  }

  /**
   * Cuts the replica to lengthBytes (at most its length), makes it durable and
   * moves it into finalized/. A cut inside a written chunk re-checksums that
   * chunk after checking its old bytes against the old checksum.
   */
  async finalize(lengthBytes: number): Promise<ReplicaInfo> {
    return this.store.locked(this.id, async () => {
      this.checkOpen()
      // Writes still in flight count towards what was written.
      this.state = 'closing'
      await Promise.allSettled([...this.inflight])
      if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes > this.replica.lengthBytes) {
        this.state = 'open'
        throw new LoamError('invalid-argument', `blk_${this.id}: finalize at ${lengthBytes} bytes, but the replica holds ${this.replica.lengthBytes}`)
      }
      try {
        await this.cutTo(lengthBytes)
        await Promise.all([this.data.sync(), this.meta.sync()])
        this.marks.close()
        await Promise.all([this.data.close(), this.meta.close(), this.closeDirect(), RewriteMarks.remove(this.marks.path)])
        const final = this.store.finalizedPaths(this.replica)
        // Meta first: the startup scan completes a finalize whose data rename did not happen.
        await fs.rename(this.replica.metaPath, final.metaPath)
        await fs.rename(this.replica.dataPath, final.dataPath)
        await Promise.all([fsyncDir(final.dir), fsyncDir(this.rbwDir)])
        this.store.setLength(this.replica, lengthBytes)
        this.replica.state = 'finalized'
        this.replica.dataPath = final.dataPath
        this.replica.metaPath = final.metaPath
      } catch (err) {
        const e = fsError(err, `blk_${this.id}: finalizing`)
        await this.closeFiles(e, 'failed')
        throw e
      }
      this.state = 'finalized'
      this.why = new LoamError('invalid-argument', `blk_${this.id}: already finalized`)
      this.store.forgetWriter(this)
      return publicInfo(this.replica)
    })
  }

  private async cutTo(lengthBytes: number): Promise<void> {
    const oldBytes = this.replica.lengthBytes
    const lastChunk = Math.floor(lengthBytes / CHUNK_BYTES)
    const chunkStart = lastChunk * CHUNK_BYTES
    if (lengthBytes % CHUNK_BYTES !== 0 && lengthBytes < Math.min(oldBytes, chunkStart + CHUNK_BYTES)) {
      // The stored checksum covers bytes past the cut: check the old bytes, then hash what stays.
      const old = await this.readCheckedChunk(lastChunk, oldBytes, `cutting to ${lengthBytes} bytes`)
      await writeFully(this.meta, chunkChecksums(old.subarray(0, lengthBytes - chunkStart)), META_HEADER_BYTES + lastChunk * CHECKSUM_BYTES)
    }
    await Promise.all([this.data.truncate(lengthBytes), this.meta.truncate(metaBytes(lengthBytes))])
  }

  /**
   * Closes and deletes the replica being written; nothing after a finalize.
   * A replica opened for update only is released (see release): its bytes
   * predate this write, and block recovery decides what of them stays.
   */
  async abort(): Promise<void> {
    if (this.update) return this.release()
    await this.store.locked(this.id, () => this.abortLocked(new LoamError('invalid-argument', `blk_${this.id}: write aborted`)))
  }

  /**
   * Stops this write and closes its files, but leaves the rbw replica on disk
   * for block recovery (ReplicaStore.inspect/recover) to finalize what of it
   * verifies. Later calls fail; nothing after a finalize or abort.
   */
  async release(): Promise<void> {
    await this.store.locked(this.id, async () => {
      if (this.state !== 'open' && this.state !== 'closing') return
      await this.closeFiles(new LoamError('invalid-argument', `blk_${this.id}: write released; the replica awaits block recovery`), 'failed')
    })
  }

  /** @internal abort with the id's lock already held: removes the replica (a delete, or a newer write replacing it). */
  async abortLocked(why: LoamError): Promise<void> {
    if (this.state === 'finalized' || this.state === 'aborted') return
    await this.closeFiles(why, 'aborted')
    // A released write's replica may since have been recovered (finalized, or re-stamped): that is no longer ours to remove.
    if (this.replica.state === 'rbw' && this.replica.genStamp === this.genStamp) await this.store.removeReplica(this.replica)
  }

  /** @internal stops writes, waits for those in flight, closes both files. */
  async closeFiles(why: LoamError, state: WriterState = 'aborted'): Promise<void> {
    const wasOpen = this.state === 'open' || this.state === 'closing'
    this.state = state
    this.why = why
    this.store.forgetWriter(this)
    if (!wasOpen) return
    await Promise.allSettled([...this.inflight])
    this.marks.close()
    await Promise.allSettled([this.data.close(), this.meta.close(), this.closeDirect()])
  }

  private checkOpen(): void {
    if (this.state !== 'open') {
      throw this.why ?? new LoamError('invalid-argument', `blk_${this.id}: writer is ${this.state}`)
    }
  }
}
