import test from 'ava'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { CLI_PATH, loamCommand, NODE_FLAGS } from '../src/common/loam-command.js'

test('the loam executable and every process loam starts run with the same V8 flags', (t) => {
  const shebang = readFileSync(CLI_PATH, 'utf8').split('\n')[0]
  t.is(shebang, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`)
  t.deepEqual(loamCommand(), [process.execPath, ...NODE_FLAGS, CLI_PATH])
  // The executable runs straight from its shebang, flags and all.
  t.regex(execFileSync(CLI_PATH, ['--version'], { encoding: 'utf8' }), /\d+\.\d+\.\d+/)
  // So do the README's npm start and the benchmarks (whose own process is a client moving the data).
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
  for (const script of ['start', 'bench']) t.true(pkg.scripts[script]!.startsWith(`node ${NODE_FLAGS.join(' ')} `), `${script}: ${pkg.scripts[script]}`)
})
