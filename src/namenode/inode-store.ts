// How the namespace lies in the key-value store, and the transaction that
// namespace operations run in. Keys:
//   'i' u64 id            -> InodeRecord
//   'e' u64 parent name   -> u64 child id
//   'g' u64 id            -> a detached directory the collector still has to remove
//   'd' node id           -> 'decommissioning' | 'decommissioned'
//   'm' name              -> counters (u64)
//   'v' name              -> VolumeRecord
import { assert } from '../rpc/errors.js'
import { InodeType, type InodeRecord, type VolumeRecord } from '../rpc/messages.js'
import { codecs } from '../rpc/schema.js'
import type { KvOp, MetaStore } from './store.js'
import { newInode, ROOT_ID, type NamespaceTxn } from './namespace.js'

export const keys = {
  inode(id: number): Buffer {
    const k = Buffer.allocUnsafe(9)
    k[0] = 0x69 // 'i'
    k.writeBigUInt64BE(BigInt(id), 1)
    return k
  },
  inodePrefix: Buffer.from('i'),
  entryPrefix(parentId: number): Buffer {
    const k = Buffer.allocUnsafe(9)
    k[0] = 0x65 // 'e'
    k.writeBigUInt64BE(BigInt(parentId), 1)
    return k
  },
  entry(parentId: number, name: string): Buffer {
    return Buffer.concat([keys.entryPrefix(parentId), Buffer.from(name, 'utf8')])
  },
  entryName(key: Buffer): string {
    return key.subarray(9).toString('utf8')
  },
  collect(id: number): Buffer {
    const k = Buffer.allocUnsafe(9)
    k[0] = 0x67 // 'g'
    k.writeBigUInt64BE(BigInt(id), 1)
    return k
  },
  collectPrefix: Buffer.from('g'),
  decommission(nodeId: string): Buffer {
    return Buffer.from(`d${nodeId}`)
  },
  counter(name: string): Buffer {
    return Buffer.from(`m${name}`)
  },
  volume(name: string): Buffer {
    return Buffer.from(`v${name}`)
  },
  volumePrefix: Buffer.from('v'),
}

export function decodeVolume(v: Buffer): VolumeRecord {
  return codecs.VolumeRecord.decode(v)
}

function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

export function decodeId(v: Buffer): number {
  return Number(v.readBigUInt64BE(0))
}

export function decodeInode(v: Buffer): InodeRecord {
  return codecs.InodeRecord.decode(v)
}

export interface InodeCounts {
  files: number
  directories: number
  symlinks: number
}

/** Which count an inode of this type is in. */
export const COUNT_FIELD: Record<InodeType, keyof InodeCounts> = { [InodeType.FILE]: 'files', [InodeType.DIRECTORY]: 'directories', [InodeType.SYMLINK]: 'symlinks' }

function isInodeKey(key: Buffer): boolean {
  return key.length === 9 && key[0] === 0x69
}

/**
 * How a batch changes the number of inodes of each type: a put of an absent
 * inode adds one, a delete of a present one takes one away. `before` reads the
 * store as it is before the batch; a key the batch names twice is followed
 * through it.
 */
export function inodeCountChanges(ops: KvOp[], before: (key: Buffer) => Buffer | undefined): InodeCounts {
  const delta: InodeCounts = { files: 0, directories: 0, symlinks: 0 }
  const seen = new Map<string, Buffer | undefined>()
  for (const op of ops) {
    if (!isInodeKey(op.key)) continue
    const k = op.key.toString('hex')
    const old = seen.has(k) ? seen.get(k) : before(op.key)
    if (op.type === 'put' && !old) delta[COUNT_FIELD[decodeInode(op.value).type]]++
    if (op.type === 'del' && old) delta[COUNT_FIELD[decodeInode(old).type]]--
    seen.set(k, op.type === 'put' ? op.value : undefined)
  }
  return delta
}

/** Counters that only grow: ids and generation stamps are never reused. */
export class Counters {
  constructor(
    public inodeId: number,
    public blockId: number,
    public genStamp: number,
  ) {}

  /** The puts for the counters that changed since `since`. */
  changedOps(since: Counters): KvOp[] {
    return this.ops().filter((_, i) => [this.inodeId !== since.inodeId, this.blockId !== since.blockId, this.genStamp !== since.genStamp][i])
  }

  static load(store: MetaStore): Counters {
    const read = (name: string, initial: number): number => {
      const v = store.get(keys.counter(name))
      return v ? decodeId(v) : initial
    }
    return new Counters(read('inodeId', ROOT_ID), read('blockId', 1 << 30), read('genStamp', 1000))
  }

  ops(): KvOp[] {
    return [
      { type: 'put', key: keys.counter('inodeId'), value: u64(this.inodeId) },
      { type: 'put', key: keys.counter('blockId'), value: u64(this.blockId) },
      { type: 'put', key: keys.counter('genStamp'), value: u64(this.genStamp) },
    ]
  }
}

/** Reads through its own writes, then the store; collects the batch to commit. */
export class StoreTxn implements NamespaceTxn {
  private readonly inodes = new Map<number, InodeRecord | null>()
  private readonly entries = new Map<string, number | null>()
  private readonly volumes = new Map<string, VolumeRecord | null>()
  private readonly ops: KvOp[] = []
  private readonly countersBefore: Counters

  constructor(
    private readonly store: MetaStore,
    private readonly counters: Counters,
  ) {
    this.countersBefore = new Counters(counters.inodeId, counters.blockId, counters.genStamp)
  }

  inode(id: number): InodeRecord | undefined {
    const local = this.inodes.get(id)
    if (local !== undefined) return local ?? undefined
    const v = this.store.get(keys.inode(id))
    if (!v) return undefined
    const rec = decodeInode(v)
    this.inodes.set(id, rec) // later edits by the operation act on this copy
    return rec
  }

  child(parentId: number, name: string): number | undefined {
    const k = `${parentId}/${name}`
    const local = this.entries.get(k)
    if (local !== undefined) return local ?? undefined
    const v = this.store.get(keys.entry(parentId, name))
    return v ? decodeId(v) : undefined
  }

  putInode(rec: InodeRecord): void {
    assert(Number.isSafeInteger(rec.id) && rec.id > 0, 'inode ids are positive safe integers')
    this.inodes.set(rec.id, rec)
  }

  deleteInode(id: number): void {
    this.inodes.set(id, null)
  }

  link(parentId: number, name: string, childId: number): void {
    this.entries.set(`${parentId}/${name}`, childId)
    this.ops.push({ type: 'put', key: keys.entry(parentId, name), value: u64(childId) })
  }

  unlink(parentId: number, name: string): void {
    this.entries.set(`${parentId}/${name}`, null)
    this.ops.push({ type: 'del', key: keys.entry(parentId, name) })
  }

  volume(name: string): VolumeRecord | undefined {
    const local = this.volumes.get(name)
    if (local !== undefined) return local ?? undefined
    const v = this.store.get(keys.volume(name))
    if (!v) return undefined
    const rec = decodeVolume(v)
    this.volumes.set(name, rec)
    return rec
  }

  putVolume(rec: VolumeRecord): void {
    this.volumes.set(rec.name, rec)
  }

  deleteVolume(name: string): void {
    this.volumes.set(name, null)
  }

  collect(rootId: number): void {
    this.ops.push({ type: 'put', key: keys.collect(rootId), value: u64(rootId) })
  }

  allocInodeId(): number {
    return ++this.counters.inodeId
  }

  allocBlockId(): number {
    return ++this.counters.blockId
  }

  nextGenStamp(): number {
    return ++this.counters.genStamp
  }

  /** The batch: entry changes in order, then the final state of each touched inode. */
  batch(): KvOp[] {
    const out = [...this.ops]
    for (const [id, rec] of this.inodes) {
      if (rec === null) out.push({ type: 'del', key: keys.inode(id) })
      else out.push({ type: 'put', key: keys.inode(id), value: Buffer.from(codecs.InodeRecord.encode(rec)) })
    }
    for (const [name, rec] of this.volumes) {
      if (rec === null) out.push({ type: 'del', key: keys.volume(name) })
      else out.push({ type: 'put', key: keys.volume(name), value: Buffer.from(codecs.VolumeRecord.encode(rec)) })
    }
    out.push(...this.counters.changedOps(this.countersBefore))
    return out
  }
}

/** A fresh namespace: the root directory, owned by the user who formats it. */
export function formatOps(owner: string, group: string, nowMs: number): KvOp[] {
  const root = newInode(ROOT_ID, InodeType.DIRECTORY, { user: owner, group, nowMs }, 0o755)
  root.nlink = 2
  root.parentId = 0
  return [
    { type: 'put', key: keys.inode(ROOT_ID), value: Buffer.from(codecs.InodeRecord.encode(root)) },
    { type: 'put', key: keys.counter('layout'), value: u64(1) },
  ]
}
