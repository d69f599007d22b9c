import test from 'ava'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { DIRECT_ALIGN_BYTES, DirectIo } from '../src/datanode/direct-io.js'
import { DISK_WRITE_BYTES_MAX } from '../src/limits.js'
import { openStore, tempDir, writeReplica } from './helpers/replicas.js'

test('whole pages at a page offset go direct and land byte for byte; anything else is left to the caller', async (t) => {
  const dir = await tempDir(t)
  const file = path.join(dir, 'data')
  await fs.writeFile(file, '')
  const io = new DirectIo(2)
  const handle = await io.open(dir, file)
  t.truthy(handle, 'this filesystem takes O_DIRECT')
  t.teardown(() => handle?.close())
  const pieces = [randomBytes(3 * DIRECT_ALIGN_BYTES), randomBytes(DIRECT_ALIGN_BYTES)]
  t.true(await io.write(dir, handle!, pieces, 2 * DIRECT_ALIGN_BYTES, 4 * DIRECT_ALIGN_BYTES))
  const disk = await fs.readFile(file)
  t.deepEqual(disk, Buffer.concat([Buffer.alloc(2 * DIRECT_ALIGN_BYTES), ...pieces]))
  t.is(io.writtenBytes, 4 * DIRECT_ALIGN_BYTES)

  const odd = [randomBytes(DIRECT_ALIGN_BYTES + 1)]
  t.false(await io.write(dir, handle!, odd, 0, odd[0]!.length), 'not whole pages')
  t.false(await io.write(dir, handle!, [randomBytes(DIRECT_ALIGN_BYTES)], 100, DIRECT_ALIGN_BYTES), 'not at a page offset')
  const big = randomBytes(DISK_WRITE_BYTES_MAX + DIRECT_ALIGN_BYTES)
  t.false(await io.write(dir, handle!, [big], 0, big.length), 'larger than a staging buffer')
  t.deepEqual(await fs.readFile(file), disk, 'a write left to the caller changes nothing')
  t.is(io.writtenBytes, 4 * DIRECT_ALIGN_BYTES)
})

test('with every staging buffer busy a write is left to the caller; with none at all there is no direct handle', async (t) => {
  const dir = await tempDir(t)
  const file = path.join(dir, 'data')
  await fs.writeFile(file, '')
  const io = new DirectIo(1)
  const handle = (await io.open(dir, file))!
  t.teardown(() => handle.close())
  const page = randomBytes(DIRECT_ALIGN_BYTES)
  const [first, second] = await Promise.all([io.write(dir, handle, [page], 0, page.length), io.write(dir, handle, [page], DIRECT_ALIGN_BYTES, page.length)])
  t.deepEqual([first, second], [true, false])
  t.true(await io.write(dir, handle, [page], DIRECT_ALIGN_BYTES, page.length), 'the buffer is free again once a write ends')
  t.is(await new DirectIo(0).open(dir, file), undefined)
})

test('a replica of whole pages goes to disk direct, its short tail buffered, and reads back whole', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, [dir])
  const data = randomBytes(2 * 1024 * 1024 + 1000)
  await writeReplica(store, 1, 1, data)
  t.is(store.directIo.writtenBytes, 2 * 1024 * 1024, 'every whole packet went direct')
  t.deepEqual(await fs.readFile(store.get(1)!.dataPath), data)
})
