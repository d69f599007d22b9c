// A replica store on a temporary directory, and replicas written as a client would write them.
import type { ExecutionContext } from 'ava'
import fs from 'node:fs/promises'
import os from 'node:os'
import { chunkChecksums } from '../../src/common/checksum.js'
import { ReplicaStore } from '../../src/datanode/replica-store.js'
import { PACKET_BYTES_MAX } from '../../src/limits.js'

export async function tempDir(t: ExecutionContext, prefix = 'loam-'): Promise<string> {
  const dir = await fs.mkdtemp(os.tmpdir() + '/' + prefix)
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}

export async function openStore(t: ExecutionContext, dirs: string[], opts?: { capacityBytes?: number }): Promise<ReplicaStore> {
  const store = await ReplicaStore.open(dirs, opts)
  t.teardown(() => store.close())
  return store
}

/** Packets of PACKET_BYTES_MAX with their checksums, then finalize. */
export async function writeReplica(store: ReplicaStore, id: number, genStamp: number, data: Buffer): Promise<void> {
  const writer = await store.createRbw(id, genStamp)
  for (let off = 0; off < data.length; off += PACKET_BYTES_MAX) {
    const packet = data.subarray(off, off + PACKET_BYTES_MAX)
    await writer.write(off, packet, chunkChecksums(packet))
  }
  await writer.sync()
  await writer.finalize(data.length)
}
