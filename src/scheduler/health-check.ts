// A running service task's health check, as Marathon runs them: a command in
// the task's sandbox (exit 0 is healthy) or an HTTP GET of 127.0.0.1:port/path
// (2xx and 3xx are healthy), every interval, each bounded by a timeout. Failures
// during the grace period after the start do not count; after maxFailures in a
// row the task is reported unhealthy and killed (the scheduler restarts it).
import { spawn } from 'node:child_process'
import http from 'node:http'
import type { HealthCheck } from '../rpc/messages.js'

export type Health = '' | 'HEALTHY' | 'UNHEALTHY'

/** Bounds on a check's settings, in ms. */
export const HEALTH_INTERVAL_MIN_MS = 100
export const HEALTH_INTERVAL_MAX_MS = 3_600_000
export const HEALTH_FAILURES_MAX = 100

export interface ProbeResult {
  ok: boolean
  detail: string
}

/** Health after one more result: pure, so the counting is tested without processes. */
export function nextHealth(state: { health: Health; failures: number }, result: ProbeResult, inGrace: boolean, maxFailures: number): { health: Health; failures: number; kill: boolean } {
  if (result.ok) return { health: 'HEALTHY', failures: 0, kill: false }
  // A failure before the first success, while the task starts up, is not counted.
  if (inGrace && state.health !== 'HEALTHY') return { health: state.health, failures: 0, kill: false }
  const failures = state.failures + 1
  return { health: failures >= maxFailures ? 'UNHEALTHY' : state.health, failures, kill: failures >= maxFailures }
}

export class HealthChecker {
  health: Health = ''
  private failures = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private readonly startedMs = Date.now()

  constructor(
    private readonly check: HealthCheck,
    private readonly sandbox: string,
    private readonly env: NodeJS.ProcessEnv,
    /** The task's user, where it is not the agent's: a command check runs as the task does. */
    private readonly ids: SpawnIds,
    /** Called once, after maxFailures failures in a row, with the last failure. */
    private readonly onUnhealthy: (detail: string) => void,
  ) {
    this.arm()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private arm(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => void this.run(), this.check.intervalMs)
  }

  private async run(): Promise<void> {
    const result = await probe(this.check, this.sandbox, this.env, this.ids)
    if (this.stopped) return
    const inGrace = Date.now() - this.startedMs < this.check.graceMs
    const next = nextHealth({ health: this.health, failures: this.failures }, result, inGrace, this.check.maxFailures)
    this.health = next.health
    this.failures = next.failures
    if (next.kill) {
      this.stop()
      this.onUnhealthy(result.detail)
      return
    }
    this.arm()
  }
}

export function probe(check: HealthCheck, sandbox: string, env: NodeJS.ProcessEnv, ids: SpawnIds = {}): Promise<ProbeResult> {
  return check.cmd ? probeCommand(check, sandbox, env, ids) : probeHttp(check)
}

/** The uid and gid a command check runs as (none: the agent's). */
export interface SpawnIds {
  uid?: number
  gid?: number
}

function probeCommand(check: HealthCheck, sandbox: string, env: NodeJS.ProcessEnv, ids: SpawnIds): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', check.cmd], { cwd: sandbox, env, stdio: 'ignore', detached: true, ...ids })
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // Gone already.
      }
      resolve({ ok: false, detail: `health check command timed out after ${check.timeoutMs} ms` })
    }, check.timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      resolve({ ok: false, detail: `health check command did not start: ${err.message}` })
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ ok: code === 0, detail: code === 0 ? 'ok' : `health check command ${signal ? `killed by ${signal}` : `exited with status ${code}`}` })
    })
  })
}

function probeHttp(check: HealthCheck): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const target = `http://127.0.0.1:${check.port}${check.path || '/'}`
    const req = http.get(target, { timeout: check.timeoutMs }, (res) => {
      res.resume()
      const status = res.statusCode ?? 0
      resolve({ ok: status >= 200 && status < 400, detail: `GET ${target}: ${status}` })
    })
    req.once('timeout', () => req.destroy(new Error(`no answer within ${check.timeoutMs} ms`)))
    req.once('error', (err) => resolve({ ok: false, detail: `GET ${target}: ${err.message}` }))
  })
}
