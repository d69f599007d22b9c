// Updating a block's replicas in place through real processes: a file written
// with the client, then an update pipeline (BlockPipeline.open with
// oldGenStamp) straight to its datanodes under a new gen stamp, and every
// replica read back from its datanode over TCP. The namenode's side of an
// update (UpdateBlock) is not used: gen stamps are made here (old + 1000).
//
// A copy-on-write update (BlockPipeline.open with copyFrom) goes the same way to
// a new block id made up here too, each datanode copying its replica of the old
// block first; the old block is read back as well, unchanged.
//
// The namenode does not yet know the new gen stamps and lengths, and may order
// a replica whose length changed deleted; its heartbeats are slow here so each
// test reads its replicas back well before such an order arrives.
import test, { type ExecutionContext } from 'ava'
import { BlockPipeline } from '../src/client/block-pipeline.js'
import type { LoamClient } from '../src/client/client.js'
import { firstBadChunk, initChecksums } from '../src/common/checksum.js'
import { CHUNK_BYTES } from '../src/limits.js'
import { RpcClient } from '../src/rpc/client.js'
import { LoamError } from '../src/rpc/errors.js'
import type { BlockRef, DatanodeInfo, LocatedBlock } from '../src/rpc/messages.js'
import { codecs } from '../src/rpc/schema.js'
import { DatanodeService, type DatanodeServiceSpec } from '../src/rpc/service.js'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { Cleanups, KiB, MiB, pattern } from './helpers/data.js'
import { BlockOp, blockToken } from './helpers/tokens.js'

const TIMEOUT_MS = 30_000
const GEN_STEP = 1000
const cleanups = new Cleanups()
let c: TestCluster
let client: LoamClient

test.before(async () => {
  await initChecksums()
  c = await startCluster(cleanups, { nodes: 3, racks: 2, heartbeat: '20s', deadAfter: '300s' })
  client = c.client({ shortCircuit: false })
})

test.after.always(async () => {
  await cleanups.run()
})

/** A file of data in one block of 1 MiB on 3 datanodes; its located block. */
async function writeFile(remote: string, data: Buffer): Promise<LocatedBlock> {
  const w = await client.create(remote, { replication: 3, blockSizeBytes: MiB })
  await w.write(data)
  await w.close()
  const res = await client.getBlockLocations(remote, 0, 0)
  const located = res.blocks[0]
  if (!located?.block || located.locations.length !== 3) throw new Error(`${remote}: want one block on 3 datanodes, got ${JSON.stringify(res.blocks)}`)
  return located
}

/** A connection to a datanode for small calls, closed at the end. */
function datanode(dn: DatanodeInfo): RpcClient<DatanodeServiceSpec> {
  const rpc = new RpcClient({ host: dn.host, port: dn.rpcPort }, DatanodeService, { peerName: `datanode ${dn.id}`, timeoutMs: TIMEOUT_MS })
  cleanups.teardown(() => rpc.close())
  return rpc
}

/** One replica over TCP (ReadBlock), every packet checked against its checksums and in order. */
async function readReplica(dn: DatanodeInfo, block: BlockRef): Promise<Buffer> {
  const rpc = new RpcClient({ host: dn.host, port: dn.rpcPort }, DatanodeService, { peerName: `datanode ${dn.id}`, timeoutMs: TIMEOUT_MS })
  try {
    const stream = await rpc.openStream('ReadBlock', { block, offsetBytes: 0, lengthBytes: 0, token: blockToken(block.id, BlockOp.READ) })
    const parts: Buffer[] = []
    let at = 0
    for (;;) {
      const frame = await stream.next()
      if (!frame) break
      const packet = codecs.Packet.decode(frame.header.body ?? new Uint8Array())
      if (packet.offsetBytes !== at) throw new Error(`${dn.id}: packet at ${packet.offsetBytes}, expected ${at}`)
      const bad = firstBadChunk(frame.payload, packet.checksums)
      if (bad !== -1) throw new Error(`${dn.id}: chunk ${bad} of the packet at ${packet.offsetBytes} fails its checksum`)
      parts.push(Buffer.from(frame.payload))
      at += frame.payload.length
    }
    await stream.result
    return Buffer.concat(parts)
  } finally {
    rpc.close()
  }
}

interface Packet {
  offset: number
  data: Buffer
}

/** The block as a located block at a new gen stamp: what UpdateBlock will hand a writer. */
function restamped(located: LocatedBlock, genStamp: number): LocatedBlock {
  return { ...located, block: { ...located.block!, genStamp }, token: blockToken(located.block!.id, BlockOp.WRITE) }
}

/** An update pipeline to every replica: packets in the order given, then the last one; resolves when all acknowledged. */
async function update(located: LocatedBlock, oldGenStamp: number, packets: Packet[], resizeBytes?: number): Promise<BlockRef> {
  const newGenStamp = oldGenStamp + GEN_STEP
  const pipeline = await BlockPipeline.open(restamped(located, newGenStamp), 'test-client', TIMEOUT_MS, { oldGenStamp, resizeBytes })
  try {
    for (const p of packets) await pipeline.send(p.offset, p.data)
    const last = await pipeline.send(0, Buffer.alloc(0), { last: true, sync: true })
    await pipeline.finish(last)
  } catch (err) {
    pipeline.abort(err as Error)
    throw err
  }
  return pipeline.block
}

function applyWrite(shadow: Buffer, p: Packet): Buffer {
  const out = Buffer.alloc(Math.max(shadow.length, p.offset + p.data.length))
  shadow.copy(out)
  p.data.copy(out, p.offset)
  return out
}

function applyResize(shadow: Buffer, lengthBytes: number): Buffer {
  const out = Buffer.alloc(lengthBytes)
  shadow.copy(out, 0, 0, Math.min(lengthBytes, shadow.length))
  return out
}

/** Every replica, read over TCP from its datanode at the new gen stamp, is `want`; the old version is gone. */
async function checkReplicas(t: ExecutionContext, located: LocatedBlock, oldGenStamp: number, want: Buffer): Promise<void> {
  const block: BlockRef = { id: located.block!.id, genStamp: oldGenStamp + GEN_STEP, lengthBytes: want.length }
  for (const dn of located.locations) {
    const got = await readReplica(dn, block)
    t.is(got.length, want.length, `${dn.id}: replica length`)
    t.true(got.equals(want), `${dn.id}: replica bytes`)
    const old = await t.throwsAsync(readReplica(dn, { ...block, genStamp: oldGenStamp }), { instanceOf: LoamError })
    t.is(old?.code, 'stale-generation', `${dn.id}: the old version is not served`)
    const inspected = await datanode(dn).call('InspectReplica', { blockId: block.id, token: blockToken(block.id, BlockOp.WRITE) })
    t.deepEqual(inspected, { genStamp: block.genStamp, lengthBytes: want.length, verifiedBytes: want.length, finalized: true }, `${dn.id}: inspect`)
  }
}

test.serial('an update pipeline rewrites every replica in place at unaligned offsets, past the end and out of order', async (t) => {
  const data = pattern(3 * CHUNK_BYTES + 1000, 1)
  const located = await writeFile('/update/unaligned', data)
  const gen = located.block!.genStamp
  const packets: Packet[] = [
    { offset: 10, data: pattern(100, 2) }, // inside chunk 0
    { offset: CHUNK_BYTES - 500, data: pattern(CHUNK_BYTES, 3) }, // across chunks 0 and 1
    // Whole-chunk packets that follow each other at an unaligned offset (one disk write), then a short one.
    { offset: 70_000, data: pattern(CHUNK_BYTES, 4) },
    { offset: 70_000 + CHUNK_BYTES, data: pattern(CHUNK_BYTES, 5) },
    { offset: 70_000 + 2 * CHUNK_BYTES, data: pattern(333, 6) },
    { offset: 70_000 + 2 * CHUNK_BYTES + 333, data: pattern(CHUNK_BYTES, 10) }, // follows a short one: a write of its own
    { offset: 3, data: pattern(7, 7) }, // back near the start
    { offset: data.length + 5000, data: pattern(2 * KiB, 8) }, // past the end: the gap reads as zeros
    { offset: 2 * CHUNK_BYTES, data: pattern(CHUNK_BYTES, 9) }, // one aligned chunk, overwritten whole
  ]
  const block = await update(located, gen, packets)
  const want = packets.reduce(applyWrite, data)
  t.is(block.genStamp, gen + GEN_STEP)
  await checkReplicas(t, located, gen, want)
})

test.serial('an update pipeline resizes every replica down before its packets', async (t) => {
  const data = pattern(3 * CHUNK_BYTES + 1000, 11)
  const located = await writeFile('/update/shrink', data)
  const gen = located.block!.genStamp
  const cutBytes = CHUNK_BYTES + 10
  const packets: Packet[] = [{ offset: 5, data: pattern(300, 12) }]
  await update(located, gen, packets, cutBytes)
  await checkReplicas(t, located, gen, packets.reduce(applyWrite, applyResize(data, cutBytes)))
})

test.serial('an update pipeline zero-extends every replica before its packets', async (t) => {
  const data = pattern(CHUNK_BYTES + 1000, 21)
  const located = await writeFile('/update/grow', data)
  const gen = located.block!.genStamp
  const growBytes = 4 * CHUNK_BYTES + 7
  const packets: Packet[] = [{ offset: 3 * CHUNK_BYTES - 20, data: pattern(50, 22) }]
  await update(located, gen, packets, growBytes)
  await checkReplicas(t, located, gen, packets.reduce(applyWrite, applyResize(data, growBytes)))
})

test.serial('a replica being updated is served over TCP at its new gen stamp, never short-circuited, and finalized after', async (t) => {
  const data = pattern(2 * CHUNK_BYTES + 100, 31)
  const located = await writeFile('/update/open', data)
  const gen = located.block!.genStamp
  const newGen = gen + GEN_STEP
  const pipeline = await BlockPipeline.open(restamped(located, newGen), 'test-client', TIMEOUT_MS, { oldGenStamp: gen })
  const p: Packet = { offset: CHUNK_BYTES + 1, data: pattern(500, 32) }
  await pipeline.acknowledged(await pipeline.send(p.offset, p.data, { sync: true }))
  const want = applyWrite(data, p)
  const block: BlockRef = { id: located.block!.id, genStamp: newGen, lengthBytes: want.length }
  for (const dn of located.locations) {
    t.true((await readReplica(dn, block)).equals(want), `${dn.id}: the unfinished replica as written so far`)
    const sc = await t.throwsAsync(datanode(dn).call('ShortCircuit', { block, token: blockToken(block.id, BlockOp.READ) }), { instanceOf: LoamError })
    t.is(sc?.code, 'unavailable', `${dn.id}: no short-circuit read of an unfinished replica`)
    t.deepEqual(await datanode(dn).call('InspectReplica', { blockId: block.id, token: blockToken(block.id, BlockOp.WRITE) }), { genStamp: newGen, lengthBytes: want.length, verifiedBytes: want.length, finalized: false })
  }
  await pipeline.finish(await pipeline.send(0, Buffer.alloc(0), { last: true }))
  for (const dn of located.locations) {
    const where = await datanode(dn).call('ShortCircuit', { block, token: blockToken(block.id, BlockOp.READ) })
    t.like(where, { genStamp: newGen, lengthBytes: want.length }, `${dn.id}: short-circuit once finalized`)
  }
  await checkReplicas(t, located, gen, want)
})

test.serial('an update whose writer vanished is recovered on every datanode at a newer gen stamp', async (t) => {
  const data = pattern(2 * CHUNK_BYTES, 41)
  const located = await writeFile('/update/recover', data)
  const gen = located.block!.genStamp
  const pipeline = await BlockPipeline.open(restamped(located, gen + GEN_STEP), 'test-client', TIMEOUT_MS, { oldGenStamp: gen })
  const p: Packet = { offset: 77, data: pattern(CHUNK_BYTES, 42) }
  await pipeline.acknowledged(await pipeline.send(p.offset, p.data))
  pipeline.abort(new Error('the writer died'))
  const want = applyWrite(data, p)
  // Block recovery (as the namenode runs it): inspect, then finalize at a newer gen stamp and an agreed length.
  const recovered: BlockRef = { id: located.block!.id, genStamp: gen + 2 * GEN_STEP, lengthBytes: want.length }
  for (const dn of located.locations) {
    const inspected = await datanode(dn).call('InspectReplica', { blockId: recovered.id, token: blockToken(recovered.id, BlockOp.WRITE) })
    t.like(inspected, { genStamp: gen + GEN_STEP, verifiedBytes: want.length }, `${dn.id}: inspect`)
    await datanode(dn).call('RecoverReplica', { block: recovered, token: blockToken(recovered.id, BlockOp.WRITE) })
    t.true((await readReplica(dn, recovered)).equals(want), `${dn.id}: recovered replica`)
  }
})

test.serial('a wrong old gen stamp is refused at the first datanode and changes nothing', async (t) => {
  const data = pattern(CHUNK_BYTES + 5, 51)
  const located = await writeFile('/update/refused', data)
  const gen = located.block!.genStamp
  const err = await t.throwsAsync(update(located, gen - 1, [{ offset: 1, data: pattern(10, 52) }]))
  t.regex(err?.message ?? '', /gen stamp/)
  const block: BlockRef = { ...located.block! }
  for (const dn of located.locations) t.true((await readReplica(dn, block)).equals(data), `${dn.id}: untouched`)
})

test.serial('a new block created with a resize starts as zeros', async (t) => {
  const remote = '/update/new-zeros'
  const res = await client.nn.call('Create', { path: remote, mode: 0o644, replication: 3, blockSizeBytes: MiB, overwrite: false, createParents: true, clientName: client.clientName })
  const inodeId = res.status!.inodeId
  const located = await client.addBlock(remote, inodeId, null)
  const sizeBytes = 2 * CHUNK_BYTES + 9
  const pipeline = await BlockPipeline.open(located, client.clientName, TIMEOUT_MS, { resizeBytes: sizeBytes })
  const p: Packet = { offset: CHUNK_BYTES + 3, data: pattern(40, 61) }
  await pipeline.send(p.offset, p.data)
  await pipeline.finish(await pipeline.send(0, Buffer.alloc(0), { last: true }))
  await client.complete(remote, inodeId, { ...located.block!, lengthBytes: sizeBytes })
  const want = applyWrite(Buffer.alloc(sizeBytes), p)
  for (const dn of located.locations) t.true((await readReplica(dn, { ...located.block!, lengthBytes: sizeBytes })).equals(want), `${dn.id}: replica`)
  const parts: Buffer[] = []
  for await (const piece of (await client.open(remote)).read()) parts.push(piece)
  t.true(Buffer.concat(parts).equals(want), 'read back through the client')
})

// ---- copy-on-write: a new block made on every datanode as a copy of a shared one, then updated ----

/** Block ids the namenode never hands out here (its ids count up from 1): the new blocks of copy-on-write. */
const COPY_ID_BASE = 2 ** 40

/** A copy-on-write pipeline: a new block, under a new gen stamp, copied from located's block on each of its datanodes, then packets and the last one. */
async function copyUpdate(located: LocatedBlock, packets: Packet[], resizeBytes?: number): Promise<BlockRef> {
  const old = located.block!
  const id = COPY_ID_BASE + old.id
  const copy: LocatedBlock = { ...located, block: { id, genStamp: old.genStamp + GEN_STEP, lengthBytes: old.lengthBytes }, token: blockToken(id, BlockOp.WRITE), copiedFromToken: blockToken(old.id, BlockOp.READ) }
  const pipeline = await BlockPipeline.open(copy, 'test-client', TIMEOUT_MS, { oldGenStamp: old.genStamp, copyFrom: old, resizeBytes })
  try {
    for (const p of packets) await pipeline.send(p.offset, p.data)
    await pipeline.finish(await pipeline.send(0, Buffer.alloc(0), { last: true, sync: true }))
  } catch (err) {
    pipeline.abort(err as Error)
    throw err
  }
  return pipeline.block
}

/** Every datanode holds the new block as `want`, finalized, and the old block exactly as it was. */
async function checkCopies(t: ExecutionContext, located: LocatedBlock, copied: BlockRef, oldData: Buffer, want: Buffer): Promise<void> {
  const old = located.block!
  for (const dn of located.locations) {
    const got = await readReplica(dn, { ...copied, lengthBytes: want.length })
    t.is(got.length, want.length, `${dn.id}: new block length`)
    t.true(got.equals(want), `${dn.id}: new block bytes`)
    t.deepEqual(await datanode(dn).call('InspectReplica', { blockId: copied.id, token: blockToken(copied.id, BlockOp.WRITE) }), { genStamp: copied.genStamp, lengthBytes: want.length, verifiedBytes: want.length, finalized: true }, `${dn.id}: new block inspected`)
    t.true((await readReplica(dn, old)).equals(oldData), `${dn.id}: old block unchanged`)
    t.deepEqual(await datanode(dn).call('InspectReplica', { blockId: old.id, token: blockToken(old.id, BlockOp.WRITE) }), { genStamp: old.genStamp, lengthBytes: oldData.length, verifiedBytes: oldData.length, finalized: true }, `${dn.id}: old block inspected`)
  }
}

test.serial('a copy-on-write pipeline makes a new block on every datanode as a copy of the old one and updates it at unaligned offsets; the old block stays as it was', async (t) => {
  const data = pattern(3 * CHUNK_BYTES + 1000, 71)
  const located = await writeFile('/update/cow', data)
  const packets: Packet[] = [
    { offset: 10, data: pattern(100, 72) }, // inside chunk 0
    { offset: CHUNK_BYTES - 500, data: pattern(CHUNK_BYTES, 73) }, // across chunks 0 and 1
    { offset: 2 * CHUNK_BYTES + 7, data: pattern(CHUNK_BYTES, 74) }, // whole-chunk packets at an unaligned offset
    { offset: 3 * CHUNK_BYTES + 7, data: pattern(CHUNK_BYTES, 75) }, // ...following each other, past the end
    { offset: 3, data: pattern(7, 76) }, // back near the start
    { offset: 6 * CHUNK_BYTES + 1, data: pattern(300, 77) }, // past the end: the gap reads as zeros
  ]
  const copied = await copyUpdate(located, packets)
  t.not(copied.id, located.block!.id)
  t.is(copied.genStamp, located.block!.genStamp + GEN_STEP)
  await checkCopies(t, located, copied, data, packets.reduce(applyWrite, data))
  // The old block is still served at its own gen stamp, and short-circuited (it is finalized and unchanged).
  for (const dn of located.locations) t.like(await datanode(dn).call('ShortCircuit', { block: located.block!, token: located.token }), { genStamp: located.block!.genStamp, lengthBytes: data.length })
})

test.serial('a copy-on-write pipeline resizes the copy, not the old block, before its packets', async (t) => {
  const data = pattern(2 * CHUNK_BYTES + 50, 81)
  const located = await writeFile('/update/cow-resize', data)
  const cutBytes = CHUNK_BYTES + 10
  const packets: Packet[] = [{ offset: 5, data: pattern(300, 82) }]
  const copied = await copyUpdate(located, packets, cutBytes)
  await checkCopies(t, located, copied, data, packets.reduce(applyWrite, applyResize(data, cutBytes)))
})

test.serial('a copy-on-write from a wrong gen stamp is refused at the first datanode and makes no block anywhere', async (t) => {
  const data = pattern(CHUNK_BYTES + 5, 91)
  const located = await writeFile('/update/cow-refused', data)
  const wrong: LocatedBlock = { ...located, block: { ...located.block!, genStamp: located.block!.genStamp - 1 } }
  const err = await t.throwsAsync(copyUpdate(wrong, [{ offset: 1, data: pattern(10, 92) }]))
  t.regex(err?.message ?? '', /gen stamp/)
  for (const dn of located.locations) {
    const missing = await t.throwsAsync(datanode(dn).call('InspectReplica', { blockId: COPY_ID_BASE + located.block!.id, token: blockToken(COPY_ID_BASE + located.block!.id, BlockOp.WRITE) }), { instanceOf: LoamError })
    t.is(missing?.code, 'not-found', `${dn.id}: no replica of the new block`)
    t.true((await readReplica(dn, located.block!)).equals(data), `${dn.id}: old block untouched`)
  }
})
