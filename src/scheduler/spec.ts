// What enters the scheduler core, and the checks that need no state: ids,
// resources, preferences and bounds. The core adds the checks that need its
// state (duplicates, unknown ids, room on some agent) before it changes anything.

import { LoamError } from '../rpc/errors.js'
import { ID_BYTES_MAX, LOCALITY_WAIT_MAX_MS, PREFERRED_NODES_PER_TASK_MAX, PREFERRED_RACKS_PER_TASK_MAX, ROLE_WEIGHT_MAX, ROLE_WEIGHT_MIN, TASKS_PER_JOB_MAX } from './limits.js'
import { checkResources, type Resources } from './resources.js'

export interface AgentSpec {
  /** Unique among registered agents. */
  readonly id: string
  /** The datanode on the agent's machine, if any: tasks whose block it holds are node-local here. */
  readonly nodeId?: string
  /** e.g. '/r1' */
  readonly rack: string
  /** What the agent offers in all (cpus, memory, disk), running tasks included. */
  readonly resources: Resources
}

export interface TaskSpec {
  /** Unique among every task the core holds. */
  readonly id: string
  /** Datanodes holding the task's input block; none for a task without input. */
  readonly preferredNodes?: readonly string[]
  /**
   * Racks of those datanodes. When left out, the racks of the agents registered
   * on `preferredNodes` at submission (a datanode without an agent adds none).
   */
  readonly preferredRacks?: readonly string[]
}

export interface JobSpec {
  /** Unique among the jobs the core holds (a finished job's id may be used again). */
  readonly id: string
  /** The user or team the job runs for; DRF shares the cluster between roles. */
  readonly role: string
  /** What each of the job's tasks needs. */
  readonly resources: Resources
  /** At least one. */
  readonly tasks: readonly TaskSpec[]
}

export interface SchedulerConfig {
  /** W1: how long a job is skipped before it takes rack-local slots (3 s default; 0: no delay). */
  readonly localityWaitMs?: number
  /** W2: how long more before it takes any slot (default: localityWaitMs). */
  readonly rackLocalityWaitMs?: number
  /** DRF weight per role (default 1); setRoleWeight changes them later. */
  readonly roleWeights?: Readonly<Record<string, number>>
  /**
   * Order of a role's jobs when offered a slot: 'fair' (fewest running tasks
   * first, as in the delay-scheduling paper; the default) or 'fifo' (oldest first).
   */
  readonly jobOrder?: 'fair' | 'fifo'
}

// Ids end up in logs, paths and JSON lines: no control characters in them.
// eslint-disable-next-line no-control-regex
const BAD_ID_CHARS = /[\u0000-\u001f\u007f]/

/** How many instances a service should run, as a person types it (`loam service scale`, the dashboard). */
export function parseInstances(text: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new LoamError('invalid-argument', `instances '${text}' must be a whole number, 0 or more`)
  return n
}

export function checkId(id: unknown, what: string): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) throw new LoamError('invalid-argument', `${what} must be a non-empty string`)
  if (Buffer.byteLength(id, 'utf8') > ID_BYTES_MAX) throw new LoamError('invalid-argument', `${what} '${id.slice(0, 40)}...' is longer than ${ID_BYTES_MAX} bytes`)
  if (BAD_ID_CHARS.test(id)) throw new LoamError('invalid-argument', `${what} ${JSON.stringify(id)} holds a control character`)
}

export function checkWeight(weight: unknown, what: string): asserts weight is number {
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < ROLE_WEIGHT_MIN || weight > ROLE_WEIGHT_MAX) {
    throw new LoamError('invalid-argument', `${what}: weight ${String(weight)} must be a number from ${ROLE_WEIGHT_MIN} to ${ROLE_WEIGHT_MAX}`)
  }
}

export function checkWaitMs(ms: unknown, what: string): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > LOCALITY_WAIT_MAX_MS) {
    throw new LoamError('invalid-argument', `${what} ${String(ms)} must be from 0 to ${LOCALITY_WAIT_MAX_MS} ms`)
  }
}

/** Time as the caller's monotonic clock tells it, in ms from 0: finite and never behind the last time given. */
export function checkTime(nowMs: unknown, lastMs: number): asserts nowMs is number {
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) throw new LoamError('invalid-argument', `time ${String(nowMs)} ms is not a finite number`)
  if (nowMs < 0) throw new LoamError('invalid-argument', `time ${nowMs} ms is negative: pass milliseconds of a monotonic clock that starts at 0`)
  if (nowMs < lastMs) throw new LoamError('invalid-argument', `time ${nowMs} ms is before ${lastMs} ms, already seen: the clock passed in must not go back`)
}

export function checkAgentSpec(spec: AgentSpec): void {
  if (typeof spec !== 'object' || spec === null) throw new LoamError('invalid-argument', 'agent: expected { id, nodeId?, rack, resources }')
  checkId(spec.id, 'agent id')
  if (spec.nodeId !== undefined) checkId(spec.nodeId, `agent ${spec.id}: datanode id`)
  checkId(spec.rack, `agent ${spec.id}: rack`)
  checkResources(spec.resources, `agent ${spec.id}`)
}

export function checkJobSpec(spec: JobSpec): void {
  if (typeof spec !== 'object' || spec === null) throw new LoamError('invalid-argument', 'job: expected { id, role, resources, tasks }')
  checkId(spec.id, 'job id')
  checkId(spec.role, `job ${spec.id}: role`)
  checkResources(spec.resources, `job ${spec.id}: each task`)
  if (!Array.isArray(spec.tasks) || spec.tasks.length === 0) throw new LoamError('invalid-argument', `job ${spec.id}: tasks must be a non-empty list`)
  if (spec.tasks.length > TASKS_PER_JOB_MAX) throw new LoamError('invalid-argument', `job ${spec.id}: ${spec.tasks.length} tasks, more than the ${TASKS_PER_JOB_MAX} one job may have`)
  const ids = new Set<string>()
  for (const task of spec.tasks) {
    if (typeof task !== 'object' || task === null) throw new LoamError('invalid-argument', `job ${spec.id}: a task must be { id, preferredNodes?, preferredRacks? }`)
    checkId(task.id, `job ${spec.id}: task id`)
    if (ids.has(task.id)) throw new LoamError('invalid-argument', `job ${spec.id}: task id ${task.id} appears twice`)
    ids.add(task.id)
    checkNames(task.preferredNodes, PREFERRED_NODES_PER_TASK_MAX, `task ${task.id}: preferred datanode`)
    checkNames(task.preferredRacks, PREFERRED_RACKS_PER_TASK_MAX, `task ${task.id}: preferred rack`)
  }
}

function checkNames(names: readonly string[] | undefined, max: number, what: string): void {
  if (names === undefined) return
  if (!Array.isArray(names)) throw new LoamError('invalid-argument', `${what}s must be a list`)
  if (names.length > max) throw new LoamError('invalid-argument', `${what}s: ${names.length}, more than ${max}`)
  const seen = new Set<string>()
  for (const name of names) {
    checkId(name, what)
    if (seen.has(name)) throw new LoamError('invalid-argument', `${what} ${name} appears twice`)
    seen.add(name)
  }
}
