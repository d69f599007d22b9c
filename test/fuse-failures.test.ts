// A mount's life and its namenode's failures: `loam umount` leaves no process
// and no mount behind (and refuses while the mount is busy); a mount whose
// namenode stops answering, or dies, fails calls with EIO instead of hanging,
// and serves again once the namenode is back. One cluster, tests one at a time.
import { spawn } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import test, { type ExecutionContext } from 'ava'
import { isMounted } from '../src/fuse/mount.js'
import { alive, startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { Cleanups, pattern, sha256 } from './helpers/data.js'
import { clusterLogs, showLogsOnFailure } from './helpers/failures.js'
import { mountCluster, PY_ERRNO, python, sh, type TestMount } from './helpers/mount.js'

const cleanups = new Cleanups()
let c: TestCluster

test.before(async () => {
  c = await startCluster(cleanups)
})

test.after.always(async () => {
  await cleanups.run()
})

function showMountLogOnFailure(t: ExecutionContext, m: TestMount): void {
  t.teardown(() => {
    if (!t.passed) t.log(`--- mount log\n${m.log().trim().split('\n').slice(-40).join('\n')}`)
  })
}

/** Processes (other than this one) whose command line mentions text. */
async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = []
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(text)) found.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`)
  }
  return found
}

test.serial('loam umount ends the mount: its process exits, nothing stays mounted; a busy mount is refused until it is free', async (t) => {
  const m = await mountCluster(t, c)
  showMountLogOnFailure(t, m)
  await sh(`mkdir '${m.dir}/life' && echo 'written before umount' > '${m.dir}/life/f'`)

  // A process with its working directory in the mount keeps it busy.
  const squatter = spawn('sleep', ['600'], { cwd: `${m.dir}/life`, stdio: 'ignore' })
  t.teardown(() => {
    if (squatter.exitCode === null) squatter.kill('SIGKILL')
  })
  await waitFor(() => squatter.pid !== undefined, 10_000, 'sleep to start')
  const busy = await c.loam(['umount', m.dir])
  t.is(busy.code, 1, 'umount of a busy mount fails')
  t.regex(busy.stderr, /busy/, busy.stderr)
  t.true(await isMounted(m.dir), 'still mounted')
  t.is((await sh(`cat '${m.dir}/life/f'`)).stdout, 'written before umount\n', 'and still serving')
  squatter.kill('SIGKILL')
  await new Promise((resolve) => (squatter.exitCode !== null || squatter.signalCode !== null ? resolve(undefined) : squatter.once('exit', resolve)))

  await m.unmount()
  t.is(m.child.exitCode, 0, 'the mount process exited cleanly')
  t.false(alive(m.child.pid!), 'the mount process is gone')
  t.false(await isMounted(m.dir), 'no mount in /proc/self/mountinfo')
  t.deepEqual(await processesMentioning(m.dir), [], 'no process mentions the mountpoint')
  t.is((await sh(`ls -A '${m.dir}'`)).stdout, '', 'the mountpoint is an empty directory again')
  const again = await c.loam(['umount', m.dir])
  t.is(again.code, 1)
  t.regex(again.stderr, /is not mounted/, again.stderr)
  const cat = await c.loam(['fs', 'cat', '/life/f'])
  t.is(cat.stdout.toString(), 'written before umount\n', 'what was written is in the cluster')
})

// Looks up a name never seen (no cache can answer), lists a directory, and opens and reads a file.
const PROBE = `
import hashlib, json
D = sys.argv[1]
def digest():
    with open(D + '/f', 'rb') as f: return hashlib.sha256(f.read()).hexdigest()
out = {'stat new name': err(os.stat, D + '/never-seen-' + sys.argv[2]), 'listdir': err(os.listdir, D)}
try:
    out['read'] = digest()
except OSError as e:
    out['read'] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
`

interface Probe {
  'stat new name': string
  listdir: string
  read: string
}

let probes = 0
async function probe(m: TestMount): Promise<Probe> {
  // Generous: each call waits up to --timeout (3 s) for the namenode; a hang is killed and fails the test.
  return JSON.parse(await python(`${PY_ERRNO}\n${PROBE}`, [`${m.dir}/nn`, String(++probes)], { timeoutMs: 60_000 })) as Probe
}

/** Probes until the mount serves again (the namenode may be in safe mode for a moment); the last probe. */
async function servesAgain(m: TestMount, want: Probe, what: string): Promise<Probe> {
  let last: Probe | undefined
  await waitFor(async () => {
    last = await probe(m)
    return JSON.stringify(last) === JSON.stringify(want)
  }, 30_000, `${what}: the mount to serve again`).catch((err: Error) => {
    throw new Error(`${err.message}; last probe: ${JSON.stringify(last)}`)
  })
  return last!
}

test.serial('a mount whose namenode hangs or dies answers EIO instead of hanging, and serves again once the namenode is back', async (t) => {
  showLogsOnFailure(t, () => clusterLogs(c))
  const data = pattern(300_000, 111)
  const put = await c.loam(['fs', 'put', '-', '/nn/f'], { input: data })
  t.is(put.code, 0, put.stderr)
  const m = await mountCluster(t, c, { timeout: '3s' })
  showMountLogOnFailure(t, m)
  const healthy: Probe = { 'stat new name': 'ENOENT', listdir: 'ok', read: sha256(data) }
  t.deepEqual(await probe(m), healthy, 'with the namenode up')

  // Stopped (SIGSTOP): connections are accepted and never answered; only --timeout ends the wait.
  const pid = c.record.namenode.pid
  process.kill(pid, 'SIGSTOP')
  t.teardown(() => {
    if (alive(pid)) process.kill(pid, 'SIGCONT')
  })
  t.deepEqual(await probe(m), { 'stat new name': 'EIO', listdir: 'EIO', read: 'EIO' }, 'with the namenode stopped')
  process.kill(pid, 'SIGCONT')
  await servesAgain(m, healthy, 'after SIGCONT')

  // Killed: nothing listens; then restarted from its own metadata.
  await c.killNamenode()
  t.deepEqual(await probe(m), { 'stat new name': 'EIO', listdir: 'EIO', read: 'EIO' }, 'with the namenode dead')
  await c.restartNamenode()
  await servesAgain(m, healthy, 'after the restart')
  // Writing works too once the namenode has left safe mode.
  await waitFor(async () => (await sh(`echo after > '${m.dir}/nn/after' 2>&1`).catch(() => undefined)) !== undefined, 30_000, 'a write through the mount to succeed')
  t.is((await c.loam(['fs', 'cat', '/nn/after'])).stdout.toString(), 'after\n')
  t.true(await isMounted(m.dir), 'the same mount served throughout')
  t.is(m.child.exitCode, null, 'its process never exited')
})
