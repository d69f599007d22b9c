// Persistent volumes through real processes: the `loam volume` commands, the
// quota at its edge through a volume mount, exclusive attach, fencing of an
// old holder, and a database that survives its node's death.
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { localTempDir, MiB, reportJson } from './helpers/data.js'
import { mountCluster, sh, type TestMount } from './helpers/mount.js'

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
import os, time, json
fd = os.open('${old.dir}/log', os.O_RDWR | os.O_CREAT, 0o644)
results, after = [], []
def page(i):
    try:
        os.pwrite(fd, (b'%08d' % i) * 512, i * 4096)
        os.fsync(fd)
        return 'ok'
    except OSError as e:
        return e.errno
start = time.time()
while not os.path.exists('${moved}') and time.time() - start < 60:
    results.append(page(len(results)))
    time.sleep(0.02)
for _ in range(5):
    after.append(page(len(results) + len(after)))
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
