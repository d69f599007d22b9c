// The dashboard's API: the shapes the namenode serves under /api and the pure
// logic both sides share (summaries, merges). No I/O and no Node: the browser
// code is compiled from these same files.
import type { FileStatusJson, VolumeJson } from '../client/json.js'
import type { DatanodeReport } from '../rpc/messages.js'

export type { FileStatusJson, VolumeJson }

/** What an operator asks first: the namenode's /status and the overview page. */
export interface NamenodeSummary {
  version: string
  clusterId: string
  startedMs: number
  uptimeMs: number
  safemode: boolean
  reportedBlocks: number
  files: number
  directories: number
  symlinks: number
  blocks: number
  underReplicatedBlocks: number
  /** Complete blocks with a replica reported corrupt. */
  corruptBlocks: number
  /** Complete blocks with no healthy replica. */
  missingBlocks: number
  /** Re-replication copies handed to datanodes and not yet reported. */
  pendingCopies: number
  nodes: { live: number; dead: number; decommissioning: number; decommissioned: number }
  /** Of the live datanodes. */
  capacityBytes: number
  usedBytes: number
  remainingBytes: number
}

export const LOCALITIES = ['NODE_LOCAL', 'RACK_LOCAL', 'ANY'] as const
export type Locality = (typeof LOCALITIES)[number]

/** A task as the scheduler's JobStatus reports it. */
export interface TaskStatus {
  id: string
  index: number
  node: string | null
  agent: string | null
  locality: string | null
  waitedMs: number
  state: string
  exitCode: number | null
  attempts: number
  message?: string
  input: { path: string; offset: number; length: number } | null
}

export interface JobStatus {
  id: string
  state: string
  role: string
  tasks: TaskStatus[]
}

/** An agent as the scheduler's ClusterState reports it. */
export interface AgentState {
  id: string
  node: string | null
  rack: string
  cpus: number
  memMib: number
  usedCpus: number
  usedMemMib: number
  tasks: string[]
}

export interface RoleShare {
  role: string
  weight: number
  dominantShare: number
  running: number
  pending: number
}

export interface SchedulerState {
  agents: AgentState[]
  roles: RoleShare[]
  jobs: Array<{ id: string; state: string; tasks: number }>
}

/** Where the scheduler is, and whether it answered; its data comes with it when it did. */
export type SchedulerLink = { address: string; error: null } | { address: string | null; error: string }

export interface Overview {
  namenode: NamenodeSummary
  scheduler: SchedulerLink
  /** Null when the scheduler did not answer. */
  cluster: SchedulerState | null
}

/** A datanode as `loam report` shows it. */
export type DatanodeRow = DatanodeReport

export interface NodeRow extends DatanodeRow {
  /** The agent on the node, when one has registered with the scheduler. */
  agent: AgentState | null
}

export interface NodesPage {
  nowMs: number
  nodes: NodeRow[]
  /** Agents on no datanode (`loam agent` alone). */
  otherAgents: AgentState[]
  scheduler: SchedulerLink
}

export type BlockHealth = 'HEALTHY' | 'UNDER_REPLICATED' | 'CORRUPT' | 'MISSING' | 'BEING_WRITTEN'

export interface BlockRow {
  id: number
  genStamp: number
  offsetBytes: number
  lengthBytes: number
  health: BlockHealth
  replicas: Array<{ node: string; rack: string }>
  corrupt: Array<{ node: string; rack: string }>
}

export type FilesPage = { path: string; kind: 'directory'; entries: FileStatusJson[]; truncated: boolean } | { path: string; kind: 'file'; file: FileStatusJson; blocks: BlockRow[] }

export interface VolumesPage {
  volumes: VolumeJson[]
  liveNodes: number
}

export interface LocalityShare {
  locality: Locality
  tasks: number
  /** 0..1 of the tasks that were placed. */
  share: number
}

export interface JobsPage {
  jobs: JobStatus[]
  services: ServiceStatus[]
  /** Over the tasks of jobs and the instances of services. */
  locality: LocalityShare[]
  scheduler: SchedulerLink
}

/** One instance of a service, as the scheduler's ServiceStatus reports it. */
export interface InstanceStatus {
  id: string
  state: string
  health: string | null
  node: string | null
  locality: string | null
  attempts: number
  restarts: number
  exitCode: number | null
  message?: string
  volumes: string[]
}

/** What the scheduler's ServiceStatus answers (and `loam service status --json` prints). */
export interface ServiceStatus {
  id: string
  state: string
  instances: number
  tasks: InstanceStatus[]
}

export interface TaskLog {
  task: string
  stream: 'stdout' | 'stderr'
  text: string
  /** Bytes left out at the start: the page shows the end of a long log. */
  skippedBytes: number
}

/** Every error the API answers: the typed error's code, and the line the CLI would print. */
export interface ApiError {
  error: { code: string; message: string; line: string }
}

/** Tasks by the locality they got, over those placed; the three localities always, in order. */
export function summarizeLocality(tasks: Array<Pick<TaskStatus, 'locality'>>): LocalityShare[] {
  const counts = new Map<string, number>()
  for (const t of tasks) if (t.locality) counts.set(t.locality, (counts.get(t.locality) ?? 0) + 1)
  const placed = LOCALITIES.reduce((n, l) => n + (counts.get(l) ?? 0), 0)
  return LOCALITIES.map((locality) => {
    const n = counts.get(locality) ?? 0
    return { locality, tasks: n, share: placed === 0 ? 0 : n / placed }
  })
}

/** Each datanode with the agent on it (matched by node id); agents on no known datanode apart. */
export function mergeNodes(datanodes: DatanodeRow[], agents: AgentState[]): { nodes: NodeRow[]; otherAgents: AgentState[] } {
  const byNode = new Map(agents.filter((a) => a.node).map((a) => [a.node!, a]))
  const nodes = datanodes.map((d) => ({ ...d, agent: byNode.get(d.id) ?? null }))
  const known = new Set(datanodes.map((d) => d.id))
  return { nodes, otherAgents: agents.filter((a) => !a.node || !known.has(a.node)) }
}

/** The directories from the root down to path, for a breadcrumb: [['/', '/'], ['a', '/a'], ['b', '/a/b']]. */
export function pathCrumbs(path: string): Array<[name: string, path: string]> {
  const parts = path.split('/').filter(Boolean)
  return [['/', '/'], ...parts.map((p, i): [string, string] => [p, '/' + parts.slice(0, i + 1).join('/')])]
}

/** A child's path under a directory. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`
}

/** The parent directory of a path ('/' for the root and its children). */
export function parentPath(path: string): string {
  const parts = path.split('/').filter(Boolean)
  return '/' + parts.slice(0, -1).join('/')
}
