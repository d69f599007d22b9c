// Who gets in and what they may do, through real processes: the cluster secret
// at the handshake, the namenode's permission checks for another OS user, and
// the datanodes' block access tokens.
import { spawn } from 'node:child_process'
import { chmod, chown, copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import test from 'ava'
import { RpcClient } from '../src/rpc/client.js'
import { LoamError } from '../src/rpc/errors.js'
import type { LocatedBlock } from '../src/rpc/messages.js'
import { DatanodeService, NamenodeService, SchedulerService } from '../src/rpc/service.js'
import { parseAddress } from '../src/common/address.js'
import { writeSecretFile } from '../src/rpc/security.js'
import { CLI, sleep, startCluster, waitFor, type CliResult, type TestCluster } from './helpers/cluster.js'
import { Cleanups, flipByte, pattern, replicaDataPath } from './helpers/data.js'
import { BlockOp, blockToken } from './helpers/tokens.js'
import { issueBlockToken } from '../src/rpc/block-token.js'
import { blockKeysFile } from '../src/namenode/block-keys.js'
import { randomBytes } from 'node:crypto'

const NOBODY = 65534
const cleanups = new Cleanups()
let c: TestCluster
let scratch: string

test.before(async () => {
  // Every role logs at debug, so the last test can show that nothing they log, at any level, holds the secret.
  c = await startCluster(cleanups, { nodes: 2, racks: 1, replication: 2, logLevel: 'debug' })
  scratch = await mkdtemp(path.join(os.tmpdir(), 'loam-security-'))
  cleanups.teardown(() => rm(scratch, { recursive: true, force: true }))
})

test.after.always(async () => {
  await cleanups.run()
})

/** `loam ARGS` as another process, optionally as another uid/gid, with the env given. */
function loamAs(args: string[], env: NodeJS.ProcessEnv, ids: { uid: number; gid: number } | undefined = undefined): Promise<CliResult> {
  return nodeAs([CLI, ...args], env, ids)
}

/** `node ARGV` as another process, optionally as another uid/gid, with the env given. */
function nodeAs(argv: string[], env: NodeJS.ProcessEnv, ids: { uid: number; gid: number } | undefined): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { env: { ...c.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', ...ids })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }))
  })
}

let nobodySecret: Promise<string> | undefined

/** A copy of the cluster secret that user nobody may read: membership is not the question for nobody, permission is. */
function secretForNobody(): Promise<string> {
  nobodySecret ??= (async () => {
    const secret = path.join(scratch, 'nobody-secret')
    await copyFile(c.record.secretFile, secret)
    await chown(secret, NOBODY, NOBODY)
    await chown(scratch, NOBODY, NOBODY)
    return secret
  })()
  return nobodySecret
}

/** `loam ARGS` as user nobody. */
async function loamAsNobody(args: string[]): Promise<CliResult> {
  return loamAs(args, { LOAM_SECRET_FILE: await secretForNobody() }, { uid: NOBODY, gid: NOBODY })
}

async function putFile(remote: string, data: Buffer): Promise<LocatedBlock> {
  const client = c.client()
  const w = await client.create(remote, { overwrite: true, createParents: true })
  await w.write(data)
  await w.close()
  return (await client.getBlockLocations(remote, 0, 0)).blocks[0]!
}

test.serial('a client without the cluster secret is refused at the handshake, with a line saying so', async (t) => {
  const wrong = path.join(scratch, 'wrong-secret')
  writeSecretFile(wrong)
  const refused = await loamAs(['fs', 'ls', '/'], { LOAM_SECRET_FILE: wrong })
  t.is(refused.code, 1)
  t.regex(refused.stderr, /cluster secret/)
  t.is(refused.stderr.trim().split('\n').length, 1, 'one line')
  const none = await loamAs(['fs', 'mkdir', '/made-without-secret'], { LOAM_SECRET_FILE: '' })
  t.is(none.code, 2)
  t.regex(none.stderr, /no cluster secret/)
  t.false(await c.client().exists('/made-without-secret'), 'nothing it sent was acted on')
  const insecure = await loamAs(['fs', 'ls', '/'], { LOAM_INSECURE: '1' })
  t.is(insecure.code, 1, 'a client that does not encrypt cannot talk to a cluster that does')
  t.regex(insecure.stderr, /--insecure/)
})

test.serial('a datanode without the cluster secret never joins', async (t) => {
  const wrong = path.join(scratch, 'intruder-secret')
  writeSecretFile(wrong)
  const dir = path.join(scratch, 'intruder')
  const child = spawn(process.execPath, [CLI, 'datanode', '--namenode', c.namenode, '--data', dir, '--id', 'intruder', '--port', '0', '--http-port', '0', '--secret-file', wrong], { stdio: 'ignore' })
  t.teardown(() => child.kill('SIGKILL'))
  // Several heartbeat intervals (1 s here): time enough to have registered, had it been let in.
  await sleep(4000)
  const report = await c.client().report()
  t.false(report.datanodes.some((d) => d.id === 'intruder'))
  t.is(report.datanodes.length, 2)
})

test.serial('another user cannot read a 0600 file or remove a directory that is not theirs', async (t) => {
  await putFile('/private/secret.txt', pattern(1000, 1))
  const root = c.client()
  await root.chmod('/private/secret.txt', 0o600)
  await root.mkdirs('/home/alice/work', { parents: true })
  await putFile('/shared/readme', pattern(10, 2))

  const cat = await loamAsNobody(['fs', 'cat', '/private/secret.txt'])
  t.is(cat.code, 1)
  t.regex(cat.stderr, /permission denied: user nobody needs read permission/)
  t.is(cat.stdout.length, 0)
  const rm1 = await loamAsNobody(['fs', 'rm', '-r', '/home/alice'])
  t.is(rm1.code, 1)
  t.regex(rm1.stderr, /permission denied/)
  t.true(await root.exists('/home/alice/work'), 'the directory is still there')
  const chmod = await loamAsNobody(['fs', 'chmod', '777', '/private/secret.txt'])
  t.is(chmod.code, 1, 'only the owner changes the mode')
  const readable = await loamAsNobody(['fs', 'cat', '/shared/readme'])
  t.is(readable.code, 0, 'a 0644 file is readable by anyone')
  t.true(readable.stdout.equals(pattern(10, 2)))

  // Given a directory of its own, that user works in it; chown is the superuser's.
  t.is((await c.loam(['fs', 'mkdir', '-p', '/home/nobody'])).code, 0)
  t.is((await c.loam(['fs', 'chown', 'nobody', '/home/nobody'])).code, 0)
  const local = path.join(scratch, 'mine')
  await writeFile(local, 'mine')
  await chown(local, NOBODY, NOBODY)
  t.is((await loamAsNobody(['fs', 'put', local, '/home/nobody/mine'])).code, 0)
  t.is((await root.stat('/home/nobody/mine')).owner, 'nobody')
  const giveAway = await loamAsNobody(['fs', 'chown', 'root', '/home/nobody/mine'])
  t.is(giveAway.code, 1)
  t.regex(giveAway.stderr, /only the superuser may change an owner/)
})

test.serial("write on a directory does not let a user remove another user's 0700 tree in it", async (t) => {
  const root = c.client()
  await root.mkdirs('/open/theirs/deeper', { parents: true })
  await root.chmod('/open', 0o777)
  await root.chmod('/open/theirs', 0o700)
  await putFile('/open/theirs/deeper/f', pattern(10, 5))
  const rm1 = await loamAsNobody(['fs', 'rm', '-r', '/open/theirs'])
  t.is(rm1.code, 1)
  t.regex(rm1.stderr, /\/open\/theirs: permission denied: user nobody needs read and write and execute/)
  t.true(await root.exists('/open/theirs/deeper/f'), 'the tree is still there')
  // Its own tree in the same directory, that user removes.
  t.is((await loamAsNobody(['fs', 'mkdir', '-p', '/open/mine/sub'])).code, 0)
  t.is((await loamAsNobody(['fs', 'rm', '-r', '/open/mine'])).code, 0)
  t.false(await root.exists('/open/mine'))
})

/** As user nobody: one namenode call made with the client library, claiming the user and groups given; prints its outcome. */
async function callAsNobody(user: string, groups: string[], file: string): Promise<CliResult> {
  const lib = (m: string): string => JSON.stringify(new URL(`../src/${m}`, import.meta.url).href)
  const script = `
    import { RpcClient } from ${lib('rpc/client.js')}
    import { NamenodeService } from ${lib('rpc/service.js')}
    import { parseAddress } from ${lib('common/address.js')}
    const [addr, user, groups, file] = process.argv.slice(1)
    const rpc = new RpcClient(parseAddress(addr), NamenodeService, { peerName: 'namenode', user, groups: JSON.parse(groups) })
    try {
      const got = await rpc.call('GetBlockLocations', { path: file, offsetBytes: 0, lengthBytes: 0, readerNode: '' })
      console.log('read', got.blocks.length)
    } catch (err) {
      console.log(err.code, err.message)
    } finally {
      rpc.close()
    }`
  const secret = await secretForNobody()
  return nodeAs(['--input-type=module', '-e', script, c.namenode, user, JSON.stringify(groups), file], { LOAM_SECRET_FILE: secret }, { uid: NOBODY, gid: NOBODY })
}

test.serial('a process on a namenode\'s machine acts as the OS user that runs it, whatever user or groups it claims', async (t) => {
  await putFile('/bound/root-only', pattern(10, 7))
  const root = c.client()
  await root.chmod('/bound/root-only', 0o640)
  const claimsRoot = await callAsNobody('root', ['root'], '/bound/root-only')
  t.regex(claimsRoot.stdout.toString(), /^permission this connection comes from OS user nobody on this machine and calls as 'root'/)
  const claimsGroup = await callAsNobody('nobody', ['root'], '/bound/root-only')
  t.regex(claimsGroup.stdout.toString(), /^permission .*user nobody needs read permission/, "the groups are this machine's for nobody, not the claimed root")
  await root.chmod('/bound/root-only', 0o644)
  t.is((await callAsNobody('nobody', ['nogroup'], '/bound/root-only')).stdout.toString().trim(), 'read 1', 'as itself it reads what it may')
})

test.serial("only the scheduler's own user (or root) registers or reports as an agent", async (t) => {
  const agentsBefore = (await c.loam(['job', 'agents', '--json'])).stdout.toString()
  const id = 'evil-agent'
  const mallory = new RpcClient(parseAddress(c.scheduler), SchedulerService, { peerName: 'scheduler', user: 'mallory', groups: ['mallory'] })
  t.teardown(() => mallory.close())
  const register = await t.throwsAsync(mallory.call('RegisterAgent', { agentId: id, nodeId: '', rack: '/evil', host: '127.0.0.1', rpcPort: 1, cpus: 64, memMib: 65536, diskMib: 0, tasks: [] }))
  t.is((register as LoamError).code, 'permission')
  t.regex(register!.message, /user mallory may not register or report as an agent/)
  const beat = await t.throwsAsync(mallory.call('AgentHeartbeat', { agentId: id, tasks: [] }))
  t.is((beat as LoamError).code, 'permission')
  t.is((await c.loam(['job', 'agents', '--json'])).stdout.toString(), agentsBefore, 'no agent joined')
})

/** Lets every user reach the agents' work directories, as an operator of a multi-user cluster does (mode 0711 up from /tmp). */
async function openWorkDirs(): Promise<void> {
  for (const node of c.record.nodes) {
    for (let dir = node.argv[node.argv.indexOf('--work') + 1]!; dir.startsWith(os.tmpdir() + path.sep); dir = path.dirname(dir)) await chmod(dir, 0o711)
  }
}

test.serial('a job runs as the OS user who submitted it, and its tasks act as that user in the cluster', async (t) => {
  await openWorkDirs()
  await putFile('/locked/only-root', pattern(10, 8))
  const root = c.client()
  await root.chmod('/locked/only-root', 0o600)
  await root.mkdirs('/drop', { parents: true })
  await root.chmod('/drop', 0o777)
  const spec = path.join(scratch, 'as-nobody.json')
  await writeFile(spec, JSON.stringify({ id: 'as-nobody', cmd: 'id -un; loam fs cat /locked/only-root; echo "cat $?"; id -un | loam fs put - /drop/made', cpus: 0.1, mem: 32 }))
  await chown(spec, NOBODY, NOBODY)
  const run = await loamAsNobody(['job', 'run', spec, '--wait'])
  t.is(run.code, 0, run.stderr)
  const logs = await loamAsNobody(['logs', 'as-nobody.0'])
  t.regex(logs.stdout.toString(), /^nobody\ncat 1\n$/, 'it ran as nobody, and as nobody could not read a 0600 file of root')
  t.is((await root.stat('/drop/made')).owner, 'nobody', 'what it wrote is its user\'s')

  // A task of a user this machine does not have fails, and says why.
  const ghost = new RpcClient(parseAddress(c.scheduler), SchedulerService, { peerName: 'scheduler', user: 'ghost', groups: ['ghost'] })
  t.teardown(() => ghost.close())
  await ghost.call('SubmitJob', { json: JSON.stringify({ id: 'as-ghost', cmd: 'true', cpus: 0.1, mem: 32, retries: 0 }) })
  await waitFor(async () => JSON.parse((await c.loam(['job', 'status', 'as-ghost', '--json'])).stdout.toString()).state === 'FAILED', 30_000, 'the job of a missing user to fail')
  const status = JSON.parse((await c.loam(['job', 'status', 'as-ghost', '--json'])).stdout.toString()) as { tasks: Array<{ message: string }> }
  t.regex(status.tasks[0]!.message, /not started: user ghost does not exist on this machine/)
})

test.serial("a client's report of a corrupt replica counts only for a file it reads, and only once the replica's node confirms it", async (t) => {
  const root = c.client()
  const healthy = await putFile('/reports/healthy', pattern(3000, 6))
  const damaged = await putFile('/reports/damaged', pattern(3000, 7))
  const secret = await putFile('/reports/secret', pattern(3000, 8))
  await root.chmod('/reports/secret', 0o600)
  const mallory = new RpcClient(parseAddress(c.namenode), NamenodeService, { peerName: 'namenode', user: 'mallory', groups: ['mallory'] })
  t.teardown(() => mallory.close())
  const report = (p: string, lb: LocatedBlock): Promise<unknown> => mallory.call('ReportBadBlocks', { path: p, replicas: lb.locations.map((l) => ({ block: lb.block, nodeId: l.id })) })

  const unreadable = await t.throwsAsync(report('/reports/secret', secret), { instanceOf: LoamError })
  t.is(unreadable?.code, 'permission')
  const foreign = await t.throwsAsync(report('/reports/healthy', secret), { instanceOf: LoamError })
  t.is(foreign?.code, 'permission', "a readable file's path does not cover another file's block")
  t.regex(foreign?.message ?? '', /is not a block of this file/)
  const noPath = await t.throwsAsync(report('', healthy), { instanceOf: LoamError })
  t.truthy(noPath, 'a report naming no file is refused')

  // Every replica of a healthy block reported: their nodes verify them, and nothing is marked or deleted.
  await report('/reports/healthy', healthy)
  const nnLog = path.join(c.record.namenode.data, 'log')
  const kept = async (): Promise<number> => (await readFile(nnLog, 'utf8')).split('\n').filter((l) => l.includes('its node verifies it whole') && l.includes(`"block":${healthy.block!.id}`)).length
  await waitFor(async () => (await kept()) >= 2, 30_000, 'both replicas to be verified')
  const after = (await root.getBlockLocations('/reports/healthy', 0, 0)).blocks[0]!
  t.is(after.locations.length, 2, 'both replicas still offered')
  t.deepEqual(after.corrupt, [])
  t.true((await c.loam(['fs', 'cat', '/reports/healthy'])).stdout.equals(pattern(3000, 6)))

  // A replica that is corrupt is confirmed by its node and marked.
  const victim = c.record.nodes.find((n) => n.id === damaged.locations[0]!.id)!
  await flipByte(replicaDataPath(victim.data, damaged.block!.id), 100)
  await report('/reports/damaged', { ...damaged, locations: [damaged.locations[0]!] })
  await waitFor(async () => (await root.getBlockLocations('/reports/damaged', 0, 0)).blocks[0]!.corrupt.some((n) => n.id === victim.id), 30_000, 'the corrupt replica to be marked')
})

test.serial('a block access token opens its own block only, and not once expired', async (t) => {
  const a = await putFile('/tokens/a', pattern(5000, 3))
  const b = await putFile('/tokens/b', pattern(5000, 4))
  const dn = a.locations.find((l) => b.locations.some((x) => x.id === l.id))!
  const rpc = new RpcClient({ host: dn.host, port: dn.rpcPort }, DatanodeService, { peerName: `datanode ${dn.id}` })
  t.teardown(() => rpc.close())
  const ok = await rpc.call('ShortCircuit', { block: a.block, token: a.token })
  t.is(ok.lengthBytes, 5000, "the namenode's token opens its block")
  const other = await t.throwsAsync(rpc.call('ShortCircuit', { block: b.block, token: a.token }), { instanceOf: LoamError })
  t.is(other?.code, 'permission')
  t.regex(other?.message ?? '', /token is for block/)
  const none = await t.throwsAsync(rpc.call('ShortCircuit', { block: b.block }), { instanceOf: LoamError })
  t.is(none?.code, 'permission')
  // Holding the cluster secret is not holding a block key: a token signed with a key of one's own, under a real key id, opens nothing.
  const forged = issueBlockToken({ id: Buffer.from(a.token!).readUInt32BE(2), key: randomBytes(32), expiresMs: Date.now() + 60_000 }, { blockId: a.block!.id, op: BlockOp.READ, expiresMs: Date.now() + 60_000 })
  const mine = await t.throwsAsync(rpc.call('ShortCircuit', { block: a.block, token: forged }), { instanceOf: LoamError })
  t.is(mine?.code, 'permission')
  t.regex(mine?.message ?? '', /not one this cluster's namenode issued/)
  const expired = await t.throwsAsync(rpc.call('ShortCircuit', { block: a.block, token: blockToken(a.block!.id, BlockOp.READ, -1) }), { instanceOf: LoamError })
  t.is(expired?.code, 'token-expired')
  const stream = await rpc.openStream('ReadBlock', { block: b.block, offsetBytes: 0, lengthBytes: 0, token: a.token })
  const read = await t.throwsAsync(stream.result, { instanceOf: LoamError })
  t.is(read?.code, 'permission', 'a stream read is refused the same way')
  const write = await rpc.openStream('WriteBlock', { block: b.block, downstream: [], clientName: 'x', update: false, oldGenStamp: 0, resize: false, resizeBytes: 0, copyFromBlock: 0, copyFromGenStamp: 0, token: b.token })
  const w = await t.throwsAsync(write.result, { instanceOf: LoamError })
  t.is(w?.code, 'permission', 'a read token does not write')
})

test.serial("a member of the namenode's --supergroup (or its --superuser) reads another user's 0600 file; a user in neither cannot", async (t) => {
  const root = c.client()
  const data = pattern(2000, 9)
  await putFile('/super/alice.txt', data)
  await root.chown('/super/alice.txt', 'alice', 'alice')
  await root.chmod('/super/alice.txt', 0o600)
  const as = (user: string, groups: string[]): RpcClient<typeof NamenodeService> => {
    const rpc = new RpcClient(parseAddress(c.namenode), NamenodeService, { peerName: 'namenode', user, groups })
    t.teardown(() => rpc.close())
    return rpc
  }
  const read = (user: string, groups: string[]): Promise<unknown> => as(user, groups).call('GetBlockLocations', { path: '/super/alice.txt', offsetBytes: 0, lengthBytes: 0, readerNode: '' })
  const code = async (user: string, groups: string[]): Promise<string> => (await t.throwsAsync(read(user, groups), { instanceOf: LoamError }))?.code ?? 'ok'
  t.is(await code('carol', ['admins']), 'permission', 'before the flags, admins is no special group')
  t.is(await code('boss', ['boss']), 'permission', 'nor boss a special user')

  c.record.namenode.argv.push('--supergroup', 'admins', '--superuser', 'boss')
  await c.killNamenode('SIGTERM')
  await c.restartNamenode()
  await waitFor(async () => (await root.report().catch(() => undefined))?.safemode === false, 30_000, 'the namenode to leave safe mode')
  await t.notThrowsAsync(read('carol', ['staff', 'admins']), 'a member of the supergroup reads it')
  await t.notThrowsAsync(read('boss', ['boss']), 'the superuser reads it')
  t.is(await code('dave', ['staff', 'supergroup-not']), 'permission', 'a user in neither is refused')
  t.is(await code('carol', ['staff']), 'permission', 'the same user without the group is refused')
  // Ownership checks pass too: a member of the supergroup changes the mode of a file it does not own.
  t.is((await as('carol', ['admins']).call('SetPermission', { path: '/super/alice.txt', mode: 0o640 })).status?.mode, 0o640)
})

test.serial('the secret and the block keys never appear in any daemon\'s /status, /metrics or log', async (t) => {
  // Run last: the logs then hold refused handshakes, denied permissions and refused tokens too.
  const hex = (await readFile(c.record.secretFile, 'utf8')).trim()
  const blockKeys = (JSON.parse(await readFile(blockKeysFile(c.record.namenode.argv[c.record.namenode.argv.indexOf('--data') + 1]!), 'utf8')) as Array<{ key: string }>).map((k) => k.key)
  t.true(blockKeys.length >= 2, 'the namenode keeps its block keys')
  const forms = [hex, ...blockKeys].flatMap((h) => [h.toLowerCase(), h.toUpperCase(), Buffer.from(h, 'hex').toString('base64'), h.slice(0, 16).toLowerCase()])
  const holdsSecret = (text: string): boolean => forms.some((f) => text.includes(f))
  const daemons = [['namenode', c.record.namenode.http], ['scheduler', c.record.scheduler.http], ...c.record.nodes.map((n) => [n.id!, n.http])] as const
  for (const [role, http] of daemons) {
    for (const page of ['status', 'metrics']) {
      const res = await fetch(`http://${http}/${page}`)
      t.is(res.status, 200, `${role} /${page}`)
      const body = await res.text()
      if (page === 'status') t.notThrows(() => JSON.parse(body), `${role} /status is JSON`)
      t.false(holdsSecret(body), `${role} /${page} holds the secret`)
    }
  }
  const logs = (await readdir(c.dir, { recursive: true })).filter((f) => path.basename(f) === 'log' || f === 'cluster-up.log')
  t.true(logs.length >= 2 + c.record.nodes.length, `every role's log was read (${logs.join(', ')})`)
  for (const f of logs) {
    const text = await readFile(path.join(c.dir, f), 'utf8')
    t.false(holdsSecret(text), `${f} holds the secret`)
  }
})
