// Reads through a mount on a datanode's node: straight from its local replica,
// each call to a datanode answered the first time.
import { createHash } from 'node:crypto'
import test from 'ava'
import { startCluster } from './helpers/cluster.js'
import { pattern } from './helpers/data.js'
import { mountCluster, run } from './helpers/mount.js'

/** loam_rpc_calls_total of one datanode, as {"Method code": count}. */
async function datanodeCalls(http: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${http}/metrics`)).text()
  const calls: Record<string, number> = {}
  for (const m of text.matchAll(/^loam_rpc_calls_total\{service="datanode",method="(\w+)",code="([\w-]+)"\} (\d+)$/gm)) calls[`${m[1]} ${m[2]}`] = Number(m[3])
  return calls
}

test('a file read through a mount on dn1 comes from its local replica, and no datanode refuses a call on the way', async (t) => {
  const c = await startCluster(t, { nodes: 3, racks: 2, blockSize: '1MiB' })
  const data = pattern(5 * 1024 * 1024 + 123, 3)
  const put = await c.loam(['fs', 'put', '-', '/f', '--replication', '3'], { input: data })
  t.is(put.code, 0, put.stderr)
  const m = await mountCluster(t, c, { nodeId: 'dn1' })
  const { stdout } = await run('sha256sum', [`${m.dir}/f`])
  t.is(stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'))
  const calls = await Promise.all(c.record.nodes.map((n) => datanodeCalls(n.http)))
  const refused = calls.flatMap((cs, i) => Object.entries(cs).filter(([k]) => !k.endsWith(' ok')).map(([k, v]) => `${c.record.nodes[i]!.id}: ${k} x${v}`))
  t.deepEqual(refused, [], 'every call answered the first time')
  const dn1 = c.record.nodes.findIndex((n) => n.id === 'dn1')
  t.true((calls[dn1]!['ShortCircuit ok'] ?? 0) >= 6, `each of the 6 blocks read from dn1's disk: ${JSON.stringify(calls[dn1])}`)
  t.is(Object.keys(calls[dn1]!).filter((k) => k.startsWith('ReadBlock')).length, 0, 'nothing read over TCP')
})
