// A TCP socket that speaks frames, plus the bounded queue a stream reads its frames from.
import type { Socket } from 'node:net'
import { LoamError } from './errors.js'
import { encodeFrame, FrameDecoder, type Frame } from './frame.js'
import type { FrameHeader, FrameKind } from './messages.js'

/** Bytes queued in the socket before a sender should wait for 'drain'. */
const SOCKET_HIGH_WATER_BYTES = 1 << 20

export class FramedSocket {
  private readonly decoder = new FrameDecoder()
  private closeError: Error | undefined
  private corked = false

  constructor(
    readonly socket: Socket,
    onFrame: (frame: Frame) => void,
    onClose: (err: Error | undefined) => void,
  ) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[]
      try {
        frames = this.decoder.push(chunk)
      } catch (err) {
        this.destroy(err as Error)
        return
      }
      for (const frame of frames) {
        if (socket.destroyed) return
        onFrame(frame)
      }
    })
    socket.on('error', (err) => {
      this.closeError ??= err
    })
    socket.on('close', () => onClose(this.closeError))
    // The handshake leaves the socket paused with nothing read ahead.
    socket.resume()
  }

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? ''
  }

  /** Writes one frame; false when the caller should wait for drain() before sending more. */
  send(header: FrameHeader, payload?: Uint8Array): boolean {
    if (this.socket.destroyed) return false
    const buffers = encodeFrame(header, payload)
    // Everything sent in one turn of the event loop leaves in one write (one syscall for many replies).
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.socket.uncork()
      })
    }
    for (const b of buffers) this.socket.write(b)
    return this.socket.writableLength < SOCKET_HIGH_WATER_BYTES
  }

  drain(): Promise<void> {
    if (this.socket.destroyed || this.socket.writableLength < SOCKET_HIGH_WATER_BYTES) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done)
        this.socket.off('close', done)
        resolve()
      }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    })
  }

  destroy(err?: Error): void {
    if (err) this.closeError ??= err
    this.socket.destroy()
  }
}

/**
 * Frames of one stream waiting for their reader. Past highWater frames the
 * socket stops reading (TCP pushes back on the sender); an idle wait fails with
 * 'timeout' so a silent peer never hangs a reader.
 */
export class FrameQueue {
  private readonly frames: Frame[] = []
  private waiter: { resolve: (f: Frame | null) => void; reject: (e: Error) => void } | undefined
  private finished = false
  private error: Error | undefined
  private paused = false

  constructor(
    private readonly flow: { pause(): void; resume(): void },
    private readonly idleTimeoutMs: number,
    private readonly what: string,
    private readonly highWater = 32,
  ) {}

  push(frame: Frame): void {
    if (this.finished) return
    if (this.waiter) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve(frame)
      return
    }
    this.frames.push(frame)
    if (this.frames.length >= this.highWater && !this.paused) {
      this.paused = true
      this.flow.pause()
    }
  }

  /** Frames received and not yet taken. */
  get waiting(): number {
    return this.frames.length
  }

  /** No more frames: next() returns null once the queue is empty, or throws err. */
  finish(err?: Error): void {
    if (this.finished) return
    this.finished = true
    this.error = err
    // Frames nobody will take no longer hold the connection's other calls up.
    if (this.paused) {
      this.paused = false
      this.flow.resume()
    }
    if (this.waiter && this.frames.length === 0) {
      const w = this.waiter
      this.waiter = undefined
      if (err) w.reject(err)
      else w.resolve(null)
    }
  }

  next(): Promise<Frame | null> {
    const frame = this.frames.shift()
    if (frame) {
      if (this.paused && this.frames.length < this.highWater / 2) {
        this.paused = false
        this.flow.resume()
      }
      return Promise.resolve(frame)
    }
    if (this.finished) return this.error ? Promise.reject(this.error) : Promise.resolve(null)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        const err = new LoamError('timeout', `${this.what}: nothing received for ${this.idleTimeoutMs} ms`)
        this.finish(err)
        reject(err)
      }, this.idleTimeoutMs)
      this.waiter = {
        resolve: (f) => {
          clearTimeout(timer)
          resolve(f)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
    })
  }
}

/** One stream's end on a connection: frames in through a bounded queue, frames out tagged with its id. */
export class FrameStream {
  readonly queue: FrameQueue

  constructor(
    readonly id: number,
    protected readonly socket: FramedSocket,
    idleTimeoutMs: number,
    what: string,
  ) {
    this.queue = new FrameQueue({ pause: () => socket.socket.pause(), resume: () => socket.socket.resume() }, idleTimeoutMs, what)
  }

  /** The next DATA or ACK frame, or null once the stream has ended. */
  next(): Promise<Frame | null> {
    return this.queue.next()
  }

  send(kind: FrameKind.DATA | FrameKind.ACK, body: Uint8Array, payload?: Uint8Array): boolean {
    return this.socket.send({ id: this.id, kind, body }, payload)
  }

  drain(): Promise<void> {
    return this.socket.drain()
  }

  get closed(): boolean {
    return this.socket.socket.destroyed
  }
}
