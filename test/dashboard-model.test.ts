// The dashboard's pure parts: locality shares, nodes joined with their agents,
// paths, durations; and the namenode's inode counts kept through its batches.
import test from 'ava'
import { formatDuration } from '../src/common/format.js'
import { joinPath, mergeNodes, parentPath, pathCrumbs, summarizeLocality, type AgentState, type DatanodeRow } from '../src/dashboard/model.js'
import { inodeCountChanges, keys } from '../src/namenode/inode-store.js'
import { newInode } from '../src/namenode/namespace.js'
import { InodeType } from '../src/rpc/messages.js'
import { codecs } from '../src/rpc/schema.js'

test('summarizeLocality: shares of the placed tasks, the three localities always, in order', (t) => {
  const tasks = [{ locality: 'NODE_LOCAL' }, { locality: 'NODE_LOCAL' }, { locality: 'NODE_LOCAL' }, { locality: 'ANY' }, { locality: null }]
  t.deepEqual(summarizeLocality(tasks), [
    { locality: 'NODE_LOCAL', tasks: 3, share: 0.75 },
    { locality: 'RACK_LOCAL', tasks: 0, share: 0 },
    { locality: 'ANY', tasks: 1, share: 0.25 },
  ])
  t.deepEqual(summarizeLocality([{ locality: null }]).map((l) => l.share), [0, 0, 0])
})

const datanode = (id: string): DatanodeRow => ({ id, address: `127.0.0.1:${id.length}`, rack: '/r1', state: 'live', capacityBytes: 100, usedBytes: 10, remainingBytes: 50, blocks: 3, lastHeartbeatMs: 0, httpPort: 0 })
const agent = (id: string, node: string | null): AgentState => ({ id, node, rack: '/r1', cpus: 2, memMib: 1024, usedCpus: 0.5, usedMemMib: 64, tasks: [`${id}-task`] })

test('mergeNodes: each datanode with the agent on it; agents on no known datanode apart', (t) => {
  const { nodes, otherAgents } = mergeNodes([datanode('dn1'), datanode('dn2')], [agent('dn1', 'dn1'), agent('solo', null), agent('gone', 'dn9')])
  t.deepEqual(nodes.map((n) => [n.id, n.agent?.id ?? null]), [['dn1', 'dn1'], ['dn2', null]])
  t.deepEqual(otherAgents.map((a) => a.id), ['solo', 'gone'])
})

test('pathCrumbs, joinPath and parentPath', (t) => {
  t.deepEqual(pathCrumbs('/'), [['/', '/']])
  t.deepEqual(pathCrumbs('/a/b/'), [['/', '/'], ['a', '/a'], ['b', '/a/b']])
  t.is(joinPath('/', 'x'), '/x')
  t.is(joinPath('/a', 'x'), '/a/x')
  t.is(parentPath('/a/b'), '/a')
  t.is(parentPath('/a'), '/')
  t.is(parentPath('/'), '/')
})

test('formatDuration: the two largest units', (t) => {
  t.is(formatDuration(0), '0s')
  t.is(formatDuration(12_400), '12s')
  t.is(formatDuration(4 * 60_000 + 10_000), '4m 10s')
  t.is(formatDuration(2 * 3_600_000 + 5 * 60_000 + 7_000), '2h 5m')
  t.is(formatDuration(3 * 86_400_000 + 4 * 3_600_000), '3d 4h')
  t.is(formatDuration(86_400_000 + 30_000), '1d')
})

test('inodeCountChanges: new inodes count up, removed ones down, updates and other keys not at all', (t) => {
  const caller = { user: 'u', group: 'g', nowMs: 0 }
  const enc = (id: number, type: InodeType): Buffer => Buffer.from(codecs.InodeRecord.encode(newInode(id, type, caller, 0o644)))
  const store = new Map<string, Buffer>([[keys.inode(5).toString('hex'), enc(5, InodeType.FILE)], [keys.inode(6).toString('hex'), enc(6, InodeType.DIRECTORY)]])
  const before = (k: Buffer): Buffer | undefined => store.get(k.toString('hex'))
  const delta = inodeCountChanges(
    [
      { type: 'put', key: keys.inode(5), value: enc(5, InodeType.FILE) }, // an update
      { type: 'put', key: keys.inode(7), value: enc(7, InodeType.FILE) }, // new
      { type: 'put', key: keys.inode(8), value: enc(8, InodeType.SYMLINK) }, // new
      { type: 'del', key: keys.inode(6) }, // removed
      { type: 'del', key: keys.inode(9) }, // never there
      { type: 'put', key: keys.entry(1, 'x'), value: Buffer.alloc(8) },
      { type: 'put', key: keys.inode(10), value: enc(10, InodeType.FILE) }, // made and removed in one batch
      { type: 'del', key: keys.inode(10) },
    ],
    before,
  )
  t.deepEqual(delta, { files: 1, directories: -1, symlinks: 1 })
})
