// Failures of datanodes and writers, through real processes and kill -9: a
// datanode that dies (its blocks re-replicated, its excess replicas removed when
// it returns), a datanode killed in the middle of a write (pipeline recovery),
// and a writer killed in the middle of a write (lease recovery). Each test has a
// cluster of its own; they run one at a time (this machine has few cores).
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { fsck } from '../src/client/fsck.js'
import { LoamError } from '../src/rpc/errors.js'
import { sleep, startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { fsckJson, KiB, localTempDir, MiB, pattern, reportJson, sha256, type FsckJson } from './helpers/data.js'
import { clusterLogs, eventually, nodeDataDir, readAll, replicaFiles, runLoam, showLogsOnFailure, type ReplicaFile } from './helpers/failures.js'
import { mountCluster } from './helpers/mount.js'

async function allReplicaFiles(c: TestCluster): Promise<Array<ReplicaFile & { node: string }>> {
  const out: Array<ReplicaFile & { node: string }> = []
  for (const n of c.record.nodes) for (const r of await replicaFiles(nodeDataDir(c, n.id!))) out.push({ ...r, node: n.id! })
  return out
}

/** Every block healthy with exactly `want` replicas on distinct nodes, none of them on `not`. */
function fullyReplicated(f: { code: number; json: FsckJson }, wantBlocks: number, want: number, not?: string): boolean {
  return (
    f.code === 0 &&
    f.json.healthy &&
    f.json.blocks.length === wantBlocks &&
    f.json.blocks.every((b) => b.state === 'HEALTHY' && b.replicas.length === want && new Set(b.replicas.map((r) => r.node)).size === want && !b.replicas.some((r) => r.node === not))
  )
}

/** Each block of the listing has exactly `want` finalized replica files on the nodes' disks, and there is no other replica file. */
function onDiskExactly(files: ReplicaFile[], blockIds: number[], want: number): boolean {
  if (files.length !== blockIds.length * want) return false
  return blockIds.every((id) => files.filter((f) => f.id === id && f.state === 'finalized').length === want)
}

async function catEquals(t: ExecutionContext, c: TestCluster, p: string, data: Buffer, what: string): Promise<void> {
  for (const env of [{}, { LOAM_SHORT_CIRCUIT: '0' }]) {
    const r = await c.loam(['fs', 'cat', p], { env })
    t.is(r.code, 0, `${what}: cat ${p} ${JSON.stringify(env)}: ${r.stderr}`)
    t.is(r.stdout.length, data.length, `${what}: cat ${p} ${JSON.stringify(env)}: length`)
    t.is(sha256(r.stdout), sha256(data), `${what}: cat ${p} ${JSON.stringify(env)}: bytes`)
  }
}

test.serial('a datanode killed -9 goes dead, its blocks get 3 live replicas again; when it returns the excess replicas go', async (t) => {
  t.timeout(150_000)
  const c = await startCluster(t, { nodes: 4, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const data = pattern(5 * MiB + 12_345, 101)
  const put = await runLoam(['fs', 'put', '-', '/dead/f'], { input: data, env: c.env })
  t.is(put.code, 0, put.stderr)
  const before = await fsckJson(c, '/dead')
  t.true(fullyReplicated(before, 6, 3), `healthy after the put: ${JSON.stringify(before.json)}`)
  const blockIds = before.json.blocks.map((b) => b.id)

  // The victim: the node holding the most replicas of the file.
  const held = new Map<string, number>()
  for (const b of before.json.blocks) for (const r of b.replicas) held.set(r.node, (held.get(r.node) ?? 0) + 1)
  const [victim] = [...held.entries()].sort((a, b) => b[1] - a[1])[0]!
  const vi = c.record.nodes.findIndex((n) => n.id === victim)
  await c.killNode(vi)

  const dead = await eventually(() => reportJson(c), (r) => r.datanodes.find((d) => d.id === victim)?.state === 'dead', 30_000, `loam report to show ${victim} dead`)
  t.deepEqual(dead.datanodes.filter((d) => d.id !== victim).map((d) => d.state), ['live', 'live', 'live'], 'the other nodes stay live')

  const healed = await eventually(() => fsckJson(c, '/dead'), (f) => fullyReplicated(f, 6, 3, victim), 60_000, `every block to have 3 live replicas off ${victim}`)
  for (const b of healed.json.blocks) {
    t.is(b.state, 'HEALTHY')
    t.is(new Set(b.replicas.map((r) => r.node)).size, 3, `block ${b.id}: 3 distinct nodes`)
    t.false(b.replicas.some((r) => r.node === victim), `block ${b.id}: no replica counted on the dead ${victim}`)
  }
  t.deepEqual(healed.json.blocks.map((b) => b.id), blockIds, 'the same blocks')
  await catEquals(t, c, '/dead/f', data, 'with the node dead')

  await c.restartNode(vi)
  const back = await reportJson(c)
  t.is(back.datanodes.find((d) => d.id === victim)?.state, 'live', `${victim} is live again`)

  // The returning node brings its old replicas back: each block has 4 until the excess goes.
  const settled = await eventually(
    async () => ({ fsck: await fsckJson(c, '/dead'), files: await allReplicaFiles(c) }),
    (s) => fullyReplicated(s.fsck, 6, 3) && onDiskExactly(s.files, blockIds, 3),
    60_000,
    'exactly 3 replicas of each block, in fsck and on the disks',
  )
  for (const b of settled.fsck.json.blocks) t.is(b.replicas.length, 3, `block ${b.id}: exactly 3 replicas in fsck`)
  t.is(settled.files.length, blockIds.length * 3, 'replica files on the disks = blocks x 3')
  for (const f of settled.files) t.true(blockIds.includes(f.id), `${f.file} belongs to the file`)
  await catEquals(t, c, '/dead/f', data, 'after the node returned')
})

test.serial('a datanode killed -9 in the middle of a write: the writer goes on without it, the file is whole, replication is restored', async (t) => {
  t.timeout(150_000)
  const c = await startCluster(t, { nodes: 4, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const client = c.client({ timeoutMs: 10_000 })
  const size = 4 * MiB + 200_000
  const data = pattern(size, 202)
  const PIECE = 128 * KiB
  const killAtBytes = 2 * MiB + 3 * PIECE
  const w = await client.create('/pipe/f')
  let victim: string | undefined
  let recoveredBlock: number | undefined
  for (let pos = 0; pos < size; ) {
    const piece = data.subarray(pos, Math.min(size, pos + PIECE))
    await w.write(piece)
    pos += piece.length
    await w.sync()
    if (victim === undefined && pos >= killAtBytes) {
      // The block being written now: the nodes of its pipeline hold it in rbw/.
      const { blocks, status } = await client.getBlockLocations('/pipe/f', 0, 0)
      t.true(status!.underConstruction, 'the file is open for writing')
      const current = blocks[blocks.length - 1]!.block!
      recoveredBlock = current.id
      const holders = c.record.nodes.filter((n) => existsSync(path.join(nodeDataDir(c, n.id!), 'current', 'rbw', `blk_${current.id}`)))
      t.is(holders.length, 3, `the block being written (${current.id}) is on 3 nodes' disks: ${holders.map((n) => n.id).join(', ')}`)
      victim = holders[0]!.id!
      await c.killNode(c.record.nodes.findIndex((n) => n.id === victim))
    }
    await sleep(20)
  }
  const st = await w.close()
  t.is(st.lengthBytes, size, 'the closed file has every byte')
  t.false(st.underConstruction)
  t.truthy(victim)
  t.true((await readAll(client, '/pipe/f')).equals(data), 'the file reads back identical (client library)')
  await catEquals(t, c, '/pipe/f', data, 'after the write')
  const nnLog = await readFile(path.join(c.record.namenode.data, 'log'), 'utf8')
  t.true(nnLog.includes('write pipeline recovered'), 'the namenode log shows the pipeline was recovered (the kill hit the write)')

  const healed = await eventually(() => fsckJson(c, '/pipe'), (f) => fullyReplicated(f, 5, 3, victim), 60_000, `every block to have 3 live replicas off ${victim}`)
  const blockIds = healed.json.blocks.map((b) => b.id)
  t.true(blockIds.includes(recoveredBlock!))

  // The victim returns with a stale replica of the block it was writing (an older generation): it is deleted, never served;
  // the replicas of the earlier blocks it holds are excess and go too.
  const vi = c.record.nodes.findIndex((n) => n.id === victim)
  await c.restartNode(vi)
  const settled = await eventually(
    async () => ({ fsck: await fsckJson(c, '/pipe'), files: await allReplicaFiles(c) }),
    (s) => fullyReplicated(s.fsck, 5, 3) && onDiskExactly(s.files, blockIds, 3),
    60_000,
    'exactly 3 finalized replicas of each block, and no stale one left',
  )
  t.false(settled.files.some((f) => f.node === victim && f.state === 'rbw'), `no rbw replica left on ${victim}`)
  await catEquals(t, c, '/pipe/f', data, 'after the victim returned')
})

/** Rewrites random pages of a file in place, each with an fsync, saying which it tries and which returned, until one fails. */
const PAGE_REWRITER = `
import os, sys, random
random.seed(int(sys.argv[2]))
PAGES = 256
def page(i, v):
    return (b'%07d:%07d\\n' % (i, v)) * 256
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
for i in range(PAGES):
    os.pwrite(fd, page(i, 0), i * 4096)
os.fsync(fd)
print('ready', flush=True)
v = 0
try:
    while True:
        v += 1
        i = random.randrange(PAGES)
        print('try %d %d' % (i, v), flush=True)
        os.pwrite(fd, page(i, v), i * 4096)
        os.fsync(fd)
        print('ok %d %d' % (i, v), flush=True)
except OSError as e:
    print('error %d' % e.errno, flush=True)
try:
    os.close(fd)
except OSError:
    pass
`

test.serial('a datanode killed -9 while pages are rewritten in place with fsync (one replica): after recovery every page whose fsync returned is there', async (t) => {
  t.timeout(120_000)
  const c = await startCluster(t, { nodes: 1, racks: 1, replication: 1, heartbeat: '500ms', deadAfter: '3s', leaseLimit: '3s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const m = await mountCluster(t, c, { timeout: '5s' })
  const writer = spawn('python3', ['-c', PAGE_REWRITER, `${m.dir}/pages`, '11'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  writer.stdout.on('data', (b: Buffer) => (out += b.toString()))
  writer.stderr.on('data', (b: Buffer) => (err += b.toString()))
  const exited = new Promise<number | null>((resolve) => writer.once('close', resolve))
  t.teardown(() => {
    if (writer.exitCode === null) writer.kill('SIGKILL')
  })
  await waitFor(() => out.includes('ready') || writer.exitCode !== null, 30_000, 'the file to be written')
  await waitFor(() => (out.match(/^ok /gm)?.length ?? 0) >= 200 || writer.exitCode !== null, 30_000, 'pages to be rewritten')
  await c.killNode(0)
  t.is(await exited, 0, err)
  const lines = out.trim().split('\n')
  t.regex(lines[lines.length - 1] ?? '', /^error /, 'the writer saw its write fail once the only replica was gone')

  // What each page must hold: its last version whose fsync returned; the write that failed may have landed or not.
  const want = new Map<number, number>()
  let pending: number | undefined
  for (const line of lines) {
    const [what, i, v] = line.split(' ')
    if (what === 'try') pending = Number(i)
    if (what === 'ok') {
      want.set(Number(i), Number(v))
      pending = undefined
    }
  }
  await c.restartNode(0)
  await m.unmount()
  const stat = async (): Promise<{ openForWrite: boolean }> => JSON.parse((await c.loam(['fs', 'stat', '/pages', '--json'])).stdout.toString()) as { openForWrite: boolean }
  await eventually(stat, (s) => !s.openForWrite, 45_000, 'lease recovery to close the file')
  const cat = await c.loam(['fs', 'cat', '/pages'])
  t.is(cat.code, 0, cat.stderr)
  t.is(cat.stdout.length, 256 * 4096, 'no page was cut away')
  const wrong: string[] = []
  for (let i = 0; i < 256; i++) {
    if (i === pending) continue
    const expect = Buffer.from(`${String(i).padStart(7, '0')}:${String(want.get(i) ?? 0).padStart(7, '0')}\n`.repeat(256))
    if (!cat.stdout.subarray(i * 4096, (i + 1) * 4096).equals(expect)) wrong.push(`page ${i} (want version ${want.get(i) ?? 0})`)
  }
  t.deepEqual(wrong, [], `${want.size} pages were rewritten and synced before the kill`)
})

/** A child process that writes, syncs, writes more, then kills itself: a writer that dies mid-write. */
const DYING_WRITER = `
import { writeFileSync } from 'node:fs'
const [clientUrl, dataUrl, addressUrl, namenode, file, out, synced, written, seed] = process.argv.slice(2)
const { LoamClient } = await import(clientUrl)
const { pattern } = await import(dataUrl)
const { parseAddress } = await import(addressUrl)
const client = new LoamClient({ namenode: parseAddress(namenode), timeoutMs: 10000 })
const data = pattern(Number(written), Number(seed))
const w = await client.create(file)
await w.write(data.subarray(0, Number(synced)))
await w.sync()
await w.write(data.subarray(Number(synced)))
await new Promise((r) => setTimeout(r, 200))
writeFileSync(out, 'wrote ' + written)
process.kill(process.pid, 'SIGKILL')
`

test.serial('a writer killed -9 mid-write: after the lease limit its file is closed at a synced-or-longer prefix, and can be written again', async (t) => {
  t.timeout(150_000)
  const c = await startCluster(t, { nodes: 4, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', leaseLimit: '3s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const tmp = await localTempDir(t)
  const script = path.join(tmp, 'dying-writer.mjs')
  await writeFile(script, DYING_WRITER)
  const synced = 2 * MiB + MiB / 2
  const written = synced + 300 * KiB + 123
  const seed = 303
  const data = pattern(written, seed)
  const out = path.join(tmp, 'out')
  const url = (p: string): string => new URL(p, import.meta.url).href
  const child = spawn(process.execPath, [script, url('../src/client/client.js'), url('./helpers/data.js'), url('../src/common/address.js'), c.namenode, '/lease/f', out, String(synced), String(written), String(seed)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let childErr = ''
  child.stderr.on('data', (b: Buffer) => (childErr += b.toString()))
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let timer: NodeJS.Timeout | undefined
  const how = await Promise.race([exited, new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still running'), 60_000)))])
  clearTimeout(timer)
  t.is(how, 'SIGKILL', `the writer died by its own kill -9: ${childErr}`)
  t.is(await readFile(out, 'utf8').catch(() => ''), `wrote ${written}`, 'the writer synced and wrote everything before dying')

  const stat = async (): Promise<{ openForWrite: boolean; length: number }> => {
    const r = await c.loam(['fs', 'stat', '/lease/f', '--json'])
    if (r.code !== 0) throw new Error(`stat exited ${r.code}: ${r.stderr}`)
    return JSON.parse(r.stdout.toString()) as { openForWrite: boolean; length: number }
  }
  const closed = await eventually(stat, (s) => !s.openForWrite, 45_000, 'the namenode to close the dead writer\'s file')
  t.true(closed.length >= synced, `recovered length ${closed.length} >= the ${synced} bytes synced`)
  t.true(closed.length <= written, `recovered length ${closed.length} <= the ${written} bytes written`)
  const cat = await c.loam(['fs', 'cat', '/lease/f'], { env: { LOAM_SHORT_CIRCUIT: '0' } })
  t.is(cat.code, 0, cat.stderr)
  t.is(cat.stdout.length, closed.length, 'cat returns the recovered length')
  t.true(cat.stdout.equals(data.subarray(0, closed.length)), 'the recovered content is a prefix of what was written')
  await eventually(() => fsckJson(c, '/lease'), (f) => f.code === 0 && f.json.healthy && f.json.blocks.length === Math.ceil(closed.length / MiB), 60_000, 'fsck of the recovered file to be healthy')

  // The file can be written again: create with overwrite, and the new content reads back.
  const client = c.client({ timeoutMs: 10_000 })
  const again = pattern(MiB + 4321, 304)
  const w = await client.create('/lease/f', { overwrite: true })
  await w.write(again)
  const st = await w.close()
  t.is(st.lengthBytes, again.length)
  t.true((await readAll(client, '/lease/f')).equals(again), 'the rewritten file reads back')
  t.is((await stat()).openForWrite, false)
})

test.serial('a live writer idle for longer than the lease limit keeps its file: lease recovery is only for writers that died', async (t) => {
  t.timeout(90_000)
  const c = await startCluster(t, { nodes: 3, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', leaseLimit: '3s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const client = c.client({ timeoutMs: 10_000 })
  const data = pattern(MiB + 200 * KiB, 305)
  const w = await client.create('/idle/f')
  await w.write(data.subarray(0, 300 * KiB))
  await w.sync()
  // The client process is alive the whole time (its lease is renewed by the library); it just has nothing to write for a while.
  await sleep(12_000)
  let closeError: unknown
  try {
    await w.write(data.subarray(300 * KiB))
    await w.close()
  } catch (err) {
    closeError = err
  }
  t.is(closeError, undefined, `the live writer could finish its file: ${closeError instanceof LoamError ? `${closeError.code}: ${closeError.message}` : String(closeError)}`)
  if (closeError === undefined) t.true((await readAll(client, '/idle/f')).equals(data))
  await waitFor(async () => (await fsck(client, '/idle').catch(() => undefined))?.openForWrite === 0, 30_000, 'the file to be closed')
})
