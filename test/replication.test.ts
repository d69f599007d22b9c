import test from 'ava'
import type { PlacementNode } from '../src/namenode/placement.js'
import { chooseExcess, planReplication, type ReplicaSet } from '../src/namenode/replication.js'

const LIMITS = { streamsPerNode: 2, workPerRound: 100 }

function nodes(n: number, racks = 2, overrides: Partial<Record<string, Partial<PlacementNode>>> = {}): PlacementNode[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `dn${i + 1}`
    return { id, rack: `/r${(i % racks) + 1}`, host: `h${i + 1}`, remainingBytes: 2 ** 40, activeTransfers: 0, state: 'live' as const, ...overrides[id] }
  })
}

function block(id: number, replicas: string[], opts: Partial<ReplicaSet> = {}): ReplicaSet {
  return { id, genStamp: 1, lengthBytes: 1 << 20, replication: 3, complete: true, replicas: new Set(replicas), corrupt: new Set(), ...opts }
}

let seed = 7
const random = (): number => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

test('a block missing a replica is copied from a live replica to a node that does not hold it', (t) => {
  const plan = planReplication([block(1, ['dn1', 'dn2'])], nodes(5), new Map(), new Map(), LIMITS, random)
  t.is(plan.copies.length, 1)
  const copy = plan.copies[0]!
  t.true(['dn1', 'dn2'].includes(copy.source))
  t.is(copy.targets.length, 1)
  t.false(['dn1', 'dn2'].includes(copy.targets[0]!))
  t.is(plan.underReplicated, 1)
})

test('replicas on dead nodes do not count, and dead nodes are neither sources nor targets', (t) => {
  const ns = nodes(5, 2, { dn1: { state: 'dead' } })
  const plan = planReplication([block(1, ['dn1', 'dn2', 'dn3'])], ns, new Map(), new Map(), LIMITS, random)
  t.is(plan.copies.length, 1)
  t.not(plan.copies[0]!.source, 'dn1')
  t.false(plan.copies[0]!.targets.includes('dn1'))
})

test('fewest live replicas first, and each source is bounded by streamsPerNode', (t) => {
  const blocks = [block(1, ['dn1', 'dn2']), block(2, ['dn1']), block(3, ['dn1']), block(4, ['dn1'])]
  const plan = planReplication(blocks, nodes(6), new Map(), new Map(), { streamsPerNode: 2, workPerRound: 100 }, random)
  // Blocks 2 and 3 take dn1's two streams; block 4 waits; block 1 still has dn2 free.
  t.deepEqual(plan.copies.map((c) => c.blockId), [2, 3, 1])
  t.deepEqual(plan.copies.map((c) => c.targets.length), [2, 2, 1])
  t.is(plan.underReplicated, 4)
})

test('copies already scheduled count as replicas', (t) => {
  const plan = planReplication([block(1, ['dn1', 'dn2'])], nodes(5), new Map([[1, ['dn4']]]), new Map(), LIMITS, random)
  t.is(plan.copies.length, 0)
  t.is(plan.underReplicated, 0)
})

test('a decommissioning node is a preferred source and its replica does not count', (t) => {
  const ns = nodes(5, 2, { dn1: { state: 'decommissioning' } })
  const plan = planReplication([block(1, ['dn1', 'dn2', 'dn3'])], ns, new Map(), new Map(), LIMITS, random)
  t.is(plan.copies.length, 1)
  t.is(plan.copies[0]!.source, 'dn1')
  t.false(plan.copies[0]!.targets.includes('dn1'))
})

test('excess replicas are removed from the most crowded rack, keeping the block on two racks', (t) => {
  const ns = nodes(4, 2)
  const plan = planReplication([block(1, ['dn1', 'dn2', 'dn3', 'dn4'])], ns, new Map(), new Map(), LIMITS, random)
  t.is(plan.removals.length, 1)
  const left = ['dn1', 'dn2', 'dn3', 'dn4'].filter((n) => n !== plan.removals[0]!.node)
  t.is(new Set(left.map((id) => ns.find((n) => n.id === id)!.rack)).size, 2)
})

test('chooseExcess removes the fullest node among the crowded rack', (t) => {
  const ns = nodes(4, 2, { dn3: { remainingBytes: 10 } })
  const byId = new Map(ns.map((n) => [n.id, n]))
  t.deepEqual(chooseExcess(['dn1', 'dn2', 'dn3', 'dn4'], 1, byId), ['dn3'])
})

test('a corrupt replica is removed once enough good copies exist, not before', (t) => {
  const enough = planReplication([block(1, ['dn1', 'dn2', 'dn3'], { corrupt: new Set(['dn4']) })], nodes(5), new Map(), new Map(), LIMITS, random)
  t.deepEqual(enough.removals, [{ blockId: 1, node: 'dn4' }])
  const short = planReplication([block(1, ['dn1', 'dn2'], { corrupt: new Set(['dn3']) })], nodes(5), new Map(), new Map(), LIMITS, random)
  t.deepEqual(short.removals, [])
  t.is(short.copies.length, 1)
  t.false(short.copies[0]!.targets.includes('dn3'))
})

test('when every node already holds the block, the corrupt copy goes first so its node can take a good one', (t) => {
  const plan = planReplication([block(1, ['dn1', 'dn2'], { corrupt: new Set(['dn3']) })], nodes(3), new Map(), new Map(), LIMITS, random)
  t.deepEqual(plan.copies, [])
  t.deepEqual(plan.removals, [{ blockId: 1, node: 'dn3' }])
  const later = planReplication([block(1, ['dn1', 'dn2'])], nodes(3), new Map(), new Map([[1, ['dn3']]]), LIMITS, random)
  t.deepEqual(later.copies, [], 'a node still deleting its copy is not a target')
  const after = planReplication([block(1, ['dn1', 'dn2'])], nodes(3), new Map(), new Map(), LIMITS, random)
  t.deepEqual(after.copies[0]?.targets, ['dn3'])
})

test('a block with no live replica is missing, and blocks being written are left alone', (t) => {
  const ns = nodes(3, 2, { dn1: { state: 'dead' } })
  const plan = planReplication([block(1, ['dn1']), block(2, [], { complete: false })], ns, new Map(), new Map(), LIMITS, random)
  t.deepEqual(plan.missing, [1])
  t.deepEqual(plan.copies, [])
})

test('1,000 nodes, 20,000 blocks after a rack fails: work is bounded per round and per source', (t) => {
  const ns = nodes(1000, 20, Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`dn${i * 20 + 1}`, { state: 'dead' as const }])))
  const blocks = Array.from({ length: 20_000 }, (_, i) => block(i + 1, [`dn${((i * 7) % 1000) + 1}`, `dn${((i * 13 + 1) % 1000) + 1}`, `dn${((i * 29 + 2) % 1000) + 1}`]))
  const plan = planReplication(blocks, ns, new Map(), new Map(), { streamsPerNode: 2, workPerRound: 500 }, random)
  t.true(plan.copies.length <= 500)
  t.true(plan.copies.length > 0)
  const perSource = new Map<string, number>()
  for (const c of plan.copies) perSource.set(c.source, (perSource.get(c.source) ?? 0) + 1)
  t.true([...perSource.values()].every((n) => n <= 2))
  for (const c of plan.copies) {
    const b = blocks[c.blockId - 1]!
    for (const target of c.targets) {
      t.false(b.replicas.has(target))
      t.is(ns.find((n) => n.id === target)!.state, 'live')
    }
  }
})

test('copies already running count against their source: the stream bound holds across rounds', (t) => {
  const blocks = [block(1, ['dn1']), block(2, ['dn1']), block(3, ['dn1'])]
  const busy = planReplication(blocks, nodes(6), new Map(), new Map(), { streamsPerNode: 2, workPerRound: 100, streamsInUse: new Map([['dn1', 2]]) }, random)
  t.deepEqual(busy.copies, [])
  const one = planReplication(blocks, nodes(6), new Map(), new Map(), { streamsPerNode: 2, workPerRound: 100, streamsInUse: new Map([['dn1', 1]]) }, random)
  t.is(one.copies.length, 1)
})
