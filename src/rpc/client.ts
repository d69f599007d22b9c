// The calling side of a connection: unary calls with deadlines, and streams.
import net from 'node:net'
import { RPC_TIMEOUT_DEFAULT_MS } from '../limits.js'
import { formatAddress, type Address } from '../common/address.js'
import { processIdentity } from '../common/identity.js'
import type { Security } from './auth.js'
import { assert, isErrorCode, LoamError } from './errors.js'
import type { Frame } from './frame.js'
import { FramedSocket, FrameStream } from './framed-socket.js'
import { FrameKind, type FrameHeader } from './messages.js'
import { connectSecure } from './secure-channel.js'
import { processSecurity } from './security.js'
import type { RequestOf, ResponseOf, ServiceSpec } from './service.js'

export interface RpcClientOptions {
  /** What the peer is, for error messages: 'namenode', 'datanode dn1'. */
  peerName?: string
  timeoutMs?: number
  connectTimeoutMs?: number
  user?: string
  groups?: string[]
  /** The volume attachment every call is made under (fencing; 0: none). */
  epoch?: number
  /** The cluster secret and whether to encrypt (default: this process's, see security.ts). */
  security?: Security
}

interface PendingCall {
  resolve(frame: Frame): void
  reject(err: Error): void
}

export interface CallOptions {
  timeoutMs?: number
  /** Acting for another user (a mount serving many): its name and groups on this call. */
  user?: string
  groups?: string[]
}

export class RpcClient<S extends ServiceSpec> {
  private socket: Promise<FramedSocket> | undefined
  private nextId = 1
  private readonly pending = new Map<number, PendingCall>()
  private readonly streams = new Map<number, ClientStream<unknown>>()
  private readonly peerName: string
  private readonly timeoutMs: number
  private readonly connectTimeoutMs: number
  private readonly user: string
  private readonly groups: string[]
  private readonly epoch: number
  private readonly security: Security | undefined
  private closed = false

  constructor(
    readonly address: Address,
    private readonly service: S,
    opts: RpcClientOptions = {},
  ) {
    this.peerName = opts.peerName ?? 'server'
    this.timeoutMs = opts.timeoutMs ?? RPC_TIMEOUT_DEFAULT_MS
    this.connectTimeoutMs = opts.connectTimeoutMs ?? Math.min(this.timeoutMs, 10_000)
    const self = opts.user === undefined ? processIdentity() : undefined
    this.user = opts.user ?? self!.user
    this.groups = opts.groups ?? self?.groups ?? []
    this.epoch = opts.epoch ?? 0
    this.security = opts.security
  }

  async call<K extends keyof S & string>(method: K, request: RequestOf<S[K]>, opts: CallOptions = {}): Promise<ResponseOf<S[K]>> {
    const spec = this.service[method]
    assert(spec && spec.kind === 'unary', `${method} is a unary method`)
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs
    const started = Date.now()
    const socket = await this.connect(timeoutMs)
    const id = this.nextId++
    const frame = await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        const err = new LoamError('timeout', `${this.peerName} at ${formatAddress(this.address)} did not answer ${method} within ${Math.round(timeoutMs / 1000)} s; is it running and reachable?`)
        reject(err)
        // A connection that let a call pass its deadline is presumed dead: the next call opens a new one,
        // instead of queueing behind TCP retransmissions of a stalled one.
        socket.destroy(err)
      }, Math.max(1, timeoutMs - (Date.now() - started)))
      this.pending.set(id, {
        resolve: (f) => {
          clearTimeout(timer)
          resolve(f)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      socket.send(this.requestHeader(id, method, spec.request.encode(request), timeoutMs, opts))
    })
    return spec.response.decode(frame.header.body ?? new Uint8Array()) as ResponseOf<S[K]>
  }

  /** Opens a stream; the caller exchanges DATA/ACK frames and then awaits result. */
  async openStream<K extends keyof S & string>(method: K, request: RequestOf<S[K]>, idleTimeoutMs = this.timeoutMs): Promise<ClientStream<ResponseOf<S[K]>>> {
    const spec = this.service[method]
    assert(spec && spec.kind === 'stream', `${method} is a stream method`)
    const socket = await this.connect(idleTimeoutMs)
    const id = this.nextId++
    const stream = new ClientStream<ResponseOf<S[K]>>(id, socket, (body) => spec.response.decode(body) as ResponseOf<S[K]>, idleTimeoutMs, `${method} with ${this.peerName} at ${formatAddress(this.address)}`)
    this.streams.set(id, stream as ClientStream<unknown>)
    void stream.result.catch(() => undefined).finally(() => this.streams.delete(id))
    socket.send(this.requestHeader(id, method, spec.request.encode(request), idleTimeoutMs))
    return stream
  }

  close(): void {
    this.closed = true
    void this.socket?.then((s) => s.destroy()).catch(() => undefined)
    this.socket = undefined
  }

  private requestHeader(id: number, method: string, body: Uint8Array, timeoutMs: number, as: { user?: string; groups?: string[] } = {}): FrameHeader {
    return { id, kind: FrameKind.REQUEST, method, timeoutMs, body, user: as.user ?? this.user, groups: as.groups ?? this.groups, epoch: this.epoch }
  }

  private connect(timeoutMs: number): Promise<FramedSocket> {
    if (this.closed) return Promise.reject(new LoamError('unavailable', `connection to ${this.peerName} is closed`))
    let security: Security
    try {
      security = this.security ?? processSecurity()
    } catch (err) {
      return Promise.reject(err)
    }
    this.socket ??= new Promise<FramedSocket>((resolve, reject) => {
      const where = `${this.peerName} at ${formatAddress(this.address)}`
      const raw = net.connect({ host: this.address.host, port: this.address.port })
      let settled = false
      const timer = setTimeout(() => {
        raw.destroy()
        fail(new LoamError('unavailable', `cannot reach ${where}: no connection within ${Math.round(Math.min(timeoutMs, this.connectTimeoutMs) / 1000)} s`))
      }, Math.min(timeoutMs, this.connectTimeoutMs))
      const fail = (err: Error): void => {
        // Once only: a timed-out handshake also fails when its socket is closed, by then maybe beside a newer connection.
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.socket = undefined
        reject(err instanceof LoamError ? err : new LoamError('unavailable', `cannot reach ${where}: ${(err as NodeJS.ErrnoException).code ?? err.message}; is it running?`))
      }
      raw.once('error', fail)
      raw.once('connect', () => {
        raw.off('error', fail)
        // The connection counts as made once both ends have proved they hold the cluster secret.
        connectSecure(raw, security, where).then(
          (socket) => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            const framed = new FramedSocket(socket, (f) => this.onFrame(f), (err) => this.onClose(framed, err))
            resolve(framed)
          },
          (err: Error) => {
            raw.destroy()
            fail(err)
          },
        )
      })
    })
    return this.socket
  }

  private onFrame(frame: Frame): void {
    const { id, kind } = frame.header
    const stream = this.streams.get(id)
    if (stream) {
      stream.deliver(frame)
      return
    }
    const call = this.pending.get(id)
    if (!call) return // answered after its deadline: dropped
    this.pending.delete(id)
    if (kind === FrameKind.ERROR) call.reject(errorFromHeader(frame.header))
    else call.resolve(frame)
  }

  private onClose(socket: FramedSocket, err: Error | undefined): void {
    void this.socket?.then((s) => {
      if (s === socket) this.socket = undefined
    })
    const reason = new LoamError('unavailable', `connection to ${this.peerName} at ${formatAddress(this.address)} closed${err ? `: ${err.message}` : ''}`)
    for (const call of this.pending.values()) call.reject(reason)
    this.pending.clear()
    for (const stream of this.streams.values()) stream.fail(reason)
    this.streams.clear()
  }
}

export class ClientStream<Res> extends FrameStream {
  private settle!: { resolve(r: Res): void; reject(e: Error): void }
  readonly result: Promise<Res>

  constructor(
    id: number,
    socket: FramedSocket,
    private readonly decodeResponse: (body: Uint8Array) => Res,
    idleTimeoutMs: number,
    what: string,
  ) {
    super(id, socket, idleTimeoutMs, what)
    this.result = new Promise<Res>((resolve, reject) => {
      this.settle = { resolve, reject }
    })
    this.result.catch(() => undefined) // observed through next() or by the caller
  }

  deliver(frame: Frame): void {
    const kind = frame.header.kind
    if (kind === FrameKind.DATA || kind === FrameKind.ACK) {
      this.queue.push(frame)
    } else if (kind === FrameKind.ERROR) {
      this.fail(errorFromHeader(frame.header))
    } else if (kind === FrameKind.RESPONSE) {
      try {
        this.settle.resolve(this.decodeResponse(frame.header.body ?? new Uint8Array()))
        this.queue.finish()
      } catch (err) {
        this.fail(new LoamError('protocol', `malformed response: ${(err as Error).message}`))
      }
    }
  }

  fail(err: Error): void {
    this.settle.reject(err)
    this.queue.finish(err)
  }

  /** Ends the stream from this side by closing its connection. */
  abort(reason: Error): void {
    this.fail(reason)
    this.socket.destroy(reason)
  }
}

export function errorFromHeader(header: FrameHeader): LoamError {
  const code = header.error?.code ?? 'io'
  return new LoamError(isErrorCode(code) ? code : 'io', header.error?.message || `remote error ${code}`)
}
