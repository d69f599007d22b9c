// Child process for test/fuse-binding.test.ts: serves an in-memory filesystem through
// native/fuse on argv[2] (options as JSON in argv[3]) and prints one JSON line per op on
// stdout ({ ev: 'ready' } once mounted). Unmounts and exits on SIGTERM/SIGINT or stdin EOF.
// It never touches its own mountpoint: a FUSE server calling into itself can deadlock.
import process from 'node:process'
import Fuse from '#fuse-native'
import type { FuseContext, FuseOps, FuseOptions, FuseStat, FuseTime } from '#fuse-native'

interface Node {
  ino: number
  mode: number
  uid: number
  gid: number
  nlink: number
  data: Buffer
  size: number
  atime: number
  mtime: number
  ctime: number
  target: string
  xattrs: Map<string, Buffer>
}

const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000

const mnt = process.argv[2]
if (!mnt) throw new Error('usage: fuse-memfs MOUNTPOINT [OPTIONS_JSON]')
const options = JSON.parse(process.argv[3] ?? '{}') as FuseOptions

const nodes = new Map<string, Node>()
let nextIno = 2
let nextFd = 1

function emit (ev: Record<string, unknown>): void {
  // Synchronous for pipes on Linux: the line is out before the op's reply.
  process.stdout.write(JSON.stringify(ev) + '\n')
}

function now (): number {
  return Date.now()
}

function mk (mode: number, ctx: FuseContext, ino?: number): Node {
  const t = now()
  return { ino: ino ?? nextIno++, mode, uid: ctx.uid, gid: ctx.gid, nlink: 1, data: Buffer.alloc(0), size: 0, atime: t, mtime: t, ctime: t, target: '', xattrs: new Map() }
}

nodes.set('/', mk(S_IFDIR | 0o777, { uid: 0, gid: 0, pid: 0 }, 1))

function stat (n: Node): FuseStat {
  return { mode: n.mode, uid: n.uid, gid: n.gid, size: n.size, nlink: n.nlink, ino: n.ino, blksize: 4096, blocks: Math.ceil(n.size / 512), atime: n.atime, mtime: n.mtime, ctime: n.ctime }
}

function parent (p: string): string {
  const i = p.lastIndexOf('/')
  return i <= 0 ? '/' : p.slice(0, i)
}

function children (dir: string): string[] {
  const prefix = dir === '/' ? '/' : dir + '/'
  const out: string[] = []
  for (const p of nodes.keys()) {
    if (p !== '/' && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')) out.push(p.slice(prefix.length))
  }
  return out
}

function ensureCapacity (n: Node, size: number): void {
  if (n.data.length >= size) return
  const grown = Buffer.alloc(Math.max(size, n.data.length * 2))
  n.data.copy(grown, 0, 0, n.size)
  n.data = grown
}

function resize (n: Node, size: number): void {
  ensureCapacity(n, size)
  if (size > n.size) n.data.fill(0, n.size, size)
  n.size = size
  n.mtime = n.ctime = now()
}

function applyTime (t: FuseTime, old: number): number {
  if (t === 'omit') return old
  if (t === 'now') return now()
  return t
}

let fuse: Fuse | null = null

// Records the op with the caller's identity; must run synchronously in the handler.
function seen (op: string, path: string, extra: Record<string, unknown> = {}): void {
  const c = fuse ? fuse.context() : { uid: -1, gid: -1, pid: -1 }
  emit({ ev: 'op', op, path, uid: c.uid, gid: c.gid, pid: c.pid, ...extra })
}

function ctx (): FuseContext {
  if (!fuse) throw new Error('not mounted')
  return fuse.context()
}

const ops: FuseOps = {
  init (cb) {
    cb(0)
  },
  access (path, mode, cb) {
    seen('access', path, { mode })
    cb(nodes.has(path) ? 0 : Fuse.ENOENT)
  },
  statfs (path, cb) {
    seen('statfs', path)
    // Larger than 2^32 blocks: fuse-native truncated these to 32 bits.
    cb(0, { bsize: 4096, frsize: 4096, blocks: 2 ** 33, bfree: 2 ** 32 + 5, bavail: 2 ** 32 + 5, files: 1000, ffree: 900, favail: 900, namemax: 255 })
  },
  getattr (path, cb) {
    seen('getattr', path)
    if (path === '/slow') return // never answers: for the timeout test
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    cb(0, stat(n))
  },
  fgetattr (path, fd, cb) {
    seen('fgetattr', path, { fd })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    cb(0, stat(n))
  },
  flush (path, fd, cb) {
    seen('flush', path, { fd })
    cb(0)
  },
  fsync (path, datasync, fd, cb) {
    seen('fsync', path, { datasync, fd })
    cb(0)
  },
  fsyncdir (path, datasync, fd, cb) {
    seen('fsyncdir', path, { datasync, fd })
    cb(0)
  },
  readdir (path, cb) {
    seen('readdir', path)
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    if ((n.mode & S_IFMT) !== S_IFDIR) return cb(Fuse.ENOTDIR)
    const names = children(path)
    const stats = names.map((name) => stat(nodes.get(path === '/' ? '/' + name : path + '/' + name) as Node))
    cb(0, names, stats)
  },
  truncate (path, size, cb) {
    seen('truncate', path, { size })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    resize(n, size)
    cb(0)
  },
  ftruncate (path, fd, size, cb) {
    seen('ftruncate', path, { fd, size })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    resize(n, size)
    cb(0)
  },
  utimens (path, atime, mtime, cb) {
    seen('utimens', path, { atime, mtime })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    n.atime = applyTime(atime, n.atime)
    n.mtime = applyTime(mtime, n.mtime)
    n.ctime = now()
    cb(0)
  },
  readlink (path, cb) {
    seen('readlink', path)
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    if ((n.mode & S_IFMT) !== S_IFLNK) return cb(Fuse.EINVAL)
    cb(0, n.target)
  },
  chown (path, uid, gid, cb) {
    seen('chown', path, { owner: uid, group: gid })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    if (uid !== 0xffffffff) n.uid = uid
    if (gid !== 0xffffffff) n.gid = gid
    n.ctime = now()
    cb(0)
  },
  chmod (path, mode, cb) {
    seen('chmod', path, { mode })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    n.mode = (n.mode & S_IFMT) | (mode & 0o7777)
    n.ctime = now()
    cb(0)
  },
  mknod (path, mode, dev, cb) {
    seen('mknod', path, { mode, dev })
    if (nodes.has(path)) return cb(Fuse.EEXIST)
    nodes.set(path, mk(mode, ctx()))
    cb(0)
  },
  setxattr (path, name, value, position, flags, cb) {
    seen('setxattr', path, { name, size: value.length, flags })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    n.xattrs.set(name, Buffer.from(value)) // copy: value is FUSE memory
    cb(0)
  },
  getxattr (path, name, position, cb) {
    seen('getxattr', path, { name })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    cb(0, n.xattrs.get(name) ?? null)
  },
  listxattr (path, cb) {
    seen('listxattr', path)
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    cb(0, [...n.xattrs.keys()])
  },
  removexattr (path, name, cb) {
    seen('removexattr', path, { name })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    if (!n.xattrs.delete(name)) return cb(Fuse.ENODATA)
    cb(0)
  },
  open (path, flags, cb) {
    const fd = nextFd++
    seen('open', path, { flags, fd })
    if (!nodes.has(path)) return cb(Fuse.ENOENT)
    cb(0, fd)
  },
  opendir (path, flags, cb) {
    const fd = nextFd++
    seen('opendir', path, { flags, fd })
    if (!nodes.has(path)) return cb(Fuse.ENOENT)
    cb(0, fd)
  },
  read (path, fd, buf, len, pos, cb) {
    seen('read', path, { fd, len, pos })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    if (pos >= n.size) return cb(0)
    const end = Math.min(n.size, pos + len)
    n.data.copy(buf, 0, pos, end)
    cb(end - pos)
  },
  write (path, fd, buf, len, pos, cb) {
    seen('write', path, { fd, len, pos })
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    ensureCapacity(n, pos + len)
    buf.copy(n.data, pos, 0, len)
    if (pos + len > n.size) n.size = pos + len
    n.mtime = n.ctime = now()
    // Answer asynchronously to exercise the deferred path.
    setImmediate(cb, len)
  },
  release (path, fd, cb) {
    seen('release', path, { fd })
    cb(0)
  },
  releasedir (path, fd, cb) {
    seen('releasedir', path, { fd })
    cb(0)
  },
  create (path, mode, cb) {
    const fd = nextFd++
    seen('create', path, { mode, fd })
    if (!nodes.has(parent(path))) return cb(Fuse.ENOENT)
    nodes.set(path, mk(mode, ctx()))
    cb(0, fd)
  },
  unlink (path, cb) {
    seen('unlink', path)
    const n = nodes.get(path)
    if (!n) return cb(Fuse.ENOENT)
    n.nlink--
    nodes.delete(path)
    cb(0)
  },
  rename (src, dest, cb) {
    seen('rename', src, { dest })
    const n = nodes.get(src)
    if (!n) return cb(Fuse.ENOENT)
    for (const [p, child] of [...nodes]) {
      if (p.startsWith(src + '/')) {
        nodes.delete(p)
        nodes.set(dest + p.slice(src.length), child)
      }
    }
    nodes.delete(src)
    nodes.set(dest, n)
    cb(0)
  },
  link (src, dest, cb) {
    seen('link', src, { dest })
    const n = nodes.get(src)
    if (!n) return cb(Fuse.ENOENT)
    n.nlink++
    nodes.set(dest, n)
    cb(0)
  },
  symlink (target, path, cb) {
    seen('symlink', path, { target })
    const n = mk(S_IFLNK | 0o777, ctx())
    n.target = target
    n.size = Buffer.byteLength(target)
    nodes.set(path, n)
    cb(0)
  },
  mkdir (path, mode, cb) {
    seen('mkdir', path, { mode })
    if (nodes.has(path)) return cb(Fuse.EEXIST)
    const n = mk(S_IFDIR | (mode & 0o7777), ctx())
    n.nlink = 2
    nodes.set(path, n)
    cb(0)
  },
  rmdir (path, cb) {
    seen('rmdir', path)
    if (!nodes.has(path)) return cb(Fuse.ENOENT)
    if (children(path).length) return cb(Fuse.ENOTEMPTY)
    nodes.delete(path)
    cb(0)
  },
}

const f = new Fuse(mnt, ops, options)
fuse = f

let stopping = false
function stop (): void {
  if (stopping) return
  stopping = true
  f.unmount((err) => {
    if (err) emit({ ev: 'error', message: String(err) })
    process.exit(err ? 1 : 0)
  })
}

process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()

f.mount((err) => {
  if (err) {
    emit({ ev: 'error', message: err.message })
    process.exit(1)
  }
  emit({ ev: 'ready', pid: process.pid })
})
