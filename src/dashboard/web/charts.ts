// Hand-drawn SVG charts: a donut for shares of a whole, horizontal bars for
// used-of-total and for a split into parts.
import { h, svg } from './dom.js'

export interface Segment {
  label: string
  value: number
  /** A CSS class that sets the colour (see style.css: .c-used, .c-free, ...). */
  cls: string
}

/** A ring of segments around a figure, with a legend. */
export function donut(segments: Segment[], centre: string, caption: string, format: (v: number) => string): HTMLElement {
  const total = segments.reduce((s, x) => s + x.value, 0)
  const r = 52
  const circumference = 2 * Math.PI * r
  let offset = 0
  const rings = segments.map((s) => {
    const length = total > 0 ? (s.value / total) * circumference : 0
    const ring = svg('circle', { cx: 70, cy: 70, r, class: `seg ${s.cls}`, 'stroke-dasharray': `${length} ${circumference - length}`, 'stroke-dashoffset': -offset })
    offset += length
    return ring
  })
  const chart = svg(
    'svg',
    { viewBox: '0 0 140 140', class: 'donut', role: 'img', 'aria-label': caption },
    svg('circle', { cx: 70, cy: 70, r, class: 'seg track' }),
    ...rings,
    svg('text', { x: 70, y: 68, class: 'donut-figure' }, centre),
    svg('text', { x: 70, y: 86, class: 'donut-caption' }, caption),
  )
  return h('div', { class: 'donut-box' }, chart, legend(segments, total, format))
}

/** The colours' meanings; with format, each part's value and share too. */
export function legend(segments: Segment[], total: number, format?: (v: number) => string): HTMLElement {
  return h(
    'ul',
    { class: `legend ${format ? '' : 'key'}` },
    ...segments.map((s) =>
      h(
        'li',
        {},
        h('span', { class: `swatch ${s.cls}` }),
        h('span', { class: 'legend-label' }, s.label),
        format ? h('span', { class: 'legend-value' }, format(s.value), total > 0 ? h('small', {}, ` ${Math.round((s.value / total) * 100)}%`) : null) : null,
      ),
    ),
  )
}

/** One bar split into parts of a whole (the rest of the track stays empty). */
export function splitBar(segments: Segment[], total: number, title?: string): HTMLElement {
  const parts = segments.filter((s) => s.value > 0)
  return h(
    'div',
    { class: 'bar', title },
    ...parts.map((s) => h('div', { class: `bar-part ${s.cls}`, style: `width: ${total > 0 ? Math.min(100, (s.value / total) * 100) : 0}%` })),
  )
}
