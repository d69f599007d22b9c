// The attacks: each takes one daemon and one Rng, throws something at it and
// judges every answer. An answer is fine when it is an ERROR frame with a code
// of src/rpc/errors.ts ERROR_CODES, a closed connection, or a success the rules
// of generators.ts allow; anything else, and any call left unanswered past its
// deadline, is recorded as a failure with the attack's number so it replays.
import { chunkChecksums, firstBadChunk } from '../../src/common/checksum.js'
import { BLOCK_SIZE_MAX_BYTES, CALLS_PER_CONNECTION_MAX, CHUNK_BYTES, FRAME_BYTES_MAX, HANDSHAKE_TIMEOUT_MS, PACKET_BYTES_MAX, XATTRS_PER_INODE_MAX } from '../../src/limits.js'
import { encodeHello, HELLO_BYTES, newNonce, PROOF_BYTES, SERVER_HELLO_BYTES } from '../../src/rpc/auth.js'
import { isErrorCode } from '../../src/rpc/errors.js'
import type { Frame } from '../../src/rpc/frame.js'
import { FrameKind, type BlockRef, type DatanodeInfo } from '../../src/rpc/messages.js'
import { codecs, type Codec } from '../../src/rpc/schema.js'
import { AgentService, DatanodeService, NamenodeService, SchedulerService } from '../../src/rpc/service.js'
import { BlockOp } from '../helpers/tokens.js'
import {
  blockIdAbsent,
  fuzzToken,
  tokenProblem,
  agentCall,
  AGENT_METHODS,
  datanodeCall,
  DATANODE_UNARY_METHODS,
  headerFields,
  namenodeCall,
  NAMENODE_METHODS,
  schedulerCall,
  SCHEDULER_METHODS,
  NAMENODE_RULES,
  scratchBlockId,
  unusedBlockId,
  XATTR_NAMES,
  xattrValue,
  type Expect,
  type GenCall,
  type World,
} from './generators.js'
import type { Rng } from '../helpers/rng.js'
import { rssBytes } from './checks.js'
import { dataFrame, frameBytes, headerBytes, RawConn, rawFrame, requestFrame, type Endpoint } from './wire.js'

/** A well-formed unary call is answered by then, however hostile its arguments, on a loaded machine. */
export const CALL_WAIT_MS = 20_000
/** A connection the daemon must close is closed by then. */
export const CLOSE_WAIT_MS = 10_000
/** A stream's idle timeout fires within this much of the timeout its request asked for. */
export const STREAM_GRACE_MS = 15_000
/** Streams the fuzzer opens with a short idle timeout, so a silent one ends quickly. */
const STREAM_TIMEOUTS_MS = [300, 1000, 2000]

export interface Target {
  name: string
  role: 'namenode' | 'datanode' | 'scheduler' | 'agent'
  rpc: Endpoint
  http: Endpoint
  pid: number
}

export interface Failure {
  /** The kind of attack. */
  kind: string
  target: string
  /** What went wrong, in a few words (failures with the same words are grouped). */
  what: string
  /** The request and the answer. */
  detail: string
  attack: number
}

export interface Recorder {
  /** One request (or one probe, one connection) of this kind was made. */
  request(kind: string): void
  /** What came of it: 'ok', 'error:CODE', 'closed', 'silent', 'http NNN'. */
  outcome(kind: string, label: string): void
  fail(f: Failure): void
  /** A successful call that changed the namespace, kept for when an invariant breaks. */
  mutated(attack: number, summary: string): void
}

export interface AttackEnv {
  targets: Target[]
  world: World
  rec: Recorder
  rng: Rng
  attack: number
  /** Long attacks stop early at this time. */
  untilMs: number
  /** The method a sweep attack calls (every method is called at the start of every run). */
  method?: string
}

type Attack = (env: AttackEnv, t: Target) => Promise<void>

/** A UTF-16 surrogate without its pair: protobufjs writes it as bytes that are not UTF-8, and refuses to read them back. */
export const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

// ---------------------------------------------------------------- judging answers

/** A JSON-ish line for a request or response: long strings and byte arrays shortened. */
export function summarize(value: unknown, max = 600): string {
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return `<${v.length} bytes>`
    if (typeof v === 'string' && v.length > 80) return `${JSON.stringify(v.slice(0, 40)).slice(1, -1)}...<${v.length} chars>`
    if (Array.isArray(v) && v.length > 8) return [...v.slice(0, 8), `...<${v.length} items>`]
    return v
  })
  return text.length > max ? `${text.slice(0, max)}...` : text
}

/** Messages of an 'io' error that only an exception the code did not mean to throw produces (the server turns those into 'io'). */
const INTERNAL_ERROR = /assertion failed|Cannot read properties|is not a function|is not iterable|TypeError|RangeError|ReferenceError|ERR_[A-Z_]+|Maximum call stack|invalid wire type|invalid tag|index out of range|illegal/i

function label(answer: Frame | 'closed' | 'timeout'): string {
  if (answer === 'closed' || answer === 'timeout') return answer === 'closed' ? 'closed' : 'silent'
  if (answer.header.kind === FrameKind.ERROR) return `error:${answer.header.error?.code ?? '?'}`
  if (answer.header.kind === FrameKind.RESPONSE) return 'ok'
  return `kind:${answer.header.kind}`
}

/**
 * Judges the end of one call: typed errors and closes pass; a success must be
 * allowed by expect; silence past the deadline is a hang. Returns the response
 * body decoded, when there was a success.
 */
export function judge(env: AttackEnv, kind: string, t: Target, what: string, request: unknown, expect: Expect, answer: Frame | 'closed' | 'timeout', response?: Codec<unknown>): unknown {
  const { rec } = env
  rec.outcome(kind, label(answer))
  const fail = (w: string, detail: string): void => rec.fail({ kind, target: t.name, what: w, detail: `${what} ${summarize(request)}: ${detail}`, attack: env.attack })
  if (answer === 'timeout') {
    fail(`${what}: no answer within its deadline`, `nothing came back on an open connection`)
    return undefined
  }
  if (answer === 'closed') return undefined
  const h = answer.header
  if (h.kind === FrameKind.ERROR) {
    const code = h.error?.code ?? ''
    const message = h.error?.message ?? ''
    if (!isErrorCode(code)) fail(`${what}: an error code outside ERROR_CODES`, `code '${code}': ${message}`)
    else if (code === 'io' && INTERNAL_ERROR.test(message)) fail(`${what}: an internal error reached the caller`, `${code}: ${message.slice(0, 400)}`)
    return undefined
  }
  if (h.kind !== FrameKind.RESPONSE) {
    fail(`${what}: answered with a frame of kind ${h.kind}`, summarize(h))
    return undefined
  }
  if (expect.refuse) {
    fail(`${what}: accepted ${expect.refuse.replace(/ '.*$/, '')}`, `accepted ${expect.refuse}`)
    return undefined
  }
  if (!response) return undefined
  let decoded: unknown
  try {
    decoded = response.decode(h.body ?? new Uint8Array())
  } catch (err) {
    fail(`${what}: a response that does not decode`, (err as Error).message)
    return undefined
  }
  const problem = expect.check?.(decoded)
  if (problem) fail(`${what}: ${problem.replace(/ [0-9]+.*$/, '')}`, problem)
  return decoded
}

/** Opens a connection; a daemon that does not accept one is a failure. */
async function open(env: AttackEnv, kind: string, t: Target, ep: Endpoint = t.rpc, mode: 'frames' | 'unauthenticated-bytes' | 'bytes' = 'frames'): Promise<RawConn | undefined> {
  try {
    return await RawConn.open(ep, mode)
  } catch (err) {
    env.rec.fail({ kind, target: t.name, what: 'a connection was not accepted', detail: `${ep.host}:${ep.port}: ${(err as Error).message}`, attack: env.attack })
    return undefined
  }
}

/** A valid call each daemon answers at once: what a probe after an attack (and a health check) sends. */
export function probe(t: Pick<Target, 'role'>): { method: string; body: Uint8Array; expectKind: FrameKind } {
  switch (t.role) {
    case 'namenode':
      return { method: 'GetFileInfo', body: codecs.PathRequest.encode({ path: '/' }), expectKind: FrameKind.RESPONSE }
    case 'datanode':
      return { method: 'InspectReplica', body: codecs.InspectReplicaRequest.encode({ blockId: 2 ** 41 }), expectKind: FrameKind.ERROR }
    case 'scheduler':
      return { method: 'ClusterState', body: codecs.Empty.encode({}), expectKind: FrameKind.RESPONSE }
    case 'agent':
      // A task this agent never ran: not-found.
      return { method: 'ReadLog', body: codecs.ReadLogRequest.encode({ taskId: 'fz-none', stream: 'stdout', offsetBytes: 0, maxBytes: 0 }), expectKind: FrameKind.ERROR }
  }
}

/** Sends a probe on conn and requires an answer (closing instead is allowed only when mayClose). */
async function probeAnswered(env: AttackEnv, kind: string, t: Target, conn: RawConn, id: number, after: string, mayClose: boolean): Promise<void> {
  const p = probe(t)
  conn.send(requestFrame(id, p.method, p.body))
  env.rec.request(`${kind}/probe`)
  const answer = await conn.final(id, CALL_WAIT_MS)
  env.rec.outcome(`${kind}/probe`, label(answer))
  if (answer === 'timeout') env.rec.fail({ kind, target: t.name, what: `a valid call after ${after} was never answered`, detail: `${p.method} id ${id} on the same connection: no answer in ${CALL_WAIT_MS} ms and the connection is still open`, attack: env.attack })
  else if (answer === 'closed' && !mayClose) env.rec.fail({ kind, target: t.name, what: `the connection was closed after ${after}`, detail: `a valid ${p.method} on it got no answer`, attack: env.attack })
  else if (answer !== 'closed' && answer.header.kind !== p.expectKind) env.rec.fail({ kind, target: t.name, what: `a valid call after ${after} got the wrong answer`, detail: summarize(answer.header), attack: env.attack })
}

/** Requires the daemon to close conn by itself, having answered nothing. */
async function expectClosed(env: AttackEnv, kind: string, t: Target, conn: RawConn, what: string, silent = true): Promise<void> {
  const closed = await conn.waitClosed(CLOSE_WAIT_MS)
  env.rec.outcome(kind, closed ? 'closed' : 'silent')
  if (!closed) env.rec.fail({ kind, target: t.name, what: `${what}: the connection stayed open`, detail: `not closed within ${CLOSE_WAIT_MS} ms`, attack: env.attack })
  if (silent && conn.received > 0 && conn.frames.some((f) => f.header.kind === FrameKind.RESPONSE)) {
    env.rec.fail({ kind, target: t.name, what: `${what}: answered with a success`, detail: summarize(conn.frames.map((f) => f.header)), attack: env.attack })
  }
  if (conn.decodeError) env.rec.fail({ kind, target: t.name, what: 'the daemon sent bytes that are not frames', detail: conn.decodeError.message, attack: env.attack })
}

const SERVICES = { namenode: NamenodeService, datanode: DatanodeService, scheduler: SchedulerService, agent: AgentService }

function serviceOf(t: Target): Record<string, { kind: string; request: Codec<unknown>; response: Codec<unknown> }> {
  return SERVICES[t.role] as unknown as Record<string, { kind: string; request: Codec<unknown>; response: Codec<unknown> }>
}

/** A well-formed call with hostile arguments for the target's service. */
function hostileCall(t: Target, rng: Rng, world: World, method: string | undefined): GenCall {
  switch (t.role) {
    case 'namenode':
      return namenodeCall(rng, world, method)
    case 'datanode':
      return datanodeCall(rng, world, method)
    case 'scheduler':
      return schedulerCall(rng, world, method)
    case 'agent':
      return agentCall(rng, world, method)
  }
}

// ---------------------------------------------------------------- raw bytes and broken frames

const randomBytes: Attack = async (env, t) => {
  const { rng } = env
  const size = rng.pick([1, 2, 3, 4, 7, 8, 9, 64, 4096, 65_536, 1 << 20])
  const conn = await open(env, 'random-bytes', t)
  if (!conn) return
  env.rec.request('random-bytes')
  conn.send(rng.bytes(size))
  conn.end()
  await expectClosed(env, 'random-bytes', t, conn, `${size} random bytes then the end`)
  conn.destroy()
}

const badLength: Attack = async (env, t) => {
  const { rng } = env
  const variant = rng.pick(['prefix', 'prefix', 'header-longer', 'header-huge'] as const)
  const conn = await open(env, 'bad-length', t)
  if (!conn) return
  env.rec.request('bad-length')
  let what: string
  if (variant === 'prefix') {
    const n = rng.pick([0, 1, 2, 3, FRAME_BYTES_MAX - 4 + 1, FRAME_BYTES_MAX, FRAME_BYTES_MAX + 1, 2 ** 31, 2 ** 32 - 1])
    const b = Buffer.concat([Buffer.alloc(4), rng.bytes(rng.int(4, 64))])
    b.writeUInt32BE(n, 0)
    conn.send(b)
    what = `a frame length of ${n}`
  } else {
    const header = headerBytes({ id: 1, kind: FrameKind.REQUEST, method: probe(t).method, body: probe(t).body })
    const extra = variant === 'header-longer' ? rng.int(1, 64) : 0
    const headerField = variant === 'header-longer' ? header.length + extra + 8 : 2 ** 32 - 1
    conn.send(rawFrame(header, rng.bytes(extra), { headerBytes: headerField }))
    what = `a header length of ${headerField} in a frame of ${4 + header.length + extra}`
  }
  await expectClosed(env, 'bad-length', t, conn, what)
  if (conn.received > 0) env.rec.fail({ kind: 'bad-length', target: t.name, what: `${what.replace(/[0-9]+/g, 'N')}: answered instead of closed`, detail: summarize(conn.frames.map((f) => f.header)), attack: env.attack })
  conn.destroy()
}

/** A frame of exactly FRAME_BYTES_MAX: the largest the daemon must take. */
const maxFrame: Attack = async (env, t) => {
  const p = probe(t)
  const header = headerBytes({ id: 3, kind: FrameKind.REQUEST, method: p.method, body: p.body, timeoutMs: 10_000, user: 'fuzz' })
  const payload = env.rng.bytes(FRAME_BYTES_MAX - 8 - header.length)
  const conn = await open(env, 'max-frame', t)
  if (!conn) return
  env.rec.request('max-frame')
  conn.send(rawFrame(header, payload))
  const answer = await conn.final(3, CALL_WAIT_MS)
  env.rec.outcome('max-frame', label(answer))
  if (answer === 'timeout' || answer === 'closed') env.rec.fail({ kind: 'max-frame', target: t.name, what: `a frame of exactly FRAME_BYTES_MAX was ${answer === 'closed' ? 'refused' : 'never answered'}`, detail: `${p.method}, ${FRAME_BYTES_MAX} bytes`, attack: env.attack })
  conn.destroy()
}

const truncated: Attack = async (env, t) => {
  const { rng } = env
  const whole = rng.chance(0.5) ? requestFrame(1, probe(t).method, probe(t).body) : requestFrame(1, probe(t).method, probe(t).body, { timeoutMs: 5000 }).subarray(0)
  const big = rng.chance(0.2)
  const bytes = big ? rawFrame(headerBytes({ id: 5, kind: FrameKind.REQUEST, method: probe(t).method }), rng.bytes(100_000)) : whole
  const cut = rng.int(1, bytes.length - 1)
  const how = rng.pick(['end', 'destroy', 'reset', 'linger'] as const)
  const conn = await open(env, 'truncated', t)
  if (!conn) return
  env.rec.request('truncated')
  conn.send(bytes.subarray(0, cut))
  if (how === 'end') {
    conn.end()
    await expectClosed(env, 'truncated', t, conn, `a frame cut at ${cut} of ${bytes.length} bytes then the end`)
    if (conn.received > 0) env.rec.fail({ kind: 'truncated', target: t.name, what: 'half a frame was answered', detail: `cut at ${cut} of ${bytes.length}`, attack: env.attack })
  } else if (how === 'linger') {
    // The daemon waits for the rest; it must not answer half a request.
    await conn.waitUntil(() => conn.received > 0 || conn.closed, rng.int(100, 1500))
    env.rec.outcome('truncated', conn.closed ? 'closed' : 'silent')
    if (conn.received > 0) env.rec.fail({ kind: 'truncated', target: t.name, what: 'half a frame was answered', detail: `cut at ${cut} of ${bytes.length}`, attack: env.attack })
    conn.resetNow()
  } else {
    env.rec.outcome('truncated', how)
    if (how === 'reset') conn.resetNow()
    else conn.destroy()
  }
}

/** Frames of a valid length whose header is garbage, or holds a kind or id out of range. */
const garbageHeader: Attack = async (env, t) => {
  const { rng } = env
  const variant = rng.pick(['random', 'kind', 'id', 'wire'] as const)
  let header: Uint8Array
  let mustClose = true
  if (variant === 'random') {
    header = rng.bytes(rng.int(1, 200))
    mustClose = false // random bytes may decode as some header: answered with an error or closed
  } else if (variant === 'kind') {
    header = headerBytes({ id: 7, kind: rng.pick([5, 6, 99, 2 ** 31 - 1, -1]) as FrameKind, method: probe(t).method, body: probe(t).body })
  } else if (variant === 'id') {
    header = headerBytes({ id: rng.pick([2 ** 53, 2 ** 60, -1, -1]), kind: FrameKind.REQUEST, method: probe(t).method, body: probe(t).body })
  } else {
    header = rng.pick([Buffer.alloc(16, 0xff), Buffer.from([0x0f, 0x0f, 0x0f, 0x0f]), Buffer.from([0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f])])
  }
  const conn = await open(env, 'garbage-header', t)
  if (!conn) return
  env.rec.request('garbage-header')
  conn.send(rawFrame(header, rng.chance(0.5) ? rng.bytes(rng.int(0, 500)) : Buffer.alloc(0)))
  if (mustClose) {
    await expectClosed(env, 'garbage-header', t, conn, `a header with a bad ${variant}`)
  } else {
    await conn.waitUntil(() => conn.closed || conn.frames.length > 0 || conn.decodeError !== undefined, 2000)
    env.rec.outcome('garbage-header', conn.closed ? 'closed' : conn.frames.length > 0 ? 'answered' : 'silent')
    const ok = conn.frames.find((f) => f.header.kind === FrameKind.RESPONSE)
    if (ok) env.rec.fail({ kind: 'garbage-header', target: t.name, what: 'a random header got a success', detail: summarize(ok.header), attack: env.attack })
    for (const f of conn.frames) if (f.header.kind === FrameKind.ERROR && !isErrorCode(f.header.error?.code ?? '')) env.rec.fail({ kind: 'garbage-header', target: t.name, what: 'an error code outside ERROR_CODES', detail: summarize(f.header), attack: env.attack })
  }
  conn.destroy()
}

/** A known method with a body that is not its request: 'invalid-argument', and the connection goes on. */
const badBody: Attack = async (env, t) => {
  const { rng } = env
  const service = serviceOf(t)
  const method = rng.pick(Object.keys(service))
  const spec = service[method]!
  let body: Uint8Array = Buffer.alloc(12, 0xff)
  for (let i = 0; i < 10; i++) {
    const candidate = rng.chance(0.5) ? rng.bytes(rng.int(1, 300)) : mangle(rng, spec.request.encode({}))
    try {
      spec.request.decode(candidate)
    } catch {
      body = candidate
      break
    }
  }
  const conn = await open(env, 'bad-body', t)
  if (!conn) return
  env.rec.request('bad-body')
  conn.send(requestFrame(11, method, body, { timeoutMs: 2000 }))
  const answer = await conn.final(11, CALL_WAIT_MS)
  judge(env, 'bad-body', t, method, { body: `<${body.length} undecodable bytes>` }, { refuse: 'an undecodable request body' }, answer)
  if (answer !== 'closed' && answer !== 'timeout') {
    if (answer.header.error?.code !== 'invalid-argument') env.rec.fail({ kind: 'bad-body', target: t.name, what: `${method}: an undecodable body got '${answer.header.error?.code ?? 'ok'}', not invalid-argument`, detail: summarize(answer.header), attack: env.attack })
    await probeAnswered(env, 'bad-body', t, conn, 12, 'an undecodable body', false)
  }
  conn.destroy()
}

function mangle(rng: Rng, valid: Uint8Array): Buffer {
  const b = Buffer.concat([Buffer.from(valid), rng.bytes(rng.int(1, 40))])
  for (let i = 0; i < rng.int(1, 4); i++) b[rng.int(0, b.length - 1)] = rng.int(0, 255)
  return b.subarray(0, rng.int(1, b.length))
}

/** Methods no daemon serves (the other role's, prototype names, huge): 'protocol', and the connection goes on. */
const unknownMethod: Attack = async (env, t) => {
  const { rng } = env
  const other = Object.keys(t.role === 'namenode' ? DatanodeService : NamenodeService)
  const methods = Array.from({ length: rng.int(1, 8) }, () => rng.pick(['', 'NoSuchMethod', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'x'.repeat(10_000), 'mkdirs', 'MKDIRS', 'Mkdirs\0', '\ud800', rng.pick(other), rng.bytes(20).toString('latin1')]))
  const conn = await open(env, 'unknown-method', t)
  if (!conn) return
  methods.forEach((m, i) => {
    env.rec.request('unknown-method')
    conn.send(requestFrame(100 + i, m, rng.chance(0.5) ? new Uint8Array() : rng.bytes(20)))
  })
  // A method name that is not valid UTF-16 is sent as bytes that are not UTF-8: the header itself is malformed, and the connection closes.
  const malformed = methods.findIndex((m) => LONE_SURROGATE.test(m))
  for (const [i, m] of methods.entries()) {
    if (Object.hasOwn(serviceOf(t), m)) continue
    const answer = await conn.final(100 + i, CALL_WAIT_MS)
    if (malformed >= 0 && i >= malformed) {
      env.rec.outcome('unknown-method', label(answer))
      if (answer === 'timeout') env.rec.fail({ kind: 'unknown-method', target: t.name, what: 'a header that is not UTF-8 neither answered nor closed', detail: summarize(methods), attack: env.attack })
      continue
    }
    judge(env, 'unknown-method', t, `method '${m.slice(0, 20)}'`, { method: m }, { refuse: 'an unknown method' }, answer)
    if (answer !== 'closed' && answer !== 'timeout' && answer.header.error?.code !== 'protocol') env.rec.fail({ kind: 'unknown-method', target: t.name, what: `an unknown method got '${answer.header.error?.code ?? 'ok'}', not protocol`, detail: summarize(answer.header), attack: env.attack })
  }
  if (malformed >= 0) await expectClosed(env, 'unknown-method', t, conn, 'a header whose method is not UTF-8', false)
  else await probeAnswered(env, 'unknown-method', t, conn, 999, 'unknown methods', false)
  conn.destroy()
}

/** Stream frames (DATA, ACK, RESPONSE, ERROR) for streams that do not exist: dropped, and the connection goes on. */
const strayFrames: Attack = async (env, t) => {
  const { rng } = env
  const conn = await open(env, 'stray-frames', t)
  if (!conn) return
  for (let i = 0; i < rng.int(1, 40); i++) {
    env.rec.request('stray-frames')
    const kind = rng.pick([FrameKind.DATA, FrameKind.ACK, FrameKind.RESPONSE, FrameKind.ERROR])
    conn.send(frameBytes({ id: rng.pick([0, 1, 5, 2 ** 53 - 1, rng.int(1, 1e6)]), kind, body: rng.bytes(rng.int(0, 64)), error: kind === FrameKind.ERROR ? { code: 'bogus', message: 'x' } : undefined }, rng.chance(0.3) ? rng.bytes(rng.int(1, PACKET_BYTES_MAX)) : undefined))
  }
  env.rec.outcome('stray-frames', conn.closed ? 'closed' : 'dropped')
  await probeAnswered(env, 'stray-frames', t, conn, 77, 'frames of streams that do not exist', false)
  conn.destroy()
}

/** Request ids at the edges: safe ones answered under the same id, unsafe ones close the connection. */
const idEdges: Attack = async (env, t) => {
  const { rng } = env
  const id = rng.pick([0, 1, 2 ** 32, 2 ** 53 - 1])
  const conn = await open(env, 'id-edges', t)
  if (!conn) return
  env.rec.request('id-edges')
  const p = probe(t)
  conn.send(requestFrame(id, p.method, p.body))
  const answer = await conn.final(id, CALL_WAIT_MS)
  judge(env, 'id-edges', t, `${p.method} with id ${id}`, { id }, {}, answer)
  if (answer === 'closed') env.rec.fail({ kind: 'id-edges', target: t.name, what: 'a request with a safe id edge closed the connection', detail: `id ${id}`, attack: env.attack })
  conn.destroy()
}

/** Two unary calls under one id are both answered; a stream id reused while its stream is open closes the connection. */
const reusedIds: Attack = async (env, t) => {
  const { rng } = env
  const conn = await open(env, 'reused-ids', t)
  if (!conn) return
  const p = probe(t)
  env.rec.request('reused-ids')
  conn.send(Buffer.concat([requestFrame(5, p.method, p.body), requestFrame(5, p.method, p.body)]))
  const answered = await conn.waitUntil(() => conn.frames.filter((f) => f.header.id === 5).length >= 2 || conn.closed, CALL_WAIT_MS)
  env.rec.outcome('reused-ids', answered ? (conn.closed ? 'closed' : 'ok') : 'silent')
  if (!answered) env.rec.fail({ kind: 'reused-ids', target: t.name, what: 'two unary calls with one id were not both answered', detail: `${conn.frames.filter((f) => f.header.id === 5).length} answers to id 5`, attack: env.attack })
  if (t.role === 'datanode' && !conn.closed) {
    env.rec.request('reused-ids')
    const timeoutMs = rng.pick(STREAM_TIMEOUTS_MS)
    const write = codecs.WriteBlockRequest.encode({ block: { id: scratchBlockId(rng), genStamp: 1, lengthBytes: 0 }, downstream: [], clientName: 'fuzz', update: false, oldGenStamp: 0, resize: false, resizeBytes: 0, copyFromBlock: 0, copyFromGenStamp: 0 })
    conn.send(requestFrame(9, 'WriteBlock', write, { timeoutMs }))
    conn.send(requestFrame(9, rng.pick(['WriteBlock', 'ReadBlock']), rng.pick(['WriteBlock', 'ReadBlock']) === 'ReadBlock' ? codecs.ReadBlockRequest.encode({ block: null, offsetBytes: 0, lengthBytes: 0 }) : write, { timeoutMs }))
    // The first stream may already have failed (its replica refused) and freed the id: then the second is simply a new stream.
    await conn.waitUntil(() => conn.closed || conn.frames.filter((f) => f.header.id === 9 && f.header.kind === FrameKind.ERROR).length >= 2, timeoutMs + STREAM_GRACE_MS)
    env.rec.outcome('reused-ids', conn.closed ? 'closed' : 'errors')
    if (!conn.closed && conn.frames.filter((f) => f.header.id === 9 && f.header.kind === FrameKind.ERROR).length < 2) {
      env.rec.fail({ kind: 'reused-ids', target: t.name, what: 'a reused stream id neither closed the connection nor ended both streams', detail: `stream timeout ${timeoutMs} ms`, attack: env.attack })
    }
  }
  conn.destroy()
}

/** More calls or streams on one connection than CALLS_PER_CONNECTION_MAX: all end, none hangs. */
const manyStreams: Attack = async (env, t) => {
  const { rng } = env
  const conn = await open(env, 'many-streams', t)
  if (!conn) return
  const n = CALLS_PER_CONNECTION_MAX + rng.int(1, 100)
  const timeoutMs = rng.pick(STREAM_TIMEOUTS_MS)
  const frames: Buffer[] = []
  for (let i = 0; i < n; i++) {
    if (t.role === 'datanode') {
      const write = codecs.WriteBlockRequest.encode({ block: { id: scratchBlockId(rng), genStamp: 1, lengthBytes: 0 }, downstream: [], clientName: 'fuzz', update: false, oldGenStamp: 0, resize: false, resizeBytes: 0, copyFromBlock: 0, copyFromGenStamp: 0 })
      frames.push(requestFrame(1000 + i, 'WriteBlock', write, { timeoutMs }))
    } else {
      const p = probe(t)
      frames.push(requestFrame(1000 + i, p.method, p.body))
    }
  }
  env.rec.request('many-streams')
  conn.send(Buffer.concat(frames))
  const p = probe(t)
  conn.send(requestFrame(1000 + n, p.method, p.body))
  const ended = (): number => new Set(conn.frames.filter((f) => f.header.kind === FrameKind.ERROR || f.header.kind === FrameKind.RESPONSE).map((f) => f.header.id)).size
  const waitMs = t.role === 'datanode' ? 3 * (timeoutMs + STREAM_GRACE_MS) : 2 * CALL_WAIT_MS
  const done = await conn.waitUntil(() => conn.closed || ended() >= n + 1, waitMs)
  env.rec.outcome('many-streams', conn.closed ? 'closed' : done ? 'all-ended' : 'silent')
  if (!done) env.rec.fail({ kind: 'many-streams', target: t.name, what: `${t.role === 'datanode' ? 'streams' : 'calls'} over CALLS_PER_CONNECTION_MAX on one connection did not all end`, detail: `${ended()} of ${n + 1} ended within ${waitMs} ms (stream timeout ${timeoutMs} ms)`, attack: env.attack })
  for (const f of conn.frames) if (f.header.kind === FrameKind.ERROR && !isErrorCode(f.header.error?.code ?? '')) env.rec.fail({ kind: 'many-streams', target: t.name, what: 'an error code outside ERROR_CODES', detail: summarize(f.header), attack: env.attack })
  conn.destroy()
}

/** Many connections at once, idle or dropped mid-frame: a fresh connection is still served. */
const manyConnections: Attack = async (env, t) => {
  const { rng } = env
  const n = rng.int(20, 200)
  const p = probe(t)
  const whole = requestFrame(1, p.method, p.body)
  const conns = (await Promise.all(Array.from({ length: n }, () => RawConn.open(t.rpc).catch(() => undefined)))).filter((c): c is RawConn => c !== undefined)
  env.rec.request('many-connections')
  env.rec.outcome('many-connections', conns.length === n ? 'all accepted' : `${conns.length} of ${n} accepted`)
  for (const c of conns) if (rng.chance(0.5)) c.send(whole.subarray(0, rng.int(1, whole.length - 1)))
  const fresh = await open(env, 'many-connections', t)
  if (fresh) {
    await probeAnswered(env, 'many-connections', t, fresh, 1, `${conns.length} other connections were opened`, false)
    fresh.destroy()
  }
  for (const c of conns) if (rng.chance(0.5)) c.resetNow()
  else c.destroy()
}

/** Data frames pushed into a stream that never reads them, then a valid call on the same connection. */
const unsolicitedData: Attack = async (env, t) => {
  const { rng, world } = env
  if (t.role !== 'datanode') return
  const conn = await open(env, 'unsolicited-data', t)
  if (!conn) return
  const held = world.realBlocks.filter((b) => b.nodes.includes(t.name))
  const block = held.length > 0 && rng.chance(0.5) ? rng.pick(held).block : { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }
  const frames = [requestFrame(21, 'ReadBlock', codecs.ReadBlockRequest.encode({ block, offsetBytes: 0, lengthBytes: 0 }), { timeoutMs: 2000 })]
  const n = rng.int(1, 64)
  for (let i = 0; i < n; i++) frames.push(dataFrame(21, codecs.Packet.encode({ seqno: i, offsetBytes: 0, checksums: new Uint8Array(), last: false, sync: false }), rng.bytes(rng.int(0, 1024))))
  env.rec.request('unsolicited-data')
  conn.send(Buffer.concat(frames))
  env.rec.outcome('unsolicited-data', label(await conn.final(21, CALL_WAIT_MS)))
  await probeAnswered(env, 'unsolicited-data', t, conn, 22, `${n} DATA frames into a ReadBlock stream`, true)
  conn.destroy()
}

// ---------------------------------------------------------------- well-formed calls, hostile arguments

async function sendCall(conn: RawConn, id: number, call: GenCall, h: { timeoutMs: number; user: string; groups: string[]; epoch: number }): Promise<boolean> {
  try {
    conn.send(requestFrame(id, call.method, call.body, h))
    return true
  } catch {
    return false // over FRAME_BYTES_MAX: the real encoder refuses it too
  }
}

/** A batch of well-formed calls with hostile arguments, pipelined on one connection. */
const hostileCalls: Attack = async (env, t) => {
  const { rng, world, rec } = env
  const conn = await open(env, 'hostile-call', t)
  if (!conn) return
  const calls: Array<{ id: number; call: GenCall; response: Codec<unknown> }> = []
  for (let i = 0; i < (env.method ? 4 : rng.int(1, 6)); i++) {
    const call = hostileCall(t, rng, world, env.method)
    const h = headerFields(rng)
    if (!(await sendCall(conn, 200 + i, call, h))) continue
    rec.request(`call/${call.method}`)
    calls.push({ id: 200 + i, call, response: serviceOf(t)[call.method]!.response })
  }
  for (const c of calls) {
    const answer = await conn.final(c.id, CALL_WAIT_MS)
    judge(env, `call/${c.call.method}`, t, c.call.method, c.call.decoded, c.call.expect, answer, c.response)
    if (answer !== 'closed' && answer !== 'timeout' && answer.header.kind === FrameKind.RESPONSE && t.role === 'namenode' && mutating(c.call.method)) rec.mutated(env.attack, `${c.call.method} ${summarize(c.call.decoded, 300)}`)
  }
  conn.destroy()
}

const READ_ONLY = new Set(['GetBlockLocations', 'GetFileInfo', 'ListStatus', 'GetXattrs', 'ListVolumes', 'GetVolume', 'ListSnapshots', 'DatanodeReport', 'RenewLease', 'Heartbeat'])
function mutating(method: string): boolean {
  return !READ_ONLY.has(method)
}

/** One unary call on conn, judged; returns the decoded response of a success. */
async function unary(env: AttackEnv, kind: string, t: Target, conn: RawConn, id: number, method: string, request: unknown, expect: Expect): Promise<{ ok: boolean; res: unknown; code?: string }> {
  const spec = serviceOf(t)[method]!
  const body = spec.request.encode(request)
  env.rec.request(kind)
  conn.send(requestFrame(id, method, body))
  const answer = await conn.final(id, CALL_WAIT_MS)
  judge(env, kind, t, method, spec.request.decode(body), expect, answer, spec.response)
  const ok = answer !== 'closed' && answer !== 'timeout' && answer.header.kind === FrameKind.RESPONSE
  // A success is tracked even when it should not have happened: the file is what the daemon made it.
  let res: unknown
  if (ok) {
    try {
      res = spec.response.decode(answer.header.body ?? new Uint8Array())
    } catch {
      return { ok: false, res: undefined, code: 'undecodable' }
    }
  }
  return { ok, res, code: answer !== 'closed' && answer !== 'timeout' ? answer.header.error?.code : answer }
}

function both(a: Expect, extra: string | undefined): Expect {
  return a.refuse || !extra ? a : { ...a, refuse: extra }
}

/**
 * A file's life with hostile steps: created, given blocks, written through
 * real pipelines with bogus packets, committed, closed, and then poked by
 * callers that hold no lease. The file is the attack's own, so the fuzzer
 * knows what must be refused.
 */
const fileSession: Attack = async (env, t) => {
  const { rng, world } = env
  const conn = await open(env, 'session', t)
  if (!conn) return
  const path = `/fuzz/sessions/${env.attack}`
  const client = `fz-sess-${env.attack}`
  const blockSizeBytes = CHUNK_BYTES
  let id = 1
  const created = await unary(env, 'session/Create', t, conn, id++, 'Create', { path, mode: 0o644, replication: rng.int(1, 3), blockSizeBytes, overwrite: true, createParents: true, clientName: client }, {})
  if (!created.ok) return conn.destroy()
  const status = (created.res as { status: { inodeId: number } }).status
  const blocks: BlockRef[] = []
  let locations: DatanodeInfo[] = []
  let closed = false
  const rules = NAMENODE_RULES
  for (let step = 0; step < rng.int(2, 10) && Date.now() < env.untilMs; step++) {
    const name = rng.weighted([
      [60, client],
      [25, ''],
      [15, 'fz-other'],
    ])
    const notHolder = closed || name !== client ? (name === '' ? 'a lease-checked call under an empty client name' : 'a call from a client that holds no lease') : undefined
    const tail = blocks[blocks.length - 1]
    const op = rng.pick(['AddBlock', 'AddBlock', 'Complete', 'CommitBlocks', 'UpdateBlock', 'RecoverPipeline', 'OpenForWrite', 'GetBlockLocations', 'WriteBlock', 'WriteBlock'] as const)
    if (op === 'AddBlock') {
      const previous = tail ? { ...tail, lengthBytes: rng.pick([blockSizeBytes, blockSizeBytes, 0, 1, blockSizeBytes + 1, 2 ** 53]) } : rng.chance(0.8) ? null : { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }
      const req = { path, inodeId: rng.chance(0.9) ? status.inodeId : rng.pick([0, status.inodeId + 1]), clientName: name, previous, writerNode: rng.pick(['', ...world.nodeIds]), excludedNodes: [], randomWrites: false }
      const extra = notHolder ?? (previous && previous.lengthBytes > blockSizeBytes ? `a previous block of ${previous.lengthBytes} bytes in a file of ${blockSizeBytes}-byte blocks` : tail && !previous ? 'a new block without naming the one before' : !tail && previous ? 'a previous block in a file that has none' : undefined)
      const r = await unary(env, 'session/AddBlock', t, conn, id++, 'AddBlock', req, both(rules.AddBlock(req, world), extra))
      if (r.ok) {
        const lb = r.res as { block: BlockRef; locations: DatanodeInfo[] }
        if (tail && previous) tail.lengthBytes = previous.lengthBytes
        blocks.push(lb.block)
        locations = lb.locations
      }
    } else if (op === 'Complete') {
      const last = tail ? { ...tail, lengthBytes: rng.pick([0, 1, blockSizeBytes, blockSizeBytes + 1]), genStamp: rng.pick([tail.genStamp, tail.genStamp, 0]) } : null
      const req = { path, inodeId: status.inodeId, clientName: name, last }
      const extra = notHolder ?? (tail && !last ? 'completing without naming the last block' : last && last.lengthBytes > blockSizeBytes ? `a last block of ${last.lengthBytes} bytes in a file of ${blockSizeBytes}-byte blocks` : last && tail && last.genStamp < tail.genStamp ? 'a last block at an older gen stamp' : undefined)
      const r = await unary(env, 'session/Complete', t, conn, id++, 'Complete', req, both(rules.Complete(req, world), extra))
      if (r.ok) {
        closed = true
        if (tail && last) tail.lengthBytes = last.lengthBytes
      }
    } else if (op === 'CommitBlocks') {
      const ref = tail && rng.chance(0.8) ? { ...tail, lengthBytes: rng.pick([0, blockSizeBytes, blockSizeBytes + 1]) } : { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }
      const truncate = rng.chance(0.4)
      const blockCount = rng.pick([0, blocks.length, blocks.length + 1, 2 ** 32 - 1])
      const req = { path, inodeId: status.inodeId, clientName: name, blocks: [ref], truncate, blockCount, close: rng.chance(0.3), mtimeMs: 0, background: rng.chance(0.5) }
      const notInFile = !blocks.some((b) => b.id === ref.id)
      const extra = notHolder ?? (notInFile ? 'committing a block that is not in the file' : ref.lengthBytes > blockSizeBytes ? `a block of ${ref.lengthBytes} bytes in a file of ${blockSizeBytes}-byte blocks` : truncate && blockCount > blocks.length ? `keeping ${blockCount} of ${blocks.length} blocks` : undefined)
      const r = await unary(env, 'session/CommitBlocks', t, conn, id++, 'CommitBlocks', req, both(rules.CommitBlocks(req, world), extra))
      if (r.ok) {
        if (tail && !notInFile) tail.lengthBytes = ref.lengthBytes
        if (truncate) blocks.splice(blockCount)
        if (req.close) closed = true
      }
    } else if (op === 'UpdateBlock' || op === 'RecoverPipeline') {
      const target = tail && rng.chance(0.7) ? tail : { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }
      const notInFile = !blocks.some((b) => b.id === target.id)
      const extra = notHolder ?? (notInFile ? 'a block that is not in the file' : undefined)
      const r =
        op === 'UpdateBlock'
          ? await unary(env, 'session/UpdateBlock', t, conn, id++, op, { path, inodeId: status.inodeId, clientName: name, blockId: target.id, excludedNodes: [] }, both(rules.UpdateBlock({ path, inodeId: status.inodeId, clientName: name, blockId: target.id, excludedNodes: [] }, world), extra))
          : await unary(env, 'session/RecoverPipeline', t, conn, id++, op, { path, inodeId: status.inodeId, clientName: name, block: target, excludedNodes: [], writerNode: '' }, both(rules.RecoverPipeline({ path, inodeId: status.inodeId, clientName: name, block: target, excludedNodes: [], writerNode: '' }, world), extra))
      if (r.ok) {
        const lb = r.res as { block: BlockRef; locations: DatanodeInfo[] }
        if (tail && lb.block.id === tail.id) Object.assign(tail, lb.block)
        locations = lb.locations
      }
    } else if (op === 'OpenForWrite') {
      const who = rng.pick([client, ''])
      const r = await unary(env, 'session/OpenForWrite', t, conn, id++, op, { path, clientName: who }, rules.OpenForWrite({ path, clientName: who }, world))
      if (r.ok) closed = false
    } else if (op === 'GetBlockLocations') {
      const req = { path, offsetBytes: rng.pick([0, 1, blockSizeBytes, 2 ** 53 - 1, -1]), lengthBytes: rng.pick([0, 1, 2 ** 53 - 1, -1]), readerNode: '' }
      await unary(env, 'session/GetBlockLocations', t, conn, id++, op, req, {})
    } else if (tail && locations.length > 0 && !closed) {
      const first = env.targets.find((x) => x.name === locations[0]!.id)
      if (first) await writeStream(env, first, tail, locations.slice(1), 'session/WriteBlock')
    }
  }
  // Whatever state the file is in, a caller with no lease cannot change it.
  const poke = rng.pick(['AddBlock', 'CommitBlocks', 'Complete'] as const)
  const who = rng.pick(['', 'fz-other'])
  const why = who === '' ? 'a lease-checked call under an empty client name' : 'a call from a client that holds no lease'
  const tail = blocks[blocks.length - 1]
  if (poke === 'CommitBlocks') {
    const req = { path, inodeId: status.inodeId, clientName: who, blocks: [], truncate: true, blockCount: 0, close: false, mtimeMs: 0 }
    await unary(env, 'session/no-lease', t, conn, id, 'CommitBlocks', req, { refuse: why })
  } else if (poke === 'AddBlock') {
    const req = { path, inodeId: status.inodeId, clientName: who, previous: tail ?? null, writerNode: '', excludedNodes: [], randomWrites: rng.chance(0.5) }
    await unary(env, 'session/no-lease', t, conn, id, 'AddBlock', req, { refuse: why })
  } else {
    const req = { path, inodeId: status.inodeId, clientName: who, last: tail ?? null }
    await unary(env, 'session/no-lease', t, conn, id, 'Complete', req, { refuse: why })
  }
  conn.destroy()
}

/** Extended attributes of one directory against a model: at and past every limit, and names that are prototype keys. */
const xattrModel: Attack = async (env, t) => {
  const { rng, world } = env
  const conn = await open(env, 'xattrs', t)
  if (!conn) return
  const path = `/fuzz/xattrs/${env.attack}`
  let id = 1
  const made = await unary(env, 'xattrs/Mkdirs', t, conn, id++, 'Mkdirs', { path, mode: 0o755, parents: true }, {})
  if (!made.ok) return conn.destroy()
  const model = new Map<string, Buffer>()
  const fill = rng.chance(0.15)
  const steps = fill ? XATTRS_PER_INODE_MAX + 3 : rng.int(1, 12)
  for (let i = 0; i < steps && Date.now() < env.untilMs; i++) {
    const name = fill ? `user.n${i}` : rng.pick(XATTR_NAMES)
    if (!fill && rng.chance(0.25)) {
      const req = { path, name }
      const r = await unary(env, 'xattrs/RemoveXattr', t, conn, id++, 'RemoveXattr', req, both(NAMENODE_RULES.RemoveXattr(req, world), model.has(name) ? undefined : 'removing an xattr that is not there'))
      if (r.ok) model.delete(name)
      continue
    }
    const value = fill ? Buffer.from([i]) : Buffer.from(xattrValue(rng))
    const create = !fill && rng.chance(0.3)
    const replace = !fill && rng.chance(0.3)
    const req = { path, name, value, create, replace }
    const extra = create && model.has(name) ? 'XATTR_CREATE of an xattr that exists' : replace && !model.has(name) ? 'XATTR_REPLACE of an xattr that is not there' : !model.has(name) && model.size >= XATTRS_PER_INODE_MAX ? `xattr number ${model.size + 1} on one inode` : undefined
    const r = await unary(env, 'xattrs/SetXattr', t, conn, id++, 'SetXattr', req, both(NAMENODE_RULES.SetXattr(req, world), extra))
    if (r.ok) model.set(name, value)
  }
  const got = await unary(env, 'xattrs/GetXattrs', t, conn, id++, 'GetXattrs', { path }, {})
  if (got.ok) {
    const xattrs = (got.res as { xattrs: Record<string, Uint8Array> }).xattrs
    const keys = Object.keys(xattrs)
    const missing = [...model.keys()].filter((k) => !Object.hasOwn(xattrs, k))
    const extra = keys.filter((k) => !model.has(k))
    const differ = [...model.entries()].filter(([k, v]) => Object.hasOwn(xattrs, k) && !Buffer.from(xattrs[k]!).equals(v)).map(([k]) => k)
    if (missing.length + extra.length + differ.length > 0) {
      env.rec.fail({ kind: 'xattrs', target: t.name, what: `GetXattrs does not return what SetXattr accepted${missing.length ? ` (missing ${missing.map((k) => JSON.stringify(k.slice(0, 20))).join(', ')})` : ''}`, detail: `${path}: missing ${summarize(missing)}, unexpected ${summarize(extra)}, different ${summarize(differ)}`, attack: env.attack })
    }
  }
  await unary(env, 'xattrs/Delete', t, conn, id, 'Delete', { path, recursive: true }, {})
  conn.destroy()
}

// ---------------------------------------------------------------- block streams

function packetFrame(streamId: number, p: { seqno: number; offsetBytes: number; checksums: Uint8Array; last: boolean; sync: boolean }, payload: Uint8Array): Buffer {
  return dataFrame(streamId, codecs.Packet.encode(p), payload)
}

interface PacketPlan {
  frames: Buffer[]
  /** Why the stream must be refused, when one of its packets breaks the contract. */
  refuse?: string
  last: boolean
}

/** Packets for a WriteBlock stream: valid ones in order, and hostile ones among them. */
function packetPlan(rng: Rng, streamId: number, startOffset: number): PacketPlan {
  const frames: Buffer[] = []
  let offset = startOffset
  let refuse: string | undefined
  let last = false
  const n = rng.int(0, 6)
  for (let i = 0; i < n && !last; i++) {
    const kind = rng.weighted([
      [40, 'valid'],
      [8, 'bad-sums'],
      [6, 'sums-length'],
      [6, 'offset-past-max'],
      [4, 'offset-unsafe'],
      [6, 'oversize'],
      [6, 'garbage-body'],
      [5, 'ack-upstream'],
      [10, 'last'],
      [5, 'sync'],
      [4, 'hole'],
    ] as const)
    const size = kind === 'oversize' ? rng.int(PACKET_BYTES_MAX + 1, (1 << 20) - 4096) : rng.pick([1, 100, CHUNK_BYTES - 1, CHUNK_BYTES, PACKET_BYTES_MAX])
    const data = rng.bytes(kind === 'last' ? rng.pick([0, 0, 10]) : size)
    const sums = chunkChecksums(data)
    const seqno = rng.chance(0.9) ? i : rng.pick([0, 2 ** 53 - 1, -1])
    let at = offset
    let body: Buffer | undefined
    if (kind === 'bad-sums') {
      sums[rng.int(0, Math.max(0, sums.length - 1))]! ^= 0xff
      refuse ??= 'a packet whose checksums do not match its data'
    } else if (kind === 'sums-length') {
      refuse ??= 'a packet with the wrong number of checksums'
    } else if (kind === 'offset-past-max') {
      // Its last byte lies past the limit (one that ends within it is a legal write far into a sparse block).
      at = BLOCK_SIZE_MAX_BYTES - rng.int(0, Math.min(10, data.length - 1))
      refuse ??= 'a packet past the block size limit'
    } else if (kind === 'offset-unsafe') {
      at = rng.pick([2 ** 53, -1])
      refuse ??= 'a packet at an offset past 2^53'
    } else if (kind === 'oversize') {
      refuse ??= `a packet of ${size} bytes, over PACKET_BYTES_MAX (${PACKET_BYTES_MAX})`
    } else if (kind === 'garbage-body') {
      body = Buffer.alloc(12, 0xff)
      refuse ??= 'a DATA frame whose body is not a Packet'
    } else if (kind === 'hole') {
      at = offset + CHUNK_BYTES * rng.int(1, 64)
    }
    if (kind === 'ack-upstream') {
      frames.push(frameBytes({ id: streamId, kind: FrameKind.ACK, body: codecs.PacketAck.encode({ seqno: 0, ok: false, failedNode: 'x', message: 'y' }) }))
      continue
    }
    const checksums = kind === 'sums-length' ? Buffer.concat([sums, Buffer.alloc(8)]) : sums
    const packet = { seqno, offsetBytes: at, checksums, last: kind === 'last', sync: kind === 'sync' }
    frames.push(body ? frameBytes({ id: streamId, kind: FrameKind.DATA, body }, data) : packetFrame(streamId, packet, data))
    if (kind === 'last') last = true
    // The next packet follows on, unless this one ended inside a chunk (then another cannot join it).
    if (!refuse) offset = at + data.length
    if (data.length % CHUNK_BYTES !== 0) offset = Math.ceil(offset / CHUNK_BYTES) * CHUNK_BYTES
  }
  return { frames, refuse, last }
}

/**
 * One WriteBlock stream to t for block, judged: packets from packetPlan, then
 * the last packet, silence (the stream must time out) or a dropped connection.
 */
async function writeStream(env: AttackEnv, t: Target, block: BlockRef, downstream: DatanodeInfo[], kind: string, opts: { refuse?: string; update?: boolean; oldGenStamp?: number; copyFrom?: BlockRef; resize?: number } = {}): Promise<void> {
  const { rng } = env
  const conn = await open(env, kind, t)
  if (!conn) return
  const timeoutMs = rng.pick(STREAM_TIMEOUTS_MS)
  const req = {
    block,
    downstream,
    clientName: rng.pick(['fuzz', '', 'c'.repeat(10_000)]),
    update: opts.update ?? false,
    oldGenStamp: opts.oldGenStamp ?? 0,
    resize: opts.resize !== undefined,
    resizeBytes: opts.resize ?? 0,
    copyFromBlock: opts.copyFrom?.id ?? 0,
    copyFromGenStamp: opts.copyFrom?.genStamp ?? 0,
    // The block may be null: a hostile request.
    token: fuzzToken(rng, (block as BlockRef | null)?.id, rng.pick([BlockOp.WRITE, BlockOp.COPY])),
    copyFromToken: opts.copyFrom ? fuzzToken(rng, opts.copyFrom.id, BlockOp.READ) : undefined,
  }
  const plan = packetPlan(rng, 31, 0)
  const resizeProblem = opts.resize !== undefined && (opts.resize > BLOCK_SIZE_MAX_BYTES || !Number.isSafeInteger(opts.resize)) ? `a resize to ${opts.resize} bytes` : undefined
  const bogusDownstream = downstream.some((d) => !env.targets.some((x) => x.role === 'datanode' && x.rpc.port === d.rpcPort && d.host === '127.0.0.1')) ? 'a pipeline through a node that is not a datanode' : undefined
  const badToken = tokenProblem(req.token, (block as BlockRef | null)?.id ?? 0, [BlockOp.WRITE, BlockOp.COPY]) ?? (opts.copyFrom ? tokenProblem(req.copyFromToken, opts.copyFrom.id, [BlockOp.READ]) : undefined)
  const refuse = opts.refuse ?? badToken ?? resizeProblem ?? plan.refuse ?? (plan.last ? bogusDownstream : undefined)
  env.rec.request(kind)
  conn.send(requestFrame(31, 'WriteBlock', codecs.WriteBlockRequest.encode(req), { timeoutMs }))
  for (const f of plan.frames) conn.send(f)
  const ending = plan.last ? 'last' : rng.pick(['silent', 'silent', 'drop', 'reset'] as const)
  if (ending === 'drop' || ending === 'reset') {
    await conn.waitUntil(() => conn.closed, rng.int(0, 300))
    env.rec.outcome(kind, ending)
    if (ending === 'reset') conn.resetNow()
    else conn.destroy()
    return
  }
  const answer = await conn.final(31, timeoutMs + STREAM_GRACE_MS + (plan.last ? CALL_WAIT_MS : 0))
  judge(env, kind, t, 'WriteBlock', { ...req, packets: plan.frames.length, ending }, refuse ? { refuse } : {}, answer, codecs.WriteBlockResponse as Codec<unknown>)
  for (const f of conn.streamFrames(31)) {
    if (f.header.kind !== FrameKind.ACK) {
      env.rec.fail({ kind, target: t.name, what: 'a WriteBlock stream sent its writer a frame that is not an ACK', detail: summarize(f.header), attack: env.attack })
      break
    }
  }
  if (answer !== 'closed' && answer !== 'timeout' && answer.header.kind === FrameKind.RESPONSE && !plan.last) {
    env.rec.fail({ kind, target: t.name, what: 'a WriteBlock stream succeeded without its last packet', detail: summarize(req), attack: env.attack })
  }
  conn.destroy()
}

const writeBlock: Attack = async (env, t) => {
  const { rng, world } = env
  if (t.role !== 'datanode') return
  const held = world.realBlocks.filter((b) => b.nodes.includes(t.name))
  const real = held.length > 0 ? rng.pick(held).block : undefined
  const variant = rng.weighted([
    [5, 'no-block'],
    [5, 'invalid-id'],
    [10, 'real-exists'],
    [6, 'update-absent'],
    [8, 'update-stale'],
    [4, 'copy-without-update'],
    [4, 'copy-absent'],
    [6, 'resize'],
    [12, 'downstream'],
    [40, 'scratch'],
  ] as const)
  const scratch = (): BlockRef => ({ id: scratchBlockId(rng), genStamp: rng.pick([1, 2, 2 ** 53 - 1]), lengthBytes: 0 })
  const kind = `write/${variant}`
  switch (variant) {
    case 'no-block':
      return writeStream(env, t, null as unknown as BlockRef, [], kind, { refuse: 'a WriteBlock naming no block' })
    case 'invalid-id':
      return writeStream(env, t, { id: rng.pick([0, 2 ** 53, -1]), genStamp: rng.pick([1, 2 ** 53]), lengthBytes: 0 }, [], kind, { refuse: 'a block id or gen stamp that is not a safe integer (or 0)' })
    case 'real-exists':
      // A new replica of a block finalized here at the same or a newer gen stamp must be refused, never replace it.
      if (!real) return
      return writeStream(env, t, { id: real.id, genStamp: rng.pick([0, real.genStamp]), lengthBytes: 0 }, [], kind, { refuse: 'a new replica over a finalized one at the same or a newer gen stamp' })
    case 'update-absent':
      return writeStream(env, t, { id: unusedBlockId(rng), genStamp: 5, lengthBytes: 0 }, [], kind, { update: true, oldGenStamp: rng.pick([0, 1, 4]), refuse: 'an update of a replica that is not here' })
    case 'update-stale':
      if (!real) return
      return writeStream(env, t, { id: real.id, genStamp: real.genStamp + rng.pick([1, 100]), lengthBytes: 0 }, [], kind, { update: true, oldGenStamp: rng.pick([0, real.genStamp + 1, Math.max(0, real.genStamp - 1)].filter((g) => g !== real.genStamp)), refuse: 'an update that names the wrong old gen stamp' })
    case 'copy-without-update':
      return writeStream(env, t, scratch(), [], kind, { copyFrom: real ?? { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }, refuse: 'a copy-on-write that is not an update' })
    case 'copy-absent':
      return writeStream(env, t, scratch(), [], kind, { update: true, copyFrom: { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }, refuse: 'a copy of a replica that is not here' })
    case 'resize':
      return writeStream(env, t, scratch(), [], kind, { resize: rng.pick([0, 1, CHUNK_BYTES + 3, BLOCK_SIZE_MAX_BYTES + 1, 2 ** 53]) })
    case 'downstream': {
      const others = env.targets.filter((x) => x.role === 'datanode' && x.name !== t.name)
      const nn = env.targets.find((x) => x.role === 'namenode')!
      const info = (port: number, id = 'fz-down'): DatanodeInfo => ({ id, host: '127.0.0.1', rpcPort: port, httpPort: 0, rack: '' })
      const downstream = rng.pick<() => DatanodeInfo[]>([
        () => (others[0] ? [{ id: others[0].name, host: '127.0.0.1', rpcPort: others[0].rpc.port, httpPort: 0, rack: '' }] : []),
        () => [info(nn.rpc.port, 'namenode')],
        () => [info(t.http.port, 'own-http')],
        () => [info(t.rpc.port, t.name)],
        () => Array.from({ length: rng.int(2, 1000) }, () => info(t.rpc.port, t.name)),
        () => [info(rng.pick([0, 1, 65_536, 2 ** 32 - 1]))],
      ])()
      return writeStream(env, t, scratch(), downstream, kind)
    }
    case 'scratch':
      return writeStream(env, t, scratch(), [], kind)
  }
}

/** ReadBlock of blocks that are not here, at wrong gen stamps, past their end; a success must carry data that verifies. */
const readBlock: Attack = async (env, t) => {
  const { rng, world } = env
  if (t.role !== 'datanode') return
  const held = world.realBlocks.filter((b) => b.nodes.includes(t.name))
  const real = held.length > 0 && rng.chance(0.7) ? rng.pick(held).block : undefined
  const block: BlockRef | null = real
    ? { ...real, genStamp: rng.pick([real.genStamp, real.genStamp, real.genStamp, 0, real.genStamp + 1, 2 ** 53]) }
    : rng.pick([null, { id: unusedBlockId(rng), genStamp: 1, lengthBytes: 0 }, { id: 0, genStamp: 0, lengthBytes: 0 }, { id: -1, genStamp: 1, lengthBytes: 0 }])
  const length = real?.lengthBytes ?? 0
  const offsetBytes = rng.pick([0, 0, 1, CHUNK_BYTES, Math.max(0, length - 1), length, length + 1, 2 ** 53 - 1, 2 ** 53, -1])
  const lengthBytes = rng.pick([0, 0, 1, 100, length, length + 1, 2 ** 53 - 1, 2 ** 53, -1])
  const req = { block, offsetBytes, lengthBytes, token: fuzzToken(rng, block?.id, BlockOp.READ) }
  const decoded = codecs.ReadBlockRequest.decode(codecs.ReadBlockRequest.encode(req))
  let refuse: string | undefined
  if (!decoded.block) refuse = 'a ReadBlock naming no block'
  else if (tokenProblem(decoded.token, decoded.block.id, [BlockOp.READ])) refuse = tokenProblem(decoded.token, decoded.block.id, [BlockOp.READ])
  else if (blockIdAbsent(decoded.block.id)) refuse = `block ${decoded.block.id}, on no datanode`
  else if (real && decoded.block.genStamp !== real.genStamp) refuse = 'a gen stamp the replica does not have'
  else if (!Number.isSafeInteger(decoded.offsetBytes) || !Number.isSafeInteger(decoded.lengthBytes)) refuse = 'an offset or length past 2^53'
  else if (real && decoded.offsetBytes > length) refuse = 'an offset past the end of the replica'
  const conn = await open(env, 'read', t)
  if (!conn) return
  const stall = rng.chance(0.15)
  if (stall) conn.socket.pause()
  env.rec.request('read')
  conn.send(requestFrame(41, 'ReadBlock', codecs.ReadBlockRequest.encode(req), { timeoutMs: rng.pick(STREAM_TIMEOUTS_MS) }))
  if (stall) {
    // A reader that stops reading: TCP pushes back on the daemon; then the reader goes away.
    await new Promise((r) => setTimeout(r, rng.int(200, 2000)))
    env.rec.outcome('read', 'stalled')
    conn.resetNow()
    return
  }
  const answer = await conn.final(41, CALL_WAIT_MS)
  const res = judge(env, 'read', t, 'ReadBlock', decoded, refuse ? { refuse } : {}, answer, codecs.ReadBlockResponse as Codec<unknown>) as { lengthBytes: number } | undefined
  if (res) {
    let sent = 0
    for (const f of conn.streamFrames(41)) {
      const p = codecs.Packet.decode(f.header.body ?? new Uint8Array())
      if (firstBadChunk(f.payload, p.checksums) !== -1) {
        env.rec.fail({ kind: 'read', target: t.name, what: 'ReadBlock sent data that fails its own checksums', detail: `${summarize(decoded)} packet at ${p.offsetBytes}`, attack: env.attack })
        break
      }
      sent += f.payload.length
    }
    if (sent !== res.lengthBytes) env.rec.fail({ kind: 'read', target: t.name, what: 'ReadBlock said it sent a length other than what it sent', detail: `${summarize(decoded)}: said ${res.lengthBytes}, sent ${sent}`, attack: env.attack })
    if (real && sent > real.lengthBytes) env.rec.fail({ kind: 'read', target: t.name, what: 'ReadBlock sent more than the replica holds', detail: `${summarize(decoded)}: ${sent} of ${real.lengthBytes}`, attack: env.attack })
  }
  conn.destroy()
}

// ---------------------------------------------------------------- memory

/** Distinct names a flood sends, each of FLOOD_NAME_BYTES: 200 MiB in all. */
const FLOOD_NAMES = 200
const FLOOD_NAME_BYTES = 1_000_000
/** Growth of the daemon's resident memory after a flood that means it kept what it was sent (a flood it drops grows it by ~30 MiB). */
const FLOOD_RETAINED_BYTES_MAX = 120 * 1024 * 1024
/** Above this, no more floods: the point is made, and the daemon should not be pushed to run out of memory. */
const FLOOD_RSS_BYTES_MAX = 700 * 1024 * 1024
const FLOOD_SETTLE_MS = 1500
let flooding: Promise<void> = Promise.resolve()
const floodsFailed = new Set<string>()

/** Where a hostile peer can put strings the namenode may keep: each must be dropped or bounded. */
const FLOOD_SINKS: ReadonlyArray<{ sink: string; method: string; request: (name: string, w: World) => unknown }> = [
  { sink: 'RenewLease client names', method: 'RenewLease', request: (name) => ({ clientName: name }) },
  { sink: 'ReportBadBlocks node ids', method: 'ReportBadBlocks', request: (name, w) => ({ replicas: [{ block: w.realBlocks[0]?.block ?? { id: 1, genStamp: 1, lengthBytes: 0 }, nodeId: name }], path: '' }) },
  { sink: 'Heartbeat node ids', method: 'Heartbeat', request: (name) => ({ nodeId: name, capacityBytes: 0, usedBytes: 0, remainingBytes: 0, activeTransfers: 0, failedCopies: [] }) },
  { sink: 'GetBlockLocations reader nodes', method: 'GetBlockLocations', request: (name) => ({ path: '/health', offsetBytes: 0, lengthBytes: 0, readerNode: name }) },
  { sink: 'AttachVolume node ids', method: 'AttachVolume', request: (name) => ({ name: 'fz-0', nodeId: name, force: false }) },
]

/**
 * 200 MiB of distinct large strings into one field of one method, then the
 * namenode's resident memory: a daemon that keeps them (a map never pruned)
 * runs out of memory for any peer that keeps sending.
 */
const flood: Attack = async (env, t) => {
  const { rng } = env
  if (t.role !== 'namenode') return
  const run = async (): Promise<void> => {
    const s = rng.pick(FLOOD_SINKS)
    const before = await rssBytes(t.pid)
    if (floodsFailed.has(s.sink) || before > FLOOD_RSS_BYTES_MAX) return
    const conn = await open(env, 'flood', t)
    if (!conn) return
    const spec = serviceOf(t)[s.method]!
    const base = rng.bytes(FLOOD_NAME_BYTES / 2).toString('hex')
    let id = 1
    for (let batch = 0; batch < FLOOD_NAMES / 25 && !conn.closed; batch++) {
      const ids: number[] = []
      for (let i = 0; i < 25; i++) {
        env.rec.request(`flood/${s.method}`)
        conn.send(requestFrame(id, s.method, spec.request.encode(s.request(`${base}-${env.attack}-${id}`, env.world))))
        ids.push(id++)
      }
      for (const i of ids) env.rec.outcome(`flood/${s.method}`, label(await conn.final(i, CALL_WAIT_MS)))
    }
    conn.destroy()
    await new Promise((r) => setTimeout(r, FLOOD_SETTLE_MS))
    const grown = (await rssBytes(t.pid)) - before
    if (grown > FLOOD_RETAINED_BYTES_MAX) {
      floodsFailed.add(s.sink)
      env.rec.fail({ kind: 'flood', target: t.name, what: `the namenode keeps ${s.sink} it is sent (memory grows without bound)`, detail: `${FLOOD_NAMES} ${s.method} calls with distinct ${FLOOD_NAME_BYTES}-byte strings: resident memory ${before >> 20} -> ${(before + grown) >> 20} MiB ${FLOOD_SETTLE_MS} ms later`, attack: env.attack })
    }
  }
  // One flood at a time, so what one measures is its own.
  const mine = flooding.then(run)
  flooding = mine.catch(() => undefined)
  await mine
}

// ---------------------------------------------------------------- HTTP

const HTTP_ATTACKS: ReadonlyArray<(rng: Rng) => { what: string; bytes: Buffer; want200?: boolean }> = [
  (rng) => ({ what: 'random bytes', bytes: rng.bytes(rng.pick([1, 100, 8192, 200_000])) }),
  () => ({ what: 'GET /status', bytes: Buffer.from('GET /status HTTP/1.1\r\nHost: x\r\n\r\n'), want200: true }),
  () => ({ what: 'a bad request line', bytes: Buffer.from('BREW /status HTCPCP/1.0\r\n\r\n') }),
  () => ({ what: 'a path out of the root', bytes: Buffer.from('GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n') }),
  () => ({ what: 'an encoded path out of the root', bytes: Buffer.from('GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n') }),
  () => ({ what: 'a huge query', bytes: Buffer.from(`GET /status?${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`) }),
  () => ({ what: 'an absolute URL', bytes: Buffer.from('GET http://evil.invalid/status HTTP/1.1\r\nHost: x\r\n\r\n') }),
  () => ({ what: 'a POST with a body that never comes', bytes: Buffer.from('POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc') }),
  () => ({ what: 'bad chunked encoding', bytes: Buffer.from('POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n') }),
  () => ({ what: 'a negative Content-Length', bytes: Buffer.from('GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n') }),
  () => ({ what: 'two Content-Lengths', bytes: Buffer.from('GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab') }),
  () => ({ what: '50 pipelined requests', bytes: Buffer.from('GET /status HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(49) + 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n') }),
  () => ({ what: '3000 headers', bytes: Buffer.from(`GET /status HTTP/1.1\r\nHost: x\r\n${'X-A: b\r\n'.repeat(3000)}\r\n`) }),
  () => ({ what: 'a NUL in the path', bytes: Buffer.from('GET /st\0atus HTTP/1.1\r\nHost: x\r\n\r\n') }),
  () => ({ what: 'HTTP/9.9', bytes: Buffer.from('GET /status HTTP/9.9\r\nHost: x\r\n\r\n') }),
  () => ({ what: 'blank lines', bytes: Buffer.from('\r\n\r\n\r\n\r\n') }),
  () => ({ what: 'a header line without a colon', bytes: Buffer.from('GET /status HTTP/1.1\r\nHost x\r\n\r\n') }),
  (rng) => ({ what: 'a request cut short', bytes: Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n').subarray(0, rng.int(1, 30)) }),
]

const httpGarbage: Attack = async (env, t) => {
  const { rng } = env
  const a = rng.pick(HTTP_ATTACKS)(rng)
  const conn = await open(env, 'http', t, t.http, 'bytes')
  if (!conn) return
  env.rec.request('http')
  conn.send(a.bytes)
  conn.end()
  const closed = await conn.waitClosed(CLOSE_WAIT_MS)
  const text = conn.text()
  const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((mm) => Number(mm[1]))
  env.rec.outcome('http', statuses.length > 0 ? `http ${statuses[0]}` : closed ? 'closed' : 'silent')
  const fail = (what: string, detail: string): void => env.rec.fail({ kind: 'http', target: t.name, what, detail: `${a.what}: ${detail}`, attack: env.attack })
  if (!closed) fail('an HTTP connection ended by its client was never closed', `${CLOSE_WAIT_MS} ms`)
  const bad = statuses.find((s) => s >= 500 && s !== 505)
  if (bad) fail(`HTTP ${bad} for ${a.what}`, text.slice(0, 300))
  if (/root:.*:0:0:/.test(text)) fail('the HTTP port served a file from outside', text.slice(0, 300))
  if (a.want200 && statuses[0] !== 200) fail('GET /status did not answer 200', text.slice(0, 300))
  conn.destroy()
}

// ---------------------------------------------------------------- the catalogue

// ---------------------------------------------------------------- outsiders (no cluster secret)

/**
 * A process without the cluster secret: whatever it sends (a valid request
 * frame, garbage, a hello with a forged proof) ends with the connection closed
 * by the daemon, never an accept or a frame, and nothing acted on.
 */
const outsider: Attack = async (env, t) => {
  const { rng } = env
  const conn = await open(env, 'outsider', t, t.rpc, 'unauthenticated-bytes')
  if (!conn) return
  const marker = `/fuzz-outsider-${env.attack}`
  const request = t.role === 'namenode' ? requestFrame(1, 'Mkdirs', codecs.MkdirsRequest.encode({ path: marker, mode: 0o755, parents: true })) : requestFrame(1, 'InspectReplica', codecs.InspectReplicaRequest.encode({ blockId: 1 }))
  const variant = rng.pick(['request', 'garbage', 'short', 'forged-proof'] as const)
  if (variant === 'request') conn.send(request)
  else if (variant === 'garbage') conn.send(Buffer.from(Array.from({ length: rng.int(HELLO_BYTES, 4096) }, () => rng.int(0, 255))))
  else if (variant === 'short') conn.send(encodeHello({ encrypt: rng.chance(0.5), nonce: newNonce() }).subarray(0, rng.int(1, HELLO_BYTES - 1)))
  else {
    conn.send(encodeHello({ encrypt: rng.chance(0.5), nonce: newNonce() }))
    conn.send(Buffer.from(Array.from({ length: PROOF_BYTES }, () => rng.int(0, 255))))
    conn.send(request)
  }
  env.rec.request(`outsider/${variant}`)
  const closed = await conn.waitClosed(HANDSHAKE_TIMEOUT_MS + CLOSE_WAIT_MS)
  env.rec.outcome(`outsider/${variant}`, closed ? 'closed' : 'silent')
  if (!closed) env.rec.fail({ kind: 'outsider', target: t.name, what: 'a connection without the cluster secret stayed open', detail: `${variant}: not closed within ${HANDSHAKE_TIMEOUT_MS + CLOSE_WAIT_MS} ms`, attack: env.attack })
  // At most the daemon's own hello (for a hello it could read): never its accept, never a frame.
  if (conn.received > SERVER_HELLO_BYTES) env.rec.fail({ kind: 'outsider', target: t.name, what: 'a connection without the cluster secret was answered past the handshake', detail: `${variant}: ${conn.received} bytes came back`, attack: env.attack })
  if (t.role !== 'namenode') return
  const check = await open(env, 'outsider', t)
  if (!check) return
  check.send(requestFrame(2, 'GetFileInfo', codecs.PathRequest.encode({ path: marker })))
  const answer = await check.final(2, CALL_WAIT_MS)
  check.destroy()
  if (answer === 'timeout' || answer === 'closed' || answer.header.error?.code !== 'not-found') {
    env.rec.fail({ kind: 'outsider', target: t.name, what: 'a request sent without the cluster secret was acted on', detail: `${variant}: ${marker} is ${label(answer)}`, attack: env.attack })
  }
}

export interface AttackKind {
  name: string
  weight: number
  roles: ReadonlyArray<Target['role']>
  run: Attack
}

export const ATTACKS: readonly AttackKind[] = [
  { name: 'hostile-call', weight: 30, roles: ['namenode'], run: hostileCalls },
  { name: 'hostile-dn-call', weight: 6, roles: ['datanode'], run: hostileCalls },
  { name: 'hostile-sched-call', weight: 6, roles: ['scheduler'], run: hostileCalls },
  { name: 'hostile-agent-call', weight: 2, roles: ['agent'], run: hostileCalls },
  { name: 'session', weight: 8, roles: ['namenode'], run: fileSession },
  { name: 'xattrs', weight: 3, roles: ['namenode'], run: xattrModel },
  { name: 'write', weight: 10, roles: ['datanode'], run: writeBlock },
  { name: 'read', weight: 6, roles: ['datanode'], run: readBlock },
  { name: 'random-bytes', weight: 4, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: randomBytes },
  { name: 'bad-length', weight: 4, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: badLength },
  { name: 'max-frame', weight: 1, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: maxFrame },
  { name: 'truncated', weight: 4, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: truncated },
  { name: 'garbage-header', weight: 4, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: garbageHeader },
  { name: 'bad-body', weight: 4, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: badBody },
  { name: 'unknown-method', weight: 3, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: unknownMethod },
  { name: 'stray-frames', weight: 2, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: strayFrames },
  { name: 'id-edges', weight: 2, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: idEdges },
  { name: 'reused-ids', weight: 2, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: reusedIds },
  { name: 'many-streams', weight: 1, roles: ['namenode', 'datanode'], run: manyStreams },
  { name: 'many-connections', weight: 1, roles: ['namenode', 'datanode', 'scheduler', 'agent'], run: manyConnections },
  { name: 'unsolicited-data', weight: 1, roles: ['datanode'], run: unsolicitedData },
  { name: 'http', weight: 5, roles: ['namenode', 'datanode'], run: httpGarbage },
  { name: 'flood', weight: 1, roles: ['namenode'], run: flood },
  { name: 'outsider', weight: 3, roles: ['namenode', 'datanode'], run: outsider },
]

export const ALL_METHODS = { namenode: NAMENODE_METHODS as string[], datanode: [...DATANODE_UNARY_METHODS, 'WriteBlock', 'ReadBlock'] as string[], scheduler: SCHEDULER_METHODS as string[], agent: AGENT_METHODS as string[] }

/** The attack that calls one method of a role's service with hostile arguments. */
const HOSTILE_CALL: Record<Target['role'], string> = { namenode: 'hostile-call', datanode: 'hostile-dn-call', scheduler: 'hostile-sched-call', agent: 'hostile-agent-call' }

/** The first attacks of every run call each method of both services once (a few calls each), so even a short run covers them all. */
const SWEEP: ReadonlyArray<{ role: Target['role']; method: string }> = [
  ...ALL_METHODS.namenode.map((method) => ({ role: 'namenode' as const, method })),
  ...ALL_METHODS.datanode.map((method) => ({ role: 'datanode' as const, method })),
  ...ALL_METHODS.scheduler.map((method) => ({ role: 'scheduler' as const, method })),
  ...ALL_METHODS.agent.map((method) => ({ role: 'agent' as const, method })),
  { role: 'namenode', method: 'flood' },
]

/** Attack number i: its kind, target (and method, for the sweep), from its own Rng (so it replays alone). */
export function chooseAttack(i: number, rng: Rng, targets: readonly Target[]): { kind: AttackKind; target: Target; method?: string } {
  const sweep = SWEEP[i]
  if (sweep) {
    const target = rng.pick(targets.filter((t) => t.role === sweep.role))
    const name = sweep.method === 'WriteBlock' ? 'write' : sweep.method === 'ReadBlock' ? 'read' : sweep.method === 'flood' ? 'flood' : HOSTILE_CALL[sweep.role]
    return { kind: ATTACKS.find((a) => a.name === name)!, target, method: name.startsWith('hostile') ? sweep.method : undefined }
  }
  const kind = rng.weighted(ATTACKS.map((a) => [a.weight, a] as const))
  const target = rng.pick(targets.filter((t) => kind.roles.includes(t.role)))
  return { kind, target }
}

// ---------------------------------------------------------------- slowloris

/**
 * Connections that send a valid request one byte a second for the whole run,
 * beside everything else: a slow peer must cost the daemon one connection,
 * not its service (the health checks run while they trickle). A request that
 * completes before the end must then be answered.
 */
export class Slowloris {
  private readonly conns: Array<{ t: Target; conn: RawConn; bytes: Buffer; sent: number; http: boolean }> = []
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly env: AttackEnv) {}

  async start(n: number): Promise<void> {
    const { rng } = this.env
    for (let i = 0; i < n; i++) {
      const http = i === n - 1
      const t = rng.pick(this.env.targets)
      const conn = await open(this.env, 'slowloris', t, http ? t.http : t.rpc, http ? 'bytes' : 'frames')
      if (!conn) continue
      const p = probe(t)
      const bytes = http ? Buffer.from('GET /status HTTP/1.1\r\nHost: x\r\n\r\n') : requestFrame(61, p.method, p.body)
      this.conns.push({ t, conn, bytes, sent: 0, http })
      this.env.rec.request('slowloris')
    }
    this.timer = setInterval(() => {
      for (const c of this.conns) {
        if (c.sent < c.bytes.length && !c.conn.closed) {
          c.conn.send(c.bytes.subarray(c.sent, c.sent + 1))
          c.sent++
        }
      }
    }, 1000)
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    const { rec } = this.env
    for (const c of this.conns) {
      const complete = c.sent >= c.bytes.length
      const fail = (what: string, detail: string): void => rec.fail({ kind: 'slowloris', target: c.t.name, what, detail, attack: this.env.attack })
      if (c.http) {
        const answered = complete ? await c.conn.waitUntil(() => /HTTP\/1\.[01] \d{3}/.test(c.conn.text()) || c.conn.closed, CLOSE_WAIT_MS) : true
        rec.outcome('slowloris', complete ? (answered ? 'http answered' : 'silent') : c.conn.closed ? 'closed' : 'open')
        if (!answered) fail('an HTTP request sent a byte a second was never answered', `${c.bytes.length} bytes over ${c.sent} s`)
      } else if (complete) {
        const answer = await c.conn.final(61, CALL_WAIT_MS)
        judge(this.env, 'slowloris', c.t, `${probe(c.t).method} sent a byte a second`, { bytes: c.bytes.length }, {}, answer)
      } else {
        rec.outcome('slowloris', c.conn.closed ? 'closed' : 'open')
        if (c.conn.frames.some((f) => f.header.kind === FrameKind.RESPONSE)) fail('half a request sent a byte a second was answered', `${c.sent} of ${c.bytes.length} bytes`)
      }
      c.conn.destroy()
    }
  }
}
