// A map task of the word count: counts the words of its input split (one
// block), read through `loam fs cat` from the replica on its own node. A word
// that straddles the split's start belongs to the split before; one that
// straddles its end is read to its end.
import { execFileSync } from 'node:child_process'

const MARGIN_BYTES = 1024 // a word longer than this at a split's end is cut

const env = (name: string): string => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set: run this as a task of a job with an input`)
  return v
}
const path = env('LOAM_INPUT_PATH')
const offset = Number(env('LOAM_INPUT_OFFSET'))
const length = Number(env('LOAM_INPUT_LENGTH'))
const out = env('WORDCOUNT_OUT')
const from = Math.max(0, offset - 1)
const data = execFileSync('loam', ['fs', 'cat', path, '--offset', String(from), '--length', String(offset - from + length + MARGIN_BYTES)], { maxBuffer: 1 << 30 })
const isWord = (b: number | undefined): boolean => b !== undefined && ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a))
let start = offset - from
if (offset > 0 && isWord(data[start - 1])) while (isWord(data[start])) start++
let end = offset - from + length
while (end < data.length && isWord(data[end - 1]) && isWord(data[end])) end++
const counts = new Map<string, number>()
for (const word of data.subarray(start, Math.min(end, data.length)).toString('latin1').toLowerCase().split(/[^a-z0-9]+/)) {
  if (word) counts.set(word, (counts.get(word) ?? 0) + 1)
}
const text = [...counts].map(([w, n]) => `${w}\t${n}\n`).join('')
execFileSync('loam', ['fs', 'put', '-', `${out}/map-${env('LOAM_TASK_INDEX').padStart(5, '0')}`, '--force'], { input: text })
process.stdout.write(`${counts.size} distinct words in ${path} [${offset}, ${offset + length})\n`)
