// HOST:PORT parsing, and how the CLI turns an error into an exit status and one line.
import test from 'ava'
import { CommanderError } from 'commander'
import { formatAddress, parseAddress } from '../src/common/address.js'
import { errorLine, exitStatus } from '../src/cli/run.js'
import { ERROR_CODES, LoamError } from '../src/rpc/errors.js'

const good: Array<[string, string, number]> = [
  ['127.0.0.1:8020', '127.0.0.1', 8020],
  ['localhost:1', 'localhost', 1],
  ['nn.example.com:65535', 'nn.example.com', 65535],
  ['[::1]:80', '::1', 80],
  ['[fe80::1:2]:9870', 'fe80::1:2', 9870],
]
for (const [text, host, port] of good) {
  test(`parseAddress('${text}')`, (t) => {
    t.deepEqual(parseAddress(text), { host, port })
    t.is(formatAddress(parseAddress(text)), text, 'formatAddress writes it back')
  })
}

const bad: Array<[string, string]> = [
  ['missing port', 'localhost'],
  ['empty port', 'localhost:'],
  ['missing host', ':8020'],
  ['empty', ''],
  ['port 0', 'localhost:0'],
  ['port 70000', 'localhost:70000'],
  ['port 65536', 'localhost:65536'],
  ['negative port', 'localhost:-1'],
  ['fractional port', 'localhost:80.5'],
  ['port not a number', 'localhost:http'],
  ['bracketed IPv6 without port', '[::1]'],
  ['bare IPv6 without port', '::1'],
  ['empty brackets', '[]:80'],
]
for (const [what, text] of bad) {
  test(`parseAddress refuses ${what}: '${text}'`, (t) => {
    const err = t.throws(() => parseAddress(text, '--namenode'), { instanceOf: LoamError })
    t.is(err?.code, 'invalid-argument')
    t.true(err?.message.includes('--namenode'), 'the message names the option')
  })
}

test('exitStatus: 2 for a usage mistake, 1 for everything else, 0 for help', (t) => {
  t.is(exitStatus(new LoamError('invalid-argument', 'bad size')), 2)
  for (const code of ERROR_CODES.filter((c) => c !== 'invalid-argument')) t.is(exitStatus(new LoamError(code, 'x')), 1, code)
  t.is(exitStatus(new CommanderError(1, 'commander.unknownOption', "error: unknown option '--nope'")), 2)
  t.is(exitStatus(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)')), 0)
  t.is(exitStatus(new Error('ECONNREFUSED')), 1)
  t.is(exitStatus('a string'), 1)
  t.is(exitStatus(undefined), 1)
})

test('errorLine: one line starting loam:, with the message and no stack', (t) => {
  const err = new LoamError('not-found', '/x: no such file or directory')
  t.is(errorLine(err), 'loam: /x: no such file or directory')
  t.is(errorLine(new Error('connect ECONNREFUSED 127.0.0.1:8020')), 'loam: connect ECONNREFUSED 127.0.0.1:8020')
  t.is(errorLine('plain'), 'loam: plain')
  t.is(errorLine(42), 'loam: 42')
  for (const line of [errorLine(err), errorLine(new TypeError('boom'))]) {
    t.false(line.includes('\n'), line)
    t.false(line.includes('    at '), 'no stack trace')
  }
})
