// Length-prefixed frames: u32 frame_bytes | u32 header_bytes | FrameHeader | payload.
// The decoder refuses anything over FRAME_BYTES_MAX before buffering it, so a
// hostile length can cost a connection but never the daemon's memory.
import { FRAME_BYTES_MAX } from '../limits.js'
import { LoamError } from './errors.js'
import { FrameKind, type FrameHeader } from './messages.js'
import { codecs } from './schema.js'

const PREFIX_BYTES = 8

export interface Frame {
  header: FrameHeader
  payload: Buffer
}

/** The buffers of one frame, ready for a corked socket write (the payload is not copied). */
export function encodeFrame(header: FrameHeader, payload?: Uint8Array): Uint8Array[] {
  const headerBytes = codecs.FrameHeader.encode(header)
  const payloadBytes = payload?.length ?? 0
  const total = PREFIX_BYTES + headerBytes.length + payloadBytes
  if (total > FRAME_BYTES_MAX) {
    throw new LoamError('invalid-argument', `message of ${total} bytes is over the frame limit of ${FRAME_BYTES_MAX} bytes`)
  }
  const head = Buffer.allocUnsafe(PREFIX_BYTES + headerBytes.length)
  head.writeUInt32BE(total - 4, 0)
  head.writeUInt32BE(headerBytes.length, 4)
  head.set(headerBytes, PREFIX_BYTES)
  return payload && payloadBytes > 0 ? [head, payload] : [head]
}

export class FrameDecoder {
  private chunks: Buffer[] = []
  private buffered = 0

  /** Feeds bytes in; returns the frames they complete. Throws 'protocol' on a bad frame. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    const frames: Frame[] = []
    for (;;) {
      if (this.buffered < 4) break
      const frameBytes = this.peekUInt32()
      if (frameBytes + 4 > FRAME_BYTES_MAX || frameBytes < 4) {
        throw new LoamError('protocol', `frame of ${frameBytes} bytes is outside 4..${FRAME_BYTES_MAX - 4}`)
      }
      if (this.buffered < frameBytes + 4) break
      frames.push(decodeBody(this.take(frameBytes + 4)))
    }
    return frames
  }

  private peekUInt32(): number {
    const first = this.chunks[0]
    if (first && first.length >= 4) return first.readUInt32BE(0)
    const head = Buffer.alloc(4)
    let got = 0
    for (const c of this.chunks) {
      got += c.copy(head, got, 0, Math.min(c.length, 4 - got))
      if (got === 4) break
    }
    return head.readUInt32BE(0)
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]
    if (first && first.length >= n) {
      // Common case: the frame is inside one socket chunk; slice, do not copy.
      const out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return out
    }
    // The frame spans socket reads: copy just its bytes; what follows stays a view of its chunk.
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const chunk = this.chunks[0]!
      const take = Math.min(chunk.length, n - filled)
      chunk.copy(out, filled, 0, take)
      filled += take
      if (take === chunk.length) this.chunks.shift()
      else this.chunks[0] = chunk.subarray(take)
    }
    this.buffered -= n
    return out
  }
}

function decodeBody(frame: Buffer): Frame {
  const headerBytes = frame.readUInt32BE(4)
  if (headerBytes > frame.length - PREFIX_BYTES) {
    throw new LoamError('protocol', `frame header of ${headerBytes} bytes does not fit its frame`)
  }
  let header: FrameHeader
  try {
    header = codecs.FrameHeader.decode(frame.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes))
  } catch (err) {
    throw new LoamError('protocol', `malformed frame header: ${(err as Error).message}`)
  }
  if (!(header.kind in FrameKind) || !Number.isSafeInteger(header.id)) {
    throw new LoamError('protocol', `frame header has kind ${header.kind} and id ${header.id}`)
  }
  return { header, payload: frame.subarray(PREFIX_BYTES + headerBytes) }
}
