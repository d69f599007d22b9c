// Updating a replica in place (ReplicaStore.openForUpdate, ReplicaWriter.write
// at any offset and resize), or a copy of one made for an update
// (ReplicaStore.cloneForUpdate, copy-on-write): every step is checked byte for
// byte against a shadow Buffer, and every chunk checksum against the bytes on disk.
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
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

// ---- copy-on-write: ReplicaStore.cloneForUpdate ----

/** A file's bytes, to show a source replica is untouched byte for byte, header included. */
async function filesOf(store: ReplicaStore, id: number): Promise<{ data: Buffer; meta: Buffer }> {
  const info = store.get(id)
  return { data: await fs.readFile(info?.dataPath ?? ''), meta: await fs.readFile(info?.metaPath ?? '') }
}

/** The source replica as it was: same place, state, gen stamp and files, and it verifies and reads back. */
async function checkSource(t: ExecutionContext, store: ReplicaStore, id: number, genStamp: number, want: { data: Buffer; meta: Buffer }, path0: string, step: string): Promise<void> {
  t.like(store.get(id), { state: 'finalized', genStamp, lengthBytes: want.data.length, dataPath: path0 }, `${step}: source entry`)
  const files = await filesOf(store, id)
  t.true(files.data.equals(want.data), `${step}: source data file byte for byte`)
  t.true(files.meta.equals(want.meta), `${step}: source meta file byte for byte`)
  await checkReplica(t, store, id, genStamp, want.data, `${step}: source`)
}

function replicaBytesOf(lengthBytes: number): number {
  return lengthBytes + META_HEADER_BYTES + Math.ceil(lengthBytes / CHUNK_BYTES) * CHECKSUM_BYTES
}

const rbwDir = (dir: string): string => path.join(dir, 'current', 'rbw')
const tmpDir = (dir: string): string => path.join(dir, 'current', 'tmp')

test('a clone starts as a copy of its source under a new id and gen stamp; updates to it leave the source byte for byte as it was', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(3 * CHUNK_BYTES + 500)
  await writeReplica(store, 30, 10, data)
  const source = await filesOf(store, 30)
  const sourcePath = store.get(30)?.dataPath ?? ''
  const usedBytes = store.usage().usedBytes

  const writer = await store.cloneForUpdate(30, 10, 31, 1010)
  t.like(writer, { id: 31, genStamp: 1010, lengthBytes: data.length, update: true })
  const clone = store.get(31)
  t.like(clone, { state: 'rbw', genStamp: 1010, lengthBytes: data.length, dataPath: path.join(rbwDir(dir), 'blk_31') })
  t.is(store.usage().usedBytes, usedBytes + replicaBytesOf(data.length), 'the copy is counted in full')
  t.deepEqual(store.list().map((r) => [r.id, r.state, r.genStamp]).sort(), [[30, 'finalized', 10], [31, 'rbw', 1010]])
  const meta = await fs.readFile(clone?.metaPath ?? '')
  t.is(meta.readBigUInt64BE(16), 1010n, 'the copy\'s meta header carries the new gen stamp')
  t.true(meta.subarray(META_HEADER_BYTES).equals(source.meta.subarray(META_HEADER_BYTES)), 'and the source\'s checksums')
  t.is(await loamCode(t, drain(store.readChunks(31, 10, 0, 0))), 'stale-generation', 'the copy is not served at the source\'s gen stamp')
  await checkReplica(t, store, 31, 1010, data, 'cloned')
  await checkSource(t, store, 30, 10, source, sourcePath, 'after the clone')
  t.deepEqual(await fs.readdir(tmpDir(dir)), [], 'nothing left in tmp/')

  // Writes at any offset, past the end, resizes: the source sees none of them.
  const shadow = await randomSteps(t, store, writer, 31, data, 5, 25)
  await checkSource(t, store, 30, 10, source, sourcePath, 'after updates of the clone')
  const info = await writer.finalize(shadow.length)
  t.like(info, { id: 31, state: 'finalized', genStamp: 1010, lengthBytes: shadow.length })
  await checkReplica(t, store, 31, 1010, shadow, 'clone finalized')
  await store.close()

  const again = await openStore(t, [dir])
  await checkSource(t, again, 30, 10, source, sourcePath, 'after a restart')
  await checkReplica(t, again, 31, 1010, shadow, 'clone after a restart')
  t.deepEqual(await fs.readdir(rbwDir(dir)), [])
})

test('a clone of an empty replica, and a clone of a clone, are replicas like any other', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  await writeReplica(store, 32, 1, Buffer.alloc(0))
  const empty = await store.cloneForUpdate(32, 1, 33, 2)
  t.is(empty.lengthBytes, 0)
  const p = randomBytes(CHUNK_BYTES + 3)
  await empty.write(7, p, chunkChecksums(p))
  await empty.finalize(empty.lengthBytes)
  const want = shadowWrite(Buffer.alloc(0), 7, p)
  await checkReplica(t, store, 33, 2, want, 'clone of an empty replica')
  await checkReplica(t, store, 32, 1, Buffer.alloc(0), 'the empty source')
  // Ids in either order: the locks are taken lower first.
  const again = await store.cloneForUpdate(33, 2, 3, 3)
  await again.resize(10)
  await again.finalize(10)
  await checkReplica(t, store, 3, 3, want.subarray(0, 10), 'clone of a clone')
  await checkReplica(t, store, 33, 2, want, 'its source')
})

test('clones run beside reads of their source and beside each other', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * MiB + 77)
  await writeReplica(store, 34, 4, data)
  const source = await filesOf(store, 34)
  const sourcePath = store.get(34)?.dataPath ?? ''
  const clones = [35, 36, 37].map(async (id) => {
    const w = await store.cloneForUpdate(34, 4, id, 5)
    const p = randomBytes(1000)
    await w.write(id * 1000, p, chunkChecksums(p))
    await w.finalize(w.lengthBytes)
    return { id, want: shadowWrite(data, id * 1000, p) }
  })
  const reads = [0, 1].map(async () => t.true((await readAll(t, store, 34, 4)).equals(data), 'the source reads whole during the copies'))
  const done = await Promise.all(clones)
  await Promise.all(reads)
  // The same copy asked twice at once: one wins, the other is told it exists.
  const twice = await Promise.allSettled([store.cloneForUpdate(34, 4, 38, 6), store.cloneForUpdate(34, 4, 38, 6)])
  t.deepEqual(twice.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const lost = twice.find((r) => r.status === 'rejected')
  t.is(lost?.status === 'rejected' ? (lost.reason as LoamError).code : undefined, 'exists')
  for (const r of twice) if (r.status === 'fulfilled') await r.value.abort()
  for (const { id, want } of done) await checkReplica(t, store, id, 5, want, `clone ${id}`)
  await checkSource(t, store, 34, 4, source, sourcePath, 'after concurrent clones')
})

test('bad clones give typed errors, leave the source whole and make no replica', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 9)
  await writeReplica(store, 40, 20, data)
  await writeReplica(store, 42, 3, randomBytes(100))
  const source = await filesOf(store, 40)
  const sourcePath = store.get(40)?.dataPath ?? ''
  const usedBytes = store.usage().usedBytes
  const nothingMade = async (step: string): Promise<void> => {
    t.is(store.get(41), undefined, `${step}: no replica of the new id`)
    t.deepEqual(await fs.readdir(tmpDir(dir)), [], `${step}: nothing left in tmp/`)
    t.deepEqual(await fs.readdir(rbwDir(dir)), [], `${step}: nothing in rbw/`)
    t.is(store.usage().usedBytes, usedBytes, `${step}: nothing counted`)
    await checkSource(t, store, 40, 20, source, sourcePath, step)
  }

  t.is(await loamCode(t, store.cloneForUpdate(39, 20, 41, 21)), 'not-found', 'no source')
  t.is(await loamCode(t, store.cloneForUpdate(40, 19, 41, 21)), 'stale-generation', 'an older source gen stamp')
  t.is(await loamCode(t, store.cloneForUpdate(40, 21, 41, 22)), 'stale-generation', 'a newer source gen stamp')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 40, 21)), 'invalid-argument', 'onto itself')
  t.is(await loamCode(t, store.cloneForUpdate(-1, 20, 41, 21)), 'invalid-argument')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 2 ** 53, 21)), 'invalid-argument')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 41, 0.5)), 'invalid-argument')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 42, 21)), 'exists', 'a finalized replica of the new id')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 42, 2)), 'exists', 'even an older one')
  t.deepEqual(await store.verify(42), { ok: true, badChunk: -1 }, 'the replica of the new id is untouched')
  await nothingMade('refused arguments')

  // Only a finalized source is copied: an unfinished one awaits block recovery.
  const open = await store.createRbw(43, 7)
  await open.write(0, data, chunkChecksums(data))
  t.is(await loamCode(t, store.cloneForUpdate(43, 7, 41, 8)), 'not-found', 'a source being written')
  await open.release()
  t.is(await loamCode(t, store.cloneForUpdate(43, 7, 41, 8)), 'not-found', 'an unfinished source')
  t.is(store.get(41), undefined)
  await store.delete(43)

  // The new id being written here (any gen stamp), or unfinished at one not older: refused, and left as it is.
  const live = await store.createRbw(41, 5)
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 41, 21)), 'exists', 'a live writer of the new id')
  await live.release()
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 41, 5)), 'exists', 'an unfinished replica at the same gen stamp')
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 41, 4)), 'exists', 'an unfinished replica at a newer gen stamp')
  t.like(store.get(41), { state: 'rbw', genStamp: 5, lengthBytes: 0 })
  await store.delete(41)

  // A source whose files disagree with its length (damage, or a crash's debris) is not copied.
  await fs.appendFile(sourcePath, randomBytes(10))
  t.is(await loamCode(t, store.cloneForUpdate(40, 20, 41, 21)), 'corrupt')
  await fs.truncate(sourcePath, data.length)
  await nothingMade('refused source')

  // No room for the copy.
  await store.close()
  const full = await openStore(t, [dir], { capacityBytes: usedBytes + replicaBytesOf(data.length) - 1 })
  t.is(await loamCode(t, full.cloneForUpdate(40, 20, 41, 21)), 'no-space')
  t.is(full.get(41), undefined)
  t.deepEqual(await fs.readdir(tmpDir(dir)), [])
  await full.close()
  const roomy = await openStore(t, [dir], { capacityBytes: usedBytes + replicaBytesOf(data.length) })
  const w = await roomy.cloneForUpdate(40, 20, 41, 21)
  t.is(roomy.usage().remainingBytes, 0, 'a copy that just fits')
  await w.finalize(w.lengthBytes)
  await checkReplica(t, roomy, 41, 21, data, 'the copy that fits')
})

test('a clone whose pipeline failed is kept for block recovery, and replaced by a later attempt at a newer gen stamp', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * CHUNK_BYTES + 1)
  await writeReplica(store, 50, 1, data)
  const source = await filesOf(store, 50)
  const sourcePath = store.get(50)?.dataPath ?? ''
  const first = await store.cloneForUpdate(50, 1, 51, 2)
  const p = randomBytes(3000)
  await first.write(CHUNK_BYTES - 1000, p, chunkChecksums(p))
  await first.abort() // an update's abort releases: the replica stays
  const patched = shadowWrite(data, CHUNK_BYTES - 1000, p)
  t.deepEqual(await store.inspect(51), { genStamp: 2, lengthBytes: patched.length, verifiedBytes: patched.length, state: 'rbw' })
  t.is(await loamCode(t, first.write(0, p, chunkChecksums(p))), 'invalid-argument', 'the released writer takes no more')
  const usedBytes = store.usage().usedBytes

  // A later attempt of the same copy starts again from the source: the earlier rbw is replaced, counted once.
  const second = await store.cloneForUpdate(50, 1, 51, 3)
  t.is(store.usage().usedBytes, usedBytes - replicaBytesOf(patched.length) + replicaBytesOf(data.length))
  await checkReplica(t, store, 51, 3, data, 'a fresh copy')
  await second.finalize(second.lengthBytes)
  t.deepEqual(await fs.readdir(rbwDir(dir)), [])

  // Or block recovery finalizes what the failed attempt wrote.
  const third = await store.cloneForUpdate(50, 1, 52, 2)
  await third.write(CHUNK_BYTES - 1000, p, chunkChecksums(p))
  await third.release()
  t.like(await store.recover(52, 4, patched.length), { state: 'finalized', genStamp: 4 })
  await checkReplica(t, store, 52, 4, patched, 'recovered copy')
  await checkSource(t, store, 50, 1, source, sourcePath, 'after all attempts')
})

test('a clone cut short at any step leaves the source whole, and no replica of the new id but a complete rbw', async (t) => {
  const data = randomBytes(3 * CHUNK_BYTES + 333)
  // Disk states a kill -9 can leave, step by step: the copy in tmp/ (partial, then whole and re-stamped), renamed into rbw/.
  const setup = async (): Promise<{ dir: string; source: { data: Buffer; meta: Buffer }; sourcePath: string; copy: { data: Buffer; meta: Buffer } }> => {
    const dir = await tempDir(t)
    const first = await ReplicaStore.open([dir])
    await writeReplica(first, 60, 8, data)
    const source = await filesOf(first, 60)
    const sourcePath = first.get(60)?.dataPath ?? ''
    await first.close()
    const meta = Buffer.from(source.meta)
    meta.writeBigUInt64BE(9n, 16)
    return { dir, source, sourcePath, copy: { data: source.data, meta } }
  }
  const tmpData = (dir: string): string => path.join(tmpDir(dir), 'blk_61')
  const rbwData = (dir: string): string => path.join(rbwDir(dir), 'blk_61')
  const restart = async (dir: string, source: { data: Buffer; meta: Buffer }, sourcePath: string, step: string): Promise<ReplicaStore> => {
    const store = await openStore(t, [dir])
    await checkSource(t, store, 60, 8, source, sourcePath, step)
    t.deepEqual(await fs.readdir(tmpDir(dir)), [], `${step}: tmp/ emptied at startup`)
    return store
  }
  const cases: Array<{ step: string; files: Array<[(dir: string) => string, 'data' | 'meta', number?]> }> = [
    { step: 'killed while copying the data', files: [[tmpData, 'data', CHUNK_BYTES + 5]] },
    { step: 'killed while copying the meta', files: [[tmpData, 'data'], [(d) => `${tmpData(d)}.meta`, 'meta', META_HEADER_BYTES + 3]] },
    { step: 'killed before the renames', files: [[tmpData, 'data'], [(d) => `${tmpData(d)}.meta`, 'meta']] },
    { step: 'killed between the renames', files: [[rbwData, 'data'], [(d) => `${tmpData(d)}.meta`, 'meta']] },
    { step: 'the meta rename alone reached the disk', files: [[tmpData, 'data'], [(d) => `${rbwData(d)}.meta`, 'meta']] },
  ]
  for (const { step, files } of cases) {
    const { dir, source, sourcePath, copy } = await setup()
    for (const [at, kind, lengthBytes] of files) await fs.writeFile(at(dir), copy[kind].subarray(0, lengthBytes))
    const store = await restart(dir, source, sourcePath, step)
    t.is(store.get(61), undefined, `${step}: no replica of the new id`)
    t.deepEqual(await fs.readdir(rbwDir(dir)), [], `${step}: nothing named in rbw/`)
    // The copy can be made again.
    const w = await store.cloneForUpdate(60, 8, 61, 9)
    await w.finalize(w.lengthBytes)
    await checkReplica(t, store, 61, 9, data, `${step}: copied again`)
  }

  // Both renames done, not yet returned: a whole rbw at the new gen stamp, which block recovery finalizes.
  const { dir, source, sourcePath, copy } = await setup()
  await fs.writeFile(rbwData(dir), copy.data)
  await fs.writeFile(`${rbwData(dir)}.meta`, copy.meta)
  const store = await restart(dir, source, sourcePath, 'killed after the renames')
  t.like(store.get(61), { state: 'rbw', genStamp: 9, lengthBytes: data.length })
  t.deepEqual(await store.inspect(61), { genStamp: 9, lengthBytes: data.length, verifiedBytes: data.length, state: 'rbw' })
  t.like(await store.recover(61, 10, data.length), { state: 'finalized', genStamp: 10 })
  await checkReplica(t, store, 61, 10, data, 'recovered after the renames')
})

test('clones killed (kill -9) at arbitrary moments leave the source whole, and every copy finalized or verifying as far as it goes', async (t) => {
  const dir = await tempDir(t)
  const first = await ReplicaStore.open([dir])
  const data = randomBytes(8 * MiB + 5)
  await writeReplica(first, 70, 1, data)
  const source = await filesOf(first, 70)
  const sourcePath = first.get(70)?.dataPath ?? ''
  await first.close()
  const patchAt = 3 * MiB - 100
  const patch = Buffer.alloc(5000, 0xab)
  const patched = shadowWrite(data, patchAt, patch)
  // A datanode's store in another process, copying, patching and finalizing clones one after another (keeping two).
  const child = `
    const { ReplicaStore } = await import(${JSON.stringify(new URL('../src/datanode/replica-store.js', import.meta.url).href)})
    const { chunkChecksums } = await import(${JSON.stringify(new URL('../src/common/checksum.js', import.meta.url).href)})
    const [dir, start] = process.argv.slice(-2)
    const store = await ReplicaStore.open([dir])
    const patch = Buffer.alloc(5000, 0xab)
    process.stdout.write('ready\\n')
    for (let id = Number(start); ; id++) {
      const w = await store.cloneForUpdate(70, 1, id, 2)
      await w.write(${patchAt}, patch, chunkChecksums(patch))
      await w.finalize(w.lengthBytes)
      await store.delete(id - 2)
    }
  `
  for (const [round, delayMs] of [0, 1, 3, 6, 10, 15, 25, 40].entries()) {
    const step = `killed ${delayMs} ms into round ${round}`
    const proc = spawn(process.execPath, ['--input-type=module', '-e', child, dir, String(1000 * (round + 1))], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    await new Promise<void>((resolve, reject) => {
      proc.stdout.once('data', () => resolve())
      proc.once('exit', (code) => reject(new Error(`the store process exited (${code}) before it was ready: ${stderr}`)))
    })
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    proc.kill('SIGKILL')
    await exited
    t.is(stderr, '', `${step}: the store process failed on its own`)

    // Where the kill landed, for the record: mid-copy (tmp/), mid-update (rbw/), or between clones.
    t.log(`${step}: left tmp/ [${(await fs.readdir(tmpDir(dir))).join(' ')}], rbw/ [${(await fs.readdir(rbwDir(dir))).join(' ')}]`)
    const store = await ReplicaStore.open([dir])
    try {
      await checkSource(t, store, 70, 1, source, sourcePath, step)
      t.deepEqual(await fs.readdir(tmpDir(dir)), [], `${step}: tmp/ emptied`)
      for (const r of store.list()) {
        if (r.id === 70) continue
        t.is(r.genStamp, 2, `${step}: blk_${r.id} gen stamp`)
        if (r.state === 'finalized') {
          await checkReplica(t, store, r.id, 2, patched, `${step}: finalized blk_${r.id}`)
          await store.delete(r.id)
          continue
        }
        // Unfinished: every chunk that verifies is the source's or the patched one, never a mix or garbage.
        const inspected = await store.inspect(r.id)
        const got = Buffer.alloc(inspected.verifiedBytes)
        const fh = await fs.open(r.dataPath, 'r')
        await fh.read(got, 0, got.length, 0)
        await fh.close()
        for (let at = 0; at < got.length; at += CHUNK_BYTES) {
          const chunk = got.subarray(at, at + CHUNK_BYTES)
          t.true(chunk.equals(data.subarray(at, at + chunk.length)) || chunk.equals(patched.subarray(at, at + chunk.length)), `${step}: blk_${r.id} chunk at ${at}`)
        }
        await store.delete(r.id)
      }
    } finally {
      await store.close()
    }
  }
})
