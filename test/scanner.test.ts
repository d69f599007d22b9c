import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { chunkChecksums } from '../src/common/checksum.js'
import { ReplicaStore } from '../src/datanode/replica-store.js'
import { BlockScanner, scanPaceBytesPerSec, type ScannedReplica, type ScannerOptions } from '../src/datanode/scanner.js'
import { CHUNK_BYTES } from '../src/limits.js'
import { LoamError } from '../src/rpc/errors.js'

import { openStore as openStoreIn, tempDir, writeReplica } from './helpers/replicas.js'
import { flipByte } from './helpers/data.js'

const KiB = 1024
const MiB = 1024 * KiB
const DAY_MS = 24 * 60 * 60 * 1000

async function openStore(t: ExecutionContext): Promise<ReplicaStore> {
  return openStoreIn(t, [await tempDir(t, 'loam-scan-')])
}


/** Polls until cond holds; fails the test (rather than hanging) after timeoutMs. */
async function until(t: ExecutionContext, what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) {
      t.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
      throw new Error(`timed out waiting for ${what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A scanner stopped at the end of the test whatever happens. */
function scanner(t: ExecutionContext, store: ReplicaStore, opts: ScannerOptions): BlockScanner {
  const s = new BlockScanner(store, opts)
  t.teardown(() => s.stop())
  return s
}

test('scan pace spreads the bytes over the period and is clamped both ways', (t) => {
  const min = 1 * MiB
  const max = 64 * MiB
  const cases: [totalBytes: number, periodMs: number, want: number][] = [
    [0, 7 * DAY_MS, min], // nothing to scan: the floor
    [10 * MiB, 7 * DAY_MS, min], // a nearly empty node still finishes quickly
    [7 * 24 * 3600 * 10 * MiB, 7 * DAY_MS, 10 * MiB], // exactly 10 MiB/s over a week
    [100 * MiB, 10_000, 10 * MiB],
    [10 * 1024 * MiB, 1000, max], // more than the ceiling allows: the ceiling
    [1 * MiB, 0, max], // no period: back to back at the ceiling
    [1 * MiB, -5, max],
    [64 * MiB, 1000, max], // exactly at the ceiling
    [1 * MiB, 1000, min], // exactly at the floor
  ]
  for (const [totalBytes, periodMs, want] of cases) {
    t.is(scanPaceBytesPerSec(totalBytes, periodMs, min, max), want, `${totalBytes} bytes over ${periodMs} ms`)
  }
  t.is(scanPaceBytesPerSec(3 * MiB, 2000, 2 * MiB, 2 * MiB), 2 * MiB, 'min = max pins the pace')
})

test('bad scanner options are refused with invalid-argument', async (t) => {
  const store = await openStore(t)
  const onCorrupt = (): void => undefined
  for (const opts of [
    { periodMs: 0, onCorrupt },
    { periodMs: Number.NaN, onCorrupt },
    { periodMs: 1000, minBytesPerSec: 0, onCorrupt },
    { periodMs: 1000, minBytesPerSec: 2 * MiB, maxBytesPerSec: MiB, onCorrupt },
  ]) {
    const err = t.throws(() => new BlockScanner(store, opts), { instanceOf: LoamError })
    t.is(err?.code, 'invalid-argument')
  }
})

test('a byte flipped on disk is reported for that replica only, once, and stats move', async (t) => {
  const store = await openStore(t)
  const sizes = [3 * CHUNK_BYTES + 17, 100, 2 * MiB + 5, CHUNK_BYTES, 0]
  for (const [i, size] of sizes.entries()) await writeReplica(store, 10 + i, 100 + i, randomBytes(size))
  // An rbw replica (being written) is not the scanner's business, even if it looks damaged.
  const writer = await store.createRbw(99, 1)
  const p = randomBytes(CHUNK_BYTES)
  await writer.write(0, p, chunkChecksums(p))
  await flipByte(store.get(99)?.dataPath ?? '', 5)
  const victim = store.get(12)
  await flipByte(victim?.dataPath ?? '', MiB + 3 * CHUNK_BYTES + 9)

  const reports: { replica: ScannedReplica; badChunk: number }[] = []
  const s = scanner(t, store, {
    periodMs: 200,
    minBytesPerSec: 32 * MiB,
    maxBytesPerSec: 256 * MiB,
    onCorrupt(replica, badChunk) {
      reports.push({ replica, badChunk })
    },
  })
  t.deepEqual(s.stats(), { replicasScanned: 0, bytesScanned: 0, corruptFound: 0, cyclesCompleted: 0, lastCycleCompletedMs: 0 })
  s.start()
  s.start() // a second start is a no-op
  await until(t, 'the corrupt replica to be reported', () => reports.length > 0)
  // Let a few more cycles pass: the same version is not reported again.
  await until(t, 'three scan cycles', () => s.stats().cyclesCompleted >= 3)
  await s.stop()

  t.deepEqual(reports, [{ replica: { id: 12, genStamp: 102, lengthBytes: 2 * MiB + 5 }, badChunk: (MiB + 3 * CHUNK_BYTES) / CHUNK_BYTES }])
  const stats = s.stats()
  t.is(stats.corruptFound, 1)
  t.true(stats.replicasScanned >= 3 * sizes.length - 2, `replicas scanned: ${stats.replicasScanned}`)
  t.true(stats.bytesScanned >= sizes.reduce((a, b) => a + b, 0), `bytes scanned: ${stats.bytesScanned}`)
  t.true(stats.lastCycleCompletedMs > 0)
  await writer.abort()

  // A new version of the block (a higher gen stamp) is scanned afresh, and it is good.
  await writeReplica(store, 12, 200, randomBytes(1000))
  const fresh = scanner(t, store, { periodMs: 100, minBytesPerSec: 32 * MiB, onCorrupt: (replica, badChunk) => void reports.push({ replica, badChunk }) })
  fresh.start()
  await until(t, 'a scan cycle', () => fresh.stats().cyclesCompleted >= 1)
  await fresh.stop()
  t.is(reports.length, 1)
  t.is(fresh.stats().corruptFound, 0)
})

test('a report that fails is retried next cycle, and counted once', async (t) => {
  const store = await openStore(t)
  await writeReplica(store, 1, 1, randomBytes(CHUNK_BYTES * 2))
  await flipByte(store.get(1)?.dataPath ?? '', 7)
  let calls = 0
  const s = scanner(t, store, {
    periodMs: 50,
    minBytesPerSec: 64 * MiB,
    onCorrupt() {
      calls++
      if (calls === 1) throw new Error('namenode unreachable')
    },
  })
  s.start()
  await until(t, 'a second report attempt', () => calls >= 2)
  await until(t, 'two more cycles', () => s.stats().cyclesCompleted >= 4)
  await s.stop()
  t.is(calls, 2)
  t.is(s.stats().corruptFound, 1)
})

test('a replica deleted while it is being scanned is not reported', async (t) => {
  const store = await openStore(t)
  await writeReplica(store, 5, 1, randomBytes(3 * MiB))
  const reports: number[] = []
  // At 1 MiB/s the scanner waits about a second after each 1 MiB it reads.
  const s = scanner(t, store, { periodMs: 100, minBytesPerSec: MiB, maxBytesPerSec: MiB, onCorrupt: (r) => void reports.push(r.id) })
  s.start()
  await until(t, 'the first span to be read', () => s.stats().bytesScanned > 0)
  // Damage a part not yet read, then delete the replica: the scanner still holds the files open.
  await flipByte(store.get(5)?.dataPath ?? '', 2 * MiB + 100)
  t.true(await store.delete(5))
  await until(t, 'the cycle to end', () => s.stats().cyclesCompleted >= 1)
  await s.stop()
  t.deepEqual(reports, [])
  t.is(s.stats().replicasScanned, 0)
})

test('stop ends promptly in the middle of a paced wait, and the scanner can start again', async (t) => {
  const store = await openStore(t)
  await writeReplica(store, 1, 1, randomBytes(2 * MiB))
  // 1 KiB/s: reading the first span alone would be followed by a wait of about 17 minutes.
  const s = scanner(t, store, { periodMs: DAY_MS, minBytesPerSec: KiB, maxBytesPerSec: KiB, onCorrupt: () => undefined })
  s.start()
  await until(t, 'the first span to be read', () => s.stats().bytesScanned > 0)
  const stopped = s.stop().then(() => 'stopped')
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 5_000).unref())
  t.is(await Promise.race([stopped, timeout]), 'stopped')
  t.is(s.stats().replicasScanned, 0, 'the replica being read is abandoned, not counted')

  // Between cycles too: a week-long period, one quick cycle, then stop.
  const idle = scanner(t, store, { periodMs: 7 * DAY_MS, minBytesPerSec: 64 * MiB, onCorrupt: () => undefined })
  idle.start()
  await until(t, 'a scan cycle', () => idle.stats().cyclesCompleted >= 1)
  const idleStopped = idle.stop().then(() => 'stopped')
  t.is(await Promise.race([idleStopped, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 5_000).unref())]), 'stopped')
  t.is(idle.stats().replicasScanned, 1)
  // And it starts again after a stop.
  idle.start()
  await until(t, 'another scan cycle', () => idle.stats().cyclesCompleted >= 2)
  await idle.stop()
})

test('a closed store ends the scanner quietly', async (t) => {
  const store = await openStore(t)
  await writeReplica(store, 1, 1, randomBytes(1000))
  const logged: string[] = []
  const log = { warn: (_: object, msg: string) => void logged.push(`warn ${msg}`), info: (_: object, msg: string) => void logged.push(`info ${msg}`) }
  const s = scanner(t, store, { periodMs: 50, minBytesPerSec: 64 * MiB, onCorrupt: () => undefined, log })
  await store.close()
  s.start()
  await until(t, 'the scanner to notice', () => logged.length > 0)
  await s.stop()
  t.deepEqual(logged, ['info block scanner stopped: the replica store is closed'])
})
