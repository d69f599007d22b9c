// A data-local word count on the cluster: one map task per block of the input
// (each on a node that holds the block), then one reduce; output back into the
// cluster filesystem. `node dist/examples/wordcount/run.js [INPUT] [OUT]`, with
// LOAM_NAMENODE and LOAM_SCHEDULER pointing at the cluster.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const input = process.argv[2] ?? '/wordcount/input.txt'
const out = process.argv[3] ?? '/wordcount/out'
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
const loam = (args: string[], input?: string): string => execFileSync(process.execPath, [cli, ...args], { input, maxBuffer: 1 << 30 }).toString()
const script = (name: string): string => `"${process.execPath}" "${fileURLToPath(new URL(`./${name}.js`, import.meta.url))}"`

try {
  execFileSync(process.execPath, [cli, 'fs', 'stat', input], { stdio: 'ignore' })
} catch {
  // No input yet: a few MiB of text, in 1 MiB blocks so there are several map tasks.
  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'loam', 'block', 'replica', 'node', 'rack', 'data', 'local']
  let text = ''
  for (let i = 0; text.length < 3 * 1024 * 1024; i++) text += `${words[(i * 7) % words.length]} ${words[(i * i) % words.length]} ${i % 10 === 0 ? '\n' : ''}`
  loam(['fs', 'put', '-', input, '--block-size', '1MiB', '--force'], text)
}
const job = (spec: object): void => {
  process.stdout.write(loam(['job', 'run', '-', '--wait'], JSON.stringify(spec)))
}
const stamp = Date.now()
job({ id: `wordcount-map-${stamp}`, cmd: script('map'), input, cpus: 0.5, mem: 128, env: { WORDCOUNT_OUT: out } })
job({ id: `wordcount-reduce-${stamp}`, cmd: script('reduce'), instances: 1, cpus: 0.5, mem: 256, env: { WORDCOUNT_OUT: out } })
process.stdout.write(`\nthe ten most frequent words (all of them in ${out}/result):\n`)
process.stdout.write(loam(['logs', `wordcount-reduce-${stamp}.0`]))
