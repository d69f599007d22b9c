// Loads proto/loam.proto once and hands out typed codecs for its messages.
import { LoamError } from './errors.js'
import protobuf from 'protobufjs'
import { fileURLToPath } from 'node:url'
import * as m from './messages.js'

// uint64 as plain numbers: ids and byte counts stay below 2^53 (asserted where
// they are made), and decoding is faster without Long objects.
;(protobuf.util as { Long: unknown }).Long = null
protobuf.configure()

const PROTO_PATH = fileURLToPath(new URL('../../../proto/loam.proto', import.meta.url))
const root = protobuf.loadSync(PROTO_PATH)

export interface Codec<T> {
  readonly name: string
  encode(message: T): Uint8Array
  decode(bytes: Uint8Array): T
}

/** Plain objects with every field present: proto3 defaults live on a decoded message's prototype, and a spread would drop them. */
const PLAIN: protobuf.IConversionOptions = { defaults: true, arrays: true, objects: true, longs: Number }

/** perPacket: decoded as protobufjs messages (defaults on the prototype), for the few read field by field on the data path. */
function codec<T>(name: string, perPacket = false): Codec<T> {
  const type = root.lookupType(`loam.${name}`)
  return {
    name,
    encode: (message: T) => type.encode(message as object).finish(),
    decode: perPacket ? (bytes: Uint8Array) => type.decode(bytes) as unknown as T : (bytes: Uint8Array) => type.toObject(type.decode(bytes), PLAIN) as T,
  }
}

/** Decodes the body of a frame a peer sent: a malformed one is the peer's 'protocol' error, not an internal one. */
export function decodeBody<T>(c: Codec<T>, body: Uint8Array | undefined, what: string): T {
  try {
    return c.decode(body ?? new Uint8Array())
  } catch (err) {
    throw new LoamError('protocol', `malformed ${what}: ${(err as Error).message}`)
  }
}

export const codecs = {
  FrameHeader: codec<m.FrameHeader>('FrameHeader', true),
  Empty: codec<m.Empty>('Empty'),
  InodeRecord: codec<m.InodeRecord>('InodeRecord'),
  MkdirsRequest: codec<m.MkdirsRequest>('MkdirsRequest'),
  CreateRequest: codec<m.CreateRequest>('CreateRequest'),
  FileStatusResponse: codec<m.FileStatusResponse>('FileStatusResponse'),
  AddBlockRequest: codec<m.AddBlockRequest>('AddBlockRequest'),
  LocatedBlock: codec<m.LocatedBlock>('LocatedBlock'),
  RecoverPipelineRequest: codec<m.RecoverPipelineRequest>('RecoverPipelineRequest'),
  CompleteRequest: codec<m.CompleteRequest>('CompleteRequest'),
  OpenForWriteRequest: codec<m.OpenForWriteRequest>('OpenForWriteRequest'),
  UpdateBlockRequest: codec<m.UpdateBlockRequest>('UpdateBlockRequest'),
  CommitBlocksRequest: codec<m.CommitBlocksRequest>('CommitBlocksRequest'),
  LinkRequest: codec<m.LinkRequest>('LinkRequest'),
  VolumeRecord: codec<m.VolumeRecord>('VolumeRecord'),
  CreateVolumeRequest: codec<m.CreateVolumeRequest>('CreateVolumeRequest'),
  VolumeNameRequest: codec<m.VolumeNameRequest>('VolumeNameRequest'),
  DeleteVolumeRequest: codec<m.DeleteVolumeRequest>('DeleteVolumeRequest'),
  ResizeVolumeRequest: codec<m.ResizeVolumeRequest>('ResizeVolumeRequest'),
  AttachVolumeRequest: codec<m.AttachVolumeRequest>('AttachVolumeRequest'),
  VolumeInfo: codec<m.VolumeInfo>('VolumeInfo'),
  SnapshotRequest: codec<m.SnapshotRequest>('SnapshotRequest'),
  RestoreSnapshotRequest: codec<m.RestoreSnapshotRequest>('RestoreSnapshotRequest'),
  ListSnapshotsResponse: codec<m.ListSnapshotsResponse>('ListSnapshotsResponse'),
  RegisterAgentRequest: codec<m.RegisterAgentRequest>('RegisterAgentRequest'),
  RegisterAgentResponse: codec<m.RegisterAgentResponse>('RegisterAgentResponse'),
  AgentHeartbeatRequest: codec<m.AgentHeartbeatRequest>('AgentHeartbeatRequest'),
  AgentHeartbeatResponse: codec<m.AgentHeartbeatResponse>('AgentHeartbeatResponse'),
  JsonRequest: codec<m.JsonRequest>('JsonRequest'),
  JsonResponse: codec<m.JsonResponse>('JsonResponse'),
  IdRequest: codec<m.IdRequest>('IdRequest'),
  ScaleRequest: codec<m.ScaleRequest>('ScaleRequest'),
  ReadLogRequest: codec<m.ReadLogRequest>('ReadLogRequest'),
  ReadLogResponse: codec<m.ReadLogResponse>('ReadLogResponse'),
  ListVolumesResponse: codec<m.ListVolumesResponse>('ListVolumesResponse'),
  SymlinkRequest: codec<m.SymlinkRequest>('SymlinkRequest'),
  SetXattrRequest: codec<m.SetXattrRequest>('SetXattrRequest'),
  RemoveXattrRequest: codec<m.RemoveXattrRequest>('RemoveXattrRequest'),
  GetXattrsResponse: codec<m.GetXattrsResponse>('GetXattrsResponse'),
  RenewLeaseRequest: codec<m.RenewLeaseRequest>('RenewLeaseRequest'),
  GetBlockLocationsRequest: codec<m.GetBlockLocationsRequest>('GetBlockLocationsRequest'),
  GetBlockLocationsResponse: codec<m.GetBlockLocationsResponse>('GetBlockLocationsResponse'),
  PathRequest: codec<m.PathRequest>('PathRequest'),
  ListStatusRequest: codec<m.ListStatusRequest>('ListStatusRequest'),
  ListStatusResponse: codec<m.ListStatusResponse>('ListStatusResponse'),
  RenameRequest: codec<m.RenameRequest>('RenameRequest'),
  DeleteRequest: codec<m.DeleteRequest>('DeleteRequest'),
  SetReplicationRequest: codec<m.SetReplicationRequest>('SetReplicationRequest'),
  SetPermissionRequest: codec<m.SetPermissionRequest>('SetPermissionRequest'),
  SetOwnerRequest: codec<m.SetOwnerRequest>('SetOwnerRequest'),
  SetTimesRequest: codec<m.SetTimesRequest>('SetTimesRequest'),
  ReportBadBlocksRequest: codec<m.ReportBadBlocksRequest>('ReportBadBlocksRequest'),
  DatanodeReportResponse: codec<m.DatanodeReportResponse>('DatanodeReportResponse'),
  DecommissionRequest: codec<m.DecommissionRequest>('DecommissionRequest'),
  SchedulerAnnouncement: codec<m.SchedulerAnnouncement>('SchedulerAnnouncement'),
  WhoAmIResponse: codec<m.WhoAmIResponse>('WhoAmIResponse'),
  RegisterDatanodeRequest: codec<m.RegisterDatanodeRequest>('RegisterDatanodeRequest'),
  RegisterDatanodeResponse: codec<m.RegisterDatanodeResponse>('RegisterDatanodeResponse'),
  HeartbeatRequest: codec<m.HeartbeatRequest>('HeartbeatRequest'),
  HeartbeatResponse: codec<m.HeartbeatResponse>('HeartbeatResponse'),
  BlockReportRequest: codec<m.BlockReportRequest>('BlockReportRequest'),
  WriteBlockRequest: codec<m.WriteBlockRequest>('WriteBlockRequest'),
  Packet: codec<m.Packet>('Packet', true),
  PacketAck: codec<m.PacketAck>('PacketAck', true),
  WriteBlockResponse: codec<m.WriteBlockResponse>('WriteBlockResponse'),
  ReadBlockRequest: codec<m.ReadBlockRequest>('ReadBlockRequest'),
  ReadBlockResponse: codec<m.ReadBlockResponse>('ReadBlockResponse'),
  InspectReplicaRequest: codec<m.InspectReplicaRequest>('InspectReplicaRequest'),
  InspectReplicaResponse: codec<m.InspectReplicaResponse>('InspectReplicaResponse'),
  RecoverReplicaRequest: codec<m.RecoverReplicaRequest>('RecoverReplicaRequest'),
  ShortCircuitRequest: codec<m.ShortCircuitRequest>('ShortCircuitRequest'),
  ShortCircuitResponse: codec<m.ShortCircuitResponse>('ShortCircuitResponse'),
} as const
