// What the scheduler keeps across its restarts: every job and service and the
// state of each of its tasks, as one JSON document replaced atomically (written to a
// temporary file, synced, renamed, the directory synced). A launch is made
// durable before any agent hears of it, so a restart never launches twice.
import { open, readFile, rename } from 'node:fs/promises'
import path from 'node:path'
import { LoamError } from '../rpc/errors.js'
import type { JobDefinition, ServiceDefinition } from './job-spec.js'

export type TaskStateName = 'PENDING' | 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED'
export type JobStateName = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED'

export interface TaskRecord {
  id: string
  index: number
  state: TaskStateName
  /** Launches so far; the current one is `${id}.${attempts}` on agentId. */
  attempts: number
  agentId: string
  node: string
  locality: string
  waitedMs: number
  exitCode: number | null
  message: string
  input: { path: string; offset: number; length: number } | null
  preferredNodes: string[]
  preferredRacks: string[]
  /** Nodes its failed attempts ran on, oldest first. */
  failedNodes?: string[]
}

export interface JobRecord {
  id: string
  spec: JobDefinition
  /** Who submitted it: only they (or the superuser) kill it. Absent in state kept before owners were: the superuser's. */
  user?: string
  state: JobStateName
  submittedMs: number
  finishedMs: number
  tasks: TaskRecord[]
}

export interface InstanceRecord {
  index: number
  /** PENDING: to be placed (not before notBeforeMs); RUNNING: launched as `${service}.${index}.${attempts}`; KILLED: scaled away or removed. */
  state: 'PENDING' | 'RUNNING' | 'KILLED'
  attempts: number
  agentId: string
  node: string
  locality: string
  health: string
  /** Restarts after the task ended or its node was lost. */
  restarts: number
  /** Ends in a row that came soon after the start: they lengthen the wait before the next start. */
  quickFailures: number
  notBeforeMs: number
  startedMs: number
  exitCode: number | null
  message: string
  /** The volumes this instance mounts (NAME, NAME-1, ...). */
  volumes: string[]
}

export interface ServiceRecord {
  id: string
  spec: ServiceDefinition
  /** Who deployed it: only they (or the superuser) scale or remove it. Absent in state kept before owners were: the superuser's. */
  user?: string
  /** REMOVING: every instance is being stopped; the record goes once none runs. */
  state: 'RUNNING' | 'REMOVING'
  createdMs: number
  instances: InstanceRecord[]
}

interface Document {
  version: 1
  jobs: JobRecord[]
  services?: ServiceRecord[]
}

export class StateFile {
  private dirty = false
  private writing: Promise<void> = Promise.resolve()

  private constructor(
    private readonly file: string,
    readonly jobs: Map<string, JobRecord>,
    readonly services: Map<string, ServiceRecord>,
  ) {}

  static async open(dataDir: string): Promise<StateFile> {
    const file = path.join(dataDir, 'state.json')
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return ''
      throw new LoamError('io', `cannot read ${file}: ${err.message}`)
    })
    const jobs = new Map<string, JobRecord>()
    const services = new Map<string, ServiceRecord>()
    if (text) {
      let doc: Document
      try {
        doc = JSON.parse(text) as Document
      } catch (err) {
        throw new LoamError('corrupt', `${file} is not valid JSON (${(err as Error).message}); restore it from a backup or move it away to start empty`)
      }
      if (doc.version !== 1) throw new LoamError('corrupt', `${file}: unknown version ${String(doc.version)}`)
      for (const job of doc.jobs) jobs.set(job.id, job)
      for (const svc of doc.services ?? []) services.set(svc.id, svc)
    }
    return new StateFile(file, jobs, services)
  }

  changed(): void {
    this.dirty = true
  }

  /** Every change so far is on disk when this resolves. */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return
      this.dirty = false
      const doc: Document = { version: 1, jobs: [...this.jobs.values()], services: [...this.services.values()] }
      const tmp = `${this.file}.tmp`
      const fh = await open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(JSON.stringify(doc))
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, this.file)
      const dir = await open(path.dirname(this.file), 'r')
      try {
        await dir.sync()
      } finally {
        await dir.close()
      }
    })
    return this.writing
  }
}
