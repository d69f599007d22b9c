// Ordinary tools on a real mount: tar packs a tree in and out, git keeps a
// repository there, SQLite a database that outlives the mount. Everything runs
// in child processes (sh, python3, git); the test process only compares.
import { mkdir, symlink, writeFile, chmod } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import { isMounted } from '../src/fuse/mount.js'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { Cleanups, KiB, localTempDir, loamHashed, MiB, pattern, sha256 } from './helpers/data.js'
import { mountCluster, python, sh, shStatus } from './helpers/mount.js'

const cleanups = new Cleanups()
let c: TestCluster

test.before(async () => {
  c = await startCluster(cleanups)
})

test.after.always(async () => {
  await cleanups.run()
})

const TOOL_TIMEOUT_MS = 120_000

/**
 * Every entry under dir as one sorted line each: a directory's mode; a symbolic link's
 * target; a file's mode and size, and its sha256. Made by find and sha256sum in a child process.
 */
async function manifest(dir: string): Promise<string[]> {
  const { stdout } = await sh(
    `cd '${dir}' && {
      find . -mindepth 1 -type d -printf 'd %m %p\\n'
      find . -mindepth 1 -type l -printf 'l %p -> %l\\n'
      find . -mindepth 1 -type f -printf 'f %m %s %p\\n'
      find . -mindepth 1 -type f -exec sha256sum {} + | sed 's/^/h /'
    } | LC_ALL=C sort`,
    { timeoutMs: TOOL_TIMEOUT_MS },
  )
  return stdout.trim().split('\n')
}

test.serial('a tree packed with tar into the mount and out again is identical: every byte, mode and symlink target', async (t) => {
  const m = await mountCluster(t, c)
  const local = await localTempDir(t)
  const src = path.join(local, 'src', 'tree')
  const files: Array<[string, number, number?]> = [
    ['empty', 0],
    ['one', 1],
    ['seventy', 70 * KiB],
    ['io-plus-one', 128 * KiB + 1],
    ['bin/run.sh', 4095, 0o755],
    ['a/b/note', 5000],
    ['a/b/c/d/three', 3 * MiB],
    ['a name with spaces & ünïcödé', 1234, 0o600],
  ]
  for (const [i, [name, size, mode]] of files.entries()) {
    await mkdir(path.dirname(path.join(src, name)), { recursive: true })
    await writeFile(path.join(src, name), pattern(size, 1000 + i))
    if (mode) await chmod(path.join(src, name), mode)
  }
  await mkdir(path.join(src, 'empty-dir'), { recursive: true })
  await mkdir(path.join(src, 'links'))
  await symlink('../one', path.join(src, 'links', 'to-one'))
  await symlink('../a/b', path.join(src, 'links', 'to-dir'))
  await symlink('/etc/hostname', path.join(src, 'links', 'absolute'))
  await symlink('../nowhere', path.join(src, 'links', 'dangling'))
  const want = await manifest(src)
  t.true(want.includes(`f 644 ${3 * MiB} ./a/b/c/d/three`) && want.includes(`h ${sha256(pattern(3 * MiB, 1006))}  ./a/b/c/d/three`), `the local tree is as made: ${want.join('\n')}`)
  t.true(want.includes('l ./links/to-one -> ../one'))

  const packIn = await shStatus(`tar -C '${path.dirname(src)}' -cf - tree | tar -C '${m.dir}' -xf -`, { timeoutMs: TOOL_TIMEOUT_MS })
  t.is(packIn.code, 0, `tar into the mount: ${packIn.stderr}`)
  t.deepEqual(await manifest(path.join(m.dir, 'tree')), want, 'the tree in the mount')

  const out = path.join(local, 'out')
  await mkdir(out)
  const packOut = await shStatus(`tar -C '${m.dir}' -cf - tree | tar -C '${out}' -xf -`, { timeoutMs: TOOL_TIMEOUT_MS })
  t.is(packOut.code, 0, `tar out of the mount (exit 0, nothing "changed as we read it"): ${packOut.stderr}`)
  t.is(packOut.stderr, '', 'tar out of the mount says nothing')
  t.deepEqual(await manifest(path.join(out, 'tree')), want, 'the tree packed out of the mount')
})

test.serial('git init, commits, gc and git fsck --full in the mount; a clone out of it is the same history', async (t) => {
  const m = await mountCluster(t, c)
  const local = await localTempDir(t)
  const repo = path.join(m.dir, 'repo')
  const git = 'git -c user.name=Loam -c user.email=loam@example.com -c init.defaultBranch=main -c gc.auto=0'
  const { stdout } = await sh(
    `set -e
    mkdir '${repo}' && cd '${repo}'
    ${git} init -q
    printf 'one\\n' > README
    mkdir -p src
    seq 1 20000 > src/numbers
    head -c 300000 /dev/zero | tr '\\0' 'z' > src/zeds
    ${git} add -A && ${git} commit -q -m first
    printf 'two\\n' >> README
    mkdir -p src/deep && ${git} mv src/numbers src/deep/numbers
    ${git} commit -q -am second
    ${git} rm -q src/zeds && seq 5 > new.txt && ${git} add -A && ${git} commit -q -m third
    ${git} tag v1
    ${git} gc -q
    ${git} fsck --full --strict
    echo "log: $(${git} log --format=%s | tr '\\n' ' ')"
    echo "status: $(${git} status --porcelain | wc -l)"
    echo "head: $(${git} rev-parse HEAD)"
    echo "readme: $(cat README | tr '\\n' ' ')"`,
    { timeoutMs: TOOL_TIMEOUT_MS },
  )
  const field = (name: string): string => new RegExp(`^${name}: (.*)$`, 'm').exec(stdout)?.[1]?.trim() ?? ''
  t.is(field('log'), 'third second first', stdout)
  t.is(field('status'), '0', 'a clean work tree')
  t.is(field('readme'), 'one two')
  t.regex(field('head'), /^[0-9a-f]{40}$/)

  const clone = path.join(local, 'clone')
  const cloned = await sh(
    `set -e
    git clone -q '${repo}' '${clone}' && cd '${clone}'
    git fsck --full --strict
    echo "head: $(git rev-parse HEAD) $(git rev-parse v1^{commit})"
    echo "numbers: $(sha256sum < src/deep/numbers | cut -d' ' -f1) $(seq 1 20000 | sha256sum | cut -d' ' -f1)"
    echo "files: $(git ls-files | tr '\\n' ' ')"`,
    { timeoutMs: TOOL_TIMEOUT_MS },
  )
  const cfield = (name: string): string => new RegExp(`^${name}: (.*)$`, 'm').exec(cloned.stdout)?.[1]?.trim() ?? ''
  t.is(cfield('head'), `${field('head')} ${field('head')}`, 'the clone has the same HEAD, and the tag')
  const [got, wantNumbers] = cfield('numbers').split(' ')
  t.is(got, wantNumbers, 'a moved file kept its bytes')
  t.is(cfield('files'), 'README new.txt src/deep/numbers')
})

// 10,000 rows in transactions of 100 (each a journal created, synced and deleted); prints what it sees.
const SQLITE_CREATE = `
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('create table t (id integer primary key, name text not null, v blob not null)')
for tx in range(100):
    with db:
        db.executemany('insert into t (name, v) values (?, ?)', [(f'row {tx * 100 + i}', bytes([i]) * (i * 37 % 1000)) for i in range(100)])
db.close()
`
const SQLITE_CHECK = `
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
h = hashlib.sha256()
for row in db.execute('select id, name, v from t order by id'):
    h.update(repr(row).encode())
print(json.dumps({'integrity': db.execute('pragma integrity_check').fetchone()[0], 'rows': db.execute('select count(*) from t').fetchone()[0], 'digest': h.hexdigest()}))
db.close()
`

interface SqliteCheck {
  integrity: string
  rows: number
  digest: string
}

async function checkDb(file: string): Promise<SqliteCheck> {
  return JSON.parse(await python(SQLITE_CHECK, [file])) as SqliteCheck
}

test.serial('an SQLite database of 10,000 rows is intact, and still is after unmount and a new mount', async (t) => {
  const m = await mountCluster(t, c)
  await sh(`mkdir '${m.dir}/sqlite'`)
  const db = path.join(m.dir, 'sqlite', 'test.db')
  await python(SQLITE_CREATE, [db])
  const first = await checkDb(db)
  t.is(first.integrity, 'ok')
  t.is(first.rows, 10_000)

  await m.unmount()
  t.not(m.child.exitCode, null, 'the mount process exited')
  t.false(await isMounted(m.dir), 'nothing is mounted there any more')

  const again = await mountCluster(t, c)
  t.deepEqual(await checkDb(path.join(again.dir, 'sqlite', 'test.db')), first, 'through a new mount: intact, every row, the same contents')
  const { stdout } = await sh(`ls -A '${again.dir}/sqlite'`)
  t.is(stdout.trim(), 'test.db', 'no journal or hidden file left behind')

  // The bytes in the cluster are the database: a copy made with loam fs cat checks out too.
  const local = await localTempDir(t)
  const copy = path.join(local, 'copy.db')
  const cat = await c.loam(['fs', 'cat', '/sqlite/test.db'])
  t.is(cat.code, 0, cat.stderr)
  await writeFile(copy, cat.stdout)
  t.deepEqual(await checkDb(copy), first, 'a copy read with loam fs cat')
  t.is((await loamHashed(c, ['fs', 'cat', '/sqlite/test.db'])).sha256, (await sh(`sha256sum < '${again.dir}/sqlite/test.db'`)).stdout.split(' ')[0] ?? '', 'the mount and loam fs cat give the same bytes')
})
