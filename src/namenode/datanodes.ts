// The namenode's view of its datanodes: liveness, usage, and commands waiting
// for their next heartbeat.
import type { BlockRef, DatanodeInfo, DatanodeReport } from '../rpc/messages.js'
import type { PlacementNode } from './placement.js'

export type DatanodeStateName = 'live' | 'dead' | 'decommissioning' | 'decommissioned'

export interface DatanodeState {
  info: DatanodeInfo
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
  activeTransfers: number
  lastHeartbeatMs: number
  state: DatanodeStateName
  blocks: Set<number>
  pendingDeletes: BlockRef[]
}

export class Datanodes {
  readonly nodes = new Map<string, DatanodeState>()

  register(info: DatanodeInfo, usage: { capacityBytes: number; usedBytes: number; remainingBytes: number }, nowMs: number): DatanodeState {
    const prev = this.nodes.get(info.id)
    const node: DatanodeState = {
      info,
      ...usage,
      activeTransfers: 0,
      lastHeartbeatMs: nowMs,
      state: 'live',
      blocks: prev?.blocks ?? new Set(),
      pendingDeletes: prev?.pendingDeletes ?? [],
    }
    this.nodes.set(info.id, node)
    return node
  }

  live(): DatanodeState[] {
    return [...this.nodes.values()].filter((n) => n.state === 'live')
  }

  /** Nodes silent for deadAfterMs: marked dead and returned so their replicas can be forgotten. */
  expire(nowMs: number, deadAfterMs: number): DatanodeState[] {
    const died: DatanodeState[] = []
    for (const n of this.nodes.values()) {
      if (n.state !== 'dead' && nowMs - n.lastHeartbeatMs > deadAfterMs) {
        n.state = 'dead'
        died.push(n)
      }
    }
    return died
  }

  placementView(): PlacementNode[] {
    return [...this.nodes.values()].map((n) => ({
      id: n.info.id,
      rack: n.info.rack,
      host: n.info.host,
      remainingBytes: n.remainingBytes,
      activeTransfers: n.activeTransfers,
      state: n.state,
    }))
  }

  report(n: DatanodeState): DatanodeReport {
    return {
      id: n.info.id,
      address: `${n.info.host}:${n.info.rpcPort}`,
      rack: n.info.rack,
      state: n.state,
      capacityBytes: n.capacityBytes,
      usedBytes: n.usedBytes,
      remainingBytes: n.remainingBytes,
      blocks: n.blocks.size,
      lastHeartbeatMs: n.lastHeartbeatMs,
      httpPort: n.info.httpPort,
    }
  }
}

/** The loopback forms one host may connect from. */
export function sameHost(a: string, b: string): boolean {
  const norm = (h: string): string => {
    const s = h.replace(/^::ffff:/, '')
    return s === 'localhost' || s === '::1' || s.startsWith('127.') ? 'loopback' : s
  }
  return norm(a) === norm(b)
}
