// What the long-running test tools (`npm run chaos`, `npm run fuzz`) share around
// their run: the first Ctrl-C (or SIGTERM) stops the run and tears the cluster
// down; a second kills every role at once and removes the cluster's directory;
// the exit status is 0 when the run was clean, 1 when it was not, 130 when stopped.
import { rmSync } from 'node:fs'
import type { TestCluster } from './cluster.js'

export interface ToolReport {
  ok: boolean
  aborted: boolean
}

export interface ToolContext {
  signal: AbortSignal
  log: (line: string) => void
  onCluster: (c: TestCluster) => void
}

export function runTool<R extends ToolReport>(name: string, run: (ctx: ToolContext) => Promise<R>, format: (report: R) => string[]): void {
  const abort = new AbortController()
  let cluster: TestCluster | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!abort.signal.aborted) {
      process.stderr.write(`\n${name}: ${signal}: stopping and tearing the cluster down (again to kill it at once)\n`)
      abort.abort()
      return
    }
    // Second signal: no more waiting; kill every role we know of and remove the cluster's directory.
    if (cluster) {
      for (const pid of [cluster.record.namenode.pid, cluster.record.scheduler.pid, ...cluster.record.nodes.map((n) => n.pid)]) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      rmSync(cluster.dir, { recursive: true, force: true })
    }
    process.exit(130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const main = async (): Promise<number> => {
    const report = await run({ signal: abort.signal, log: (line) => process.stdout.write(`${line}\n`), onCluster: (c) => (cluster = c) })
    for (const line of format(report)) process.stdout.write(`${line}\n`)
    if (report.aborted) return 130
    return report.ok ? 0 : 1
  }
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}
