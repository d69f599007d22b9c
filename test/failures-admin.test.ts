// Failures of the namenode and of space, and taking nodes out of service, through
// real processes: the namenode killed -9 under concurrent puts, decommission and
// recommission, bad timing flags, and datanodes that run out of room. Each test
// has a cluster of its own; they run one at a time (this machine has few cores).
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import { LoamClient } from '../src/client/client.js'
import { fsck } from '../src/client/fsck.js'
import { parseAddress } from '../src/common/address.js'
import { PLACEMENT_RESERVE_BYTES } from '../src/namenode/placement.js'
import { CLI, sleep, startCluster, waitFor, type CliResult } from './helpers/cluster.js'
import { fsckJson, KiB, localTempDir, MiB, pattern, reportJson, sha256, type ReportJson } from './helpers/data.js'
import { clusterLogs, eventually, isOneLineError, nodeDataDir, replicaFiles, runLoam, showLogsOnFailure, startRole, stopProcess, type Role } from './helpers/failures.js'

test.serial('namenode kill -9 under concurrent puts: every acknowledged put survives, safe mode ends by itself, unacknowledged blocks are collected', async (t) => {
  t.timeout(180_000)
  const c = await startCluster(t, { nodes: 3, racks: 2, replication: 2, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', leaseLimit: '3s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const acknowledged = new Map<string, string>()
  const failures: string[] = []
  let stop = false
  let seed = 1000
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const size = 200 * KiB + ((w * 7919 + i * 104_729) % (2 * MiB))
      const data = pattern(size, seed++)
      const p = `/load/w${w}/f${i}`
      const r = await runLoam(['fs', 'put', '-', p, '--timeout', '10s'], { input: data, env: c.env })
      if (r.code === 0) acknowledged.set(p, sha256(data))
      else {
        failures.push(`${p}: ${r.stderr.trim()}`)
        await sleep(200)
      }
    }
  }
  // Files removed just before the kill: the namenode has acknowledged the removal, but may not have told the datanodes yet.
  for (let i = 0; i < 4; i++) {
    const r = await runLoam(['fs', 'put', '-', `/doomed/d${i}`], { input: pattern(MiB + MiB / 2, 900 + i), env: c.env })
    t.is(r.code, 0, r.stderr)
  }
  t.is((await runLoam(['fs', 'put', '-', '/doomed-file'], { input: pattern(2 * MiB + 1, 910), env: c.env })).code, 0)
  const doomed = new Set([...(await fsckJson(c, '/doomed')).json.blocks, ...(await fsckJson(c, '/doomed-file')).json.blocks].map((b) => b.id))
  t.is(doomed.size, 4 * 2 + 3)
  const doomedOnDisk = async (): Promise<number> => {
    let n = 0
    for (const node of c.record.nodes) n += (await replicaFiles(nodeDataDir(c, node.id!))).filter((r) => doomed.has(r.id)).length
    return n
  }
  const writers = [0, 1, 2].map(writer)
  try {
    await waitFor(() => acknowledged.size >= 6, 60_000, 'six puts to be acknowledged before the kill')
    const rmFile = await c.loam(['fs', 'rm', '/doomed-file'])
    t.is(rmFile.code, 0, rmFile.stderr)
    const rmDir = await c.loam(['fs', 'rm', '-r', '/doomed'])
    t.is(rmDir.code, 0, rmDir.stderr)
    await c.killNamenode()
    const beforeKill = new Map(acknowledged)
    t.log(`replicas of removed files on disk at the kill: ${await doomedOnDisk()}`)
    await sleep(500)
    await c.restartNamenode()
    await eventually(() => reportJson(c), (r) => !r.safemode, 60_000, 'safe mode to end by itself')
    t.log(`replicas of removed files still on disk after the restart: ${await doomedOnDisk()}`)
    for (const p of ['/doomed', '/doomed-file']) t.is((await c.loam(['fs', 'stat', p])).stderr, `loam: ${p}: no such file or directory\n`, `the acknowledged removal of ${p} survived the crash`)
    const n = acknowledged.size
    await waitFor(() => acknowledged.size >= n + 3, 60_000, 'puts to be acknowledged again after the restart')
    stop = true
    await Promise.all(writers)
    t.log(`${acknowledged.size} puts acknowledged (${beforeKill.size} before the kill), ${failures.length} failed`)

    // Every acknowledged put, before the kill or after, reads back identical.
    for (const [p, sum] of acknowledged) {
      const r = await c.loam(['fs', 'cat', p])
      t.is(r.code, 0, `cat ${p}${beforeKill.has(p) ? ' (acknowledged before the kill)' : ''}: ${r.stderr}`)
      t.is(sha256(r.stdout), sum, `${p} reads back identical`)
    }

    // Once the dead writers' leases are recovered and the datanodes are told, every replica on disk belongs to a block of a file.
    let firstOrphans: string[] | undefined
    const settled = await eventually(
      async () => {
        const f = await fsckJson(c, '/')
        const listed = new Set(f.json.blocks.map((b) => b.id))
        const orphans: string[] = []
        for (const node of c.record.nodes) for (const r of await replicaFiles(nodeDataDir(c, node.id!))) if (!listed.has(r.id)) orphans.push(`${node.id}:${r.state}/blk_${r.id}`)
        firstOrphans ??= orphans
        return { healthy: f.json.healthy, openForWrite: (f.json as unknown as { openForWrite: number }).openForWrite, orphans }
      },
      (s) => s.healthy && s.openForWrite === 0 && s.orphans.length === 0,
      90_000,
      'no replica on disk outside the blocks fsck lists, no file open for writing, fsck healthy',
    )
    t.deepEqual(settled.orphans, [])
    t.is(await doomedOnDisk(), 0, 'no replica of a removed file is left on disk')
    const ls = await c.loam(['fs', 'ls', '-R', '/load'])
    const leftovers = ls.stdout.toString().split('\n').filter((p) => p.includes('._COPYING_'))
    t.log(`files of unacknowledged puts: ${leftovers.join(' ') || 'none'}`)
    t.log(`replicas outside fsck's blocks when the puts stopped: ${firstOrphans?.join(' ') || 'none'}`)
  } finally {
    stop = true
    await Promise.all(writers)
  }
})

test.serial('decommission moves every replica off a node; once decommissioned it can be stopped with nothing under-replicated; recommission brings it back', async (t) => {
  t.timeout(180_000)
  const c = await startCluster(t, { nodes: 4, racks: 2, replication: 3, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s', logLevel: 'info' })
  showLogsOnFailure(t, () => clusterLogs(c))
  const data = pattern(6 * MiB + 999, 501)
  const put = await runLoam(['fs', 'put', '-', '/dec/f'], { input: data, env: c.env })
  t.is(put.code, 0, put.stderr)
  const before = await fsckJson(c, '/')
  t.is(before.code, 0)
  const states = (r: ReportJson): Record<string, string> => Object.fromEntries(r.datanodes.map((d) => [d.id, d.state]))
  const reportBefore = await reportJson(c)

  // Bad input: an unknown node. One line, non-zero, nothing changed.
  const unknown = await c.loam(['node', 'decommission', 'dn9'])
  t.not(unknown.code, 0)
  t.true(isOneLineError(unknown.stderr), `one line starting with 'loam: ': ${JSON.stringify(unknown.stderr)}`)
  t.true(unknown.stderr.includes('dn9'), unknown.stderr)
  t.deepEqual(states(await reportJson(c)), states(reportBefore), 'no datanode changed state')
  t.deepEqual(states(reportBefore), { dn1: 'live', dn2: 'live', dn3: 'live', dn4: 'live' })

  // The victim: the node holding the most replicas.
  const held = new Map<string, number>()
  for (const b of before.json.blocks) for (const r of b.replicas) held.set(r.node, (held.get(r.node) ?? 0) + 1)
  const victim = [...held.entries()].sort((a, b) => b[1] - a[1])[0]![0]
  const vi = c.record.nodes.findIndex((n) => n.id === victim)

  const dec = await c.loam(['node', 'decommission', victim])
  t.is(dec.code, 0, dec.stderr)
  t.is(dec.stdout.toString().trim(), `${victim}: decommissioning`)
  const seen: string[] = []
  await eventually(
    async () => {
      const s = states(await reportJson(c))[victim]!
      if (seen[seen.length - 1] !== s) seen.push(s)
      return s
    },
    (s) => s === 'decommissioned',
    90_000,
    `${victim} to be decommissioned`,
  )
  t.log(`${victim}: ${seen.join(' -> ')}`)
  t.true(seen.every((s, i) => (i < seen.length - 1 ? s === 'decommissioning' : s === 'decommissioned')), `states seen in loam report: ${seen.join(' -> ')}`)
  const moved = await fsckJson(c, '/dec')
  t.is(moved.json.blocks.length, 7)
  for (const b of moved.json.blocks) {
    const others = new Set(b.replicas.map((r) => r.node).filter((n) => n !== victim))
    t.is(others.size, 3, `block ${b.id}: 3 replicas on nodes other than ${victim}: ${b.replicas.map((r) => r.node).join(', ')}`)
  }

  // Stopped for good: no block is under-replicated, before and after the namenode notices it is gone.
  await c.killNode(vi)
  const deadline = Date.now() + 8_000 // dead-after (4 s) and a few monitor rounds
  while (Date.now() < deadline) {
    const f = await fsckJson(c, '/')
    t.true(f.code === 0 && f.json.healthy, `fsck healthy with the decommissioned node stopped: ${JSON.stringify(f.json.blocks.filter((b) => b.state !== 'HEALTHY'))}`)
    if (!f.json.healthy) break
    await sleep(500)
  }
  const cat = await c.loam(['fs', 'cat', '/dec/f'])
  t.is(sha256(cat.stdout), sha256(data), 'the file reads back without the node')

  // Restarted, it stays out of service until recommissioned.
  const lastHeartbeat = (r: ReportJson): number => (r.datanodes.find((d) => d.id === victim) as unknown as { lastHeartbeatMs: number }).lastHeartbeatMs
  const stoppedAt = lastHeartbeat(await reportJson(c))
  const node = c.record.nodes[vi]!
  const fd = openSync(path.join(node.data, 'log'), 'a')
  const child = spawn(node.argv[0]!, node.argv.slice(1), { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  node.pid = child.pid!
  t.teardown(() => stopProcess(child))
  const restarted = await eventually(() => reportJson(c), (r) => lastHeartbeat(r) > stoppedAt, 30_000, `${victim} to report in again after its restart`)
  t.is(states(restarted)[victim], 'decommissioned', 'a restarted decommissioned node stays decommissioned')
  const rec = await c.loam(['node', 'recommission', victim])
  t.is(rec.code, 0, rec.stderr)
  t.is(rec.stdout.toString().trim(), `${victim}: live`)
  const back = await eventually(() => reportJson(c), (r) => states(r)[victim] === 'live', 30_000, `${victim} to be live again`)
  t.deepEqual(states(back), { dn1: 'live', dn2: 'live', dn3: 'live', dn4: 'live' })
  // Its old replicas are excess now: each block ends with exactly 3.
  await eventually(() => fsckJson(c, '/dec'), (f) => f.code === 0 && f.json.blocks.every((b) => b.replicas.length === 3), 60_000, 'exactly 3 replicas of each block')
})

/** `loam ARGS` with no cluster behind it, killed (SIGTERM) if it runs past ms. */
function runBounded(args: string[], ms: number): Promise<CliResult & { timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
    }, ms)
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err, timedOut })
    })
  })
}

test.serial('cluster up with --dead-after shorter than --heartbeat: one line, non-zero, nothing started', async (t) => {
  const tmp = await localTempDir(t)
  const dir = path.join(tmp, 'cluster')
  const ready = path.join(tmp, 'ready.json')
  const r = await runBounded(['cluster', 'up', '--dir', dir, '--nodes', '2', '--heartbeat', '3s', '--dead-after', '2s', '--port', '0', '--http-port', '0', '--ready-file', ready, '--log-level', 'warn'], 30_000)
  t.false(r.timedOut, 'it stops by itself')
  t.not(r.code, 0)
  t.true(isOneLineError(r.stderr), `one line starting with 'loam: ': ${JSON.stringify(r.stderr)}`)
  t.true(r.stderr.includes('--dead-after') && r.stderr.includes('--heartbeat'), r.stderr)
  t.false(existsSync(ready), 'no ready file')
  t.deepEqual(await readdir(dir).catch(() => []), [], 'no role was started in the cluster directory')
})

test.serial('full disk: a datanode near its --capacity takes no more replicas, writes go elsewhere; when no node has room a put fails with one line and earlier files stay intact', async (t) => {
  t.timeout(180_000)
  const dir = await localTempDir(t)
  const roles: Role[] = []
  showLogsOnFailure(t, () => roles.map((r) => r.log))
  const nn = await startRole(t, dir, 'nn', ['namenode', '--data', path.join(dir, 'nn'), '--port', '0', '--http-port', '0', '--heartbeat', '1s', '--dead-after', '4s', '--replication', '1', '--block-size', '1MiB', '--log-level', 'info'])
  roles.push(nn)
  const CAPACITY: Record<string, number> = { small: 6 * MiB, big1: 12 * MiB, big2: 12 * MiB }
  const RACK: Record<string, string> = { small: '/r1', big1: '/r1', big2: '/r2' }
  for (const id of Object.keys(CAPACITY)) {
    roles.push(
      await startRole(t, dir, id, ['datanode', '--namenode', nn.ready.rpc, '--data', path.join(dir, id), '--id', id, '--rack', RACK[id]!, '--capacity', String(CAPACITY[id]), '--port', '0', '--http-port', '0', '--log-level', 'info']),
    )
  }
  const client = new LoamClient({ namenode: parseAddress(nn.ready.rpc), timeoutMs: 10_000 })
  t.teardown(() => client.close())
  await waitFor(async () => {
    const r = await client.report().catch(() => undefined)
    return r !== undefined && !r.safemode && r.datanodes.filter((d) => d.state === 'live').length === 3
  }, 30_000, '3 live datanodes')
  const env = { LOAM_NAMENODE: nn.ready.rpc, LOAM_NODE_ID: 'small' } // the writer runs "on" the small node: first replicas go there while it has room
  const loam = (args: string[], input?: Buffer): Promise<CliResult> => runLoam(args, { input, env })

  const written = new Map<string, string>()
  const placedOn = new Map<number, string>()
  let smallFullAfter = -1 // the first put made once the namenode knew the small node had no room for a block (and the reserve kept beside it)
  let failed: CliResult | undefined
  for (let i = 0; i < 40; i++) {
    const report = await client.report()
    for (const d of report.datanodes) t.true(d.usedBytes <= d.capacityBytes, `${d.id}: used ${d.usedBytes} <= capacity ${d.capacityBytes}`)
    const small = report.datanodes.find((d) => d.id === 'small')!
    if (smallFullAfter < 0 && small.remainingBytes < MiB + PLACEMENT_RESERVE_BYTES) smallFullAfter = i
    const data = pattern(MiB, 600 + i)
    const p = `/full/f${i}`
    const r = await loam(['fs', 'put', '-', p], data)
    if (r.code !== 0) {
      failed = r
      break
    }
    written.set(p, sha256(data))
    const { blocks } = await client.getBlockLocations(p, 0, 0)
    t.is(blocks.length, 1)
    const where = blocks[0]!.locations.map((l) => l.id)
    t.is(where.length, 1, `${p}: one replica`)
    placedOn.set(i, where[0]!)
    if (smallFullAfter >= 0) t.not(where[0], 'small', `${p}: put after the small node reported too little room, yet placed on it`)
  }
  t.log(`placements: ${[...placedOn.values()].join(' ')}; small reported full before put ${smallFullAfter}`)
  t.true([...placedOn.values()].includes('small'), 'the small node took blocks while it had room')
  t.true(smallFullAfter >= 0, 'the small node filled up')
  t.true([...placedOn.entries()].some(([i, n]) => i >= smallFullAfter && n !== 'small'), 'later blocks went to the other nodes')

  t.truthy(failed, 'a put fails once no datanode has room')
  if (failed) {
    t.not(failed.code, 0)
    t.true(isOneLineError(failed.stderr), `one line starting with 'loam: ': ${JSON.stringify(failed.stderr)}`)
    t.regex(failed.stderr, /room/, 'the error says no datanode has room')
    t.log(`the put that found no room: ${failed.stderr.trim()}`)
  }
  // On the disks, too, the small node stays within its capacity.
  const smallBytes = (await replicaFiles(path.join(dir, 'small'))).reduce((s, r) => s + r.bytes, 0)
  t.true(smallBytes <= CAPACITY.small!, `replica data on the small node's disk: ${smallBytes} bytes`)
  const final = await client.report()
  for (const d of final.datanodes) t.true(d.usedBytes <= d.capacityBytes, `${d.id}: used ${d.usedBytes} <= capacity ${d.capacityBytes}`)

  // Every earlier file is intact, and fsck agrees.
  for (const [p, sum] of written) {
    const r = await loam(['fs', 'cat', p])
    t.is(r.code, 0, `cat ${p}: ${r.stderr}`)
    t.is(sha256(r.stdout), sum, `${p} reads back intact`)
  }
  const f = await fsck(client, '/full')
  t.true(f.healthy)
  t.is(f.files, written.size, 'the failed put left no file behind')

  // A block the namenode placed on a node that then had no room for it went on elsewhere under a new generation stamp
  // (pipeline recovery). What the write left on the full node is a stale replica: it is deleted, not left to eat the room.
  const leftInRbw = async (): Promise<string[]> => {
    const out: string[] = []
    for (const id of Object.keys(CAPACITY)) for (const r of await replicaFiles(path.join(dir, id))) if (r.state === 'rbw') out.push(`${id}: rbw/blk_${r.id} (${r.bytes} bytes)`)
    return out
  }
  const stale = await leftInRbw()
  t.log(`replicas in rbw/ once every write had finished: ${stale.join(', ') || 'none'}`)
  try {
    await eventually(leftInRbw, (l) => l.length === 0, 30_000, 'no replica left in rbw/ once every write has finished')
  } catch (err) {
    t.fail(`stale replicas of writes that moved to other nodes stay on the datanodes: ${(err as Error).message}`)
  }
})
