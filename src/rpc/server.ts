// The serving side: decodes requests, runs handlers, replies with a response or
// a typed error. A bad frame closes its connection and nothing else.
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { Counter, Histogram, type Registry } from 'prom-client'
import { CALLS_PER_CONNECTION_MAX, HANDSHAKES_IN_FLIGHT_MAX, HANDSHAKES_PER_ADDRESS_MAX, RPC_TIMEOUT_DEFAULT_MS, RPC_TIMEOUT_MAX_MS, STREAMS_PER_CONNECTION_MAX } from '../limits.js'
import type { Address } from '../common/address.js'
import { checkCaller } from '../common/validate.js'
import type { Logger } from '../common/log.js'
import type { Security } from './auth.js'
import { LoamError, toLoamError } from './errors.js'
import type { Frame } from './frame.js'
import { FramedSocket, FrameStream } from './framed-socket.js'
import { FrameKind } from './messages.js'
import { boundUser, checkClaim, peerUid, type OsUser } from './peer-credentials.js'
import { acceptSecure } from './secure-channel.js'
import { processSecurity } from './security.js'
import type { RequestOf, ResponseOf, ServiceSpec } from './service.js'

export interface CallContext {
  method: string
  user: string
  groups: string[]
  /** The volume attachment the caller writes under (0: none). */
  epoch: number
  remoteAddress: string
  deadlineMs: number
  /** Present for stream methods: the frames exchanged between request and response. */
  stream?: ServerStream
}

export type Handlers<S extends ServiceSpec> = {
  [K in keyof S]: (request: RequestOf<S[K]>, ctx: CallContext) => Promise<ResponseOf<S[K]>> | ResponseOf<S[K]>
}

/** The serving end of a stream method's frames. */
export class ServerStream extends FrameStream {}

interface ConnectionState {
  socket: FramedSocket
  /** The OS user behind a connection from this machine that may act only as itself (see peer-credentials.ts). */
  osUser: OsUser | undefined
  inFlight: number
  paused: boolean
  streams: Map<number, ServerStream>
}

interface RpcMetrics {
  calls: Counter<'service' | 'method' | 'code'>
  seconds: Histogram<'service' | 'method'>
}

/** Latency buckets from a cached metadata call (sub-millisecond) to a long block stream. */
const RPC_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** One pair of metrics a registry: a process serving two services (`loam node`) shares them, labelled by service. */
const metricsByRegistry = new WeakMap<Registry, RpcMetrics>()

function rpcMetrics(registry: Registry): RpcMetrics {
  let m = metricsByRegistry.get(registry)
  if (!m) {
    m = {
      calls: new Counter({ name: 'loam_rpc_calls_total', help: 'RPC calls served, by service, method and outcome (ok or the error code)', labelNames: ['service', 'method', 'code'], registers: [registry] }),
      seconds: new Histogram({ name: 'loam_rpc_duration_seconds', help: 'Time from request to reply (a stream: its whole exchange), by service and method', labelNames: ['service', 'method'], buckets: RPC_SECONDS_BUCKETS, registers: [registry] }),
    }
    metricsByRegistry.set(registry, m)
  }
  return m
}

export interface RpcServerMetrics {
  registry: Registry
  /** The service's name in the metrics' labels: namenode, datanode, scheduler, agent. */
  service: string
}

export class RpcServer<S extends ServiceSpec> {
  private readonly server: net.Server
  private readonly connections = new Set<ConnectionState>()
  private readonly metrics: (RpcMetrics & { service: string }) | undefined
  /** Connections still proving they hold the cluster secret, with their remote address (gone from a closed socket). */
  private readonly handshaking = new Map<net.Socket, string>()
  /** The same, by remote address, oldest first. */
  private readonly handshakingByAddress = new Map<string, Set<net.Socket>>()
  private readonly security: Security
  /** Connections refused at the handshake, for /metrics and /status. */
  refusedConnections = 0

  constructor(
    private readonly service: S,
    private readonly handlers: Handlers<S>,
    private readonly log: Logger,
    metrics?: RpcServerMetrics,
    security?: Security,
    /**
     * Whether calls are held to the OS user behind a local connection (peer-credentials.ts). A datanode
     * serves on block tokens alone, never on who calls: it skips the lookup, which waits for a thread
     * that its disk writes keep busy.
     */
    private readonly bindLocalUsers = true,
  ) {
    this.security = security ?? processSecurity()
    this.server = net.createServer((raw) => this.handshake(raw))
    this.metrics = metrics && { ...rpcMetrics(metrics.registry), service: metrics.service }
  }

  listen(host: string, port: number): Promise<Address> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject)
        const a = this.server.address() as net.AddressInfo
        resolve({ host, port: a.port })
      })
    })
  }

  async close(): Promise<void> {
    for (const raw of this.handshaking.keys()) raw.destroy()
    for (const c of this.connections) c.socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private handshake(raw: net.Socket): void {
    if (this.handshaking.size >= HANDSHAKES_IN_FLIGHT_MAX && !this.evictCrowdedHandshake()) {
      this.refusedConnections++
      raw.destroy()
      return
    }
    const address = raw.remoteAddress ?? ''
    this.handshaking.set(raw, address)
    const fromAddress = this.handshakingByAddress.get(address) ?? new Set()
    this.handshakingByAddress.set(address, fromAddress.add(raw))
    // The kernel knows who opened a local connection before the peer says a word: looked up beside the handshake.
    Promise.all([acceptSecure(raw, this.security), this.bindLocalUsers ? peerUid(raw) : undefined]).then(
      ([socket, uid]) => {
        this.forgetHandshake(raw)
        this.accept(socket, boundUser(uid))
      },
      (err: Error) => {
        this.forgetHandshake(raw)
        this.refusedConnections++
        raw.destroy()
        this.log.warn({ peer: raw.remoteAddress, err: err.message }, 'refused a connection at the handshake')
      },
    )
  }

  /** With every slot taken: the oldest handshake of the address holding the most, if that is over its share. */
  private evictCrowdedHandshake(): boolean {
    let crowded: Set<net.Socket> | undefined
    for (const sockets of this.handshakingByAddress.values()) if (!crowded || sockets.size > crowded.size) crowded = sockets
    if (!crowded || crowded.size <= HANDSHAKES_PER_ADDRESS_MAX) return false
    const [oldest] = crowded
    // Its handshake then fails and is counted and logged as refused.
    this.forgetHandshake(oldest!)
    oldest!.destroy()
    return true
  }

  private forgetHandshake(raw: net.Socket): void {
    const address = this.handshaking.get(raw)
    if (address === undefined) return
    this.handshaking.delete(raw)
    const sockets = this.handshakingByAddress.get(address)
    sockets?.delete(raw)
    if (sockets?.size === 0) this.handshakingByAddress.delete(address)
  }

  private accept(raw: net.Socket, osUser: OsUser | undefined): void {
    const state: ConnectionState = { socket: undefined as unknown as FramedSocket, osUser, inFlight: 0, paused: false, streams: new Map() }
    state.socket = new FramedSocket(
      raw,
      (frame) => this.onFrame(state, frame),
      (err) => {
        this.connections.delete(state)
        const reason = new LoamError('unavailable', `peer ${raw.remoteAddress ?? ''} closed the connection`)
        for (const s of state.streams.values()) s.queue.finish(reason)
        if (err && (err as LoamError).code === 'protocol') {
          this.log.warn({ peer: raw.remoteAddress, err: err.message }, 'closed a connection that sent a bad frame')
        }
      },
    )
    this.connections.add(state)
  }

  private onFrame(conn: ConnectionState, frame: Frame): void {
    const { header } = frame
    if (header.kind !== FrameKind.REQUEST) {
      // Frames of a stream go to its handler; late frames of a finished stream are dropped.
      conn.streams.get(header.id)?.queue.push(frame)
      return
    }
    const method = header.method ?? ''
    const spec = Object.hasOwn(this.service, method) ? this.service[method] : undefined
    if (!spec) {
      conn.socket.send({ id: header.id, kind: FrameKind.ERROR, error: { code: 'protocol', message: `unknown method '${method.slice(0, 64)}'` } })
      return
    }
    let request: unknown
    try {
      request = spec.request.decode(header.body ?? new Uint8Array())
    } catch (err) {
      conn.socket.send({ id: header.id, kind: FrameKind.ERROR, error: { code: 'invalid-argument', message: `malformed ${method} request: ${(err as Error).message}` } })
      return
    }
    try {
      checkCaller(header.user ?? '', header.groups ?? [])
      checkClaim(conn.osUser, header.user ?? '')
    } catch (err) {
      const e = err as LoamError
      conn.socket.send({ id: header.id, kind: FrameKind.ERROR, error: { code: e.code, message: e.message } })
      return
    }
    const timeoutMs = Math.min(header.timeoutMs || RPC_TIMEOUT_DEFAULT_MS, RPC_TIMEOUT_MAX_MS)
    const ctx: CallContext = {
      method,
      user: header.user ?? '',
      // A bound connection's groups are the machine's, not the peer's word (HDFS maps groups on the server too).
      groups: conn.osUser?.groups ?? header.groups ?? [],
      epoch: header.epoch ?? 0,
      remoteAddress: conn.socket.remoteAddress,
      deadlineMs: Date.now() + timeoutMs,
    }
    if (spec.kind === 'stream') {
      if (conn.streams.has(header.id)) {
        conn.socket.destroy(new LoamError('protocol', `stream id ${header.id} reused`))
        return
      }
      if (conn.streams.size >= STREAMS_PER_CONNECTION_MAX) {
        conn.socket.send({ id: header.id, kind: FrameKind.ERROR, error: { code: 'unavailable', message: `${STREAMS_PER_CONNECTION_MAX} block streams are open on this connection, the most it may have; retry once one ends` } })
        return
      }
      ctx.stream = new ServerStream(header.id, conn.socket, timeoutMs, `${method} from ${ctx.remoteAddress}`)
      conn.streams.set(header.id, ctx.stream)
    }
    const startedMs = performance.now()
    let code = 'ok'
    // Only unary calls stop the reading: an open stream needs its DATA frames read (and is bounded by
    // STREAMS_PER_CONNECTION_MAX and its own queue), so streams counted here would stall each other.
    const unary = spec.kind !== 'stream'
    if (unary) conn.inFlight++
    if (conn.inFlight >= CALLS_PER_CONNECTION_MAX && !conn.paused) {
      conn.paused = true
      conn.socket.socket.pause()
    }
    const handler = this.handlers[method] as (req: unknown, ctx: CallContext) => unknown
    void (async () => {
      try {
        const response = await handler(request, ctx)
        conn.socket.send({ id: header.id, kind: FrameKind.RESPONSE, body: spec.response.encode(response) })
      } catch (err) {
        const e = toLoamError(err)
        code = e.code
        if (!(err instanceof LoamError)) this.log.error({ method, err: (err as Error).stack ?? String(err) }, 'handler failed')
        conn.socket.send({ id: header.id, kind: FrameKind.ERROR, error: { code: e.code, message: e.message } })
      } finally {
        if (this.metrics) {
          const { calls, seconds, service } = this.metrics
          calls.inc({ service, method, code })
          seconds.observe({ service, method }, (performance.now() - startedMs) / 1000)
        }
        // Frames the handler left unread (a peer may push DATA into a stream that never reads it) go:
        // a queue that paused the socket would otherwise hold up every later call on the connection.
        ctx.stream?.queue.finish()
        conn.streams.delete(header.id)
        if (unary) conn.inFlight--
        if (conn.paused && conn.inFlight < CALLS_PER_CONNECTION_MAX / 2) {
          conn.paused = false
          conn.socket.socket.resume()
        }
      }
    })()
  }
}
