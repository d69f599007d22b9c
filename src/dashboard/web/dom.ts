// A few helpers to build the page from data: elements, SVG elements, and the fetch calls to /api.
import { formatDuration } from '../../common/format.js'
import type { ApiError } from '../model.js'

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | undefined | ((e: Event) => void)>

function apply(el: Element, attrs: Attrs, children: Child[]): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'object' ? c : String(c))
  }
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  apply(el, attrs, children)
  return el
}

const SVG_NS = 'http://www.w3.org/2000/svg'

export function svg(tag: string, attrs: Attrs = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag)
  apply(el, attrs, children)
  return el
}

/** An API call's typed error, carrying the line the CLI would print. */
export class ApiFailure extends Error {
  constructor(
    readonly code: string,
    readonly line: string,
  ) {
    super(line)
  }
}

async function answer<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => null)) as T | ApiError | null
  if (!res.ok || body === null) {
    const e = body && typeof body === 'object' && 'error' in body ? (body as ApiError).error : { code: 'io', line: `loam: the namenode answered ${res.status} ${res.statusText}` }
    throw new ApiFailure(e.code, e.line)
  }
  return body as T
}

export async function getJson<T>(path: string, params: Record<string, string> = {}): Promise<T> {
  const q = new URLSearchParams(params).toString()
  return answer<T>(await fetch(q ? `${path}?${q}` : path, { cache: 'no-store' }))
}

export async function postJson<T>(path: string, params: Record<string, string>, body?: BodyInit): Promise<T> {
  const q = new URLSearchParams(params).toString()
  return answer<T>(await fetch(q ? `${path}?${q}` : path, { method: 'POST', body }))
}

/** How long ago, in words a glance reads: 2s ago, 5m 3s ago. */
export function ago(ms: number, nowMs: number): string {
  return nowMs - ms < 1000 ? 'just now' : `${formatDuration(nowMs - ms)} ago`
}
