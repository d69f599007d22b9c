// Types for Loam's copy of the fuse-native loader (index.js).

/** 0 / null / undefined for success, else a negative errno (e.g. `Fuse.ENOENT`). */
export type FuseError = number | null | undefined

export type DoneCallback = (err?: FuseError) => void
export type ValueCallback<T> = (err: FuseError, value?: T) => void
/** read/write/xattr size: bytes (>= 0) or a negative errno. */
export type ResultCallback = (result: number) => void

/** What the kernel asked for one utimens slot: ms since the epoch, or UTIME_NOW / UTIME_OMIT. */
export type FuseTime = number | 'now' | 'omit'

/** The process that made the request, from fuse_get_context(). pid may be 0 (e.g. release). */
export interface FuseContext {
  readonly uid: number
  readonly gid: number
  readonly pid: number
}

/** Missing fields are 0, except nlink (1) and times (now). Times: Date or ms since the epoch. */
export interface FuseStat {
  mode?: number
  uid?: number
  gid?: number
  size?: number
  dev?: number
  nlink?: number
  /** Up to 2^53; used by the kernel only with `useIno`. */
  ino?: number
  rdev?: number
  blksize?: number
  blocks?: number
  atime?: Date | number
  mtime?: Date | number
  ctime?: Date | number
}

export interface FuseStatfs {
  bsize?: number
  frsize?: number
  blocks?: number
  bfree?: number
  bavail?: number
  files?: number
  ffree?: number
  favail?: number
  fsid?: number
  flag?: number
  namemax?: number
}

/**
 * Filesystem operations; every one is optional. `fd` is the handle returned by
 * open/create/opendir (0 = none). Use `fuse.context()` inside a handler for the caller.
 */
export interface FuseOps {
  init?(cb: DoneCallback): void
  access?(path: string, mode: number, cb: DoneCallback): void
  statfs?(path: string, cb: ValueCallback<FuseStatfs>): void
  getattr?(path: string, cb: ValueCallback<FuseStat>): void
  /** Called with the open handle (e.g. after create, ftruncate); without it libfuse uses getattr. */
  fgetattr?(path: string, fd: number, cb: ValueCallback<FuseStat>): void
  flush?(path: string, fd: number, cb: DoneCallback): void
  fsync?(path: string, datasync: number, fd: number, cb: DoneCallback): void
  fsyncdir?(path: string, datasync: number, fd: number, cb: DoneCallback): void
  /** Entries besides '.' and '..'; stats, when given, must match names one to one. */
  readdir?(path: string, cb: (err: FuseError, names?: readonly string[], stats?: readonly FuseStat[]) => void): void
  truncate?(path: string, size: number, cb: DoneCallback): void
  ftruncate?(path: string, fd: number, size: number, cb: DoneCallback): void
  /** 'now' (UTIME_NOW) means the current time; 'omit' (UTIME_OMIT) leaves that time unchanged. */
  utimens?(path: string, atime: FuseTime, mtime: FuseTime, cb: DoneCallback): void
  readlink?(path: string, cb: ValueCallback<string>): void
  chown?(path: string, uid: number, gid: number, cb: DoneCallback): void
  chmod?(path: string, mode: number, cb: DoneCallback): void
  mknod?(path: string, mode: number, dev: number, cb: DoneCallback): void
  /** `value` is FUSE memory, valid only until cb is called; `position` is always 0 on Linux. */
  setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: DoneCallback): void
  /** A missing value (undefined / null) answers ENODATA. */
  getxattr?(path: string, name: string, position: number, cb: ValueCallback<Buffer | null>): void
  listxattr?(path: string, cb: ValueCallback<readonly string[]>): void
  removexattr?(path: string, name: string, cb: DoneCallback): void
  open?(path: string, flags: number, cb: ValueCallback<number>): void
  opendir?(path: string, flags: number, cb: ValueCallback<number>): void
  /** Fill `buf` (FUSE memory, valid only until cb is called); cb(bytes read or negative errno). */
  read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCallback): void
  /** `buf` is FUSE memory, valid only until cb is called; cb(bytes written or negative errno). */
  write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCallback): void
  release?(path: string, fd: number, cb: DoneCallback): void
  releasedir?(path: string, fd: number, cb: DoneCallback): void
  create?(path: string, mode: number, cb: ValueCallback<number>): void
  unlink?(path: string, cb: DoneCallback): void
  rename?(src: string, dest: string, cb: DoneCallback): void
  link?(src: string, dest: string, cb: DoneCallback): void
  /** `target` is the link's content, `path` the new link. */
  symlink?(target: string, path: string, cb: DoneCallback): void
  mkdir?(path: string, mode: number, cb: DoneCallback): void
  rmdir?(path: string, cb: DoneCallback): void
}

export type FuseOpName = keyof FuseOps

/** Per-op timeout in ms after which the op answers ETIMEDOUT; false or 0 disables. */
export type FuseTimeout =
  | number
  | false
  | ({ default?: number | false } & { [K in FuseOpName]?: number | false })

export interface FuseOptions {
  /** Default 15000 ms as in fuse-native; `false` disables. */
  timeout?: FuseTimeout
  /** Lazily unmount a dead (ENOTCONN) mount at the mountpoint first. */
  force?: boolean
  /** Create the mountpoint if missing. */
  mkdir?: boolean
  debug?: boolean

  // Mount options
  allowOther?: boolean
  allowRoot?: boolean
  autoUnmount?: boolean
  defaultPermissions?: boolean
  blkdev?: boolean
  nonempty?: boolean
  blksize?: number
  maxRead?: number
  /** No ',' or '\\' allowed. */
  fsname?: string
  subtype?: string

  // libfuse low-level options
  bigWrites?: boolean
  maxWrite?: number
  maxReadahead?: number
  asyncRead?: boolean
  syncRead?: boolean
  atomicOTrunc?: boolean

  // libfuse high-level options
  kernelCache?: boolean
  autoCache?: boolean
  directIo?: boolean
  useIno?: boolean
  readdirIno?: boolean
  hardRemove?: boolean
  /** Applied as octal, e.g. 0o022. */
  umask?: number
  uid?: number
  gid?: number
  /** Seconds; 0 is passed through (fuse-native dropped it). */
  entryTimeout?: number
  attrTimeout?: number
  negativeTimeout?: number
  acAttrTimeout?: number
  noforget?: boolean
  remember?: number
  modules?: string

  /** Extra `-o` options appended verbatim, e.g. ['max_background=64']. */
  options?: readonly string[]
}

export type FuseCallback = (err: Error | null) => void

export default class Fuse {
  constructor(mnt: string, ops: FuseOps, opts?: FuseOptions)
  /** Absolute mountpoint. */
  readonly mnt: string
  readonly ops: FuseOps
  readonly opts: FuseOptions
  /** cb runs once the kernel's INIT has been answered, i.e. the mount is usable. */
  mount(cb: FuseCallback): void
  /** `fusermount -uz` the mountpoint, then release the event loop. */
  unmount(cb: FuseCallback): void
  /** Caller of the op being handled; throws outside the synchronous part of an op handler. */
  context(): FuseContext
  /** Negative errno for a code such as 'ENOENT', or -1. */
  errno(code: string): number

  static unmount(mnt: string, cb: FuseCallback): void

  static readonly EPERM: number
  static readonly ENOENT: number
  static readonly ESRCH: number
  static readonly EINTR: number
  static readonly EIO: number
  static readonly ENXIO: number
  static readonly E2BIG: number
  static readonly ENOEXEC: number
  static readonly EBADF: number
  static readonly ECHILD: number
  static readonly EAGAIN: number
  static readonly ENOMEM: number
  static readonly EACCES: number
  static readonly EFAULT: number
  static readonly ENOTBLK: number
  static readonly EBUSY: number
  static readonly EEXIST: number
  static readonly EXDEV: number
  static readonly ENODEV: number
  static readonly ENOTDIR: number
  static readonly EISDIR: number
  static readonly EINVAL: number
  static readonly ENFILE: number
  static readonly EMFILE: number
  static readonly ENOTTY: number
  static readonly ETXTBSY: number
  static readonly EFBIG: number
  static readonly ENOSPC: number
  static readonly ESPIPE: number
  static readonly EROFS: number
  static readonly EMLINK: number
  static readonly EPIPE: number
  static readonly EDOM: number
  static readonly ERANGE: number
  static readonly EDEADLK: number
  static readonly ENAMETOOLONG: number
  static readonly ENOLCK: number
  static readonly ENOSYS: number
  static readonly ENOTEMPTY: number
  static readonly ELOOP: number
  static readonly EWOULDBLOCK: number
  static readonly ENOMSG: number
  static readonly EIDRM: number
  static readonly ECHRNG: number
  static readonly EL2NSYNC: number
  static readonly EL3HLT: number
  static readonly EL3RST: number
  static readonly ELNRNG: number
  static readonly EUNATCH: number
  static readonly ENOCSI: number
  static readonly EL2HLT: number
  static readonly EBADE: number
  static readonly EBADR: number
  static readonly EXFULL: number
  static readonly ENOANO: number
  static readonly EBADRQC: number
  static readonly EBADSLT: number
  static readonly EDEADLOCK: number
  static readonly EBFONT: number
  static readonly ENOSTR: number
  static readonly ENODATA: number
  static readonly ETIME: number
  static readonly ENOSR: number
  static readonly ENONET: number
  static readonly ENOPKG: number
  static readonly EREMOTE: number
  static readonly ENOLINK: number
  static readonly EADV: number
  static readonly ESRMNT: number
  static readonly ECOMM: number
  static readonly EPROTO: number
  static readonly EMULTIHOP: number
  static readonly EDOTDOT: number
  static readonly EBADMSG: number
  static readonly EOVERFLOW: number
  static readonly ENOTUNIQ: number
  static readonly EBADFD: number
  static readonly EREMCHG: number
  static readonly ELIBACC: number
  static readonly ELIBBAD: number
  static readonly ELIBSCN: number
  static readonly ELIBMAX: number
  static readonly ELIBEXEC: number
  static readonly EILSEQ: number
  static readonly ERESTART: number
  static readonly ESTRPIPE: number
  static readonly EUSERS: number
  static readonly ENOTSOCK: number
  static readonly EDESTADDRREQ: number
  static readonly EMSGSIZE: number
  static readonly EPROTOTYPE: number
  static readonly ENOPROTOOPT: number
  static readonly EPROTONOSUPPORT: number
  static readonly ESOCKTNOSUPPORT: number
  static readonly EOPNOTSUPP: number
  static readonly EPFNOSUPPORT: number
  static readonly EAFNOSUPPORT: number
  static readonly EADDRINUSE: number
  static readonly EADDRNOTAVAIL: number
  static readonly ENETDOWN: number
  static readonly ENETUNREACH: number
  static readonly ENETRESET: number
  static readonly ECONNABORTED: number
  static readonly ECONNRESET: number
  static readonly ENOBUFS: number
  static readonly EISCONN: number
  static readonly ENOTCONN: number
  static readonly ESHUTDOWN: number
  static readonly ETOOMANYREFS: number
  static readonly ETIMEDOUT: number
  static readonly ECONNREFUSED: number
  static readonly EHOSTDOWN: number
  static readonly EHOSTUNREACH: number
  static readonly EALREADY: number
  static readonly EINPROGRESS: number
  static readonly ESTALE: number
  static readonly EUCLEAN: number
  static readonly ENOTNAM: number
  static readonly ENAVAIL: number
  static readonly EISNAM: number
  static readonly EREMOTEIO: number
  static readonly EDQUOT: number
  static readonly ENOMEDIUM: number
  static readonly EMEDIUMTYPE: number
}
