// Namespace operations: pure rules over a transaction with synchronous reads.
// Each operation reads, checks and writes within one call, so it is atomic
// with respect to every other operation; the server then commits the
// transaction's writes as one durable batch.
import { assert, LoamError } from '../rpc/errors.js'
import { InodeType, type BlockRef, type FileStatus, type InodeRecord, type SnapshotRecord, type VolumeRecord } from '../rpc/messages.js'
import { checkBlockSize, checkReplication } from '../common/validate.js'
import { joinPath, parsePath } from './paths.js'
import type { Owned, SubtreeDir } from './permissions.js'
import { CLIENT_NAME_BYTES_MAX, SNAPSHOTS_PER_VOLUME_MAX, SYMLINK_TARGET_BYTES_MAX, XATTR_NAME_BYTES_MAX, XATTR_VALUE_BYTES_MAX, XATTRS_PER_INODE_MAX } from '../limits.js'
import { attached, charge, checkEpoch, checkSnapshotName, checkVolumeName, checkVolumeSize, detached, resized, SNAPSHOTS_DIR, volumePath, VOLUMES_DIR } from '../volumes/volume.js'

function checkXattrName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_BYTES_MAX || name.includes('\0')) {
    throw new LoamError('invalid-argument', `xattr name must be 1 to ${XATTR_NAME_BYTES_MAX} bytes without NUL`)
  }
  // Xattrs travel and are kept as a plain object (a protobuf map), where this key would set the
  // prototype instead of an entry: it could be set but never read back. No xattr namespace
  // (user., trusted., security., system.) makes such a name, so it is refused.
  if (name === '__proto__') throw new LoamError('invalid-argument', "xattr name '__proto__' is reserved")
}

/** A lease holder's name: an empty one would match every file no one writes, so it is refused wherever a lease is named. */
export function checkClientName(clientName: string, what: string): void {
  if (!clientName || Buffer.byteLength(clientName) > CLIENT_NAME_BYTES_MAX) throw new LoamError('invalid-argument', `${what} needs a client name of 1 to ${CLIENT_NAME_BYTES_MAX} bytes`)
}

export const ROOT_ID = 1

export interface NamespaceTxn {
  inode(id: number): InodeRecord | undefined
  child(parentId: number, name: string): number | undefined
  putInode(rec: InodeRecord): void
  deleteInode(id: number): void
  link(parentId: number, name: string, childId: number): void
  unlink(parentId: number, name: string): void
  /** Marks a detached subtree for background removal. */
  collect(rootId: number): void
  allocInodeId(): number
  allocBlockId(): number
  nextGenStamp(): number
  volume(name: string): VolumeRecord | undefined
  putVolume(rec: VolumeRecord): void
  deleteVolume(name: string): void
}

export interface Caller {
  user: string
  group: string
  nowMs: number
  /** The volume attachment the caller writes under (0: none). */
  epoch?: number
  /** The superuser may continue any user's write (lease recovery by an administrator). */
  superuser?: boolean
}

/** Whether caller writes as the user who holds rec's lease (or is the superuser). */
function leaseUserMatches(rec: InodeRecord, caller: Caller): boolean {
  return caller.superuser === true || rec.leaseUser === caller.user
}

/** A file someone else writes: the holder's client name is told only to the holder's own user. */
function leaseConflict(path: string, rec: InodeRecord, caller: Caller): LoamError {
  const holder = leaseUserMatches(rec, caller) ? ` (${rec.leaseHolder})` : ''
  return new LoamError('lease', `${path}: is open for writing by another client${holder}; wait until it closes the file or its lease expires`)
}

export interface Defaults {
  replication: number
  blockSizeBytes: number
}

/** Every directory of a subtree: its entries (name, inode id), read before a copy. */
export type Tree = Map<number, Array<[string, number]>>

/** What an operation freed: blocks whose replicas can be deleted. */
export interface Freed {
  blocks: BlockRef[]
}

interface Resolved {
  parts: string[]
  parentId: number
  name: string
  id: number | undefined
}

export function newInode(id: number, type: InodeType, caller: Caller, mode: number): InodeRecord {
  return {
    id,
    type,
    mode: mode & 0o7777,
    owner: caller.user,
    group: caller.group,
    mtimeMs: caller.nowMs,
    atimeMs: caller.nowMs,
    ctimeMs: caller.nowMs,
    nlink: 1,
    replication: 0,
    blockSizeBytes: 0,
    lengthBytes: 0,
    blocks: [],
    symlinkTarget: '',
    xattrs: {},
    leaseHolder: '',
    leaseUser: '',
    parentId: 0,
    children: 0,
    updatingBlocks: [],
    volume: '',
    readOnly: false,
  }
}

/**
 * /.snapshots, its per-volume directories and every snapshot's root are the
 * system's (read-only directories, named by volume records): removed or moved
 * only through the volume commands, so a record never names a tree that is
 * gone. (What is inside a snapshot is kept by its read-only parent.)
 */
function keepSnapshot(rec: InodeRecord, path: string): void {
  if (rec.readOnly && rec.type === InodeType.DIRECTORY) {
    throw new LoamError('read-only', `${path}: belongs to the volume snapshots and cannot be removed, moved or replaced; use 'loam volume snapshot rm VOLUME SNAPSHOT' or 'loam volume rm VOLUME'`)
  }
}

export class Namespace {
  /** writer: who the write-path operations (addBlock, commitBlocks, ...) act for, for the volume epoch check. */
  constructor(
    private readonly txn: NamespaceTxn,
    private readonly writer?: Caller,
  ) {}

  /** Walks a path; the last component may be missing. */
  resolve(path: string): Resolved {
    const parts = parsePath(path)
    if (parts.length === 0) return { parts, parentId: 0, name: '', id: ROOT_ID }
    let dir = ROOT_ID
    for (let i = 0; i < parts.length - 1; i++) {
      const next = this.txn.child(dir, parts[i]!)
      const prefix = joinPath(parts.slice(0, i + 1))
      if (next === undefined) throw new LoamError('not-found', `${prefix}: no such file or directory`)
      const rec = this.mustInode(next)
      if (rec.type !== InodeType.DIRECTORY) throw new LoamError('not-a-directory', `${prefix}: not a directory`)
      dir = next
    }
    const name = parts[parts.length - 1]!
    return { parts, parentId: dir, name, id: this.txn.child(dir, name) }
  }

  /** What a path names, from the root down, for permission checks: undefined from the first missing component. */
  inodesOf(path: string): Array<Owned | undefined> {
    const out: Array<Owned | undefined> = []
    let rec: InodeRecord | undefined = this.mustInode(ROOT_ID)
    for (const name of [undefined, ...parsePath(path)]) {
      if (name !== undefined) {
        const id: number | undefined = rec?.type === InodeType.DIRECTORY ? this.txn.child(rec.id, name) : undefined
        rec = id === undefined ? undefined : this.txn.inode(id)
      }
      out.push(rec && { owner: rec.owner, group: rec.group, mode: rec.mode, isDir: rec.type === InodeType.DIRECTORY })
    }
    return out
  }

  /** The directories of a subtree (tree: its entries as read before), as they are now, for checkSubtree. */
  subtreeDirs(path: string, rootId: number, tree: Tree): SubtreeDir[] {
    const out: SubtreeDir[] = []
    const queue: Array<[number, string]> = [[rootId, path]]
    while (queue.length > 0) {
      const [id, dirPath] = queue.shift()!
      const rec = this.txn.inode(id)
      if (rec?.type !== InodeType.DIRECTORY) continue // removed since the tree was read
      out.push({ path: dirPath, rec: { owner: rec.owner, group: rec.group, mode: rec.mode, isDir: true }, empty: rec.children === 0 })
      for (const [name, child] of tree.get(id) ?? []) if (tree.has(child)) queue.push([child, `${dirPath.replace(/\/+$/, '')}/${name}`])
    }
    return out
  }

  get(path: string): InodeRecord {
    const r = this.resolve(path)
    if (r.id === undefined) throw new LoamError('not-found', `${joinPath(r.parts)}: no such file or directory`)
    return this.mustInode(r.id)
  }

  mkdirs(path: string, mode: number, parents: boolean, caller: Caller): InodeRecord {
    const parts = parsePath(path)
    let dir = this.mustInode(ROOT_ID)
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!
      const prefix = joinPath(parts.slice(0, i + 1))
      const existing = this.txn.child(dir.id, name)
      const last = i === parts.length - 1
      if (existing !== undefined) {
        const rec = this.mustInode(existing)
        if (rec.type !== InodeType.DIRECTORY) throw new LoamError(last ? 'exists' : 'not-a-directory', `${prefix}: ${last ? 'exists and is not a directory' : 'not a directory'}`)
        if (last && !parents) throw new LoamError('exists', `${prefix}: directory exists`)
        dir = rec
        continue
      }
      if (!last && !parents) throw new LoamError('not-found', `${prefix}: no such file or directory (use -p to create parents)`)
      this.guard(dir, caller)
      const rec = newInode(this.txn.allocInodeId(), InodeType.DIRECTORY, caller, mode)
      rec.parentId = dir.id
      rec.nlink = 2
      rec.volume = dir.volume
      this.txn.putInode(rec)
      this.addEntry(dir, name, rec.id, caller, true)
      dir = rec
    }
    return dir
  }

  /** Creates (or replaces, with overwrite) a file open for writing by clientName. */
  create(
    path: string,
    opts: { mode: number; replication: number; blockSizeBytes: number; overwrite: boolean; createParents: boolean; clientName: string },
    defaults: Defaults,
    caller: Caller,
    leaseExpired: (rec: InodeRecord) => boolean,
  ): { inode: InodeRecord; freed: Freed } {
    // What the caller asked for is checked before anything is made (parents included).
    if (opts.replication) checkReplication(opts.replication)
    if (opts.blockSizeBytes) checkBlockSize(opts.blockSizeBytes)
    checkClientName(opts.clientName, 'create')
    const parts = parsePath(path)
    if (parts.length === 0) throw new LoamError('is-a-directory', '/: is a directory')
    if (opts.createParents && parts.length > 1) {
      try {
        this.mkdirs(joinPath(parts.slice(0, -1)), 0o755, true, caller)
      } catch (err) {
        // The parent exists as a file: for the file being created that is 'not a directory'.
        if (err instanceof LoamError && err.code === 'exists') throw new LoamError('not-a-directory', err.message.replace('exists and is not a directory', 'not a directory'))
        throw err
      }
    }
    const r = this.resolve(path)
    const parent = this.mustInode(r.parentId)
    this.guard(parent, caller)
    // A file in a volume takes the volume's replication and block size unless asked otherwise.
    const vol = this.volumeOf(parent)
    const replication = opts.replication || vol?.replication || defaults.replication
    const blockSizeBytes = opts.blockSizeBytes || vol?.blockSizeBytes || defaults.blockSizeBytes
    checkReplication(replication)
    checkBlockSize(blockSizeBytes)
    let freed: Freed = { blocks: [] }
    if (r.id !== undefined) {
      const old = this.mustInode(r.id)
      if (old.type === InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${path}: is a directory`)
      if (!opts.overwrite) throw new LoamError('exists', `${path}: file exists (use --force to overwrite)`)
      if (old.leaseHolder && (old.leaseHolder !== opts.clientName || old.leaseUser !== caller.user) && !leaseExpired(old)) throw leaseConflict(path, old, caller)
      freed = this.removeEntry(r.parentId, r.name, old, caller)
    }
    const rec = newInode(this.txn.allocInodeId(), InodeType.FILE, caller, opts.mode)
    rec.replication = replication
    rec.blockSizeBytes = blockSizeBytes
    rec.leaseHolder = opts.clientName
    rec.leaseUser = caller.user
    rec.volume = parent.volume
    this.txn.putInode(rec)
    this.addEntry(this.mustInode(r.parentId), r.name, rec.id, caller, false)
    return { inode: rec, freed }
  }

  /**
   * Checks that clientName, writing as the writer's user, holds the lease on the
   * file at path (inode id guards against a replaced file). A client name alone
   * proves nothing: another user who learns it must not take the write over.
   */
  underConstruction(path: string, inodeId: number, clientName: string): InodeRecord {
    checkClientName(clientName, `writing ${path}`)
    const writer = this.writer
    assert(writer, 'the write path names the caller it acts for')
    const rec = this.get(path)
    if (rec.type !== InodeType.FILE) throw new LoamError('is-a-directory', `${path}: is a directory`)
    if (inodeId && rec.id !== inodeId) throw new LoamError('not-found', `${path}: was replaced or removed while being written`)
    // A fenced holder hears that first: its lease went with the attachment.
    this.guard(rec, writer)
    if (!rec.leaseHolder) throw new LoamError('lease', `${path}: is not open for writing; open it again`)
    if (rec.leaseHolder !== clientName || !leaseUserMatches(rec, writer)) throw leaseConflict(path, rec, writer)
    return rec
  }

  /** Commits the previous block's length and appends a new, empty block. */
  addBlock(path: string, inodeId: number, clientName: string, previous: BlockRef | null | undefined): { inode: InodeRecord; block: BlockRef } {
    const rec = this.underConstruction(path, inodeId, clientName)
    // The previous block may be finishing (and so recovering) beside this call: a newer generation wins.
    this.commitLast(rec, previous, true)
    const block: BlockRef = { id: this.txn.allocBlockId(), genStamp: this.txn.nextGenStamp(), lengthBytes: 0 }
    rec.blocks.push(block)
    this.txn.putInode(rec)
    return { inode: rec, block }
  }

  /**
   * A new generation for a block of a file being written (its pipeline failed;
   * the writer sends it again). The block being written restarts at length 0;
   * an earlier block keeps the length committed for it.
   */
  bumpBlock(path: string, inodeId: number, clientName: string, blockId: number): { inode: InodeRecord; block: BlockRef; last: boolean } {
    const rec = this.underConstruction(path, inodeId, clientName)
    const i = rec.blocks.findIndex((b) => b.id === blockId)
    const block = rec.blocks[i]
    if (!block) throw new LoamError('invalid-argument', `${path}: block ${blockId} is not a block of this file`)
    const last = i === rec.blocks.length - 1
    block.genStamp = this.txn.nextGenStamp()
    if (last) block.lengthBytes = 0
    this.txn.putInode(rec)
    return { inode: rec, block: { ...block }, last }
  }

  /**
   * Closes a file whose writer went away: its last block becomes last (the
   * recovered generation and length), or is dropped when no replica has it.
   */
  finishLeaseRecovery(inodeId: number, last: BlockRef | null, nowMs: number, updated: BlockRef[] = []): { inode: InodeRecord; dropped: BlockRef | undefined } {
    const rec = this.txn.inode(inodeId)
    if (!rec || rec.type !== InodeType.FILE || !rec.leaseHolder) throw new LoamError('not-found', `inode ${inodeId} is not open for writing`)
    for (const ref of updated) {
      const block = rec.blocks.find((b) => b.id === ref.id)
      if (block) Object.assign(block, ref)
    }
    rec.updatingBlocks = []
    const tail = rec.blocks[rec.blocks.length - 1]
    let dropped: BlockRef | undefined
    if (tail && last && last.id === tail.id && last.lengthBytes > 0) {
      tail.genStamp = last.genStamp
      tail.lengthBytes = last.lengthBytes
    } else if (tail && (!last || last.id === tail.id)) {
      dropped = rec.blocks.pop()
    }
    // Recovery records what the replicas hold, quota or not: it is already written.
    this.setLength(rec, rec.blocks.reduce((sum, b) => sum + b.lengthBytes, 0), true)
    rec.leaseHolder = ''
    rec.leaseUser = ''
    rec.mtimeMs = nowMs
    this.txn.putInode(rec)
    return { inode: rec, dropped }
  }

  /** Takes the lease on an existing file, for writes at any offset (a mount's open for writing). */
  openForWrite(path: string, clientName: string): InodeRecord {
    checkClientName(clientName, 'opening for writing')
    const writer = this.writer
    assert(writer, 'the write path names the caller it acts for')
    const rec = this.get(path)
    if (rec.type === InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${path}: is a directory`)
    if (rec.type !== InodeType.FILE) throw new LoamError('invalid-argument', `${path}: not a regular file`)
    // An expired holder's blocks are recovered first (within a second or two): until then the file stays theirs.
    if (rec.leaseHolder && (rec.leaseHolder !== clientName || rec.leaseUser !== writer.user)) throw leaseConflict(path, rec, writer)
    this.guard(rec, writer)
    rec.leaseHolder = clientName
    rec.leaseUser = writer.user
    this.txn.putInode(rec)
    return rec
  }

  /**
   * Starts (or, with a failed pipeline, restarts) an in-place update of one
   * block: a new generation stamp makes every replica that misses the update stale.
   */
  updateBlock(path: string, inodeId: number, clientName: string, blockId: number): { inode: InodeRecord; block: BlockRef; index: number; wasUpdating: boolean } {
    const rec = this.underConstruction(path, inodeId, clientName)
    const index = rec.blocks.findIndex((b) => b.id === blockId)
    const block = rec.blocks[index]
    if (!block) throw new LoamError('invalid-argument', `${path}: block ${blockId} is not a block of this file`)
    block.genStamp = this.txn.nextGenStamp()
    const wasUpdating = rec.updatingBlocks.includes(blockId)
    if (!wasUpdating) rec.updatingBlocks.push(blockId)
    this.txn.putInode(rec)
    return { inode: rec, block: { ...block }, index, wasUpdating }
  }

  /** Appends an empty block written at any offset (a mount extending a file). */
  addUpdatingBlock(path: string, inodeId: number, clientName: string): { inode: InodeRecord; block: BlockRef } {
    // The tail is being filled by the same writer; CommitBlocks checks that it ends up full.
    const rec = this.underConstruction(path, inodeId, clientName)
    const block: BlockRef = { id: this.txn.allocBlockId(), genStamp: this.txn.nextGenStamp(), lengthBytes: 0 }
    rec.blocks.push(block)
    rec.updatingBlocks.push(block.id)
    this.txn.putInode(rec)
    return { inode: rec, block }
  }

  /**
   * Records what a writer at any offset has made durable: blocks' new
   * generations and lengths, optionally a cut (truncate) and the end of writing.
   */
  commitBlocks(
    req: { path: string; inodeId: number; clientName: string; blocks: BlockRef[]; truncate: boolean; blockCount: number; close: boolean; mtimeMs: number },
    caller: Caller,
  ): { inode: InodeRecord; freed: Freed; finished: number[] } {
    const rec = this.underConstruction(req.path, req.inodeId, req.clientName)
    for (const ref of req.blocks) {
      const block = rec.blocks.find((b) => b.id === ref.id)
      if (!block) throw new LoamError('invalid-argument', `${req.path}: block ${ref.id} is not a block of this file`)
      if (ref.genStamp < block.genStamp) throw new LoamError('stale-generation', `block ${ref.id} generation ${ref.genStamp} is older than ${block.genStamp}`)
      if (ref.lengthBytes > rec.blockSizeBytes) throw new LoamError('invalid-argument', `block ${ref.id} length ${ref.lengthBytes} is over the block size ${rec.blockSizeBytes}`)
      block.genStamp = ref.genStamp
      block.lengthBytes = ref.lengthBytes
    }
    let freed: Freed = { blocks: [] }
    if (req.truncate) {
      if (req.blockCount > rec.blocks.length) throw new LoamError('invalid-argument', `${req.path}: cannot keep ${req.blockCount} of ${rec.blocks.length} blocks`)
      freed = { blocks: rec.blocks.splice(req.blockCount) }
      rec.updatingBlocks = rec.updatingBlocks.filter((id) => !freed.blocks.some((b) => b.id === id))
    }
    rec.blocks.forEach((b, i) => {
      if (i < rec.blocks.length - 1 && b.lengthBytes !== rec.blockSizeBytes) throw new LoamError('invalid-argument', `${req.path}: block ${b.id} is not full but is not the last`)
    })
    this.setLength(rec, rec.blocks.reduce((sum, b) => sum + b.lengthBytes, 0))
    // Closing without changes since the last commit keeps times set in between (utimens after write, as tar does).
    if (req.blocks.length > 0 || req.truncate) {
      rec.mtimeMs = req.mtimeMs || caller.nowMs
      rec.ctimeMs = caller.nowMs
    }
    const finished = req.close ? rec.updatingBlocks : []
    if (req.close) {
      rec.leaseHolder = ''
      rec.leaseUser = ''
      rec.updatingBlocks = []
    }
    this.txn.putInode(rec)
    return { inode: rec, freed, finished }
  }

  /** A second name for a file (a hard link). */
  link(src: string, dst: string, caller: Caller): InodeRecord {
    const rec = this.get(src)
    if (rec.type === InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${src}: hard links to directories are not allowed`)
    const d = this.resolve(dst)
    if (d.parts.length === 0 || d.id !== undefined) throw new LoamError('exists', `${dst}: exists`)
    const dstParent = this.mustInode(d.parentId)
    this.guard(dstParent, caller)
    if (dstParent.volume !== rec.volume) throw new LoamError('cross-volume', `${src} -> ${dst}: a hard link cannot cross a volume's boundary`)
    rec.nlink++
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
    this.addEntry(this.mustInode(d.parentId), d.name, rec.id, caller, false)
    return rec
  }

  symlink(target: string, path: string, caller: Caller): InodeRecord {
    if (target.length === 0) throw new LoamError('invalid-argument', `${path}: a symlink needs a target`)
    if (Buffer.byteLength(target) > SYMLINK_TARGET_BYTES_MAX) throw new LoamError('invalid-argument', `${path}: symlink target is over ${SYMLINK_TARGET_BYTES_MAX} bytes`)
    if (target.includes('\0')) throw new LoamError('invalid-argument', `${path}: symlink target contains NUL`)
    const r = this.resolve(path)
    if (r.parts.length === 0 || r.id !== undefined) throw new LoamError('exists', `${path}: exists`)
    const parent = this.mustInode(r.parentId)
    this.guard(parent, caller)
    const rec = newInode(this.txn.allocInodeId(), InodeType.SYMLINK, caller, 0o777)
    rec.volume = parent.volume
    rec.symlinkTarget = target
    rec.lengthBytes = Buffer.byteLength(target)
    this.txn.putInode(rec)
    this.addEntry(this.mustInode(r.parentId), r.name, rec.id, caller, false)
    return rec
  }

  setXattr(path: string, name: string, value: Uint8Array, flags: { create: boolean; replace: boolean }, caller: Caller): void {
    checkXattrName(name)
    if (value.length > XATTR_VALUE_BYTES_MAX) throw new LoamError('invalid-argument', `${path}: xattr value is over ${XATTR_VALUE_BYTES_MAX} bytes`)
    const rec = this.get(path)
    this.guard(rec, caller)
    const exists = Object.hasOwn(rec.xattrs, name)
    if (flags.create && exists) throw new LoamError('exists', `${path}: xattr ${name} exists`)
    if (flags.replace && !exists) throw new LoamError('no-xattr', `${path}: no xattr ${name}`)
    if (!exists && Object.keys(rec.xattrs).length >= XATTRS_PER_INODE_MAX) throw new LoamError('no-space', `${path}: at most ${XATTRS_PER_INODE_MAX} xattrs per file`)
    rec.xattrs[name] = value
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
  }

  removeXattr(path: string, name: string, caller: Caller): void {
    checkXattrName(name)
    const rec = this.get(path)
    this.guard(rec, caller)
    if (!Object.hasOwn(rec.xattrs, name)) throw new LoamError('no-xattr', `${path}: no xattr ${name}`)
    delete rec.xattrs[name]
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
  }

  /** A volume: its record and its root directory, /volumes/NAME, owned by the caller. */
  createVolume(req: { name: string; sizeBytes: number; replication: number; blockSizeBytes: number }, defaults: Defaults, capacityBytes: number, caller: Caller): VolumeRecord {
    checkVolumeName(req.name)
    checkVolumeSize(req.sizeBytes, capacityBytes)
    const replication = req.replication || defaults.replication
    const blockSizeBytes = req.blockSizeBytes || defaults.blockSizeBytes
    checkReplication(replication)
    checkBlockSize(blockSizeBytes)
    if (this.txn.volume(req.name)) throw new LoamError('exists', `volume ${req.name} exists`)
    const parent = this.mkdirs(`/${VOLUMES_DIR}`, 0o755, true, caller)
    if (this.txn.child(parent.id, req.name) !== undefined) throw new LoamError('exists', `${volumePath(req.name)} exists and is not a volume; move it away first`)
    const root = newInode(this.txn.allocInodeId(), InodeType.DIRECTORY, caller, 0o755)
    root.parentId = parent.id
    root.nlink = 2
    root.volume = req.name
    this.txn.putInode(root)
    this.addEntry(parent, req.name, root.id, caller, true)
    const vol: VolumeRecord = { name: req.name, sizeBytes: req.sizeBytes, usedBytes: 0, replication, blockSizeBytes, owner: caller.user, group: caller.group, createdMs: caller.nowMs, rootId: root.id, attachedNode: '', epoch: 0, snapshots: [] }
    this.txn.putVolume(vol)
    return vol
  }

  volume(name: string): VolumeRecord {
    checkVolumeName(name)
    const vol = this.txn.volume(name)
    if (!vol) throw new LoamError('not-found', `volume ${name}: no such volume (see 'loam volume ls')`)
    return vol
  }

  /** Removes a volume and everything in it; refused while attached unless forced. */
  deleteVolume(name: string, force: boolean, caller: Caller): Freed {
    const vol = this.volume(name)
    if (vol.attachedNode && !force) throw new LoamError('lease', `volume ${name} is attached to ${vol.attachedNode}; detach it first, or use --force`)
    const root = this.mustInode(vol.rootId)
    this.txn.deleteVolume(name)
    const freed = this.removeEntry(root.parentId, name, root, caller)
    // Its snapshots go with it.
    for (const snap of vol.snapshots) {
      const s = this.mustInode(snap.rootId)
      freed.blocks.push(...this.removeEntry(s.parentId, snap.name, s, caller).blocks)
    }
    return freed
  }

  resizeVolume(name: string, sizeBytes: number, capacityBytes: number): VolumeRecord {
    const vol = resized(this.volume(name), sizeBytes, capacityBytes)
    this.txn.putVolume(vol)
    return vol
  }

  attachVolume(name: string, nodeId: string, opts: { force: boolean; holderAlive: boolean }): VolumeRecord {
    const vol = attached(this.volume(name), nodeId, opts)
    this.txn.putVolume(vol)
    return vol
  }

  detachVolume(name: string): VolumeRecord {
    const vol = detached(this.volume(name))
    this.txn.putVolume(vol)
    return vol
  }

  /**
   * A read-only, point-in-time copy of a volume's tree under
   * /.snapshots/VOLUME/NAME, naming the same blocks (the caller counts the
   * new references). tree: every directory's entries, read beforehand.
   */
  snapshotVolume(volume: string, name: string, tree: Tree, caller: Caller): { snapshot: SnapshotRecord; blocks: BlockRef[] } {
    checkSnapshotName(name)
    const vol = this.volume(volume)
    if (vol.snapshots.some((x) => x.name === name)) throw new LoamError('exists', `volume ${volume} has a snapshot ${name}`)
    if (vol.snapshots.length >= SNAPSHOTS_PER_VOLUME_MAX) throw new LoamError('no-space', `volume ${volume} has ${SNAPSHOTS_PER_VOLUME_MAX} snapshots, the most it may have; remove one first`)
    for (const entries of tree.values()) {
      for (const [entry, id] of entries) {
        const rec = this.txn.inode(id)
        if (rec?.leaseHolder && rec.updatingBlocks.length > 0) {
          throw new LoamError('lease', `volume ${volume}: ${entry} is being written (by ${rec.leaseHolder}); take the snapshot once it is closed`)
        }
      }
    }
    const snapshots = this.specialDir(this.specialDir(this.mustInode(ROOT_ID), SNAPSHOTS_DIR, caller), volume, caller)
    const source = this.mustInode(vol.rootId)
    const root = this.copyInode(source, { volume: '', readOnly: true })
    root.parentId = snapshots.id
    this.txn.link(snapshots.id, name, root.id)
    snapshots.children++
    snapshots.nlink++
    this.txn.putInode(snapshots)
    const { blocks, bytes } = this.copyChildren(source.id, root, tree, { volume: '', readOnly: true })
    const snapshot: SnapshotRecord = { name, createdMs: caller.nowMs, rootId: root.id, usedBytes: bytes }
    vol.snapshots.push(snapshot)
    this.txn.putVolume(vol)
    return { snapshot, blocks }
  }

  deleteSnapshot(volume: string, name: string, caller: Caller): Freed {
    const vol = this.volume(volume)
    const i = vol.snapshots.findIndex((x) => x.name === name)
    if (i < 0) throw new LoamError('not-found', `volume ${volume} has no snapshot ${name} (see 'loam volume snapshots ${volume}')`)
    const root = this.mustInode(vol.snapshots[i]!.rootId)
    vol.snapshots.splice(i, 1)
    this.txn.putVolume(vol)
    return this.removeEntry(root.parentId, name, root, caller)
  }

  /** A new volume holding a snapshot's tree, naming the same blocks (the caller counts them). */
  restoreSnapshot(req: { volume: string; snapshot: string; to: string }, tree: Tree, defaults: Defaults, capacityBytes: number, caller: Caller): { volume: VolumeRecord; blocks: BlockRef[] } {
    const src = this.volume(req.volume)
    const snap = src.snapshots.find((x) => x.name === req.snapshot)
    if (!snap) throw new LoamError('not-found', `volume ${req.volume} has no snapshot ${req.snapshot} (see 'loam volume snapshots ${req.volume}')`)
    const sizeBytes = Math.max(src.sizeBytes, snap.usedBytes)
    const vol = this.createVolume({ name: req.to, sizeBytes, replication: src.replication, blockSizeBytes: src.blockSizeBytes }, defaults, capacityBytes, caller)
    const root = this.mustInode(vol.rootId)
    const { blocks, bytes } = this.copyChildren(snap.rootId, root, tree, { volume: vol.name, readOnly: false })
    vol.usedBytes = bytes
    this.txn.putVolume(vol)
    return { volume: vol, blocks }
  }

  /**
   * Starts a change of a block that a snapshot shares: the file gets a new
   * block in its place (copied on the datanodes, then changed); the old one
   * stays the snapshot's.
   */
  copyOnWrite(path: string, inodeId: number, clientName: string, blockId: number): { inode: InodeRecord; block: BlockRef; old: BlockRef; index: number } {
    const rec = this.underConstruction(path, inodeId, clientName)
    const index = rec.blocks.findIndex((b) => b.id === blockId)
    const old = rec.blocks[index]
    if (!old) throw new LoamError('invalid-argument', `${path}: block ${blockId} is not a block of this file`)
    const block: BlockRef = { id: this.txn.allocBlockId(), genStamp: this.txn.nextGenStamp(), lengthBytes: old.lengthBytes }
    rec.blocks[index] = block
    rec.updatingBlocks = [...rec.updatingBlocks.filter((id) => id !== blockId), block.id]
    this.txn.putInode(rec)
    return { inode: rec, block: { ...block }, old: { ...old }, index }
  }

  /** A directory made by the system (/.snapshots and below): read-only to everyone else. */
  private specialDir(parent: InodeRecord, name: string, caller: Caller): InodeRecord {
    const id = this.txn.child(parent.id, name)
    if (id !== undefined) return this.mustInode(id)
    const dir = newInode(this.txn.allocInodeId(), InodeType.DIRECTORY, caller, 0o755)
    dir.parentId = parent.id
    dir.nlink = 2
    dir.readOnly = true
    this.txn.putInode(dir)
    this.txn.link(parent.id, name, dir.id)
    parent.children++
    parent.nlink++
    this.txn.putInode(parent)
    return dir
  }

  private copyInode(src: InodeRecord, as: { volume: string; readOnly: boolean }): InodeRecord {
    return {
      ...src,
      id: this.txn.allocInodeId(),
      blocks: src.blocks.map((b) => ({ ...b })),
      xattrs: { ...src.xattrs },
      leaseHolder: '',
      leaseUser: '',
      updatingBlocks: [],
      volume: as.volume,
      readOnly: as.readOnly,
      children: 0,
      nlink: src.type === InodeType.DIRECTORY ? 2 : 0,
    }
  }

  /** Copies what lies below fromDir into intoDir; hard links stay links. Returns the blocks named and the logical bytes. */
  private copyChildren(fromDir: number, intoDir: InodeRecord, tree: Tree, as: { volume: string; readOnly: boolean }): { blocks: BlockRef[]; bytes: number } {
    const copies = new Map<number, InodeRecord>()
    const blocks: BlockRef[] = []
    let bytes = 0
    const queue: Array<[number, InodeRecord]> = [[fromDir, intoDir]]
    while (queue.length > 0) {
      const [from, into] = queue.shift()!
      for (const [name, id] of tree.get(from) ?? []) {
        const src = this.txn.inode(id)
        if (!src) continue // removed since the tree was read
        let copy = copies.get(id)
        if (!copy) {
          copy = this.copyInode(src, as)
          copies.set(id, copy)
          if (src.type === InodeType.FILE) {
            blocks.push(...copy.blocks)
            bytes += copy.lengthBytes
          }
        }
        if (src.type === InodeType.DIRECTORY) {
          copy.parentId = into.id
          into.nlink++
          queue.push([id, copy])
        } else {
          copy.nlink++
        }
        this.txn.link(into.id, name, copy.id)
        into.children++
        this.txn.putInode(copy)
      }
      this.txn.putInode(into)
    }
    return { blocks, bytes }
  }

  /** A new generation stamp, for recovering a block. */
  newGenStamp(): number {
    return this.txn.nextGenStamp()
  }

  complete(path: string, inodeId: number, clientName: string, last: BlockRef | null | undefined, caller: Caller): InodeRecord {
    const rec = this.underConstruction(path, inodeId, clientName)
    this.commitLast(rec, last)
    rec.leaseHolder = ''
    rec.leaseUser = ''
    rec.mtimeMs = caller.nowMs
    this.txn.putInode(rec)
    return rec
  }

  private commitLast(rec: InodeRecord, last: BlockRef | null | undefined, newerGenerationWins = false): void {
    if (!last || last.id === 0) {
      if (rec.blocks.length > 0) throw new LoamError('invalid-argument', `block ${rec.blocks[rec.blocks.length - 1]!.id} is being written: name it with its length`)
      return
    }
    const tail = rec.blocks[rec.blocks.length - 1]
    if (!tail || tail.id !== last.id) throw new LoamError('invalid-argument', `block ${last.id} is not the last block of this file`)
    if (last.lengthBytes > rec.blockSizeBytes) throw new LoamError('invalid-argument', `block ${last.id} length ${last.lengthBytes} is over the block size ${rec.blockSizeBytes}`)
    if (last.genStamp < tail.genStamp && !newerGenerationWins) throw new LoamError('stale-generation', `block ${last.id} generation ${last.genStamp} is older than ${tail.genStamp}`)
    tail.lengthBytes = last.lengthBytes
    tail.genStamp = Math.max(tail.genStamp, last.genStamp)
    this.setLength(rec, rec.blocks.reduce((sum, b) => sum + b.lengthBytes, 0))
  }

  rename(src: string, dst: string, overwrite: boolean, caller: Caller): Freed {
    const s = this.resolve(src)
    if (s.parts.length === 0) throw new LoamError('invalid-argument', '/: the root cannot be renamed')
    if (s.id === undefined) throw new LoamError('not-found', `${src}: no such file or directory`)
    const d = this.resolve(dst)
    if (d.parts.length === 0) throw new LoamError('exists', '/: cannot rename over the root')
    if (d.parentId === s.parentId && d.name === s.name) return { blocks: [] }
    const srcRec = this.mustInode(s.id)
    keepSnapshot(srcRec, src)
    if (srcRec.type === InodeType.DIRECTORY) {
      // A directory may not move below itself.
      for (let p = d.parentId; p !== 0; p = this.mustInode(p).parentId) {
        if (p === srcRec.id) throw new LoamError('invalid-argument', `${dst}: cannot move ${src} inside itself`)
        if (p === ROOT_ID) break
      }
    }
    const srcParentRec = this.mustInode(s.parentId)
    const dstParentRec = this.mustInode(d.parentId)
    this.guard(srcParentRec, caller)
    this.guard(dstParentRec, caller)
    if (srcRec.volume !== dstParentRec.volume) throw new LoamError('cross-volume', `${src} -> ${dst}: a rename cannot cross a volume's boundary; copy instead`)
    let freed: Freed = { blocks: [] }
    if (d.id !== undefined) {
      if (d.id === s.id) return freed // two names of one hard-linked file
      const dstRec = this.mustInode(d.id)
      if (!overwrite) throw new LoamError('exists', `${dst}: exists`)
      keepSnapshot(dstRec, dst)
      if (dstRec.type === InodeType.DIRECTORY) {
        if (srcRec.type !== InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${dst}: is a directory`)
        if (dstRec.children > 0) throw new LoamError('not-empty', `${dst}: directory not empty`)
      } else if (srcRec.type === InodeType.DIRECTORY) {
        throw new LoamError('not-a-directory', `${dst}: not a directory`)
      }
      freed = this.removeEntry(d.parentId, d.name, dstRec, caller)
    }
    const srcParent = this.mustInode(s.parentId)
    this.txn.unlink(s.parentId, s.name)
    srcParent.children--
    if (srcRec.type === InodeType.DIRECTORY) srcParent.nlink--
    srcParent.mtimeMs = srcParent.ctimeMs = caller.nowMs
    this.txn.putInode(srcParent)
    const dstParent = this.mustInode(d.parentId)
    if (srcRec.type === InodeType.DIRECTORY) {
      srcRec.parentId = dstParent.id
    }
    srcRec.ctimeMs = caller.nowMs
    this.txn.putInode(srcRec)
    this.addEntry(dstParent, d.name, srcRec.id, caller, srcRec.type === InodeType.DIRECTORY)
    return freed
  }

  delete(path: string, recursive: boolean, caller: Caller): Freed {
    const r = this.resolve(path)
    if (r.parts.length === 0) throw new LoamError('invalid-argument', '/: the root cannot be removed')
    if (r.id === undefined) throw new LoamError('not-found', `${path}: no such file or directory`)
    const rec = this.mustInode(r.id)
    keepSnapshot(rec, path)
    if (rec.type === InodeType.DIRECTORY && rec.children > 0 && !recursive) {
      throw new LoamError('not-empty', `${path}: directory not empty (use -r to remove it and its contents)`)
    }
    if (rec.type === InodeType.DIRECTORY && rec.volume && this.mustInode(r.parentId).volume !== rec.volume) {
      throw new LoamError('invalid-argument', `${path}: is the volume ${rec.volume}; remove it with 'loam volume rm ${rec.volume}'`)
    }
    this.guard(this.mustInode(r.parentId), caller)
    return this.removeEntry(r.parentId, r.name, rec, caller)
  }

  /** Removes one name of an inode; frees the inode when it was the last, or hands a subtree to the collector. */
  private removeEntry(parentId: number, name: string, rec: InodeRecord, caller: Caller): Freed {
    const parent = this.mustInode(parentId)
    this.txn.unlink(parentId, name)
    parent.children--
    if (rec.type === InodeType.DIRECTORY) parent.nlink--
    parent.mtimeMs = parent.ctimeMs = caller.nowMs
    this.txn.putInode(parent)
    if (rec.type === InodeType.DIRECTORY) {
      if (rec.children > 0) this.txn.collect(rec.id)
      else this.txn.deleteInode(rec.id)
      return { blocks: [] }
    }
    rec.nlink--
    if (rec.nlink > 0) {
      rec.ctimeMs = caller.nowMs
      this.txn.putInode(rec)
      return { blocks: [] }
    }
    this.setLength(rec, 0)
    this.txn.deleteInode(rec.id)
    return { blocks: rec.blocks }
  }

  private addEntry(parent: InodeRecord, name: string, childId: number, caller: Caller, isDir: boolean): void {
    assert(parent.type === InodeType.DIRECTORY, 'entries are added to directories')
    this.txn.link(parent.id, name, childId)
    parent.children++
    if (isDir) parent.nlink++
    parent.mtimeMs = parent.ctimeMs = caller.nowMs
    this.txn.putInode(parent)
  }

  setReplication(path: string, replication: number, caller?: Caller): InodeRecord {
    checkReplication(replication)
    const rec = this.get(path)
    if (caller) this.guard(rec, caller)
    if (rec.type !== InodeType.FILE) throw new LoamError('is-a-directory', `${path}: replication is set on files`)
    rec.replication = replication
    this.txn.putInode(rec)
    return rec
  }

  setPermission(path: string, mode: number, caller: Caller): InodeRecord {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new LoamError('invalid-argument', `mode ${mode.toString(8)} is not an octal mode`)
    const rec = this.get(path)
    this.guard(rec, caller)
    rec.mode = mode
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
    return rec
  }

  setOwner(path: string, owner: string, group: string, caller: Caller): InodeRecord {
    const rec = this.get(path)
    this.guard(rec, caller)
    if (owner) rec.owner = owner
    if (group) rec.group = group
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
    return rec
  }

  setTimes(path: string, mtimeMs: number, atimeMs: number, caller: Caller): InodeRecord {
    const rec = this.get(path)
    this.guard(rec, caller)
    if (mtimeMs) rec.mtimeMs = mtimeMs
    if (atimeMs) rec.atimeMs = atimeMs
    rec.ctimeMs = caller.nowMs
    this.txn.putInode(rec)
    return rec
  }

  private volumeOf(rec: InodeRecord): VolumeRecord | undefined {
    return rec.volume ? this.txn.volume(rec.volume) : undefined
  }

  /** A change inside an attached volume needs the attachment's epoch: an older holder is fenced. */
  private guard(rec: InodeRecord, caller: Caller | undefined): void {
    if (rec.readOnly) throw new LoamError('read-only', 'a snapshot is read-only: restore it into a new volume to change it (loam volume restore)')
    const vol = this.volumeOf(rec)
    if (vol) checkEpoch(vol, caller?.epoch ?? 0)
  }

  /** A file's new length, charged to its volume (refused past the volume's size unless force). */
  private setLength(rec: InodeRecord, lengthBytes: number, force = false): void {
    const vol = this.volumeOf(rec)
    if (vol && lengthBytes !== rec.lengthBytes) {
      const delta = lengthBytes - rec.lengthBytes
      vol.usedBytes = force ? Math.max(0, vol.usedBytes + delta) : charge(vol, delta)
      this.txn.putVolume(vol)
    }
    rec.lengthBytes = lengthBytes
  }

  private mustInode(id: number): InodeRecord {
    const rec = this.txn.inode(id)
    assert(rec, `inode ${id} exists`)
    return rec
  }
}

export function fileStatus(rec: InodeRecord, name: string, path = ''): FileStatus {
  return {
    inodeId: rec.id,
    name,
    type: rec.type,
    lengthBytes: rec.lengthBytes,
    replication: rec.replication,
    blockSizeBytes: rec.blockSizeBytes,
    mode: rec.mode,
    owner: rec.owner,
    group: rec.group,
    mtimeMs: rec.mtimeMs,
    atimeMs: rec.atimeMs,
    ctimeMs: rec.ctimeMs,
    nlink: rec.nlink,
    symlinkTarget: rec.symlinkTarget,
    underConstruction: rec.leaseHolder !== '',
    blockCount: rec.blocks.length,
    path,
    xattrCount: Object.keys(rec.xattrs).length,
  }
}
