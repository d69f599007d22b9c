// `npm run fuzz -- --seconds N [--seed S] [--attack N[,N...]] [--keep-logs]`:
// attacks every port of a fresh cluster with hostile bytes, frames and calls
// for N seconds, deterministically from the seed; prints what it sent, what
// came back and every failure with the line that replays it; exits 1 on any
// failure. Ctrl-C stops the run and tears the cluster down; a second kills it.
import { parseArgs } from 'node:util'
import { runTool } from '../helpers/tool-main.js'
import { formatReport, runFuzz } from './run.js'

function usage(message: string): never {
  process.stderr.write(
    `fuzz: ${message}\nusage: npm run fuzz -- --seconds N [--seed S] [--attack N[,N...]] [--keep-logs]\n` +
      '  --seed S      replay a run (the seed is printed at its start and end)\n' +
      '  --attack N    after the cluster is up, run only attack number N of the seed (and the final checks)\n' +
      "  --keep-logs   keep every daemon's log even when nothing failed (they are always kept on failure)\n",
  )
  process.exit(2)
}

function main(): void {
  let values: { seconds?: string; seed?: string; attack?: string; 'keep-logs'?: boolean; help?: boolean }
  try {
    ;({ values } = parseArgs({ options: { seconds: { type: 'string' }, seed: { type: 'string' }, attack: { type: 'string' }, 'keep-logs': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }))
  } catch (err) {
    usage((err as Error).message)
  }
  if (values.help) usage('throw hostile bytes, frames and calls at every daemon of a fresh cluster')
  const seconds = Number(values.seconds ?? '60')
  if (!(seconds > 0) || seconds > 24 * 3600) usage(`--seconds '${values.seconds}' must be a number of seconds above 0`)
  const seed = values.seed === undefined ? undefined : Number(values.seed)
  if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) usage(`--seed '${values.seed}' must be a whole number`)
  const attacks = values.attack?.split(',').map((s) => Number(s.trim()))
  if (attacks?.some((n) => !Number.isSafeInteger(n) || n < 0)) usage(`--attack '${values.attack}' must be attack numbers, such as 12 or 12,40`)
  if (attacks && seed === undefined) usage('--attack replays an attack of a seed: give --seed too')

  runTool('fuzz', (ctx) => runFuzz({ seconds, seed, attacks, keepLogs: values['keep-logs'] ? 'always' : 'on-failure', ...ctx }), formatReport)
}

main()
