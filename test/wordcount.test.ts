// The word count example end to end, run as `npm start`'s demo runs it: map
// tasks over the blocks of a file in the cluster, one reduce, counts written
// back into the cluster filesystem.
import test from 'ava'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startCluster } from './helpers/cluster.js'
import { Rng } from './helpers/rng.js'

const RUN = fileURLToPath(new URL('../examples/wordcount/run.js', import.meta.url))
const BLOCK_BYTES = 64 * 1024

test('the word count example counts every word of a multi-block file exactly, words cut by block boundaries included', async (t) => {
  const c = await startCluster(t, { nodes: 2, racks: 1 })
  // Mixed case, digits and punctuation, words of every length: a block boundary falls inside words as it may.
  const random = new Rng(6)
  const vocabulary = ['the', 'Quick', 'BROWN', 'fox', 'jumps', 'over', 'lazy', 'dog', 'loam', 'block', 'replica', 'x', 'rack42', 'a1b2c3', 'supercalifragilistic']
  const parts: string[] = []
  let bytes = 0
  while (bytes < 3 * BLOCK_BYTES + 777) {
    const word = vocabulary[random.int(0, vocabulary.length - 1)]!
    const sep = [' ', ' ', '\n', ', ', '. ', '--', '\t'][random.int(0, 6)]!
    parts.push(word + sep)
    bytes += word.length + sep.length
  }
  // Every block boundary cuts a word: it must be counted once, by the map of the block it starts in.
  let text = parts.join('')
  for (const k of [1, 2, 3]) text = text.slice(0, k * BLOCK_BYTES - 6) + ' Straddling ' + text.slice(k * BLOCK_BYTES + 6)
  const expected = new Map<string, number>()
  for (const word of text.toLowerCase().split(/[^a-z0-9]+/)) if (word) expected.set(word, (expected.get(word) ?? 0) + 1)

  const put = await c.loam(['fs', 'put', '-', '/wordcount/input.txt', '--block-size', '64KiB'], { input: Buffer.from(text) })
  t.is(put.code, 0, put.stderr)
  const blocks = (await c.client().getBlockLocations('/wordcount/input.txt', 0, 0)).blocks.length
  t.is(blocks, 4, 'four blocks: four map tasks')

  // As the demo runs it: no arguments, so its default input (already there) and output.
  await promisify(execFile)(process.execPath, [RUN], { env: c.env, maxBuffer: 16 << 20 })
  const listing = JSON.parse((await c.loam(['fs', 'ls', '/wordcount/out', '--json'])).stdout.toString()) as Array<{ name: string }>
  t.is(listing.filter((e) => e.name.startsWith('map-')).length, blocks, 'one map output per block')
  const result = await c.loam(['fs', 'cat', '/wordcount/out/result'])
  t.is(result.code, 0, result.stderr)
  const got = new Map<string, number>()
  for (const line of result.stdout.toString().split('\n').filter(Boolean)) {
    const [n, word] = line.split('\t')
    t.false(got.has(word!), `${word} counted on one line`)
    got.set(word!, Number(n))
  }
  t.deepEqual([...got].sort(), [...expected].sort())
})
