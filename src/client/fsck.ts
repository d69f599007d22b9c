// Checks every block under a path against its expected replication.
import { InodeType, type FileStatus } from '../rpc/messages.js'
import type { LoamClient } from './client.js'

export type BlockHealth = 'HEALTHY' | 'UNDER_REPLICATED' | 'CORRUPT' | 'MISSING'

export interface FsckBlock {
  id: number
  path: string
  length: number
  expected: number
  replicas: Array<{ node: string; rack: string }>
  corrupt: Array<{ node: string; rack: string }>
  state: BlockHealth
}

export interface FsckReport {
  healthy: boolean
  path: string
  files: number
  directories: number
  openForWrite: number
  blocks: FsckBlock[]
}

export function blockHealth(replicas: number, corrupt: number, expected: number): BlockHealth {
  if (corrupt > 0) return 'CORRUPT'
  if (replicas === 0) return 'MISSING'
  if (replicas < expected) return 'UNDER_REPLICATED'
  return 'HEALTHY'
}

export async function fsck(client: LoamClient, path: string): Promise<FsckReport> {
  const report: FsckReport = { healthy: true, path, files: 0, directories: 0, openForWrite: 0, blocks: [] }
  const root = await client.stat(path)
  const stack: FileStatus[] = [{ ...root, path }]
  while (stack.length > 0) {
    const entry = stack.pop()!
    if (entry.type === InodeType.DIRECTORY) {
      report.directories++
      for await (const child of client.list(entry.path)) stack.push(child)
      continue
    }
    if (entry.type !== InodeType.FILE) continue
    report.files++
    if (entry.underConstruction) report.openForWrite++
    const { blocks } = await client.getBlockLocations(entry.path, 0, 0)
    for (const lb of blocks) {
      if (!lb.block || !lb.complete) continue
      const replicas = lb.locations.map((l) => ({ node: l.id, rack: l.rack }))
      const corrupt = lb.corrupt.map((l) => ({ node: l.id, rack: l.rack }))
      const state = blockHealth(replicas.length, corrupt.length, entry.replication)
      if (state !== 'HEALTHY') report.healthy = false
      report.blocks.push({ id: lb.block.id, path: entry.path, length: lb.block.lengthBytes, expected: entry.replication, replicas, corrupt, state })
    }
  }
  return report
}
