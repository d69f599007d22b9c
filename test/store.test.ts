// LevelStore over a real LevelDB in a temporary directory: read-your-commits,
// durability across reopen, group commit, and scans that merge what is not yet
// written with what is.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { LevelStore, type KvOp } from '../src/namenode/store.js'

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'loam-store-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}

async function openStore(t: ExecutionContext, dir: string): Promise<LevelStore> {
  const store = await LevelStore.open(dir, (err) => t.fail(`the store failed: ${err.message}`))
  t.teardown(() => store.close())
  return store
}

const k = (s: string): Buffer => Buffer.from(s, 'latin1')
const put = (key: string, value: string): KvOp => ({ type: 'put', key: k(key), value: Buffer.from(value) })
const del = (key: string): KvOp => ({ type: 'del', key: k(key) })
const str = (b: Buffer | undefined): string | undefined => b?.toString()

async function scanKeys(store: LevelStore, prefix: string, startAfter?: string, limit = 1000): Promise<string[]> {
  const rows = await store.scan(k(prefix), startAfter === undefined ? undefined : k(startAfter), limit)
  return rows.map(([key]) => key.toString('latin1'))
}

async function scanPairs(store: LevelStore, prefix: string, startAfter?: string, limit = 1000): Promise<string[]> {
  const rows = await store.scan(k(prefix), startAfter === undefined ? undefined : k(startAfter), limit)
  return rows.map(([key, value]) => `${key.toString('latin1')}=${value.toString()}`)
}

/** Writes not yet in LevelDB; private, read here to check they are let go. */
function overlayKeys(store: LevelStore): string[] {
  return [...(store as unknown as { overlay: Map<string, unknown> }).overlay.keys()].sort()
}

test('a commit is visible to get() at once and durable once it resolves', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  await store.commit([put('gone', 'soon')])
  let resolved = false
  const p = store.commit([put('a', '1'), put('b', '2'), del('gone')]).then(() => {
    resolved = true
  })
  t.false(resolved)
  t.is(str(store.get(k('a'))), '1', 'visible before the commit resolves')
  t.is(str(store.get(k('b'))), '2')
  t.is(store.get(k('gone')), undefined, 'a deletion is visible before the commit resolves')
  await p
  t.true(resolved)
  await store.close()

  const again = await openStore(t, dir)
  t.is(str(again.get(k('a'))), '1', 'durable across close and reopen')
  t.is(str(again.get(k('b'))), '2')
  t.is(again.get(k('gone')), undefined)
  t.is(again.get(k('never')), undefined)
})

test('a background commit waits briefly for company: with the next commit it costs one sync; alone it is written all the same', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  const closed = store.commit([put('closed', '1')], { background: true })
  t.is(str(store.get(k('closed'))), '1', 'read back at once all the same')
  await store.commit([put('created', '2')])
  await closed
  t.is(store.stats.batches, 1, 'one synced batch for both')
  t.is(store.stats.mutations, 2)

  await store.commit([put('alone', '3')], { background: true })
  t.is(store.stats.batches, 2, 'with nobody to share it, it is written after the wait')
  const held = store.commit([put('held at close', '4')], { background: true })
  await store.close()
  await held
  const again = await openStore(t, dir)
  t.deepEqual(['closed', 'created', 'alone', 'held at close'].map((key) => str(again.get(k(key)))), ['1', '2', '3', '4'], 'all durable')
})

test('500 concurrent commits resolve in order, in far fewer batches, and the last write to a key wins', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  const COMMITS = 500
  const KEYS = 20
  const resolvedOrder: number[] = []
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < COMMITS; i++) {
    const ops: KvOp[] = [put(`shared/${i % KEYS}`, String(i)), put(`own/${String(i).padStart(3, '0')}`, String(i))]
    if (i === 100) ops.push(put('deleted-later', 'x'))
    if (i === 400) ops.push(del('deleted-later'))
    if (i === 450) ops.push(del(`own/${String(10).padStart(3, '0')}`))
    pending.push(store.commit(ops).then(() => void resolvedOrder.push(i)))
    // Reads see every commit so far, immediately.
    t.is(str(store.get(k(`shared/${i % KEYS}`))), String(i))
  }
  await Promise.all(pending)
  t.deepEqual(resolvedOrder, Array.from({ length: COMMITS }, (_, i) => i), 'commits resolve in the order they were made')
  t.is(store.stats.mutations, COMMITS)
  t.true(store.stats.batches >= 1)
  t.true(store.stats.batches * 10 <= COMMITS, `${store.stats.batches} batches for ${COMMITS} commits: commits are grouped`)

  const expectShared = (s: LevelStore): void => {
    for (let key = 0; key < KEYS; key++) t.is(str(s.get(k(`shared/${key}`))), String(COMMITS - KEYS + key), `shared/${key}`)
    t.is(s.get(k('deleted-later')), undefined)
    t.is(s.get(k('own/010')), undefined)
    t.is(str(s.get(k('own/011'))), '11')
  }
  expectShared(store)
  await store.close()

  const again = await openStore(t, dir)
  expectShared(again)
  const own = await scanKeys(again, 'own/')
  t.is(own.length, COMMITS - 1)
})

test('scan merges pending writes and deletions with what is on disk', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  await store.commit(['a', 'b', 'c', 'd', 'e'].map((x) => put(`p/${x}`, 'disk')))
  t.deepEqual(overlayKeys(store), [])
  // Not awaited: these are in the overlay only while the scans below start.
  const pending = store.commit([put('p/c', 'new'), del('p/b'), put('p/bb', 'new'), put('p/f', 'new'), del('p/zz')])
  const expectAll = ['p/a=disk', 'p/bb=new', 'p/c=new', 'p/d=disk', 'p/e=disk', 'p/f=new']
  const scans = await Promise.all([
    scanPairs(store, 'p/'),
    scanPairs(store, 'p/', 'p/bb'),
    scanPairs(store, 'p/', 'p/b'),
    scanPairs(store, 'p/', undefined, 2),
    scanPairs(store, 'p/', 'p/c', 2),
    scanPairs(store, 'p/', 'p/f'),
  ])
  const expected = [expectAll, expectAll.slice(2), expectAll.slice(1), expectAll.slice(0, 2), expectAll.slice(3, 5), []]
  t.deepEqual(scans, expected, 'while the commit is pending')
  await pending
  t.deepEqual(overlayKeys(store), [])
  const after = await Promise.all([
    scanPairs(store, 'p/'),
    scanPairs(store, 'p/', 'p/bb'),
    scanPairs(store, 'p/', 'p/b'),
    scanPairs(store, 'p/', undefined, 2),
    scanPairs(store, 'p/', 'p/c', 2),
    scanPairs(store, 'p/', 'p/f'),
  ])
  t.deepEqual(after, expected, 'once written')
})

test('scan fills its limit past pending deletions of the first entries on disk', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  await store.commit(['a', 'b', 'c', 'd', 'e', 'f'].map((x) => put(`p/${x}`, x)))
  const pending = store.commit([del('p/a'), del('p/b'), del('p/c'), put('q/x', 'elsewhere')])
  t.deepEqual(await scanKeys(store, 'p/', undefined, 2), ['p/d', 'p/e'])
  t.deepEqual(await scanKeys(store, 'p/', undefined, 0), [])
  await pending
  t.deepEqual(await scanKeys(store, 'p/', undefined, 2), ['p/d', 'p/e'])
})

test('scan respects the prefix, pending or on disk', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  const outside = ['`', 'a', 'a!', 'a.', 'a0', 'b/1', 'a\xff', 'b']
  await store.commit([...outside, 'a/1', 'a/2', 'c\xff\x01', 'c\xff\xff'].map((x) => put(x, 'disk')))
  const pending = store.commit([put('a/3', 'new'), put('a0/1', 'new'), put('a.x', 'new'), put('c\xfe', 'new'), put('c\xff\x00', 'new'), put('d', 'new')])
  t.deepEqual(await scanKeys(store, 'a/'), ['a/1', 'a/2', 'a/3'])
  t.deepEqual(await scanKeys(store, 'c\xff'), ['c\xff\x00', 'c\xff\x01', 'c\xff\xff'], 'a prefix ending in 0xff')
  t.deepEqual(await scanKeys(store, 'c\xff', 'c\xff\x00'), ['c\xff\x01', 'c\xff\xff'])
  await pending
  t.deepEqual(await scanKeys(store, 'a/'), ['a/1', 'a/2', 'a/3'])
  t.deepEqual(await scanKeys(store, 'c\xff'), ['c\xff\x00', 'c\xff\x01', 'c\xff\xff'])
})

test('scan includes a key equal to the prefix, pending or written', async (t) => {
  // "Entries whose key starts with prefix": the prefix itself starts with the prefix.
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  const pending = store.commit([put('p', 'exact'), put('p1', 'child')])
  t.deepEqual(await scanKeys(store, 'p'), ['p', 'p1'], 'while pending')
  await pending
  t.deepEqual(await scanKeys(store, 'p'), ['p', 'p1'], 'once written')
})

test('scan with startAfter below the prefix returns only keys in the prefix', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  await store.commit([put('a', 'x'), put('a!', 'x'), put('a.', 'x'), put('a/1', 'x'), put('a/2', 'x')])
  t.deepEqual(await scanKeys(store, 'a/', 'a'), ['a/1', 'a/2'])
  t.deepEqual(await scanKeys(store, 'a/', ''), ['a/1', 'a/2'])
})

test('the overlay drops entries once written, keeps ones a later commit replaced, and get stays right', async (t) => {
  const dir = await tempDir(t)
  const store = await openStore(t, dir)
  await store.commit([put('d', 'to delete')])
  const first = store.commit([put('k', '1'), put('only-first', 'f')])
  const second = store.commit([put('k', '2'), del('d')])
  const third = store.commit([put('k', '3')])
  t.deepEqual(overlayKeys(store), ['d', 'k', 'only-first'])
  await first
  t.false(overlayKeys(store).includes('only-first'), 'a written key no later commit touched is let go')
  t.is(str(store.get(k('only-first'))), 'f', 'and read from disk')
  t.is(str(store.get(k('k'))), '3', 'the newest pending value wins over the written one')
  t.is(store.get(k('d')), undefined)
  await Promise.all([second, third])
  t.deepEqual(overlayKeys(store), [])
  t.is(str(store.get(k('k'))), '3')
  t.is(store.get(k('d')), undefined)
  t.is(str(store.get(k('only-first'))), 'f')
})
