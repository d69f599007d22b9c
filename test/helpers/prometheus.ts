// Reads Prometheus text exposition format strictly enough to catch a malformed /metrics.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`)
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/** Every sample; throws on a line that is not a comment, a HELP/TYPE line or a sample of a declared family. */
export function parsePrometheus(text: string): Sample[] {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line)
    if (meta) {
      if (meta[1] === 'TYPE') {
        if (!TYPES.has(meta[3]!)) throw new Error(`unknown metric type: ${line}`)
        types.set(meta[2]!, meta[3]!)
      }
      continue
    }
    if (line.startsWith('#')) continue
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[2] ?? ''
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body)
      if (!l) throw new Error(`bad labels: ${line}`)
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    const value = sampleValue(m[3]!)
    if (value === undefined) throw new Error(`bad value: ${line}`)
    const family = m[1]!.replace(/_(bucket|sum|count|total)$/, '')
    if (!types.has(m[1]!) && !types.has(family)) throw new Error(`sample of an undeclared metric: ${line}`)
    samples.push({ name: m[1]!, labels, value })
  }
  return samples
}

/** A sample's value as Prometheus reads it (Go's ParseFloat): NaN and Inf in any case, since prom-client writes NaN as Nan. */
function sampleValue(text: string): number | undefined {
  const word = text.toLowerCase()
  if (word === 'nan') return NaN
  if (/^[+-]?inf(inity)?$/.test(word)) return word.startsWith('-') ? -Infinity : Infinity
  const value = Number(text)
  return Number.isNaN(value) ? undefined : value
}

/** The sum of the samples named so whose labels include these. */
export function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0)
}

export async function scrape(http: string): Promise<Sample[]> {
  const res = await fetch(`http://${http}/metrics`)
  if (!res.ok) throw new Error(`${http}/metrics answered ${res.status}`)
  return parsePrometheus(await res.text())
}
