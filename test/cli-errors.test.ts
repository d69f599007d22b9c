// Bad input through the `loam` command: each is one line on stderr starting
// with `loam: `, a non-zero exit, and nothing changed. Plus daemons started
// against a namenode that is not there, or on a data directory they cannot use.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { LoamClient } from '../src/client/client.js'
import { CLI, startCluster, waitFor, type CliResult, type Teardown, type TestCluster } from './helpers/cluster.js'
import { Cleanups, localTempDir, pattern, sha256 } from './helpers/data.js'

const cleanups = new Cleanups()
let c: TestCluster
let tmp: string

test.before(async () => {
  c = await startCluster(cleanups, { nodes: 1, racks: 1, replication: 1 })
  tmp = await localTempDir(cleanups)
})

test.after.always(async () => {
  await cleanups.run()
})

const ONE_LINE = /^loam: [^\n]+\n$/

function refused(t: ExecutionContext, r: CliResult, what: string): void {
  t.not(r.code, 0, `${what}: exit status`)
  t.regex(r.stderr, ONE_LINE, `${what}: one line on stderr starting with 'loam: '`)
  t.false(r.stderr.includes('    at '), `${what}: no stack trace`)
}

async function put(remote: string, data: Buffer, ...flags: string[]): Promise<CliResult> {
  return c.loam(['fs', 'put', '-', remote, ...flags], { input: data })
}

/** The entries of a directory as `ls --json` prints them: name -> {type, length, replication}. */
async function entries(dir: string): Promise<Map<string, { type: string; length: number; replication: number }>> {
  const r = await c.loam(['fs', 'ls', dir, '--json'])
  if (r.code !== 0) throw new Error(`ls ${dir} exited ${r.code}: ${r.stderr}`)
  const list = JSON.parse(r.stdout.toString()) as Array<{ name: string; type: string; length: number; replication: number }>
  return new Map(list.map((e) => [e.name, e]))
}

async function content(remote: string): Promise<string> {
  const r = await c.loam(['fs', 'cat', remote])
  if (r.code !== 0) throw new Error(`cat ${remote} exited ${r.code}: ${r.stderr}`)
  return sha256(r.stdout)
}

test.serial('get, cat, stat and ls of a missing path: exit 1 and exactly "loam: /x: no such file or directory"', async (t) => {
  const local = path.join(tmp, 'x.out')
  for (const args of [['fs', 'get', '/x', local], ['fs', 'cat', '/x'], ['fs', 'stat', '/x'], ['fs', 'stat', '/x', '--json'], ['fs', 'ls', '/x'], ['fs', 'ls', '-l', '/x']]) {
    const r = await c.loam(args)
    t.is(r.code, 1, `${args.join(' ')}: exit status`)
    t.is(r.stderr, 'loam: /x: no such file or directory\n', args.join(' '))
    t.is(r.stdout.length, 0, `${args.join(' ')}: nothing on stdout`)
  }
  t.false(existsSync(local), 'a failed get leaves no local file')
  t.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('x.out')), [], 'nor a temporary one')

  // Other commands on a missing path, and a missing parent.
  for (const args of [['fs', 'rm', '/x'], ['fs', 'mv', '/x', '/y'], ['fs', 'setrep', '1', '/x'], ['fs', 'chmod', '644', '/x'], ['fs', 'cat', '/nodir/x'], ['fsck', '/x']]) {
    const r = await c.loam(args)
    t.is(r.code, 1, `${args.join(' ')}: exit status`)
    t.regex(r.stderr, /^loam: \/(x|nodir): no such file or directory\n$/, args.join(' '))
  }
  t.false((await entries('/')).has('y'), 'mv of a missing path made nothing')
})

test.serial('mkdir over an existing file is refused and the file stays', async (t) => {
  const data = pattern(70_000, 1)
  t.is((await put('/m/file', data)).code, 0)
  for (const args of [['fs', 'mkdir', '/m/file'], ['fs', 'mkdir', '-p', '/m/file'], ['fs', 'mkdir', '-p', '/m/file/sub']]) {
    refused(t, await c.loam(args), args.join(' '))
  }
  const after = await entries('/m')
  t.deepEqual([...after.keys()], ['file'])
  t.is(after.get('file')!.type, 'file')
  t.is(after.get('file')!.length, data.length)
  t.is(await content('/m/file'), sha256(data))
  // mkdir of an existing directory without -p is refused too; with -p it is fine.
  refused(t, await c.loam(['fs', 'mkdir', '/m']), 'mkdir /m')
  t.is((await c.loam(['fs', 'mkdir', '-p', '/m'])).code, 0)
})

test.serial('rm of a non-empty directory without -r is refused and removes nothing', async (t) => {
  t.is((await c.loam(['fs', 'mkdir', '-p', '/d/e'])).code, 0)
  const data = pattern(1234, 2)
  t.is((await put('/d/e/f', data)).code, 0)
  refused(t, await c.loam(['fs', 'rm', '/d']), 'rm /d')
  refused(t, await c.loam(['fs', 'rm', '/d/e']), 'rm /d/e')
  refused(t, await c.loam(['fs', 'rm', '-r', '/']), 'rm -r /')
  const ls = await c.loam(['fs', 'ls', '-R', '/d'])
  t.is(ls.code, 0, ls.stderr)
  t.deepEqual(ls.stdout.toString().trim().split('\n'), ['/d/e', '/d/e/f'])
  t.is(await content('/d/e/f'), sha256(data))
  // With -r it goes, all of it.
  t.is((await c.loam(['fs', 'rm', '-r', '/d'])).code, 0)
  t.is((await c.loam(['fs', 'stat', '/d'])).stderr, 'loam: /d: no such file or directory\n')
  t.is((await c.loam(['fs', 'cat', '/d/e/f'])).code, 1)
})

test.serial('put onto an existing file needs --force: refused without it (original intact), replaced with it', async (t) => {
  const original = pattern(100_000, 3)
  const replacement = pattern(150_000, 4)
  t.is((await put('/p/file', original)).code, 0)
  refused(t, await put('/p/file', replacement), 'put without --force')
  const local = path.join(tmp, 'replacement')
  await writeFile(local, replacement)
  refused(t, await c.loam(['fs', 'put', local, '/p/file']), 'put LOCAL without --force')
  t.is(await content('/p/file'), sha256(original), 'the original is intact')
  t.deepEqual([...(await entries('/p')).keys()], ['file'], 'no partial or temporary file is left')

  const forced = await c.loam(['fs', 'put', local, '/p/file', '--force'])
  t.is(forced.code, 0, forced.stderr)
  t.is(await content('/p/file'), sha256(replacement), 'replaced with --force')
  const again = await put('/p/file', original, '-f')
  t.is(again.code, 0, again.stderr)
  t.is(await content('/p/file'), sha256(original), 'replaced with -f')
  t.deepEqual([...(await entries('/p')).keys()], ['file'])

  // A local source that does not exist.
  const missing = await c.loam(['fs', 'put', path.join(tmp, 'no-such-file'), '/p/other'])
  t.is(missing.code, 1)
  t.regex(missing.stderr, ONE_LINE)
  t.true(missing.stderr.includes('no-such-file'), missing.stderr)
  t.deepEqual([...(await entries('/p')).keys()], ['file'])
})

test.serial('put with a replication outside 1..512 is refused and creates nothing', async (t) => {
  t.is((await c.loam(['fs', 'mkdir', '/r'])).code, 0)
  const data = pattern(10_000, 5)
  for (const replication of ['0', '513', '100000', '-1', 'three', '1.5']) {
    refused(t, await put(`/r/f${replication}`, data, '--replication', replication), `--replication ${replication}`)
  }
  t.deepEqual([...(await entries('/r')).keys()], [], 'nothing was created, not even a temporary file')
  // The limits themselves are fine.
  const one = await put('/r/ok', data, '--replication', '1')
  t.is(one.code, 0, one.stderr)
})

test.serial('put with a block size that is not a multiple of 64 KiB (or out of range) is refused and creates nothing', async (t) => {
  t.is((await c.loam(['fs', 'mkdir', '/b'])).code, 0)
  const data = pattern(10_000, 6)
  for (const size of ['100000', '1000KiB', '0', '32KiB', '3GiB', 'big']) {
    refused(t, await put(`/b/f-${size}`, data, '--block-size', size), `--block-size ${size}`)
  }
  t.deepEqual([...(await entries('/b')).keys()], [], 'nothing was created, not even a temporary file')
  const ok = await put('/b/ok', data, '--block-size', '128KiB')
  t.is(ok.code, 0, ok.stderr)
  t.is((await entries('/b')).size, 1)
})

test.serial('setrep outside 1..512 is refused and leaves the replication as it was', async (t) => {
  t.is((await put('/s/file', pattern(1000, 7), '--replication', '1')).code, 0)
  for (const n of ['0', '513', 'x', '-2']) refused(t, await c.loam(['fs', 'setrep', n, '/s/file']), `setrep ${n}`)
  t.is((await entries('/s')).get('file')!.replication, 1)
  refused(t, await c.loam(['fs', 'setrep', '2', '/s']), 'setrep on a directory')
})

test.serial('other bad arguments: a bad mode, a relative path, an unknown command, a bad namenode address', async (t) => {
  t.is((await put('/o/file', pattern(10, 8))).code, 0)
  refused(t, await c.loam(['fs', 'chmod', '999', '/o/file']), 'chmod 999')
  refused(t, await c.loam(['fs', 'cat', 'relative/path']), 'a relative path')
  refused(t, await c.loam(['fs', 'frobnicate']), 'an unknown command')
  refused(t, await c.loam(['fs', 'cat', '/o/file', '--offset', 'minus']), 'a bad --offset')
  refused(t, await c.loam(['fs', 'ls', '/', '--namenode', 'no-port-here']), 'a bad --namenode')
  t.is((await entries('/o')).get('file')!.length, 10)
})

// ---------------------------------------------------------------- daemons

interface Child {
  proc: ChildProcess
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function startChild(t: Teardown, args: string[]): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })))
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await exited
    }
  })
  return { proc, stderr: () => err, exited }
}

/** The child's exit, or undefined if it is still running after ms (it is then killed). */
async function exitWithin(child: Child, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined
  const result = await Promise.race([child.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))])
  clearTimeout(timer)
  if (result === undefined) {
    child.proc.kill('SIGKILL')
    await child.exited
  }
  return result
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

function logLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  for (const line of text.split('\n')) {
    try {
      const v = JSON.parse(line) as unknown
      if (v && typeof v === 'object') out.push(v as Record<string, unknown>)
    } catch {
      // not a structured line
    }
  }
  return out
}

test('a datanode whose namenode is down retries with growing backoff, says so in its log, and registers once the namenode comes', async (t) => {
  const dir = await localTempDir(t)
  const port = await freePort()
  const namenode = `127.0.0.1:${port}`
  const dn = startChild(t, ['datanode', '--namenode', namenode, '--data', path.join(dir, 'dn'), '--id', 'dn-retry', '--port', '0', '--http-port', '0', '--ready-file', path.join(dir, 'dn.json'), '--log-level', 'info'])
  const retries = (): Array<Record<string, unknown>> => logLines(dn.stderr()).filter((l) => JSON.stringify(l).includes(namenode) && /retry/i.test(JSON.stringify(l)))
  try {
    await waitFor(() => retries().length >= 3 || dn.proc.exitCode !== null, 20_000, 'three retry lines in the datanode log')
  } catch (err) {
    t.fail(`${(err as Error).message}; the datanode logged:\n${dn.stderr()}`)
    return
  }
  t.is(dn.proc.exitCode, null, `the datanode keeps running while its namenode is away:\n${dn.stderr()}`)
  // The wait before each retry is in the log, and it grows.
  const waits = retries()
    .slice(0, 3)
    .map((l) => Object.entries(l).find(([k, v]) => /retry|backoff|delay|wait/i.test(k) && typeof v === 'number')?.[1] as number | undefined)
  t.true(waits.every((w) => w !== undefined), `each retry line says how long it waits: ${JSON.stringify(retries().slice(0, 3))}`)
  t.true(waits[0]! < waits[1]! && waits[1]! < waits[2]!, `the backoff grows: ${waits.join(', ')}`)

  // Once a namenode listens there, the datanode registers by itself.
  const nn = startChild(t, ['namenode', '--data', path.join(dir, 'nn'), '--port', String(port), '--http-port', '0', '--heartbeat', '1s', '--dead-after', '10s', '--ready-file', path.join(dir, 'nn.json'), '--log-level', 'warn'])
  await waitFor(() => existsSync(path.join(dir, 'nn.json')) || nn.proc.exitCode !== null, 20_000, 'the namenode to start')
  t.is(nn.proc.exitCode, null, nn.stderr())
  const client = new LoamClient({ namenode: { host: '127.0.0.1', port }, timeoutMs: 2000 })
  try {
    await waitFor(async () => (await client.report().catch(() => undefined))?.datanodes.some((d) => d.id === 'dn-retry' && d.state === 'live') ?? false, 30_000, 'the datanode to register')
    t.pass()
  } finally {
    client.close()
  }

  // Both stop cleanly on SIGTERM.
  dn.proc.kill('SIGTERM')
  nn.proc.kill('SIGTERM')
  t.deepEqual(await exitWithin(dn, 15_000), { code: 0, signal: null }, 'the datanode exits 0 on SIGTERM')
  t.deepEqual(await exitWithin(nn, 15_000), { code: 0, signal: null }, 'the namenode exits 0 on SIGTERM')
})

async function unusableNamenodeDir(t: ExecutionContext, data: string, named: string): Promise<void> {
  const dir = await localTempDir(t)
  const ready = path.join(dir, 'ready.json')
  const nn = startChild(t, ['namenode', '--data', data, '--port', '0', '--http-port', '0', '--ready-file', ready, '--log-level', 'info'])
  const exit = await exitWithin(nn, 10_000)
  if (!exit) {
    t.fail(`the namenode with --data ${data} neither served nor stopped within 10 s (killed); stderr: ${nn.stderr().slice(0, 500)}`)
    return
  }
  t.not(exit.code, 0, `exit status with --data ${data}`)
  t.false(existsSync(ready), 'it never said it was serving')
  const lines = nn.stderr().trim().split('\n')
  t.is(lines.length, 1, `one line on stderr: ${nn.stderr()}`)
  t.regex(lines[0]!, /^loam: /)
  t.true(lines[0]!.includes(named), `the message names ${named}: ${lines[0]}`)
}

test('a namenode whose --data is an existing regular file stops with one line naming it', async (t) => {
  const dir = await localTempDir(t)
  const file = path.join(dir, 'not-a-dir')
  await writeFile(file, 'x')
  await unusableNamenodeDir(t, file, file)
  t.is(await readFile(file, 'utf8'), 'x', 'the file is untouched')
  await unusableNamenodeDir(t, path.join(file, 'meta'), file)
})

test('a namenode whose --data is under /proc stops with one line naming it', async (t) => {
  await unusableNamenodeDir(t, '/proc/loam-test-namenode', '/proc/loam-test-namenode')
})

test('a second namenode on a data directory in use stops with one line naming it', async (t) => {
  const dir = await localTempDir(t)
  const data = path.join(dir, 'nn')
  await mkdir(data)
  const first = startChild(t, ['namenode', '--data', data, '--port', '0', '--http-port', '0', '--ready-file', path.join(dir, 'first.json'), '--log-level', 'warn'])
  await waitFor(() => existsSync(path.join(dir, 'first.json')) || first.proc.exitCode !== null, 20_000, 'the first namenode to start')
  t.is(first.proc.exitCode, null, first.stderr())
  await unusableNamenodeDir(t, data, data)
  t.is(first.proc.exitCode, null, 'the first namenode is unaffected')
  first.proc.kill('SIGTERM')
  await exitWithin(first, 15_000)
})

test('a daemon given an unknown --log-level stops with one line naming the levels, and starts nothing', async (t) => {
  const dir = await localTempDir(t)
  const data = path.join(dir, 'nn')
  for (const role of [['namenode', '--data', data], ['scheduler', '--data', data]]) {
    const child = startChild(t, [...role, '--port', '0', '--http-port', '0', '--log-level', 'loud'])
    const exit = await exitWithin(child, 20_000)
    t.is(exit?.code, 2, child.stderr())
    t.is(child.stderr(), "loam: --log-level 'loud' is not one of fatal, error, warn, info, debug, trace, silent\n")
  }
  t.false(existsSync(data), 'no data directory was made')
})
