// Job and service specs as users write them (JSON, in the style of
// Metronome/Marathon), checked field by field: a bad spec is refused with the
// field it is about, before anything starts.
import { parseSize } from '../common/units.js'
import { LoamError } from '../rpc/errors.js'
import { checkId } from './spec.js'
import { JOB_ENV_ENTRIES_MAX, JOB_RETRIES_MAX, SERVICE_INSTANCES_MAX } from '../limits.js'
import { HEALTH_FAILURES_MAX, HEALTH_INTERVAL_MAX_MS, HEALTH_INTERVAL_MIN_MS } from './health-check.js'
import { TASKS_PER_JOB_MAX } from './limits.js'
import { checkVolumePath, TASK_VOLUMES_MAX } from './volume-mounts.js'
import { checkVolumeName } from '../volumes/volume.js'
import type { HealthCheck } from '../rpc/messages.js'

/** What jobs and services share: the command and what each of its tasks needs. */
export interface TaskDefinition {
  id: string
  cmd: string
  cpus: number
  mem: number
  env: Record<string, string>
  role: string
}

export interface JobDefinition extends TaskDefinition {
  /** Tasks without input; 0 when the job has an input. */
  instances: number
  /** A path or a single-level glob in the cluster filesystem: one task per block. */
  input: string
  retries: number
}

export interface ServiceVolume {
  /** The volume of instance 0; instance i > 0 gets NAME-i of its own, as a StatefulSet's claims do. */
  name: string
  sizeBytes: number
  /** Where it is mounted, relative to the task's sandbox. */
  path: string
  replication: number
}

export interface ServiceDefinition extends TaskDefinition {
  instances: number
  volumes: ServiceVolume[]
  healthCheck: HealthCheck | null
}

type Fields = Record<string, unknown>

function fail(what: string, field: string, why: string): never {
  throw new LoamError('invalid-argument', `${what} spec: ${field} ${why}`)
}

function positive(what: string, v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(what, field, `must be a number above 0 (got ${JSON.stringify(v)})`)
  return v
}

function wholeNumber(what: string, v: unknown, field: string, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail(what, field, `must be a whole number from ${min} to ${max}`)
  return v as number
}

/** Parses the JSON object and the fields every spec has; refuses fields outside `known`. */
function parseTaskDefinition(what: string, text: string, known: string[]): { s: Fields; def: TaskDefinition } {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new LoamError('invalid-argument', `${what} spec is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new LoamError('invalid-argument', `${what} spec must be a JSON object`)
  const s = raw as Fields
  const all = new Set(['id', 'cmd', 'cpus', 'mem', 'env', 'role', ...known])
  for (const k of Object.keys(s)) if (!all.has(k)) fail(what, k, `is not a ${what} field (fields: ${[...all].join(', ')})`)
  if (typeof s.id !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(s.id)) fail(what, 'id', 'must match [a-z0-9][a-z0-9._-]{0,62}')
  if (typeof s.cmd !== 'string' || s.cmd.trim() === '') fail(what, 'cmd', 'is missing: the shell command each task runs')
  const cpus = s.cpus === undefined ? 1 : positive(what, s.cpus, 'cpus')
  const mem = s.mem === undefined ? 128 : positive(what, s.mem, 'mem')
  const env: Record<string, string> = {}
  if (s.env !== undefined) {
    if (typeof s.env !== 'object' || s.env === null || Array.isArray(s.env)) fail(what, 'env', 'must be an object of strings')
    const entries = Object.entries(s.env as Fields)
    if (entries.length > JOB_ENV_ENTRIES_MAX) fail(what, 'env', `has more than ${JOB_ENV_ENTRIES_MAX} entries`)
    for (const [k, v] of entries) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) fail(what, `env.${k}`, 'is not a variable name')
      if (typeof v !== 'string') fail(what, `env.${k}`, 'must be a string')
      env[k] = v
    }
  }
  const role = s.role === undefined ? 'default' : s.role
  checkId(role, `${what} spec: role`)
  return { s, def: { id: s.id, cmd: s.cmd, cpus, mem, env, role } }
}

export function parseJobSpec(text: string): JobDefinition {
  const { s, def } = parseTaskDefinition('job', text, ['instances', 'input', 'retries'])
  if (s.input !== undefined && (typeof s.input !== 'string' || !s.input.startsWith('/'))) fail('job', 'input', 'must be an absolute path or glob in the cluster filesystem')
  const input = (s.input as string | undefined) ?? ''
  if (s.instances !== undefined && input) fail('job', 'instances', 'and input cannot both be given: with input there is one task per block')
  const instances = input ? 0 : wholeNumber('job', s.instances, 'instances', 1, TASKS_PER_JOB_MAX, 1)
  const retries = wholeNumber('job', s.retries, 'retries', 0, JOB_RETRIES_MAX, 2)
  return { ...def, instances, input, retries }
}

export function parseServiceSpec(text: string): ServiceDefinition {
  const { s, def } = parseTaskDefinition('service', text, ['instances', 'volumes', 'healthCheck'])
  const instances = wholeNumber('service', s.instances, 'instances', 0, SERVICE_INSTANCES_MAX, 1)
  const volumes: ServiceVolume[] = []
  if (s.volumes !== undefined) {
    if (!Array.isArray(s.volumes)) fail('service', 'volumes', 'must be a list of {"name", "size", "path"}')
    if (s.volumes.length > TASK_VOLUMES_MAX) fail('service', 'volumes', `holds more than ${TASK_VOLUMES_MAX} volumes`)
    for (const [i, v] of (s.volumes as unknown[]).entries()) volumes.push(parseVolume(v, `volumes[${i}]`))
    const names = new Set(volumes.map((v) => v.name))
    const paths = new Set(volumes.map((v) => v.path))
    if (names.size < volumes.length || paths.size < volumes.length) fail('service', 'volumes', 'names the same volume or path twice')
  }
  const healthCheck = s.healthCheck === undefined ? null : parseHealthCheck(s.healthCheck)
  return { ...def, instances, volumes, healthCheck }
}

function parseVolume(v: unknown, field: string): ServiceVolume {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('service', field, 'must be an object {"name", "size", "path"}')
  const o = v as Fields
  for (const k of Object.keys(o)) if (!['name', 'size', 'path', 'replication'].includes(k)) fail('service', `${field}.${k}`, 'is not a volume field (name, size, path, replication)')
  if (typeof o.name !== 'string') fail('service', `${field}.name`, 'is missing')
  try {
    checkVolumeName(o.name)
  } catch (err) {
    fail('service', `${field}.name`, (err as Error).message)
  }
  if (typeof o.size !== 'string' && typeof o.size !== 'number') fail('service', `${field}.size`, "is missing: a size such as '1GiB'")
  let sizeBytes: number
  try {
    sizeBytes = typeof o.size === 'number' ? o.size : parseSize(o.size, `${field}.size`)
  } catch (err) {
    fail('service', `${field}.size`, (err as Error).message)
  }
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) fail('service', `${field}.size`, 'must be a positive size')
  if (typeof o.path !== 'string') fail('service', `${field}.path`, 'is missing: where the volume is mounted in the sandbox')
  const bad = checkVolumePath(o.path)
  if (bad) fail('service', `${field}.path`, bad)
  const replication = wholeNumber('service', o.replication, `${field}.replication`, 1, 16, 3)
  return { name: o.name, sizeBytes, path: o.path, replication }
}

function parseHealthCheck(v: unknown): HealthCheck {
  const field = 'healthCheck'
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('service', field, 'must be an object: {"cmd"} or {"port", "path"}')
  const o = v as Fields
  const known = ['cmd', 'port', 'path', 'intervalSeconds', 'timeoutSeconds', 'gracePeriodSeconds', 'maxConsecutiveFailures']
  for (const k of Object.keys(o)) if (!known.includes(k)) fail('service', `${field}.${k}`, `is not a health check field (${known.join(', ')})`)
  if (o.cmd !== undefined && (typeof o.cmd !== 'string' || o.cmd.trim() === '')) fail('service', `${field}.cmd`, 'must be a shell command')
  if ((o.cmd === undefined) === (o.port === undefined)) fail('service', field, 'needs exactly one of cmd (a command) and port (an HTTP check)')
  const port = wholeNumber('service', o.port, `${field}.port`, 1, 65535, 0)
  if (o.path !== undefined && (typeof o.path !== 'string' || !o.path.startsWith('/'))) fail('service', `${field}.path`, "must start with '/'")
  const seconds = (k: string, fallback: number, minMs: number, maxMs: number): number => {
    if (o[k] === undefined) return fallback
    const v = o[k]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('service', `${field}.${k}`, `must be a number of seconds (got ${JSON.stringify(v)})`)
    const ms = v * 1000
    if (ms < minMs || ms > maxMs) fail('service', `${field}.${k}`, `must be from ${minMs / 1000} to ${maxMs / 1000} seconds`)
    return Math.round(ms)
  }
  return {
    cmd: (o.cmd as string | undefined) ?? '',
    port,
    path: (o.path as string | undefined) ?? '/',
    intervalMs: seconds('intervalSeconds', 10_000, HEALTH_INTERVAL_MIN_MS, HEALTH_INTERVAL_MAX_MS),
    timeoutMs: seconds('timeoutSeconds', 5_000, 1, HEALTH_INTERVAL_MAX_MS),
    graceMs: seconds('gracePeriodSeconds', 30_000, 0, HEALTH_INTERVAL_MAX_MS),
    maxFailures: wholeNumber('service', o.maxConsecutiveFailures, `${field}.maxConsecutiveFailures`, 1, HEALTH_FAILURES_MAX, 3),
  }
}
