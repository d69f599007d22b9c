// Persistent volumes through real processes: the `loam volume` commands, the
// quota at its edge through a volume mount, exclusive attach, fencing of an
// old holder, and a database that survives its node's death.
import { existsSync } from 'node:fs'
import { chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import test from 'ava'
import { nodesAt } from '../src/fuse/mount.js'
import { LoamError } from '../src/rpc/errors.js'
import { VOLUME_SIZE_REFRESH_MS, VolumeQuota } from '../src/volumes/quota.js'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { localTempDir, MiB, pattern, reportJson } from './helpers/data.js'
import { mountCluster, run, sh, type TestMount } from './helpers/mount.js'

interface VolumeJson {
  name: string
  sizeBytes: number
  usedBytes: number
  replication: number
  state: string
  attachedNode: string | null
  holderAlive: boolean
  epoch: number
  nodes: Array<{ node: string; bytes: number }>
}

async function inspect(c: TestCluster, name: string): Promise<VolumeJson> {
  const r = await c.loam(['volume', 'inspect', name, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout.toString()) as VolumeJson
}

async function volumes(c: TestCluster): Promise<string> {
  return (await c.loam(['volume', 'ls', '--json'])).stdout.toString()
}

async function mustLoam(c: TestCluster, args: string[]): Promise<string> {
  const r = await c.loam(args)
  if (r.code !== 0) throw new Error(`loam ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

function volumeMount(t: Parameters<typeof mountCluster>[0], c: TestCluster, name: string, nodeId: string): Promise<TestMount> {
  return mountCluster(t, c, { nodeId, extraArgs: ['--volume', name] })
}

/** Runs python3 code as a child process; resolves with its stdout, or rejects with stderr. */
async function py(code: string): Promise<string> {
  return (await sh(`python3 - <<'PY'\n${code}\nPY`)).stdout
}

/**
 * Python for an old holder that writes and fsyncs 4 KiB page after page (page k
 * holds k, repeated) until the file moved exists, then 5 more, keeping each
 * result ('ok' or the errno) in results and after. With slots, it writes that
 * many pages first and then rewrites them in place (page k at k % slots),
 * creating the file rewriting after 20 rewrites.
 */
function pageWriter(file: string, moved: string, opts: { slots?: number; rewriting?: string } = {}): string {
  const slots = opts.slots ?? 0
  return `import os, time, json
fd = os.open('${file}', os.O_RDWR | os.O_CREAT, 0o644)
slots = ${slots}
for i in range(slots):
    os.pwrite(fd, (b'%08d' % i) * 512, i * 4096)
if slots:
    os.fsync(fd)
results, after = [], []
def page(k):
    try:
        os.pwrite(fd, (b'%08d' % k) * 512, (k % slots if slots else k) * 4096)
        os.fsync(fd)
        return 'ok'
    except OSError as e:
        return e.errno
start = time.time()
while not os.path.exists('${moved}') and time.time() - start < 60:
    results.append(page(slots + len(results)))
    if len(results) == 20 and '${opts.rewriting ?? ''}':
        open('${opts.rewriting ?? ''}', 'w').close()
    time.sleep(0.02)
for _ in range(5):
    after.append(page(slots + len(results) + len(after)))`
}

test('volume commands: create, ls, inspect, resize, rm; bad input is one line and changes nothing', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const created = await mustLoam(c, ['volume', 'create', 'pg-data', '--size', '64MiB', '--replication', '2'])
  t.regex(created, /pg-data: 0 B of 64\.0 MiB used, replication 2, detached/)
  const before = await volumes(c)
  const capacity = (await reportJson(c)).datanodes.reduce((s, d) => s + d.capacity, 0)
  for (const [args, message] of [
    [['volume', 'create', 'Bad_Name', '--size', '1MiB'], /must match \[a-z0-9\]/],
    [['volume', 'create', 'x'.repeat(64), '--size', '1MiB'], /must match/],
    [['volume', 'create', 'zero', '--size', '0'], /size 0 must be a positive number/],
    [['volume', 'create', 'huge', '--size', String(capacity + 1)], /beyond the cluster's capacity/],
    [['volume', 'create', 'pg-data', '--size', '1MiB'], /volume pg-data exists/],
    [['volume', 'attach', 'pg-data', '--node', 'no-such-node'], /datanode no-such-node: no such node/],
    [['volume', 'attach', 'missing', '--node', 'dn1'], /volume missing: no such volume/],
    [['volume', 'resize', 'pg-data', '--size', '0'], /must be a positive number/],
  ] as const) {
    const r = await c.loam([...args])
    t.is(r.code === 0 ? 'succeeded' : 'failed', 'failed', args.join(' '))
    t.regex(r.stderr, message)
    t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
  }
  t.is(await volumes(c), before, 'bad input changed nothing')
  const warned = await c.loam(['volume', 'create', 'wide', '--size', '1MiB', '--replication', '5'])
  t.is(warned.code, 0, 'a replication above the live nodes is warned about, not refused (as in HDFS)')
  t.regex(warned.stderr, /warning: replication 5 is above the 3 live datanodes/)

  t.regex(await mustLoam(c, ['volume', 'resize', 'pg-data', '--size', '128MiB']), /of 128\.0 MiB used/)
  await mustLoam(c, ['volume', 'attach', 'pg-data', '--node', 'dn1'])
  const rm = await c.loam(['volume', 'rm', 'pg-data'])
  t.is(rm.code, 1)
  t.regex(rm.stderr, /attached to dn1; detach it first, or use --force/)
  t.regex(await mustLoam(c, ['volume', 'detach', 'pg-data']), /detached/)
  await mustLoam(c, ['volume', 'rm', 'pg-data'])
  const ls = JSON.parse(await volumes(c)) as VolumeJson[]
  t.deepEqual(ls.map((v) => v.name), ['wide'])
  t.is((await c.loam(['fs', 'stat', '/volumes/pg-data'])).code, 1, 'its directory went with it')

  // The CLI writes into a detached volume: past its size, one line, and what it held before is intact.
  await mustLoam(c, ['volume', 'create', 'small', '--size', '64KiB'])
  const local = await localTempDir(t)
  await writeFile(path.join(local, 'a'), pattern(40_000, 1))
  await writeFile(path.join(local, 'b'), pattern(40_000, 2))
  await mustLoam(c, ['fs', 'put', path.join(local, 'a'), '/volumes/small/a'])
  const over = await c.loam(['fs', 'put', path.join(local, 'b'), '/volumes/small/b'])
  t.is(over.code, 1)
  t.regex(over.stderr, /^loam: .*volume small is full: 40000 of 65536 bytes used/)
  t.is(over.stderr.trim().split('\n').length, 1, `one line: ${over.stderr}`)
  t.true((await c.loam(['fs', 'cat', '/volumes/small/a'])).stdout.equals(pattern(40_000, 1)), 'the file written before is intact')
  t.is((await inspect(c, 'small')).usedBytes, 40_000)
  // Shrinking: not below what it holds (one line, nothing changed), down to just above it.
  const shrink = await c.loam(['volume', 'resize', 'small', '--size', '39999'])
  t.is(shrink.code, 2)
  t.regex(shrink.stderr, /^loam: volume small holds 40000 bytes: it cannot shrink to 39999\n$/)
  t.is((await inspect(c, 'small')).sizeBytes, 64 * 1024)
  await mustLoam(c, ['volume', 'resize', 'small', '--size', '40000'])
  t.is((await inspect(c, 'small')).sizeBytes, 40_000)

  // A volume may be called rm: `snapshot rm SNAP` snapshots it, `snapshot rm rm SNAP` removes the snapshot.
  await mustLoam(c, ['volume', 'create', 'rm', '--size', '1MiB'])
  t.regex(await mustLoam(c, ['volume', 'snapshot', 'rm', 's1']), /^rm@s1: /)
  t.deepEqual((JSON.parse(await mustLoam(c, ['volume', 'snapshots', 'rm', '--json'])) as Array<{ name: string }>).map((x) => x.name), ['s1'])
  await mustLoam(c, ['volume', 'snapshot', 'rm', 'rm', 's1'])
  t.deepEqual(JSON.parse(await mustLoam(c, ['volume', 'snapshots', 'rm', '--json'])), [])
})

test('quota at the edge through a volume mount: exactly the size fits, one byte more is EDQUOT, and nothing before is lost', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'q', '--size', '3MiB', '--replication', '2', '--block-size', '1MiB'])
  await mustLoam(c, ['volume', 'attach', 'q', '--node', 'dn2'])
  const m = await volumeMount(t, c, 'q', 'dn2')
  const out = await py(`
import os, hashlib
data = bytes((i * 7) % 251 for i in range(3 * 1024 * 1024 - 1000))
with open('${m.dir}/a', 'wb') as f:
    f.write(data[:2 * 1024 * 1024]); f.flush(); os.fsync(f.fileno())
fd = os.open('${m.dir}/b', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, data[2 * 1024 * 1024:])
os.write(fd, b'z' * 1000)          # exactly the size now
os.fsync(fd)
try:
    os.write(fd, b'!')
    print('one more byte: accepted')
except OSError as e:
    print('one more byte:', e.errno)
os.close(fd)
print(hashlib.sha256(data + b'z' * 1000).hexdigest())
`)
  const [verdict, digest] = out.trim().split('\n')
  t.is(verdict, 'one more byte: 122', 'EDQUOT')
  const whole = await sh(`cat ${m.dir}/a ${m.dir}/b | sha256sum`)
  t.is(whole.stdout.split(' ')[0], digest, 'everything written up to the size is intact')
  const v = await inspect(c, 'q')
  t.is(v.usedBytes, 3 * MiB)
  t.is(v.attachedNode, 'dn2')
  t.true(v.nodes.some((n) => n.node === 'dn2' && n.bytes === 3 * MiB), `the first replica of every block is on the attached node: ${JSON.stringify(v.nodes)}`)
  const cat = await c.loam(['fs', 'cat', '/volumes/q/b'])
  t.is(cat.stdout.length, 1 * MiB)
})

test('two nodes racing to attach: exactly one wins, the other is told who holds it; a mount elsewhere is refused', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'race', '--size', '8MiB'])
  const results = await Promise.all(['dn1', 'dn2', 'dn3'].map((node) => c.loam(['volume', 'attach', 'race', '--node', node])))
  const winners = results.filter((r) => r.code === 0)
  t.is(winners.length, 1)
  const holder = (await inspect(c, 'race')).attachedNode!
  for (const r of results.filter((x) => x.code !== 0)) t.regex(r.stderr, new RegExp(`attached to ${holder}`))
  const elsewhere = ['dn1', 'dn2', 'dn3'].find((n) => n !== holder)!
  await t.throwsAsync(volumeMount(t, c, 'race', elsewhere), { message: new RegExp(`attached to ${holder}, not ${elsewhere}: mount it there`) })
  const ro = await mountCluster(t, c, { nodeId: elsewhere, readOnly: true, extraArgs: ['--volume', 'race'] })
  await t.throwsAsync(sh(`touch ${ro.dir}/x`), { message: /Read-only|Permission denied/ })
})

test('fencing: after a forced takeover every write of the old holder is refused; what it synced before is all there', async (t) => {
  const c = await startCluster(t, { nodes: 3, heartbeat: '500ms', deadAfter: '3s' })
  await mustLoam(c, ['volume', 'create', 'fence', '--size', '32MiB', '--replication', '2'])
  await mustLoam(c, ['volume', 'attach', 'fence', '--node', 'dn1'])
  const old = await volumeMount(t, c, 'fence', 'dn1')
  // The old holder writes and fsyncs page after page until told the volume moved, then tries a fresh file too.
  const moved = path.join(await localTempDir(t), 'moved')
  const writer = sh(`python3 - <<'PY'
${pageWriter(`${old.dir}/log`, moved)}
try:
    fresh = os.open('${old.dir}/fresh', os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fresh, b'x'); os.fsync(fresh)
    created = 'ok'
except OSError as e:
    created = e.errno
print(json.dumps({'results': results, 'after': after, 'created': created}))
PY`)
  await waitFor(async () => ((await c.client().stat('/volumes/fence/log').catch(() => undefined))?.lengthBytes ?? 0) > 20 * 4096, 30_000, 'the old holder to have written')
  await t.throwsAsync(c.loam(['volume', 'attach', 'fence', '--node', 'dn2', '--force']).then((r) => (r.code === 0 ? Promise.resolve() : Promise.reject(new Error(r.stderr)))), { message: /alive and holds its lease/ })
  await c.killNode(0) // dn1 dies; its mount process goes on writing
  await waitFor(async () => (await reportJson(c)).datanodes.some((d) => d.id === 'dn1' && d.state === 'dead'), 30_000, 'dn1 to be dead')
  await mustLoam(c, ['volume', 'attach', 'fence', '--node', 'dn2', '--force'])
  await writeFile(moved, '')
  const v = await inspect(c, 'fence')
  t.is(v.epoch, 2)
  const { results, after, created } = JSON.parse((await writer).stdout) as { results: Array<'ok' | number>; after: Array<'ok' | number>; created: 'ok' | number }
  const firstRefused = results.findIndex((r) => r !== 'ok')
  const synced = firstRefused < 0 ? results.length : firstRefused
  t.true(synced > 20, `writes went through before the takeover: ${synced}`)
  t.true([...results.slice(synced), ...after].every((r) => r !== 'ok'), `no write of the old holder succeeds once one was refused: ${JSON.stringify(after)}`)
  t.true(after.every((r) => r !== 'ok'), 'every write after the takeover is refused')
  t.is(created, 116, 'a fresh file of the old holder is refused with ESTALE: it was fenced')
  // Every page synced before is there, as written, read on the new holder's node.
  const fresh = await volumeMount(t, c, 'fence', 'dn2')
  const check = await py(`
data = open('${fresh.dir}/log', 'rb').read()
bad = [i for i in range(${synced}) if data[i * 4096:(i + 1) * 4096] != (b'%08d' % i) * 512]
print(len(bad))
`)
  t.is(check.trim(), '0')
  await sh(`echo new > ${fresh.dir}/by-new-holder`)
})

test('a database on a volume: its node dies, the volume is attached elsewhere, every committed row is there', async (t) => {
  const c = await startCluster(t, { nodes: 3, heartbeat: '500ms', deadAfter: '3s' })
  await mustLoam(c, ['volume', 'create', 'db', '--size', '64MiB', '--replication', '2'])
  await mustLoam(c, ['volume', 'attach', 'db', '--node', 'dn3'])
  const first = await volumeMount(t, c, 'db', 'dn3')
  const committed = await py(`
import sqlite3
db = sqlite3.connect('${first.dir}/app.db')
db.execute('create table t (id integer primary key, v text)')
n = 0
for tx in range(50):
    with db:
        for i in range(100):
            db.execute('insert into t (v) values (?)', ('row %d' % n,)); n += 1
print(n)
`)
  t.is(committed.trim(), '5000')
  // The node dies whole: its datanode and its mount (no unmount, no close).
  first.child.kill('SIGKILL')
  await c.killNode(2)
  await waitFor(async () => (await reportJson(c)).datanodes.some((d) => d.id === 'dn3' && d.state === 'dead'), 30_000, 'dn3 to be dead')
  await mustLoam(c, ['volume', 'attach', 'db', '--node', 'dn1', '--force'])
  const second = await volumeMount(t, c, 'db', 'dn1')
  const out = await py(`
import sqlite3
db = sqlite3.connect('${second.dir}/app.db')
print(db.execute('pragma integrity_check').fetchone()[0])
print(db.execute('select count(*), min(id), max(id) from t').fetchone())
with db:
    db.execute("insert into t (v) values ('after the move')")
print(db.execute('select count(*) from t').fetchone()[0])
`)
  t.deepEqual(out.trim().split('\n'), ['ok', '(5000, 1, 5000)', '5001'])
})

test('a volume survives a namenode restart: record, attachment, usage and data', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'keep', '--size', '16MiB', '--replication', '3'])
  await mustLoam(c, ['volume', 'attach', 'keep', '--node', 'dn1'])
  const m = await volumeMount(t, c, 'keep', 'dn1')
  await sh(`head -c 3000000 /dev/urandom > ${m.dir}/blob && sync ${m.dir}/blob`)
  const digest = (await sh(`sha256sum < ${m.dir}/blob`)).stdout
  const before = await inspect(c, 'keep')
  await m.unmount()
  await c.killNamenode()
  await c.restartNamenode()
  await waitFor(async () => (await c.loam(['volume', 'inspect', 'keep'])).code === 0, 30_000, 'the volume to be listed again')
  const after = await inspect(c, 'keep')
  t.is(after.usedBytes, before.usedBytes)
  t.is(after.epoch, before.epoch)
  t.is(after.attachedNode, 'dn1')
  await waitFor(async () => (await c.loam(['fs', 'cat', '/volumes/keep/blob'])).code === 0, 30_000, 'the data to be readable (safe mode over)')
  const again = await volumeMount(t, c, 'keep', 'dn1')
  t.is((await sh(`sha256sum < ${again.dir}/blob`)).stdout, digest)
})

test('snapshots: a point-in-time, read-only copy sharing blocks; later writes copy only what they change; restore makes a new volume', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'snap', '--size', '64MiB', '--replication', '2', '--block-size', '1MiB'])
  await mustLoam(c, ['volume', 'attach', 'snap', '--node', 'dn1'])
  const m = await volumeMount(t, c, 'snap', 'dn1')
  await sh(`head -c 3500000 /dev/urandom > ${m.dir}/big && echo small > ${m.dir}/small && mkdir ${m.dir}/d && echo deep > ${m.dir}/d/deep && ln ${m.dir}/small ${m.dir}/d/hard && ln -s ../small ${m.dir}/d/soft && sync`)
  const before = (await sh(`cd ${m.dir} && sha256sum big small d/deep d/hard && readlink d/soft`)).stdout
  const liveBlocks = (await c.client().getBlockLocations('/volumes/snap/big', 0, 0)).blocks.map((b) => b.block!.id)

  t.regex(await mustLoam(c, ['volume', 'snapshot', 'snap', 's1']), /snap@s1: .*read-only under \/\.snapshots\/snap\/s1/)
  const snapBlocks = (await c.client().getBlockLocations('/.snapshots/snap/s1/big', 0, 0)).blocks.map((b) => b.block!.id)
  t.deepEqual(snapBlocks, liveBlocks, 'the snapshot names the same blocks: nothing was copied')

  // Later writes: in place in one block, an append, a truncate of another file, a removal, a new file.
  await py(`
import os
fd = os.open('${m.dir}/big', os.O_RDWR)
os.pwrite(fd, b'X' * 5000, 1024 * 1024 + 100)
os.pwrite(fd, b'tail', 3500000)
os.fsync(fd); os.close(fd)
os.truncate('${m.dir}/d/deep', 2)
os.remove('${m.dir}/d/hard')
open('${m.dir}/new', 'w').write('new')
`)
  const after = (await c.client().getBlockLocations('/volumes/snap/big', 0, 0)).blocks.map((b) => b.block!.id)
  t.is(after[0], liveBlocks[0], 'an untouched block stays shared')
  t.not(after[1], liveBlocks[1], 'a changed block was copied first')
  t.is(after[2], liveBlocks[2])

  // The snapshot, read through a whole-filesystem mount, is as it was, and read-only.
  const whole = await mountCluster(t, c)
  const s1 = `${whole.dir}/.snapshots/snap/s1`
  t.is((await sh(`cd ${s1} && sha256sum big small d/deep d/hard && readlink d/soft`)).stdout, before)
  t.is((await sh(`ls ${s1}`)).stdout.split('\n').filter(Boolean).sort().join(','), 'big,d,small')
  t.is((await sh(`stat -c %h ${s1}/small`)).stdout.trim(), '2', 'hard links stay links in the snapshot')
  await t.throwsAsync(sh(`echo x > ${s1}/small`), { message: /Read-only file system/ })
  await t.throwsAsync(sh(`rm ${s1}/big`), { message: /Read-only file system/ })
  const listed = JSON.parse(await mustLoam(c, ['volume', 'snapshots', 'snap', '--json'])) as Array<{ name: string; usedBytes: number }>
  t.deepEqual(listed.map((x) => x.name), ['s1'])
  t.is(listed[0]!.usedBytes, 3500000 + 6 + 5)

  // Restore into a new volume: the snapshot's contents, writable there, the snapshot unchanged.
  await mustLoam(c, ['volume', 'restore', 'snap', 's1', '--to', 'snap-copy'])
  await mustLoam(c, ['volume', 'attach', 'snap-copy', '--node', 'dn2'])
  const copy = await volumeMount(t, c, 'snap-copy', 'dn2')
  t.is((await sh(`cd ${copy.dir} && sha256sum big small d/deep d/hard && readlink d/soft`)).stdout, before)
  await sh(`echo changed > ${copy.dir}/small`)
  t.is((await sh(`cat ${s1}/small`)).stdout, 'small\n')
  t.is((await inspect(c, 'snap-copy')).usedBytes, 3500000 + 8 + 5)

  // Removing the snapshot frees what only it named; the live volume keeps its blocks.
  await mustLoam(c, ['volume', 'snapshot', 'rm', 'snap', 's1'])
  t.deepEqual(JSON.parse(await mustLoam(c, ['volume', 'snapshots', 'snap', '--json'])), [])
  t.is((await c.loam(['fs', 'cat', '/volumes/snap/small'])).stdout.toString(), 'small\n')
  const fsck = await c.loam(['fsck', '/volumes', '--json'])
  t.is(fsck.code, 0, fsck.stderr)
})

test('a snapshot is refused while a file of the volume is being written, and for bad names', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'busy', '--size', '16MiB', '--replication', '2'])
  await mustLoam(c, ['volume', 'attach', 'busy', '--node', 'dn1'])
  const m = await volumeMount(t, c, 'busy', 'dn1')
  const holder = sh(`python3 -c "
import os, sys, time
fd = os.open('${m.dir}/open', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'x' * 100000); os.fsync(fd)
print('ready', flush=True)
time.sleep(6)
os.close(fd)
"`)
  await waitFor(async () => (await c.client().stat('/volumes/busy/open').catch(() => undefined))?.lengthBytes === 100000, 20_000, 'the file to be written')
  const refused = await c.loam(['volume', 'snapshot', 'busy', 's'])
  t.is(refused.code, 1)
  t.regex(refused.stderr, /open is being written/)
  await holder
  await mustLoam(c, ['volume', 'snapshot', 'busy', 's'])
  const bad = await c.loam(['volume', 'snapshot', 'busy', 'Bad Name'])
  t.regex(bad.stderr, /snapshot name 'Bad Name' must match/)
  const again = await c.loam(['volume', 'snapshot', 'busy', 's'])
  t.regex(again.stderr, /volume busy has a snapshot s/)
})

test('a volume quota learns a new size before it refuses a write, asking at most once a refresh interval', async (t) => {
  let sizeBytes = 100
  let fetches = 0
  let nowMs = 10 * VOLUME_SIZE_REFRESH_MS
  const quota = new VolumeQuota('v', 100, 0, async () => (fetches++, sizeBytes), () => nowMs)
  const write = (bytes: number): Promise<void> => quota.retryOnResize(async () => quota.grow(bytes))
  await write(100)
  t.is(fetches, 0, 'a write that fits asks nothing')
  await t.throwsAsync(write(1), { instanceOf: LoamError, message: /volume v is full: 100 of 100 bytes used/ })
  t.is(fetches, 1, 'asked once before refusing')
  sizeBytes = 200
  await t.throwsAsync(write(1), { message: /volume v is full/ })
  t.is(fetches, 1, 'not asked again within the interval')
  nowMs += VOLUME_SIZE_REFRESH_MS
  await write(1)
  t.is(fetches, 2)
  t.is(quota.used, 101)
  sizeBytes = 150
  nowMs += VOLUME_SIZE_REFRESH_MS
  await t.throwsAsync(write(100), { message: /101 of 150 bytes used/ }, 'a shrink is learnt as well')
  t.is(fetches, 3)
  t.is(quota.used, 101)
  await write(49)
  nowMs += VOLUME_SIZE_REFRESH_MS
  await Promise.all([t.throwsAsync(write(1)), t.throwsAsync(write(2))])
  t.is(fetches, 4, 'refusals at once share one question')
})

test('the node a volume mount runs on: the one live datanode at an address of this machine', (t) => {
  const datanodes = [
    { id: 'dn1', address: '10.0.0.1:9866', state: 'live' },
    { id: 'dn2', address: '10.0.0.2:9866', state: 'live' },
    { id: 'dn3', address: '10.0.0.2:9867', state: 'dead' },
    { id: 'dn4', address: '[fd00::4]:9866', state: 'live' },
  ]
  t.deepEqual(nodesAt(datanodes, new Set(['127.0.0.1', '10.0.0.2'])), ['dn2'])
  t.deepEqual(nodesAt(datanodes, new Set(['fd00::4'])), ['dn4'])
  t.deepEqual(nodesAt(datanodes, new Set(['10.0.0.9'])), [])
})

test('a live volume mount learns a resize: refused at the old size, the same mount takes the write once the volume grew', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'grow', '--size', '1MiB', '--replication', '2'])
  await mustLoam(c, ['volume', 'attach', 'grow', '--node', 'dn2'])
  // Without --node nor LOAM_NODE_ID, three datanodes on this machine leave the mount no way to tell which it is.
  await t.throwsAsync(mountCluster(t, c, { extraArgs: ['--volume', 'grow'] }), { message: /datanodes dn1, dn2, dn3 are all on this machine; say which node this is with --node ID/ })
  // LOAM_NODE_ID names it, as it does for a task.
  const m = await mountCluster(t, c, { env: { LOAM_NODE_ID: 'dn2' }, extraArgs: ['--volume', 'grow'] })
  const marks = await localTempDir(t)
  const writer = sh(`python3 - <<'PY'
import os, time, json
fd = os.open('${m.dir}/f', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'a' * ${MiB}); os.fsync(fd)
def more():
    try:
        os.write(fd, b'b' * 4096)
        return 'ok'
    except OSError as e:
        return e.errno
full = more()
open('${marks}/full', 'w').close()
start = time.time()
while not os.path.exists('${marks}/grown') and time.time() - start < 60:
    time.sleep(0.05)
# The mount asks for the size again at most once a second: a write refused just before may be refused once more.
tries = [more()]
while tries[-1] != 'ok' and time.time() - start < 60:
    time.sleep(0.2)
    tries.append(more())
os.fsync(fd)
os.close(fd)
print(json.dumps({'full': full, 'tries': tries}))
PY`)
  await waitFor(() => existsSync(path.join(marks, 'full')), 60_000, 'the volume to be full')
  await mustLoam(c, ['volume', 'resize', 'grow', '--size', '2MiB'])
  await writeFile(path.join(marks, 'grown'), '')
  const { full, tries } = JSON.parse((await writer).stdout) as { full: 'ok' | number; tries: Array<'ok' | number> }
  t.is(full, 122, 'EDQUOT at the old size')
  t.is(tries[tries.length - 1], 'ok', `the same mount takes the write once the volume grew (${tries.length} tries)`)
  t.true(tries.slice(0, -1).every((x) => x === 122), `refused only for quota: ${JSON.stringify([...new Set(tries)])}`)
  t.is((await inspect(c, 'grow')).usedBytes, MiB + 4096)
  const data = (await c.loam(['fs', 'cat', '/volumes/grow/f'])).stdout
  t.true(data.equals(Buffer.concat([Buffer.alloc(MiB, 'a'), Buffer.alloc(4096, 'b')])), 'everything written is there')
})

test('fencing: detached and attached to another node, the volume fences its old holder, whose writes in place are refused from then on', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  await mustLoam(c, ['volume', 'create', 'moving', '--size', '32MiB', '--replication', '2'])
  await mustLoam(c, ['volume', 'attach', 'moving', '--node', 'dn1'])
  const old = await volumeMount(t, c, 'moving', 'dn1')
  const marks = await localTempDir(t)
  const PAGES = 32
  // The old holder writes its pages, then rewrites them in place, each synced: the file's length never moves again.
  const writer = sh(`python3 - <<'PY'
${pageWriter(`${old.dir}/log`, `${marks}/moved`, { slots: PAGES, rewriting: `${marks}/rewriting` })}
print(json.dumps({'results': results, 'after': after}))
PY`)
  await waitFor(() => existsSync(path.join(marks, 'rewriting')), 60_000, 'the old holder to rewrite in place')
  await mustLoam(c, ['volume', 'detach', 'moving'])
  await mustLoam(c, ['volume', 'attach', 'moving', '--node', 'dn2'])
  await writeFile(path.join(marks, 'moved'), '')
  const { results, after } = JSON.parse((await writer).stdout) as { results: Array<'ok' | number>; after: Array<'ok' | number> }
  const firstRefused = results.findIndex((r) => r !== 'ok')
  const synced = firstRefused < 0 ? results.length : firstRefused
  t.true(synced >= 20, `rewrites went through before the move: ${synced}`)
  t.true([...results.slice(synced), ...after].every((r) => r !== 'ok'), `no write of the old holder succeeds once one was refused: ${JSON.stringify(after)}`)
  // The new holder sees, in every page, the last version the old holder synced there, or a later one it was refused (never a mix).
  const versions = Array.from({ length: PAGES }, (_, p) => [p])
  results.forEach((r, i) => {
    const k = PAGES + i
    if (i < synced) versions[k % PAGES] = [k]
    else versions[k % PAGES]!.push(k)
  })
  after.forEach((_, i) => versions[(PAGES + results.length + i) % PAGES]!.push(PAGES + results.length + i))
  const fresh = await volumeMount(t, c, 'moving', 'dn2')
  const pages = JSON.parse(await py(`
import json
data = open('${fresh.dir}/log', 'rb').read()
pages = []
for p in range(len(data) // 4096):
    page = data[p * 4096:(p + 1) * 4096]
    pages.append(int(page[:8]) if page == page[:8] * 512 else None)
print(json.dumps(pages))
`)) as Array<number | null>
  t.is(pages.length, PAGES)
  pages.forEach((k, p) => t.true(k !== null && versions[p]!.includes(k), `page ${p} holds ${k}, expected one of ${JSON.stringify(versions[p])}`))
  await sh(`echo new > ${fresh.dir}/by-new-holder`)
})

const NOBODY = 65534

test('only its owner or the superuser attaches, mounts, resizes, snapshots or removes a volume: another user is told in one line', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  // The cluster secret, readable by the other user alone.
  const scratch = await localTempDir(t)
  const secret = path.join(scratch, 'secret')
  await copyFile(c.record.secretFile, secret)
  await chown(secret, NOBODY, NOBODY)
  await chown(scratch, NOBODY, NOBODY)
  const nobody = (args: string[]): ReturnType<TestCluster['loam']> => c.loam(args, { env: { LOAM_SECRET_FILE: secret }, as: { uid: NOBODY, gid: NOBODY } })
  const refused = async (args: string[], action: string): Promise<void> => {
    const r = await nobody(args)
    t.is(r.code, 1, args.join(' '))
    t.regex(r.stderr, new RegExp(`^loam: volume theirs: only its owner root or the superuser may ${action} it \\(this is user nobody\\)\\n$`), args.join(' '))
  }
  await mustLoam(c, ['volume', 'create', 'theirs', '--size', '1MiB'])
  await refused(['volume', 'attach', 'theirs', '--node', 'dn1'], 'attach \\(and so mount\\)')
  await mustLoam(c, ['volume', 'attach', 'theirs', '--node', 'dn1'])
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loam-mnt-'))
  await chown(dir, NOBODY, NOBODY)
  t.teardown(async () => {
    await run('fusermount', ['-uz', dir]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })
  await refused(['mount', dir, '--volume', 'theirs', '--node', 'dn1'], 'attach \\(and so mount\\)')
  await refused(['volume', 'resize', 'theirs', '--size', '2MiB'], 'resize')
  await refused(['volume', 'snapshot', 'theirs', 's1'], 'snapshot')
  await refused(['volume', 'rm', 'theirs', '--force'], 'remove')
  const v = await inspect(c, 'theirs')
  t.deepEqual([v.sizeBytes, v.attachedNode, v.epoch], [MiB, 'dn1', 1], 'nothing changed')
  t.deepEqual(JSON.parse(await mustLoam(c, ['volume', 'snapshots', 'theirs', '--json'])), [])

  // Their own volume, the same user may do all of it.
  for (const args of [
    ['volume', 'create', 'mine', '--size', '1MiB'],
    ['volume', 'attach', 'mine', '--node', 'dn2'],
    ['volume', 'resize', 'mine', '--size', '2MiB'],
    ['volume', 'snapshot', 'mine', 's1'],
    ['volume', 'snapshot', 'rm', 'mine', 's1'],
    ['volume', 'detach', 'mine'],
    ['volume', 'rm', 'mine'],
  ]) {
    const r = await nobody(args)
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  }
  t.deepEqual((JSON.parse(await volumes(c)) as VolumeJson[]).map((x) => x.name), ['theirs'])
})
