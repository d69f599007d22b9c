// Framing: u32 frame_bytes | u32 header_bytes | FrameHeader | payload. No sockets.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { FRAME_BYTES_MAX } from '../src/limits.js'
import { encodeFrame, FrameDecoder, type Frame } from '../src/rpc/frame.js'
import { LoamError } from '../src/rpc/errors.js'
import { FrameKind, type FrameHeader } from '../src/rpc/messages.js'
import { codecs } from '../src/rpc/schema.js'

function wire(header: FrameHeader, payload?: Uint8Array): Buffer {
  return Buffer.concat(encodeFrame(header, payload))
}

/** A frame as raw bytes, header bytes given as they are (possibly garbage). */
function rawFrame(headerBytes: Uint8Array, payload: Uint8Array = Buffer.alloc(0), headerLength = headerBytes.length): Buffer {
  const prefix = Buffer.alloc(8)
  prefix.writeUInt32BE(4 + headerBytes.length + payload.length, 0)
  prefix.writeUInt32BE(headerLength, 4)
  return Buffer.concat([prefix, headerBytes, payload])
}

function prefixOnly(frameBytes: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(frameBytes, 0)
  return b
}

/** The fields a test cares about, with protobuf defaults made explicit. */
function summary(f: Frame): { id: number; kind: FrameKind; method: string; timeoutMs: number; user: string; groups: string[]; body: string; payload: string } {
  return {
    id: f.header.id,
    kind: f.header.kind,
    method: f.header.method ?? '',
    timeoutMs: f.header.timeoutMs ?? 0,
    user: f.header.user ?? '',
    groups: [...(f.header.groups ?? [])],
    body: Buffer.from(f.header.body ?? []).toString('hex'),
    payload: f.payload.toString('hex'),
  }
}

const REQUEST: FrameHeader = { id: 42, kind: FrameKind.REQUEST, method: 'Mkdirs', timeoutMs: 30_000, body: Buffer.from([1, 2, 3, 0, 255]), user: 'alice', groups: ['staff', 'wheel'] }
const DATA: FrameHeader = { id: 7, kind: FrameKind.DATA }
const PAYLOAD = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 0xff))

test('a frame round-trips: header fields and payload', (t) => {
  const frames = new FrameDecoder().push(wire(REQUEST, PAYLOAD))
  t.is(frames.length, 1)
  t.deepEqual(summary(frames[0]!), {
    id: 42,
    kind: FrameKind.REQUEST,
    method: 'Mkdirs',
    timeoutMs: 30_000,
    user: 'alice',
    groups: ['staff', 'wheel'],
    body: '01020300ff',
    payload: PAYLOAD.toString('hex'),
  })
})

test('a frame without a payload has an empty payload; every kind decodes', (t) => {
  for (const kind of [FrameKind.REQUEST, FrameKind.RESPONSE, FrameKind.ERROR, FrameKind.DATA, FrameKind.ACK]) {
    const header: FrameHeader = kind === FrameKind.ERROR ? { id: 9, kind, error: { code: 'not-found', message: '/x: no such file' } } : { id: 9, kind }
    const [frame, ...rest] = new FrameDecoder().push(wire(header))
    t.is(rest.length, 0)
    t.is(frame?.header.kind, kind)
    t.is(frame?.header.id, 9)
    t.is(frame?.payload.length, 0)
    if (kind === FrameKind.ERROR) t.deepEqual({ ...frame?.header.error }, { code: 'not-found', message: '/x: no such file' })
  }
})

test('encodeFrame does not copy the payload and says the total length in its prefix', (t) => {
  const parts = encodeFrame(DATA, PAYLOAD)
  t.is(parts.length, 2)
  t.is(parts[1], PAYLOAD, 'the payload buffer is passed through, not copied')
  const head = Buffer.from(parts[0]!)
  t.is(head.readUInt32BE(0), head.length + PAYLOAD.length - 4)
  t.is(head.readUInt32BE(4), head.length - 8)
  t.is(encodeFrame(DATA).length, 1)
  t.is(encodeFrame(DATA, Buffer.alloc(0)).length, 1)
})

test('a frame split at every byte boundary across two pushes decodes once, whole', (t) => {
  const bytes = wire(REQUEST, PAYLOAD)
  for (let cut = 0; cut <= bytes.length; cut++) {
    const d = new FrameDecoder()
    const first = d.push(bytes.subarray(0, cut))
    const second = d.push(bytes.subarray(cut))
    const frames = [...first, ...second]
    t.is(frames.length, 1, `cut at ${cut}`)
    t.is(first.length, cut === bytes.length ? 1 : 0, `nothing before the last byte arrives (cut at ${cut})`)
    t.deepEqual(summary(frames[0]!), summary(new FrameDecoder().push(bytes)[0]!), `cut at ${cut}`)
  }
})

test('a stream of frames split at every byte boundary, and at every pair of boundaries, decodes whole', (t) => {
  const stream = [wire(REQUEST, PAYLOAD), wire(DATA), wire({ id: 8, kind: FrameKind.ACK }, Buffer.from('ok'))]
  const bytes = Buffer.concat(stream)
  const expected = stream.map((f) => summary(new FrameDecoder().push(f)[0]!))
  for (let cut = 0; cut <= bytes.length; cut++) {
    const d = new FrameDecoder()
    const frames = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))]
    t.deepEqual(frames.map(summary), expected, `cut at ${cut}`)
  }
  // Three pushes over a short stream: every way a frame can straddle chunks
  // with the next frame's bytes behind it.
  const small = [wire({ id: 1, kind: FrameKind.DATA }, Buffer.from('abcdef')), wire({ id: 2, kind: FrameKind.ACK }), wire({ id: 3, kind: FrameKind.DATA }, Buffer.from('xyz'))]
  const smallBytes = Buffer.concat(small)
  const smallExpected = small.map((f) => summary(new FrameDecoder().push(f)[0]!))
  let combos = 0
  for (let a = 0; a <= smallBytes.length; a++) {
    for (let b = a; b <= smallBytes.length; b++) {
      const d = new FrameDecoder()
      const frames = [...d.push(smallBytes.subarray(0, a)), ...d.push(smallBytes.subarray(a, b)), ...d.push(smallBytes.subarray(b))]
      const got = JSON.stringify(frames.map(summary))
      if (got !== JSON.stringify(smallExpected)) t.fail(`cuts at ${a} and ${b}: ${got}`)
      combos++
    }
  }
  t.true(combos > 100)
})

test('frames fed one byte at a time', (t) => {
  const bytes = Buffer.concat([wire(REQUEST, PAYLOAD), wire(DATA), wire({ id: 8, kind: FrameKind.ACK }, Buffer.from('ok'))])
  const d = new FrameDecoder()
  const frames: Frame[] = []
  for (let i = 0; i < bytes.length; i++) frames.push(...d.push(bytes.subarray(i, i + 1)))
  t.deepEqual(frames.map((f) => f.header.id), [42, 7, 8])
  t.is(frames[0]!.payload.toString('hex'), PAYLOAD.toString('hex'))
  t.is(frames[1]!.payload.length, 0)
  t.is(frames[2]!.payload.toString(), 'ok')
})

test('several frames in one push, then one and a half, then the rest', (t) => {
  const frames = Array.from({ length: 5 }, (_, i) => wire({ id: i + 1, kind: FrameKind.DATA }, Buffer.alloc(i * 10, i)))
  const d = new FrameDecoder()
  const all = d.push(Buffer.concat(frames))
  t.deepEqual(all.map((f) => f.header.id), [1, 2, 3, 4, 5])
  all.forEach((f, i) => t.true(f.payload.equals(Buffer.alloc(i * 10, i)), `payload ${i + 1}`))

  // Two frames split across pushes at an odd place, in the second frame's header.
  const two = Buffer.concat([frames[4]!, frames[3]!])
  const cut = frames[4]!.length + 5
  t.deepEqual(d.push(two.subarray(0, cut)).map((f) => f.header.id), [5])
  t.deepEqual(d.push(two.subarray(cut)).map((f) => f.header.id), [4])
  // A pushed empty chunk is harmless.
  t.deepEqual(d.push(Buffer.alloc(0)), [])
})

test('a payload survives unchanged, binary and up to the frame limit', (t) => {
  const headerBytes = codecs.FrameHeader.encode(DATA).length
  const largest = FRAME_BYTES_MAX - 8 - headerBytes
  for (const payload of [randomBytes(1), randomBytes(64 * 1024), rawFrame(Buffer.from([0xff, 0xff]), randomBytes(100)), randomBytes(largest)]) {
    const copy = Buffer.from(payload)
    const bytes = wire(DATA, payload)
    // Through a decoder that gets the bytes in uneven chunks.
    const d = new FrameDecoder()
    const frames: Frame[] = []
    for (let at = 0; at < bytes.length; at += 65_537) frames.push(...d.push(bytes.subarray(at, at + 65_537)))
    t.is(frames.length, 1)
    t.true(frames[0]!.payload.equals(copy), `payload of ${payload.length} bytes`)
  }
})

test('encodeFrame refuses a message over FRAME_BYTES_MAX; exactly the limit is fine', (t) => {
  const headerBytes = codecs.FrameHeader.encode(DATA).length
  const fits = Buffer.alloc(FRAME_BYTES_MAX - 8 - headerBytes)
  t.is(wire(DATA, fits).length, FRAME_BYTES_MAX)
  const err = t.throws(() => encodeFrame(DATA, Buffer.alloc(fits.length + 1)), { instanceOf: LoamError })
  t.is(err?.code, 'invalid-argument')
  // A body in the header counts as much as a payload.
  const err2 = t.throws(() => encodeFrame({ ...DATA, body: Buffer.alloc(FRAME_BYTES_MAX) }), { instanceOf: LoamError })
  t.is(err2?.code, 'invalid-argument')
})

test('an oversized length prefix is refused from the prefix alone, before any body arrives', (t) => {
  for (const frameBytes of [FRAME_BYTES_MAX - 3, FRAME_BYTES_MAX, 0x7fffffff, 0xffffffff]) {
    const err = t.throws(() => new FrameDecoder().push(prefixOnly(frameBytes)), { instanceOf: LoamError })
    t.is(err?.code, 'protocol', `prefix ${frameBytes}`)
  }
  // Even when the prefix itself arrives one byte at a time.
  const d = new FrameDecoder()
  const big = prefixOnly(0xffffffff)
  for (let i = 0; i < 3; i++) t.deepEqual(d.push(big.subarray(i, i + 1)), [])
  t.is(t.throws(() => d.push(big.subarray(3)), { instanceOf: LoamError })?.code, 'protocol')
  // The largest legal frame only waits for its body.
  t.deepEqual(new FrameDecoder().push(prefixOnly(FRAME_BYTES_MAX - 4)), [])
})

test('a length prefix too small to hold the header length is refused', (t) => {
  for (const frameBytes of [0, 1, 3]) {
    t.is(t.throws(() => new FrameDecoder().push(prefixOnly(frameBytes)), { instanceOf: LoamError })?.code, 'protocol', `prefix ${frameBytes}`)
  }
})

test('a frame with a garbage header is refused with protocol', (t) => {
  const cases: Array<[string, Buffer]> = [
    ['bytes that are not protobuf', rawFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))],
    ['a truncated varint', rawFrame(Buffer.from([0x08]))],
    ['a length-delimited field running past the header', rawFrame(Buffer.from([0x1a, 0x10, 0x41]))],
    ['an unknown frame kind', rawFrame(Buffer.from([0x08, 0x01, 0x10, 0x09]))],
    ['an id beyond 2^53', rawFrame(codecs.FrameHeader.encode({ id: 2 ** 60, kind: FrameKind.REQUEST }))],
    ['a header length longer than the frame', rawFrame(Buffer.from([0x08, 0x01]), Buffer.alloc(0), 100)],
    ['a header length of 2^32-1', rawFrame(Buffer.from([0x08, 0x01]), Buffer.alloc(10), 0xffffffff)],
  ]
  for (const [what, bytes] of cases) {
    const err = t.throws(() => new FrameDecoder().push(bytes), { instanceOf: LoamError }, what)
    t.is(err?.code, 'protocol', what)
  }
})

test('a bad frame after a good one in the same push still throws protocol', (t) => {
  // The caller closes the connection on the throw; the good frame before it is moot.
  const bytes = Buffer.concat([wire(REQUEST), rawFrame(Buffer.from([0xff, 0xff, 0xff]))])
  t.is(t.throws(() => new FrameDecoder().push(bytes), { instanceOf: LoamError })?.code, 'protocol')
})
