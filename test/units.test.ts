// Sizes and durations as people write them on the command line.
import test from 'ava'
import { formatBytes, parseDuration, parseSize } from '../src/common/units.js'
import { LoamError } from '../src/rpc/errors.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

const sizes: Array<[string, number]> = [
  ['4KiB', 4 * KiB],
  ['64MiB', 64 * MiB],
  ['10GiB', 10 * GiB],
  ['1.5G', 1.5 * GiB],
  ['100', 100],
  ['0', 0],
  ['100B', 100],
  ['4k', 4 * KiB],
  ['4K', 4 * KiB],
  ['4kib', 4 * KiB],
  ['4KB', 4000],
  ['2MB', 2_000_000],
  ['1GB', 1_000_000_000],
  ['1T', 1024 * GiB],
  ['1TiB', 1024 * GiB],
  ['64 MiB', 64 * MiB],
  [' 8M ', 8 * MiB],
  ['0.5KiB', 512],
]
for (const [text, bytes] of sizes) {
  test(`parseSize('${text}') is ${bytes}`, (t) => {
    t.is(parseSize(text), bytes)
  })
}

const badSizes = ['abc', '10XB', '', ' ', 'KiB', '-1', '-1KiB', '1..5M', '1.5.2G', '0x10', '1e3', '10 GiB extra', '4KiBs', '99999999999TiB']
for (const text of badSizes) {
  test(`parseSize refuses '${text}'`, (t) => {
    const err = t.throws(() => parseSize(text, '--block-size'), { instanceOf: LoamError })
    t.is(err?.code, 'invalid-argument')
    t.true(err?.message.includes('--block-size'), 'the message names what was being parsed')
  })
}

const durations: Array<[string, number]> = [
  ['500ms', 500],
  ['3s', 3000],
  ['2m', 120_000],
  ['1h', 3_600_000],
  ['5', 5000],
  ['0', 0],
  ['1.5s', 1500],
  ['0.25', 250],
  [' 30s ', 30_000],
  ['10 ms', 10],
]
for (const [text, ms] of durations) {
  test(`parseDuration('${text}') is ${ms} ms`, (t) => {
    t.is(parseDuration(text), ms)
  })
}

const badDurations = ['abc', '', '5x', '3 days', '-1s', 's', '1.2.3s', '5S', '2min', '1e3']
for (const text of badDurations) {
  test(`parseDuration refuses '${text}'`, (t) => {
    const err = t.throws(() => parseDuration(text, '--dead-after'), { instanceOf: LoamError })
    t.is(err?.code, 'invalid-argument')
    t.true(err?.message.includes('--dead-after'))
  })
}

test('formatBytes picks the largest binary unit below the value', (t) => {
  const cases: Array<[number, string]> = [
    [0, '0 B'],
    [1, '1 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * KiB, '10.0 KiB'],
    [64 * MiB, '64.0 MiB'],
    [10 * GiB, '10.0 GiB'],
    [1.5 * GiB, '1.50 GiB'],
    [1024 * GiB, '1.00 TiB'],
    [1024 * 1024 * GiB, '1.00 PiB'],
    [1024 * 1024 * 1024 * GiB, '1024.0 PiB'],
  ]
  for (const [bytes, text] of cases) t.is(formatBytes(bytes), text, String(bytes))
})

test('parseSize reads back what formatBytes writes for whole units', (t) => {
  for (const bytes of [4 * KiB, 64 * MiB, 10 * GiB]) t.is(parseSize(formatBytes(bytes).replace(' ', '')), bytes)
})
