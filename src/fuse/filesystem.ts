// The cluster filesystem as FUSE operations: async functions over src/client
// that return values or throw LoamError (src/fuse/mount.ts turns them into
// replies and errnos). Paths are the mount's, and the namespace's.
import type { CallOptions } from '../rpc/client.js'
import type { LoamClient } from '../client/client.js'
import { OpenFile } from '../client/open-file.js'
import { LoamError } from '../rpc/errors.js'
import { InodeType, type FileStatus } from '../rpc/messages.js'
import { FUSE_ATTR_CACHE_ENTRIES_MAX, FUSE_ATTR_CACHE_MS, FUSE_HANDLES_MAX, FUSE_LEASE_WAIT_MS, FUSE_PREFETCH_AFTER_MISSES, FUSE_PREFETCH_DIRS_MAX } from '../limits.js'
import { Identities } from '../common/identity.js'
import type { VolumeQuota } from '../volumes/quota.js'

export interface Stat {
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  ino: number
  blksize: number
  blocks: number
  atime: Date
  mtime: Date
  ctime: Date
}

export interface Statfs {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  fsid: number
  flag: number
  namemax: number
}

/** Who called: from the kernel, for ownership of what they create. */
export interface Caller {
  uid: number
  gid: number
}

const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000
const O_ACCMODE = 3
const O_RDONLY = 0
const XATTR_CREATE = 1
const XATTR_REPLACE = 2
const STAT_BLOCK_BYTES = 512

interface Handle {
  file: OpenFile
  writable: boolean
}

export class LoamFilesystem {
  private readonly ids = new Identities()
  private readonly attrs = new Map<string, { status: FileStatus; expires: number }>()
  private readonly handles = new Map<number, Handle>()
  /** One OpenFile per inode in this mount, shared by its handles: read-your-writes across them. */
  private readonly files = new Map<number, { file: OpenFile; handles: number; writers: number }>()
  private nextHandle = 1
  /** Per directory: attribute misses in the current second, and whether its listing is being fetched. */
  private readonly misses = new Map<string, { count: number; sinceMs: number; prefetching: boolean }>()
  /** Per inode: the close of its last writer, still finishing after close(2) returned. */
  private readonly closing = new Map<number, Promise<void>>()

  private readonly readOnly: boolean
  /** The namespace directory the mount shows ('' for the whole filesystem, /volumes/NAME for a volume). */
  private readonly root: string
  private readonly quota: VolumeQuota | undefined

  constructor(
    private readonly client: LoamClient,
    opts: { readOnly?: boolean; root?: string; quota?: VolumeQuota } = {},
  ) {
    this.readOnly = opts.readOnly ?? false
    this.root = opts.root === '/' ? '' : (opts.root ?? '')
    this.quota = opts.quota
  }

  /** The namespace path of a path in the mount. */
  private ns(path: string): string {
    return path === '/' ? this.root || '/' : this.root + path
  }

  async getattr(path: string): Promise<Stat> {
    path = this.ns(path)
    return this.toStat(await this.status(path))
  }

  async fgetattr(path: string, fd: number): Promise<Stat> {
    path = this.ns(path)
    const h = this.handles.get(fd)
    if (!h) return this.toStat(await this.status(path))
    h.file.path = path
    return this.toStat(h.file.status, h.file.size)
  }

  async readdir(path: string): Promise<string[]> {
    path = this.ns(path)
    const names: string[] = []
    const now = Date.now()
    for await (const st of this.client.list(path)) {
      names.push(st.name)
      this.remember(joinChild(path, st.name), st, now)
    }
    return names
  }

  async access(path: string): Promise<void> {
    path = this.ns(path)
    await this.status(path)
  }

  async statfs(): Promise<Statfs> {
    const report = await this.client.report()
    const live = report.datanodes.filter((d) => d.state === 'live' || d.state === 'decommissioning')
    const bsize = 4096
    const capacity = live.reduce((s, d) => s + d.capacityBytes, 0)
    const remaining = live.reduce((s, d) => s + d.remainingBytes, 0)
    const files = 1 << 30
    return { bsize, frsize: bsize, blocks: Math.floor(capacity / bsize), bfree: Math.floor(remaining / bsize), bavail: Math.floor(remaining / bsize), files, ffree: files, favail: files, fsid: 0, flag: 0, namemax: 255 }
  }

  async open(path: string, flags: number): Promise<number> {
    return this.openAt(this.ns(path), flags)
  }

  private async openAt(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== O_RDONLY
    if (writable) this.checkWritable(path)
    let res = await this.client.getBlockLocations(path, 0, 0)
    let status = must(res.status, path)
    if (status.type === InodeType.DIRECTORY) throw new LoamError('is-a-directory', `${path}: is a directory`)
    // The kernel releases a closed handle after close(2) returns: a reopen waits for that close to finish, then looks again.
    const closing = this.closing.get(status.inodeId)
    if (closing) {
      await closing.catch(() => undefined)
      res = await this.client.getBlockLocations(path, 0, 0)
      status = must(res.status, path)
    }
    // Fresh attributes for the kernel's check at open (close-to-open: a changed file drops its cached pages).
    this.remember(path, status, Date.now())
    const entry = this.files.get(status.inodeId) ?? { file: new OpenFile(this.client, path, status, res.blocks, this.quota), handles: 0, writers: 0 }
    entry.file.path = path
    if (writable) await this.takeLease(entry.file)
    return this.addHandle(status.inodeId, entry, writable)
  }

  /** Another mount's close may still be releasing the file (its release trails its close): wait briefly, then EBUSY. */
  private async takeLease(file: OpenFile): Promise<void> {
    const deadline = Date.now() + FUSE_LEASE_WAIT_MS
    for (;;) {
      try {
        return await file.openForWrite(false)
      } catch (err) {
        if (!(err instanceof LoamError) || err.code !== 'lease' || Date.now() >= deadline) throw err
        await new Promise((r) => setTimeout(r, 20))
      }
    }
  }

  async create(path: string, mode: number, caller?: Caller): Promise<number> {
    path = this.ns(path)
    this.checkWritable(path)
    const res = await this.client.nn.call(
      'Create',
      { path, mode: mode & 0o7777, replication: 0, blockSizeBytes: 0, overwrite: false, createParents: false, clientName: this.client.clientName },
      this.as(caller),
    )
    const status = must(res.status, path)
    this.remember(path, status, Date.now())
    const entry = { file: new OpenFile(this.client, path, status, [], this.quota), handles: 0, writers: 0 }
    await entry.file.openForWrite(true, res.leaseLimitMs)
    return this.addHandle(status.inodeId, entry, true)
  }

  async read(path: string, fd: number, buf: Buffer, length: number, position: number): Promise<number> {
    path = this.ns(path)
    const h = this.handle(fd, path)
    const data = await h.file.read(position, length)
    data.copy(buf, 0, 0, Math.min(length, data.length))
    return Math.min(length, data.length)
  }

  async write(path: string, fd: number, buf: Buffer, length: number, position: number): Promise<number> {
    path = this.ns(path)
    const h = this.handle(fd, path)
    if (!h.writable) throw new LoamError('permission', `${path}: not open for writing`)
    // The kernel reuses its buffer once this call returns: keep a copy.
    await h.file.write(position, Buffer.from(buf.subarray(0, length)))
    return length
  }

  /** Every close(2): what was written is durable before close returns. */
  async flush(path: string, fd: number): Promise<void> {
    path = this.ns(path)
    const h = this.handle(fd, path)
    if (h.writable) await h.file.fsync()
    // What stat shows after close(2) is what the commit recorded.
    this.attrs.delete(path)
  }

  async fsync(path: string, fd: number): Promise<void> {
    await this.flush(path, fd)
  }

  async release(path: string, fd: number): Promise<void> {
    return this.releaseAt(this.ns(path), fd)
  }

  private async releaseAt(path: string, fd: number): Promise<void> {
    const h = this.handles.get(fd)
    if (!h) return
    this.handles.delete(fd)
    const id = h.file.status.inodeId
    const entry = this.files.get(id)
    if (!entry) return
    entry.handles--
    if (h.writable) entry.writers--
    if (entry.handles === 0) this.files.delete(id)
    this.attrs.delete(path)
    if (h.writable && entry.writers === 0) {
      const closing = entry.file.close().finally(() => {
        if (this.closing.get(id) === closing) this.closing.delete(id)
      })
      this.closing.set(id, closing)
      await closing
    }
  }

  async truncate(path: string, size: number): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    const status = await this.status(path)
    await this.closing.get(status.inodeId)?.catch(() => undefined)
    const open = this.files.get(status.inodeId)
    if (open?.writers) {
      await open.file.truncate(size)
    } else {
      // Not open here: take the lease just for the cut.
      const fd = await this.openAt(path, 1)
      try {
        await this.handle(fd, path).file.truncate(size)
      } finally {
        await this.releaseAt(path, fd)
      }
    }
    this.attrs.delete(path)
  }

  async ftruncate(path: string, fd: number, size: number): Promise<void> {
    path = this.ns(path)
    const h = this.handle(fd, path)
    if (!h.writable) throw new LoamError('permission', `${path}: not open for writing`)
    await h.file.truncate(size)
    this.attrs.delete(path)
  }

  async mkdir(path: string, mode: number, caller?: Caller): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.nn.call('Mkdirs', { path, mode: mode & 0o7777, parents: false }, this.as(caller))
    this.forget(path)
  }

  /** The kernel sends unlink only for non-directories and rmdir only for directories. */
  async unlink(path: string): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    const freed = this.quota ? await this.bytesFreedByRemoving(path) : 0
    await this.client.delete(path, false)
    this.quota?.shrink(freed)
    this.forget(path)
  }

  async rmdir(path: string): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.delete(path, false)
    this.forget(path)
  }

  async rename(src: string, dst: string): Promise<void> {
    src = this.ns(src)
    dst = this.ns(dst)
    this.checkWritable(src)
    const freed = this.quota ? await this.bytesFreedByRemoving(dst) : 0
    await this.client.rename(src, dst, true)
    this.quota?.shrink(freed)
    this.forget(src)
    this.forget(dst)
    // A directory's descendants moved too.
    for (const key of this.attrs.keys()) if (key.startsWith(src + '/')) this.attrs.delete(key)
  }

  async link(src: string, dst: string): Promise<void> {
    src = this.ns(src)
    dst = this.ns(dst)
    this.checkWritable(dst)
    await this.client.nn.call('Link', { src, dst })
    this.attrs.delete(src)
    this.forget(dst)
  }

  async symlink(target: string, path: string, caller?: Caller): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.nn.call('Symlink', { target, path }, this.as(caller))
    this.forget(path)
  }

  async readlink(path: string): Promise<string> {
    path = this.ns(path)
    const status = await this.status(path)
    if (status.type !== InodeType.SYMLINK) throw new LoamError('invalid-argument', `${path}: not a symbolic link`)
    return status.symlinkTarget
  }

  async chmod(path: string, mode: number): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.chmod(path, mode & 0o7777)
    this.attrs.delete(path)
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    // -1 (as unsigned) leaves that one unchanged.
    const owner = uid === 0xffffffff || uid === -1 ? '' : this.ids.user(uid)
    const group = gid === 0xffffffff || gid === -1 ? '' : this.ids.group(gid)
    await this.client.chown(path, owner, group)
    this.attrs.delete(path)
  }

  async utimens(path: string, atime: number, mtime: number): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    // Bytes still buffered here would otherwise land later and move mtime past the one set now.
    const open = this.files.get((await this.status(path)).inodeId)
    if (open?.writers) await open.file.fsync()
    await this.client.setTimes(path, Math.max(0, Math.round(mtime)), Math.max(0, Math.round(atime)))
    this.attrs.delete(path)
  }

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.nn.call('SetXattr', { path, name, value, create: (flags & XATTR_CREATE) !== 0, replace: (flags & XATTR_REPLACE) !== 0 })
    this.attrs.delete(path)
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    path = this.ns(path)
    // The kernel asks for security.capability before every write, and ls for ACLs on every entry: most files have none.
    if ((await this.status(path)).xattrCount === 0) throw new LoamError('no-xattr', `${path}: no xattr ${name}`)
    const { xattrs } = await this.client.nn.call('GetXattrs', { path })
    const value = xattrs[name]
    if (value === undefined) throw new LoamError('no-xattr', `${path}: no xattr ${name}`)
    return Buffer.from(value)
  }

  async listxattr(path: string): Promise<string[]> {
    path = this.ns(path)
    if ((await this.status(path)).xattrCount === 0) return []
    return Object.keys((await this.client.nn.call('GetXattrs', { path })).xattrs)
  }

  async removexattr(path: string, name: string): Promise<void> {
    path = this.ns(path)
    this.checkWritable(path)
    await this.client.nn.call('RemoveXattr', { path, name })
    this.attrs.delete(path)
  }

  /** The mount is going away: open files are closed as they are (durable up to their last fsync). */
  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.files.values()].filter((e) => e.writers > 0).map((e) => e.file.close()))
    for (const e of this.files.values()) e.file.abandon()
    this.files.clear()
    this.handles.clear()
  }

  /** The volume bytes a name's removal frees: its file's length when this is its last name. */
  private async bytesFreedByRemoving(path: string): Promise<number> {
    const st = await this.status(path).catch(() => undefined)
    if (!st || st.type !== InodeType.FILE || st.nlink > 1) return 0
    return this.files.get(st.inodeId)?.file.size ?? st.lengthBytes
  }

  private handle(fd: number, path: string): Handle {
    const h = this.handles.get(fd)
    if (!h) throw new LoamError('invalid-argument', `${path}: file handle ${fd} is not open`)
    h.file.path = path
    return h
  }

  private addHandle(inodeId: number, entry: { file: OpenFile; handles: number; writers: number }, writable: boolean): number {
    if (this.handles.size >= FUSE_HANDLES_MAX) throw new LoamError('no-space', `too many open files on this mount (${FUSE_HANDLES_MAX})`)
    entry.handles++
    if (writable) entry.writers++
    this.files.set(inodeId, entry)
    const fd = this.nextHandle++
    this.handles.set(fd, { file: entry.file, writable })
    return fd
  }

  private checkWritable(path: string): void {
    if (this.readOnly) throw new LoamError('read-only', `${path}: the mount is read-only`)
  }

  private as(caller: Caller | undefined): CallOptions {
    if (!caller) return {}
    return { user: this.ids.user(caller.uid), groups: [this.ids.group(caller.gid)] }
  }

  private async status(path: string): Promise<FileStatus> {
    const cached = this.attrs.get(path)
    if (cached && cached.expires > Date.now()) return cached.status
    const status = await this.client.stat(path)
    this.remember(path, status, Date.now())
    // Only entries that exist count: a program creating files misses on every new name.
    this.noteMiss(path)
    return status
  }

  /**
   * A program walking a directory (find, rsync, git status) asks for its
   * entries one by one: after a few misses in one directory, its listing is
   * fetched a page at a time into the cache, as NFS's readdirplus would.
   */
  private noteMiss(path: string): void {
    const dir = path.slice(0, Math.max(1, path.lastIndexOf('/')))
    const now = Date.now()
    const m = this.misses.get(dir)
    if (!m || now - m.sinceMs > FUSE_ATTR_CACHE_MS) {
      if (this.misses.size >= FUSE_PREFETCH_DIRS_MAX) this.misses.clear()
      this.misses.set(dir, { count: 1, sinceMs: now, prefetching: false })
      return
    }
    if (++m.count < FUSE_PREFETCH_AFTER_MISSES || m.prefetching) return
    m.prefetching = true
    void (async () => {
      for await (const st of this.client.list(dir)) this.remember(joinChild(dir, st.name), st, Date.now())
    })()
      .catch(() => undefined)
      .finally(() => this.misses.delete(dir))
  }

  private remember(path: string, status: FileStatus, now: number): void {
    if (this.attrs.size >= FUSE_ATTR_CACHE_ENTRIES_MAX) this.attrs.clear()
    this.attrs.set(path, { status, expires: now + FUSE_ATTR_CACHE_MS })
  }

  /** A change here: the entry is asked for afresh. The parent's times and link count may lag by the cache's second, as the kernel's own cache does. */
  private forget(path: string): void {
    this.attrs.delete(path)
  }

  private toStat(status: FileStatus, openSize?: number): Stat {
    const open = this.files.get(status.inodeId)
    const size = openSize ?? open?.file.size ?? status.lengthBytes
    const type = status.type === InodeType.DIRECTORY ? S_IFDIR : status.type === InodeType.SYMLINK ? S_IFLNK : S_IFREG
    return {
      mode: type | (status.mode & 0o7777),
      uid: this.ids.uid(status.owner),
      gid: this.ids.gid(status.group),
      size: status.type === InodeType.DIRECTORY ? 4096 : size,
      nlink: status.nlink || 1,
      ino: status.inodeId,
      blksize: 128 * 1024,
      blocks: Math.ceil(size / STAT_BLOCK_BYTES),
      atime: new Date(status.atimeMs),
      mtime: new Date(status.mtimeMs),
      ctime: new Date(status.ctimeMs || status.mtimeMs),
    }
  }
}

function must(status: FileStatus | null, path: string): FileStatus {
  if (!status) throw new LoamError('not-found', `${path}: no such file or directory`)
  return status
}

function joinChild(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`
}

