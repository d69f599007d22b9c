// Updating a replica in place (ReplicaStore.openForUpdate, ReplicaWriter.write
// at any offset and resize): every step is checked byte for byte against a
// shadow Buffer, and every chunk checksum against the bytes on disk.
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { chunkChecksums, firstBadChunk } from '../src/common/checksum.js'
import { META_HEADER_BYTES, ReplicaStore, type ReplicaWriter } from '../src/datanode/replica-store.js'
import { BLOCK_SIZE_MAX_BYTES, CHECKSUM_BYTES, CHUNK_BYTES, DISK_WRITE_BYTES_MAX, PACKET_BYTES_MAX } from '../src/limits.js'
import { LoamError, type ErrorCode } from '../src/rpc/errors.js'
import { flipByte } from './helpers/data.js'
import { openStore, tempDir, writeReplica } from './helpers/replicas.js'

const MiB = 1024 * 1024

async function loamCode(t: ExecutionContext, promise: Promise<unknown>): Promise<ErrorCode | undefined> {
  const err = await t.throwsAsync(promise, { instanceOf: LoamError })
  return (err as LoamError | undefined)?.code
}

/** The whole replica at genStamp through readChunks, every packet checked against its checksums. */
async function readAll(t: ExecutionContext, store: ReplicaStore, id: number, genStamp: number): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const packet of store.readChunks(id, genStamp, 0, 0)) {
    t.is(firstBadChunk(packet.data, packet.checksums), -1, `packet at ${packet.offsetBytes} matches its stored checksums`)
    parts.push(packet.data)
  }
  return Buffer.concat(parts)
}

async function drain(gen: AsyncGenerator<unknown>): Promise<void> {
  let next = await gen.next()
  while (next.done !== true) next = await gen.next()
}

/** The replica is exactly `want`: its bytes, its length everywhere, and a right checksum for every chunk. */
async function checkReplica(t: ExecutionContext, store: ReplicaStore, id: number, genStamp: number, want: Buffer, step: string): Promise<void> {
  const info = store.get(id)
  t.is(info?.lengthBytes, want.length, `${step}: length`)
  t.is(info?.genStamp, genStamp, `${step}: gen stamp`)
  t.is((await fs.stat(info?.dataPath ?? '')).size, want.length, `${step}: data file size`)
  t.is((await fs.stat(info?.metaPath ?? '')).size, META_HEADER_BYTES + Math.ceil(want.length / CHUNK_BYTES) * CHECKSUM_BYTES, `${step}: meta file size`)
  t.deepEqual(await store.verify(id), { ok: true, badChunk: -1 }, `${step}: every chunk verifies`)
  const got = await readAll(t, store, id, genStamp)
  t.is(got.length, want.length, `${step}: bytes read`)
  t.true(got.equals(want), `${step}: bytes match the shadow`)
}

/** A deterministic generator (mulberry32), so a failing sequence can be replayed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n)
  }
}

/** The shadow after a write: zeros fill a gap before it, then the payload lands over what was there. */
function shadowWrite(shadow: Buffer, offset: number, data: Buffer): Buffer {
  const out = Buffer.alloc(Math.max(shadow.length, offset + data.length))
  shadow.copy(out, 0)
  data.copy(out, offset)
  return out
}

function shadowResize(shadow: Buffer, lengthBytes: number): Buffer {
  const out = Buffer.alloc(lengthBytes)
  shadow.copy(out, 0, 0, Math.min(shadow.length, lengthBytes))
  return out
}

/** A payload as the pipeline may hand it over: one buffer, or several whose all but the last are whole chunks. */
function splitPieces(data: Buffer, rand: (n: number) => number): Buffer | Buffer[] {
  if (data.length <= CHUNK_BYTES || rand(2) === 0) return data
  const pieces: Buffer[] = []
  let off = 0
  while (data.length - off > CHUNK_BYTES) {
    const n = Math.min(data.length - off - 1, (1 + rand(3)) * CHUNK_BYTES)
    const whole = Math.floor(n / CHUNK_BYTES) * CHUNK_BYTES
    if (whole === 0) break
    pieces.push(data.subarray(off, off + whole))
    off += whole
  }
  pieces.push(data.subarray(off))
  return pieces
}

/** Random writes (unaligned, inside one chunk, across chunks, past the end) and resizes, checked after each. */
async function randomSteps(t: ExecutionContext, store: ReplicaStore, writer: ReplicaWriter, id: number, start: Buffer, seed: number, steps: number): Promise<Buffer> {
  const rand = prng(seed)
  const capBytes = 4 * MiB
  let shadow = start
  for (let i = 0; i < steps; i++) {
    const kind = rand(10)
    let step: string
    if (kind < 2) {
      // Resize: down (often inside a chunk), or up past the end.
      const to = rand(2) === 0 ? rand(shadow.length + 1) : Math.min(capBytes, shadow.length + 1 + rand(3 * CHUNK_BYTES))
      step = `step ${i}: resize ${shadow.length} -> ${to}`
      await writer.resize(to)
      shadow = shadowResize(shadow, to)
    } else {
      const sizes = [1 + rand(100), 1 + rand(CHUNK_BYTES), CHUNK_BYTES, 1 + rand(3 * CHUNK_BYTES), 1 + rand(DISK_WRITE_BYTES_MAX)]
      const size = sizes[rand(sizes.length)]!
      const offsets = [rand(shadow.length + 1), shadow.length, shadow.length + 1 + rand(2 * CHUNK_BYTES), rand(Math.floor(shadow.length / CHUNK_BYTES) + 1) * CHUNK_BYTES]
      const offset = Math.min(offsets[rand(offsets.length)]!, capBytes - size)
      const data = randomBytes(size)
      step = `step ${i}: write ${size} bytes at ${offset} (length ${shadow.length})`
      await writer.write(offset, splitPieces(data, rand), chunkChecksums(data), { verify: rand(2) === 0 })
      shadow = shadowWrite(shadow, offset, data)
    }
    t.is(writer.lengthBytes, shadow.length, `${step}: writer length`)
    await checkReplica(t, store, id, writer.genStamp, shadow, step)
  }
  return shadow
}

test('an update reopens a finalized replica as rbw under the new gen stamp, keeping its bytes, and finalizes it again', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * CHUNK_BYTES + 500)
  await writeReplica(store, 5, 10, data)
  const before = store.get(5)
  const usedBytes = store.usage().usedBytes

  const writer = await store.openForUpdate(5, 10, 1010)
  t.is(writer.genStamp, 1010)
  t.is(writer.lengthBytes, data.length)
  const rbw = store.get(5)
  t.like(rbw, { state: 'rbw', genStamp: 1010, lengthBytes: data.length })
  t.is(rbw?.dataPath, path.join(dir, 'current', 'rbw', 'blk_5'))
  t.is(store.usage().usedBytes, usedBytes, 'nothing counted twice')
  await t.throwsAsync(fs.stat(before?.dataPath ?? ''), undefined, 'moved out of finalized/, not copied')
  // Block reports list it as being written, at its new gen stamp.
  t.deepEqual(store.list().map((r) => [r.id, r.state, r.genStamp]), [[5, 'rbw', 1010]])
  const header = Buffer.alloc(META_HEADER_BYTES)
  const fh = await fs.open(rbw?.metaPath ?? '', 'r')
  await fh.read(header, 0, META_HEADER_BYTES, 0)
  await fh.close()
  t.is(header.readBigUInt64BE(16), 1010n, 'meta header carries the new gen stamp')
  t.is(await loamCode(t, drain(store.readChunks(5, 10, 0, 0))), 'stale-generation', 'the old version is no longer served')
  await checkReplica(t, store, 5, 1010, data, 'reopened')

  const patch = randomBytes(1000)
  await writer.write(CHUNK_BYTES - 300, patch, chunkChecksums(patch))
  const want = shadowWrite(data, CHUNK_BYTES - 300, patch)
  await checkReplica(t, store, 5, 1010, want, 'patched')
  const info = await writer.finalize(writer.lengthBytes)
  t.like(info, { state: 'finalized', genStamp: 1010, lengthBytes: want.length, dataPath: before?.dataPath })
  t.deepEqual(store.list().map((r) => [r.id, r.state, r.genStamp, r.lengthBytes]), [[5, 'finalized', 1010, want.length]])
  await store.close()

  const again = await openStore(t, [dir])
  t.like(again.get(5), { state: 'finalized', genStamp: 1010, lengthBytes: want.length })
  await checkReplica(t, again, 5, 1010, want, 'after a restart')
  t.deepEqual(await fs.readdir(path.join(dir, 'current', 'rbw')), [])
})

for (const seed of [1, 2, 3]) {
  test(`random unaligned writes, writes past the end and resizes match a shadow buffer, every chunk checksum right (seed ${seed})`, async (t) => {
    const dir = await tempDir(t)
    const store = await openStore(t, [dir])
    const data = randomBytes(2 * CHUNK_BYTES + 12345)
    await writeReplica(store, 7, 3, data)
    const writer = await store.openForUpdate(7, 3, 4)
    const shadow = await randomSteps(t, store, writer, 7, data, seed, 40)
    await writer.sync()
    await writer.finalize(shadow.length)
    await checkReplica(t, store, 7, 4, shadow, 'finalized')
  })
}

test('a new replica created with a resize starts as zeros, and takes writes at any offset', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const writer = await store.createRbw(8, 1)
  await writer.resize(CHUNK_BYTES + 77)
  await checkReplica(t, store, 8, 1, Buffer.alloc(CHUNK_BYTES + 77), 'resized new replica')
  const shadow = await randomSteps(t, store, writer, 8, Buffer.alloc(CHUNK_BYTES + 77), 99, 20)
  await writer.finalize(shadow.length)
  await checkReplica(t, store, 8, 1, shadow, 'finalized')
})

test('a zero-extension is sparse: no zeros are written, and their chunks verify', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(1000)
  await writeReplica(store, 9, 1, data)
  const writer = await store.openForUpdate(9, 1, 2)
  const bigBytes = 64 * MiB + 5
  await writer.resize(bigBytes)
  const info = store.get(9)
  const st = await fs.stat(info?.dataPath ?? '')
  t.is(st.size, bigBytes)
  t.true(st.blocks * 512 < 4 * MiB, `allocated ${st.blocks * 512} bytes for ${bigBytes}`)
  t.deepEqual(await store.verify(9), { ok: true, badChunk: -1 })
  // And a write far past the end zero-fills its gap the same way.
  const tail = randomBytes(300)
  await writer.write(100 * MiB + 3, tail, chunkChecksums(tail))
  t.is(writer.lengthBytes, 100 * MiB + 303)
  t.true((await fs.stat(info?.dataPath ?? '')).blocks * 512 < 4 * MiB)
  t.deepEqual(await store.verify(9), { ok: true, badChunk: -1 })
  const head = Buffer.alloc(2000)
  for await (const p of store.readChunks(9, 2, 0, 2000)) {
    p.data.copy(head, p.offsetBytes)
    break
  }
  t.true(head.subarray(0, 1000).equals(data) && head.subarray(1000).equals(Buffer.alloc(1000)), 'old bytes, then zeros')
  await writer.resize(10)
  t.deepEqual(await store.verify(9), { ok: true, badChunk: -1 })
  await checkReplica(t, store, 9, 2, data.subarray(0, 10), 'cut back')
})

test('an rbw replica left by an earlier pipeline is updated, and a live older writer is ended keeping its bytes', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(CHUNK_BYTES + 40)
  // Released: its pipeline failed elsewhere and the writer reopens it under a newer gen stamp.
  const first = await store.createRbw(11, 5)
  await first.write(0, data, chunkChecksums(data))
  await first.release()
  const second = await store.openForUpdate(11, 5, 6)
  t.like(store.get(11), { state: 'rbw', genStamp: 6, lengthBytes: data.length })
  await checkReplica(t, store, 11, 6, data, 'reopened rbw')

  // Still open here (this node has not seen its pipeline end): a newer update ends it.
  const third = await store.openForUpdate(11, 6, 7)
  const p = randomBytes(10)
  t.is(await loamCode(t, second.write(0, p, chunkChecksums(p))), 'stale-generation')
  t.is(await loamCode(t, second.finalize(10)), 'stale-generation')
  await second.abort() // a no-op now
  await checkReplica(t, store, 11, 7, data, 'after the older writer ended')
  await third.write(5, p, chunkChecksums(p))
  await third.finalize(third.lengthBytes)
  await checkReplica(t, store, 11, 7, shadowWrite(data, 5, p), 'finalized')
})

test('bad updates and bad writes give typed errors and leave the replica intact', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 9)
  await writeReplica(store, 12, 20, data)
  const intact = async (step: string, state: 'finalized' | 'rbw', genStamp: number, want: Buffer): Promise<void> => {
    t.is(store.get(12)?.state, state, `${step}: state`)
    await checkReplica(t, store, 12, genStamp, want, step)
  }

  t.is(await loamCode(t, store.openForUpdate(13, 20, 21)), 'not-found')
  t.is(await loamCode(t, store.openForUpdate(12, 19, 21)), 'stale-generation', 'another old gen stamp')
  t.is(await loamCode(t, store.openForUpdate(12, 21, 22)), 'stale-generation', 'a newer old gen stamp')
  t.is(await loamCode(t, store.openForUpdate(12, 20, 20)), 'stale-generation', 'the new gen stamp must be newer')
  t.is(await loamCode(t, store.openForUpdate(12, 20, 3)), 'stale-generation')
  t.is(await loamCode(t, store.openForUpdate(12, 20, -1)), 'invalid-argument')
  await intact('refused updates', 'finalized', 20, data)

  const writer = await store.openForUpdate(12, 20, 30)
  t.is(await loamCode(t, store.openForUpdate(12, 30, 30)), 'exists', 'a live writer at the same gen stamp')
  t.is(await loamCode(t, store.openForUpdate(12, 20, 25)), 'exists', 'a live writer at a newer gen stamp')
  t.is(await loamCode(t, store.createRbw(12, 29)), 'exists')
  const p = randomBytes(5000)
  const damaged = Buffer.from(p)
  damaged[4000] = (damaged[4000] ?? 0) ^ 1
  t.is(await loamCode(t, writer.write(100, damaged, chunkChecksums(p))), 'corrupt')
  t.is(await loamCode(t, writer.write(100, p, chunkChecksums(p).subarray(1))), 'invalid-argument')
  t.is(await loamCode(t, writer.write(BLOCK_SIZE_MAX_BYTES - 10, p, chunkChecksums(p))), 'invalid-argument', 'past the block size limit')
  t.is(await loamCode(t, writer.write(BLOCK_SIZE_MAX_BYTES + 1, Buffer.alloc(0), Buffer.alloc(0))), 'invalid-argument')
  t.is(await loamCode(t, writer.write(1.5, p, chunkChecksums(p))), 'invalid-argument')
  t.is(await loamCode(t, writer.write(0, [p, p], Buffer.concat([chunkChecksums(p), chunkChecksums(p)]))), 'invalid-argument', 'a short piece before another')
  t.is(await loamCode(t, writer.resize(-1)), 'invalid-argument')
  t.is(await loamCode(t, writer.resize(BLOCK_SIZE_MAX_BYTES + 1)), 'invalid-argument')
  t.is(await loamCode(t, writer.resize(0.5)), 'invalid-argument')
  await intact('refused writes', 'rbw', 30, data)
  // The writer still works.
  await writer.write(100, p, chunkChecksums(p))
  await intact('a good write after', 'rbw', 30, shadowWrite(data, 100, p))
  await writer.abort()
})

test('a write into a chunk damaged on disk is refused, never hashed again; a chunk overwritten whole needs no read', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * CHUNK_BYTES)
  await writeReplica(store, 14, 1, data)
  const writer = await store.openForUpdate(14, 1, 2)
  await flipByte(store.get(14)?.dataPath ?? '', CHUNK_BYTES + 10)
  const p = randomBytes(100)
  t.is(await loamCode(t, writer.write(CHUNK_BYTES + 500, p, chunkChecksums(p))), 'corrupt')
  t.is(await loamCode(t, writer.resize(CHUNK_BYTES + 20)), 'corrupt')
  t.deepEqual(await store.verify(14), { ok: false, badChunk: 1 }, 'the damage still shows')
  // Chunk 1 overwritten whole at an aligned offset: the payload's checksum replaces the old one.
  const whole = randomBytes(CHUNK_BYTES)
  await writer.write(CHUNK_BYTES, whole, chunkChecksums(whole))
  await checkReplica(t, store, 14, 2, shadowWrite(data, CHUNK_BYTES, whole), 'overwritten whole')
  await writer.abort()
})

test('abort of an update keeps the replica for block recovery, which finalizes it at a newer gen stamp', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 1)
  await writeReplica(store, 15, 1, data)
  const writer = await store.openForUpdate(15, 1, 2)
  const p = randomBytes(3000)
  await writer.write(CHUNK_BYTES - 1000, p, chunkChecksums(p))
  await writer.abort()
  const want = shadowWrite(data, CHUNK_BYTES - 1000, p)
  t.like(store.get(15), { state: 'rbw', genStamp: 2, lengthBytes: want.length })
  t.deepEqual(await store.inspect(15), { genStamp: 2, lengthBytes: want.length, verifiedBytes: want.length, state: 'rbw' })
  t.like(await store.recover(15, 3, want.length), { state: 'finalized', genStamp: 3, lengthBytes: want.length })
  await checkReplica(t, store, 15, 3, want, 'recovered')

  // Recovery of an update whose writer is still open ends it.
  const w2 = await store.openForUpdate(15, 3, 4)
  await w2.resize(10)
  t.deepEqual(await store.inspect(15), { genStamp: 4, lengthBytes: 10, verifiedBytes: 10, state: 'rbw' })
  t.like(await store.recover(15, 5, 10), { state: 'finalized', genStamp: 5, lengthBytes: 10 })
  t.is(await loamCode(t, w2.write(0, p, chunkChecksums(p))), 'stale-generation')
  await checkReplica(t, store, 15, 5, want.subarray(0, 10), 'recovered while open')
})

test('an update cut short at any step leaves the old finalized replica or an rbw that recovers', async (t) => {
  const data = randomBytes(CHUNK_BYTES + 333)
  const setup = async (id: number): Promise<{ dir: string; data: string; meta: string }> => {
    const dir = await tempDir(t)
    const first = await ReplicaStore.open([dir])
    await writeReplica(first, id, 8, data)
    const info = first.get(id)
    await first.close()
    return { dir, data: info?.dataPath ?? '', meta: info?.metaPath ?? '' }
  }
  const rbwOf = (dir: string, id: number): string => path.join(dir, 'current', 'rbw', `blk_${id}`)

  // Killed after moving the data file only: the startup scan puts it back.
  const a = await setup(200)
  await fs.rename(a.data, rbwOf(a.dir, 200))
  const sa = await openStore(t, [a.dir])
  t.like(sa.get(200), { state: 'finalized', genStamp: 8, lengthBytes: data.length, dataPath: a.data })
  await checkReplica(t, sa, 200, 8, data, 'data moved only')

  // Killed after both moves, before the new gen stamp: an rbw at the old one, whole.
  const b = await setup(201)
  await fs.rename(b.data, rbwOf(b.dir, 201))
  await fs.rename(b.meta, `${rbwOf(b.dir, 201)}.meta`)
  const sb = await openStore(t, [b.dir])
  t.like(sb.get(201), { state: 'rbw', genStamp: 8, lengthBytes: data.length })
  t.deepEqual(await sb.inspect(201), { genStamp: 8, lengthBytes: data.length, verifiedBytes: data.length, state: 'rbw' })
  t.like(await sb.recover(201, 9, data.length), { state: 'finalized', genStamp: 9 })
  await checkReplica(t, sb, 201, 9, data, 'recovered after both moves')

  // Killed after the update opened and wrote (no finalize): an rbw at the new gen stamp that verifies.
  const c = await setup(202)
  const sc1 = await ReplicaStore.open([c.dir])
  const w = await sc1.openForUpdate(202, 8, 1008)
  const p = randomBytes(700)
  await w.write(CHUNK_BYTES - 200, p, chunkChecksums(p))
  await w.resize(CHUNK_BYTES + 900)
  await w.sync()
  await sc1.close()
  const sc = await openStore(t, [c.dir])
  const want = shadowResize(shadowWrite(data, CHUNK_BYTES - 200, p), CHUNK_BYTES + 900)
  t.like(sc.get(202), { state: 'rbw', genStamp: 1008, lengthBytes: want.length })
  t.deepEqual(await sc.inspect(202), { genStamp: 1008, lengthBytes: want.length, verifiedBytes: want.length, state: 'rbw' })
  await checkReplica(t, sc, 202, 1008, want, 'updated rbw after a restart')
  // The same writer (a new pipeline) reopens it.
  const w2 = await sc.openForUpdate(202, 1008, 2008)
  await w2.finalize(w2.lengthBytes)
  await checkReplica(t, sc, 202, 2008, want, 'reopened after a restart')
})

test('an rbw replica whose files disagree is refused for update until block recovery', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(CHUNK_BYTES)
  const w = await first.createRbw(16, 1)
  await w.write(0, data, chunkChecksums(data))
  await w.sync()
  await first.close()
  // A write torn by a crash: data landed, its checksum did not.
  await fs.appendFile(path.join(dir, 'current', 'rbw', 'blk_16'), randomBytes(100))
  const store = await openStore(t, [dir])
  t.is(await loamCode(t, store.openForUpdate(16, 1, 2)), 'corrupt')
  t.like(store.get(16), { state: 'rbw', genStamp: 1, lengthBytes: CHUNK_BYTES + 100 })
  t.like(await store.recover(16, 2, CHUNK_BYTES), { state: 'finalized', genStamp: 2 })
  const w2 = await store.openForUpdate(16, 2, 3)
  await w2.finalize(w2.lengthBytes)
  await checkReplica(t, store, 16, 3, data, 'updated after recovery')
})

test('readers of a replica being updated see whole chunks; a reader of the old version is told it changed', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * MiB)
  await writeReplica(store, 17, 1, data)

  // A reader of the finalized version, when an update starts under it, fails with stale-generation (not corrupt).
  const old = store.readChunks(17, 1, 0, 0)
  t.false((await old.next()).done)
  const writer = await store.openForUpdate(17, 1, 2)
  const p = randomBytes(2 * CHUNK_BYTES)
  await writer.write(2 * MiB + 5, p, chunkChecksums(p))
  t.is(await loamCode(t, drain(old)), 'stale-generation')

  // Readers at the new gen stamp while unaligned writes land: every packet matches its checksums.
  let shadow = shadowWrite(data, 2 * MiB + 5, p)
  const rand = prng(7)
  let writing = true
  const writes = (async () => {
    for (let i = 0; i < 150; i++) {
      const d = randomBytes(1 + rand(DISK_WRITE_BYTES_MAX))
      const off = rand(shadow.length - d.length)
      shadow = shadowWrite(shadow, off, d)
      await writer.write(off, d, chunkChecksums(d))
    }
    writing = false
  })()
  // Two readers, so reads overlap writes in the I/O threads, not only between them.
  const reader = async (): Promise<void> => {
    let reads = 0
    while (writing || reads < 2) {
      t.is((await readAll(t, store, 17, 2)).length, data.length)
      reads++
    }
  }
  await Promise.all([writes, reader(), reader()])
  await checkReplica(t, store, 17, 2, shadow, 'after concurrent reads and writes')
  await writer.finalize(writer.lengthBytes)
})

test('concurrent aligned writes in order of offset land as one sequential stream', async (t) => {
  // The pipeline awaits each write; other callers may issue them together, as before updates existed.
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(5 * PACKET_BYTES_MAX + 123)
  const writer = await store.createRbw(18, 1)
  const writes: Promise<void>[] = []
  for (let off = 0; off < data.length; off += PACKET_BYTES_MAX) {
    const packet = data.subarray(off, off + PACKET_BYTES_MAX)
    writes.push(writer.write(off, packet, chunkChecksums(packet)))
  }
  await Promise.all(writes)
  await writer.finalize(data.length)
  await checkReplica(t, store, 18, 1, data, 'concurrent sequential writes')
})
