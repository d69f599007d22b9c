// Hostile values and well-formed calls of every method of both services, each
// with what the daemon must do with it. The rules below are written from the
// contract (proto/loam.proto, src/limits.ts, the documented behaviour), not
// from the code that enforces them, so a check that was forgotten shows up as
// a request the daemon accepted.
//
// Everything here is a function of an Rng: one seed gives one sequence.
import { createHash } from 'node:crypto'
import {
  BLOCK_SIZE_MAX_BYTES,
  BLOCK_SIZE_MIN_BYTES,
  CHUNK_BYTES,
  JOB_SPEC_BYTES_MAX,
  LIST_PAGE_ENTRIES_MAX,
  NAME_BYTES_MAX,
  PATH_BYTES_MAX,
  PATH_COMPONENTS_MAX,
  REPLICATION_MAX,
  REPLICATION_MIN,
  SERVICE_INSTANCES_MAX,
  SYMLINK_TARGET_BYTES_MAX,
  VOLUME_SIZE_MAX_BYTES,
  XATTR_NAME_BYTES_MAX,
  XATTR_VALUE_BYTES_MAX,
} from '../../src/limits.js'
import { parseAddress } from '../../src/common/address.js'
import type * as m from '../../src/rpc/messages.js'
import type { Codec } from '../../src/rpc/schema.js'
import { AgentService, DatanodeService, NamenodeService, SchedulerService, type AgentServiceSpec, type DatanodeServiceSpec, type NamenodeServiceSpec, type RequestOf, type SchedulerServiceSpec } from '../../src/rpc/service.js'
import { BlockOp, blockToken, blockTokenRefusal } from '../helpers/tokens.js'
import { Rng } from '../helpers/rng.js'

// ---------------------------------------------------------------- randomness

/** The seed of attack number i of a run: attacks replay one by one (--attack). */
export function attackSeed(seed: number, i: number): number {
  return createHash('sha256').update(`loam-fuzz/${seed}/${i}`).digest().readUInt32LE(0)
}

// ---------------------------------------------------------------- hostile values

/** Numbers at and around every edge a field meets; uint64 fields also get 2^53 and up (decoded imprecisely). -1 is 2^64-1 on the wire (2 ** 64 - 1 is not: as a double it is 2^64, which protobufjs writes as 0). */
export const U64_EDGES = [0, 1, 2, 63, 64, 255, 256, 511, 512, 513, 4095, 4096, 65_535, 65_536, 65_537, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 50, 2 ** 50 + 1, 2 ** 53 - 1, 2 ** 53, 2 ** 63, -1]
export const U32_EDGES = [0, 1, 2, 3, 511, 512, 513, 0o777, 0o7777, 0o10000, 65_535, 65_536, 65_537, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]

export function u64(rng: Rng): number {
  return rng.chance(0.8) ? rng.pick(U64_EDGES) : rng.int(0, 2 ** 40)
}
export function u32(rng: Rng): number {
  return rng.chance(0.8) ? rng.pick(U32_EDGES) : rng.int(0, 2 ** 31)
}

/** Names that are odd but legal, and names that break parsers, prototypes and terminals. */
export const ODD_NAMES = ['a', 'b', 'c', 'dir', 'file', 'x y', 'ü', '😀', ' ', '-', '.hidden', '...', '..a', 'a..', '~', '*', '\\', "'", 'a\tb', 'a\nb', '\ud800', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'é'.repeat(127) + 'e', 'n'.repeat(NAME_BYTES_MAX)]

/** Paths every mutating call is confined to: the fuzzer's own subtree and its own volumes. */
export const SANDBOX = '/fuzz'
export const VOLUME_NAMES = ['fz-0', 'fz-1', 'fz-2']
export const SNAPSHOT_NAMES = ['s0', 's1']

function sandboxPath(rng: Rng): string {
  const parts = Array.from({ length: rng.int(1, 3) }, () => rng.pick(ODD_NAMES))
  let p = `${SANDBOX}/${parts.join('/')}`
  if (rng.chance(0.1)) p = p.replace(/\//g, '//')
  if (rng.chance(0.1)) p += '/'
  return p
}

/** Paths that break a rule of the contract: relative, '.' or '..', NUL, over a limit. */
export const INVALID_PATHS: ReadonlyArray<() => string> = [
  () => '',
  () => 'fuzz/a',
  () => `${SANDBOX}/../x`,
  () => `${SANDBOX}/a/../../health`,
  () => `${SANDBOX}/./a`,
  () => `${SANDBOX}/a/..`,
  () => '/..',
  () => '/.',
  () => `${SANDBOX}/a\0b`,
  () => '\0',
  () => '/\0',
  () => `${SANDBOX}/${'x'.repeat(NAME_BYTES_MAX + 1)}`,
  () => `${SANDBOX}/${'é'.repeat(128)}`,
  () => `${SANDBOX}/${'😀'.repeat(64)}`,
  () => `${SANDBOX}${'/a'.repeat(10_000)}`,
  () => `${SANDBOX}${'/a'.repeat(PATH_COMPONENTS_MAX + 88)}`,
  () => `${SANDBOX}/${'y'.repeat(5000)}`,
  () => `/${'z/'.repeat(2100)}`,
  () => '/'.repeat(PATH_BYTES_MAX + 1),
  () => `/${'q'.repeat(1 << 20)}`,
]

/** Valid paths at the edges: as long, as deep and as wide as allowed. */
const EDGE_PATHS: ReadonlyArray<() => string> = [
  () => `${SANDBOX}/${'x'.repeat(NAME_BYTES_MAX)}`,
  () => `${SANDBOX}${'/d'.repeat(PATH_COMPONENTS_MAX - 1)}`,
  () => '/'.repeat(PATH_BYTES_MAX),
  () => `//${SANDBOX.slice(1)}//a//`,
]

/** A path, mostly in the sandbox, often invalid, sometimes the root or a system directory. */
export function hostilePath(rng: Rng): string {
  return rng.weighted<() => string>([
    [45, () => sandboxPath(rng)],
    [10, () => `/volumes/${rng.pick(VOLUME_NAMES)}${rng.chance(0.6) ? `/${rng.pick(ODD_NAMES)}` : ''}`],
    [5, () => `/.snapshots/${rng.pick(VOLUME_NAMES)}/${rng.pick(SNAPSHOT_NAMES)}${rng.chance(0.5) ? `/${rng.pick(ODD_NAMES)}` : ''}`],
    [8, () => rng.pick(['/', '/volumes', '/.snapshots', `/.snapshots/${rng.pick(VOLUME_NAMES)}`])],
    [6, () => rng.pick(EDGE_PATHS)()],
    [30, () => rng.pick(INVALID_PATHS)()],
    [6, () => mutatePath(rng, sandboxPath(rng))],
  ])()
}

/** A sandbox path with one hostile edit. */
function mutatePath(rng: Rng, p: string): string {
  const at = rng.int(1, p.length)
  return rng.pick([
    () => p.slice(0, at) + '\0' + p.slice(at),
    () => p.slice(0, at) + '/../' + p.slice(at),
    () => p + '/.',
    () => p.slice(1),
    () => p + '/' + 'w'.repeat(rng.int(250, 300)),
  ])()
}

/** A client name: usually one that could hold a lease, sometimes none or a huge one. */
export function clientName(rng: Rng, own?: string): string {
  return rng.weighted([
    [own ? 60 : 0, own ?? ''],
    [15, ''],
    [15, `fz-client-${rng.int(0, 3)}`],
    [5, 'c'.repeat(rng.int(256, 70_000))],
    [5, 'fz\0client'],
  ])
}

export const XATTR_NAMES = ['user.a', 'user.b', 'security.x', 'trusted.y', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'x'.repeat(XATTR_NAME_BYTES_MAX), 'x'.repeat(XATTR_NAME_BYTES_MAX + 1), 'é'.repeat(128), '', 'a\0b', '😀']
export function xattrName(rng: Rng): string {
  return rng.pick(XATTR_NAMES)
}
export function xattrValue(rng: Rng): Uint8Array {
  return rng.bytes(rng.pick([0, 1, 100, XATTR_VALUE_BYTES_MAX - 1, XATTR_VALUE_BYTES_MAX, XATTR_VALUE_BYTES_MAX + 1, 200_000]))
}

const BAD_VOLUME_NAMES = ['', 'A', '-x', 'x'.repeat(64), 'fz_1', 'fz/1', '..', 'fz\0', '__proto__', 'constructor', 'fz-é', ' fz']
export function volumeName(rng: Rng): string {
  return rng.chance(0.65) ? rng.pick(VOLUME_NAMES) : rng.pick(BAD_VOLUME_NAMES)
}
export function snapshotName(rng: Rng): string {
  return rng.chance(0.65) ? rng.pick(SNAPSHOT_NAMES) : rng.pick(BAD_VOLUME_NAMES)
}

/**
 * Block ids: the namenode counts up from 1; WriteBlock attacks make scratch
 * replicas at SCRATCH_BLOCK_BASE and up; nothing ever makes one at
 * UNUSED_BLOCK_BASE or above, so a call naming one must be refused.
 */
export const SCRATCH_BLOCK_BASE = 2 ** 40
export const UNUSED_BLOCK_BASE = 2 ** 41

export function scratchBlockId(rng: Rng): number {
  return SCRATCH_BLOCK_BASE + rng.int(0, 2 ** 20)
}
export function unusedBlockId(rng: Rng): number {
  return UNUSED_BLOCK_BASE + rng.int(0, 2 ** 20)
}

/** True when no datanode can hold a replica with this id. */
export function blockIdAbsent(id: number): boolean {
  return id === 0 || !Number.isSafeInteger(id) || id >= UNUSED_BLOCK_BASE
}

// ---------------------------------------------------------------- what the fuzzer knows of the cluster

export interface RealBlock {
  block: m.BlockRef
  /** Datanodes holding a finalized replica. */
  nodes: string[]
}

export interface World {
  /** The datanodes of the cluster; calls that would legitimately change them are never made. */
  nodeIds: string[]
  /** Finalized blocks of the health files: attacked only in ways that must be refused or that only read. */
  realBlocks: RealBlock[]
  /** Each datanode's data directory: paths a daemon hands out must lie inside it. */
  dataDirs: Map<string, string>
}

/** Node ids that belong to no datanode. Registration and heartbeats use disjoint sets so one finding does not cause another. */
const FAKE_REGISTER_IDS = ['fz-reg-1', 'fz-reg-2', 'x'.repeat(300), 'dn\0']
const FAKE_NODE_IDS = ['fz-node-1', '', 'DN1', 'dn1 ', 'n'.repeat(300), '\0', '__proto__']

// ---------------------------------------------------------------- the rules

/** What a daemon must do with a request: refuse it (why), or if it may succeed, what a success must satisfy. */
export interface Expect {
  refuse?: string
  check?: (response: unknown) => string | undefined
}

/** Why a path breaks the contract's rules, or undefined when it is valid. */
export function pathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'a relative path'
  if (Buffer.byteLength(p) > PATH_BYTES_MAX) return `a path over ${PATH_BYTES_MAX} bytes`
  if (p.includes('\0')) return 'a path with NUL'
  const parts = components(p)
  if (parts.length > PATH_COMPONENTS_MAX) return `a path of over ${PATH_COMPONENTS_MAX} components`
  for (const c of parts) {
    const why = nameProblem(c)
    if (why) return why
  }
  return undefined
}

export function nameProblem(c: string): string | undefined {
  if (c === '.' || c === '..') return "a '.' or '..' component"
  if (Buffer.byteLength(c) > NAME_BYTES_MAX) return `a name over ${NAME_BYTES_MAX} bytes`
  if (c.length === 0) return 'an empty name'
  if (c.includes('/') || c.includes('\0')) return "a name with '/' or NUL"
  return undefined
}

export function components(p: string): string[] {
  return p.split('/').filter((c) => c.length > 0)
}

function isRoot(p: string): boolean {
  return pathProblem(p) === undefined && components(p).length === 0
}

function replicationProblem(r: number, zeroMeansDefault: boolean): string | undefined {
  if (r === 0 && zeroMeansDefault) return undefined
  return r < REPLICATION_MIN || r > REPLICATION_MAX ? `replication ${r}` : undefined
}

function blockSizeProblem(b: number): string | undefined {
  if (b === 0) return undefined
  return !Number.isSafeInteger(b) || b < BLOCK_SIZE_MIN_BYTES || b > BLOCK_SIZE_MAX_BYTES || b % CHUNK_BYTES !== 0 ? `block size ${b}` : undefined
}

const VOLUME_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/
function volumeNameProblem(n: string): string | undefined {
  return VOLUME_NAME.test(n) ? undefined : `volume or snapshot name '${n.slice(0, 40)}'`
}

function volumeSizeProblem(n: number): string | undefined {
  return !Number.isSafeInteger(n) || n <= 0 || n > VOLUME_SIZE_MAX_BYTES ? `volume size ${n}` : undefined
}

function xattrNameProblem(n: string): string | undefined {
  if (n.length === 0) return 'an empty xattr name'
  if (Buffer.byteLength(n) > XATTR_NAME_BYTES_MAX) return `an xattr name over ${XATTR_NAME_BYTES_MAX} bytes`
  if (n.includes('\0')) return 'an xattr name with NUL'
  if (n === '__proto__') return "the reserved xattr name '__proto__'"
  return undefined
}

/** Client names no lease can be held under: Create and OpenForWrite refuse them, so every lease-checked call must too. */
function leaseNameProblem(n: string): string | undefined {
  return n === '' ? 'an empty client name (no lease is ever held under it)' : undefined
}

function addressProblem(text: string): string | undefined {
  try {
    parseAddress(text)
    return undefined
  } catch {
    return `an address that is not host:port (${JSON.stringify(text.slice(0, 40))})`
  }
}

function first(...problems: Array<string | undefined>): string | undefined {
  return problems.find((p) => p !== undefined)
}

function refuse(why: string | undefined): Expect {
  return why ? { refuse: why } : {}
}

function listCheck(limit: number) {
  return (res: unknown): string | undefined => {
    const r = res as m.ListStatusResponse
    const max = Math.min(limit || LIST_PAGE_ENTRIES_MAX, LIST_PAGE_ENTRIES_MAX)
    if (r.entries.length > max) return `ListStatus returned ${r.entries.length} entries for a limit of ${max}`
    const bad = r.entries.find((e) => e.name !== '' && nameProblem(e.name) !== undefined)
    return bad ? `ListStatus returned an entry named ${JSON.stringify(bad.name.slice(0, 60))}: ${nameProblem(bad.name)}` : undefined
  }
}

type NnMethod = keyof NamenodeServiceSpec
type DnMethod = keyof DatanodeServiceSpec
type NnRules = { [K in NnMethod]: (req: RequestOf<NamenodeServiceSpec[K]>, w: World) => Expect }
type DnRules = { [K in DnMethod]: (req: RequestOf<DatanodeServiceSpec[K]>, w: World) => Expect }

/** What the namenode must refuse. Calls are confined to the sandbox, so any success outside these rules is allowed. */
export const NAMENODE_RULES: NnRules = {
  Mkdirs: (r) => refuse(pathProblem(r.path)),
  Create: (r) => refuse(first(pathProblem(r.path), isRoot(r.path) ? 'creating the root' : undefined, replicationProblem(r.replication, true), blockSizeProblem(r.blockSizeBytes), r.clientName === '' ? 'an empty client name' : undefined)),
  AddBlock: (r) => refuse(first(pathProblem(r.path), leaseNameProblem(r.clientName), r.previous && r.previous.lengthBytes > BLOCK_SIZE_MAX_BYTES ? `a previous block of ${r.previous.lengthBytes} bytes` : undefined)),
  RecoverPipeline: (r) => refuse(first(pathProblem(r.path), leaseNameProblem(r.clientName), r.block ? undefined : 'no block')),
  Complete: (r) => refuse(first(pathProblem(r.path), leaseNameProblem(r.clientName), r.last && r.last.lengthBytes > BLOCK_SIZE_MAX_BYTES ? `a last block of ${r.last.lengthBytes} bytes` : undefined)),
  RenewLease: () => ({}),
  GetBlockLocations: (r) => refuse(pathProblem(r.path)),
  GetFileInfo: (r) => refuse(pathProblem(r.path)),
  ListStatus: (r) => (pathProblem(r.path) ? refuse(pathProblem(r.path)) : { check: listCheck(r.limit) }),
  Rename: (r) => {
    const src = components(r.src)
    const dst = components(r.dst)
    const inside = dst.length > src.length && src.every((c, i) => dst[i] === c)
    return refuse(first(pathProblem(r.src), pathProblem(r.dst), src.length === 0 ? 'renaming the root' : undefined, dst.length === 0 ? 'renaming over the root' : undefined, inside ? 'moving a path inside itself' : undefined))
  },
  Delete: (r) => refuse(first(pathProblem(r.path), isRoot(r.path) ? 'removing the root' : undefined)),
  SetReplication: (r) => refuse(first(pathProblem(r.path), replicationProblem(r.replication, false))),
  SetPermission: (r) => refuse(first(pathProblem(r.path), r.mode > 0o7777 ? `mode ${r.mode.toString(8)}` : undefined)),
  SetOwner: (r) => refuse(pathProblem(r.path)),
  SetTimes: (r) => refuse(pathProblem(r.path)),
  OpenForWrite: (r) => refuse(first(pathProblem(r.path), r.clientName === '' ? 'an empty client name' : undefined)),
  UpdateBlock: (r) => refuse(first(pathProblem(r.path), leaseNameProblem(r.clientName))),
  CommitBlocks: (r) => {
    const long = r.blocks.find((b) => b.lengthBytes > BLOCK_SIZE_MAX_BYTES)
    return refuse(first(pathProblem(r.path), leaseNameProblem(r.clientName), long ? `a block of ${long.lengthBytes} bytes` : undefined))
  },
  Link: (r) => refuse(first(pathProblem(r.src), pathProblem(r.dst), isRoot(r.dst) ? 'linking over the root' : undefined)),
  Symlink: (r) =>
    refuse(
      first(
        pathProblem(r.path),
        isRoot(r.path) ? 'a symlink over the root' : undefined,
        r.target === '' ? 'an empty symlink target' : undefined,
        Buffer.byteLength(r.target) > SYMLINK_TARGET_BYTES_MAX ? `a symlink target over ${SYMLINK_TARGET_BYTES_MAX} bytes` : undefined,
        r.target.includes('\0') ? 'a symlink target with NUL' : undefined,
      ),
    ),
  SetXattr: (r) => refuse(first(pathProblem(r.path), xattrNameProblem(r.name), r.value.length > XATTR_VALUE_BYTES_MAX ? `an xattr value of ${r.value.length} bytes` : undefined)),
  RemoveXattr: (r) => refuse(first(pathProblem(r.path), xattrNameProblem(r.name))),
  GetXattrs: (r) => refuse(pathProblem(r.path)),
  CreateVolume: (r) => refuse(first(volumeNameProblem(r.name), volumeSizeProblem(r.sizeBytes), replicationProblem(r.replication, true), blockSizeProblem(r.blockSizeBytes))),
  ListVolumes: () => ({}),
  GetVolume: (r) => refuse(volumeNameProblem(r.name)),
  DeleteVolume: (r) => refuse(volumeNameProblem(r.name)),
  ResizeVolume: (r) => refuse(first(volumeNameProblem(r.name), volumeSizeProblem(r.sizeBytes))),
  AttachVolume: (r, w) => refuse(first(volumeNameProblem(r.name), w.nodeIds.includes(r.nodeId) ? undefined : `attaching to unknown datanode '${r.nodeId.slice(0, 40)}'`)),
  DetachVolume: (r) => refuse(volumeNameProblem(r.name)),
  SnapshotVolume: (r) => refuse(first(volumeNameProblem(r.volume), volumeNameProblem(r.snapshot))),
  ListSnapshots: (r) => refuse(volumeNameProblem(r.name)),
  DeleteSnapshot: (r) => refuse(first(volumeNameProblem(r.volume), volumeNameProblem(r.snapshot))),
  RestoreSnapshot: (r) => refuse(first(volumeNameProblem(r.volume), volumeNameProblem(r.snapshot), volumeNameProblem(r.to))),
  ReportBadBlocks: () => ({}),
  DatanodeReport: (_r, w) => ({
    check: (res) => {
      const live = (res as m.DatanodeReportResponse).datanodes.filter((d) => d.state === 'live').map((d) => d.id)
      const missing = w.nodeIds.filter((id) => !live.includes(id))
      return missing.length > 0 ? `DatanodeReport lists ${missing.join(', ')} as not live` : undefined
    },
  }),
  AnnounceScheduler: (r) => refuse(addressProblem(r.rpcAddress)),
  WhoAmI: () => ({}),
  Decommission: (r, w) => refuse(w.nodeIds.includes(r.nodeId) ? undefined : `decommissioning unknown datanode '${r.nodeId.slice(0, 40)}'`),
  RegisterDatanode: (r) => {
    const n = r.node
    return refuse(
      first(
        n ? undefined : 'no node',
        n && n.id === '' ? 'an empty node id' : undefined,
        n && n.id.includes('\0') ? 'a node id with NUL' : undefined,
        n && (n.rpcPort < 1 || n.rpcPort > 65_535) ? `rpc port ${n.rpcPort}` : undefined,
        n && n.httpPort > 65_535 ? `http port ${n.httpPort}` : undefined,
        n && n.host === '' ? 'an empty host' : undefined,
      ),
    )
  },
  Heartbeat: () => ({
    check: (res) => {
      const r = res as m.HeartbeatResponse
      return r.reregister && r.commands.length === 0 ? undefined : `a heartbeat from a node that never registered got reregister=${r.reregister} and ${r.commands.length} commands`
    },
  }),
  BlockReport: () => ({ refuse: 'a block report from a node that never registered' }),
}

function realOf(w: World, id: number): RealBlock | undefined {
  return w.realBlocks.find((b) => b.block.id === id)
}

/** Paths a daemon hands out must lie inside one of the data directories. */
function pathsInside(w: World) {
  return (res: unknown): string | undefined => {
    const s = res as m.ShortCircuitResponse
    const inside = [...w.dataDirs.values()].some((d) => s.dataPath.startsWith(d + '/') && s.metaPath.startsWith(d + '/'))
    return inside ? undefined : `ShortCircuit handed out ${s.dataPath} and ${s.metaPath}, outside every data directory`
  }
}

/** What a datanode must refuse (its unary methods; the streams have their own rules in attacks.ts). */
export const DATANODE_RULES: DnRules = {
  WriteBlock: () => ({}),
  ReadBlock: () => ({}),
  ShortCircuit: (r, w) => {
    if (!r.block) return { refuse: 'no block' }
    const bad = tokenProblem(r.token, r.block.id, [BlockOp.READ])
    if (bad) return { refuse: bad }
    if (blockIdAbsent(r.block.id)) return { refuse: `block ${r.block.id} is on no datanode` }
    const real = realOf(w, r.block.id)
    if (real && real.block.genStamp !== r.block.genStamp) return { refuse: `gen stamp ${r.block.genStamp} for a replica at ${real.block.genStamp}` }
    return { check: pathsInside(w) }
  },
  InspectReplica: (r) => {
    const bad = tokenProblem(r.token, r.blockId, [BlockOp.WRITE])
    if (bad) return { refuse: bad }
    return blockIdAbsent(r.blockId) ? { refuse: `block ${r.blockId} is on no datanode` } : {}
  },
  RecoverReplica: (r, w) => {
    if (!r.block) return { refuse: 'no block' }
    const bad = tokenProblem(r.token, r.block.id, [BlockOp.WRITE])
    if (bad) return { refuse: bad }
    if (blockIdAbsent(r.block.id)) return { refuse: `block ${r.block.id} is on no datanode` }
    if (r.block.lengthBytes > BLOCK_SIZE_MAX_BYTES) return { refuse: `a length of ${r.block.lengthBytes}` }
    const real = realOf(w, r.block.id)
    if (!real) return {}
    if (r.block.genStamp < real.block.genStamp) return { refuse: `recovery to gen stamp ${r.block.genStamp}, older than the replica's ${real.block.genStamp}` }
    if (r.block.genStamp === real.block.genStamp && r.block.lengthBytes !== real.block.lengthBytes) return { refuse: 'a different length at the same gen stamp' }
    return {}
  },
}

// ---------------------------------------------------------------- the requests

type NnBuilders = { [K in NnMethod]: (rng: Rng, w: World) => RequestOf<NamenodeServiceSpec[K]> }
type DnUnary = 'ShortCircuit' | 'InspectReplica' | 'RecoverReplica'
type DnBuilders = { [K in DnUnary]: (rng: Rng, w: World) => RequestOf<DatanodeServiceSpec[K]> }

function blockRef(rng: Rng, w: World): m.BlockRef | null {
  const real = w.realBlocks.length > 0 && rng.chance(0.4) ? rng.pick(w.realBlocks).block : undefined
  return rng.weighted<() => m.BlockRef | null>([
    [10, () => null],
    [40, () => ({ id: u64(rng), genStamp: u64(rng), lengthBytes: u64(rng) })],
    [25, () => ({ id: unusedBlockId(rng), genStamp: rng.pick([0, 1, 2 ** 53 - 1, 2 ** 53]), lengthBytes: u64(rng) })],
    [25, () => (real ? { ...real, lengthBytes: rng.chance(0.5) ? real.lengthBytes : u64(rng) } : null)],
  ])()
}

/** A real block, attacked without any call that could legitimately change it: stale, equal or invalid gen stamps only. */
function realBlockSafe(rng: Rng, w: World): m.BlockRef | null {
  if (w.realBlocks.length === 0) return { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }
  const real = rng.pick(w.realBlocks).block
  const genStamp = rng.pick([0, Math.max(0, real.genStamp - 1), real.genStamp, 2 ** 53, -1])
  const lengthBytes = genStamp === real.genStamp ? rng.pick([real.lengthBytes, real.lengthBytes + 1, Math.max(0, real.lengthBytes - 1), 2 ** 53]) : u64(rng)
  return { id: real.id, genStamp, lengthBytes }
}

function nodeInfo(rng: Rng): m.DatanodeInfo | null {
  if (rng.chance(0.1)) return null
  // Never a valid registration: some field is always broken, so a well-behaved namenode registers nothing.
  const broken = rng.pick(['id', 'port', 'host', 'nul'] as const)
  return {
    id: broken === 'id' ? '' : broken === 'nul' ? 'fz\0reg' : rng.pick(FAKE_REGISTER_IDS.filter((x) => !x.includes('\0'))),
    host: broken === 'host' ? '' : rng.pick(['127.0.0.1', '::1', 'h'.repeat(300)]),
    rpcPort: broken === 'port' ? rng.pick([0, 65_536, 2 ** 32 - 1]) : rng.int(1, 65_535),
    httpPort: u32(rng),
    rack: rng.pick(['', '/r1', '/../../etc', 'r'.repeat(1000)]),
  }
}

export const NAMENODE_REQUESTS: NnBuilders = {
  Mkdirs: (rng) => ({ path: hostilePath(rng), mode: u32(rng), parents: rng.chance(0.6) }),
  Create: (rng) => ({ path: hostilePath(rng), mode: u32(rng), replication: rng.pick([0, 0, 1, 3, 512, 513, 2 ** 32 - 1]), blockSizeBytes: rng.pick([0, 0, CHUNK_BYTES, CHUNK_BYTES + 1, BLOCK_SIZE_MAX_BYTES, BLOCK_SIZE_MAX_BYTES + CHUNK_BYTES, 2 ** 53]), overwrite: rng.chance(0.5), createParents: rng.chance(0.5), clientName: clientName(rng) }),
  AddBlock: (rng, w) => ({ path: hostilePath(rng), inodeId: u64(rng), clientName: clientName(rng), previous: blockRef(rng, w), writerNode: rng.pick(['', ...w.nodeIds, 'fz-node-1']), excludedNodes: rng.chance(0.2) ? Array.from({ length: 2000 }, (_, i) => `n${i}`) : [], randomWrites: rng.chance(0.3) }),
  RecoverPipeline: (rng, w) => ({ path: hostilePath(rng), inodeId: u64(rng), clientName: clientName(rng), block: blockRef(rng, w), excludedNodes: rng.chance(0.5) ? w.nodeIds : [], writerNode: '' }),
  Complete: (rng, w) => ({ path: hostilePath(rng), inodeId: u64(rng), clientName: clientName(rng), last: blockRef(rng, w) }),
  RenewLease: (rng) => ({ clientName: clientName(rng) }),
  GetBlockLocations: (rng) => ({ path: hostilePath(rng), offsetBytes: u64(rng), lengthBytes: u64(rng), readerNode: rng.pick(['', 'dn1', 'fz-node-1', 'x'.repeat(5000)]) }),
  GetFileInfo: (rng) => ({ path: hostilePath(rng) }),
  ListStatus: (rng) => ({ path: hostilePath(rng), startAfter: rng.pick(['', 'a', '\uffff', 'x'.repeat(70_000), '\0']), limit: u32(rng) }),
  Rename: (rng) => {
    const src = hostilePath(rng)
    return { src, dst: rng.chance(0.15) ? `${src}/sub` : hostilePath(rng), overwrite: rng.chance(0.5) }
  },
  Delete: (rng) => ({ path: hostilePath(rng), recursive: rng.chance(0.5) }),
  SetReplication: (rng) => ({ path: hostilePath(rng), replication: rng.pick([0, 1, 2, 3, 512, 513, 2 ** 32 - 1]) }),
  SetPermission: (rng) => ({ path: hostilePath(rng), mode: u32(rng) }),
  SetOwner: (rng) => ({ path: hostilePath(rng), owner: rng.pick(['', 'root', 'o'.repeat(100_000), 'a\0b', '😀']), group: rng.pick(['', 'wheel', 'g'.repeat(300)]) }),
  SetTimes: (rng) => ({ path: hostilePath(rng), mtimeMs: u64(rng), atimeMs: u64(rng) }),
  OpenForWrite: (rng) => ({ path: hostilePath(rng), clientName: clientName(rng) }),
  UpdateBlock: (rng, w) => ({ path: hostilePath(rng), inodeId: u64(rng), clientName: clientName(rng), blockId: blockRef(rng, w)?.id ?? 0, excludedNodes: [] }),
  CommitBlocks: (rng, w) => ({ path: hostilePath(rng), inodeId: u64(rng), clientName: clientName(rng), blocks: Array.from({ length: rng.int(0, 3) }, () => blockRef(rng, w)).filter((b): b is m.BlockRef => b !== null), truncate: rng.chance(0.5), blockCount: u32(rng), close: rng.chance(0.5), mtimeMs: u64(rng), background: rng.chance(0.5) }),
  Link: (rng) => ({ src: hostilePath(rng), dst: hostilePath(rng) }),
  Symlink: (rng) => ({ target: rng.pick(['', '/etc/passwd', '../../../../etc/passwd', 'a\0b', 't'.repeat(SYMLINK_TARGET_BYTES_MAX), 't'.repeat(SYMLINK_TARGET_BYTES_MAX + 1), '😀']), path: hostilePath(rng) }),
  SetXattr: (rng) => ({ path: hostilePath(rng), name: xattrName(rng), value: xattrValue(rng), create: rng.chance(0.3), replace: rng.chance(0.3) }),
  RemoveXattr: (rng) => ({ path: hostilePath(rng), name: xattrName(rng) }),
  GetXattrs: (rng) => ({ path: hostilePath(rng) }),
  CreateVolume: (rng) => ({ name: volumeName(rng), sizeBytes: rng.pick([0, 1, 1 << 20, 64 << 20, VOLUME_SIZE_MAX_BYTES, VOLUME_SIZE_MAX_BYTES + 1, 2 ** 53, -1]), replication: rng.pick([0, 1, 3, 513]), blockSizeBytes: rng.pick([0, CHUNK_BYTES, 100]) }),
  ListVolumes: () => ({}),
  GetVolume: (rng) => ({ name: volumeName(rng) }),
  DeleteVolume: (rng) => ({ name: volumeName(rng), force: rng.chance(0.5) }),
  ResizeVolume: (rng) => ({ name: volumeName(rng), sizeBytes: rng.pick([0, 1, 1 << 20, 1 << 30, VOLUME_SIZE_MAX_BYTES + 1, -1]) }),
  AttachVolume: (rng, w) => ({ name: volumeName(rng), nodeId: rng.pick([...w.nodeIds, ...FAKE_NODE_IDS]), force: rng.chance(0.5) }),
  DetachVolume: (rng) => ({ name: volumeName(rng) }),
  SnapshotVolume: (rng) => ({ volume: volumeName(rng), snapshot: snapshotName(rng) }),
  ListSnapshots: (rng) => ({ name: volumeName(rng) }),
  DeleteSnapshot: (rng) => ({ volume: volumeName(rng), snapshot: snapshotName(rng) }),
  RestoreSnapshot: (rng) => ({ volume: volumeName(rng), snapshot: snapshotName(rng), to: volumeName(rng) }),
  // Only nodes that do not exist: a report naming a real node is believed, by design.
  ReportBadBlocks: (rng, w) => ({ replicas: Array.from({ length: rng.int(0, 4) }, () => ({ block: blockRef(rng, w), nodeId: rng.pick(FAKE_NODE_IDS) })), path: hostilePath(rng) }),
  DatanodeReport: () => ({}),
  WhoAmI: () => ({}),
  AnnounceScheduler: (rng) => ({ rpcAddress: rng.pick(['127.0.0.1:1', '', ':', 'host', '127.0.0.1:0', '127.0.0.1:99999', '::1:5', 'x'.repeat(300)]), httpAddress: rng.pick(['127.0.0.1:2', '', 'junk']) }),
  Decommission: (rng) => ({ nodeId: rng.pick(FAKE_NODE_IDS), recommission: rng.chance(0.5) }),
  RegisterDatanode: (rng) => ({ node: nodeInfo(rng), capacityBytes: u64(rng), usedBytes: u64(rng), remainingBytes: u64(rng) }),
  Heartbeat: (rng, w) => ({ nodeId: rng.pick(FAKE_NODE_IDS), capacityBytes: u64(rng), usedBytes: u64(rng), remainingBytes: u64(rng), activeTransfers: u32(rng), failedCopies: Array.from({ length: rng.int(0, 3) }, () => blockRef(rng, w)).filter((b): b is m.BlockRef => b !== null) }),
  BlockReport: (rng, w) => ({ nodeId: rng.pick(FAKE_NODE_IDS), replicas: Array.from({ length: rng.int(0, 5) }, () => blockRef(rng, w)).filter((b): b is m.BlockRef => b !== null), full: rng.chance(0.5), beingWritten: [] }),
}

/**
 * The fuzzer reads the namenode's block keys (as its user may), so it can mint block access tokens:
 * mostly valid ones (to reach what lies behind the check), sometimes none,
 * garbage, or one for another block or operation (each refused).
 */
export function fuzzToken(rng: Rng, blockId: number | undefined, op: BlockOp): Uint8Array {
  const valid = (id: number, o: BlockOp, lifetimeMs = 60_000): Uint8Array => (Number.isSafeInteger(id) && id >= 0 ? blockToken(id, o, lifetimeMs) : new Uint8Array())
  return rng.weighted<() => Uint8Array>([
    [85, () => valid(blockId ?? 0, op)],
    [3, () => new Uint8Array()],
    [3, () => Buffer.from(rng.pick(['x', 'y'.repeat(50), 'z'.repeat(5000)]))],
    [3, () => valid((blockId ?? 0) + 1, op)],
    [3, () => valid(blockId ?? 0, op, -1000)],
    [3, () => valid(blockId ?? 0, op === BlockOp.READ ? BlockOp.WRITE : BlockOp.READ)],
  ])()
}

/** Why a datanode must refuse token for blockId (the text of its error), or undefined when the token opens it. */
export function tokenProblem(token: Uint8Array | undefined, blockId: number, ops: readonly BlockOp[]): string | undefined {
  const refusal = blockTokenRefusal(token, blockId, ops)
  return refusal === undefined ? undefined : `a block access token that does not open the block ('${refusal}')`
}

export const DATANODE_REQUESTS: DnBuilders = {
  ShortCircuit: (rng, w) => {
    const block = rng.chance(0.5) ? realBlockSafe(rng, w) : blockRef(rng, w)
    return { block, token: fuzzToken(rng, block?.id, BlockOp.READ) }
  },
  InspectReplica: (rng, w) => {
    const blockId = rng.chance(0.3) && w.realBlocks.length > 0 ? rng.pick(w.realBlocks).block.id : (blockRef(rng, w)?.id ?? 0)
    return { blockId, token: fuzzToken(rng, blockId, BlockOp.WRITE) }
  },
  // Never a real block at a newer gen stamp: that recovery would be legitimate, and would cut a health file.
  RecoverReplica: (rng, w) => {
    const b = rng.chance(0.5) ? realBlockSafe(rng, w) : blockRef(rng, w)
    const real = b ? realOf(w, b.id) : undefined
    return { block: b && real && b.genStamp > real.block.genStamp && Number.isSafeInteger(b.genStamp) ? { ...b, genStamp: 0 } : b, token: fuzzToken(rng, b?.id, BlockOp.WRITE) }
  },
}

export const NAMENODE_METHODS = Object.keys(NamenodeService) as NnMethod[]
export const DATANODE_UNARY_METHODS = Object.keys(DATANODE_REQUESTS) as DnUnary[]

export interface GenCall {
  method: string
  /** The request as encoded on the wire. */
  body: Uint8Array
  /** The request as the daemon decodes it (what the rules judge). */
  decoded: unknown
  expect: Expect
}

export function encodeCall(codec: Codec<unknown>, method: string, request: unknown, rule: (req: never, w: World) => Expect, w: World): GenCall {
  const body = codec.encode(request)
  let decoded: unknown
  try {
    decoded = codec.decode(body)
  } catch (err) {
    // A string with a lone surrogate is encoded as bytes that are not UTF-8: the daemon cannot read the request either.
    return { method, body, decoded: request, expect: { refuse: `a request that does not decode (${(err as Error).message})` } }
  }
  return { method, body, decoded, expect: rule(decoded as never, w) }
}

/** One well-formed namenode call with hostile arguments (of method, or of one picked at random). */
export function namenodeCall(rng: Rng, w: World, name?: string): GenCall {
  const method = (name as NnMethod | undefined) ?? rng.pick(NAMENODE_METHODS)
  const spec = NamenodeService[method] as { request: Codec<unknown> }
  return encodeCall(spec.request, method, NAMENODE_REQUESTS[method](rng, w), NAMENODE_RULES[method] as (req: never, w: World) => Expect, w)
}

/** One well-formed datanode unary call with hostile arguments (of method, or of one picked at random). */
export function datanodeCall(rng: Rng, w: World, name?: string): GenCall {
  const method = (name as DnUnary | undefined) ?? rng.pick(DATANODE_UNARY_METHODS)
  const spec = DatanodeService[method] as { request: Codec<unknown> }
  return encodeCall(spec.request, method, DATANODE_REQUESTS[method](rng, w), DATANODE_RULES[method] as (req: never, w: World) => Expect, w)
}

/** Hostile header fields of a request: who the caller says it is, its deadline, its volume epoch. */
export function headerFields(rng: Rng): { timeoutMs: number; user: string; groups: string[]; epoch: number } {
  return {
    timeoutMs: rng.weighted([
      [80, 10_000],
      [8, 0],
      [4, 1],
      [8, 2 ** 32 - 1],
    ]),
    user: rng.weighted([
      [80, 'fuzz'],
      [5, ''],
      [5, 'root'],
      [5, 'u'.repeat(100_000)],
      [5, 'a\0b'],
    ]),
    groups: rng.chance(0.9) ? [] : Array.from({ length: rng.int(1, 5000) }, (_, i) => `g${i}`),
    epoch: rng.weighted([
      [80, 0],
      [10, 1],
      [5, 2 ** 53 - 1],
      [5, -1],
    ]),
  }
}

// ---------------------------------------------------------------- the scheduler and the agents

/** Agent ids no real agent has: a fake one registering or heartbeating must not displace a real one. */
const FAKE_AGENT_IDS = ['fz-agent-1', 'fz-agent-2', '', 'a'.repeat(300), '\0', '__proto__', 'constructor']
/** Job, task and service ids: the fuzzer's own, odd ones, and none. */
const SCHED_IDS = ['fz-job-1', 'fz-job-2', 'fz-svc-1', 'fz-job-1/0', '', 'x'.repeat(10_000), '\0', '../../etc/passwd', '__proto__', '%s%n', '😀']

/** A job or service spec: mostly refused (bad JSON, bad fields, over a limit); a valid one runs 'true' only. */
function specJson(rng: Rng, service: boolean): string {
  const id = rng.pick(['fz-job-1', 'fz-job-2', 'fz-svc-1', 'BAD ID', '', '../x'])
  return rng.weighted<() => string>([
    [15, () => rng.bytes(rng.int(0, 200)).toString('latin1')],
    [10, () => rng.pick(['', '{', 'null', '[]', '"x"', '1e400', '{"__proto__":{"cmd":"true"}}', '{"constructor":{}}'])],
    [10, () => JSON.stringify({ id, cmd: 'true', instances: rng.pick([-1, 0, 1.5, 1e9, 'many']), cpus: rng.pick([0, -1, 1e308, 'x']) })],
    [10, () => JSON.stringify({ id, cmd: 'true', env: rng.pick([{ 'BAD NAME': 'x' }, Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`V${i}`, 'x'])), { A: 1 }]) })],
    [5, () => JSON.stringify({ id, cmd: 'true', input: rng.pick(['relative', `${SANDBOX}/*`, '/nothing/*', `${SANDBOX}/${'a/'.repeat(600)}`]) })],
    [5, () => JSON.stringify({ id, cmd: 'true', unknownField: 1 })],
    [5, () => `{"id":"${id}","cmd":"true","pad":"${'p'.repeat(rng.int(1000, 300_000))}"}`],
    // Services are deployed with no instances: a crash-looping 'true' would only make load.
    [10, () => JSON.stringify(service ? { id: 'fz-svc-1', cmd: 'true', instances: 0 } : { id, cmd: 'true', instances: rng.int(1, 2), cpus: 0.01, mem: 1, retries: 0 })],
  ])()
}

function taskStates(rng: Rng): m.TaskState[] {
  return Array.from({ length: rng.int(0, 4) }, () => ({ taskId: rng.pick(SCHED_IDS), state: rng.pick(['RUNNING', 'FINISHED', 'FAILED', 'LOST', '', 'BOGUS']), exitCode: rng.int(-1, 255), message: rng.pick(['', 'm'.repeat(5000)]), health: rng.pick(['', 'HEALTHY', 'UNHEALTHY', 'x']) }))
}

type SchedMethod = keyof SchedulerServiceSpec
type SchedRequests = { [K in SchedMethod]: (rng: Rng) => RequestOf<SchedulerServiceSpec[K]> }
type AgentMethod = keyof AgentServiceSpec
type AgentRequests = { [K in AgentMethod]: (rng: Rng) => RequestOf<AgentServiceSpec[K]> }

const SCHEDULER_REQUESTS: SchedRequests = {
  RegisterAgent: (rng) => ({ agentId: rng.pick(FAKE_AGENT_IDS), nodeId: rng.pick(FAKE_NODE_IDS), rack: rng.pick(['/r1', '', 'r'.repeat(300)]), host: rng.pick(['127.0.0.1', '', '::1', 'h'.repeat(300)]), rpcPort: u32(rng), cpus: rng.pick([0, -1, 0.5, 1e308, Number.NaN]), memMib: u64(rng), diskMib: u64(rng), tasks: taskStates(rng) }),
  AgentHeartbeat: (rng) => ({ agentId: rng.pick(FAKE_AGENT_IDS), tasks: taskStates(rng) }),
  SubmitJob: (rng) => ({ json: specJson(rng, false) }),
  JobStatus: (rng) => ({ id: rng.pick(SCHED_IDS) }),
  ListJobs: () => ({}),
  KillJob: (rng) => ({ id: rng.pick(SCHED_IDS) }),
  TaskLocation: (rng) => ({ id: rng.pick(SCHED_IDS) }),
  DeployService: (rng) => ({ json: specJson(rng, true) }),
  ServiceStatus: (rng) => ({ id: rng.pick(SCHED_IDS) }),
  ListServices: () => ({}),
  // Never a count that would start tasks: 0, or over the limit.
  ScaleService: (rng) => ({ id: rng.pick(SCHED_IDS), instances: rng.pick([0, SERVICE_INSTANCES_MAX + 1, 2 ** 32 - 1]) }),
  RemoveService: (rng) => ({ id: rng.pick(SCHED_IDS) }),
  ClusterState: () => ({}),
}

const AGENT_REQUESTS: AgentRequests = {
  ReadLog: (rng) => ({ taskId: rng.pick(SCHED_IDS), stream: rng.pick(['stdout', 'stderr', '', '../stdout', 'stdout\0', '/etc/passwd', 'x'.repeat(1000)]), offsetBytes: u64(rng), maxBytes: u32(rng) }),
}

type SchedRules = { [K in SchedMethod]: (req: RequestOf<SchedulerServiceSpec[K]>, w: World) => Expect }
type AgentRules = { [K in AgentMethod]: (req: RequestOf<AgentServiceSpec[K]>, w: World) => Expect }

function specProblem(json: string): string | undefined {
  if (json.length > JOB_SPEC_BYTES_MAX) return `a spec of ${json.length} bytes`
  try {
    const v: unknown = JSON.parse(json)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'a spec that is not a JSON object'
  } catch {
    return 'a spec that is not JSON'
  }
}

/** What the scheduler must refuse. */
export const SCHEDULER_RULES: SchedRules = {
  RegisterAgent: (r) => refuse(r.agentId === '' ? 'an agent without an id' : undefined),
  AgentHeartbeat: () => ({}),
  SubmitJob: (r) => refuse(specProblem(r.json)),
  JobStatus: () => ({}),
  ListJobs: () => ({}),
  KillJob: () => ({}),
  TaskLocation: () => ({}),
  DeployService: (r) => refuse(specProblem(r.json)),
  ServiceStatus: () => ({}),
  ListServices: () => ({}),
  ScaleService: (r) => refuse(r.instances > SERVICE_INSTANCES_MAX ? `${r.instances} instances` : undefined),
  RemoveService: () => ({}),
  ClusterState: () => ({}),
}

/** What an agent must refuse: a log stream other than stdout or stderr (no path reaches outside a sandbox). */
export const AGENT_RULES: AgentRules = {
  ReadLog: (r) => refuse(r.stream === 'stdout' || r.stream === 'stderr' ? undefined : `log stream ${JSON.stringify(r.stream.slice(0, 20))}`),
}

export const SCHEDULER_METHODS = Object.keys(SchedulerService) as SchedMethod[]
export const AGENT_METHODS = Object.keys(AgentService) as AgentMethod[]

/** One well-formed scheduler call with hostile arguments (of method, or of one picked at random). */
export function schedulerCall(rng: Rng, w: World, name?: string): GenCall {
  const method = (name as SchedMethod | undefined) ?? rng.pick(SCHEDULER_METHODS)
  const spec = SchedulerService[method] as { request: Codec<unknown> }
  return encodeCall(spec.request, method, SCHEDULER_REQUESTS[method](rng), SCHEDULER_RULES[method] as (req: never, w: World) => Expect, w)
}

/** One well-formed agent call with hostile arguments. */
export function agentCall(rng: Rng, w: World, name?: string): GenCall {
  const method = (name as AgentMethod | undefined) ?? rng.pick(AGENT_METHODS)
  const spec = AgentService[method] as { request: Codec<unknown> }
  return encodeCall(spec.request, method, AGENT_REQUESTS[method](rng), AGENT_RULES[method] as (req: never, w: World) => Expect, w)
}
