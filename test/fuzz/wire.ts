// The fuzzer's raw end of a connection: it writes whatever bytes it is given
// (never through RpcClient, which would refuse to send most of them) and
// records what comes back: the frames a daemon answers with, the bytes of an
// HTTP answer, and whether and when the daemon closed the connection.
import net from 'node:net'
import { encodeFrame, FrameDecoder, type Frame } from '../../src/rpc/frame.js'
import { FrameKind, type FrameHeader } from '../../src/rpc/messages.js'
import { codecs } from '../../src/rpc/schema.js'
import { connectSecure } from '../../src/rpc/secure-channel.js'
import { processSecurity } from '../../src/rpc/security.js'

export interface Endpoint {
  host: string
  port: number
}

/** How long a connect may take on a loaded machine before the daemon counts as not accepting. */
export const CONNECT_TIMEOUT_MS = 10_000

export class RawConn {
  private readonly decoder: FrameDecoder | undefined
  readonly frames: Frame[] = []
  /** Raw bytes received (HTTP mode keeps them; frame mode only counts them). */
  readonly chunks: Buffer[] = []
  received = 0
  closed = false
  /** The daemon reset the connection (ECONNRESET) rather than ending it. */
  reset = false
  /** The daemon sent bytes that are not frames. */
  decodeError: Error | undefined
  private readonly waiters: Array<() => void> = []

  /**
   * socket: what frames travel on (TLS over raw once the handshake is done);
   * raw: the TCP connection under it, for resets.
   */
  private constructor(
    readonly socket: net.Socket,
    mode: 'frames' | 'bytes',
    private readonly raw: net.Socket = socket,
  ) {
    this.decoder = mode === 'frames' ? new FrameDecoder() : undefined
    socket.on('data', (b: Buffer) => {
      this.received += b.length
      if (this.decoder) {
        if (!this.decodeError) {
          try {
            this.frames.push(...this.decoder.push(b))
          } catch (err) {
            this.decodeError = err as Error
          }
        }
      } else {
        this.chunks.push(b)
      }
      this.wake()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.reset = true
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    // The handshake leaves the socket paused.
    socket.resume()
  }

  /**
   * Connects; rejects with 'connect-failed: CODE', 'connect-timeout' or 'handshake-failed: ...'.
   * 'frames' proves it holds the cluster secret first (a member gone rogue);
   * the others send bytes as they are: an outsider to an RPC port, or HTTP.
   */
  static open(ep: Endpoint, mode: 'frames' | 'unauthenticated-bytes' | 'bytes' = 'frames', timeoutMs = CONNECT_TIMEOUT_MS): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: ep.host, port: ep.port })
      const timer = setTimeout(() => {
        s.destroy()
        reject(new Error('connect-timeout'))
      }, timeoutMs)
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(new Error(`connect-failed: ${err.code ?? err.message}`))
      })
      s.once('connect', () => {
        clearTimeout(timer)
        s.removeAllListeners('error')
        s.setNoDelay(true)
        if (mode !== 'frames') {
          resolve(new RawConn(s, 'bytes'))
          return
        }
        connectSecure(s, processSecurity(), `${ep.host}:${ep.port}`).then(
          (secure) => resolve(new RawConn(secure, 'frames', s)),
          (err: Error) => {
            s.destroy()
            reject(new Error(`handshake-failed: ${err.message}`))
          },
        )
      })
    })
  }

  send(bytes: Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(bytes)
  }

  /** Resolves once everything written so far has left this process (or the socket is gone). */
  flushed(): Promise<void> {
    if (this.socket.destroyed || this.socket.writableLength === 0) return Promise.resolve()
    return new Promise((resolve) => this.socket.write(Buffer.alloc(0), () => resolve()))
  }

  /** Half-closes: the daemon sees the end of what we send. */
  end(): void {
    if (!this.socket.destroyed) this.socket.end()
  }

  destroy(): void {
    this.socket.destroy()
  }

  /** Drops the connection with a TCP RST, as a crashed peer would. */
  resetNow(): void {
    // A TCP reset under a TLS session would pull the handle from under it: that end is only closed.
    if (this.socket !== this.raw) this.socket.destroy()
    else if (!this.raw.destroyed) this.raw.resetAndDestroy()
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  async waitUntil(pred: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!pred()) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    return true
  }

  waitClosed(ms: number): Promise<boolean> {
    return this.waitUntil(() => this.closed, ms)
  }

  /** The next n frames the daemon sent (within ms), or what arrived before it closed or the time ran out. */
  async nextFrames(n: number, ms: number): Promise<Frame[]> {
    await this.waitUntil(() => this.frames.length >= n || this.closed || this.decodeError !== undefined, ms)
    if (this.decodeError) throw new Error(`the daemon sent bytes that are not frames: ${this.decodeError.message}`)
    return this.frames.splice(0, n)
  }

  /** The frame that ends call or stream id (RESPONSE or ERROR), 'closed', or 'timeout' after ms. */
  async final(id: number, ms: number): Promise<Frame | 'closed' | 'timeout'> {
    const find = (): Frame | undefined => this.frames.find((f) => f.header.id === id && (f.header.kind === FrameKind.RESPONSE || f.header.kind === FrameKind.ERROR))
    await this.waitUntil(() => find() !== undefined || this.closed || this.decodeError !== undefined, ms)
    const f = find()
    if (f) return f
    return this.closed || this.decodeError ? 'closed' : 'timeout'
  }

  /** Frames of stream id other than its end (DATA, ACK). */
  streamFrames(id: number): Frame[] {
    return this.frames.filter((f) => f.header.id === id && (f.header.kind === FrameKind.DATA || f.header.kind === FrameKind.ACK))
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('latin1')
  }
}

/** A whole frame as one buffer (throws past FRAME_BYTES_MAX, like the real encoder). */
export function frameBytes(header: FrameHeader, payload?: Uint8Array): Buffer {
  return Buffer.concat(encodeFrame(header, payload))
}

/** A frame with any prefix: u32 frame_bytes | u32 header_bytes | header | payload, each field as given. */
export function rawFrame(header: Uint8Array, payload: Uint8Array = Buffer.alloc(0), fields: { frameBytes?: number; headerBytes?: number } = {}): Buffer {
  const prefix = Buffer.alloc(8)
  prefix.writeUInt32BE((fields.frameBytes ?? 4 + header.length + payload.length) >>> 0, 0)
  prefix.writeUInt32BE((fields.headerBytes ?? header.length) >>> 0, 4)
  return Buffer.concat([prefix, header, payload])
}

export interface RequestHeaderFields {
  timeoutMs?: number
  user?: string
  groups?: string[]
  epoch?: number
}

export function requestFrame(id: number, method: string, body: Uint8Array, h: RequestHeaderFields = {}): Buffer {
  return frameBytes({ id, kind: FrameKind.REQUEST, method, timeoutMs: h.timeoutMs ?? 10_000, body, user: h.user ?? 'fuzz', groups: h.groups ?? [], epoch: h.epoch ?? 0 })
}

/** Encodes a FrameHeader with protobufjs, whatever its fields hold (kinds and ids out of range included). */
export function headerBytes(header: FrameHeader): Uint8Array {
  return codecs.FrameHeader.encode(header)
}

export function dataFrame(id: number, packetBody: Uint8Array, payload?: Uint8Array): Buffer {
  return frameBytes({ id, kind: FrameKind.DATA, body: packetBody }, payload)
}
