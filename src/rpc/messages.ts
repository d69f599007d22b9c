// TypeScript shapes of the messages in proto/loam.proto (protobufjs camelCases
// field names; uint64 decodes as number, see schema.ts). Decoded messages carry
// proto3 defaults, so scalars are always present; a nested message may be null.

export enum FrameKind { REQUEST = 0, RESPONSE = 1, ERROR = 2, DATA = 3, ACK = 4 }
export enum InodeType { FILE = 0, DIRECTORY = 1, SYMLINK = 2 }
export enum CommandAction { DELETE = 0, REPLICATE = 1 }

export interface RpcErrorMsg { code: string; message: string }
export interface FrameHeader {
  id: number
  kind: FrameKind
  method?: string
  timeoutMs?: number
  body?: Uint8Array
  error?: RpcErrorMsg | null
  user?: string
  groups?: string[]
  epoch?: number
}
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Empty {}

export interface BlockRef { id: number; genStamp: number; lengthBytes: number }
export interface DatanodeInfo { id: string; host: string; rpcPort: number; httpPort: number; rack: string }
export interface LocatedBlock {
  block: BlockRef | null
  offsetBytes: number
  locations: DatanodeInfo[]
  corrupt: DatanodeInfo[]
  complete: boolean
  copiedFrom?: BlockRef | null
  /** Block access token for this block (src/rpc/block-token.ts). */
  token?: Uint8Array
  copiedFromToken?: Uint8Array
  /** With a write token, for a writer that may read the file: a random writer reads back what it wrote. */
  readToken?: Uint8Array
}
export interface FileStatus {
  inodeId: number
  name: string
  type: InodeType
  lengthBytes: number
  replication: number
  blockSizeBytes: number
  mode: number
  owner: string
  group: string
  mtimeMs: number
  atimeMs: number
  ctimeMs: number
  nlink: number
  symlinkTarget: string
  underConstruction: boolean
  blockCount: number
  path: string
  xattrCount: number
}
export interface InodeRecord {
  id: number
  type: InodeType
  mode: number
  owner: string
  group: string
  mtimeMs: number
  atimeMs: number
  ctimeMs: number
  nlink: number
  replication: number
  blockSizeBytes: number
  lengthBytes: number
  blocks: BlockRef[]
  symlinkTarget: string
  xattrs: Record<string, Uint8Array>
  leaseHolder: string
  parentId: number
  children: number
  updatingBlocks: number[]
  volume: string
  readOnly: boolean
  leaseUser: string
}

export interface VolumeRecord {
  name: string
  sizeBytes: number
  usedBytes: number
  replication: number
  blockSizeBytes: number
  owner: string
  group: string
  createdMs: number
  rootId: number
  attachedNode: string
  epoch: number
  snapshots: SnapshotRecord[]
}
export interface SnapshotRecord { name: string; createdMs: number; rootId: number; usedBytes: number }
export interface SnapshotRequest { volume: string; snapshot: string }
export interface RestoreSnapshotRequest { volume: string; snapshot: string; to: string }
export interface ListSnapshotsResponse { snapshots: SnapshotRecord[] }
export interface CreateVolumeRequest { name: string; sizeBytes: number; replication: number; blockSizeBytes: number }
export interface VolumeNameRequest { name: string }
export interface DeleteVolumeRequest { name: string; force: boolean }
export interface ResizeVolumeRequest { name: string; sizeBytes: number }
export interface AttachVolumeRequest { name: string; nodeId: string; force: boolean }
export interface VolumeNodeBytes { nodeId: string; bytes: number }
export interface VolumeInfo {
  volume: VolumeRecord | null
  path: string
  state: string
  nodes: VolumeNodeBytes[]
  warning: string
  holderAlive: boolean
}
export interface ListVolumesResponse { volumes: VolumeInfo[] }

export interface MkdirsRequest { path: string; mode: number; parents: boolean }
export interface CreateRequest {
  path: string
  mode: number
  replication: number
  blockSizeBytes: number
  overwrite: boolean
  createParents: boolean
  clientName: string
}
export interface FileStatusResponse { status: FileStatus | null; leaseLimitMs?: number }
export interface AddBlockRequest {
  path: string
  inodeId: number
  clientName: string
  previous?: BlockRef | null
  writerNode: string
  excludedNodes: string[]
  randomWrites?: boolean
}
export interface RecoverPipelineRequest {
  path: string
  inodeId: number
  clientName: string
  block: BlockRef | null
  excludedNodes: string[]
  writerNode: string
}
export interface CompleteRequest { path: string; inodeId: number; clientName: string; last?: BlockRef | null }
export interface RenewLeaseRequest { clientName: string }
export interface OpenForWriteRequest { path: string; clientName: string }
export interface UpdateBlockRequest { path: string; inodeId: number; clientName: string; blockId: number; excludedNodes: string[] }
export interface CommitBlocksRequest {
  path: string
  inodeId: number
  clientName: string
  blocks: BlockRef[]
  truncate: boolean
  blockCount: number
  close: boolean
  mtimeMs: number
  /** Nobody waits on it (a close after the program's close returned): the namenode may hold it to share the next sync. */
  background: boolean
}
export interface LinkRequest { src: string; dst: string }
export interface SymlinkRequest { target: string; path: string }
export interface SetXattrRequest { path: string; name: string; value: Uint8Array; create: boolean; replace: boolean }
export interface RemoveXattrRequest { path: string; name: string }
export interface GetXattrsResponse { xattrs: Record<string, Uint8Array> }
export interface GetBlockLocationsRequest { path: string; offsetBytes: number; lengthBytes: number; readerNode: string }
export interface GetBlockLocationsResponse { status: FileStatus | null; blocks: LocatedBlock[] }
export interface PathRequest { path: string }
export interface ListStatusRequest { path: string; startAfter: string; limit: number }
export interface ListStatusResponse { entries: FileStatus[]; hasMore: boolean }
export interface RenameRequest { src: string; dst: string; overwrite: boolean }
export interface DeleteRequest { path: string; recursive: boolean }
export interface SetReplicationRequest { path: string; replication: number }
export interface SetPermissionRequest { path: string; mode: number }
export interface SetOwnerRequest { path: string; owner: string; group: string }
export interface SetTimesRequest { path: string; mtimeMs: number; atimeMs: number }
export interface BadReplica { block: BlockRef | null; nodeId: string }
export interface ReportBadBlocksRequest { replicas: BadReplica[]; path: string }
export interface DatanodeReport {
  id: string
  address: string
  rack: string
  state: string
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
  blocks: number
  lastHeartbeatMs: number
  httpPort: number
}
export interface DatanodeReportResponse {
  safemode: boolean
  datanodes: DatanodeReport[]
  reportedBlocks: number
  totalBlocks: number
}

export interface DecommissionRequest { nodeId: string; recommission: boolean }
export interface WhoAmIResponse { user: string; groups: string[]; superuser: boolean }
export interface SchedulerAnnouncement { rpcAddress: string; httpAddress: string }

export interface RegisterDatanodeRequest {
  node: DatanodeInfo | null
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
}
export interface BlockKey { id: number; key: Uint8Array; expiresMs: number }
export interface RegisterDatanodeResponse { heartbeatIntervalMs: number; clusterId: string; blockKeys: BlockKey[] }
export interface HeartbeatRequest {
  nodeId: string
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
  activeTransfers: number
  failedCopies: BlockRef[]
}
export interface DatanodeCommand { action: CommandAction; blocks: BlockRef[]; targets: DatanodeInfo[]; tokens?: Uint8Array[] }
export interface HeartbeatResponse { commands: DatanodeCommand[]; reregister: boolean; blockKeys: BlockKey[] }
export interface BlockReportRequest { nodeId: string; replicas: BlockRef[]; full: boolean; beingWritten: BlockRef[] }

export interface WriteBlockRequest {
  block: BlockRef | null
  downstream: DatanodeInfo[]
  clientName: string
  update: boolean
  oldGenStamp: number
  resize: boolean
  resizeBytes: number
  copyFromBlock: number
  copyFromGenStamp: number
  token?: Uint8Array
  copyFromToken?: Uint8Array
}
export interface Packet { seqno: number; offsetBytes: number; checksums: Uint8Array; last: boolean; sync: boolean }
export interface PacketAck { seqno: number; ok: boolean; failedNode: string; message: string }
export interface WriteBlockResponse { block: BlockRef | null }
export interface ReadBlockRequest { block: BlockRef | null; offsetBytes: number; lengthBytes: number; token?: Uint8Array }
export interface ReadBlockResponse { lengthBytes: number }
export interface ShortCircuitRequest { block: BlockRef | null; token?: Uint8Array }
export interface ShortCircuitResponse { dataPath: string; metaPath: string; lengthBytes: number; genStamp: number }
export interface InspectReplicaRequest { blockId: number; token?: Uint8Array }
export interface InspectReplicaResponse { genStamp: number; lengthBytes: number; verifiedBytes: number; finalized: boolean }
export interface RecoverReplicaRequest { block: BlockRef | null; token?: Uint8Array }

export interface TaskState { taskId: string; state: string; exitCode: number; message: string; health: string }
export interface RegisterAgentRequest {
  agentId: string
  nodeId: string
  rack: string
  host: string
  rpcPort: number
  cpus: number
  memMib: number
  diskMib: number
  tasks: TaskState[]
}
export interface RegisterAgentResponse { heartbeatIntervalMs: number }
export interface AgentHeartbeatRequest { agentId: string; tasks: TaskState[] }
export interface TaskVolume { name: string; path: string; nodeId: string }
export interface HealthCheck { cmd: string; port: number; path: string; intervalMs: number; timeoutMs: number; graceMs: number; maxFailures: number }
export interface LaunchTask {
  taskId: string
  jobId: string
  cmd: string
  env: Record<string, string>
  cpus: number
  memMib: number
  volumes: TaskVolume[]
  healthCheck: HealthCheck | null
  user: string
}
export interface ScaleRequest { id: string; instances: number }
export interface AgentHeartbeatResponse { launch: LaunchTask[]; kill: string[]; forget: string[]; reregister: boolean }
export interface JsonRequest { json: string }
export interface JsonResponse { json: string }
export interface IdRequest { id: string }
export interface ReadLogRequest { taskId: string; stream: string; offsetBytes: number; maxBytes: number }
export interface ReadLogResponse { data: Uint8Array; ended: boolean }
