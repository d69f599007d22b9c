// Garbage to every port of a running cluster: a malformed, truncated or
// oversized frame costs the sender its connection, never the daemon. After
// each attack the daemon is still alive and serving: the namenode answers, a
// file written through every datanode reads back from the one attacked.
import { createHash } from 'node:crypto'
import net from 'node:net'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { LoamClient } from '../src/client/client.js'
import { parseAddress } from '../src/common/address.js'
import { FRAME_BYTES_MAX, GROUPS_PER_CALLER_MAX, HANDSHAKE_TIMEOUT_MS, HANDSHAKES_IN_FLIGHT_MAX, HANDSHAKES_PER_ADDRESS_MAX, STREAMS_PER_CONNECTION_MAX } from '../src/limits.js'
import { FrameKind } from '../src/rpc/messages.js'
import { codecs } from '../src/rpc/schema.js'
import { alive, startCluster, type TestCluster } from './helpers/cluster.js'
import { Cleanups, pattern, sha256 } from './helpers/data.js'
import { frameBytes, rawFrame, RawConn } from './fuzz/wire.js'
import { BlockOp, blockToken } from './helpers/tokens.js'

const cleanups = new Cleanups()
let c: TestCluster

test.before(async () => {
  c = await startCluster(cleanups, { nodes: 3, racks: 2 })
})

test.after.always(async () => {
  await cleanups.run()
})

/** How long a daemon may take to close a connection it should close. */
const CLOSE_WITHIN_MS = 5000

const TARGETS = ['namenode', 'dn1', 'dn2', 'dn3', 'scheduler', 'agent-dn1'] as const
type TargetName = (typeof TARGETS)[number]

interface Target {
  name: TargetName
  rpc: string
  http: string
  pid: number
  /** A method this daemon serves, with a valid body, and what it answers. */
  valid: { method: string; body: Uint8Array; answers: FrameKind; code?: string }
}

function target(name: TargetName): Target {
  if (name === 'namenode') {
    const nn = c.record.namenode
    return { name, rpc: nn.rpc, http: nn.http, pid: nn.pid, valid: { method: 'DatanodeReport', body: codecs.Empty.encode({}), answers: FrameKind.RESPONSE } }
  }
  if (name === 'scheduler') {
    const s = c.record.scheduler
    return { name, rpc: s.rpc, http: s.http, pid: s.pid, valid: { method: 'ClusterState', body: codecs.Empty.encode({}), answers: FrameKind.RESPONSE } }
  }
  if (name === 'agent-dn1') {
    // The agent of node dn1: its own RPC port, its node's process and HTTP port. A task it never ran: not-found.
    const node = c.record.nodes.find((n) => n.id === 'dn1')!
    const body = codecs.ReadLogRequest.encode({ taskId: 'no-such-task', stream: 'stdout', offsetBytes: 0, maxBytes: 0 })
    return { name, rpc: node.agentRpc!, http: node.http, pid: node.pid, valid: { method: 'ReadLog', body, answers: FrameKind.ERROR, code: 'not-found' } }
  }
  const node = c.record.nodes.find((n) => n.id === name)!
  // ShortCircuit without a block access token: a typed permission error, on a connection that stays open.
  const body = codecs.ShortCircuitRequest.encode({ block: { id: 999_999, genStamp: 1, lengthBytes: 0 } })
  return { name, rpc: node.rpc, http: node.http, pid: node.pid, valid: { method: 'ShortCircuit', body, answers: FrameKind.ERROR, code: 'permission' } }
}

/** A connection that holds the cluster secret (or, for a port that speaks HTTP, a plain one). */
function openProbe(address: string, handshake = true): Promise<RawConn> {
  return RawConn.open(parseAddress(address), handshake ? 'frames' : 'bytes')
}

function request(id: number, method: string, body: Uint8Array = new Uint8Array()): Buffer {
  return frameBytes({ id, kind: FrameKind.REQUEST, method, timeoutMs: 10_000, body, user: 'hostile', groups: [] })
}

/** What p settles to within ms, or false. */
async function within(p: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** Sends bytes; the server must close the connection by itself and answer nothing. */
async function expectClosed(t: ExecutionContext, address: string, bytes: Buffer, what: string): Promise<void> {
  const p = await openProbe(address)
  try {
    p.send(bytes)
    t.true(await p.waitClosed(CLOSE_WITHIN_MS), `${what}: the connection is closed`)
    t.is(p.received, 0, `${what}: nothing answered`)
  } finally {
    p.destroy()
  }
}

/**
 * The daemons are alive (pids from the ready file), the namenode answers with every datanode live,
 * and a replication-3 file written now reads back through the attacked datanode.
 */
let check = 0
async function stillServes(t: ExecutionContext, tg: Target, what: string): Promise<void> {
  const pids = [c.record.namenode.pid, c.record.scheduler.pid, ...c.record.nodes.map((n) => n.pid)]
  for (const pid of pids) t.true(alive(pid), `${what}: pid ${pid} is alive`)
  const writer = new LoamClient({ namenode: parseAddress(c.namenode), timeoutMs: 10_000 })
  const reader = new LoamClient({ namenode: parseAddress(c.namenode), timeoutMs: 10_000, shortCircuit: false, nodeId: tg.name.startsWith('dn') ? tg.name : '' })
  try {
    const report = await writer.report()
    t.false(report.safemode, `${what}: out of safe mode`)
    t.is(report.datanodes.filter((d) => d.state === 'live').length, 3, `${what}: every datanode live`)
    const data = pattern(70_000 + check, 500 + check)
    const remote = `/alive/${tg.name}-${check++}`
    const w = await writer.create(remote, { replication: 3 })
    await w.write(data)
    await w.close()
    const r = await reader.open(remote)
    const hash = createHash('sha256')
    for await (const piece of r.read()) hash.update(piece)
    t.is(hash.digest('hex'), sha256(data), `${what}: a file written now reads back from ${tg.name}`)
  } catch (err) {
    t.fail(`${what}: the cluster no longer serves: ${(err as Error).message}`)
  } finally {
    writer.close()
    reader.close()
  }
}

for (const name of TARGETS) {
  test.serial(`${name}: random bytes close the connection, not the daemon`, async (t) => {
    const tg = target(name)
    for (const [i, size] of [1, 3, 7, 64 * 1024, 1024 * 1024].entries()) {
      const p = await openProbe(tg.rpc)
      try {
        p.send(pattern(size, 10 + i))
        p.end()
        t.true(await p.waitClosed(CLOSE_WITHIN_MS), `${size} random bytes then end: closed`)
        t.is((await p.nextFrames(1, 0)).filter((f) => f.header.kind === FrameKind.RESPONSE).length, 0, `${size} random bytes: no response`)
      } finally {
        p.destroy()
      }
    }
    // And random bytes with a first word that is a plausible length, left open: the daemon does not wait on them forever
    // once the sender goes away.
    const plausible = pattern(4096, 20)
    plausible.writeUInt32BE(2000, 0)
    const p = await openProbe(tg.rpc)
    p.send(plausible)
    p.destroy()
    await stillServes(t, tg, `${name} after random bytes`)
  })

  test.serial(`${name}: a frame whose length prefix is huge or impossible is refused before its body arrives`, async (t) => {
    const tg = target(name)
    const prefix = (n: number): Buffer => {
      const b = Buffer.alloc(64, 0x41)
      b.writeUInt32BE(n >>> 0, 0)
      return b
    }
    await expectClosed(t, tg.rpc, prefix(0xffffffff), 'length 0xFFFFFFFF')
    await expectClosed(t, tg.rpc, prefix(FRAME_BYTES_MAX - 4 + 1), 'length one over the maximum frame')
    await expectClosed(t, tg.rpc, prefix(0x7fffffff), 'length 2^31-1')
    await expectClosed(t, tg.rpc, prefix(0), 'length 0')
    await expectClosed(t, tg.rpc, prefix(3), 'length shorter than the header length field')
    await stillServes(t, tg, `${name} after huge length prefixes`)
  })

  test.serial(`${name}: a truncated frame and then a close leaves the daemon serving`, async (t) => {
    const tg = target(name)
    const whole = request(1, tg.valid.method, tg.valid.body)
    for (const cut of [2, 6, 9, Math.floor(whole.length / 2), whole.length - 1]) {
      const p = await openProbe(tg.rpc)
      try {
        p.send(whole.subarray(0, cut))
        p.end()
        t.true(await p.waitClosed(CLOSE_WITHIN_MS), `cut at ${cut} of ${whole.length}: closed`)
        t.is(p.received, 0, `cut at ${cut}: no answer to half a request`)
      } finally {
        p.destroy()
      }
    }
    // A frame announcing a big body that never comes, then a reset.
    const big = rawFrame(codecs.FrameHeader.encode({ id: 5, kind: FrameKind.REQUEST, method: tg.valid.method }), Buffer.alloc(100_000))
    const p = await openProbe(tg.rpc)
    p.send(big.subarray(0, 50_000))
    p.destroy()
    await stillServes(t, tg, `${name} after truncated frames`)
  })

  test.serial(`${name}: a frame of valid length with a garbage header closes the connection`, async (t) => {
    const tg = target(name)
    await expectClosed(t, tg.rpc, rawFrame(Buffer.alloc(16, 0xff)), 'a header of 0xFF bytes (a varint that never ends)')
    await expectClosed(t, tg.rpc, rawFrame(Buffer.from([0x0f, 0x0f, 0x0f, 0x0f])), 'a header with an invalid wire type')
    await expectClosed(t, tg.rpc, rawFrame(Buffer.alloc(8), Buffer.alloc(0), { headerBytes: 0xfffffff0 }), 'a header length larger than its frame')
    await expectClosed(t, tg.rpc, rawFrame(Buffer.from([0x10, 99])), 'a header of kind 99')
    // id = 2^60: not a safe integer
    await expectClosed(t, tg.rpc, rawFrame(Buffer.from([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0x10, 0x00])), 'a header whose id is 2^60')
    // Seeded random headers: the connection is closed or the frame answered with an error; the daemon lives.
    for (let seed = 0; seed < 8; seed++) {
      const p = await openProbe(tg.rpc)
      try {
        p.send(rawFrame(pattern(40, 300 + seed), pattern(100, 400 + seed)))
        const frames = await p.nextFrames(1, 1000)
        t.false(frames.some((f) => f.header.kind === FrameKind.RESPONSE), `random header ${seed}: never a successful response`)
      } finally {
        p.destroy()
      }
    }
    await stillServes(t, tg, `${name} after garbage headers`)
  })

  test.serial(`${name}: a well-formed frame naming an unknown method gets an ERROR frame and the connection goes on`, async (t) => {
    const tg = target(name)
    const p = await openProbe(tg.rpc)
    try {
      const methods = ['NoSuchMethod', '', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'x'.repeat(10_000)]
      methods.forEach((m, i) => p.send(request(100 + i, m)))
      const errors = await p.nextFrames(methods.length, CLOSE_WITHIN_MS)
      t.is(errors.length, methods.length, 'one answer per request')
      errors.forEach((f, i) => {
        t.is(f.header.id, 100 + i, `answer ${i} carries the request id`)
        t.is(f.header.kind, FrameKind.ERROR, `'${methods[i]!.slice(0, 20)}': an ERROR frame`)
        t.is(f.header.error?.code, 'protocol', `'${methods[i]!.slice(0, 20)}': code`)
      })

      // A known method with an undecodable body: a typed error too.
      p.send(request(200, tg.valid.method, Buffer.alloc(12, 0xff)))
      const [bad] = await p.nextFrames(1, CLOSE_WITHIN_MS)
      t.is(bad?.header.id, 200)
      t.is(bad?.header.kind, FrameKind.ERROR)
      t.is(bad?.header.error?.code, 'invalid-argument')

      // Frames of a stream that does not exist are dropped.
      p.send(frameBytes({ id: 4242, kind: FrameKind.DATA, body: new Uint8Array() }, Buffer.alloc(1000, 7)))
      p.send(frameBytes({ id: 4243, kind: FrameKind.ACK, body: new Uint8Array() }))

      // The same connection still serves a valid call.
      p.send(request(300, tg.valid.method, tg.valid.body))
      const [ok] = await p.nextFrames(1, CLOSE_WITHIN_MS)
      t.is(ok?.header.id, 300, 'the valid call is answered on the same connection')
      t.is(ok?.header.kind, tg.valid.answers)
      if (tg.valid.code) t.is(ok?.header.error?.code, tg.valid.code)
      if (name === 'namenode') t.true(codecs.DatanodeReportResponse.decode(ok!.header.body ?? new Uint8Array()).datanodes.length === 3)
    } finally {
      p.destroy()
    }
    await stillServes(t, tg, `${name} after unknown methods`)
  })

  test.serial(`${name}: garbage to the HTTP port gets a 4xx or a close, and /status still answers`, async (t) => {
    const tg = target(name)
    const attacks: Array<[string, Buffer]> = [
      ['random bytes', pattern(8192, 30)],
      ['a bad request line', Buffer.from('BREW /status HTCPCP/1.0\r\n\r\n')],
      ['a header line without a colon', Buffer.from('GET /status HTTP/1.1\r\nHost x\r\n\r\n')],
      ['a huge header', Buffer.from(`GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(200_000)}\r\n\r\n`)],
      ['a NUL in the path', Buffer.from('GET /st\0atus HTTP/1.1\r\nHost: x\r\n\r\n')],
    ]
    for (const [what, bytes] of attacks) {
      const p = await openProbe(tg.http, false)
      try {
        p.send(bytes)
        t.true(await p.waitClosed(CLOSE_WITHIN_MS), `${what}: the HTTP connection is closed`)
      } finally {
        p.destroy()
      }
    }
    // A request cut short, then a close.
    const cut = await openProbe(tg.http, false)
    cut.send(Buffer.from('GET /sta'))
    cut.end()
    t.true(await cut.waitClosed(CLOSE_WITHIN_MS))
    cut.destroy()

    const res = await fetch(`http://${tg.http}/status`)
    t.is(res.status, 200)
    const status = (await res.json()) as { role?: string }
    // The scheduler's /status is its cluster state; an agent's HTTP port is its node's.
    if (name !== 'scheduler') t.is(status.role, name === 'namenode' ? 'namenode' : 'datanode')
    const metrics = await fetch(`http://${tg.http}/metrics`)
    t.is(metrics.status, 200)
    await metrics.text()
    await stillServes(t, tg, `${name} after HTTP garbage`)
  })
}

test.serial('namenode: a header naming an over-long or odd user, or too many groups, gets a typed error and the connection goes on', async (t) => {
  const tg = target('namenode')
  const p = await openProbe(tg.rpc)
  try {
    const headers = [
      { user: 'u'.repeat(100_000), groups: [] },
      { user: 'a\0b', groups: [] },
      { user: 'root:wheel', groups: [] },
      { user: 'hostile', groups: Array.from({ length: GROUPS_PER_CALLER_MAX + 1 }, (_, i) => `g${i}`) },
      { user: 'hostile', groups: ['../g'] },
    ]
    headers.forEach((h, i) => p.send(frameBytes({ id: 700 + i, kind: FrameKind.REQUEST, method: tg.valid.method, timeoutMs: 10_000, body: tg.valid.body, ...h })))
    const answers = await p.nextFrames(headers.length, CLOSE_WITHIN_MS)
    t.deepEqual(answers.map((f) => [f.header.id, f.header.kind, f.header.error?.code]), headers.map((_, i) => [700 + i, FrameKind.ERROR, 'invalid-argument']))
    p.send(request(710, tg.valid.method, tg.valid.body))
    const [ok] = await p.nextFrames(1, CLOSE_WITHIN_MS)
    t.is(ok?.header.kind, FrameKind.RESPONSE, 'a proper header on the same connection is served')
  } finally {
    p.destroy()
  }
})

test.serial('namenode: idle connections from one address cannot take every handshake slot; others still connect and call', async (t) => {
  const tg = target('namenode')
  const { host, port } = parseAddress(tg.rpc)
  // Another loopback address than the clients', as a flood from one other host would be; more than every slot there is.
  const idle: net.Socket[] = []
  const closed: Array<Promise<void>> = []
  t.teardown(() => idle.forEach((s) => s.destroy()))
  for (let i = 0; i < HANDSHAKES_IN_FLIGHT_MAX + 44; i++) {
    const s = net.connect({ host, port, localAddress: '127.0.0.2' })
    s.on('error', () => undefined)
    closed.push(new Promise((resolve) => s.once('close', () => resolve())))
    idle.push(s)
  }
  await Promise.all(idle.map((s) => new Promise<void>((resolve) => (s.connecting ? s.once('connect', () => resolve()).once('close', () => resolve()) : resolve()))))
  const allClosed = Promise.all(closed).then(() => true)
  t.false(await within(allClosed, 200), 'the flood holds connections while the cluster is used')
  await stillServes(t, tg, 'namenode during a flood of idle connections')
  // Evicted for newcomers from other addresses, or closed for sending no hello in time: the daemon drops them all.
  t.true(await within(allClosed, HANDSHAKE_TIMEOUT_MS + CLOSE_WITHIN_MS), `all ${idle.length} idle connections closed by the daemon`)
  t.true(HANDSHAKES_PER_ADDRESS_MAX < HANDSHAKES_IN_FLIGHT_MAX)
})

test.serial('dn1: a block stream past STREAMS_PER_CONNECTION_MAX on one connection is refused with a typed error; the open ones and the connection go on', async (t) => {
  const tg = target('dn1')
  const p = await openProbe(tg.rpc)
  try {
    // Writes of new blocks that send no data: each stays open until its idle timeout (or the connection ends).
    const write = (i: number): Buffer => {
      const id = 7_000_000 + i
      const body = codecs.WriteBlockRequest.encode({ block: { id, genStamp: 1, lengthBytes: 0 }, downstream: [], clientName: 'hostile', update: false, oldGenStamp: 0, resize: false, resizeBytes: 0, copyFromBlock: 0, copyFromGenStamp: 0, token: blockToken(id, BlockOp.WRITE) })
      return frameBytes({ id: 10_000 + i, kind: FrameKind.REQUEST, method: 'WriteBlock', timeoutMs: 60_000, body, user: 'hostile', groups: [] })
    }
    p.send(Buffer.concat(Array.from({ length: STREAMS_PER_CONNECTION_MAX }, (_, i) => write(i))))
    p.send(write(STREAMS_PER_CONNECTION_MAX))
    const [refused] = await p.nextFrames(1, CLOSE_WITHIN_MS)
    t.is(refused?.header.id, 10_000 + STREAMS_PER_CONNECTION_MAX, 'the stream past the limit, and only it, is answered')
    t.is(refused?.header.kind, FrameKind.ERROR)
    t.is(refused?.header.error?.code, 'unavailable')
    t.regex(refused?.header.error?.message ?? '', new RegExp(`${STREAMS_PER_CONNECTION_MAX} block streams are open`))
    // Unary calls on the same connection are still read and answered while the streams stay open.
    p.send(request(501, tg.valid.method, tg.valid.body))
    const [ok] = await p.nextFrames(1, CLOSE_WITHIN_MS)
    t.is(ok?.header.id, 501)
    t.is(ok?.header.error?.code, tg.valid.code)
    t.false(p.closed, 'the connection stays open')
  } finally {
    p.destroy()
  }
  await stillServes(t, tg, 'dn1 after a connection full of streams')
})

test.serial('dn1: DATA frames pushed into a block stream that never reads them do not stall the connection once it ends', async (t) => {
  const tg = target('dn1')
  const p = await openProbe(tg.rpc)
  try {
    // Refused at once (no block access token), with more DATA frames behind it than a stream queues before the socket pauses.
    const read = codecs.ReadBlockRequest.encode({ block: { id: 999_998, genStamp: 1, lengthBytes: 0 }, offsetBytes: 0, lengthBytes: 0 })
    const data = Array.from({ length: 64 }, (_, seqno) => frameBytes({ id: 500, kind: FrameKind.DATA, body: codecs.Packet.encode({ seqno, offsetBytes: 0, checksums: new Uint8Array(), last: false, sync: false }) }))
    p.send(Buffer.concat([request(500, 'ReadBlock', read), ...data]))
    const [refused] = await p.nextFrames(1, CLOSE_WITHIN_MS)
    t.is(refused?.header.id, 500)
    t.is(refused?.header.error?.code, 'permission')
    p.send(request(501, tg.valid.method, tg.valid.body))
    const [ok] = await p.nextFrames(1, CLOSE_WITHIN_MS)
    t.is(ok?.header.id, 501, 'the next call on the connection is answered')
    t.is(ok?.header.error?.code, tg.valid.code)
  } finally {
    p.destroy()
  }
})

test.serial('after all that, the loam command still works: report, put, get', async (t) => {
  for (const name of TARGETS) t.true(alive(target(name).pid), `${name} is alive`)
  const report = await c.loam(['report'])
  t.is(report.code, 0, report.stderr)
  t.regex(report.stdout.toString(), /3 of 3 datanodes live/)
  const data = pattern(3 * 1024 * 1024 + 5, 77)
  const put = await c.loam(['fs', 'put', '-', '/after-garbage', '--block-size', '1MiB'], { input: data })
  t.is(put.code, 0, put.stderr)
  for (const env of [{}, { LOAM_SHORT_CIRCUIT: '0' }]) {
    const cat = await c.loam(['fs', 'cat', '/after-garbage'], { env })
    t.is(cat.code, 0, cat.stderr)
    t.true(cat.stdout.equals(data))
  }
  const fsck = await c.loam(['fsck', '/', '--json'])
  t.is(fsck.code, 0, fsck.stderr)
  t.true((JSON.parse(fsck.stdout.toString()) as { healthy: boolean }).healthy)
})
