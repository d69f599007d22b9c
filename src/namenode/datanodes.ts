// The namenode's view of its datanodes: liveness, administrative state, usage,
// and commands waiting for their next heartbeat.
import type { BlockRef, DatanodeCommand, DatanodeInfo, DatanodeReport } from '../rpc/messages.js'
import type { PlacementNode } from './placement.js'

export type DatanodeStateName = 'live' | 'dead' | 'decommissioning' | 'decommissioned'
export type AdminState = 'normal' | 'decommissioning' | 'decommissioned'

export interface DatanodeState {
  info: DatanodeInfo
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
  activeTransfers: number
  lastHeartbeatMs: number
  alive: boolean
  admin: AdminState
  blocks: Set<number>
  pendingDeletes: BlockRef[]
  pendingCommands: DatanodeCommand[]
}

/** What `loam report` shows: a decommissioned node stays decommissioned when stopped; any other silent node is dead. */
export function stateName(n: DatanodeState): DatanodeStateName {
  if (n.admin === 'decommissioned') return 'decommissioned'
  if (!n.alive) return 'dead'
  return n.admin === 'decommissioning' ? 'decommissioning' : 'live'
}

export class Datanodes {
  readonly nodes = new Map<string, DatanodeState>()

  register(info: DatanodeInfo, usage: { capacityBytes: number; usedBytes: number; remainingBytes: number }, nowMs: number, admin: AdminState): DatanodeState {
    const prev = this.nodes.get(info.id)
    const node: DatanodeState = {
      info,
      ...usage,
      activeTransfers: 0,
      lastHeartbeatMs: nowMs,
      alive: true,
      admin: prev?.admin ?? admin,
      blocks: prev?.blocks ?? new Set(),
      pendingDeletes: prev?.pendingDeletes ?? [],
      pendingCommands: [],
    }
    this.nodes.set(info.id, node)
    return node
  }

  live(): DatanodeState[] {
    return [...this.nodes.values()].filter((n) => n.alive && n.admin === 'normal')
  }

  /** Nodes silent for deadAfterMs: marked dead and returned so their replicas can be forgotten. */
  expire(nowMs: number, deadAfterMs: number): DatanodeState[] {
    const died: DatanodeState[] = []
    for (const n of this.nodes.values()) {
      if (n.alive && nowMs - n.lastHeartbeatMs > deadAfterMs) {
        n.alive = false
        n.pendingCommands = []
        died.push(n)
      }
    }
    return died
  }

  /** Placement sees only live, in-service nodes as targets; a decommissioning node can still be a copy source. */
  placementView(): PlacementNode[] {
    return [...this.nodes.values()].map((n) => ({
      id: n.info.id,
      rack: n.info.rack,
      host: n.info.host,
      remainingBytes: n.remainingBytes,
      activeTransfers: n.activeTransfers,
      state: !n.alive ? 'dead' : n.admin === 'normal' ? 'live' : n.admin,
    }))
  }

  report(n: DatanodeState): DatanodeReport {
    return {
      id: n.info.id,
      address: `${n.info.host}:${n.info.rpcPort}`,
      rack: n.info.rack,
      state: stateName(n),
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
