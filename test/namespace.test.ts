// The namespace core over an in-memory transaction: no store, no sockets.
// Every failing case also checks that the operation wrote nothing (Namespace
// checks before it writes), and every succeeding case checks the tree's
// invariants: children counts, directory nlink, parent ids, no leaked inodes.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { NAME_BYTES_MAX, PATH_BYTES_MAX, PATH_COMPONENTS_MAX, XATTR_VALUE_BYTES_MAX } from '../src/limits.js'
import { checkBlockSize, checkReplication } from '../src/common/validate.js'
import {
  Namespace,
  newInode,
  ROOT_ID,
  type Caller,
  type Defaults,
  type NamespaceTxn,
} from '../src/namenode/namespace.js'
import { checkName, joinPath, parsePath } from '../src/namenode/paths.js'
import { LoamError, type ErrorCode } from '../src/rpc/errors.js'
import { InodeType, type BlockRef, type InodeRecord, type VolumeRecord } from '../src/rpc/messages.js'

const KiB = 1024
const MiB = 1024 * KiB
const CALLER: Caller = { user: 'alice', group: 'staff', nowMs: 1_000 }
const LATER: Caller = { user: 'alice', group: 'staff', nowMs: 2_000 }
const DEFAULTS: Defaults = { replication: 3, blockSizeBytes: 64 * MiB }
const BLOCK = 1 * MiB

/**
 * A NamespaceTxn over plain maps. Reads hand out copies, so a record changes
 * only through putInode: an operation that edits a record and then fails
 * leaves nothing behind, and one that forgets to put what it edited is caught
 * by the invariant check.
 */
class MemTxn implements NamespaceTxn {
  readonly inodes = new Map<number, InodeRecord>()
  readonly entries = new Map<number, Map<string, number>>()
  readonly collected: number[] = []
  readonly volumes = new Map<string, VolumeRecord>()
  /** Calls that change state: putInode, deleteInode, link, unlink, collect. */
  writes = 0
  private lastInodeId = ROOT_ID
  private lastBlockId = 1 << 30
  private lastGenStamp = 1000

  constructor() {
    const root = newInode(ROOT_ID, InodeType.DIRECTORY, CALLER, 0o755)
    root.nlink = 2
    this.inodes.set(ROOT_ID, root)
  }

  inode(id: number): InodeRecord | undefined {
    const rec = this.inodes.get(id)
    return rec === undefined ? undefined : structuredClone(rec)
  }

  volume(name: string): VolumeRecord | undefined {
    const rec = this.volumes.get(name)
    return rec === undefined ? undefined : structuredClone(rec)
  }

  putVolume(rec: VolumeRecord): void {
    this.writes++
    this.volumes.set(rec.name, structuredClone(rec))
  }

  deleteVolume(name: string): void {
    this.writes++
    this.volumes.delete(name)
  }

  child(parentId: number, name: string): number | undefined {
    return this.entries.get(parentId)?.get(name)
  }

  putInode(rec: InodeRecord): void {
    this.writes++
    this.inodes.set(rec.id, structuredClone(rec))
  }

  deleteInode(id: number): void {
    this.writes++
    if (!this.inodes.delete(id)) throw new Error(`deleteInode(${id}): no such inode`)
  }

  link(parentId: number, name: string, childId: number): void {
    this.writes++
    const dir = this.entries.get(parentId) ?? new Map<string, number>()
    if (dir.has(name)) throw new Error(`link(${parentId}, ${name}): the name is taken; unlink it first`)
    dir.set(name, childId)
    this.entries.set(parentId, dir)
  }

  unlink(parentId: number, name: string): void {
    this.writes++
    if (!this.entries.get(parentId)?.delete(name)) throw new Error(`unlink(${parentId}, ${name}): no such entry`)
  }

  collect(rootId: number): void {
    this.writes++
    this.collected.push(rootId)
  }

  allocInodeId(): number {
    return ++this.lastInodeId
  }

  allocBlockId(): number {
    return ++this.lastBlockId
  }

  nextGenStamp(): number {
    return ++this.lastGenStamp
  }

  /** Everything an operation can change, as one comparable string. */
  snapshot(): string {
    const inodes = [...this.inodes.entries()].sort((a, b) => a[0] - b[0])
    const entries = [...this.entries.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([p, names]) => [p, [...names.entries()].sort()])
    return JSON.stringify({ inodes, entries, collected: this.collected })
  }

  names(dirId: number): string[] {
    return [...(this.entries.get(dirId)?.keys() ?? [])].sort()
  }
}

interface Env {
  txn: MemTxn
  ns: Namespace
}

function fresh(): Env {
  const txn = new MemTxn()
  return { txn, ns: new Namespace(txn, CALLER) }
}

const neverExpired = (): boolean => false

function createOpts(clientName: string, over: Partial<Parameters<Namespace['create']>[1]> = {}): Parameters<Namespace['create']>[1] {
  return { mode: 0o644, replication: 0, blockSizeBytes: BLOCK, overwrite: false, createParents: false, clientName, ...over }
}

/** A closed file with one block per entry of lengths. */
function writeFile(ns: Namespace, path: string, lengths: number[] = [], clientName = 'writer'): InodeRecord {
  const { inode } = ns.create(path, createOpts(clientName), DEFAULTS, CALLER, neverExpired)
  let previous: BlockRef | null = null
  for (const lengthBytes of lengths) {
    const { block } = ns.addBlock(path, inode.id, clientName, previous)
    previous = { ...block, lengthBytes }
  }
  return ns.complete(path, inode.id, clientName, previous, CALLER)
}

/** A file left open for writing by clientName, with one empty block. */
function openFile(ns: Namespace, path: string, clientName: string): { inode: InodeRecord; block: BlockRef } {
  const { inode } = ns.create(path, createOpts(clientName), DEFAULTS, CALLER, neverExpired)
  return ns.addBlock(path, inode.id, clientName, null)
}

function codeOf(fn: () => unknown): ErrorCode | 'no error' | 'not a LoamError' {
  try {
    fn()
  } catch (err) {
    return err instanceof LoamError ? err.code : 'not a LoamError'
  }
  return 'no error'
}

/** fn fails with code and writes nothing. */
function refuses(t: ExecutionContext, env: Env, fn: () => unknown, code: ErrorCode): string {
  const before = env.txn.snapshot()
  const writes = env.txn.writes
  const err = t.throws(fn, { instanceOf: LoamError })
  t.is(err?.code, code, err?.message)
  t.is(env.txn.writes, writes, 'a refused operation makes no writes')
  t.is(env.txn.snapshot(), before, 'a refused operation leaves the namespace as it was')
  return err?.message ?? ''
}

/**
 * The tree from the root: every entry names an existing inode; a directory's
 * children is its entry count, its nlink 2 + subdirectories, its parentId the
 * directory it is in; a file's nlink is its number of names and its length the
 * sum of its blocks; every inode is reachable from the root or from a subtree
 * handed to the collector.
 */
function checkTree(t: ExecutionContext, txn: MemTxn): void {
  const reached = new Set<number>()
  const fileNames = new Map<number, number>()
  const walk = (dirId: number, path: string, collected: boolean): void => {
    const dir = txn.inodes.get(dirId)
    if (dir === undefined) return void t.fail(`${path}: directory inode ${dirId} is missing`)
    reached.add(dirId)
    const names = txn.entries.get(dirId) ?? new Map<string, number>()
    let subdirs = 0
    for (const [name, childId] of names) {
      const childPath = `${path === '/' ? '' : path}/${name}`
      const child = txn.inodes.get(childId)
      if (child === undefined) {
        t.fail(`${childPath}: entry names inode ${childId}, which does not exist`)
        continue
      }
      if (child.type === InodeType.DIRECTORY) {
        subdirs++
        t.is(child.parentId, dirId, `${childPath}: parentId`)
        walk(childId, childPath, collected)
      } else {
        reached.add(childId)
        fileNames.set(childId, (fileNames.get(childId) ?? 0) + 1)
        // A symlink's length is its target's (as lstat reports it); a file's is the sum of its blocks.
        const expected = child.type === InodeType.SYMLINK ? Buffer.byteLength(child.symlinkTarget) : child.blocks.reduce((s, b) => s + b.lengthBytes, 0)
        t.is(child.lengthBytes, expected, `${childPath}: length is the sum of its blocks (a symlink's: its target's)`)
      }
    }
    if (!collected) {
      t.is(dir.children, names.size, `${path}: children count`)
      t.is(dir.nlink, 2 + subdirs, `${path}: nlink`)
    }
  }
  walk(ROOT_ID, '/', false)
  for (const id of txn.collected) walk(id, `<collected ${id}>`, true)
  for (const [id, count] of fileNames) t.is(txn.inodes.get(id)?.nlink, count, `file inode ${id}: nlink is its number of names`)
  for (const id of txn.inodes.keys()) t.true(reached.has(id), `inode ${id} is reachable (not leaked)`)
}

// ---------------------------------------------------------------- paths

test('parsePath: components of valid paths, with repeated and trailing slashes folded', (t) => {
  const cases: Array<[string, string[]]> = [
    ['/', []],
    ['//', []],
    ['/a', ['a']],
    ['/a/b/c', ['a', 'b', 'c']],
    ['//a///b//', ['a', 'b']],
    ['/a/', ['a']],
    ['/.a/...', ['.a', '...']],
    ['/a b/ü/日本', ['a b', 'ü', '日本']],
  ]
  for (const [path, parts] of cases) t.deepEqual(parsePath(path), parts, path)
  t.is(joinPath(parsePath('//a///b//')), '/a/b')
  t.is(joinPath([]), '/')
})

test('parsePath: the limits are inclusive', (t) => {
  const name255 = 'n'.repeat(NAME_BYTES_MAX)
  t.deepEqual(parsePath(`/${name255}`), [name255])
  // 16 components of 255 bytes with their slashes: exactly 4096 bytes.
  const longest = `/${name255}`.repeat(16)
  t.is(Buffer.byteLength(longest), PATH_BYTES_MAX)
  t.is(parsePath(longest).length, 16)
  t.is(parsePath('/a'.repeat(PATH_COMPONENTS_MAX)).length, PATH_COMPONENTS_MAX)
  t.notThrows(() => checkName(name255))
})

const badPaths: Array<[string, string]> = [
  ['relative', 'a/b'],
  ['relative with dot', './a'],
  ['empty', ''],
  ['dot component', '/a/./b'],
  ['dot-dot component', '/a/../b'],
  ['trailing dot-dot', '/a/..'],
  ['dot-dot at the root', '/..'],
  ['NUL', '/a\0b'],
  ['name over 255 bytes', `/${'n'.repeat(NAME_BYTES_MAX + 1)}`],
  ['name over 255 bytes in UTF-8 though 128 characters', `/${'é'.repeat(128)}`],
  ['path over 4096 bytes', `/${'n'.repeat(200)}`.repeat(21)],
  ['path over 4096 bytes by one', `/${'n'.repeat(NAME_BYTES_MAX)}`.repeat(16) + '/'],
  ['over 512 components', '/a'.repeat(PATH_COMPONENTS_MAX + 1)],
]
for (const [what, path] of badPaths) {
  test(`parsePath refuses a path: ${what}`, (t) => {
    t.is(codeOf(() => parsePath(path)), 'invalid-argument')
    // The namespace applies the same rules and writes nothing.
    const env = fresh()
    refuses(t, env, () => env.ns.mkdirs(path, 0o755, true, CALLER), 'invalid-argument')
    refuses(t, env, () => env.ns.create(path, createOpts('c1', { createParents: true }), DEFAULTS, CALLER, neverExpired), 'invalid-argument')
  })
}

test('checkName refuses names that cannot be one component', (t) => {
  for (const name of ['.', '..', 'a/b', 'a\0', 'x'.repeat(NAME_BYTES_MAX + 1)]) {
    t.is(codeOf(() => checkName(name)), 'invalid-argument', JSON.stringify(name.slice(0, 20)))
  }
})

test('the namespace folds repeated slashes: //a///b names /a/b', (t) => {
  const { ns } = fresh()
  const b = ns.mkdirs('/a/b', 0o755, true, CALLER)
  t.is(ns.get('//a///b/').id, b.id)
  t.is(ns.resolve('/a//b').id, b.id)
})

// ---------------------------------------------------------------- mkdirs

test('mkdirs without parents creates one directory with the caller, mode and counts', (t) => {
  const { txn, ns } = fresh()
  const a = ns.mkdirs('/a', 0o40750, false, CALLER)
  t.is(a.type, InodeType.DIRECTORY)
  t.is(a.mode, 0o750, 'mode keeps only permission bits')
  t.is(a.owner, 'alice')
  t.is(a.group, 'staff')
  t.is(a.parentId, ROOT_ID)
  t.is(a.nlink, 2)
  t.is(a.children, 0)
  t.is(ns.get('/a').id, a.id)
  t.deepEqual(txn.names(ROOT_ID), ['a'])
  const root = ns.get('/')
  t.is(root.children, 1)
  t.is(root.nlink, 3)
  checkTree(t, txn)
})

test('mkdirs with parents creates every missing directory and keeps the existing ones', (t) => {
  const { txn, ns } = fresh()
  const a = ns.mkdirs('/a', 0o755, false, CALLER)
  const c = ns.mkdirs('/a/b/c', 0o700, true, LATER)
  const b = ns.get('/a/b')
  t.is(ns.get('/a').id, a.id, 'the existing /a was kept')
  t.is(b.parentId, a.id)
  t.is(c.parentId, b.id)
  t.is(b.mode, 0o700)
  t.is(ns.get('/a').nlink, 3)
  t.is(ns.get('/a').mtimeMs, LATER.nowMs, 'the parent that gained an entry has a new mtime')
  checkTree(t, txn)
})

test('mkdirs with parents of an existing directory returns it and writes nothing', (t) => {
  const env = fresh()
  const c = env.ns.mkdirs('/a/b/c', 0o755, true, CALLER)
  const before = env.txn.snapshot()
  const writes = env.txn.writes
  t.is(env.ns.mkdirs('/a/b/c', 0o755, true, CALLER).id, c.id)
  t.is(env.ns.mkdirs('/', 0o755, true, CALLER).id, ROOT_ID)
  t.is(env.txn.writes, writes)
  t.is(env.txn.snapshot(), before)
})

interface FailCase {
  name: string
  setup?: (ns: Namespace) => void
  run: (ns: Namespace) => unknown
  code: ErrorCode
}

function failCases(prefix: string, cases: FailCase[]): void {
  for (const c of cases) {
    test(`${prefix}: ${c.name}`, (t) => {
      const env = fresh()
      c.setup?.(env.ns)
      checkTree(t, env.txn)
      refuses(t, env, () => c.run(env.ns), c.code)
    })
  }
}

failCases('mkdirs refuses', [
  { name: 'an existing directory without parents', setup: (ns) => ns.mkdirs('/a', 0o755, false, CALLER), run: (ns) => ns.mkdirs('/a', 0o755, false, CALLER), code: 'exists' },
  { name: 'a missing parent without parents', run: (ns) => ns.mkdirs('/a/b', 0o755, false, CALLER), code: 'not-found' },
  { name: 'over a file', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.mkdirs('/f', 0o755, false, CALLER), code: 'exists' },
  { name: 'over a file, with parents', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.mkdirs('/f', 0o755, true, CALLER), code: 'exists' },
  { name: 'below a file', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.mkdirs('/f/sub', 0o755, false, CALLER), code: 'not-a-directory' },
  { name: 'below a file, with parents', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.mkdirs('/f/sub/deeper', 0o755, true, CALLER), code: 'not-a-directory' },
  {
    name: 'below a file deeper in existing directories, with parents',
    setup: (ns) => {
      ns.mkdirs('/a/b', 0o755, true, CALLER)
      writeFile(ns, '/a/b/f')
    },
    run: (ns) => ns.mkdirs('/a/b/f/x/y', 0o755, true, CALLER),
    code: 'not-a-directory',
  },
])

// ---------------------------------------------------------------- create

test('create makes an empty file open for writing, with defaults filled in', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/d', 0o755, false, CALLER)
  const { inode, freed } = ns.create('/d/f', createOpts('c1', { blockSizeBytes: 0, mode: 0o100640 }), DEFAULTS, LATER, neverExpired)
  t.deepEqual(freed.blocks, [])
  t.is(inode.type, InodeType.FILE)
  t.is(inode.mode, 0o640)
  t.is(inode.replication, DEFAULTS.replication)
  t.is(inode.blockSizeBytes, DEFAULTS.blockSizeBytes)
  t.is(inode.leaseHolder, 'c1')
  t.is(inode.lengthBytes, 0)
  t.is(inode.nlink, 1)
  t.is(ns.get('/d/f').id, inode.id)
  const d = ns.get('/d')
  t.is(d.children, 1)
  t.is(d.nlink, 2, 'a file does not add to its directory nlink')
  t.is(d.mtimeMs, LATER.nowMs)
  checkTree(t, txn)
})

test('create with explicit replication and block size keeps them', (t) => {
  const { ns } = fresh()
  const { inode } = ns.create('/f', createOpts('c1', { replication: 2, blockSizeBytes: 128 * KiB }), DEFAULTS, CALLER, neverExpired)
  t.is(inode.replication, 2)
  t.is(inode.blockSizeBytes, 128 * KiB)
})

test('create with createParents makes the missing directories', (t) => {
  const { txn, ns } = fresh()
  const { inode } = ns.create('/x/y/f', createOpts('c1', { createParents: true }), DEFAULTS, CALLER, neverExpired)
  t.is(ns.get('/x/y/f').id, inode.id)
  t.is(ns.get('/x/y').mode, 0o755)
  t.is(ns.get('/x').nlink, 3)
  checkTree(t, txn)
})

test('create with overwrite replaces a closed file and frees its blocks', (t) => {
  const { txn, ns } = fresh()
  const old = writeFile(ns, '/f', [BLOCK, 100])
  t.is(old.lengthBytes, BLOCK + 100)
  const { inode, freed } = ns.create('/f', createOpts('c2', { overwrite: true }), DEFAULTS, LATER, neverExpired)
  t.not(inode.id, old.id)
  t.deepEqual(freed.blocks.map((b) => b.id), old.blocks.map((b) => b.id))
  t.is(txn.inode(old.id), undefined, 'the old inode is gone')
  t.is(ns.get('/f').id, inode.id)
  t.is(ns.get('/f').leaseHolder, 'c2')
  t.is(ns.get('/').children, 1)
  checkTree(t, txn)
})

test('create with overwrite by the lease holder itself replaces its own open file', (t) => {
  const { txn, ns } = fresh()
  const { inode: old, block } = openFile(ns, '/f', 'c1')
  const { inode, freed } = ns.create('/f', createOpts('c1', { overwrite: true }), DEFAULTS, CALLER, neverExpired)
  t.not(inode.id, old.id)
  t.deepEqual(freed.blocks.map((b) => b.id), [block.id])
  checkTree(t, txn)
})

test('create with overwrite takes over a file whose holder lease expired', (t) => {
  const { txn, ns } = fresh()
  const { block } = openFile(ns, '/f', 'c1')
  const asked: string[] = []
  const expired = (rec: InodeRecord): boolean => {
    asked.push(rec.leaseHolder)
    return true
  }
  const { inode, freed } = ns.create('/f', createOpts('c2', { overwrite: true }), DEFAULTS, CALLER, expired)
  t.deepEqual(asked, ['c1'], 'the callback is asked about the holder')
  t.is(inode.leaseHolder, 'c2')
  t.deepEqual(freed.blocks.map((b) => b.id), [block.id])
  checkTree(t, txn)
})

failCases('create refuses', [
  { name: 'an existing file without overwrite', setup: (ns) => writeFile(ns, '/f', [10]), run: (ns) => ns.create('/f', createOpts('c2'), DEFAULTS, CALLER, neverExpired), code: 'exists' },
  {
    name: 'a file open by another client without overwrite',
    setup: (ns) => openFile(ns, '/f', 'c1'),
    run: (ns) => ns.create('/f', createOpts('c2'), DEFAULTS, CALLER, neverExpired),
    code: 'exists',
  },
  {
    name: 'a file open by another client whose lease is live, even with overwrite',
    setup: (ns) => openFile(ns, '/f', 'c1'),
    run: (ns) => ns.create('/f', createOpts('c2', { overwrite: true }), DEFAULTS, CALLER, neverExpired),
    code: 'lease',
  },
  { name: 'an existing directory', setup: (ns) => ns.mkdirs('/d', 0o755, false, CALLER), run: (ns) => ns.create('/d', createOpts('c1', { overwrite: true }), DEFAULTS, CALLER, neverExpired), code: 'is-a-directory' },
  { name: 'the root', run: (ns) => ns.create('/', createOpts('c1', { overwrite: true }), DEFAULTS, CALLER, neverExpired), code: 'is-a-directory' },
  { name: 'a missing parent without createParents', run: (ns) => ns.create('/x/f', createOpts('c1'), DEFAULTS, CALLER, neverExpired), code: 'not-found' },
  { name: 'below a file', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.create('/f/x', createOpts('c1'), DEFAULTS, CALLER, neverExpired), code: 'not-a-directory' },
  {
    name: 'below a file, with createParents (the parent is a file: not-a-directory, not exists)',
    setup: (ns) => writeFile(ns, '/f'),
    run: (ns) => ns.create('/f/x', createOpts('c1', { createParents: true }), DEFAULTS, CALLER, neverExpired),
    code: 'not-a-directory',
  },
  {
    name: 'two levels below a file, with createParents',
    setup: (ns) => writeFile(ns, '/f'),
    run: (ns) => ns.create('/f/x/y', createOpts('c1', { createParents: true }), DEFAULTS, CALLER, neverExpired),
    code: 'not-a-directory',
  },
  { name: 'no client name', run: (ns) => ns.create('/f', createOpts(''), DEFAULTS, CALLER, neverExpired), code: 'invalid-argument' },
  { name: 'replication 513', run: (ns) => ns.create('/f', createOpts('c1', { replication: 513 }), DEFAULTS, CALLER, neverExpired), code: 'invalid-argument' },
  { name: 'a block size not a multiple of 64 KiB', run: (ns) => ns.create('/f', createOpts('c1', { blockSizeBytes: 100_000 }), DEFAULTS, CALLER, neverExpired), code: 'invalid-argument' },
  {
    name: 'a bad block size before creating parents',
    run: (ns) => ns.create('/x/y/f', createOpts('c1', { blockSizeBytes: 1000, createParents: true }), DEFAULTS, CALLER, neverExpired),
    code: 'invalid-argument',
  },
])

test('create does not ask about leases when the file has no holder or the caller holds it', (t) => {
  const { ns } = fresh()
  writeFile(ns, '/closed')
  openFile(ns, '/mine', 'c1')
  let asked = 0
  const expired = (): boolean => {
    asked++
    return false
  }
  ns.create('/closed', createOpts('c2', { overwrite: true }), DEFAULTS, CALLER, expired)
  ns.create('/mine', createOpts('c1', { overwrite: true }), DEFAULTS, CALLER, expired)
  t.is(asked, 0)
})

// ---------------------------------------------------------------- addBlock / complete

test('addBlock and complete commit each block length; the file length is their sum', (t) => {
  const { txn, ns } = fresh()
  const { inode } = ns.create('/f', createOpts('c1'), DEFAULTS, CALLER, neverExpired)
  const first = ns.addBlock('/f', inode.id, 'c1', null)
  t.is(first.block.lengthBytes, 0)
  t.is(first.inode.blocks.length, 1)
  const second = ns.addBlock('/f', inode.id, 'c1', { ...first.block, lengthBytes: BLOCK })
  t.not(second.block.id, first.block.id)
  t.true(second.block.genStamp > 0)
  t.is(ns.get('/f').lengthBytes, BLOCK, 'the first block is committed by the next addBlock')
  const done = ns.complete('/f', inode.id, 'c1', { ...second.block, lengthBytes: 123 }, LATER)
  t.is(done.lengthBytes, BLOCK + 123)
  t.is(done.leaseHolder, '')
  t.is(done.mtimeMs, LATER.nowMs)
  const stored = ns.get('/f')
  t.deepEqual(stored.blocks.map((b) => b.lengthBytes), [BLOCK, 123])
  t.is(stored.lengthBytes, BLOCK + 123)
  t.is(stored.leaseHolder, '')
  checkTree(t, txn)
})

test('complete takes a newer generation stamp for the last block (pipeline recovery)', (t) => {
  const { ns } = fresh()
  const { inode, block } = openFile(ns, '/f', 'c1')
  const done = ns.complete('/f', inode.id, 'c1', { id: block.id, genStamp: block.genStamp + 5, lengthBytes: 10 }, CALLER)
  t.is(done.blocks[0]?.genStamp, block.genStamp + 5)
  t.is(done.lengthBytes, 10)
})

test('complete of an empty file with no block', (t) => {
  const { ns } = fresh()
  const { inode } = ns.create('/f', createOpts('c1'), DEFAULTS, CALLER, neverExpired)
  const done = ns.complete('/f', inode.id, 'c1', null, CALLER)
  t.is(done.lengthBytes, 0)
  t.is(done.leaseHolder, '')
})

test('a closed file cannot be completed (nor its last block resized) under an empty client name', (t) => {
  const env = fresh()
  const f = writeFile(env.ns, '/f', [100])
  refuses(t, env, () => env.ns.complete('/f', f.id, '', { ...f.blocks[0]!, lengthBytes: 5 }, CALLER), 'invalid-argument')
  refuses(t, env, () => env.ns.addBlock('/f', f.id, '', null), 'invalid-argument')
  t.is(env.ns.get('/f').lengthBytes, 100)
})

test('a block exactly the block size is accepted', (t) => {
  const { ns } = fresh()
  const { inode, block } = openFile(ns, '/f', 'c1')
  t.is(ns.complete('/f', inode.id, 'c1', { ...block, lengthBytes: BLOCK }, CALLER).lengthBytes, BLOCK)
})

interface OpenFile {
  id: number
  block: BlockRef
}
/** Setups for the lease and length cases: /f open by c1 with one block. */
function openForCases(ns: Namespace): OpenFile {
  const { inode, block } = openFile(ns, '/f', 'c1')
  return { id: inode.id, block }
}

const writeFailCases: Array<{ name: string; prepare?: (ns: Namespace, f: OpenFile) => unknown; run: (ns: Namespace, f: OpenFile) => unknown; code: ErrorCode }> = [
  { name: 'addBlock by another client', run: (ns, f) => ns.addBlock('/f', f.id, 'c2', f.block), code: 'lease' },
  { name: 'complete by another client', run: (ns, f) => ns.complete('/f', f.id, 'c2', f.block, CALLER), code: 'lease' },
  {
    name: 'addBlock after complete',
    prepare: (ns, f) => ns.complete('/f', f.id, 'c1', f.block, CALLER),
    run: (ns, f) => ns.addBlock('/f', f.id, 'c1', null),
    code: 'lease',
  },
  { name: 'addBlock on a replaced file (inode id differs)', run: (ns, f) => ns.addBlock('/f', f.id + 1000, 'c1', f.block), code: 'not-found' },
  { name: 'addBlock on a missing file', run: (ns, f) => ns.addBlock('/g', f.id, 'c1', null), code: 'not-found' },
  {
    name: 'addBlock on a directory',
    prepare: (ns) => ns.mkdirs('/d', 0o755, false, CALLER),
    run: (ns) => ns.addBlock('/d', 0, 'c1', null),
    code: 'is-a-directory',
  },
  { name: 'a previous block over the block size', run: (ns, f) => ns.addBlock('/f', f.id, 'c1', { ...f.block, lengthBytes: BLOCK + 1 }), code: 'invalid-argument' },
  { name: 'a last block over the block size', run: (ns, f) => ns.complete('/f', f.id, 'c1', { ...f.block, lengthBytes: BLOCK + 1 }, CALLER), code: 'invalid-argument' },
  { name: 'a previous block that is not the last block', run: (ns, f) => ns.addBlock('/f', f.id, 'c1', { ...f.block, id: f.block.id + 1 }), code: 'invalid-argument' },
  { name: 'a block of an older generation', run: (ns, f) => ns.complete('/f', f.id, 'c1', { ...f.block, genStamp: f.block.genStamp - 1 }, CALLER), code: 'stale-generation' },
]
test('another user cannot continue a write by naming its client, nor learn that client name', (t) => {
  const env = fresh()
  const f = openForCases(env.ns)
  const asBob: Caller = { user: 'bob', group: 'staff', nowMs: 1_500 }
  const bob = new Namespace(env.txn, asBob)
  const attempts: Array<() => unknown> = [
    () => bob.addBlock('/f', f.id, 'c1', f.block),
    () => bob.complete('/f', f.id, 'c1', f.block, CALLER),
    () => bob.bumpBlock('/f', f.id, 'c1', f.block.id),
    () => bob.updateBlock('/f', f.id, 'c1', f.block.id),
    () => bob.commitBlocks({ path: '/f', inodeId: f.id, clientName: 'c1', blocks: [], truncate: false, blockCount: 1, close: true, mtimeMs: 0 }, CALLER),
    () => bob.addBlock('/f', f.id, 'c2', f.block),
    () => bob.openForWrite('/f', 'c1'),
    () => bob.create('/f', createOpts('c1', { overwrite: true }), DEFAULTS, asBob, neverExpired),
  ]
  for (const attempt of attempts) {
    const message = refuses(t, env, attempt, 'lease')
    t.false(message.includes('c1'), `the holder's client name stays hidden: ${message}`)
  }
  // The holder's own user hears who holds it; the superuser may continue the write.
  t.regex(refuses(t, env, () => env.ns.addBlock('/f', f.id, 'c2', f.block), 'lease'), /\(c1\)/)
  const root = new Namespace(env.txn, { user: 'hdfs', group: 'supergroup', nowMs: 1_500, superuser: true })
  t.is(root.complete('/f', f.id, 'c1', { ...f.block, lengthBytes: 10 }, CALLER).lengthBytes, 10)
})

for (const c of writeFailCases) {
  test(`write refuses: ${c.name}`, (t) => {
    const env = fresh()
    const f = openForCases(env.ns)
    c.prepare?.(env.ns, f)
    refuses(t, env, () => c.run(env.ns, f), c.code)
    t.is(env.ns.get('/f').blocks.length, 1, 'no block was added')
  })
}

// ---------------------------------------------------------------- rename

test('rename a file to a new name in another directory', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/a', 0o755, false, CALLER)
  ns.mkdirs('/b', 0o755, false, CALLER)
  const f = writeFile(ns, '/a/f', [5])
  const freed = ns.rename('/a/f', '/b/g', false, LATER)
  t.deepEqual(freed.blocks, [])
  t.is(ns.get('/b/g').id, f.id)
  t.is(ns.get('/b/g').lengthBytes, 5)
  t.is(codeOf(() => ns.get('/a/f')), 'not-found')
  t.is(ns.get('/a').children, 0)
  t.is(ns.get('/b').children, 1)
  t.is(ns.get('/a').mtimeMs, LATER.nowMs)
  t.is(ns.get('/b').mtimeMs, LATER.nowMs)
  checkTree(t, txn)
})

test('rename a file over a file replaces it and frees the old blocks', (t) => {
  const { txn, ns } = fresh()
  const src = writeFile(ns, '/src', [7])
  const dst = writeFile(ns, '/dst', [BLOCK, 9])
  const freed = ns.rename('/src', '/dst', true, LATER)
  t.deepEqual(freed.blocks.map((b) => b.id), dst.blocks.map((b) => b.id))
  t.is(ns.get('/dst').id, src.id)
  t.is(ns.get('/dst').lengthBytes, 7)
  t.is(txn.inode(dst.id), undefined, 'the replaced inode is gone')
  t.deepEqual(txn.names(ROOT_ID), ['dst'])
  t.is(ns.get('/').children, 1)
  checkTree(t, txn)
})

test('rename a directory with contents over an empty directory', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/a/src/sub', 0o755, true, CALLER)
  writeFile(ns, '/a/src/f', [1])
  const src = ns.get('/a/src')
  const dst = ns.mkdirs('/b/dst', 0o755, true, CALLER)
  t.deepEqual(ns.rename('/a/src', '/b/dst', true, LATER).blocks, [])
  t.is(ns.get('/b/dst').id, src.id)
  t.is(ns.get('/b/dst').parentId, ns.get('/b').id)
  t.is(ns.get('/b/dst/f').lengthBytes, 1)
  t.is(ns.get('/b/dst/sub').parentId, src.id)
  t.is(txn.inode(dst.id), undefined, 'the empty directory it replaced is gone')
  t.is(ns.get('/a').nlink, 2)
  t.is(ns.get('/a').children, 0)
  t.is(ns.get('/b').nlink, 3)
  t.is(ns.get('/b').children, 1)
  checkTree(t, txn)
})

test('rename a directory within its parent keeps the parent counts', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/p/x', 0o755, true, CALLER)
  ns.mkdirs('/p/y', 0o755, true, CALLER)
  ns.rename('/p/x', '/p/z', false, CALLER)
  t.is(ns.get('/p').children, 2)
  t.is(ns.get('/p').nlink, 4)
  t.deepEqual(txn.names(ns.get('/p').id), ['y', 'z'])
  ns.rename('/p/z', '/p/y', true, CALLER)
  t.is(ns.get('/p').children, 1)
  t.is(ns.get('/p').nlink, 3)
  checkTree(t, txn)
})

test('rename a directory up into an ancestor', (t) => {
  const { txn, ns } = fresh()
  const c = ns.mkdirs('/a/b/c', 0o755, true, CALLER)
  ns.rename('/a/b/c', '/a/c', false, CALLER)
  t.is(ns.get('/a/c').id, c.id)
  t.is(ns.get('/a/c').parentId, ns.get('/a').id)
  checkTree(t, txn)
})

test('rename to itself is a no-op', (t) => {
  const env = fresh()
  env.ns.mkdirs('/d', 0o755, false, CALLER)
  writeFile(env.ns, '/d/f', [3])
  const before = env.txn.snapshot()
  const writes = env.txn.writes
  for (const [src, dst] of [['/d/f', '/d/f'], ['/d', '/d'], ['/d/f', '//d//f/'], ['/d', '/d/']]) {
    t.deepEqual(env.ns.rename(src!, dst!, false, LATER).blocks, [], `${src} -> ${dst}`)
    t.deepEqual(env.ns.rename(src!, dst!, true, LATER).blocks, [], `${src} -> ${dst} with overwrite`)
  }
  t.is(env.txn.writes, writes)
  t.is(env.txn.snapshot(), before)
})

failCases('rename refuses', [
  {
    name: 'a directory over a non-empty directory',
    setup: (ns) => {
      ns.mkdirs('/src', 0o755, false, CALLER)
      ns.mkdirs('/dst/x', 0o755, true, CALLER)
    },
    run: (ns) => ns.rename('/src', '/dst', true, CALLER),
    code: 'not-empty',
  },
  {
    name: 'a directory over a directory holding only a file',
    setup: (ns) => {
      ns.mkdirs('/src', 0o755, false, CALLER)
      ns.mkdirs('/dst', 0o755, false, CALLER)
      writeFile(ns, '/dst/f')
    },
    run: (ns) => ns.rename('/src', '/dst', true, CALLER),
    code: 'not-empty',
  },
  {
    name: 'a file over a directory',
    setup: (ns) => {
      writeFile(ns, '/f', [1])
      ns.mkdirs('/d', 0o755, false, CALLER)
    },
    run: (ns) => ns.rename('/f', '/d', true, CALLER),
    code: 'is-a-directory',
  },
  {
    name: 'a directory over a file',
    setup: (ns) => {
      ns.mkdirs('/d', 0o755, false, CALLER)
      writeFile(ns, '/f', [1])
    },
    run: (ns) => ns.rename('/d', '/f', true, CALLER),
    code: 'not-a-directory',
  },
  {
    name: 'over an existing file without overwrite',
    setup: (ns) => {
      writeFile(ns, '/a', [1])
      writeFile(ns, '/b', [2])
    },
    run: (ns) => ns.rename('/a', '/b', false, CALLER),
    code: 'exists',
  },
  {
    name: 'a directory into its own child',
    setup: (ns) => ns.mkdirs('/a', 0o755, false, CALLER),
    run: (ns) => ns.rename('/a', '/a/b', false, CALLER),
    code: 'invalid-argument',
  },
  {
    name: 'a directory deep into its own subtree',
    setup: (ns) => ns.mkdirs('/a/b/c', 0o755, true, CALLER),
    run: (ns) => ns.rename('/a', '/a/b/c/d', false, CALLER),
    code: 'invalid-argument',
  },
  {
    name: 'a directory over its own (empty) descendant',
    setup: (ns) => ns.mkdirs('/a/b', 0o755, true, CALLER),
    run: (ns) => ns.rename('/a', '/a/b', true, CALLER),
    code: 'invalid-argument',
  },
  { name: 'a missing source', run: (ns) => ns.rename('/nope', '/x', false, CALLER), code: 'not-found' },
  { name: 'into a missing directory', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.rename('/f', '/no/f', false, CALLER), code: 'not-found' },
  { name: 'below a file', setup: (ns) => { writeFile(ns, '/f'); writeFile(ns, '/g') }, run: (ns) => ns.rename('/g', '/f/g', false, CALLER), code: 'not-a-directory' },
  { name: 'the root', run: (ns) => ns.rename('/', '/x', false, CALLER), code: 'invalid-argument' },
  { name: 'over the root', setup: (ns) => ns.mkdirs('/d', 0o755, false, CALLER), run: (ns) => ns.rename('/d', '/', true, CALLER), code: 'exists' },
])

test('a directory moved next to (not into) a directory whose name it prefixes is fine', (t) => {
  // /a -> /ab/x is not a move into /a's own subtree.
  const { txn, ns } = fresh()
  const a = ns.mkdirs('/a', 0o755, false, CALLER)
  ns.mkdirs('/ab', 0o755, false, CALLER)
  ns.rename('/a', '/ab/x', false, CALLER)
  t.is(ns.get('/ab/x').id, a.id)
  checkTree(t, txn)
})

// ---------------------------------------------------------------- delete

test('delete a file frees its blocks', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/d', 0o755, false, CALLER)
  const f = writeFile(ns, '/d/f', [BLOCK, BLOCK, 1])
  const freed = ns.delete('/d/f', false, LATER)
  t.deepEqual(freed.blocks.map((b) => b.id), f.blocks.map((b) => b.id))
  t.is(txn.inode(f.id), undefined)
  t.is(ns.get('/d').children, 0)
  t.is(ns.get('/d').mtimeMs, LATER.nowMs)
  t.deepEqual(txn.collected, [])
  checkTree(t, txn)
})

test('delete an empty directory', (t) => {
  const { txn, ns } = fresh()
  const d = ns.mkdirs('/p/d', 0o755, true, CALLER)
  t.deepEqual(ns.delete('/p/d', false, CALLER).blocks, [])
  t.is(txn.inode(d.id), undefined)
  t.is(ns.get('/p').nlink, 2)
  t.is(ns.get('/p').children, 0)
  t.deepEqual(txn.collected, [])
  checkTree(t, txn)
})

test('delete recursive hands a non-empty directory to the collector', (t) => {
  const { txn, ns } = fresh()
  ns.mkdirs('/d/sub', 0o755, true, CALLER)
  writeFile(ns, '/d/f', [1])
  writeFile(ns, '/d/sub/g', [2])
  const d = ns.get('/d')
  const freed = ns.delete('/d', true, CALLER)
  t.deepEqual(freed.blocks, [], 'blocks below are freed by the collector, not here')
  t.deepEqual(txn.collected, [d.id])
  t.is(codeOf(() => ns.get('/d')), 'not-found')
  t.is(codeOf(() => ns.get('/d/f')), 'not-found')
  t.is(ns.get('/').children, 0)
  t.is(ns.get('/').nlink, 2)
  checkTree(t, txn)
})

test('delete recursive of an empty directory or a file is the same as without', (t) => {
  const { txn, ns } = fresh()
  const d = ns.mkdirs('/d', 0o755, false, CALLER)
  const f = writeFile(ns, '/f', [4])
  t.deepEqual(ns.delete('/d', true, CALLER).blocks, [])
  t.is(txn.inode(d.id), undefined)
  t.deepEqual(ns.delete('/f', true, CALLER).blocks.map((b) => b.id), f.blocks.map((b) => b.id))
  t.deepEqual(txn.collected, [])
  checkTree(t, txn)
})

failCases('delete refuses', [
  {
    name: 'a non-empty directory without recursive',
    setup: (ns) => {
      ns.mkdirs('/d', 0o755, false, CALLER)
      writeFile(ns, '/d/f')
    },
    run: (ns) => ns.delete('/d', false, CALLER),
    code: 'not-empty',
  },
  { name: 'a missing file', run: (ns) => ns.delete('/nope', true, CALLER), code: 'not-found' },
  { name: 'below a missing directory', run: (ns) => ns.delete('/no/f', true, CALLER), code: 'not-found' },
  { name: 'the root', run: (ns) => ns.delete('/', true, CALLER), code: 'invalid-argument' },
])

// ---------------------------------------------------------------- replication and block size

test('setReplication accepts 1..512 on files', (t) => {
  const { ns } = fresh()
  writeFile(ns, '/f')
  t.is(ns.setReplication('/f', 1).replication, 1)
  t.is(ns.setReplication('/f', 512).replication, 512)
  t.is(ns.get('/f').replication, 512)
})

failCases('setReplication refuses', [
  { name: '0', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.setReplication('/f', 0), code: 'invalid-argument' },
  { name: '513', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.setReplication('/f', 513), code: 'invalid-argument' },
  { name: '-1', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.setReplication('/f', -1), code: 'invalid-argument' },
  { name: '2.5', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.setReplication('/f', 2.5), code: 'invalid-argument' },
  { name: 'NaN', setup: (ns) => writeFile(ns, '/f'), run: (ns) => ns.setReplication('/f', Number.NaN), code: 'invalid-argument' },
  { name: 'a directory', setup: (ns) => ns.mkdirs('/d', 0o755, false, CALLER), run: (ns) => ns.setReplication('/d', 2), code: 'is-a-directory' },
  { name: 'a missing file', run: (ns) => ns.setReplication('/nope', 2), code: 'not-found' },
])

test('checkReplication bounds', (t) => {
  for (const ok of [1, 3, 512]) t.notThrows(() => checkReplication(ok), String(ok))
  for (const bad of [0, 513, -3, 1.5, Number.POSITIVE_INFINITY]) t.is(codeOf(() => checkReplication(bad)), 'invalid-argument', String(bad))
})

test('checkBlockSize takes multiples of 64 KiB from 64 KiB to 2 GiB', (t) => {
  for (const ok of [64 * KiB, 128 * KiB, 64 * MiB, 2 * 1024 * MiB]) t.notThrows(() => checkBlockSize(ok), String(ok))
  const bad = [0, -64 * KiB, 1, 32 * KiB, 64 * KiB + 1, 100_000, 64 * MiB - 1, 64 * MiB + 512, 2 * 1024 * MiB + 64 * KiB, 64 * KiB + 0.5]
  for (const b of bad) t.is(codeOf(() => checkBlockSize(b)), 'invalid-argument', String(b))
})

// ---------------------------------------------------------------- writes at any offset (the mount)

test('openForWrite takes the lease of a closed file; another client is refused while it holds it', (t) => {
  const env = fresh()
  const { ns } = env
  writeFile(ns, '/f', [BLOCK, 10])
  t.is(ns.openForWrite('/f', 'm1').leaseHolder, 'm1')
  t.is(ns.openForWrite('/f', 'm1').leaseHolder, 'm1', 'the holder may open again')
  refuses(t, env, () => ns.openForWrite('/f', 'm2'), 'lease')
  refuses(t, env, () => ns.openForWrite('/', 'm2'), 'is-a-directory')
  refuses(t, env, () => ns.openForWrite('/missing', 'm2'), 'not-found')
  refuses(t, env, () => ns.openForWrite('/f', ''), 'invalid-argument')
})

test('updateBlock gives a block a new generation and marks it updating; commitBlocks records lengths and close clears both', (t) => {
  const env = fresh()
  const { ns, txn } = env
  const rec = writeFile(ns, '/f', [BLOCK, 10])
  ns.openForWrite('/f', 'm1')
  const [b0, b1] = rec.blocks
  const u = ns.updateBlock('/f', rec.id, 'm1', b1!.id)
  t.true(u.block.genStamp > b1!.genStamp)
  t.is(u.block.lengthBytes, 10, 'an update keeps the committed length')
  t.false(u.wasUpdating)
  t.true(ns.updateBlock('/f', rec.id, 'm1', b1!.id).wasUpdating, 'a second update (a failed pipeline) continues it')
  refuses(t, env, () => ns.updateBlock('/f', rec.id, 'm2', b1!.id), 'lease')
  refuses(t, env, () => ns.updateBlock('/f', rec.id, 'm1', 999), 'invalid-argument')
  const current = ns.get('/f').blocks[1]!
  refuses(t, env, () => ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [{ ...current, genStamp: current.genStamp - 1 }], truncate: false, blockCount: 0, close: false, mtimeMs: 0 }, LATER), 'stale-generation')
  const fsynced = ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [{ ...current, lengthBytes: 500 }], truncate: false, blockCount: 0, close: false, mtimeMs: 0 }, LATER)
  t.is(fsynced.inode.lengthBytes, BLOCK + 500)
  t.deepEqual(fsynced.finished, [], 'fsync keeps the block updating')
  t.deepEqual(ns.get('/f').updatingBlocks, [b1!.id])
  t.is(ns.get('/f').mtimeMs, LATER.nowMs)
  const closed = ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [], truncate: false, blockCount: 0, close: true, mtimeMs: 0 }, { ...LATER, nowMs: 9_000 })
  t.deepEqual(closed.finished, [b1!.id])
  const after = ns.get('/f')
  t.is(after.leaseHolder, '')
  t.deepEqual(after.updatingBlocks, [])
  t.is(after.mtimeMs, LATER.nowMs, 'a close without changes keeps the mtime (set by utimens in between, say)')
  t.is(after.blocks[0]!.id, b0!.id)
  checkTree(t, txn)
})

test('commitBlocks with truncate drops the blocks past the cut and frees them; a short block before the last is refused', (t) => {
  const env = fresh()
  const { ns } = env
  const rec = writeFile(ns, '/f', [BLOCK, BLOCK, 7])
  ns.openForWrite('/f', 'm1')
  const [b0, b1] = rec.blocks
  refuses(t, env, () => ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [{ ...b0!, lengthBytes: 5 }], truncate: false, blockCount: 0, close: false, mtimeMs: 0 }, LATER), 'invalid-argument')
  refuses(t, env, () => ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [], truncate: true, blockCount: 4, close: false, mtimeMs: 0 }, LATER), 'invalid-argument')
  const cut = ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [{ ...b1!, lengthBytes: 100 }], truncate: true, blockCount: 2, close: true, mtimeMs: 0 }, LATER)
  t.is(cut.inode.lengthBytes, BLOCK + 100)
  t.deepEqual(cut.freed.blocks.map((b) => b.id), [rec.blocks[2]!.id])
  const empty = (() => {
    ns.openForWrite('/f', 'm1')
    return ns.commitBlocks({ path: '/f', inodeId: rec.id, clientName: 'm1', blocks: [], truncate: true, blockCount: 0, close: true, mtimeMs: 0 }, LATER)
  })()
  t.is(empty.inode.lengthBytes, 0)
  t.deepEqual(empty.freed.blocks.map((b) => b.id), [b0!.id, b1!.id])
})

test('addUpdatingBlock appends a block that recovery treats as updated in place', (t) => {
  const { ns } = fresh()
  const { inode } = ns.create('/f', createOpts('m1'), DEFAULTS, CALLER, neverExpired)
  const { block } = ns.addUpdatingBlock('/f', inode.id, 'm1')
  t.deepEqual(ns.get('/f').updatingBlocks, [block.id])
  const done = ns.finishLeaseRecovery(inode.id, { ...block, genStamp: block.genStamp + 1, lengthBytes: 42 }, LATER.nowMs)
  t.is(done.inode.lengthBytes, 42)
  t.deepEqual(done.inode.updatingBlocks, [])
})

test('link adds a name and counts it; symlink stores its target; both refuse an existing name', (t) => {
  const env = fresh()
  const { ns, txn } = env
  writeFile(ns, '/f', [10])
  ns.mkdirs('/d', 0o755, false, CALLER)
  t.is(ns.link('/f', '/d/g', LATER).nlink, 2)
  t.is(ns.get('/d/g').id, ns.get('/f').id)
  refuses(t, env, () => ns.link('/f', '/d/g', LATER), 'exists')
  refuses(t, env, () => ns.link('/d', '/e', LATER), 'is-a-directory')
  t.deepEqual(ns.delete('/f', false, LATER).blocks, [], 'one name gone: the blocks stay')
  t.is(ns.get('/d/g').nlink, 1)
  const s = ns.symlink('../d/g', '/s', CALLER)
  t.is(s.type, InodeType.SYMLINK)
  t.is(ns.get('/s').symlinkTarget, '../d/g')
  refuses(t, env, () => ns.symlink('x', '/s', CALLER), 'exists')
  refuses(t, env, () => ns.symlink('', '/t', CALLER), 'invalid-argument')
  checkTree(t, txn)
})

test('xattrs: set, replace, create-only, remove, and their limits', (t) => {
  const env = fresh()
  const { ns } = env
  writeFile(ns, '/f')
  ns.setXattr('/f', 'user.a', Buffer.from('1'), { create: false, replace: false }, CALLER)
  t.deepEqual(Buffer.from(ns.get('/f').xattrs['user.a']!).toString(), '1')
  refuses(t, env, () => ns.setXattr('/f', 'user.a', Buffer.from('2'), { create: true, replace: false }, CALLER), 'exists')
  refuses(t, env, () => ns.setXattr('/f', 'user.b', Buffer.from('2'), { create: false, replace: true }, CALLER), 'no-xattr')
  refuses(t, env, () => ns.setXattr('/f', '', Buffer.from('2'), { create: false, replace: false }, CALLER), 'invalid-argument')
  refuses(t, env, () => ns.setXattr('/f', 'user.big', Buffer.alloc(XATTR_VALUE_BYTES_MAX + 1), { create: false, replace: false }, CALLER), 'invalid-argument')
  ns.setXattr('/f', 'user.a', Buffer.from('3'), { create: false, replace: true }, CALLER)
  t.is(Buffer.from(ns.get('/f').xattrs['user.a']!).toString(), '3')
  ns.removeXattr('/f', 'user.a', CALLER)
  t.deepEqual(Object.keys(ns.get('/f').xattrs), [])
  refuses(t, env, () => ns.removeXattr('/f', 'user.a', CALLER), 'no-xattr')
  // A name a plain object cannot hold as an entry is refused, not silently lost.
  refuses(t, env, () => ns.setXattr('/f', '__proto__', Buffer.from('4'), { create: false, replace: false }, CALLER), 'invalid-argument')
  t.deepEqual(Object.keys(ns.get('/f').xattrs), [])
})

// ---------------------------------------------------------------- volumes

const VOL = { name: 'vol', sizeBytes: 10 * BLOCK, replication: 2, blockSizeBytes: BLOCK }

test('createVolume makes /volumes/NAME owned by the caller and a record; names and sizes are checked', (t) => {
  const env = fresh()
  const { ns, txn } = env
  const vol = ns.createVolume(VOL, DEFAULTS, 100 * BLOCK, CALLER)
  t.is(vol.rootId, ns.get('/volumes/vol').id)
  t.is(ns.get('/volumes/vol').volume, 'vol')
  t.is(ns.get('/volumes/vol').owner, 'alice')
  t.is(vol.epoch, 0)
  refuses(t, env, () => ns.createVolume(VOL, DEFAULTS, 100 * BLOCK, CALLER), 'exists')
  refuses(t, env, () => ns.createVolume({ ...VOL, name: 'Nope' }, DEFAULTS, 100 * BLOCK, CALLER), 'invalid-argument')
  refuses(t, env, () => ns.createVolume({ ...VOL, name: 'big', sizeBytes: 101 * BLOCK }, DEFAULTS, 100 * BLOCK, CALLER), 'no-space')
  refuses(t, env, () => ns.createVolume({ ...VOL, name: 'none', sizeBytes: 0 }, DEFAULTS, 100 * BLOCK, CALLER), 'invalid-argument')
  checkTree(t, txn)
})

test('a file in a volume takes its replication and is charged to it: the size fits, one byte more is refused', (t) => {
  const env = fresh()
  const { ns } = env
  ns.createVolume(VOL, DEFAULTS, 100 * BLOCK, CALLER)
  const { inode } = ns.create('/volumes/vol/f', createOpts('m1'), DEFAULTS, CALLER, neverExpired)
  t.is(inode.replication, 2)
  t.is(inode.volume, 'vol')
  const blocks: BlockRef[] = []
  for (let i = 0; i < 10; i++) blocks.push(ns.addUpdatingBlock('/volumes/vol/f', inode.id, 'm1').block)
  const commit = (lengths: number[]) => ns.commitBlocks({ path: '/volumes/vol/f', inodeId: inode.id, clientName: 'm1', blocks: blocks.map((b, i) => ({ ...b, lengthBytes: lengths[i] ?? 0 })), truncate: false, blockCount: 0, close: false, mtimeMs: 0 }, LATER)
  commit(Array(10).fill(BLOCK))
  t.is(ns.volume('vol').usedBytes, 10 * BLOCK)
  const { inode: g } = ns.create('/volumes/vol/g', createOpts('m1'), DEFAULTS, CALLER, neverExpired)
  const gb = ns.addUpdatingBlock('/volumes/vol/g', g.id, 'm1').block
  refuses(t, env, () => ns.commitBlocks({ path: '/volumes/vol/g', inodeId: g.id, clientName: 'm1', blocks: [{ ...gb, lengthBytes: 1 }], truncate: false, blockCount: 0, close: false, mtimeMs: 0 }, LATER), 'quota')
  ns.delete('/volumes/vol/f', false, LATER)
  t.is(ns.volume('vol').usedBytes, 0, 'removing a file gives its bytes back')
})

test('an attached volume takes changes only under its epoch; renames and links cannot cross its boundary', (t) => {
  const env = fresh()
  const { txn } = env
  const admin = new Namespace(txn, CALLER)
  admin.createVolume(VOL, DEFAULTS, 100 * BLOCK, CALLER)
  admin.mkdirs('/outside', 0o755, false, CALLER)
  writeFile(admin, '/outside/x', [10])
  const attached = admin.attachVolume('vol', 'dn1', { force: false, holderAlive: false })
  t.is(attached.epoch, 1)
  refuses(t, env, () => admin.attachVolume('vol', 'dn2', { force: false, holderAlive: true }), 'lease')
  refuses(t, env, () => admin.attachVolume('vol', 'dn2', { force: true, holderAlive: true }), 'lease')
  const holder = { ...CALLER, epoch: 1 }
  admin.mkdirs('/volumes/vol/d', 0o755, false, holder)
  refuses(t, env, () => admin.mkdirs('/volumes/vol/e', 0o755, false, CALLER), 'stale-epoch')
  refuses(t, env, () => admin.mkdirs('/volumes/vol/e', 0o755, false, { ...CALLER, epoch: 7 }), 'stale-epoch')
  refuses(t, env, () => admin.rename('/outside/x', '/volumes/vol/x', true, holder), 'cross-volume')
  refuses(t, env, () => admin.link('/outside/x', '/volumes/vol/x', holder), 'cross-volume')
  refuses(t, env, () => admin.delete('/volumes/vol', true, holder), 'invalid-argument')
  const taken = admin.attachVolume('vol', 'dn2', { force: true, holderAlive: false })
  t.is(taken.epoch, 2)
  refuses(t, env, () => admin.mkdirs('/volumes/vol/e', 0o755, false, holder), 'stale-epoch')
  admin.mkdirs('/volumes/vol/e', 0o755, false, { ...CALLER, epoch: 2 })
  // Detached, the volume takes writes outside any attachment (the CLI's), not from the holder whose attachment ended.
  admin.detachVolume('vol')
  refuses(t, env, () => admin.mkdirs('/volumes/vol/f', 0o755, false, { ...CALLER, epoch: 2 }), 'stale-epoch')
  admin.mkdirs('/volumes/vol/f', 0o755, false, CALLER)
  t.is(admin.attachVolume('vol', 'dn2', { force: false, holderAlive: true }).epoch, 3, 'attaching again, even to the same node, is a new epoch')
  refuses(t, env, () => admin.deleteVolume('vol', false, CALLER), 'lease')
  t.deepEqual(admin.deleteVolume('vol', true, CALLER).blocks, [])
  t.is(txn.volume('vol'), undefined)
})

/** Every directory below rootId with its entries, as the namenode reads it before a snapshot. */
function treeOf(txn: MemTxn, rootId: number): Map<number, Array<[string, number]>> {
  const tree = new Map<number, Array<[string, number]>>()
  const walk = (dir: number): void => {
    const entries = [...(txn.entries.get(dir) ?? new Map<string, number>()).entries()]
    tree.set(dir, entries)
    for (const [, id] of entries) if (txn.inodes.get(id)?.type === InodeType.DIRECTORY) walk(id)
  }
  walk(rootId)
  return tree
}

test('a snapshot copies the tree read-only, naming the same blocks; copyOnWrite gives the live file a new block; restore makes a volume', (t) => {
  const env = fresh()
  const { ns, txn } = env
  const vol = ns.createVolume(VOL, DEFAULTS, 100 * BLOCK, CALLER)
  ns.mkdirs('/volumes/vol/d', 0o755, false, CALLER)
  const f = writeFile(ns, '/volumes/vol/d/f', [BLOCK, 10])
  ns.link('/volumes/vol/d/f', '/volumes/vol/g', CALLER)
  const { snapshot, blocks } = ns.snapshotVolume('vol', 's1', treeOf(txn, vol.rootId), LATER)
  t.deepEqual(blocks.map((b) => b.id), f.blocks.map((b) => b.id), 'the hard-linked file is copied once')
  t.is(snapshot.usedBytes, BLOCK + 10)
  const copy = ns.get('/.snapshots/vol/s1/d/f')
  t.true(copy.readOnly)
  t.is(copy.nlink, 2)
  t.is(ns.get('/.snapshots/vol/s1/g').id, copy.id)
  t.deepEqual(copy.blocks, f.blocks)
  refuses(t, env, () => ns.create('/.snapshots/vol/s1/new', createOpts('c'), DEFAULTS, CALLER, neverExpired), 'read-only')
  refuses(t, env, () => ns.delete('/.snapshots/vol/s1/g', false, CALLER), 'read-only')
  refuses(t, env, () => ns.setPermission('/.snapshots/vol/s1/g', 0o777, CALLER), 'read-only')
  // The snapshot trees belong to the volume records: not removed, moved or replaced by hand, not even from the top.
  ns.mkdirs('/empty', 0o755, false, CALLER)
  for (const p of ['/.snapshots', '/.snapshots/vol', '/.snapshots/vol/s1']) {
    refuses(t, env, () => ns.delete(p, true, CALLER), 'read-only')
    refuses(t, env, () => ns.rename(p, '/moved', false, CALLER), 'read-only')
    refuses(t, env, () => ns.rename('/empty', p, true, CALLER), 'read-only')
  }
  refuses(t, env, () => ns.snapshotVolume('vol', 's1', treeOf(txn, vol.rootId), LATER), 'exists')
  checkTree(t, txn)

  ns.openForWrite('/volumes/vol/d/f', 'm1')
  const cow = ns.copyOnWrite('/volumes/vol/d/f', f.id, 'm1', f.blocks[1]!.id)
  t.not(cow.block.id, f.blocks[1]!.id)
  t.is(cow.block.lengthBytes, 10)
  t.deepEqual(ns.get('/volumes/vol/d/f').blocks.map((b) => b.id), [f.blocks[0]!.id, cow.block.id])
  t.deepEqual(ns.get('/.snapshots/vol/s1/d/f').blocks.map((b) => b.id), f.blocks.map((b) => b.id), 'the snapshot keeps the old block')
  refuses(t, env, () => ns.snapshotVolume('vol', 's2', treeOf(txn, vol.rootId), LATER), 'lease')
  ns.commitBlocks({ path: '/volumes/vol/d/f', inodeId: f.id, clientName: 'm1', blocks: [], truncate: false, blockCount: 0, close: true, mtimeMs: 0 }, LATER)

  // A restore makes a volume of the source's size: like any new volume, within what the cluster holds.
  refuses(t, env, () => ns.restoreSnapshot({ volume: 'vol', snapshot: 's1', to: 'back' }, treeOf(txn, snapshot.rootId), DEFAULTS, VOL.sizeBytes - 1, LATER), 'no-space')
  const restored = ns.restoreSnapshot({ volume: 'vol', snapshot: 's1', to: 'back' }, treeOf(txn, snapshot.rootId), DEFAULTS, 100 * BLOCK, LATER)
  t.is(restored.volume.usedBytes, BLOCK + 10)
  const back = ns.get('/volumes/back/d/f')
  t.false(back.readOnly)
  t.is(back.volume, 'back')
  t.deepEqual(back.blocks.map((b) => b.id), f.blocks.map((b) => b.id))
  const freed = ns.deleteSnapshot('vol', 's1', LATER)
  t.deepEqual(freed.blocks, [], 'a snapshot with contents goes to the collector')
  t.deepEqual(ns.volume('vol').snapshots, [])
  checkTree(t, txn)
})
