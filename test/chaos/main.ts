// `npm run chaos -- --minutes N [--seed S]`: runs the chaos test, prints its
// progress and report; exits 1 if anything acknowledged was lost or the cluster
// did not heal. Ctrl-C stops the run and tears the cluster down; a second
// Ctrl-C kills its processes at once.
import { rmSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { TestCluster } from '../helpers/cluster.js'
import { formatReport, runChaos } from './run.js'

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- --minutes N [--seed S] [--keep-logs]\n  --keep-logs  keep every role's log and the event log even when nothing went wrong (they are always kept when something did)\n`)
  process.exit(2)
}

async function main(): Promise<number> {
  let values: { minutes?: string; seed?: string; 'keep-logs'?: boolean; help?: boolean }
  try {
    ;({ values } = parseArgs({ options: { minutes: { type: 'string' }, seed: { type: 'string' }, 'keep-logs': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }))
  } catch (err) {
    usage((err as Error).message)
  }
  if (values.help) usage('run concurrent writers and readers against a cluster while killing and corrupting it')
  const minutes = Number(values.minutes ?? '2')
  if (!(minutes > 0) || minutes > 24 * 60) usage(`--minutes '${values.minutes}' must be a number of minutes above 0`)
  const seed = values.seed === undefined ? undefined : Number(values.seed)
  if (seed !== undefined && !Number.isSafeInteger(seed)) usage(`--seed '${values.seed}' must be a whole number`)

  const abort = new AbortController()
  let cluster: TestCluster | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!abort.signal.aborted) {
      process.stderr.write(`\nchaos: ${signal}: stopping and tearing the cluster down (again to kill it at once)\n`)
      abort.abort()
      return
    }
    // Second signal: no more waiting; kill every role we know of and remove the cluster's directory.
    if (cluster) {
      for (const pid of [cluster.record.namenode.pid, ...cluster.record.nodes.map((n) => n.pid)]) {
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

  const report = await runChaos({
    minutes,
    seed,
    signal: abort.signal,
    keepLogs: values['keep-logs'] ? 'always' : 'on-failure',
    log: (line) => process.stdout.write(`${line}\n`),
    onCluster: (c) => (cluster = c),
  })
  for (const line of formatReport(report)) process.stdout.write(`${line}\n`)
  if (report.aborted) return 130
  return report.ok ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
