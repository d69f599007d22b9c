// POSIX semantics through a real mount, as programs see them: directories,
// rename, unlink and rename while open, hard and symbolic links, ownership and
// modes, times, statfs, extended attributes, errno values, a file written again
// at once after close, stat right after close, and a directory of 10,000
// entries. One cluster and one mount for the file; each test works in a
// directory of its own, and they run one at a time.
import path from 'node:path'
import test from 'ava'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { Cleanups, localTempDir, pattern, reportJson, sha256 } from './helpers/data.js'
import { mountCluster, PY_ERRNO, python, sh, type TestMount } from './helpers/mount.js'

const cleanups = new Cleanups()
let c: TestCluster
let m: TestMount

test.before(async () => {
  c = await startCluster(cleanups)
  m = await mountCluster(cleanups, c)
})

test.after.always(async () => {
  await cleanups.run()
})

/** A new directory in the mount for one test; its path in the mount. */
async function workDir(name: string): Promise<string> {
  const dir = path.join(m.dir, name)
  await sh(`mkdir '${dir}'`)
  return dir
}

/** Runs a python program (PY_ERRNO's err() included) with argv[1..]; parses the JSON it prints. */
async function py<T = Record<string, unknown>>(program: string, ...args: string[]): Promise<T> {
  return JSON.parse(await python(`${PY_ERRNO}\nimport json, subprocess\n${program}`, args)) as T
}

async function loamStat(p: string): Promise<{ nlink: number; owner: string; group: string; mode: string; mtimeMs: number; length: number }> {
  const r = await c.loam(['fs', 'stat', '--json', p])
  if (r.code !== 0) throw new Error(`loam fs stat ${p}: ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as { nlink: number; owner: string; group: string; mode: string; mtimeMs: number; length: number }
}

test.serial('mkdir and rmdir; rename replaces a file atomically and moves a directory with what is in it', async (t) => {
  const dir = await workDir('rename')
  const got = await py(
    `
D = sys.argv[1]
def write(p, data):
    with open(p, 'wb') as f: f.write(data)
def read(p):
    with open(p, 'rb') as f: return f.read()
out = {}
os.mkdir(D + '/d'); os.mkdir(D + '/d/sub'); write(D + '/d/sub/f', b'deep')
out['rmdir non-empty'] = err(os.rmdir, D + '/d')
os.mkdir(D + '/empty')
out['rmdir empty'] = err(os.rmdir, D + '/empty')
out['empty gone'] = err(os.stat, D + '/empty')
write(D + '/target', b'old contents'); write(D + '/new', b'the new contents')
os.rename(D + '/new', D + '/target')
out['target after rename'] = read(D + '/target').decode()
out['source after rename'] = err(os.stat, D + '/new')
os.rename(D + '/d', D + '/moved')
out['moved dir'] = read(D + '/moved/sub/f').decode()
out['old dir'] = err(os.stat, D + '/d')
os.mkdir(D + '/e2'); os.mkdir(D + '/full'); write(D + '/full/x', b'')
out['dir over non-empty dir'] = err(os.rename, D + '/e2', D + '/full')
out['file over dir'] = err(os.rename, D + '/target', D + '/full')
out['dir over file'] = err(os.rename, D + '/e2', D + '/target')
out['dir into itself'] = err(os.rename, D + '/moved', D + '/moved/sub/inside')
os.mkdir(D + '/e3')
out['dir over empty dir'] = err(os.rename, D + '/e2', D + '/e3')
out['listing'] = sorted(os.listdir(D))
print(json.dumps(out))
`,
    dir,
  )
  t.deepEqual(got, {
    'rmdir non-empty': 'ENOTEMPTY',
    'rmdir empty': 'ok',
    'empty gone': 'ENOENT',
    'target after rename': 'the new contents',
    'source after rename': 'ENOENT',
    'moved dir': 'deep',
    'old dir': 'ENOENT',
    'dir over non-empty dir': 'ENOTEMPTY',
    'file over dir': 'EISDIR',
    'dir over file': 'ENOTDIR',
    'dir into itself': 'EINVAL',
    'dir over empty dir': 'ok',
    listing: ['e3', 'full', 'moved', 'target'],
  })

  // Atomic: a reader opening the name while it is replaced 30 times always finds a whole version, never no file.
  const atomic = await py<{ reads: number; missing: number; torn: number; seen: number }>(
    `
D = sys.argv[1]
versions = [f'version {i} '.encode() * (1000 + i) for i in range(31)]
with open(D + '/atomic', 'wb') as f: f.write(versions[0])
reader = subprocess.Popen([sys.executable, '-c', r"""
import json, os, re, sys
D = sys.argv[1]
reads = missing = torn = 0
seen = set()
print('ready', flush=True)
while not os.path.exists(D + '/stop'):
    reads += 1
    try:
        with open(D + '/atomic', 'rb') as f: data = f.read()
    except FileNotFoundError:
        missing += 1
        continue
    m = re.match(rb'version (\\d+) ', data)
    if not m or data != m.group(0) * (1000 + int(m.group(1))): torn += 1
    else: seen.add(m.group(1))
print(json.dumps({'reads': reads, 'missing': missing, 'torn': torn, 'seen': len(seen)}))
""", D], stdout=subprocess.PIPE)
assert reader.stdout.readline() == b'ready\\n'
for i in range(1, 31):
    with open(D + f'/tmp{i}', 'wb') as f: f.write(versions[i])
    os.rename(D + f'/tmp{i}', D + '/atomic')
open(D + '/stop', 'w').close()
out, _ = reader.communicate(timeout=60)
print(out.decode())
`,
    dir,
  )
  t.true(atomic.reads > 0)
  t.is(atomic.missing, 0, 'the name never went missing')
  t.is(atomic.torn, 0, 'every read found one whole version')
  t.is((await sh(`cat '${dir}/atomic'`)).stdout, 'version 30 '.repeat(1030))
})

test.serial('rename over a file another process holds open: the open reader reads the old contents to the end', async (t) => {
  const dir = await workDir('rename-open')
  const old = pattern(3 * 1024 * 1024, 51)
  for (const [name, data] of [['victim', old], ['replacement', Buffer.from('replacement')]] as const) {
    const put = await c.loam(['fs', 'put', '-', `/rename-open/${name}`], { input: data })
    t.is(put.code, 0, put.stderr)
  }
  const got = await py(
    `
import hashlib
D = sys.argv[1]
fd = os.open(D + '/victim', os.O_RDONLY)
first = os.read(fd, 4096)
subprocess.run(['mv', D + '/replacement', D + '/victim'], check=True)
with open(D + '/victim', 'rb') as f: now = f.read().decode()
rest = b''
while True:
    piece = os.read(fd, 1 << 16)
    if not piece: break
    rest += piece
size = os.fstat(fd).st_size
os.close(fd)
print(json.dumps({'now': now, 'held': hashlib.sha256(first + rest).hexdigest(), 'heldBytes': len(first + rest), 'fstat': size}))
`,
    dir,
  )
  t.deepEqual(got, { now: 'replacement', held: sha256(old), heldBytes: old.length, fstat: old.length })
  // The old file is gone once its reader closed it: nothing hidden stays behind.
  await waitFor(async () => (await sh(`ls -A '${dir}'`)).stdout.trim() === 'victim', 10_000, 'the directory to hold only the new victim')
})

test.serial('a file unlinked while a process has it open stays readable and writable by that process, then goes', async (t) => {
  const dir = await workDir('unlink-open')
  const got = await py(
    `
import hashlib
D = sys.argv[1]
a, b = os.urandom(100_000), os.urandom(200_000)
fd = os.open(D + '/doomed', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, a)
subprocess.run(['rm', D + '/doomed'], check=True)
out = {'stat after rm': err(os.stat, D + '/doomed'), 'open after rm': err(os.open, D + '/doomed', os.O_RDONLY)}
os.write(fd, b)
os.fsync(fd)
data = os.pread(fd, 1_000_000, 0)
out['read back'] = data == a + b
out['fstat size'] = os.fstat(fd).st_size
os.ftruncate(fd, 50_000)
out['after ftruncate'] = os.pread(fd, 1_000_000, 0) == a[:50_000]
os.close(fd)
print(json.dumps(out))
`,
    dir,
  )
  t.deepEqual(got, { 'stat after rm': 'ENOENT', 'open after rm': 'ENOENT', 'read back': true, 'fstat size': 300_000, 'after ftruncate': true })
  await waitFor(async () => (await sh(`ls -A '${dir}'`)).stdout.trim() === '', 10_000, 'the unlinked file to be gone from the directory once closed')
  const ls = await c.loam(['fs', 'ls', '/unlink-open'])
  t.is(ls.stdout.toString().trim(), '', `nothing left in the namespace: ${ls.stdout.toString()}`)
})

test.serial('hard links share one inode and its contents; the link count follows ln and rm', async (t) => {
  const dir = await workDir('links')
  const put = await c.loam(['fs', 'put', '-', '/links/a'], { input: Buffer.from('first contents\n') })
  t.is(put.code, 0, put.stderr)
  await sh(`ln '${dir}/a' '${dir}/b'`)
  const [countB, inoB] = (await sh(`stat -c '%h %i' '${dir}/b'`)).stdout.trim().split(' ')
  t.is(countB, '2', 'the new name has 2 links')
  t.is((await loamStat('/links/a')).nlink, 2, 'the namespace counts 2 links')
  const inoA = (await sh(`stat -c '%i' '${dir}/a'`)).stdout.trim()
  t.is(inoA, inoB ?? '', 'both names are the same inode')
  // The kernel may keep the first name's attributes for its attribute timeout (1 s).
  await waitFor(async () => (await sh(`stat -c %h '${dir}/a'`)).stdout.trim() === '2', 10_000, 'the first name to show 2 links')

  await python(`import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\nos.pwrite(fd, b'FIRST', 0)\nos.close(fd)`, [`${dir}/b`])
  t.is((await sh(`cat '${dir}/a'`)).stdout, 'FIRST contents\n', 'a write through one name is read through the other')
  await sh(`rm '${dir}/a'`)
  t.is((await loamStat('/links/b')).nlink, 1, 'one link left in the namespace')
  await waitFor(async () => (await sh(`stat -c %h '${dir}/b'`)).stdout.trim() === '1', 10_000, 'the other name to show 1 link')
  t.is((await sh(`cat '${dir}/b'`)).stdout, 'FIRST contents\n', 'the contents outlive the first name')
  t.is((await sh(`ls '${dir}'`)).stdout, 'b\n')
})

test.serial('symbolic links: readlink gives the target, opening follows it, a dangling one is ENOENT to open', async (t) => {
  const dir = await workDir('symlinks')
  const longTarget = `${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(500)}`
  await sh(
    `cd '${dir}' && echo target-data > file && mkdir sub && echo inner > sub/inner &&
     ln -s file rel && ln -s '${dir}/file' abs && ln -s sub dirlink && ln -s nowhere dangling && ln -s '${longTarget}' long`,
  )
  const got = await py(
    `
D = sys.argv[1]
out = {n: os.readlink(D + '/' + n) for n in ['rel', 'abs', 'dirlink', 'dangling']}
out['long'] = len(os.readlink(D + '/long'))
out['via rel'] = open(D + '/rel').read()
out['via abs'] = open(D + '/abs').read()
out['via dirlink'] = open(D + '/dirlink/inner').read()
out['open dangling'] = err(open, D + '/dangling')
out['lstat is link'] = all(os.path.islink(D + '/' + n) for n in ['rel', 'abs', 'dirlink', 'dangling', 'long'])
out['stat follows'] = os.stat(D + '/rel').st_ino == os.stat(D + '/file').st_ino
out['symlink over existing'] = err(os.symlink, 'x', D + '/rel')
out['readlink of a file'] = err(os.readlink, D + '/file')
print(json.dumps(out))
`,
    dir,
  )
  t.deepEqual(got, {
    rel: 'file',
    abs: `${dir}/file`,
    dirlink: 'sub',
    dangling: 'nowhere',
    long: longTarget.length,
    'via rel': 'target-data\n',
    'via abs': 'target-data\n',
    'via dirlink': 'inner\n',
    'open dangling': 'ENOENT',
    'lstat is link': true,
    'stat follows': true,
    'symlink over existing': 'EEXIST',
    'readlink of a file': 'EINVAL',
  })
})

test.serial('chmod and chown are what stat shows, in the mount and in the namespace', async (t) => {
  const dir = await workDir('owners')
  await sh(`cd '${dir}' && touch f && mkdir d && chmod 640 f && chmod 4755 d && chown nobody:nogroup f && chown 12345:23456 d`)
  t.is((await sh(`stat -c '%a %U %G' '${dir}/f'`)).stdout.trim(), '640 nobody nogroup')
  t.is((await sh(`stat -c '%a %u %g' '${dir}/d'`)).stdout.trim(), '4755 12345 23456', 'numbers without a name stay numbers')
  const st = await loamStat('/owners/f')
  t.deepEqual([st.mode, st.owner, st.group], ['0640', 'nobody', 'nogroup'])
  await sh(`chmod go-r,u+x '${dir}/f' && chown :root '${dir}/f'`)
  t.is((await sh(`stat -c '%a %U %G' '${dir}/f'`)).stdout.trim(), '700 nobody root', 'chmod by symbols; chown of the group only keeps the owner')
})

test.serial('touch -d sets the times stat shows; atime and mtime can be set apart', async (t) => {
  const dir = await workDir('times')
  await sh(`cd '${dir}' && touch f && mkdir d && touch -d '2001-02-03 04:05:06 UTC' f d`)
  t.is((await sh(`stat -c '%Y %X' '${dir}/f'`)).stdout.trim(), '981173106 981173106', 'a file: mtime and atime')
  t.is((await sh(`stat -c '%Y' '${dir}/d'`)).stdout.trim(), '981173106', 'a directory: mtime')
  t.is((await loamStat('/times/f')).mtimeMs, 981173106000, 'the namespace has the mtime')
  await sh(`touch -m -d '2002-01-01 00:00:00 UTC' '${dir}/f'`)
  t.is((await sh(`stat -c '%Y %X' '${dir}/f'`)).stdout.trim(), '1009843200 981173106', 'touch -m changes mtime only')
  await sh(`touch -a -d '2003-01-01 00:00:00 UTC' '${dir}/f'`)
  t.is((await sh(`stat -c '%Y %X' '${dir}/f'`)).stdout.trim(), '1009843200 1041379200', 'touch -a changes atime only')
  const both = await py(`os.utime(sys.argv[1], ns=(1_500_000_000_250_000_000, 1_400_000_000_500_000_000)); s = os.stat(sys.argv[1]); print(json.dumps([str(s.st_atime_ns), str(s.st_mtime_ns)]))`, `${dir}/f`)
  t.deepEqual(both, ['1500000000250000000', '1400000000500000000'], 'utimensat with different atime and mtime, to the millisecond')
})

test.serial('df shows the capacity of the live datanodes (statfs)', async (t) => {
  const report = await reportJson(c)
  const live = report.datanodes.filter((d) => d.state === 'live')
  t.is(live.length, 3)
  const capacity = live.reduce((s, d) => s + d.capacity, 0)
  const [size, avail] = (await sh(`df -B1 --output=size,avail '${m.dir}' | tail -1`)).stdout.trim().split(/\s+/).map(Number)
  t.is(size, Math.floor(capacity / 4096) * 4096, `df size against loam report capacity ${capacity}`)
  t.true(avail! > 0 && avail! <= size!, `available ${avail} of ${size}`)
})

test.serial('extended attributes: set, get, list and remove, binary and long values, create and replace flags', async (t) => {
  const dir = await workDir('xattrs')
  await sh(`touch '${dir}/f'`)
  const values = { 'user.text': Buffer.from('plain value'), 'user.binary': Buffer.from([...Array(256).keys()]), 'user.empty': Buffer.alloc(0), 'user.long': pattern(4000, 61) }
  const set = await py(
    `
P, values = sys.argv[1], json.loads(sys.argv[2])
out = {n: err(os.setxattr, P, n, bytes.fromhex(v)) for n, v in values.items()}
out['create existing'] = err(os.setxattr, P, 'user.text', b'x', os.XATTR_CREATE)
out['replace missing'] = err(os.setxattr, P, 'user.missing', b'x', os.XATTR_REPLACE)
out['replace existing'] = err(os.setxattr, P, 'user.text', b'replaced', os.XATTR_REPLACE)
out['create new'] = err(os.setxattr, P, 'user.created', b'c', os.XATTR_CREATE)
out['dir'] = err(os.setxattr, os.path.dirname(P), 'user.on-dir', b'd')
print(json.dumps(out))
`,
    `${dir}/f`,
    JSON.stringify(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.toString('hex')]))),
  )
  t.deepEqual(set, { 'user.text': 'ok', 'user.binary': 'ok', 'user.empty': 'ok', 'user.long': 'ok', 'create existing': 'EEXIST', 'replace missing': 'ENODATA', 'replace existing': 'ok', 'create new': 'ok', dir: 'ok' })

  // Read back by another process.
  const read = `
P = sys.argv[1]
out = {'list': sorted(os.listxattr(P)), 'values': {n: os.getxattr(P, n).hex() for n in os.listxattr(P)}}
out['dir'] = os.getxattr(os.path.dirname(P), 'user.on-dir').decode()
out['get missing'] = err(os.getxattr, P, 'user.missing')
out['remove'] = err(os.removexattr, P, 'user.text')
out['remove missing'] = err(os.removexattr, P, 'user.missing')
out['after remove'] = sorted(os.listxattr(P))
out['get removed'] = err(os.getxattr, P, 'user.text')
print(json.dumps(out))
`
  const { list, values: got, dir: onDir, ...rest } = await py<{ list: string[]; values: Record<string, string>; dir: string }>(read, `${dir}/f`)
  t.deepEqual(list, ['user.binary', 'user.created', 'user.empty', 'user.long', 'user.text'])
  t.deepEqual(got, {
    'user.binary': values['user.binary'].toString('hex'),
    'user.created': Buffer.from('c').toString('hex'),
    'user.empty': '',
    'user.long': values['user.long'].toString('hex'),
    'user.text': Buffer.from('replaced').toString('hex'),
  })
  t.is(onDir, 'd')
  t.deepEqual(rest, { 'get missing': 'ENODATA', remove: 'ok', 'remove missing': 'ENODATA', 'after remove': ['user.binary', 'user.created', 'user.empty', 'user.long'], 'get removed': 'ENODATA' })
})

test.serial('errno values: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY as a local filesystem gives them', async (t) => {
  const dir = await workDir('errno')
  await sh(`cd '${dir}' && echo x > file && mkdir dir && mkdir full && touch full/x`)
  const program = `
D = sys.argv[1]
print(json.dumps({
  'stat missing': err(os.stat, D + '/missing'),
  'open missing': err(os.open, D + '/missing', os.O_RDONLY),
  'open in missing dir': err(os.open, D + '/missing/f', os.O_WRONLY | os.O_CREAT),
  'rmdir missing': err(os.rmdir, D + '/missing'),
  'unlink missing': err(os.unlink, D + '/missing'),
  'rename missing': err(os.rename, D + '/missing', D + '/other'),
  'readlink missing': err(os.readlink, D + '/missing'),
  'mkdir existing dir': err(os.mkdir, D + '/dir'),
  'mkdir over file': err(os.mkdir, D + '/file'),
  'create exclusive existing': err(os.open, D + '/file', os.O_WRONLY | os.O_CREAT | os.O_EXCL),
  'link onto existing': err(os.link, D + '/file', D + '/dir'),
  'symlink onto existing': err(os.symlink, 'x', D + '/file'),
  'stat under file': err(os.stat, D + '/file/x'),
  'mkdir under file': err(os.mkdir, D + '/file/x'),
  'rmdir file': err(os.rmdir, D + '/file'),
  'listdir file': err(os.listdir, D + '/file'),
  'open dir for writing': err(os.open, D + '/dir', os.O_WRONLY),
  'unlink dir': err(os.unlink, D + '/dir'),
  'rmdir non-empty': err(os.rmdir, D + '/full'),
}))
`
  const local = await localTempDir(t)
  await sh(`cd '${local}' && echo x > file && mkdir dir && mkdir full && touch full/x`)
  const want = await py(program, local)
  t.deepEqual(want, {
    'stat missing': 'ENOENT',
    'open missing': 'ENOENT',
    'open in missing dir': 'ENOENT',
    'rmdir missing': 'ENOENT',
    'unlink missing': 'ENOENT',
    'rename missing': 'ENOENT',
    'readlink missing': 'ENOENT',
    'mkdir existing dir': 'EEXIST',
    'mkdir over file': 'EEXIST',
    'create exclusive existing': 'EEXIST',
    'link onto existing': 'EEXIST',
    'symlink onto existing': 'EEXIST',
    'stat under file': 'ENOTDIR',
    'mkdir under file': 'ENOTDIR',
    'rmdir file': 'ENOTDIR',
    'listdir file': 'ENOTDIR',
    'open dir for writing': 'EISDIR',
    'unlink dir': 'EISDIR',
    'rmdir non-empty': 'ENOTEMPTY',
  }, 'a local filesystem')
  t.deepEqual(await py(program, dir), want, 'the mount gives the same errno values')
})

test.serial('a file closed and at once opened again for writing in the same mount keeps every write', async (t) => {
  const dir = await workDir('reopen')
  const r = await sh(`cd '${dir}' && for i in 1 2 3 4 5; do echo a > f$i && echo b >> f$i && echo c >> f$i && cat f$i; done`).catch((err: Error) => ({ stdout: '', stderr: err.message }))
  t.is(r.stdout, 'a\nb\nc\n'.repeat(5), `echo > f, echo >> f, echo >> f: ${r.stderr}`)
  const local = await localTempDir(t)
  await sh(`head -c 300000 /dev/urandom > '${local}/big'`)
  const cut = await sh(`cd '${dir}' && for i in 1 2 3; do cp '${local}/big' big$i && truncate -s 1000 big$i && stat -c %s big$i; done`).catch((err: Error) => ({ stdout: '', stderr: err.message }))
  t.is(cut.stdout, '1000\n'.repeat(3), `cp, then truncate -s at once: ${cut.stderr}`)
  const rewrite = await py(
    `
D = sys.argv[1]
out = []
for i in range(5):
    for v in (b'first version', b'second'):
        fd = os.open(D + f'/w{i}', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, v)
        os.close(fd)
    with open(D + f'/w{i}', 'rb') as f: out.append(f.read().decode())
print(json.dumps(out))
`,
    dir,
  ).catch((err: Error) => err.message)
  t.deepEqual(rewrite, Array(5).fill('second'), 'written, closed, opened with O_TRUNC and written again at once')
})

test.serial('what stat shows right after close(2) is what the file keeps: size, mtime and ctime', async (t) => {
  const dir = await workDir('settled')
  // Programs compare stat before and after reading (tar: "file changed as we read it") or across runs (make).
  const seen = await py<Array<[number, string, string]>>(
    `
D = sys.argv[1]
out = []
for i, size in enumerate([0, 1, 100_000, 3_000_000]):
    fd = os.open(D + f'/f{i}', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, os.urandom(size))
    os.close(fd)
    s = os.stat(D + f'/f{i}')
    out.append([s.st_size, str(s.st_mtime_ns), str(s.st_ctime_ns)])
print(json.dumps(out))
`,
    dir,
  )
  // A mount started afterwards has no cache: it shows what the namespace kept.
  const fresh = await mountCluster(t, c)
  const kept = await py<Array<[number, string, string]>>(
    `print(json.dumps([[s.st_size, str(s.st_mtime_ns), str(s.st_ctime_ns)] for s in (os.stat(sys.argv[1] + f'/f{i}') for i in range(4))]))`,
    path.join(fresh.dir, 'settled'),
  )
  t.deepEqual(kept, seen, '[size, mtime, ctime] of each file: right after close in the mount that wrote it, then through a fresh mount')
})

test.serial('a directory of 10,000 entries is listed completely', async (t) => {
  t.timeout(120_000)
  const dir = await workDir('many')
  const N = 10_000
  // Symbolic links: an entry each at one namenode call, the cheapest to make through the mount.
  await python(`import os, sys\nfor i in range(${N}): os.symlink('t', f'{sys.argv[1]}/entry-{i:05d}')`, [dir], { timeoutMs: 110_000 })
  t.is((await sh(`ls '${dir}' | wc -l`)).stdout.trim(), String(N), 'ls | wc -l')
  const names = await py<{ count: number; unique: number; expected: boolean }>(
    `names = os.listdir(sys.argv[1])\nprint(json.dumps({'count': len(names), 'unique': len(set(names)), 'expected': set(names) == {f'entry-{i:05d}' for i in range(${N})}}))`,
    dir,
  )
  t.deepEqual(names, { count: N, unique: N, expected: true }, 'os.listdir: every name once')
  const ls = await c.loam(['fs', 'ls', '/many'])
  t.is(ls.stdout.toString().trim().split('\n').length, N, 'loam fs ls agrees')
})
