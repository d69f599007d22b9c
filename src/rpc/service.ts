// The services each daemon serves: method name -> request and response codecs.
// A 'stream' method exchanges DATA/ACK frames between its request and its response.
import type * as m from './messages.js'
import { codecs, type Codec } from './schema.js'

export interface MethodSpec<Req, Res> {
  kind: 'unary' | 'stream'
  request: Codec<Req>
  response: Codec<Res>
}
export type ServiceSpec = Record<string, MethodSpec<unknown, unknown>>
export type RequestOf<M> = M extends MethodSpec<infer Req, unknown> ? Req : never
export type ResponseOf<M> = M extends MethodSpec<unknown, infer Res> ? Res : never

function unary<Req, Res>(request: Codec<Req>, response: Codec<Res>): MethodSpec<Req, Res> {
  return { kind: 'unary', request, response }
}
function stream<Req, Res>(request: Codec<Req>, response: Codec<Res>): MethodSpec<Req, Res> {
  return { kind: 'stream', request, response }
}

export const NamenodeService = {
  // namespace
  Mkdirs: unary(codecs.MkdirsRequest, codecs.FileStatusResponse),
  Create: unary(codecs.CreateRequest, codecs.FileStatusResponse),
  AddBlock: unary(codecs.AddBlockRequest, codecs.LocatedBlock),
  RecoverPipeline: unary(codecs.RecoverPipelineRequest, codecs.LocatedBlock),
  Complete: unary(codecs.CompleteRequest, codecs.FileStatusResponse),
  RenewLease: unary(codecs.RenewLeaseRequest, codecs.Empty),
  GetBlockLocations: unary(codecs.GetBlockLocationsRequest, codecs.GetBlockLocationsResponse),
  GetFileInfo: unary(codecs.PathRequest, codecs.FileStatusResponse),
  ListStatus: unary(codecs.ListStatusRequest, codecs.ListStatusResponse),
  Rename: unary(codecs.RenameRequest, codecs.Empty),
  Delete: unary(codecs.DeleteRequest, codecs.Empty),
  SetReplication: unary(codecs.SetReplicationRequest, codecs.FileStatusResponse),
  SetPermission: unary(codecs.SetPermissionRequest, codecs.FileStatusResponse),
  SetOwner: unary(codecs.SetOwnerRequest, codecs.FileStatusResponse),
  SetTimes: unary(codecs.SetTimesRequest, codecs.FileStatusResponse),
  OpenForWrite: unary(codecs.OpenForWriteRequest, codecs.FileStatusResponse),
  UpdateBlock: unary(codecs.UpdateBlockRequest, codecs.LocatedBlock),
  CommitBlocks: unary(codecs.CommitBlocksRequest, codecs.FileStatusResponse),
  Link: unary(codecs.LinkRequest, codecs.FileStatusResponse),
  Symlink: unary(codecs.SymlinkRequest, codecs.FileStatusResponse),
  SetXattr: unary(codecs.SetXattrRequest, codecs.Empty),
  RemoveXattr: unary(codecs.RemoveXattrRequest, codecs.Empty),
  GetXattrs: unary(codecs.PathRequest, codecs.GetXattrsResponse),
  // volumes
  CreateVolume: unary(codecs.CreateVolumeRequest, codecs.VolumeInfo),
  ListVolumes: unary(codecs.Empty, codecs.ListVolumesResponse),
  GetVolume: unary(codecs.VolumeNameRequest, codecs.VolumeInfo),
  DeleteVolume: unary(codecs.DeleteVolumeRequest, codecs.Empty),
  ResizeVolume: unary(codecs.ResizeVolumeRequest, codecs.VolumeInfo),
  AttachVolume: unary(codecs.AttachVolumeRequest, codecs.VolumeInfo),
  DetachVolume: unary(codecs.VolumeNameRequest, codecs.VolumeInfo),
  SnapshotVolume: unary(codecs.SnapshotRequest, codecs.ListSnapshotsResponse),
  ListSnapshots: unary(codecs.VolumeNameRequest, codecs.ListSnapshotsResponse),
  DeleteSnapshot: unary(codecs.SnapshotRequest, codecs.ListSnapshotsResponse),
  RestoreSnapshot: unary(codecs.RestoreSnapshotRequest, codecs.VolumeInfo),
  ReportBadBlocks: unary(codecs.ReportBadBlocksRequest, codecs.Empty),
  DatanodeReport: unary(codecs.Empty, codecs.DatanodeReportResponse),
  Decommission: unary(codecs.DecommissionRequest, codecs.DatanodeReportResponse),
  AnnounceScheduler: unary(codecs.SchedulerAnnouncement, codecs.Empty),
  WhoAmI: unary(codecs.Empty, codecs.WhoAmIResponse),
  // datanodes
  RegisterDatanode: unary(codecs.RegisterDatanodeRequest, codecs.RegisterDatanodeResponse),
  Heartbeat: unary(codecs.HeartbeatRequest, codecs.HeartbeatResponse),
  BlockReport: unary(codecs.BlockReportRequest, codecs.Empty),
} satisfies ServiceSpec

export const DatanodeService = {
  WriteBlock: stream(codecs.WriteBlockRequest, codecs.WriteBlockResponse),
  ReadBlock: stream(codecs.ReadBlockRequest, codecs.ReadBlockResponse),
  ShortCircuit: unary(codecs.ShortCircuitRequest, codecs.ShortCircuitResponse),
  InspectReplica: unary(codecs.InspectReplicaRequest, codecs.InspectReplicaResponse),
  RecoverReplica: unary(codecs.RecoverReplicaRequest, codecs.Empty),
} satisfies ServiceSpec

export const SchedulerService = {
  RegisterAgent: unary(codecs.RegisterAgentRequest, codecs.RegisterAgentResponse),
  AgentHeartbeat: unary(codecs.AgentHeartbeatRequest, codecs.AgentHeartbeatResponse),
  SubmitJob: unary(codecs.JsonRequest, codecs.JsonResponse),
  JobStatus: unary(codecs.IdRequest, codecs.JsonResponse),
  ListJobs: unary(codecs.Empty, codecs.JsonResponse),
  KillJob: unary(codecs.IdRequest, codecs.JsonResponse),
  TaskLocation: unary(codecs.IdRequest, codecs.JsonResponse),
  DeployService: unary(codecs.JsonRequest, codecs.JsonResponse),
  ServiceStatus: unary(codecs.IdRequest, codecs.JsonResponse),
  ListServices: unary(codecs.Empty, codecs.JsonResponse),
  ScaleService: unary(codecs.ScaleRequest, codecs.JsonResponse),
  RemoveService: unary(codecs.IdRequest, codecs.JsonResponse),
  ClusterState: unary(codecs.Empty, codecs.JsonResponse),
} satisfies ServiceSpec

export const AgentService = {
  ReadLog: unary(codecs.ReadLogRequest, codecs.ReadLogResponse),
} satisfies ServiceSpec

export type NamenodeServiceSpec = typeof NamenodeService
export type DatanodeServiceSpec = typeof DatanodeService
export type SchedulerServiceSpec = typeof SchedulerService
export type AgentServiceSpec = typeof AgentService
export type { m as messages }
