import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { chunkChecksums, firstBadChunk, initChecksums } from '../src/common/checksum.js'
import { META_HEADER_BYTES, ReplicaStore, type ReplicaWriter } from '../src/datanode/replica-store.js'
import { BLOCK_SIZE_MAX_BYTES, CHECKSUM_BYTES, CHUNK_BYTES, PACKET_BYTES_MAX } from '../src/limits.js'
import { LoamError, type ErrorCode } from '../src/rpc/errors.js'

import { openStore, tempDir, writeReplica } from './helpers/replicas.js'
import { flipByte } from './helpers/data.js'

const MiB = 1024 * 1024

/** Reads [offset, offset+length) through readChunks, checking packet shape and checksums, and trims. */
async function readRange(t: ExecutionContext, store: ReplicaStore, id: number, genStamp: number, offset: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = []
  let expected = Math.floor(offset / CHUNK_BYTES) * CHUNK_BYTES
  for await (const packet of store.readChunks(id, genStamp, offset, length)) {
    t.is(packet.offsetBytes, expected, 'packets are contiguous and start at the chunk holding the offset')
    t.true(packet.data.length > 0 && packet.data.length <= PACKET_BYTES_MAX)
    t.is(firstBadChunk(packet.data, packet.checksums), -1)
    parts.push(packet.data)
    expected += packet.data.length
  }
  const all = Buffer.concat(parts)
  const skip = offset - Math.floor(offset / CHUNK_BYTES) * CHUNK_BYTES
  return length === 0 ? all.subarray(skip) : all.subarray(skip, skip + length)
}

async function drain(gen: AsyncGenerator<unknown>): Promise<void> {
  let next = await gen.next()
  while (next.done !== true) next = await gen.next()
}

async function loamCode(t: ExecutionContext, promise: Promise<unknown>): Promise<ErrorCode | undefined> {
  const err = await t.throwsAsync(promise, { instanceOf: LoamError })
  return (err as LoamError | undefined)?.code
}

test('checksums round trip, and a flipped byte is found at its chunk', async (t) => {
  await initChecksums()
  await initChecksums() // idempotent
  const data = randomBytes(3 * CHUNK_BYTES + 17)
  const sums = chunkChecksums(data)
  t.is(sums.length, 4 * CHECKSUM_BYTES)
  t.is(firstBadChunk(data, sums), -1)
  t.deepEqual(chunkChecksums(Buffer.from(data)), sums, 'deterministic')
  for (const [pos, chunk] of [[0, 0], [CHUNK_BYTES - 1, 0], [2 * CHUNK_BYTES + 5, 2], [data.length - 1, 3]] as const) {
    const damaged = Buffer.from(data)
    damaged[pos] = (damaged[pos] ?? 0) ^ 0x01
    t.is(firstBadChunk(damaged, sums), chunk, `byte ${pos}`)
  }
  t.is(firstBadChunk(data, sums.subarray(0, sums.length - 1)), 0, 'wrong checksum length is bad chunk 0')
  t.is(chunkChecksums(Buffer.alloc(0)).length, 0)
  t.is(firstBadChunk(Buffer.alloc(0), Buffer.alloc(0)), -1)
  // Small chunk sizes work the same way.
  const small = chunkChecksums(data.subarray(0, 100), 10)
  t.is(small.length, 10 * CHECKSUM_BYTES)
  t.is(firstBadChunk(data.subarray(0, 100), small, 10), -1)
})

for (const lengthBytes of [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 5 * MiB + 3]) {
  test(`write, finalize and read back ${lengthBytes} bytes, whole and at odd offsets`, async (t) => {
    const dir = await tempDir(t)
    const store = await openStore(t, [dir])
    const data = randomBytes(lengthBytes)
    await writeReplica(store, 7, 1001, data)

    const info = store.get(7)
    t.truthy(info)
    t.is(info?.state, 'finalized')
    t.is(info?.lengthBytes, lengthBytes)
    t.is(info?.genStamp, 1001)
    t.is((await fs.stat(info?.dataPath ?? '')).size, lengthBytes)
    t.is((await fs.stat(info?.metaPath ?? '')).size, META_HEADER_BYTES + Math.ceil(lengthBytes / CHUNK_BYTES) * CHECKSUM_BYTES)
    t.true(info?.dataPath.includes(`${path.sep}finalized${path.sep}subdir07${path.sep}blk_7`))

    t.true((await readRange(t, store, 7, 1001, 0, 0)).equals(data), 'whole replica')
    const offsets = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 7, 3 * MiB + 12345, lengthBytes - 1, lengthBytes]
    const lengths = [0, 1, 100, 3 * CHUNK_BYTES + 5, 2 * MiB + 1]
    for (const off of offsets.filter((o) => o >= 0 && o <= lengthBytes)) {
      for (const len of lengths) {
        const want = len === 0 ? data.subarray(off) : data.subarray(off, off + len)
        const got = await readRange(t, store, 7, 1001, off, len)
        t.true(got.equals(want), `offset ${off} length ${len}`)
      }
    }
    t.deepEqual(await store.verify(7), { ok: true, badChunk: -1 })
    t.is(await loamCode(t, drain(store.readChunks(7, 1001, lengthBytes + 1, 0))), 'invalid-argument')
  })
}

test('a packet with a bad checksum is refused and nothing is written', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const writer = await store.createRbw(1, 1)
  const packet = randomBytes(PACKET_BYTES_MAX)
  const sums = chunkChecksums(packet)
  const damaged = Buffer.from(packet)
  damaged[1000] = (damaged[1000] ?? 0) ^ 0xff
  t.is(await loamCode(t, writer.write(0, damaged, sums)), 'corrupt')
  t.is(writer.lengthBytes, 0)
  t.is((await fs.stat(store.get(1)?.dataPath ?? '')).size, 0, 'no data written')
  t.is((await fs.stat(store.get(1)?.metaPath ?? '')).size, META_HEADER_BYTES, 'no checksums written')
  // Malformed packets: a negative offset, one past the block size limit, wrong checksum count.
  t.is(await loamCode(t, writer.write(-1, packet, sums)), 'invalid-argument')
  t.is(await loamCode(t, writer.write(BLOCK_SIZE_MAX_BYTES - 100, packet, sums)), 'invalid-argument')
  t.is(await loamCode(t, writer.write(0, packet, sums.subarray(0, 4))), 'invalid-argument')
  // The writer still works after a refused packet.
  await writer.write(0, packet, sums)
  const info = await writer.finalize(packet.length)
  t.is(info.lengthBytes, packet.length)
  t.deepEqual(await store.verify(1), { ok: true, badChunk: -1 })
})

test('reopening the store finds finalized and rbw replicas with their gen stamps', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const a = randomBytes(CHUNK_BYTES * 2 + 9)
  const b = randomBytes(10)
  await writeReplica(first, 64, 5, a) // 64 % 64: subdir00
  await writeReplica(first, 1_000_003, 9, b)
  const open = await first.createRbw(42, 3)
  const c = randomBytes(CHUNK_BYTES)
  await open.write(0, c, chunkChecksums(c))
  await open.sync()
  await first.close()

  const store = await openStore(t, [dir])
  const byId = new Map(store.list().map((r) => [r.id, r]))
  t.is(byId.size, 3)
  t.like(byId.get(64), { genStamp: 5, lengthBytes: a.length, state: 'finalized' })
  t.like(byId.get(1_000_003), { genStamp: 9, lengthBytes: b.length, state: 'finalized' })
  t.like(byId.get(42), { genStamp: 3, lengthBytes: CHUNK_BYTES, state: 'rbw' })
  t.true((await readRange(t, store, 64, 5, 0, 0)).equals(a))
  t.true((await readRange(t, store, 1_000_003, 9, 3, 4)).equals(b.subarray(3, 7)))
  t.true((await readRange(t, store, 42, 3, 0, 0)).equals(c))
  t.is(store.usage().usedBytes, a.length + 32 + 3 * 8 + b.length + 32 + 8 + CHUNK_BYTES + 32 + 8)
})

test('a replica whose meta file is missing or has a bad header is quarantined at startup', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  await writeReplica(first, 1, 1, randomBytes(100))
  await writeReplica(first, 2, 1, randomBytes(100))
  await writeReplica(first, 3, 1, randomBytes(100))
  const m1 = first.get(1)?.metaPath ?? ''
  const m2 = first.get(2)?.metaPath ?? ''
  await first.close()
  await fs.rm(m1)
  const fh = await fs.open(m2, 'r+')
  await fh.write(Buffer.from('NOTAMETA'), 0, 8, 0)
  await fh.close()

  const store = await openStore(t, [dir])
  t.deepEqual(store.list().map((r) => r.id), [3])
  const quarantined = await fs.readdir(path.join(dir, 'current', 'quarantine'))
  t.true(quarantined.some((n) => n.startsWith('blk_1.')))
  t.true(quarantined.some((n) => n.startsWith('blk_2.meta.')))
})

test('a data dir with another layout is refused', async (t) => {
  const dir = await tempDir(t)
  await fs.writeFile(path.join(dir, 'VERSION'), JSON.stringify({ layout: 2, storageId: 'x' }))
  const err = await t.throwsAsync(ReplicaStore.open([dir]))
  t.regex(err?.message ?? '', /layout 2.*layout 1/)
})

test('stale gen stamps are refused, and a newer write replaces an older replica', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const old = randomBytes(CHUNK_BYTES + 1)
  await writeReplica(store, 9, 10, old)
  t.is(await loamCode(t, drain(store.readChunks(9, 9, 0, 0))), 'stale-generation')
  t.is(await loamCode(t, drain(store.readChunks(9, 11, 0, 0))), 'stale-generation')
  t.is(await loamCode(t, store.createRbw(9, 10)), 'exists')
  t.is(await loamCode(t, store.createRbw(9, 3)), 'exists')
  t.is(store.get(9)?.genStamp, 10, 'a refused create leaves the replica alone')

  const fresh = randomBytes(200)
  await writeReplica(store, 9, 11, fresh)
  t.like(store.get(9), { genStamp: 11, lengthBytes: 200, state: 'finalized' })
  t.is(await loamCode(t, drain(store.readChunks(9, 10, 0, 0))), 'stale-generation')
  t.true((await readRange(t, store, 9, 11, 0, 0)).equals(fresh))

  // A live writer is superseded by a newer gen stamp, and its further writes fail.
  const w1 = await store.createRbw(20, 1)
  t.is(await loamCode(t, store.createRbw(20, 1)), 'exists')
  const w2 = await store.createRbw(20, 2)
  const p = randomBytes(10)
  t.is(await loamCode(t, w1.write(0, p, chunkChecksums(p))), 'stale-generation')
  await w2.write(0, p, chunkChecksums(p))
  await w2.finalize(10)
  t.like(store.get(20), { genStamp: 2, lengthBytes: 10 })
})

test('a byte flipped on disk is found by verify, and the checksums read no longer match', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(5 * CHUNK_BYTES + 100)
  await writeReplica(store, 3, 1, data)
  const flipAt = 3 * CHUNK_BYTES + 12
  const fh = await fs.open(store.get(3)?.dataPath ?? '', 'r+')
  await fh.write(Buffer.from([(data[flipAt] ?? 0) ^ 0x80]), 0, 1, flipAt)
  await fh.close()

  t.deepEqual(await store.verify(3), { ok: false, badChunk: 3 })
  let badPackets = 0
  for await (const packet of store.readChunks(3, 1, 0, 0)) {
    const bad = firstBadChunk(packet.data, packet.checksums)
    if (bad !== -1) {
      badPackets++
      t.is(packet.offsetBytes + bad * CHUNK_BYTES, 3 * CHUNK_BYTES)
    }
  }
  t.is(badPackets, 1)
})

test('finalize at a length inside a written chunk re-checksums that chunk', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES)
  const writer = await store.createRbw(5, 1)
  await writer.write(0, data.subarray(0, CHUNK_BYTES), chunkChecksums(data.subarray(0, CHUNK_BYTES)))
  await writer.write(CHUNK_BYTES, data.subarray(CHUNK_BYTES), chunkChecksums(data.subarray(CHUNK_BYTES)))
  t.is(await loamCode(t, writer.finalize(2 * CHUNK_BYTES + 1)), 'invalid-argument')
  await writer.finalize(CHUNK_BYTES + 500)
  t.deepEqual(await store.verify(5), { ok: true, badChunk: -1 })
  t.true((await readRange(t, store, 5, 1, 0, 0)).equals(data.subarray(0, CHUNK_BYTES + 500)))
})

test('delete removes a replica, and reports whether there was one', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  await writeReplica(store, 11, 1, randomBytes(1000))
  const info = store.get(11)
  t.true(await store.delete(11))
  t.is(store.get(11), undefined)
  t.false(await store.delete(11))
  await t.throwsAsync(fs.stat(info?.dataPath ?? ''))
  await t.throwsAsync(fs.stat(info?.metaPath ?? ''))
  t.is(await loamCode(t, drain(store.readChunks(11, 1, 0, 0))), 'not-found')
  t.is(await loamCode(t, store.verify(11)), 'not-found')

  // Deleting a replica being written aborts its writer and removes its rbw files.
  const writer = await store.createRbw(12, 1)
  const rbw = store.get(12)
  t.true(await store.delete(12))
  const p = randomBytes(5)
  await t.throwsAsync(writer.write(0, p, chunkChecksums(p)))
  await t.throwsAsync(fs.stat(rbw?.dataPath ?? ''))
  t.is(store.usage().usedBytes, 0)
})

test('abort removes the replica being written', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const writer = await store.createRbw(13, 1)
  const p = randomBytes(CHUNK_BYTES)
  await writer.write(0, p, chunkChecksums(p))
  const rbw = store.get(13)
  t.is(rbw?.state, 'rbw')
  await writer.abort()
  t.is(store.get(13), undefined)
  await t.throwsAsync(fs.stat(rbw?.dataPath ?? ''))
  await t.throwsAsync(fs.stat(rbw?.metaPath ?? ''))
  t.is(store.usage().usedBytes, 0)
})

test('replicas are spread over both data dirs', async (t) => {
  const root = await tempDir(t)
  const d1 = path.join(root, 'd1')
  const d2 = path.join(root, 'd2')
  const store = await openStore(t, [d1, d2])
  const ids = [1, 2, 3, 4, 5, 6]
  for (const id of ids) await writeReplica(store, id, 1, randomBytes(CHUNK_BYTES * 2))
  const dirs = new Set(store.list().map((r) => r.dir))
  t.deepEqual([...dirs].sort(), [d1, d2])
  for (const r of store.list()) t.true(r.dataPath.startsWith(r.dir + path.sep))
  const storages = store.storages()
  t.is(storages.length, 2)
  t.not(storages[0]?.storageId, storages[1]?.storageId)

  await store.close()
  const again = await openStore(t, [d1, d2])
  t.deepEqual(again.list().map((r) => r.id).sort((a, b) => a - b), ids)
  t.deepEqual(again.storages(), storages, 'storage ids persist in VERSION')
})

test('usage follows writes and deletes', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir], { capacityBytes: 100 * MiB })
  await store.refreshUsage()
  const before = store.usage()
  t.is(before.capacityBytes, 100 * MiB)
  t.is(before.usedBytes, 0)
  t.true(before.remainingBytes <= 100 * MiB)

  const lengthBytes = 3 * CHUNK_BYTES + 1
  await writeReplica(store, 1, 1, randomBytes(lengthBytes))
  const replicaBytes = lengthBytes + META_HEADER_BYTES + 4 * CHECKSUM_BYTES
  const after = store.usage()
  t.is(after.usedBytes, replicaBytes)
  t.is(after.remainingBytes, Math.min(before.remainingBytes - replicaBytes, 100 * MiB - replicaBytes))

  // A replica being written counts as it grows.
  const writer = await store.createRbw(2, 1)
  const p = randomBytes(CHUNK_BYTES)
  await writer.write(0, p, chunkChecksums(p))
  t.is(store.usage().usedBytes, replicaBytes + CHUNK_BYTES + META_HEADER_BYTES + CHECKSUM_BYTES)
  await writer.abort()

  t.true(await store.delete(1))
  t.is(store.usage().usedBytes, 0)

  // Without a configured capacity, the filesystem's size is the capacity.
  const plain = await openStore(t, [path.join(dir, 'plain')])
  const fsStats = await fs.statfs(dir)
  t.is(plain.usage().capacityBytes, fsStats.blocks * fsStats.bsize)
})

test('a datanode at its capacity refuses new data with no-space', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir], { capacityBytes: CHUNK_BYTES + 1000 })
  const writer = await store.createRbw(1, 1)
  const p = randomBytes(CHUNK_BYTES)
  await writer.write(0, p, chunkChecksums(p))
  t.is(await loamCode(t, writer.write(CHUNK_BYTES, p, chunkChecksums(p))), 'no-space')
  await writer.finalize(CHUNK_BYTES)
  t.is(store.get(1)?.lengthBytes, CHUNK_BYTES, 'what was written stays')
})

test('replica files are 0600 and directories 0700', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [path.join(dir, 'data')])
  await writeReplica(store, 77, 1, randomBytes(100))
  const writer = await store.createRbw(78, 1)
  const finalized = store.get(77)
  const rbw = store.get(78)
  const mode = async (p: string): Promise<number> => (await fs.stat(p)).mode & 0o777
  for (const f of [finalized?.dataPath, finalized?.metaPath, rbw?.dataPath, rbw?.metaPath, path.join(dir, 'data', 'VERSION')]) {
    t.is(await mode(f ?? ''), 0o600, f)
  }
  const current = path.join(dir, 'data', 'current')
  for (const d of [path.join(dir, 'data'), current, path.join(current, 'rbw'), path.join(current, 'finalized'), path.join(current, 'finalized', 'subdir0d'), path.join(current, 'quarantine')]) {
    t.is(await mode(d), 0o700, d)
  }
  await writer.abort()
})

test('a finalize cut short between its renames is completed at startup', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(CHUNK_BYTES + 3)
  const writer = await first.createRbw(130, 4)
  await writer.write(0, data.subarray(0, CHUNK_BYTES), chunkChecksums(data.subarray(0, CHUNK_BYTES)))
  await writer.write(CHUNK_BYTES, data.subarray(CHUNK_BYTES), chunkChecksums(data.subarray(CHUNK_BYTES)))
  await writer.sync()
  const rbw = first.get(130)
  await first.close()
  // finalize renames meta first: simulate a crash right after that rename (130 % 64 = 2).
  await fs.rename(rbw?.metaPath ?? '', path.join(dir, 'current', 'finalized', 'subdir02', 'blk_130.meta'))

  const store = await openStore(t, [dir])
  t.like(store.get(130), { state: 'finalized', genStamp: 4, lengthBytes: data.length })
  t.true((await readRange(t, store, 130, 4, 0, 0)).equals(data))
  t.deepEqual(await fs.readdir(path.join(dir, 'current', 'rbw')), [])
})

// ---- block recovery: inspect and recover ----

/** Writes data through a writer in packets with their checksums, no sync or finalize. */
async function writePackets(writer: ReplicaWriter, data: Buffer, from = 0): Promise<void> {
  for (let off = 0; off < data.length; off += PACKET_BYTES_MAX) {
    const packet = data.subarray(off, off + PACKET_BYTES_MAX)
    await writer.write(from + off, packet, chunkChecksums(packet))
  }
}


test('inspect of a finalized replica verifies all of it; of a missing one is not-found', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * CHUNK_BYTES + 100)
  await writeReplica(store, 40, 6, data)
  t.deepEqual(await store.inspect(40), { genStamp: 6, lengthBytes: data.length, verifiedBytes: data.length, state: 'finalized' })
  await writeReplica(store, 41, 1, Buffer.alloc(0))
  t.deepEqual(await store.inspect(41), { genStamp: 1, lengthBytes: 0, verifiedBytes: 0, state: 'finalized' })
  t.is(await loamCode(t, store.inspect(42)), 'not-found')
})

test('inspect of an rbw replica written in part verifies what was written, a partial last chunk included', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const writer = await store.createRbw(50, 3)
  const data = randomBytes(2 * CHUNK_BYTES + 1000)
  await writePackets(writer, data)
  t.deepEqual(await store.inspect(50), { genStamp: 3, lengthBytes: data.length, verifiedBytes: data.length, state: 'rbw' })
  t.like(store.list().find((r) => r.id === 50), { state: 'rbw', genStamp: 3 })
  // The writer is untouched by an inspect.
  await writer.write(2 * CHUNK_BYTES, data.subarray(2 * CHUNK_BYTES), chunkChecksums(data.subarray(2 * CHUNK_BYTES)))
  await writer.sync()
  await store.close()

  // After a restart (the writer's process died) the rbw replica is still there to inspect.
  const again = await openStore(t, [dir])
  t.deepEqual(await again.inspect(50), { genStamp: 3, lengthBytes: data.length, verifiedBytes: data.length, state: 'rbw' })
})

test('inspect stops at a torn last chunk: data without its checksum, a bad checksum, a checksum without data', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES)

  // Data written past what the meta file covers (the checksum write never landed).
  const w1 = await store.createRbw(60, 1)
  await writePackets(w1, data)
  const r1 = store.get(60)
  await fs.appendFile(r1?.dataPath ?? '', randomBytes(500))
  t.deepEqual(await store.inspect(60), { genStamp: 1, lengthBytes: 2 * CHUNK_BYTES + 500, verifiedBytes: 2 * CHUNK_BYTES, state: 'rbw' })

  // The last chunk's checksum damaged (or torn): the prefix ends before that chunk.
  const w2 = await store.createRbw(61, 1)
  await writePackets(w2, Buffer.concat([data, data.subarray(0, 300)]))
  await flipByte(store.get(61)?.metaPath ?? '', META_HEADER_BYTES + 2 * CHECKSUM_BYTES + 3)
  t.deepEqual(await store.inspect(61), { genStamp: 1, lengthBytes: 2 * CHUNK_BYTES + 300, verifiedBytes: 2 * CHUNK_BYTES, state: 'rbw' })

  // A checksum written for a chunk whose data never landed does not count.
  const w3 = await store.createRbw(62, 1)
  await writePackets(w3, data.subarray(0, CHUNK_BYTES + 10))
  await fs.appendFile(store.get(62)?.metaPath ?? '', chunkChecksums(randomBytes(CHUNK_BYTES)))
  t.deepEqual(await store.inspect(62), { genStamp: 1, lengthBytes: CHUNK_BYTES + 10, verifiedBytes: CHUNK_BYTES + 10, state: 'rbw' })

  // A data write cut short inside a chunk whose full checksum landed: that chunk does not count.
  const w4 = await store.createRbw(63, 1)
  await writePackets(w4, data.subarray(0, CHUNK_BYTES))
  await fs.appendFile(store.get(63)?.dataPath ?? '', data.subarray(CHUNK_BYTES, CHUNK_BYTES + 700))
  await fs.appendFile(store.get(63)?.metaPath ?? '', chunkChecksums(data.subarray(CHUNK_BYTES)))
  t.like(await store.inspect(63), { lengthBytes: CHUNK_BYTES + 700, verifiedBytes: CHUNK_BYTES })

  // A damaged chunk in the middle ends the prefix there, whatever follows.
  await writeReplica(store, 64, 2, Buffer.concat([data, data]))
  await flipByte(store.get(64)?.dataPath ?? '', CHUNK_BYTES + 5)
  t.like(await store.inspect(64), { state: 'finalized', lengthBytes: 4 * CHUNK_BYTES, verifiedBytes: CHUNK_BYTES })
  for (const w of [w1, w2, w3, w4]) await w.abort()
})

test('inspect and recover while small writes land inside a chunk: every write finished before them verifies', async (t) => {
  // A write inside a chunk lands its data, then the chunk's new checksum: read between the two, the chunk
  // would look torn and every earlier byte of it (acknowledged) would be cut by a recovery.
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const writer = await store.createRbw(55, 1)
  const page = (i: number): Buffer => Buffer.alloc(4096, (i % 251) + 1)
  const pages = 8 * (CHUNK_BYTES / 4096)
  let done = 0
  const writing = (async () => {
    for (let i = 0; i < pages; i++) {
      await writer.write(i * 4096, page(i), chunkChecksums(page(i)))
      done = i + 1
    }
  })()
  const short: string[] = []
  while (done < pages) {
    const before = done
    const r = await store.inspect(55)
    if (r.verifiedBytes < before * 4096) short.push(`${r.verifiedBytes} of ${before * 4096}`)
  }
  await writing
  t.deepEqual(short, [], 'no inspect verified less than was written before it')
  t.like(await store.recover(55, 2, pages * 4096), { genStamp: 2, lengthBytes: pages * 4096, state: 'finalized' })
})

/** Puts chunk's stored checksum back to what it was in metaBefore: a rewrite whose checksum never landed. */
async function tearChecksum(metaPath: string, metaBefore: Buffer, chunk: number): Promise<void> {
  const at = META_HEADER_BYTES + chunk * CHECKSUM_BYTES
  const fh = await fs.open(metaPath, 'r+')
  await fh.write(metaBefore.subarray(at, at + CHECKSUM_BYTES), 0, CHECKSUM_BYTES, at)
  await fh.close()
}

test('a rewrite torn by a crash loses no acknowledged byte: its chunk counts at its bytes; damage elsewhere still cuts', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(4 * CHUNK_BYTES)
  const writer = await first.createRbw(95, 1)
  await writePackets(writer, data)
  await writer.sync()
  const { dataPath, metaPath } = first.get(95)!
  const metaBefore = await fs.readFile(metaPath)
  // A page rewritten inside chunk 1, between acknowledged bytes; the crash lands its data but not its checksum.
  const page = randomBytes(4096)
  await writer.write(CHUNK_BYTES + 8192, page, chunkChecksums(page))
  await first.close()
  await tearChecksum(metaPath, metaBefore, 1)
  const want = Buffer.from(data)
  page.copy(want, CHUNK_BYTES + 8192)

  const store = await openStore(t, [dir])
  t.like(await store.inspect(95), { lengthBytes: data.length, verifiedBytes: data.length }, 'the torn chunk was marked: nothing is cut')
  t.is(await loamCode(t, store.openForUpdate(95, 1, 2)), 'corrupt', 'a replica left mid-rewrite takes no update before recovery')
  t.like(await store.recover(95, 3, data.length), { genStamp: 3, lengthBytes: data.length, state: 'finalized' })
  t.deepEqual(await store.verify(95), { ok: true, badChunk: -1 }, 'its checksum was made again from its bytes')
  t.true((await readRange(t, store, 95, 3, 0, 0)).equals(want))
  await t.throwsAsync(fs.access(`${dataPath}.rewrites`), undefined, 'the marks go with the recovery')

  // After a sync with nothing in flight the marks are gone: the same tear (or any damage) cuts the replica as ever.
  const w2 = await store.createRbw(96, 1)
  await writePackets(w2, data)
  await w2.write(CHUNK_BYTES + 8192, page, chunkChecksums(page))
  await w2.sync()
  const meta2 = store.get(96)!.metaPath
  await tearChecksum(meta2, metaBefore, 1)
  t.like(await store.inspect(96), { lengthBytes: data.length, verifiedBytes: CHUNK_BYTES })
  // While marked, a chunk that was not being rewritten still fails as damage.
  const w3 = await store.createRbw(97, 1)
  await writePackets(w3, data)
  await w3.sync()
  await w3.write(CHUNK_BYTES + 8192, page, chunkChecksums(page))
  await tearChecksum(store.get(97)!.metaPath, metaBefore, 1)
  await flipByte(store.get(97)!.dataPath, 3 * CHUNK_BYTES + 7)
  t.like(await store.inspect(97), { lengthBytes: data.length, verifiedBytes: 3 * CHUNK_BYTES })
  for (const w of [w2, w3]) await w.abort()
})

test('recover cuts an rbw replica inside a chunk and finalizes it at the new gen stamp, durably', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(3 * CHUNK_BYTES)
  const writer = await first.createRbw(70, 5)
  await writePackets(writer, data)
  await writer.sync()
  await first.close() // the writer died with the process; its rbw replica stays

  const store = await ReplicaStore.open([dir])
  const cutBytes = CHUNK_BYTES + 1234
  const info = await store.recover(70, 7, cutBytes)
  t.like(info, { id: 70, genStamp: 7, lengthBytes: cutBytes, state: 'finalized' })
  t.true(info.dataPath.includes(`${path.sep}finalized${path.sep}subdir06${path.sep}blk_70`))
  t.deepEqual(await store.verify(70), { ok: true, badChunk: -1 })
  t.true((await readRange(t, store, 70, 7, 0, 0)).equals(data.subarray(0, cutBytes)))
  t.is(await loamCode(t, drain(store.readChunks(70, 5, 0, 0))), 'stale-generation')
  t.is((await fs.stat(info.dataPath)).size, cutBytes)
  t.is((await fs.stat(info.metaPath)).size, META_HEADER_BYTES + 2 * CHECKSUM_BYTES)
  t.is(store.usage().usedBytes, cutBytes + META_HEADER_BYTES + 2 * CHECKSUM_BYTES)
  // Idempotent at the same gen stamp and length; another length needs a newer gen stamp.
  t.deepEqual(await store.recover(70, 7, cutBytes), info)
  t.is(await loamCode(t, store.recover(70, 7, CHUNK_BYTES)), 'stale-generation')
  await store.close()

  const again = await openStore(t, [dir])
  t.like(again.get(70), { genStamp: 7, lengthBytes: cutBytes, state: 'finalized' })
  t.deepEqual(await again.verify(70), { ok: true, badChunk: -1 })
  t.true((await readRange(t, again, 70, 7, 0, 0)).equals(data.subarray(0, cutBytes)))
  t.deepEqual(await again.inspect(70), { genStamp: 7, lengthBytes: cutBytes, verifiedBytes: cutBytes, state: 'finalized' })
  t.deepEqual(await fs.readdir(path.join(dir, 'current', 'rbw')), [])
})

test('recover refuses a length beyond what verifies and an older gen stamp, and changes nothing', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 300)
  const writer = await store.createRbw(80, 5)
  await writePackets(writer, data)
  await writer.sync()
  const rbw = store.get(80)
  // Tear the last chunk: its checksum no longer matches.
  await flipByte(rbw?.metaPath ?? '', META_HEADER_BYTES + 2 * CHECKSUM_BYTES)
  await store.close()

  const again = await openStore(t, [dir])
  t.is(await loamCode(t, again.recover(80, 9, data.length)), 'invalid-argument')
  t.is(await loamCode(t, again.recover(80, 9, 2 * CHUNK_BYTES + 1)), 'invalid-argument')
  t.is(await loamCode(t, again.recover(80, 4, CHUNK_BYTES)), 'stale-generation')
  t.is(await loamCode(t, again.recover(80, 9, -1)), 'invalid-argument')
  t.is(await loamCode(t, again.recover(81, 9, 0)), 'not-found')
  t.like(again.get(80), { genStamp: 5, lengthBytes: data.length, state: 'rbw', dataPath: rbw?.dataPath })
  t.like(await again.inspect(80), { genStamp: 5, verifiedBytes: 2 * CHUNK_BYTES })

  // Up to what verifies is fine.
  t.like(await again.recover(80, 9, 2 * CHUNK_BYTES), { genStamp: 9, lengthBytes: 2 * CHUNK_BYTES, state: 'finalized' })
  t.true((await readRange(t, again, 80, 9, 0, 0)).equals(data.subarray(0, 2 * CHUNK_BYTES)))
  // A finalized replica newer than the recovery is refused too.
  t.is(await loamCode(t, again.recover(80, 8, CHUNK_BYTES)), 'stale-generation')
  t.like(again.get(80), { genStamp: 9, lengthBytes: 2 * CHUNK_BYTES })
})

test('recover of a replica with an open writer ends the writer; a refused one leaves it writing', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 500)
  const writer = await store.createRbw(90, 3)
  await writePackets(writer, data.subarray(0, 2 * CHUNK_BYTES))
  t.is(await loamCode(t, store.recover(90, 4, 2 * CHUNK_BYTES + 1)), 'invalid-argument')
  // Still writing after the refusal.
  await writePackets(writer, data.subarray(2 * CHUNK_BYTES), 2 * CHUNK_BYTES)
  t.is(writer.lengthBytes, data.length)

  const info = await store.recover(90, 4, 2 * CHUNK_BYTES + 200)
  t.like(info, { genStamp: 4, lengthBytes: 2 * CHUNK_BYTES + 200, state: 'finalized' })
  const p = randomBytes(10)
  t.is(await loamCode(t, writer.write(0, p, chunkChecksums(p))), 'stale-generation')
  t.is(await loamCode(t, writer.sync()), 'stale-generation')
  t.is(await loamCode(t, writer.finalize(10)), 'stale-generation')
  await writer.abort() // a no-op now: the recovered replica stays
  t.like(store.get(90), { genStamp: 4, lengthBytes: 2 * CHUNK_BYTES + 200, state: 'finalized' })
  t.deepEqual(await store.verify(90), { ok: true, badChunk: -1 })
  t.true((await readRange(t, store, 90, 4, 0, 0)).equals(data.subarray(0, 2 * CHUNK_BYTES + 200)))
})

test('recover of a finalized replica re-stamps it, and can shorten it', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * CHUNK_BYTES)
  await writeReplica(store, 100, 1, data)
  t.like(await store.recover(100, 2, data.length), { genStamp: 2, lengthBytes: data.length, state: 'finalized' })
  t.like(await store.recover(100, 3, CHUNK_BYTES + 5), { genStamp: 3, lengthBytes: CHUNK_BYTES + 5, state: 'finalized' })
  t.is(await loamCode(t, store.recover(100, 4, CHUNK_BYTES + 6)), 'invalid-argument')
  t.true((await readRange(t, store, 100, 3, 0, 0)).equals(data.subarray(0, CHUNK_BYTES + 5)))
  await store.close()
  const again = await openStore(t, [dir])
  t.like(again.get(100), { genStamp: 3, lengthBytes: CHUNK_BYTES + 5, state: 'finalized' })
  t.deepEqual(await again.verify(100), { ok: true, badChunk: -1 })
  t.deepEqual(await fs.readdir(path.join(dir, 'current', 'rbw')), [])
})

test('a recovery cut short after moving a finalized replica back to rbw is undone at startup', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(CHUNK_BYTES + 17)
  await writeReplica(first, 131, 8, data) // 131 % 64 = 3
  const info = first.get(131)
  await first.close()
  // recover moves data first: simulate a crash right after that rename.
  await fs.rename(info?.dataPath ?? '', path.join(dir, 'current', 'rbw', 'blk_131'))

  const store = await openStore(t, [dir])
  t.like(store.get(131), { state: 'finalized', genStamp: 8, lengthBytes: data.length, dataPath: info?.dataPath })
  t.true((await readRange(t, store, 131, 8, 0, 0)).equals(data))
  t.deepEqual(await fs.readdir(path.join(dir, 'current', 'rbw')), [])
})

test('release keeps an rbw replica for recovery; aborting it afterwards does not undo a recovery', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(CHUNK_BYTES + 10)
  const writer = await store.createRbw(140, 2)
  await writePackets(writer, data)
  await writer.release()
  await writer.release() // twice is fine
  const p = randomBytes(10)
  await t.throwsAsync(writer.write(0, p, chunkChecksums(p)))
  t.deepEqual(await store.inspect(140), { genStamp: 2, lengthBytes: data.length, verifiedBytes: data.length, state: 'rbw' })
  t.like(await store.recover(140, 3, data.length), { genStamp: 3, state: 'finalized' })
  await writer.abort()
  t.like(store.get(140), { genStamp: 3, lengthBytes: data.length, state: 'finalized' })
  t.true((await readRange(t, store, 140, 3, 0, 0)).equals(data))
})
