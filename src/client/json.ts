// The JSON forms of file and volume records: what `--json` prints and what the
// namenode's dashboard API returns. Pure (no I/O), so the browser code can share the shapes.
import { InodeType, type FileStatus, type VolumeInfo } from '../rpc/messages.js'

export type FileTypeName = 'file' | 'directory' | 'symlink'

const TYPE_NAMES: Record<InodeType, FileTypeName> = { [InodeType.FILE]: 'file', [InodeType.DIRECTORY]: 'directory', [InodeType.SYMLINK]: 'symlink' }

export interface FileStatusJson {
  path: string
  name: string
  type: FileTypeName
  length: number
  replication: number
  blockSize: number
  blocks: number
  /** Octal, four digits: 0644. */
  mode: string
  owner: string
  group: string
  mtimeMs: number
  atimeMs: number
  nlink: number
  openForWrite: boolean
}

export function fileStatusJson(s: FileStatus): FileStatusJson {
  return {
    path: s.path,
    name: s.name,
    type: TYPE_NAMES[s.type],
    length: s.lengthBytes,
    replication: s.replication,
    blockSize: s.blockSizeBytes,
    blocks: s.blockCount,
    mode: s.mode.toString(8).padStart(4, '0'),
    owner: s.owner,
    group: s.group,
    mtimeMs: s.mtimeMs,
    atimeMs: s.atimeMs,
    nlink: s.nlink,
    openForWrite: s.underConstruction,
  }
}

export interface VolumeJson {
  name: string
  path: string
  sizeBytes: number
  usedBytes: number
  replication: number
  blockSizeBytes: number
  owner: string
  state: string
  attachedNode: string | null
  holderAlive: boolean
  epoch: number
  createdMs: number
  /** Replica bytes per datanode: inspect (GetVolume) only, empty in a listing. */
  nodes: Array<{ node: string; bytes: number }>
  snapshots: Array<{ name: string; createdMs: number; usedBytes: number }>
}

export function volumeJson(info: VolumeInfo): VolumeJson {
  const v = info.volume!
  return {
    name: v.name,
    path: info.path,
    sizeBytes: v.sizeBytes,
    usedBytes: v.usedBytes,
    replication: v.replication,
    blockSizeBytes: v.blockSizeBytes,
    owner: v.owner,
    state: info.state,
    attachedNode: v.attachedNode || null,
    holderAlive: info.holderAlive,
    epoch: v.epoch,
    createdMs: v.createdMs,
    nodes: info.nodes.map((n) => ({ node: n.nodeId, bytes: n.bytes })),
    snapshots: v.snapshots.map((s) => ({ name: s.name, createdMs: s.createdMs, usedBytes: s.usedBytes })),
  }
}
