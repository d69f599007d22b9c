// `npm run chaos -- --minutes N [--seed S]`: runs the chaos test, prints its
// progress and report; exits 1 if anything acknowledged was lost or the cluster
// did not heal. Ctrl-C stops the run and tears the cluster down; a second
// Ctrl-C kills its processes at once.
import { parseArgs } from 'node:util'
import { runTool } from '../helpers/tool-main.js'
import { formatReport, runChaos } from './run.js'

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- --minutes N [--seed S] [--keep-logs]\n  --keep-logs  keep every role's log and the event log even when nothing went wrong (they are always kept when something did)\n`)
  process.exit(2)
}

function main(): void {
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

  runTool('chaos', (ctx) => runChaos({ minutes, seed, keepLogs: values['keep-logs'] ? 'always' : 'on-failure', ...ctx }), formatReport)
}

main()
