// native/fuse (Loam's fixed fuse-native) end to end. The filesystem is served by a child
// process (test/helpers/fuse-memfs.ts): the test process only acts on the mount, since a
// process serving a FUSE mount must never make synchronous calls into its own mountpoint.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Fuse from '#fuse-native'
import type { FuseOptions } from '#fuse-native'

const here = path.dirname(fileURLToPath(import.meta.url))
const helper = path.join(here, 'helpers', 'fuse-memfs.js')
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const NOBODY = 65534

interface OpEvent {
  ev: 'op'
  op: string
  path: string
  uid: number
  gid: number
  pid: number
  [key: string]: unknown
}

interface Served {
  mnt: string
  events: OpEvent[]
  waitFor: (pred: (e: OpEvent) => boolean, what: string) => Promise<OpEvent>
  clear: () => void
}

const baseOptions: FuseOptions = {
  allowOther: true,
  defaultPermissions: true,
  bigWrites: true,
  maxWrite: 131072,
  attrTimeout: 0,
  entryTimeout: 0,
  negativeTimeout: 0,
  timeout: false,
  fsname: 'loam-test',
  subtype: 'memfs',
}

function run (cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: env ?? process.env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

async function isMounted (mnt: string): Promise<boolean> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').some((line) => line.split(' ')[4] === mnt)
}

async function mountLine (mnt: string): Promise<string> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8')
  return info.split('\n').find((line) => line.split(' ')[4] === mnt) ?? ''
}

function waitExit (child: ChildProcessWithoutNullStreams, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

// Mounts a fresh memfs in a child process; t.teardown always stops it, unmounts and cleans up.
async function serve (t: ExecutionContext, options: FuseOptions = baseOptions, expectFailure = false): Promise<Served & { child: ChildProcessWithoutNullStreams, failure: Promise<string> }> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'loam-fuse-'))
  await fs.chmod(tmp, 0o755) // so that nobody can reach the mountpoint
  const mnt = path.join(tmp, 'mnt')
  await fs.mkdir(mnt)

  const child = spawn(process.execPath, [helper, mnt, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(async () => {
    if (!(await waitExit(child, 0))) {
      child.kill('SIGTERM')
      if (!(await waitExit(child, 5000))) {
        child.kill('SIGKILL')
        await waitExit(child, 5000)
      }
    }
    if (await isMounted(mnt)) {
      const r = await run('fusermount', ['-uz', mnt])
      if (r.code !== 0) await run('umount', ['-l', mnt])
    }
    // Never recurse into a mount that is somehow still there.
    if (!(await isMounted(mnt))) await fs.rm(tmp, { recursive: true, force: true })
  })

  const events: OpEvent[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let buffered = ''
  let ready: (() => void) | null = null
  let failed: ((msg: string) => void) | null = null
  const readyP = new Promise<void>((resolve) => { ready = resolve })
  const failure = new Promise<string>((resolve) => { failed = resolve })

  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d: string) => { stderr += d })
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => {
    buffered += d
    let nl
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      const msg = JSON.parse(line) as { ev: string, message?: string }
      if (msg.ev === 'ready' && ready) ready()
      else if (msg.ev === 'error' && failed) failed(msg.message ?? '')
      else if (msg.ev === 'op') events.push(msg as OpEvent)
    }
    for (const w of waiters) w()
  })
  child.once('exit', (code) => {
    if (failed) failed(`child exited with ${String(code)}: ${stderr}`)
    for (const w of waiters) w()
  })

  if (!expectFailure) {
    const timeout = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('mount timed out: ' + stderr)), 20_000).unref())
    await Promise.race([readyP, failure.then((m) => { throw new Error('mount failed: ' + m + ' ' + stderr) }), timeout])
  }

  const waitFor = (pred: (e: OpEvent) => boolean, what: string): Promise<OpEvent> => {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = events.find(pred)
        if (hit) {
          waiters.delete(check)
          clearTimeout(timer)
          resolve(hit)
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`no ${what} event; saw: ${events.map((e) => e.op + ' ' + e.path).join(', ')}`))
      }, 10_000)
      if (!check()) waiters.add(check)
    })
  }

  return { mnt, events, waitFor, clear: () => { events.length = 0 }, child, failure }
}

test('utimens: touch -m delivers the mtime and omits the atime', async (t) => {
  const s = await serve(t)
  const file = path.join(s.mnt, 'F')
  await fs.writeFile(file, 'x')
  const before = await fs.stat(file)
  s.clear()

  const r = await run('touch', ['-m', '-d', '2001-02-03 04:05:06', file], { ...process.env, TZ: 'UTC' })
  t.is(r.code, 0, r.stderr)
  const ev = await s.waitFor((e) => e.op === 'utimens' && e.path === '/F', 'utimens')
  const expected = Date.UTC(2001, 1, 3, 4, 5, 6)
  t.is(ev.mtime, expected)
  t.is(ev.atime, 'omit')

  const after = await fs.stat(file)
  t.is(after.mtimeMs, expected)
  t.is(after.atimeMs, before.atimeMs)

  // Both explicit, with sub-millisecond precision kept.
  s.clear()
  await fs.utimes(file, 1000.5, 2000.25)
  const both = await s.waitFor((e) => e.op === 'utimens' && e.path === '/F', 'utimens')
  t.is(both.atime, 1000500)
  t.is(both.mtime, 2000250)
})

test('context: ops carry the caller uid/gid/pid (allow_other, a file created by nobody)', async (t) => {
  const s = await serve(t)
  const file = path.join(s.mnt, 'nobody.txt')
  s.clear()

  const touch = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'touch', file], { stdio: 'ignore' })
  const code = await new Promise<number | null>((resolve) => touch.once('exit', resolve))
  t.is(code, 0)

  const create = await s.waitFor((e) => e.op === 'create' && e.path === '/nobody.txt', 'create')
  t.is(create.uid, NOBODY)
  t.is(create.gid, NOBODY)
  t.is(create.pid, touch.pid ?? -1) // setpriv execs touch in the same process
  // touch without -d asks for UTIME_NOW in both slots.
  const utimens = await s.waitFor((e) => e.op === 'utimens' && e.path === '/nobody.txt', 'utimens')
  t.is(utimens.uid, NOBODY)
  t.is(utimens.atime, 'now')
  t.is(utimens.mtime, 'now')

  const st = await fs.stat(file)
  t.is(st.uid, NOBODY)
  t.is(st.gid, NOBODY)

  // And root is root.
  s.clear()
  await fs.mkdir(path.join(s.mnt, 'rootdir'))
  const mkdir = await s.waitFor((e) => e.op === 'mkdir', 'mkdir')
  t.is(mkdir.uid, 0)
  t.is(mkdir.gid, 0)
})

test('big_writes: a 1 MiB write arrives in requests larger than 4 KiB and reads back', async (t) => {
  const s = await serve(t)
  const file = path.join(s.mnt, 'big.bin')
  const data = Buffer.alloc(1024 * 1024)
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i)
  s.clear()

  await fs.writeFile(file, data)
  await s.waitFor((e) => e.op === 'release' && e.path === '/big.bin', 'release')
  const writes = s.events.filter((e) => e.op === 'write')
  const sizes = writes.map((e) => e.len as number)
  t.is(sizes.reduce((a, b) => a + b, 0), data.length)
  t.true(Math.max(...sizes) > 4096, `write sizes: ${sizes.join(',')}`)
  t.log(`${writes.length} writes, largest ${Math.max(...sizes)} bytes`)

  const back = await fs.readFile(file)
  t.true(back.equals(data))
})

test('options reach the mount; ops smoke test', async (t) => {
  const s = await serve(t)
  const line = await mountLine(s.mnt)
  t.regex(line, / - fuse\.memfs loam-test /)
  t.regex(line, /allow_other/)
  t.regex(line, /default_permissions/)

  const d = path.join(s.mnt, 'd')
  await fs.mkdir(d, 0o755)
  const a = path.join(d, 'a.txt')
  await fs.writeFile(a, 'hello world')
  // libfuse looks a created file up through fgetattr with its handle.
  const created = await s.waitFor((e) => e.op === 'create' && e.path === '/d/a.txt', 'create')
  const fget = await s.waitFor((e) => e.op === 'fgetattr' && e.path === '/d/a.txt', 'fgetattr')
  t.is(fget.fd, created.fd)
  t.deepEqual(await fs.readdir(d), ['a.txt'])
  await s.waitFor((e) => e.op === 'opendir' && e.path === '/d', 'opendir')
  await s.waitFor((e) => e.op === 'releasedir' && e.path === '/d', 'releasedir')

  const b = path.join(d, 'b.txt')
  await fs.rename(a, b)
  t.is(await fs.readFile(b, 'utf8'), 'hello world')

  await fs.symlink('b.txt', path.join(d, 'l'))
  t.is(await fs.readlink(path.join(d, 'l')), 'b.txt')
  t.is(await fs.readFile(path.join(d, 'l'), 'utf8'), 'hello world')

  await fs.link(b, path.join(d, 'h'))
  t.is((await fs.stat(b)).nlink, 2)

  await fs.chmod(b, 0o600)
  t.is((await fs.stat(b)).mode & 0o7777, 0o600)
  await fs.chown(b, 1234, 5678)
  const owned = await fs.stat(b)
  t.is(owned.uid, 1234)
  t.is(owned.gid, 5678)

  await fs.truncate(b, 5) // open + ftruncate in Node
  t.is(await fs.readFile(b, 'utf8'), 'hello')

  const fh = await fs.open(b, 'r+')
  try {
    await fh.truncate(2)
    await fh.sync()
    await fh.datasync()
  } finally {
    await fh.close()
  }
  const ft = await s.waitFor((e) => e.op === 'ftruncate' && e.size === 2, 'ftruncate')
  t.true((ft.fd as number) > 0)
  await s.waitFor((e) => e.op === 'fsync' && e.datasync === 0, 'fsync')
  await s.waitFor((e) => e.op === 'fsync' && e.datasync === 1, 'fdatasync')
  await s.waitFor((e) => e.op === 'flush', 'flush')
  t.is(await fs.readFile(b, 'utf8'), 'he')

  const xattr = await run(PYTHON, ['-c', [
    'import os, sys',
    'p = sys.argv[1]',
    "os.setxattr(p, 'user.k', b'value')",
    "print(os.getxattr(p, 'user.k').decode())",
    'print(",".join(os.listxattr(p)))',
    "os.removexattr(p, 'user.k')",
    'print(len(os.listxattr(p)))',
    'os.truncate(p, 1)', // truncate(2) by path: the truncate op, no handle
  ].join('\n'), b])
  t.is(xattr.code, 0, xattr.stderr)
  t.deepEqual(xattr.stdout.trim().split('\n'), ['value', 'user.k', '0'])
  await s.waitFor((e) => e.op === 'truncate' && e.size === 1, 'truncate')
  t.is(await fs.readFile(b, 'utf8'), 'h')

  // Values past 2^32 survive (fuse-native truncated them to 32 bits).
  const sfs = await fs.statfs(s.mnt)
  t.is(sfs.blocks, 2 ** 33)
  t.is(sfs.bfree, 2 ** 32 + 5)

  await fs.unlink(path.join(d, 'l'))
  await fs.unlink(path.join(d, 'h'))
  await fs.unlink(b)
  await fs.rmdir(d)
  await t.throwsAsync(fs.stat(d), { code: 'ENOENT' })
})

test('timeout: an op that never answers fails with ETIMEDOUT; the mount keeps working', async (t) => {
  const s = await serve(t, { ...baseOptions, timeout: { default: false, getattr: 300 } })
  await t.throwsAsync(fs.stat(path.join(s.mnt, 'slow')), { code: 'ETIMEDOUT' })
  await fs.writeFile(path.join(s.mnt, 'after'), 'ok')
  t.is(await fs.readFile(path.join(s.mnt, 'after'), 'utf8'), 'ok')
})

test('concurrency: bursts of parallel requests across FUSE worker threads', async (t) => {
  const s = await serve(t)
  const names = Array.from({ length: 32 }, (_, i) => `f${i}`)
  await Promise.all(names.map((n) => fs.writeFile(path.join(s.mnt, n), n.repeat(1000))))
  for (let round = 0; round < 5; round++) {
    const got = await Promise.all(names.map((n) => fs.readFile(path.join(s.mnt, n), 'utf8')))
    t.deepEqual(got, names.map((n) => n.repeat(1000)))
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
})

test('an option libfuse rejects fails the mount without leaving it behind', async (t) => {
  const s = await serve(t, { ...baseOptions, options: ['no_such_option'] }, true)
  const msg = await s.failure
  t.regex(msg, /fuse_new failed/)
  await waitExit(s.child, 10_000)
  t.false(await isMounted(s.mnt))
})

test('options are validated before mounting', (t) => {
  t.throws(() => new Fuse('/nonexistent', {}, { fsname: 'a,b' }), { instanceOf: TypeError })
  t.throws(() => new Fuse('/nonexistent', {}, { attrTimeout: -1 }), { instanceOf: TypeError })
  t.throws(() => new Fuse('/nonexistent', {}, { maxWrite: 1.5 }), { instanceOf: TypeError })
  t.notThrows(() => new Fuse('/nonexistent', {}, { attrTimeout: 0, entryTimeout: 0, uid: 0, umask: 0 }))
  t.is(Fuse.ENOENT, -2)
  t.is(Fuse.ETIMEDOUT, -110)
})
