// Serves a LoamFilesystem on a mountpoint through libfuse: callbacks in, async
// operations out, every failure one errno. Runs in its own process (`loam
// mount`): a process serving a mount must never make calls into it.
import { readFile, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Counter, Histogram, type Registry } from 'prom-client'
import Fuse, { type FuseOps, type FuseTime } from '#fuse-native'
import { LoamClient } from '../client/client.js'
import { initChecksums } from '../common/checksum.js'
import { parseAddress, type Address } from '../common/address.js'
import type { Logger } from '../common/log.js'
import { LoamError } from '../rpc/errors.js'
import { FUSE_IO_BYTES_MAX } from '../limits.js'
import { errnoOf } from './errno.js'
import type { DatanodeReport, VolumeRecord } from '../rpc/messages.js'
import { VolumeQuota } from '../volumes/quota.js'
import { volumePath } from '../volumes/volume.js'
import { LoamFilesystem, type Caller } from './filesystem.js'

export interface MountOptions {
  dir: string
  namenode: Address
  nodeId?: string
  timeoutMs: number
  readOnly: boolean
  /** Mount just this volume; writable only on the node it is attached to. */
  volume?: string
  /** Where its operation counts and latencies go (the mount process's /metrics). */
  registry: Registry
  log: Logger
}

export interface MountHandle {
  dir: string
  /** For /status. */
  status(): unknown
  /** Resolves once the mount is gone (unmounted from here or by `loam umount`). */
  closed: Promise<void>
  unmount(): Promise<void>
}

export async function serveMount(opts: MountOptions): Promise<MountHandle> {
  const dir = path.resolve(opts.dir)
  const st = await stat(dir).catch(() => undefined)
  if (!st?.isDirectory()) throw new LoamError('not-found', `${dir}: no such directory to mount on; create it first`)
  await initChecksums()
  // Fail now, with the namenode's own error, rather than serve a mount that answers EIO.
  const probe = new LoamClient({ namenode: opts.namenode, nodeId: opts.nodeId, timeoutMs: opts.timeoutMs })
  let vol: VolumeRecord | undefined
  let nodeId = opts.nodeId
  try {
    await probe.stat('/')
    if (opts.volume) ({ vol, nodeId } = await mountableVolume(probe, opts.volume, opts))
  } finally {
    probe.close()
  }
  const base = { namenode: opts.namenode, nodeId, timeoutMs: opts.timeoutMs }
  const writable = vol !== undefined && !opts.readOnly
  // A volume mount writes under the attachment's epoch: once the volume moves on, its writes are refused.
  const client = new LoamClient({ ...base, epoch: vol && writable ? vol.epoch : 0 })
  const quota = vol && writable ? new VolumeQuota(vol.name, vol.sizeBytes, vol.usedBytes, async () => (await client.nn.call('GetVolume', { name: vol.name })).volume!.sizeBytes) : undefined
  const fs = new LoamFilesystem(client, { readOnly: opts.readOnly, root: vol ? volumePath(vol.name) : '', quota })
  const fuse: Fuse = new Fuse(dir, adapt(fs, () => fuse.context(), opts.log, fuseMetrics(opts.registry), quota), {
    force: true,
    // The kernel checks mode bits, owner and group for the calling user against what getattr reports.
    allowOther: true,
    defaultPermissions: true,
    // The page cache is kept while size and mtime stay the same: close-to-open between mounts.
    autoCache: true,
    // ...checked against fresh attributes at every open, not ones up to a second old.
    acAttrTimeout: 0,
    attrTimeout: 1,
    entryTimeout: 1,
    // A volume has one writer, this mount: "no such file" can be cached (SQLite asks for its journal before every read).
    negativeTimeout: vol && !opts.readOnly ? 1 : 0,
    useIno: true,
    bigWrites: true,
    maxWrite: FUSE_IO_BYTES_MAX,
    maxRead: FUSE_IO_BYTES_MAX,
    // Every call is bounded by the client's own timeout (--timeout), which answers EIO.
    timeout: false,
    fsname: 'loam',
    subtype: 'loam',
  })
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(new LoamError('io', `${dir}: ${err.message}`)) : resolve())))
  opts.log.info({ dir, namenode: client.namenode, readOnly: opts.readOnly, volume: vol?.name, epoch: vol?.epoch }, 'mounted')

  let finish!: () => void
  const closed = new Promise<void>((resolve) => (finish = resolve))
  let stopping = false
  const stop = async (unmountFirst: boolean): Promise<void> => {
    if (stopping) return closed
    stopping = true
    clearInterval(watch)
    if (unmountFirst) await new Promise<void>((resolve) => fuse.unmount(() => resolve()))
    await fs.closeAll()
    client.close()
    opts.log.info({ dir }, 'unmounted')
    finish()
  }
  // `loam umount` (fusermount -u) ends the mount from outside: notice it and stop.
  const watch = setInterval(() => {
    void isMounted(dir).then((mounted) => {
      if (!mounted) void stop(false)
    })
  }, 500)
  const status = { role: 'mount', dir, namenode: client.namenode, nodeId: nodeId ?? null, readOnly: opts.readOnly, volume: vol?.name ?? null, epoch: vol?.epoch ?? null }
  return { dir, closed, status: () => status, unmount: () => stop(true) }
}

/**
 * A volume mounts for writing only on the node it is attached to, for its
 * owner or the superuser (the namenode checks, as for an attach); read-only,
 * for whoever may read its directory.
 */
async function mountableVolume(probe: LoamClient, name: string, opts: MountOptions): Promise<{ vol: VolumeRecord; nodeId: string | undefined }> {
  const vol = must((await probe.nn.call('GetVolume', { name })).volume)
  if (opts.readOnly) {
    await probe.nn.call('ListStatus', { path: volumePath(name), startAfter: '', limit: 1 })
    return { vol, nodeId: opts.nodeId }
  }
  if (!vol.attachedNode) throw new LoamError('lease', `volume ${vol.name} is not attached: attach it first (loam volume attach ${vol.name} --node ID), or mount it --read-only`)
  const nodeId = opts.nodeId ?? (process.env.LOAM_NODE_ID || (await localNode(probe, vol)))
  if (vol.attachedNode !== nodeId) {
    throw new LoamError('lease', `volume ${vol.name} is attached to ${vol.attachedNode}, not ${nodeId}: mount it there (--node ${vol.attachedNode}), or --read-only`)
  }
  // Attaching to its own holder changes nothing; it is asked for the owner check alone.
  return { vol: must((await probe.nn.call('AttachVolume', { name, nodeId, force: false })).volume), nodeId }
}

function must(vol: VolumeRecord | null): VolumeRecord {
  if (!vol) throw new LoamError('protocol', 'the namenode answered without the volume')
  return vol
}

/** The node this mount runs on, when neither --node nor LOAM_NODE_ID says: the one live datanode at an address of this machine. */
async function localNode(probe: LoamClient, vol: VolumeRecord): Promise<string> {
  const { datanodes } = await probe.report()
  const found = nodesAt(datanodes, localAddresses())
  if (found.length === 1) return found[0]!
  const why = found.length === 0 ? 'no live datanode is at an address of this machine' : `datanodes ${found.join(', ')} are all on this machine`
  throw new LoamError('invalid-argument', `volume ${vol.name}: ${why}; say which node this is with --node ID (it is attached to ${vol.attachedNode})`)
}

/** The live datanodes whose registered address is one of hosts. */
export function nodesAt(datanodes: Array<Pick<DatanodeReport, 'id' | 'address' | 'state'>>, hosts: Set<string>): string[] {
  return datanodes.filter((d) => d.state === 'live' && hosts.has(parseAddress(d.address).host)).map((d) => d.id)
}

function localAddresses(): Set<string> {
  return new Set(Object.values(os.networkInterfaces()).flatMap((addrs) => (addrs ?? []).map((a) => a.address)))
}

export async function isMounted(dir: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const target = path.resolve(dir)
  return text.split('\n').some((line) => unescapeMount(line.split(' ')[4] ?? '') === target)
}

function unescapeMount(field: string): string {
  return field.replace(/\\(\d{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

/** Latency buckets from an answer out of the attribute cache to a write that waits for its pipeline. */
const FUSE_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]

type FuseMetrics = (op: string, startedMs: number, errno: number) => void

function fuseMetrics(registry: Registry): FuseMetrics {
  const ops = new Counter({ name: 'loam_fuse_operations_total', help: 'FUSE operations answered, by operation and result (ok or the errno)', labelNames: ['op', 'result'], registers: [registry] })
  const seconds = new Histogram({ name: 'loam_fuse_operation_duration_seconds', help: 'Time to answer a FUSE operation, by operation', labelNames: ['op'], buckets: FUSE_SECONDS_BUCKETS, registers: [registry] })
  return (op, startedMs, errno) => {
    ops.inc({ op, result: errno === 0 ? 'ok' : String(-errno) })
    seconds.observe({ op }, (performance.now() - startedMs) / 1000)
  }
}

/** The callback shapes libfuse's binding expects, around the filesystem's async operations. */
function adapt(fs: LoamFilesystem, context: () => Caller, log: Logger, measure: FuseMetrics, quota: VolumeQuota | undefined): FuseOps {
  // What a volume's size refuses may fit once the volume has been resized.
  const sized = <T>(work: () => Promise<T>): (() => Promise<T>) => (quota ? () => quota.retryOnResize(work) : work)
  const fail = (op: string, p: string, err: unknown, startedMs: number): number => {
    const errno = errnoOf(err)
    if (errno === -5) log.warn({ op, path: p, err: (err as Error).message }, 'operation failed')
    measure(op, startedMs, errno)
    return errno
  }
  const value = <T>(op: string, p: string, work: () => Promise<T>, cb: (err: number, value?: T) => void): void => {
    const startedMs = performance.now()
    work().then((v) => (measure(op, startedMs, 0), cb(0, v)), (err: unknown) => cb(fail(op, p, err, startedMs)))
  }
  const done = (op: string, p: string, work: () => Promise<unknown>, cb: (err: number) => void): void => {
    const startedMs = performance.now()
    work().then(() => (measure(op, startedMs, 0), cb(0)), (err: unknown) => cb(fail(op, p, err, startedMs)))
  }
  const count = (op: string, p: string, work: () => Promise<number>, cb: (result: number) => void): void => {
    const startedMs = performance.now()
    work().then((n) => (measure(op, startedMs, 0), cb(n)), (err: unknown) => cb(fail(op, p, err, startedMs)))
  }
  const ms = (t: FuseTime): number => (t === 'now' ? Date.now() : t === 'omit' ? 0 : t)
  return {
    init: (cb) => cb(0),
    getattr: (p, cb) => value('getattr', p, () => fs.getattr(p), cb),
    fgetattr: (p, fd, cb) => value('fgetattr', p, () => fs.fgetattr(p, fd), cb),
    readdir: (p, cb) => value('readdir', p, () => fs.readdir(p), cb),
    access: (p, _mode, cb) => done('access', p, () => fs.access(p), cb),
    statfs: (p, cb) => value('statfs', p, () => fs.statfs(), cb),
    open: (p, flags, cb) => value('open', p, () => fs.open(p, flags), cb),
    create: (p, mode, cb) => value('create', p, () => fs.create(p, mode, context()), cb),
    read: (p, fd, buf, len, pos, cb) => count('read', p, () => fs.read(p, fd, buf, len, pos), cb),
    write: (p, fd, buf, len, pos, cb) => count('write', p, sized(() => fs.write(p, fd, buf, len, pos)), cb),
    flush: (p, fd, cb) => done('flush', p, () => fs.flush(p, fd), cb),
    fsync: (p, _datasync, fd, cb) => done('fsync', p, () => fs.fsync(p, fd), cb),
    release: (p, fd, cb) => done('release', p, () => fs.release(p, fd), cb),
    truncate: (p, size, cb) => done('truncate', p, sized(() => fs.truncate(p, size)), cb),
    ftruncate: (p, fd, size, cb) => done('ftruncate', p, sized(() => fs.ftruncate(p, fd, size)), cb),
    mkdir: (p, mode, cb) => done('mkdir', p, () => fs.mkdir(p, mode, context()), cb),
    unlink: (p, cb) => done('unlink', p, () => fs.unlink(p), cb),
    rmdir: (p, cb) => done('rmdir', p, () => fs.rmdir(p), cb),
    rename: (src, dst, cb) => done('rename', src, () => fs.rename(src, dst), cb),
    link: (src, dst, cb) => done('link', src, () => fs.link(src, dst), cb),
    symlink: (target, p, cb) => done('symlink', p, () => fs.symlink(target, p, context()), cb),
    readlink: (p, cb) => value('readlink', p, () => fs.readlink(p), cb),
    chmod: (p, mode, cb) => done('chmod', p, () => fs.chmod(p, mode), cb),
    chown: (p, uid, gid, cb) => done('chown', p, () => fs.chown(p, uid, gid), cb),
    utimens: (p, atime, mtime, cb) => done('utimens', p, () => fs.utimens(p, ms(atime), ms(mtime)), cb),
    // The value is FUSE memory, valid only until the reply: keep a copy.
    setxattr: (p, name, v, _position, flags, cb) => done('setxattr', p, () => fs.setxattr(p, name, Buffer.from(v), flags), cb),
    getxattr: (p, name, _position, cb) => value('getxattr', p, () => fs.getxattr(p, name), cb),
    listxattr: (p, cb) => value('listxattr', p, () => fs.listxattr(p), cb),
    removexattr: (p, name, cb) => done('removexattr', p, () => fs.removexattr(p, name), cb),
  }
}
