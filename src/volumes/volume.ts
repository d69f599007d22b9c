// Volume rules, free of I/O: names, sizes, the quota on logical bytes, and
// who may attach. The namenode applies them inside its namespace transactions.
import { LoamError } from '../rpc/errors.js'
import type { VolumeRecord } from '../rpc/messages.js'
import { VOLUME_SIZE_MAX_BYTES, VOLUMES_MAX } from '../limits.js'

export const VOLUMES_DIR = 'volumes'
/** Where snapshots live: /.snapshots/VOLUME/NAME, read-only. */
export const SNAPSHOTS_DIR = '.snapshots'
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/

export function volumePath(name: string): string {
  return `/${VOLUMES_DIR}/${name}`
}

export function checkVolumeName(name: string): void {
  if (!NAME.test(name)) throw new LoamError('invalid-argument', `volume name '${name.slice(0, 80)}' must match [a-z0-9][a-z0-9-]{0,62}`)
}

export function checkSnapshotName(name: string): void {
  if (!NAME.test(name)) throw new LoamError('invalid-argument', `snapshot name '${name.slice(0, 80)}' must match [a-z0-9][a-z0-9-]{0,62}`)
}

/** A size for a volume: positive, within the limit and, when known, what the cluster can hold. */
export function checkVolumeSize(sizeBytes: number, capacityBytes?: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new LoamError('invalid-argument', `volume size ${sizeBytes} must be a positive number of bytes (e.g. 10GiB)`)
  if (sizeBytes > VOLUME_SIZE_MAX_BYTES) throw new LoamError('invalid-argument', `volume size ${sizeBytes} is over the limit of ${VOLUME_SIZE_MAX_BYTES} bytes`)
  if (capacityBytes !== undefined && sizeBytes > capacityBytes) {
    throw new LoamError('no-space', `volume size ${sizeBytes} bytes is beyond the cluster's capacity of ${capacityBytes} bytes (see 'loam report')`)
  }
}

export function checkVolumeCount(existing: number): void {
  if (existing >= VOLUMES_MAX) throw new LoamError('no-space', `the cluster holds at most ${VOLUMES_MAX} volumes`)
}

/** Logical bytes after a change of deltaBytes; growing past the size is refused (EDQUOT). */
export function charge(vol: VolumeRecord, deltaBytes: number): number {
  const used = vol.usedBytes + deltaBytes
  if (deltaBytes > 0 && used > vol.sizeBytes) {
    throw new LoamError('quota', `volume ${vol.name} is full: ${vol.usedBytes} of ${vol.sizeBytes} bytes used, ${deltaBytes} more asked for (grow it with 'loam volume resize')`)
  }
  return Math.max(0, used)
}

/** A new size: growing always, shrinking only down to what is used. */
export function resized(vol: VolumeRecord, sizeBytes: number, capacityBytes: number): VolumeRecord {
  checkVolumeSize(sizeBytes, capacityBytes)
  if (sizeBytes < vol.usedBytes) throw new LoamError('invalid-argument', `volume ${vol.name} holds ${vol.usedBytes} bytes: it cannot shrink to ${sizeBytes}`)
  return { ...vol, sizeBytes }
}

/**
 * Attaching: one node at a time. A second node is refused while the holder's
 * lease holds (its node heartbeats); with force, once it has lapsed, the
 * volume moves under a higher epoch and the old holder is fenced.
 */
export function attached(vol: VolumeRecord, nodeId: string, opts: { force: boolean; holderAlive: boolean }): VolumeRecord {
  if (vol.attachedNode === nodeId) return vol
  if (vol.attachedNode) {
    if (!opts.force) throw new LoamError('lease', `volume ${vol.name} is attached to ${vol.attachedNode} (epoch ${vol.epoch}); detach it there, or use --force once that node is dead`)
    if (opts.holderAlive) throw new LoamError('lease', `volume ${vol.name} is attached to ${vol.attachedNode}, which is alive and holds its lease; --force takes it only after that node is dead`)
  }
  return { ...vol, attachedNode: nodeId, epoch: vol.epoch + 1 }
}

export function detached(vol: VolumeRecord): VolumeRecord {
  return { ...vol, attachedNode: '' }
}

/**
 * Whether a caller writing under epoch may change the volume now. A detached
 * volume takes writes outside any attachment (epoch 0: the CLI), not from a
 * mount whose attachment ended.
 */
export function checkEpoch(vol: VolumeRecord, epoch: number): void {
  if (!vol.attachedNode) {
    if (epoch !== 0) throw new LoamError('stale-epoch', `volume ${vol.name} was detached; writes under its old epoch ${epoch} are refused (attach it again and mount it anew)`)
    return
  }
  if (epoch !== vol.epoch) {
    throw new LoamError('stale-epoch', `volume ${vol.name} is attached to ${vol.attachedNode} under epoch ${vol.epoch}; writes under ${epoch ? `epoch ${epoch}` : 'no attachment'} are refused`)
  }
}
