// Reads a byte range of one file: block by block, from the nearest replica,
// verifying every chunk's checksum; a replica that fails is reported (when
// corrupt) and the read goes on from the next one where it left off.
import { open, type FileHandle } from 'node:fs/promises'
import { CHECKSUM_BYTES, CHUNK_BYTES, REPLICA_META_HEADER_BYTES } from '../limits.js'
import { firstBadChunk } from '../common/checksum.js'
import { RpcClient } from '../rpc/client.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import type { DatanodeInfo, FileStatus, LocatedBlock } from '../rpc/messages.js'
import { codecs, decodeBody } from '../rpc/schema.js'
import { DatanodeService } from '../rpc/service.js'
import type { LoamClient } from './client.js'
import { isLocalHost } from './locality.js'

/** Short-circuit reads go to disk in pieces of this size (whole chunks). */
const LOCAL_READ_BYTES = 64 * CHUNK_BYTES

export class FileReader {
  constructor(
    private readonly client: LoamClient,
    readonly path: string,
    readonly status: FileStatus,
    private blocks: LocatedBlock[],
  ) {}

  /** The bytes of [offset, offset+length), clipped to the file, in order. */
  async *read(offset = 0, length = Infinity): AsyncGenerator<Buffer> {
    const end = Math.min(this.status.lengthBytes, offset + length)
    let pos = offset
    while (pos < end) {
      const lb = this.blocks.find((b) => b.offsetBytes <= pos && pos < b.offsetBytes + (b.block?.lengthBytes ?? 0))
      if (!lb || !lb.block) throw new LoamError('io', `${this.path}: no block covers offset ${pos}; the file changed while being read`)
      const blockEnd = Math.min(end, lb.offsetBytes + lb.block.lengthBytes)
      for await (const piece of this.readBlock(lb, pos - lb.offsetBytes, blockEnd - lb.offsetBytes)) {
        pos += piece.length
        yield piece
      }
    }
  }

  private async *readBlock(lb: LocatedBlock, from: number, to: number): AsyncGenerator<Buffer> {
    let pos = from
    const failures: string[] = []
    for (let round = 0; round < 2 && pos < to; round++) {
      if (round > 0) await this.refresh(lb)
      const current = this.blocks.find((b) => b.block?.id === lb.block!.id) ?? lb
      const tried = new Set<string>()
      for (const dn of current.locations) {
        if (tried.has(dn.id)) continue
        tried.add(dn.id)
        let local = this.client.shortCircuit && isLocalHost(dn.host)
        for (;;) {
          try {
            for await (const piece of local ? this.readLocal(current, dn, pos, to) : this.readRemote(current, dn, pos, to)) {
              pos += piece.length
              yield piece
            }
            return
          } catch (err) {
            const e = toLoamError(err)
            failures.push(`${dn.id}: ${e.message}`)
            if (e.code === 'corrupt') await this.client.reportBadReplica(this.path, current.block!, dn.id).catch(() => undefined)
            // A replica being written has no stable file to read directly: the datanode serves it.
            if (!local || e.code !== 'unavailable') break
            local = false
          }
        }
      }
    }
    if (pos < to) {
      const why = failures.length > 0 ? failures.join('; ') : 'no live datanode holds a replica'
      throw new LoamError('io', `${this.path}: cannot read block ${lb.block!.id}: ${why}`)
    }
  }

  private async refresh(lb: LocatedBlock): Promise<void> {
    const res = await this.client.getBlockLocations(this.path, lb.offsetBytes, lb.block!.lengthBytes)
    for (const fresh of res.blocks) {
      const i = this.blocks.findIndex((b) => b.block?.id === fresh.block?.id)
      if (i >= 0) this.blocks[i] = fresh
    }
  }

  private async *readRemote(lb: LocatedBlock, dn: DatanodeInfo, from: number, to: number): AsyncGenerator<Buffer> {
    const rpc = new RpcClient({ host: dn.host, port: dn.rpcPort }, DatanodeService, { peerName: `datanode ${dn.id}`, timeoutMs: this.client.timeoutMs })
    try {
      const stream = await rpc.openStream('ReadBlock', { block: lb.block, offsetBytes: from, lengthBytes: to - from, token: lb.token })
      let pos = from
      for (;;) {
        const frame = await stream.next()
        if (!frame) break
        const packet = decodeBody(codecs.Packet, frame.header.body, 'packet header')
        const bad = firstBadChunk(frame.payload, packet.checksums)
        if (bad >= 0) throw new LoamError('corrupt', `block ${lb.block!.id} chunk at ${packet.offsetBytes + bad * CHUNK_BYTES} failed its checksum`)
        const piece = trim(frame.payload, packet.offsetBytes, pos, to)
        if (piece.length > 0) {
          pos += piece.length
          yield piece
        }
      }
      await stream.result
      if (pos < to) throw new LoamError('io', `block ${lb.block!.id}: replica ended at ${pos}, expected ${to}`)
    } finally {
      rpc.close()
    }
  }

  /** Short-circuit: the datanode says where the replica is; this process reads and verifies it. */
  private async *readLocal(lb: LocatedBlock, dn: DatanodeInfo, from: number, to: number): AsyncGenerator<Buffer> {
    const where = await this.client.datanode(dn).call('ShortCircuit', { block: lb.block, token: lb.token })
    if (where.lengthBytes < to) throw new LoamError('io', `block ${lb.block!.id}: local replica has ${where.lengthBytes} bytes, expected ${to}`)
    // A replica's files are the datanode's user's alone (0600): another user reads it over TCP instead.
    const openLocal = (file: string): Promise<FileHandle> =>
      open(file, 'r').catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EACCES' || err.code === 'EPERM' ? new LoamError('unavailable', `block ${lb.block!.id}: the local replica is not readable by this user; reading it over TCP`) : err
      })
    const data = await openLocal(where.dataPath)
    const meta = await openLocal(where.metaPath).catch(async (err: unknown) => {
      await data.close()
      throw err
    })
    // Whole chunks covering [from, to): their checksums can be verified, and no more is read than asked for.
    const stop = Math.min(where.lengthBytes, Math.ceil(to / CHUNK_BYTES) * CHUNK_BYTES)
    const readPiece = async (pos: number): Promise<Piece> => {
      const n = Math.min(LOCAL_READ_BYTES, stop - pos)
      const buf = Buffer.allocUnsafe(n)
      const sums = Buffer.allocUnsafe(Math.ceil(n / CHUNK_BYTES) * CHECKSUM_BYTES)
      const [d, m] = await Promise.all([data.read(buf, 0, n, pos), meta.read(sums, 0, sums.length, REPLICA_META_HEADER_BYTES + (pos / CHUNK_BYTES) * CHECKSUM_BYTES)])
      if (d.bytesRead !== n || m.bytesRead !== sums.length) throw new LoamError('io', `block ${lb.block!.id}: local replica is shorter than reported`)
      return { pos, buf, sums }
    }
    // One piece ahead: the disk (or page cache) works while this thread verifies.
    let next: Promise<Piece> | undefined = readPiece(from - (from % CHUNK_BYTES))
    try {
      while (next) {
        const { pos, buf, sums }: Piece = await next
        const end: number = pos + buf.length
        next = end < to ? readPiece(end) : undefined
        next?.catch(() => undefined) // awaited next round, unless the reader stops early
        const bad = firstBadChunk(buf, sums)
        if (bad >= 0) throw new LoamError('corrupt', `block ${lb.block!.id} chunk at ${pos + bad * CHUNK_BYTES} failed its checksum`)
        const piece = trim(buf, pos, Math.max(pos, from), to)
        if (piece.length > 0) yield piece
      }
    } finally {
      await next?.catch(() => undefined)
      await data.close()
      await meta.close()
    }
  }
}

/** A piece of a local replica: its data and the stored checksums of its chunks. */
interface Piece {
  pos: number
  buf: Buffer
  sums: Buffer
}

/** The part of data (which starts at dataOffset) that lies in [from, to). */
function trim(data: Buffer, dataOffset: number, from: number, to: number): Buffer {
  const start = Math.max(0, from - dataOffset)
  const end = Math.min(data.length, to - dataOffset)
  return end > start ? data.subarray(start, end) : Buffer.alloc(0)
}
