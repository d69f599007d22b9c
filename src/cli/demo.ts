// What `npm start` shows once the cluster is up: the commands a new user types, and what they print.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { SECRET_FILE_ENV } from '../rpc/security.js'

const run = promisify(execFile)

export async function runDemo(cliPath: string, namenode: string, scheduler: string, dir: string, mount: string | null): Promise<void> {
  const env = { ...process.env, LOAM_NAMENODE: namenode, LOAM_SCHEDULER: scheduler }
  const sample = path.join(dir, 'sample.txt')
  const copy = path.join(dir, 'sample.copy.txt')
  await writeFile(sample, Array.from({ length: 2000 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog\n`).join(''))
  const show = async (args: string[]): Promise<void> => {
    process.stdout.write(`\n$ loam ${args.join(' ')}\n`)
    const { stdout, stderr } = await run(process.execPath, [cliPath, ...args], { env, maxBuffer: 16 << 20 })
    process.stdout.write(stdout + stderr)
  }
  // What a shell needs to join: where the namenode is, and the file holding the secret (never the secret).
  const exports = `export LOAM_NAMENODE=${namenode} ${SECRET_FILE_ENV}=${process.env[SECRET_FILE_ENV] ?? ''}`
  process.stdout.write(`\n${exports}\n`)
  await show(['report'])
  await show(['fs', 'put', '--force', sample, '/demo/sample.txt'])
  await show(['fs', 'ls', '-l', '/demo'])
  await show(['fs', 'get', '/demo/sample.txt', copy])
  await show(['fsck', '-v', '/demo'])
  const digest = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex').slice(0, 16)
  const [a, b] = await Promise.all([digest(sample), digest(copy)])
  process.stdout.write(`\nsha256 of the file put: ${a}, of the file got back: ${b} (${a === b ? 'identical' : 'DIFFERENT'})\n`)
  if (mount) {
    // Ordinary tools on the mount, each in its own process (this one must never block on a mount).
    const sh = async (command: string): Promise<void> => {
      process.stdout.write(`\n$ ${command}\n`)
      const { stdout, stderr } = await run('sh', ['-c', command], { cwd: dir, maxBuffer: 16 << 20 })
      process.stdout.write(stdout + stderr)
    }
    const m = path.relative(dir, mount) || '.'
    await sh(`cp sample.txt ${m}/demo/copied-through-the-mount.txt`)
    await sh(`ls -l ${m}/demo`)
    await sh(`sha256sum sample.txt ${m}/demo/sample.txt ${m}/demo/copied-through-the-mount.txt | cut -c1-16,65-`)
  }
  // A data-local job: one map task per block of a file in the cluster, on a node holding the block, then a reduce.
  const wordcount = fileURLToPath(new URL('../../examples/wordcount/run.js', import.meta.url))
  process.stdout.write(`\n$ node ${path.relative(process.cwd(), wordcount)}    (a data-local word count: one map task per block, then one reduce)\n`)
  const wc = await run(process.execPath, [wordcount], { env, maxBuffer: 16 << 20 })
  process.stdout.write(wc.stdout + wc.stderr)
  process.stdout.write(`\nTry it from another terminal (npx loam, or node ${path.relative(process.cwd(), cliPath)}):\n  ${exports}\n  npx loam fs put ./some-file /some-file\n  npx loam fs ls -l /\n  npx loam fs get /some-file ./some-file.copy\n  npx loam fsck /\n  export LOAM_SCHEDULER=${scheduler}\n  npx loam job ls; npx loam job status ID\n${mount ? `  ls -l ${mount}    (the cluster filesystem, mounted; any program can use it)\n` : ''}`)
}
