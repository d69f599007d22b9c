// Real network faults: a cluster spread over test hosts (network namespaces on
// one bridge, addresses in 198.18.0.0/15), each role on its own address. A
// datanode is cut off and comes back; a client is cut off from the namenode.
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import type { ChildProcess } from 'node:child_process'
import { sleep, waitFor } from './helpers/cluster.js'
import { TestNetwork, type RunResult } from './helpers/netns.js'

const DATANODES = ['dn1', 'dn2', 'dn3', 'dn4'] as const
const RACKS: Record<string, string> = { dn1: '/r1', dn2: '/r1', dn3: '/r2', dn4: '/r2' }
const REPLICATION = 3
const BLOCK_SIZE = '1MiB'
/** A call from a cut-off client must return well within this; it exists only to fail a hang. */
const HANG_LIMIT_MS = 40_000
/** A datanode whose link returns re-registers within this long (its retry backoff and a connect timeout, with room). */
const LIVE_AFTER_PARTITION_MAX_MS = 25_000

interface Ready {
  rpc: string
  http: string
  pid: number
  id?: string
}

interface ReportJson {
  safemode: boolean
  datanodes: Array<{ id: string; address: string; rack: string; state: string; blocks: number }>
}

interface FsckJson {
  healthy: boolean
  blocks: Array<{ id: number; path: string; expected: number; replicas: Array<{ node: string }>; state: string }>
}

interface Cluster {
  net: TestNetwork
  namenode: Ready
  datanodes: Map<string, Ready & { data: string; child: ChildProcess }>
  env: NodeJS.ProcessEnv
}

let cluster: Cluster | undefined
let failed = false
const logs: string[] = []
const teardowns: Array<() => Promise<void> | void> = []

async function readReady(file: string, child: ChildProcess, log: string, what: string): Promise<Ready> {
  await waitFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${await readFile(log, 'utf8').catch(() => '')}`)
    }
    return (await readFile(file, 'utf8').catch(() => '')) !== ''
  }, 30_000, `${what} to write its ready file`)
  return JSON.parse(await readFile(file, 'utf8')) as Ready
}

function c(): Cluster {
  if (!cluster) throw new Error('the test network did not come up (see the before hook)')
  return cluster
}

/** `loam ...` from the client host. */
function loam(args: string[], opts: { input?: Buffer; limitMs?: number } = {}): Promise<RunResult> {
  return c().net.run('client', args, { env: c().env, ...opts })
}

async function loamJson<T>(args: string[]): Promise<T> {
  const r = await loam([...args, '--json', '--timeout', '5s'])
  // fsck exits 1 while unhealthy and still prints its report.
  if (r.stdout.length === 0) throw new Error(`loam ${args.join(' ')} printed nothing (exit ${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as T
}

const report = (): Promise<ReportJson> => loamJson<ReportJson>(['report'])
const fsck = (p: string): Promise<FsckJson> => loamJson<FsckJson>(['fsck', p])

/** Finalized replicas of these blocks on each datanode's disk. */
async function replicasOnDisk(blockIds: Set<number>): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const [id, dn] of c().datanodes) {
    let n = 0
    const finalized = path.join(dn.data, 'current', 'finalized')
    for (const sub of await readdir(finalized).catch(() => [])) {
      for (const f of await readdir(path.join(finalized, sub)).catch(() => [])) {
        const m = /^blk_(\d+)$/.exec(f)
        if (m && blockIds.has(Number(m[1]))) n++
      }
    }
    out.set(id, n)
  }
  return out
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)

/** A failing command's stderr is exactly one line, `loam: ...`, with no stack trace. */
function isOneLineError(r: RunResult): boolean {
  const text = r.stderr.trim()
  return text.startsWith('loam: ') && !text.includes('\n')
}

test.before(async () => {
  const net = await TestNetwork.create({ teardown: (fn) => teardowns.push(fn) }, ['nn', ...DATANODES, 'client'])
  const nnDir = path.join(net.dir, 'nn')
  await mkdir(nnDir)
  const nnLog = path.join(nnDir, 'log')
  logs.push(nnLog)
  const nnChild = net.spawn('nn', [
    'namenode', '--host', net.host('nn').address, '--port', '0', '--http-port', '0', '--data', path.join(nnDir, 'meta'),
    '--ready-file', path.join(nnDir, 'ready.json'), '--heartbeat', '1s', '--dead-after', '4s', '--replication', String(REPLICATION), '--block-size', BLOCK_SIZE,
  ], { log: nnLog })
  const namenode = await readReady(path.join(nnDir, 'ready.json'), nnChild, nnLog, 'the namenode')
  const datanodes: Cluster['datanodes'] = new Map()
  const starting = DATANODES.map((id) => {
    const dir = path.join(net.dir, id)
    const log = path.join(net.dir, `${id}.log`)
    logs.push(log)
    const address = net.host(id).address
    const child = net.spawn(id, [
      'datanode', '--namenode', namenode.rpc, '--host', address, '--advertise', address, '--data', path.join(dir, 'data'), '--id', id,
      '--rack', RACKS[id]!, '--port', '0', '--http-port', '0', '--ready-file', path.join(net.dir, `${id}.ready.json`),
    ], { log })
    return { id, dir, log, child }
  })
  for (const s of starting) {
    const ready = await readReady(path.join(net.dir, `${s.id}.ready.json`), s.child, s.log, `datanode ${s.id}`)
    datanodes.set(s.id, { ...ready, data: path.join(s.dir, 'data'), child: s.child })
  }
  cluster = { net, namenode, datanodes, env: { LOAM_NAMENODE: namenode.rpc } }
  await waitFor(async () => {
    const r = await report().catch(() => undefined)
    return r !== undefined && !r.safemode && r.datanodes.filter((d) => d.state === 'live').length === DATANODES.length
  }, 30_000, `${DATANODES.length} datanodes to be live`)
})

test.afterEach.always((t) => {
  if (!t.passed) failed = true
})

test.after.always(async () => {
  // The daemons' last words, before teardown removes them, when anything failed.
  if (failed || !cluster) for (const log of logs) console.error(`--- ${path.basename(log)}\n${(await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-30).join('\n')}`)
  for (const fn of teardowns.reverse()) await fn()
})

test.serial('every daemon listens on and advertises the address it was given, and blocks flow between hosts', async (t) => {
  const { net, namenode, datanodes } = c()
  t.is(namenode.rpc.split(':')[0], net.host('nn').address, 'the namenode ready file names its --host')
  for (const [id, dn] of datanodes) t.is(dn.rpc.split(':')[0], net.host(id).address, `${id} ready file names its --host`)

  // Nothing listens on loopback or the wildcard: each daemon's sockets are on its own address.
  for (const name of ['nn', ...DATANODES]) {
    const listening = (await net.exec(name, 'ss', ['-ltnH'])).split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)[3]!)
    t.true(listening.length >= 2, `${name} listens (rpc and http): ${listening.join(', ')}`)
    for (const a of listening) t.true(a.startsWith(`${net.host(name).address}:`), `${name} listens on ${a}, not on its address ${net.host(name).address}`)
  }

  const r = await report()
  t.deepEqual(r.datanodes.map((d) => d.id).sort(), [...DATANODES])
  for (const d of r.datanodes) {
    t.is(d.address, datanodes.get(d.id)!.rpc, `${d.id} is reported at the address it advertised`)
    t.false(d.address.startsWith('127.'), `${d.id} is reported at ${d.address}`)
    t.is(d.state, 'live')
  }

  const data = randomBytes(3 * 1024 * 1024 + 12345)
  const put = await loam(['fs', 'put', '-', '/across-hosts.bin', '--replication', String(REPLICATION), '--block-size', BLOCK_SIZE], { input: data })
  t.is(put.code, 0, put.stderr)
  const local = path.join(net.dir, 'across-hosts.bin')
  const get = await loam(['fs', 'get', '/across-hosts.bin', local])
  t.is(get.code, 0, get.stderr)
  t.true((await readFile(local)).equals(data), 'the file read back from another host is identical')
  const f = await fsck('/across-hosts.bin')
  t.true(f.healthy)
  t.is(f.blocks.length, 4)
  for (const b of f.blocks) t.is(b.replicas.length, REPLICATION, `block ${b.id} has ${REPLICATION} replicas`)
})

test.serial('a datanode cut off goes dead and its blocks re-replicate; back, its extra replicas go', async (t) => {
  const { net } = c()
  const data = randomBytes(4 * 1024 * 1024)
  const put = await loam(['fs', 'put', '-', '/cut-datanode.bin', '--replication', String(REPLICATION), '--block-size', BLOCK_SIZE], { input: data })
  t.is(put.code, 0, put.stderr)
  const before = await fsck('/cut-datanode.bin')
  t.true(before.healthy)
  const blockIds = new Set(before.blocks.map((b) => b.id))
  const expectedReplicas = blockIds.size * REPLICATION
  // The node holding the most replicas of the file is the one cut off.
  const held = new Map<string, number>()
  for (const b of before.blocks) for (const r of b.replicas) held.set(r.node, (held.get(r.node) ?? 0) + 1)
  const [victim, victimReplicas] = [...held.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]!
  t.true(victimReplicas > 0)
  t.is(sum(await replicasOnDisk(blockIds)), expectedReplicas)

  await net.cut(victim, 'blackhole')
  const cutAt = Date.now()
  await waitFor(async () => (await report()).datanodes.find((d) => d.id === victim)?.state === 'dead', 30_000, `${victim} to be reported dead`)
  const deadMs = Date.now() - cutAt
  await waitFor(async () => {
    const f = await fsck('/cut-datanode.bin')
    return f.healthy && f.blocks.every((b) => b.replicas.length === REPLICATION && !b.replicas.some((r) => r.node === victim))
  }, 60_000, `every block to have ${REPLICATION} replicas on live nodes other than ${victim}`)
  const rereplicatedMs = Date.now() - cutAt
  // Readable meanwhile, from the remaining nodes.
  const cat = await loam(['fs', 'cat', '/cut-datanode.bin'])
  t.is(cat.code, 0, cat.stderr)
  t.true(cat.stdout.equals(data), 'the file reads back while a replica holder is cut off')
  // The cut-off node still holds its old replicas on disk: the extras the namenode must remove once it is back.
  t.is(sum(await replicasOnDisk(blockIds)), expectedReplicas + victimReplicas)

  await net.restore(victim)
  const restoredAt = Date.now()
  await waitFor(async () => (await report()).datanodes.find((d) => d.id === victim)?.state === 'live', 60_000, `${victim} to be live again after its link was restored`)
  const liveMs = Date.now() - restoredAt
  await waitFor(async () => {
    const f = await fsck('/cut-datanode.bin')
    const disk = await replicasOnDisk(blockIds)
    return f.healthy && f.blocks.every((b) => b.replicas.length === REPLICATION) && sum(disk) === expectedReplicas
  }, 60_000, `the extra replicas to be removed, leaving exactly ${REPLICATION} of each block`)
  const after = await fsck('/cut-datanode.bin')
  for (const b of after.blocks) t.is(b.replicas.length, REPLICATION, `block ${b.id} ends with exactly ${REPLICATION} replicas`)
  const r = await report()
  t.true(r.datanodes.every((d) => d.state === 'live'), JSON.stringify(r.datanodes))
  t.log(`${victim} (${victimReplicas} replicas): dead after ${deadMs} ms, re-replicated after ${rereplicatedMs} ms; live ${liveMs} ms after its link came back`)
})

test.serial('a client cut off from the namenode fails with a one-line error within a bounded time', async (t) => {
  const { net } = c()
  const expectFailure = (r: RunResult, what: string): void => {
    t.false(r.timedOut, `${what} still running after ${HANG_LIMIT_MS} ms: it hangs`)
    t.not(r.code, 0, `${what} failed`)
    t.true(isOneLineError(r), `${what} says what went wrong in one line: ${JSON.stringify(r.stderr)}`)
  }

  // Packets silently dropped: connects and calls meet silence, and must give up on their own.
  await net.cut('client', 'blackhole')
  const ls = await loam(['fs', 'ls', '/', '--timeout', '5s'], { limitMs: HANG_LIMIT_MS })
  expectFailure(ls, 'ls --timeout 5s')
  const lsDefault = await loam(['fs', 'ls', '/'], { limitMs: HANG_LIMIT_MS })
  expectFailure(lsDefault, 'ls with the default timeout')
  const put = await loam(['fs', 'put', '-', '/from-cut-client.bin', '--timeout', '5s'], { input: randomBytes(256 * 1024), limitMs: HANG_LIMIT_MS })
  expectFailure(put, 'put --timeout 5s')
  await net.restore('client')

  // Link down: its own sends fail at once.
  await net.cut('client', 'down')
  const lsDown = await loam(['fs', 'ls', '/', '--timeout', '5s'], { limitMs: HANG_LIMIT_MS })
  expectFailure(lsDown, 'ls over a link that is down')
  await net.restore('client')

  // Cut off in the middle of a write: the put gives up, it does not wait forever for acks.
  const running = net.start('client', ['fs', 'put', '-', '/cut-mid-write.bin', '--timeout', '5s', '--block-size', BLOCK_SIZE], { env: c().env, limitMs: HANG_LIMIT_MS })
  running.child.stdin!.write(randomBytes(2 * 1024 * 1024))
  await waitFor(async () => {
    const l = await loam(['fs', 'ls', '/', '--timeout', '5s'])
    return l.stdout.toString().includes('/cut-mid-write.bin._COPYING_')
  }, 30_000, 'the put to start writing')
  await sleep(300)
  await net.cut('client', 'blackhole')
  running.child.stdin!.end(randomBytes(2 * 1024 * 1024))
  const midWrite = await running.done
  expectFailure(midWrite, 'a put cut off mid-write')
  await net.restore('client')

  // Back on the network, the same client host works again.
  const again = await loam(['fs', 'ls', '/', '--timeout', '5s'])
  t.is(again.code, 0, again.stderr)
  t.true(again.stdout.toString().includes('/across-hosts.bin') || again.stdout.toString().includes('/cut-datanode.bin'), again.stdout.toString())
  for (const [what, r] of [['ls --timeout 5s', ls], ['ls', lsDefault], ['put --timeout 5s', put], ['ls, link down', lsDown], ['put cut mid-write', midWrite]] as const) {
    t.log(`${what}: exit ${r.code} after ${r.ms} ms: ${r.stderr.trim()}`)
  }
})

test.serial('a datanode partitioned for a minute is live again soon after its link returns', async (t) => {
  const { net } = c()
  // Long enough for every backed-off TCP retransmission timer on a stalled connection to reach tens of seconds.
  const partitionMs = 60_000
  const victim = 'dn4'
  await net.cut(victim, 'blackhole')
  const cutAt = Date.now()
  await waitFor(async () => (await report()).datanodes.find((d) => d.id === victim)?.state === 'dead', 30_000, `${victim} to be reported dead`)
  await sleep(Math.max(0, cutAt + partitionMs - Date.now()))
  await net.restore(victim)
  const restoredAt = Date.now()
  await waitFor(async () => (await report()).datanodes.find((d) => d.id === victim)?.state === 'live', 150_000, `${victim} to be live again after its link was restored`)
  const liveMs = Date.now() - restoredAt
  t.log(`${victim}: live ${liveMs} ms after a ${partitionMs} ms partition ended`)
  // A node retrying its namenode with a fresh connection is back within its retry backoff (10 s) and a
  // connect timeout (10 s); one that keeps waiting on the connection that stalled in the partition
  // is back only when TCP next retransmits on it, which after a minute is tens of seconds away.
  t.true(liveMs <= LIVE_AFTER_PARTITION_MAX_MS, `${victim} took ${liveMs} ms after its link returned to be live again (at most ${LIVE_AFTER_PARTITION_MAX_MS} ms expected)`)
  await waitFor(async () => {
    const f = await fsck('/')
    return f.healthy && f.blocks.every((b) => b.replicas.length === REPLICATION)
  }, 60_000, `every block to have exactly ${REPLICATION} replicas again`)
  t.pass()
})
