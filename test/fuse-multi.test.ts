// Two mounts of one cluster, standing in for two machines: close-to-open
// consistency between them, one writer at a time (EBUSY), and permissions
// checked for a user who is not root. Programs run in child processes, as root
// or as nobody (runuser).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { Cleanups, KiB, localTempDir, MiB, pattern, sha256 } from './helpers/data.js'
import { mountCluster, PY_ERRNO, python, sh, type TestMount } from './helpers/mount.js'

const cleanups = new Cleanups()
let c: TestCluster
let a: TestMount
let b: TestMount

test.before(async () => {
  c = await startCluster(cleanups)
  a = await mountCluster(cleanups, c)
  b = await mountCluster(cleanups, c)
})

test.after.always(async () => {
  await cleanups.run()
})

async function py<T = Record<string, unknown>>(program: string, args: string[], user?: string): Promise<T> {
  return JSON.parse(await python(`${PY_ERRNO}\nimport json\n${program}`, args, { user })) as T
}

/** Size (fstat after open) and sha256 of a file, as a program that opens and reads it sees them. */
async function shaOf(file: string): Promise<string> {
  return (await python(`import hashlib, os, sys\nwith open(sys.argv[1], 'rb') as f: print(os.fstat(f.fileno()).st_size, hashlib.sha256(f.read()).hexdigest())`, [file])).trim()
}

async function put(remote: string, data: Buffer): Promise<void> {
  const r = await c.loam(['fs', 'put', '-', remote], { input: data })
  if (r.code !== 0) throw new Error(`loam fs put ${remote}: ${r.stderr}`)
}

test.serial('close-to-open: what mount A wrote and closed, mount B reads whole at its next open, also right after B looked at the old version', async (t) => {
  const local = await localTempDir(t)
  await sh(`mkdir '${a.dir}/cto'`)
  const fresh = pattern(MiB + 12_345, 71)
  await writeFile(path.join(local, 'fresh'), fresh)
  await sh(`cat '${local}/fresh' > '${a.dir}/cto/fresh'`)
  t.is(await shaOf(`${b.dir}/cto/fresh`), `${fresh.length} ${sha256(fresh)}`, 'a new file written in A')

  // B reads and stats the old version (its caches hold it), then A replaces the contents.
  const cases: Array<[string, number]> = [['bigger', 300 * KiB], ['same-size', 100 * KiB], ['smaller', 1000]]
  for (const [i, [name, size]] of cases.entries()) {
    const old = pattern(100 * KiB, 80 + i)
    await put(`/cto/${name}`, old)
    t.is(await shaOf(`${b.dir}/cto/${name}`), `${old.length} ${sha256(old)}`, `${name}: B reads the old version`)
    t.is((await sh(`stat -c %s '${b.dir}/cto/${name}'`)).stdout.trim(), String(old.length), `${name}: and stats it once more`)
    const next = pattern(size, 90 + i)
    await writeFile(path.join(local, name), next)
    await sh(`cat '${local}/${name}' > '${a.dir}/cto/${name}'`)
    t.is(await shaOf(`${b.dir}/cto/${name}`), `${next.length} ${sha256(next)}`, `${name}: B reads what A wrote and closed`)
  }
})

/** A python3 child that holds file open O_RDWR until told to close it; stopped by the teardown. */
class Holder {
  private out = ''
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => (this.out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (this.out += d.toString()))
  }

  static async start(t: ExecutionContext, file: string): Promise<Holder> {
    const program = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b'HELD', 0)
os.fsync(fd)
print('open', flush=True)
sys.stdin.readline()
os.close(fd)
print('closed', flush=True)
`
    const h = new Holder(spawn('python3', ['-c', program, file], { stdio: ['pipe', 'pipe', 'pipe'] }))
    t.teardown(() => {
      if (h.child.exitCode === null) h.child.kill('SIGKILL')
    })
    await h.until('open')
    return h
  }

  async close(): Promise<void> {
    this.child.stdin.end('close\n')
    await this.until('closed')
    await new Promise((resolve) => (this.child.exitCode !== null ? resolve(undefined) : this.child.once('exit', resolve)))
  }

  private async until(line: string): Promise<void> {
    for (let i = 0; i < 600; i++) {
      if (this.out.split('\n').includes(line)) return
      if (this.child.exitCode !== null) throw new Error(`the holder exited ${this.child.exitCode}: ${this.out}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`the holder did not say "${line}" in 60 s: ${this.out}`)
  }
}

test.serial('a file open for writing in mount A is EBUSY to writers in mount B, readable meanwhile, and writable once A closed it', async (t) => {
  await sh(`mkdir '${a.dir}/busy'`)
  await put('/busy/f', Buffer.from('original contents\n'))
  const holder = await Holder.start(t, `${a.dir}/busy/f`)
  const whileHeld = await py(
    `
P = sys.argv[1]
print(json.dumps({
  'O_WRONLY': err(os.open, P, os.O_WRONLY),
  'O_RDWR': err(os.open, P, os.O_RDWR),
  'O_APPEND': err(os.open, P, os.O_WRONLY | os.O_APPEND),
  'O_TRUNC': err(os.open, P, os.O_WRONLY | os.O_TRUNC),
  'truncate': err(os.truncate, P, 3),
  'O_RDONLY': err(lambda: os.close(os.open(P, os.O_RDONLY))),
}))
`,
    [`${b.dir}/busy/f`],
  )
  t.deepEqual(whileHeld, { O_WRONLY: 'EBUSY', O_RDWR: 'EBUSY', O_APPEND: 'EBUSY', O_TRUNC: 'EBUSY', truncate: 'EBUSY', O_RDONLY: 'ok' })
  await holder.close()

  // A closed it: B may write now, at once, and sees what A wrote.
  const after = await py(`P = sys.argv[1]\nprint(json.dumps({'append': err(lambda: open(P, 'ab').write(b'from B\\n')), 'contents': open(P).read()}))`, [`${b.dir}/busy/f`])
  t.deepEqual(after, { append: 'ok', contents: 'HELDinal contents\nfrom B\n' })

  // The same at once after a short write in A (one program driving both mounts, as a job on two machines
  // told by a message that A is done): close(2) in A returned, so B may open the file for writing.
  const quick = await py<string[]>(
    `
A, B = sys.argv[1], sys.argv[2]
out = []
for i in range(3):
    with open(A + f'/quick{i}', 'wb') as f: f.write(b'from A\\n')
    out.append(err(lambda: open(B + f'/quick{i}', 'ab').write(b'from B\\n')))
print(json.dumps(out))
`,
    [`${a.dir}/busy`, `${b.dir}/busy`],
  )
  t.deepEqual(quick, ['ok', 'ok', 'ok'], 'B appends at once after A wrote and closed')
  t.is((await sh(`cat '${b.dir}/busy/quick0' '${b.dir}/busy/quick2'`)).stdout, 'from A\nfrom B\n'.repeat(2))
})

test.serial('permissions: nobody reads but cannot write a root 0644 file, cannot read a 0600 one, and creates its own files in a 1777 directory', async (t) => {
  await sh(
    `set -e; cd '${a.dir}' && mkdir perm && cd perm
     echo rootdata > f644 && chmod 644 f644
     echo secret > f600 && chmod 600 f600
     mkdir tmp && chmod 1777 tmp && echo root > tmp/roots
     mkdir closed && chmod 755 closed`,
  )
  const asNobody = await py(
    `
D = sys.argv[1]
def read(p):
    with open(p) as f: return f.read()
def append(p):
    with open(p, 'a') as f: f.write('nobody was here')
def create(p):
    with open(p, 'w') as f: f.write('mine')
out = {
  'read 0644': read(D + '/f644'),
  'write 0644': err(append, D + '/f644'),
  'truncate 0644': err(os.truncate, D + '/f644', 0),
  'read 0600': err(read, D + '/f600'),
  'create in 755 dir': err(create, D + '/closed/x'),
  'mkdir in 755 dir': err(os.mkdir, D + '/closed/d'),
  'chmod root file': err(os.chmod, D + '/f644', 0o666),
  'create in 1777 dir': err(create, D + '/tmp/mine'),
  'mkdir in 1777 dir': err(os.mkdir, D + '/tmp/mydir'),
  'delete root file in 1777 dir': err(os.unlink, D + '/tmp/roots'),
}
st = os.stat(D + '/tmp/mine')
out['owner of created'] = [st.st_uid, st.st_gid, oct(st.st_mode & 0o777)]
out['read back'] = read(D + '/tmp/mine')
out['delete own file'] = err(os.unlink, D + '/tmp/mine')
print(json.dumps(out))
`,
    [`${b.dir}/perm`],
    'nobody',
  )
  const { stdout: nobodyIds } = await sh('id -u nobody && id -g nobody')
  const [uid, gid] = nobodyIds.trim().split('\n').map(Number)
  t.deepEqual(asNobody, {
    'read 0644': 'rootdata\n',
    'write 0644': 'EACCES',
    'truncate 0644': 'EACCES',
    'read 0600': 'EACCES',
    'create in 755 dir': 'EACCES',
    'mkdir in 755 dir': 'EACCES',
    'chmod root file': 'EPERM',
    'create in 1777 dir': 'ok',
    'mkdir in 1777 dir': 'ok',
    'delete root file in 1777 dir': 'EPERM',
    'owner of created': [uid, gid, '0o644'],
    'read back': 'mine',
    'delete own file': 'ok',
  })
  // As root, in the other mount: what nobody made is nobody's; root's files are unchanged.
  t.is((await sh(`stat -c '%U %F' '${a.dir}/perm/tmp/mydir'`)).stdout.trim(), 'nobody directory')
  t.is((await sh(`cat '${a.dir}/perm/f644' '${a.dir}/perm/tmp/roots'`)).stdout, 'rootdata\nroot\n')
})
