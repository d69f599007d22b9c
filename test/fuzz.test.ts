import test from 'ava'
import { formatReport, runFuzz } from './fuzz/run.js'

const seconds = Number(process.env.LOAM_FUZZ_SECONDS ?? '30')
const seed = process.env.LOAM_FUZZ_SEED === undefined ? undefined : Number(process.env.LOAM_FUZZ_SEED)

test('fuzz: hostile bytes, frames and calls at every daemon port crash nothing, hang nothing, touch nothing outside the cluster, and get typed errors', async (t) => {
  t.timeout(Math.max(2, seconds / 60 + 2) * 60_000)
  const report = await runFuzz({ seconds, seed, log: (line) => t.log(line) })
  for (const line of formatReport(report)) t.log(line)
  t.deepEqual(
    report.failures.map((f) => `[${f.role}] ${f.kind}: ${f.what} (seed ${report.seed}, attack ${f.examples[0]?.attack})`),
    [],
    `failures (replay with LOAM_FUZZ_SEED=${report.seed} or npm run fuzz -- --seed ${report.seed})`,
  )
  t.true(report.attacks > 0, 'attacks were made')
  t.true(report.rounds >= 2, 'the cluster was checked between rounds and at the end')
  t.true(report.ok)
})
