// The reduce task of the word count: sums every map output and writes the
// totals, most frequent first, to OUT/result.
import { execFileSync } from 'node:child_process'

const out = process.env.WORDCOUNT_OUT
if (!out) throw new Error('WORDCOUNT_OUT is not set')
const listing = JSON.parse(execFileSync('loam', ['fs', 'ls', out, '--json']).toString()) as Array<{ name: string }>
const totals = new Map<string, number>()
for (const { name } of listing.filter((e) => e.name.startsWith('map-'))) {
  for (const line of execFileSync('loam', ['fs', 'cat', `${out}/${name}`], { maxBuffer: 1 << 30 }).toString().split('\n')) {
    const [word, n] = line.split('\t')
    if (word && n) totals.set(word, (totals.get(word) ?? 0) + Number(n))
  }
}
const sorted = [...totals].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
execFileSync('loam', ['fs', 'put', '-', `${out}/result`, '--force'], { input: sorted.map(([w, n]) => `${n}\t${w}\n`).join('') })
process.stdout.write(sorted.slice(0, 10).map(([w, n]) => `${String(n).padStart(8)}  ${w}`).join('\n') + '\n')
