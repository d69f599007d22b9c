// A job spec as users write it (JSON, in the style of Metronome/Marathon),
// checked field by field: a bad spec is refused with the field it is about.
import { LoamError } from '../rpc/errors.js'
import { checkId } from './spec.js'
import { JOB_ENV_ENTRIES_MAX, JOB_RETRIES_MAX } from '../limits.js'
import { TASKS_PER_JOB_MAX } from './limits.js'

export interface JobDefinition {
  id: string
  cmd: string
  cpus: number
  mem: number
  /** Tasks without input; 0 when the job has an input. */
  instances: number
  /** A path or a single-level glob in the cluster filesystem: one task per block. */
  input: string
  env: Record<string, string>
  retries: number
  role: string
}

function fail(field: string, why: string): never {
  throw new LoamError('invalid-argument', `job spec: ${field} ${why}`)
}

function positive(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(field, `must be a number above 0 (got ${JSON.stringify(v)})`)
  return v
}

export function parseJobSpec(text: string): JobDefinition {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new LoamError('invalid-argument', `job spec is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new LoamError('invalid-argument', 'job spec must be a JSON object')
  const s = raw as Record<string, unknown>
  const known = new Set(['id', 'cmd', 'cpus', 'mem', 'instances', 'input', 'env', 'retries', 'role'])
  for (const k of Object.keys(s)) if (!known.has(k)) fail(k, `is not a job field (fields: ${[...known].join(', ')})`)
  if (typeof s.id !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(s.id)) fail('id', 'must match [a-z0-9][a-z0-9._-]{0,62}')
  if (typeof s.cmd !== 'string' || s.cmd.trim() === '') fail('cmd', 'is missing: the shell command each task runs')
  const cpus = s.cpus === undefined ? 1 : positive(s.cpus, 'cpus')
  const mem = s.mem === undefined ? 128 : positive(s.mem, 'mem')
  if (s.input !== undefined && (typeof s.input !== 'string' || !s.input.startsWith('/'))) fail('input', 'must be an absolute path or glob in the cluster filesystem')
  const input = (s.input as string | undefined) ?? ''
  let instances = 0
  if (s.instances !== undefined) {
    if (input) fail('instances', 'and input cannot both be given: with input there is one task per block')
    if (!Number.isInteger(s.instances) || (s.instances as number) < 1 || (s.instances as number) > TASKS_PER_JOB_MAX) fail('instances', `must be a whole number from 1 to ${TASKS_PER_JOB_MAX}`)
    instances = s.instances as number
  } else if (!input) {
    instances = 1
  }
  const env: Record<string, string> = {}
  if (s.env !== undefined) {
    if (typeof s.env !== 'object' || s.env === null || Array.isArray(s.env)) fail('env', 'must be an object of strings')
    const entries = Object.entries(s.env as Record<string, unknown>)
    if (entries.length > JOB_ENV_ENTRIES_MAX) fail('env', `has more than ${JOB_ENV_ENTRIES_MAX} entries`)
    for (const [k, v] of entries) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) fail(`env.${k}`, 'is not a variable name')
      if (typeof v !== 'string') fail(`env.${k}`, 'must be a string')
      env[k] = v
    }
  }
  let retries = 2
  if (s.retries !== undefined) {
    if (!Number.isInteger(s.retries) || (s.retries as number) < 0 || (s.retries as number) > JOB_RETRIES_MAX) fail('retries', `must be a whole number from 0 to ${JOB_RETRIES_MAX}`)
    retries = s.retries as number
  }
  const role = s.role === undefined ? 'default' : s.role
  checkId(role, 'job spec: role')
  return { id: s.id, cmd: s.cmd, cpus, mem, instances, input, env, retries, role }
}
