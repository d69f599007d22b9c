// Loam's fixed copy of fuse-native 2.2.6's loader (MIT, see LICENSE and README.md).
// Linux and libfuse 2.9 only. Types: index.d.ts.

import { Buffer } from 'node:buffer'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import process from 'node:process'
import { clearTimeout, setTimeout } from 'node:timers'

const DEFAULT_TIMEOUT = 15 * 1000
const OP_COUNT = 35
const STAT_FIELDS = 13
const STATFS_FIELDS = 11

// Opcodes (must match fuse-native.c); `buffer` names the arg whose memory FUSE owns.
const OPS = new Map([
  ['init', { op: 0 }],
  ['access', { op: 2 }],
  ['statfs', { op: 3 }],
  ['fgetattr', { op: 4 }],
  ['getattr', { op: 5 }],
  ['flush', { op: 6 }],
  ['fsync', { op: 7 }],
  ['fsyncdir', { op: 8 }],
  ['readdir', { op: 9 }],
  ['truncate', { op: 10 }],
  ['ftruncate', { op: 11 }],
  ['utimens', { op: 12 }],
  ['readlink', { op: 13 }],
  ['chown', { op: 14 }],
  ['chmod', { op: 15 }],
  ['mknod', { op: 16 }],
  ['setxattr', { op: 17, buffer: 2 }],
  ['getxattr', { op: 18, buffer: 2 }],
  ['listxattr', { op: 19, buffer: 1 }],
  ['removexattr', { op: 20 }],
  ['open', { op: 21 }],
  ['opendir', { op: 22 }],
  ['read', { op: 23, buffer: 2 }],
  ['write', { op: 24, buffer: 2 }],
  ['release', { op: 25 }],
  ['releasedir', { op: 26 }],
  ['create', { op: 27 }],
  ['unlink', { op: 28 }],
  ['rename', { op: 29 }],
  ['link', { op: 30 }],
  ['symlink', { op: 31 }],
  ['mkdir', { op: 32 }],
  ['rmdir', { op: 33 }],
])

let binding = null

// Loaded on first use so that importing this module never fails (e.g. CLI commands that
// do not mount anything still work when the native build is missing).
function getBinding () {
  if (binding) return binding
  const require = createRequire(import.meta.url)
  let lastErr = null
  for (const dir of ['Release', 'Debug']) {
    try {
      binding = require(`./build/${dir}/fuse.node`)
      break
    } catch (err) {
      lastErr = err
    }
  }
  if (!binding) {
    const err = new Error('fuse binding not built: run `npm run build:native` (' + (lastErr && lastErr.message) + ')')
    err.code = 'ERR_FUSE_BINDING'
    throw err
  }
  for (const [name, { op }] of OPS) {
    if (binding[`op_${name}`] !== op) throw new Error(`fuse binding opcode mismatch for ${name}`)
  }
  return binding
}

export default class Fuse {
  constructor (mnt, ops, opts = {}) {
    this.opts = opts
    this.mnt = path.resolve(mnt)
    this.ops = ops || {}
    this.timeout = opts.timeout === undefined ? DEFAULT_TIMEOUT : opts.timeout

    this._force = !!opts.force
    this._mkdir = !!opts.mkdir
    this._args = fuseArgs(opts) // validates options early
    this._state = 'idle'
    this._thread = null
    this._threads = new Set()
    this._context = null
    this._openCallback = null
    this._binding = getBinding()
    this._handlers = this._makeHandlerArray()

    this._implemented = new Set([OPS.get('init').op, OPS.get('getattr').op])
    for (const [name, { op }] of OPS) {
      if (typeof this.ops[name] === 'function') this._implemented.add(op)
    }
  }

  // Caller identity of the op being dispatched; only valid synchronously inside an op handler.
  context () {
    if (!this._context) throw new Error('fuse.context() called outside a synchronous FUSE op handler')
    return this._context
  }

  _getImplementedArray () {
    const implemented = new Uint32Array(OP_COUNT)
    for (const impl of this._implemented) implemented[impl] = 1
    return implemented
  }

  _malloc (size) {
    const buf = Buffer.alloc(size)
    this._threads.add(buf)
    return buf
  }

  _makeHandlerArray () {
    const handlers = new Array(OP_COUNT)
    for (const [name, spec] of OPS) {
      handlers[spec.op] = this._makeHandler(name, spec)
    }
    return handlers
  }

  _makeHandler (name, { op, buffer }) {
    const nativeSignal = this._binding[`fuse_native_signal_${name}`]
    const method = this[`_op_${name}`]
    const to = opTimeout(this.timeout, name)

    return (nativeHandler, _opCode, uid, gid, pid, ...args) => {
      // FUSE-owned memory is passed back so C can detach it, whatever the outcome.
      const ab = buffer === undefined ? undefined : args[buffer].buffer
      let done = false
      let timer = null

      const signal = (res, ...rest) => {
        if (done) return // a second call would release another request on this thread
        done = true
        if (timer) clearTimeout(timer)
        const code = toErrno(res)
        if (ab !== undefined) process.nextTick(nativeSignal, nativeHandler, code, ab)
        else process.nextTick(nativeSignal, nativeHandler, code, ...rest)
      }

      if (to) timer = setTimeout(signal, to, Fuse.ETIMEDOUT)

      if (!this._implemented.has(op)) return signal(Fuse.ENOSYS)

      this._context = { uid, gid, pid }
      try {
        method.call(this, signal, ...args)
      } catch (err) {
        signal(Fuse.EIO)
        throw err
      } finally {
        this._context = null
      }
    }
  }

  // Static methods

  static unmount (mnt, cb) {
    mnt = path.resolve(mnt)
    execFile('fusermount', ['-uz', mnt], err => {
      // Without Debian's fuse package there is no fusermount; root can still umount.
      if (err && err.code === 'ENOENT') return execFile('umount', ['-l', mnt], err => cb(err || null))
      cb(err || null)
    })
  }

  // Lifecycle

  mount (cb) {
    if (this._state !== 'idle') return process.nextTick(cb, new Error(`Cannot mount: ${this._state}`))
    this._state = 'mounting'
    const done = (err) => {
      if (err && this._state === 'mounting') this._state = 'idle'
      cb(err || null)
    }

    if (this._force) {
      return fs.stat(path.join(this.mnt, 'test'), (err) => {
        if (err && (err.errno === Fuse.ENOTCONN || err.errno === Fuse.ENXIO)) return Fuse.unmount(this.mnt, () => this._open(done))
        return this._open(done)
      })
    }
    return this._open(done)
  }

  _open (cb) {
    fs.stat(this.mnt, (err, stat) => {
      if (err && err.code !== 'ENOENT') return cb(err)
      if (err) {
        if (!this._mkdir) return cb(new Error('Mountpoint does not exist'))
        return fs.mkdir(this.mnt, { recursive: true }, err => {
          if (err) return cb(err)
          fs.stat(this.mnt, (err, stat) => {
            if (err) return cb(err)
            return this._onexists(stat, cb)
          })
        })
      }
      if (!stat.isDirectory()) return cb(new Error('Mountpoint is not a directory'))
      return this._onexists(stat, cb)
    })
  }

  _onexists (stat, cb) {
    fs.stat(path.join(this.mnt, '..'), (_, parent) => {
      if (parent && parent.dev !== stat.dev) return cb(new Error('Mountpoint in use'))
      this._thread = Buffer.alloc(this._binding.sizeof_fuse_thread_t)
      // Called from the init op, once the kernel has finished the mount handshake.
      this._openCallback = cb
      try {
        this._binding.fuse_native_mount(this.mnt, this._args, this._thread, this, this._malloc, this._handlers, this._getImplementedArray())
      } catch (err) {
        this._openCallback = null
        return cb(err)
      }
    })
  }

  unmount (cb) {
    if (this._state === 'idle' || this._state === 'unmounted') {
      this._state = 'unmounted'
      return process.nextTick(cb, null)
    }
    if (this._state === 'unmounting') return process.nextTick(cb, new Error('Already unmounting'))
    this._state = 'unmounting'

    Fuse.unmount(this.mnt, err => {
      if (err) {
        this._state = 'mounted'
        err.unmountFailure = true
        return cb(err)
      }
      this._binding.fuse_native_unmount(this.mnt, this._thread)
      this._state = 'unmounted'
      if (this._openCallback) {
        const openCb = this._openCallback
        this._openCallback = null
        openCb(new Error('Unmounted before the mount completed'))
      }
      cb(null)
    })
  }

  errno (code) {
    return (code && Fuse[code.toUpperCase()]) || -1
  }

  // Handlers: each receives `signal(result, ...values)` and the op's arguments.

  _op_init (signal) {
    if (this._openCallback) {
      if (this._state === 'mounting') this._state = 'mounted'
      process.nextTick(this._openCallback, null)
      this._openCallback = null
    }
    if (!this.ops.init) return signal(0)
    this.ops.init(err => signal(err))
  }

  _op_statfs (signal, path) {
    this.ops.statfs(path, (err, statfs) => {
      if (err) return signal(err)
      return signal(0, getStatfsArray(statfs))
    })
  }

  _op_getattr (signal, path) {
    if (!this.ops.getattr) {
      if (path !== '/') return signal(Fuse.EPERM)
      return signal(0, getStatArray({ mtime: new Date(0), atime: new Date(0), ctime: new Date(0), mode: 16877, size: 4096 }))
    }
    this.ops.getattr(path, (err, stat) => {
      if (err) return signal(err)
      return signal(0, getStatArray(stat))
    })
  }

  // fuse-native called ops.getattr here; only registered when ops.fgetattr exists.
  _op_fgetattr (signal, path, fd) {
    this.ops.fgetattr(path, fd, (err, stat) => {
      if (err) return signal(err)
      return signal(0, getStatArray(stat))
    })
  }

  _op_access (signal, path, mode) {
    this.ops.access(path, mode, err => signal(err))
  }

  _op_open (signal, path, flags) {
    this.ops.open(path, flags, (err, fd) => signal(err, toFd(fd)))
  }

  _op_opendir (signal, path, flags) {
    this.ops.opendir(path, flags, (err, fd) => signal(err, toFd(fd)))
  }

  _op_create (signal, path, mode) {
    this.ops.create(path, mode, (err, fd) => signal(err, toFd(fd)))
  }

  _op_utimens (signal, path, atime, mtime) {
    this.ops.utimens(path, atime, mtime, err => signal(err))
  }

  _op_release (signal, path, fd) {
    this.ops.release(path, fd, err => signal(err))
  }

  _op_releasedir (signal, path, fd) {
    this.ops.releasedir(path, fd, err => signal(err))
  }

  _op_read (signal, path, fd, buf, len, offset) {
    this.ops.read(path, fd, buf, len, offset, bytesRead => signal(bytesRead))
  }

  _op_write (signal, path, fd, buf, len, offset) {
    this.ops.write(path, fd, buf, len, offset, bytesWritten => signal(bytesWritten))
  }

  _op_readdir (signal, path) {
    this.ops.readdir(path, (err, names, stats) => {
      if (err) return signal(err)
      return signal(0, names || [], stats ? stats.map(getStatArray) : [])
    })
  }

  _op_setxattr (signal, path, name, value, position, flags) {
    this.ops.setxattr(path, name, value, position, flags, err => signal(err))
  }

  _op_getxattr (signal, path, name, valueBuf, position) {
    this.ops.getxattr(path, name, position, (err, value) => {
      if (err) return signal(err)
      if (!value) return signal(Fuse.ENODATA)
      if (valueBuf.length === 0) return signal(value.length) // size query
      if (value.length > valueBuf.length) return signal(Fuse.ERANGE)
      value.copy(valueBuf)
      return signal(value.length)
    })
  }

  _op_listxattr (signal, path, listBuf) {
    this.ops.listxattr(path, (err, list) => {
      if (err) return signal(err)
      list = list || []
      let size = 0
      for (const name of list) size += Buffer.byteLength(name) + 1
      if (listBuf.length === 0) return signal(size) // size query
      if (size > listBuf.length) return signal(Fuse.ERANGE)
      let ptr = 0
      for (const name of list) {
        ptr += listBuf.write(name, ptr)
        listBuf[ptr++] = 0
      }
      return signal(ptr)
    })
  }

  _op_removexattr (signal, path, name) {
    this.ops.removexattr(path, name, err => signal(err))
  }

  _op_flush (signal, path, fd) {
    this.ops.flush(path, fd, err => signal(err))
  }

  _op_fsync (signal, path, datasync, fd) {
    this.ops.fsync(path, datasync, fd, err => signal(err))
  }

  _op_fsyncdir (signal, path, datasync, fd) {
    this.ops.fsyncdir(path, datasync, fd, err => signal(err))
  }

  _op_truncate (signal, path, size) {
    this.ops.truncate(path, size, err => signal(err))
  }

  _op_ftruncate (signal, path, fd, size) {
    this.ops.ftruncate(path, fd, size, err => signal(err))
  }

  _op_readlink (signal, path) {
    this.ops.readlink(path, (err, linkname) => {
      if (err) return signal(err)
      return signal(0, typeof linkname === 'string' ? linkname : '')
    })
  }

  _op_chown (signal, path, uid, gid) {
    this.ops.chown(path, uid, gid, err => signal(err))
  }

  _op_chmod (signal, path, mode) {
    this.ops.chmod(path, mode, err => signal(err))
  }

  _op_mknod (signal, path, mode, dev) {
    this.ops.mknod(path, mode, dev, err => signal(err))
  }

  _op_unlink (signal, path) {
    this.ops.unlink(path, err => signal(err))
  }

  _op_rename (signal, src, dest) {
    this.ops.rename(src, dest, err => signal(err))
  }

  _op_link (signal, src, dest) {
    this.ops.link(src, dest, err => signal(err))
  }

  _op_symlink (signal, src, dest) {
    this.ops.symlink(src, dest, err => signal(err))
  }

  _op_mkdir (signal, path, mode) {
    this.ops.mkdir(path, mode, err => signal(err))
  }

  _op_rmdir (signal, path) {
    this.ops.rmdir(path, err => signal(err))
  }
}

// Mount options -> libfuse argv. fuse-native tested values for truthiness, so 0 (timeouts,
// uid 0, umask 0) was dropped, and it had no way to pass big_writes, max_write, use_ino...
function fuseArgs (opts) {
  const o = []
  const flag = (key, opt) => { if (opts[key]) o.push(opt) }
  const num = (key, opt, { int = true, octal = false } = {}) => {
    const v = opts[key]
    if (v === undefined || v === null || v === false) return
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (int && !Number.isInteger(v))) {
      throw new TypeError(`fuse option ${key} must be a non-negative ${int ? 'integer' : 'number'}, got ${String(v)}`)
    }
    o.push(`${opt}=${octal ? v.toString(8) : String(v)}`)
  }
  const str = (key, opt) => {
    const v = opts[key]
    if (v === undefined || v === null) return
    if (typeof v !== 'string' || v === '' || /[,\\\0]/.test(v)) {
      throw new TypeError(`fuse option ${key} must be a non-empty string without ',', '\\' or NUL`)
    }
    o.push(`${opt}=${v}`)
  }

  if (opts.debug || /\*|(^|,)fuse-bindings(,|$)/.test(process.env.DEBUG || '')) o.push('debug')
  // Mount (kernel) options
  flag('allowOther', 'allow_other')
  flag('allowRoot', 'allow_root')
  flag('autoUnmount', 'auto_unmount')
  flag('defaultPermissions', 'default_permissions')
  flag('blkdev', 'blkdev')
  flag('nonempty', 'nonempty')
  num('blksize', 'blksize')
  num('maxRead', 'max_read')
  str('fsname', 'fsname')
  str('subtype', 'subtype')
  // Low-level library options
  flag('bigWrites', 'big_writes')
  num('maxWrite', 'max_write')
  num('maxReadahead', 'max_readahead')
  flag('asyncRead', 'async_read')
  flag('syncRead', 'sync_read')
  flag('atomicOTrunc', 'atomic_o_trunc')
  // High-level library options
  flag('kernelCache', 'kernel_cache')
  flag('autoCache', 'auto_cache')
  flag('directIo', 'direct_io')
  flag('useIno', 'use_ino')
  flag('readdirIno', 'readdir_ino')
  flag('hardRemove', 'hard_remove')
  num('umask', 'umask', { octal: true })
  num('uid', 'uid')
  num('gid', 'gid')
  num('entryTimeout', 'entry_timeout', { int: false })
  num('attrTimeout', 'attr_timeout', { int: false })
  num('negativeTimeout', 'negative_timeout', { int: false })
  num('acAttrTimeout', 'ac_attr_timeout', { int: false })
  flag('noforget', 'noforget')
  num('remember', 'remember')
  str('modules', 'modules')

  if (opts.options !== undefined) {
    if (!Array.isArray(opts.options) || opts.options.some(x => typeof x !== 'string' || x === '' || x.includes('\0'))) {
      throw new TypeError('fuse option options must be an array of non-empty strings')
    }
    o.push(...opts.options)
  }

  return o.length ? ['-o', o.join(',')] : []
}

function opTimeout (timeout, name) {
  if (timeout && typeof timeout === 'object') {
    const t = timeout[name]
    if (t === false || t === 0) return 0
    if (typeof t === 'number') return t
    if (timeout.default === false || timeout.default === 0) return 0
    return typeof timeout.default === 'number' ? timeout.default : DEFAULT_TIMEOUT
  }
  if (timeout === false || timeout === 0) return 0
  return typeof timeout === 'number' ? timeout : DEFAULT_TIMEOUT
}

// Callback results: 0 / null / undefined for success, a negative errno, a byte count for
// read/write/xattr, or an Error with a negative `errno` or a known `code`.
function toErrno (res) {
  if (res === undefined || res === null || res === false) return 0
  if (typeof res === 'number') {
    if (!Number.isFinite(res)) return Fuse.EIO
    return Math.max(-2147483648, Math.min(2147483647, Math.trunc(res)))
  }
  if (typeof res === 'object') {
    if (typeof res.errno === 'number' && res.errno < 0) return Math.trunc(res.errno)
    if (typeof res.code === 'string' && typeof Fuse[res.code] === 'number') return Fuse[res.code]
  }
  return Fuse.EIO
}

function toFd (fd) {
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : 0
}

function toMs (t) {
  if (typeof t === 'number') return t
  if (t instanceof Date) return t.getTime()
  return Date.now()
}

function getStatArray (stat) {
  const s = stat || {}
  const a = new Float64Array(STAT_FIELDS)
  a[0] = s.mode || 0
  a[1] = s.uid || 0
  a[2] = s.gid || 0
  a[3] = s.size || 0
  a[4] = s.dev || 0
  a[5] = s.nlink === undefined ? 1 : s.nlink
  a[6] = s.ino || 0
  a[7] = s.rdev || 0
  a[8] = s.blksize || 0
  a[9] = s.blocks || 0
  a[10] = toMs(s.atime)
  a[11] = toMs(s.mtime)
  a[12] = toMs(s.ctime)
  return a
}

function getStatfsArray (statfs) {
  const s = statfs || {}
  const a = new Float64Array(STATFS_FIELDS)
  a[0] = s.bsize || 0
  a[1] = s.frsize || 0
  a[2] = s.blocks || 0
  a[3] = s.bfree || 0
  a[4] = s.bavail || 0
  a[5] = s.files || 0
  a[6] = s.ffree || 0
  a[7] = s.favail || 0
  a[8] = s.fsid || 0
  a[9] = s.flag || 0
  a[10] = s.namemax || 0
  return a
}

const ERRNO = {
  EPERM: -1,
  ENOENT: -2,
  ESRCH: -3,
  EINTR: -4,
  EIO: -5,
  ENXIO: -6,
  E2BIG: -7,
  ENOEXEC: -8,
  EBADF: -9,
  ECHILD: -10,
  EAGAIN: -11,
  ENOMEM: -12,
  EACCES: -13,
  EFAULT: -14,
  ENOTBLK: -15,
  EBUSY: -16,
  EEXIST: -17,
  EXDEV: -18,
  ENODEV: -19,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  ENFILE: -23,
  EMFILE: -24,
  ENOTTY: -25,
  ETXTBSY: -26,
  EFBIG: -27,
  ENOSPC: -28,
  ESPIPE: -29,
  EROFS: -30,
  EMLINK: -31,
  EPIPE: -32,
  EDOM: -33,
  ERANGE: -34,
  EDEADLK: -35,
  ENAMETOOLONG: -36,
  ENOLCK: -37,
  ENOSYS: -38,
  ENOTEMPTY: -39,
  ELOOP: -40,
  EWOULDBLOCK: -11,
  ENOMSG: -42,
  EIDRM: -43,
  ECHRNG: -44,
  EL2NSYNC: -45,
  EL3HLT: -46,
  EL3RST: -47,
  ELNRNG: -48,
  EUNATCH: -49,
  ENOCSI: -50,
  EL2HLT: -51,
  EBADE: -52,
  EBADR: -53,
  EXFULL: -54,
  ENOANO: -55,
  EBADRQC: -56,
  EBADSLT: -57,
  EDEADLOCK: -35,
  EBFONT: -59,
  ENOSTR: -60,
  ENODATA: -61,
  ETIME: -62,
  ENOSR: -63,
  ENONET: -64,
  ENOPKG: -65,
  EREMOTE: -66,
  ENOLINK: -67,
  EADV: -68,
  ESRMNT: -69,
  ECOMM: -70,
  EPROTO: -71,
  EMULTIHOP: -72,
  EDOTDOT: -73,
  EBADMSG: -74,
  EOVERFLOW: -75,
  ENOTUNIQ: -76,
  EBADFD: -77,
  EREMCHG: -78,
  ELIBACC: -79,
  ELIBBAD: -80,
  ELIBSCN: -81,
  ELIBMAX: -82,
  ELIBEXEC: -83,
  EILSEQ: -84,
  ERESTART: -85,
  ESTRPIPE: -86,
  EUSERS: -87,
  ENOTSOCK: -88,
  EDESTADDRREQ: -89,
  EMSGSIZE: -90,
  EPROTOTYPE: -91,
  ENOPROTOOPT: -92,
  EPROTONOSUPPORT: -93,
  ESOCKTNOSUPPORT: -94,
  EOPNOTSUPP: -95,
  EPFNOSUPPORT: -96,
  EAFNOSUPPORT: -97,
  EADDRINUSE: -98,
  EADDRNOTAVAIL: -99,
  ENETDOWN: -100,
  ENETUNREACH: -101,
  ENETRESET: -102,
  ECONNABORTED: -103,
  ECONNRESET: -104,
  ENOBUFS: -105,
  EISCONN: -106,
  ENOTCONN: -107,
  ESHUTDOWN: -108,
  ETOOMANYREFS: -109,
  ETIMEDOUT: -110,
  ECONNREFUSED: -111,
  EHOSTDOWN: -112,
  EHOSTUNREACH: -113,
  EALREADY: -114,
  EINPROGRESS: -115,
  ESTALE: -116,
  EUCLEAN: -117,
  ENOTNAM: -118,
  ENAVAIL: -119,
  EISNAM: -120,
  EREMOTEIO: -121,
  EDQUOT: -122,
  ENOMEDIUM: -123,
  EMEDIUMTYPE: -124,
}

Object.assign(Fuse, ERRNO)
