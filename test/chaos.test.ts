import test from 'ava'
import { formatReport, runChaos } from './chaos/run.js'

const minutes = Number(process.env.LOAM_CHAOS_MINUTES ?? '2')

test('chaos: under datanode and namenode kills and rotting replicas, nothing acknowledged is lost and the cluster heals', async (t) => {
  // The run, then up to ~2 min of healing and the final read-back; a longer LOAM_CHAOS_MINUTES gets its own time.
  t.timeout(Math.max(6, minutes + 4) * 60_000)
  const report = await runChaos({ minutes, log: (line) => t.log(line) })
  for (const line of formatReport(report)) t.log(line)
  t.deepEqual(report.lost.map((l) => `${l.path}: ${l.problem}`), [], 'lost: acknowledged files missing or different')
  t.deepEqual(report.anomalies, [], 'no wrong bytes served, no acknowledged file missing, every role restarted')
  t.true(report.fsckHealthy, 'fsck / became healthy')
  t.deepEqual(report.corruptions.unrepaired.map((c) => `block ${c.blockId} on ${c.node}: ${c.how ?? c.outcome}`), [], 'every rotten replica was replaced')
  t.true(report.kills.datanode + report.kills.namenode > 0, 'processes were killed')
  t.true(report.kills.namenode > 0, 'the namenode was killed')
  t.true(report.corruptions.injected > 0, 'replicas were corrupted')
  t.true(report.ops.writesOk > 0, 'writes were acknowledged')
  t.true(report.bytesVerified > 0, 'bytes were verified')
  t.true(report.ok)
})
