import test from 'ava'
import { readFileSync } from 'node:fs'
import { NODE_FLAGS } from '../src/common/loam-command.js'
import { startCluster } from './helpers/cluster.js'

test('a file put through the CLI comes back identical', async (t) => {
  const c = await startCluster(t)
  const data = Buffer.from('hello loam\n'.repeat(1000))
  const put = await c.loam(['fs', 'put', '-', '/hello.txt'], { input: data })
  t.is(put.code, 0, put.stderr)
  const cat = await c.loam(['fs', 'cat', '/hello.txt'])
  t.is(cat.code, 0, cat.stderr)
  t.true(cat.stdout.equals(data))
  const missing = await c.loam(['fs', 'cat', '/nope'])
  t.is(missing.code, 1)
  t.is(missing.stderr.trim(), 'loam: /nope: no such file or directory')
})

test('every role cluster up starts runs with the V8 flags of the loam command', async (t) => {
  const c = await startCluster(t, { nodes: 1, racks: 1 })
  for (const pid of [c.record.namenode.pid, c.record.scheduler.pid, ...c.record.nodes.map((n) => n.pid)]) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    t.deepEqual(argv.slice(1, 1 + NODE_FLAGS.length), [...NODE_FLAGS], argv.join(' '))
  }
})
