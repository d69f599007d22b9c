// One function a page: given the API's answer, the page's content. Forms live
// in main.ts (they stay put while the data under them refreshes).
import { formatBytes, formatDuration } from '../../common/format.js'
import { pathCrumbs, type FileStatusJson, type FilesPage, type InstanceStatus, type JobStatus, type JobsPage, type ServiceStatus, type NodesPage, type Overview, type SchedulerLink, type TaskStatus, type VolumesPage } from '../model.js'
import { donut, legend, splitBar, type Segment } from './charts.js'
import { ago, h } from './dom.js'

export interface JobActions {
  /** The job or service whose tasks are open. */
  selected: string | null
  select(id: string | null): void
  kill(id: string): void
  scale(id: string, instances: string): void
  remove(id: string): void
  showLog(task: string, stream: 'stdout' | 'stderr'): void
}

const pct = (part: number, whole: number): string => (whole > 0 ? `${Math.round((part / whole) * 100)}%` : '–')

function card(title: string, ...body: Array<Node | string | null>): HTMLElement {
  return h('section', { class: 'card' }, h('h2', {}, title), ...body)
}

function stat(label: string, value: string | number, tone: '' | 'good' | 'warn' | 'bad' = ''): HTMLElement {
  return h('div', { class: `stat ${tone}` }, h('div', { class: 'stat-value' }, String(value)), h('div', { class: 'stat-label' }, label))
}

function pill(text: string): HTMLElement {
  return h('span', { class: `pill pill-${text.toLowerCase().replace(/_/g, '-')}` }, text.replace(/_/g, ' ').toLowerCase())
}

function table(headers: string[], rows: HTMLElement[], empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', {}, x)))), h('tbody', {}, ...rows))
}

function schedulerNote(link: SchedulerLink): HTMLElement | null {
  return link.error === null ? null : h('p', { class: 'note warn' }, `Scheduler ${link.address ?? ''} unavailable: ${link.error}`)
}

/** A node's disk: Loam's blocks, what else is on the disk, and what is free. */
export function capacitySegments(capacityBytes: number, usedBytes: number, remainingBytes: number): Segment[] {
  return [
    { label: 'Used by Loam', value: usedBytes, cls: 'c-used' },
    { label: 'Used by other files', value: Math.max(0, capacityBytes - usedBytes - remainingBytes), cls: 'c-other' },
    { label: 'Free', value: remainingBytes, cls: 'c-free' },
  ]
}

export function overviewPage(o: Overview): HTMLElement {
  const n = o.namenode
  const health = n.missingBlocks > 0 || n.corruptBlocks > 0 ? 'bad' : n.underReplicatedBlocks > 0 ? 'warn' : 'good'
  const capacity = card(
    'Capacity',
    donut(capacitySegments(n.capacityBytes, n.usedBytes, n.remainingBytes), pct(n.capacityBytes - n.remainingBytes, n.capacityBytes), 'of disk in use', formatBytes),
    h('p', { class: 'muted' }, `${formatBytes(n.capacityBytes)} on ${n.nodes.live} live datanodes; ${formatBytes(n.remainingBytes)} free for blocks`),
  )
  const nodes = card(
    'Datanodes',
    h('div', { class: 'stats' }, stat('live', n.nodes.live, n.nodes.live > 0 ? 'good' : 'bad'), stat('dead', n.nodes.dead, n.nodes.dead > 0 ? 'bad' : ''), stat('decommissioning', n.nodes.decommissioning, n.nodes.decommissioning > 0 ? 'warn' : ''), stat('decommissioned', n.nodes.decommissioned)),
  )
  const namespace = card('Namespace', h('div', { class: 'stats' }, stat('files', n.files), stat('directories', n.directories), stat('blocks', n.blocks), n.symlinks > 0 ? stat('symlinks', n.symlinks) : null))
  const blocks = card(
    'Block health',
    h(
      'div',
      { class: 'stats' },
      stat('under-replicated', n.underReplicatedBlocks, n.underReplicatedBlocks > 0 ? 'warn' : 'good'),
      stat('corrupt', n.corruptBlocks, n.corruptBlocks > 0 ? 'bad' : 'good'),
      stat('missing', n.missingBlocks, n.missingBlocks > 0 ? 'bad' : 'good'),
      stat('copies in flight', n.pendingCopies),
    ),
    h('p', { class: `note ${health}` }, health === 'good' ? 'Every block has its replicas.' : health === 'warn' ? 'Some blocks are short of replicas; the namenode is copying them.' : 'Some blocks have no healthy replica: run loam fsck to see which files.'),
  )
  const namenode = card(
    'Namenode',
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Safe mode'),
      h('dd', {}, n.safemode ? h('span', { class: 'pill pill-warn' }, `on: ${n.reportedBlocks} of ${n.blocks} blocks reported`) : h('span', { class: 'pill pill-live' }, 'off')),
      h('dt', {}, 'Uptime'),
      h('dd', {}, formatDuration(n.uptimeMs)),
      h('dt', {}, 'Version'),
      h('dd', {}, n.version),
      h('dt', {}, 'Cluster'),
      h('dd', { class: 'mono' }, n.clusterId),
    ),
  )
  const c = o.cluster
  const agents = c?.agents ?? []
  const sum = (f: (a: (typeof agents)[number]) => number): number => agents.reduce((s, a) => s + f(a), 0)
  const running = sum((a) => a.tasks.length)
  const scheduler = card(
    'Scheduler',
    c
      ? h(
          'div',
          {},
          h('div', { class: 'stats' }, stat('agents', agents.length), stat('running tasks', running), stat('jobs running', c.jobs.filter((j) => j.state === 'RUNNING').length), stat('jobs done', c.jobs.filter((j) => j.state !== 'RUNNING').length)),
          h('div', { class: 'usage' }, h('span', {}, `CPUs ${sum((a) => a.usedCpus).toFixed(1)} of ${sum((a) => a.cpus)}`), splitBar([{ label: 'cpus', value: sum((a) => a.usedCpus), cls: 'c-task' }], sum((a) => a.cpus))),
          h('div', { class: 'usage' }, h('span', {}, `Memory ${formatBytes(sum((a) => a.usedMemMib) * 1048576)} of ${formatBytes(sum((a) => a.memMib) * 1048576)}`), splitBar([{ label: 'mem', value: sum((a) => a.usedMemMib), cls: 'c-task' }], sum((a) => a.memMib))),
          h('p', { class: 'muted' }, `at ${o.scheduler.address}`),
        )
      : schedulerNote(o.scheduler),
  )
  return h('div', { class: 'grid' }, capacity, nodes, namespace, blocks, namenode, scheduler)
}

export function nodesPage(p: NodesPage): HTMLElement {
  const rows = p.nodes.map((n) => {
    const a = n.agent
    return h(
      'tr',
      { 'data-node': n.id },
      h('td', {}, h('strong', {}, n.id), h('div', { class: 'muted mono' }, n.address)),
      h('td', {}, n.rack),
      h('td', {}, pill(n.state)),
      h('td', {}, ago(n.lastHeartbeatMs, p.nowMs)),
      h('td', { class: 'wide' }, splitBar(capacitySegments(n.capacityBytes, n.usedBytes, n.remainingBytes), n.capacityBytes), h('div', { class: 'muted' }, `${formatBytes(n.usedBytes)} Loam · ${formatBytes(n.remainingBytes)} free of ${formatBytes(n.capacityBytes)}`)),
      h('td', { class: 'num' }, n.blocks),
      h('td', {}, a ? `${a.usedCpus.toFixed(1)} / ${a.cpus}` : '–'),
      h('td', {}, a ? `${formatBytes(a.usedMemMib * 1048576)} / ${formatBytes(a.memMib * 1048576)}` : '–'),
      h('td', {}, a ? (a.tasks.length > 0 ? h('div', { class: 'chips' }, ...a.tasks.map((t) => h('span', { class: 'chip' }, t))) : h('span', { class: 'muted' }, 'none')) : h('span', { class: 'muted' }, 'no agent')),
    )
  })
  return h(
    'div',
    {},
    schedulerNote(p.scheduler),
    card('Datanodes and agents', table(['Node', 'Rack', 'State', 'Last heartbeat', 'Capacity', 'Replicas', 'CPUs in use', 'Memory in use', 'Running tasks'], rows, 'No datanode has registered yet.'), legend(capacitySegments(0, 0, 0), 0)),
    p.otherAgents.length > 0 ? card('Agents without a datanode', h('div', { class: 'chips' }, ...p.otherAgents.map((a) => h('span', { class: 'chip' }, `${a.id} (${a.rack}): ${a.tasks.length} tasks`)))) : null,
  )
}

function fileRow(e: FileStatusJson, open: (path: string) => void): HTMLElement {
  const link = h('a', { href: `#/files${e.path}`, class: e.type === 'directory' ? 'dir' : 'file', onclick: (ev: Event) => (ev.preventDefault(), open(e.path)) }, e.type === 'directory' ? `${e.name}/` : e.name)
  return h(
    'tr',
    {},
    h('td', {}, link),
    h('td', { class: 'num' }, e.type === 'directory' ? '–' : formatBytes(e.length)),
    h('td', { class: 'num' }, e.type === 'file' ? e.replication : '–'),
    h('td', { class: 'num' }, e.type === 'file' ? e.blocks : '–'),
    h('td', {}, `${e.owner}:${e.group}`),
    h('td', { class: 'mono' }, e.mode),
    h('td', {}, new Date(e.mtimeMs).toLocaleString()),
  )
}

export function filesPage(p: FilesPage, open: (path: string) => void): HTMLElement {
  const crumbs = h('nav', { class: 'crumbs' }, ...pathCrumbs(p.path).map(([name, path]) => h('a', { href: `#/files${path}`, onclick: (ev: Event) => (ev.preventDefault(), open(path)) }, name)))
  if (p.kind === 'directory') {
    return h(
      'div',
      {},
      crumbs,
      card(
        `${p.entries.length}${p.truncated ? '+' : ''} entries`,
        table(['Name', 'Size', 'Replication', 'Blocks', 'Owner', 'Mode', 'Modified'], p.entries.map((e) => fileRow(e, open)), 'This directory is empty.'),
        p.truncated ? h('p', { class: 'muted' }, 'Only the first entries are shown; use loam fs ls for the rest.') : null,
      ),
    )
  }
  const f = p.file
  const blockRows = p.blocks.map((b, i) =>
    h(
      'tr',
      { 'data-block': b.id },
      h('td', { class: 'num' }, i),
      h('td', { class: 'mono' }, `${b.id}`, h('span', { class: 'muted' }, ` gen ${b.genStamp}`)),
      h('td', { class: 'num' }, formatBytes(b.offsetBytes)),
      h('td', { class: 'num' }, formatBytes(b.lengthBytes)),
      h('td', {}, pill(b.health)),
      h('td', {}, h('div', { class: 'chips' }, ...b.replicas.map((r) => h('span', { class: 'chip replica' }, r.node, h('small', {}, ` ${r.rack}`))), ...b.corrupt.map((r) => h('span', { class: 'chip corrupt', title: 'corrupt replica' }, r.node, h('small', {}, ' corrupt'))))),
    ),
  )
  return h(
    'div',
    {},
    crumbs,
    card(
      f.name,
      h(
        'dl',
        { class: 'facts wide' },
        h('dt', {}, 'Size'),
        h('dd', {}, `${formatBytes(f.length)} (${f.length} bytes)`),
        h('dt', {}, 'Replication'),
        h('dd', {}, f.replication),
        h('dt', {}, 'Block size'),
        h('dd', {}, formatBytes(f.blockSize)),
        h('dt', {}, 'Owner'),
        h('dd', {}, `${f.owner}:${f.group} ${f.mode}`),
        h('dt', {}, 'Modified'),
        h('dd', {}, new Date(f.mtimeMs).toLocaleString()),
        f.openForWrite ? h('dt', {}, 'Open') : null,
        f.openForWrite ? h('dd', {}, 'being written') : null,
      ),
      h('a', { class: 'button', href: `/api/download?path=${encodeURIComponent(f.path)}`, download: f.name, id: 'download' }, 'Download'),
    ),
    card(`Blocks (${p.blocks.length})`, table(['#', 'Block', 'Offset', 'Length', 'Health', 'Replicas (node, rack)'], blockRows, 'This file has no blocks (it is empty).')),
  )
}

export function volumesPage(p: VolumesPage): HTMLElement {
  if (p.volumes.length === 0) return card('Volumes', h('p', { class: 'empty' }, 'No volumes yet: loam volume create NAME --size SIZE'))
  return h(
    'div',
    { class: 'grid two' },
    ...p.volumes.map((v) => {
      const most = Math.max(1, ...v.nodes.map((n) => n.bytes))
      return h(
        'section',
        { class: 'card volume', 'data-volume': v.name },
        h('h2', {}, v.name, ' ', pill(v.state)),
        h('div', { class: 'usage' }, h('span', {}, `${formatBytes(v.usedBytes)} of ${formatBytes(v.sizeBytes)} used (${pct(v.usedBytes, v.sizeBytes)})`), splitBar([{ label: 'used', value: v.usedBytes, cls: v.usedBytes >= v.sizeBytes ? 'c-bad' : 'c-used' }], v.sizeBytes)),
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Path'),
          h('dd', { class: 'mono' }, v.path),
          h('dt', {}, 'Replication'),
          h('dd', {}, v.replication, v.replication > p.liveNodes ? h('span', { class: 'pill pill-warn' }, ` above ${p.liveNodes} live nodes`) : null),
          h('dt', {}, 'Attached'),
          h('dd', {}, v.attachedNode ? `${v.attachedNode}, epoch ${v.epoch}${v.holderAlive ? '' : ' (node dead)'}` : `detached (epoch ${v.epoch})`),
          h('dt', {}, 'Owner'),
          h('dd', {}, v.owner),
          h('dt', {}, 'Created'),
          h('dd', {}, new Date(v.createdMs).toLocaleString()),
        ),
        h('h3', {}, 'Replica bytes per node'),
        v.nodes.length === 0
          ? h('p', { class: 'muted' }, 'No data yet.')
          : h('div', { class: 'node-bytes' }, ...v.nodes.flatMap((n) => [h('span', {}, n.node), splitBar([{ label: n.node, value: n.bytes, cls: 'c-used' }], most), h('span', { class: 'num' }, formatBytes(n.bytes))])),
        h('h3', {}, `Snapshots (${v.snapshots.length})`),
        v.snapshots.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('ul', { class: 'plain' }, ...v.snapshots.map((s) => h('li', {}, h('strong', {}, s.name), ` · ${formatBytes(s.usedBytes)} · ${new Date(s.createdMs).toLocaleString()}`))),
      )
    }),
  )
}

const LOCALITY_CLASS: Record<string, string> = { NODE_LOCAL: 'c-node', RACK_LOCAL: 'c-rack', ANY: 'c-any' }

export function localityChart(p: JobsPage): HTMLElement {
  const segments = p.locality.map((l) => ({ label: l.locality.replace('_', ' ').toLowerCase(), value: l.tasks, cls: LOCALITY_CLASS[l.locality]! }))
  const placed = segments.reduce((s, x) => s + x.value, 0)
  return card('Task locality', splitBar(segments, placed, 'tasks by the locality they got'), legend(segments, placed, (v) => `${v} tasks`), h('p', { class: 'muted' }, `${placed} tasks placed, over ${p.jobs.length} jobs and ${p.services.length} services`))
}

function taskRow(t: TaskStatus, actions: JobActions): HTMLElement {
  return h(
    'tr',
    { 'data-task': t.id },
    h('td', { class: 'mono' }, t.id),
    h('td', {}, pill(t.state)),
    h('td', {}, t.node ?? '–'),
    h('td', {}, t.locality ? pill(t.locality) : '–'),
    h('td', { class: 'num' }, t.attempts),
    h('td', { class: 'num' }, t.exitCode ?? '–'),
    h('td', { class: 'mono small' }, t.input ? `${t.input.path} @${formatBytes(t.input.offset)} +${formatBytes(t.input.length)}` : '–', t.message ? h('div', { class: 'muted' }, t.message) : null),
    logButtons(t, actions),
  )
}

function logButtons(t: { id: string; attempts: number }, actions: JobActions): HTMLElement {
  if (t.attempts === 0) return h('td', {})
  return h('td', { class: 'nowrap' }, h('button', { class: 'small', onclick: () => actions.showLog(t.id, 'stdout') }, 'stdout'), ' ', h('button', { class: 'small', onclick: () => actions.showLog(t.id, 'stderr') }, 'stderr'))
}

function instanceRow(i: InstanceStatus, actions: JobActions): HTMLElement {
  return h(
    'tr',
    { 'data-task': i.id },
    h('td', { class: 'mono' }, i.id),
    h('td', {}, pill(i.state)),
    h('td', {}, i.health ? pill(i.health) : '–'),
    h('td', {}, i.node ?? '–'),
    h('td', {}, i.locality ? pill(i.locality) : '–'),
    h('td', { class: 'num' }, i.restarts),
    h('td', { class: 'mono small' }, i.volumes.join(', ') || '–', i.message ? h('div', { class: 'muted' }, i.message) : null),
    logButtons(i, actions),
  )
}

function serviceRows(svc: ServiceStatus, actions: JobActions): HTMLElement[] {
  const running = svc.tasks.filter((t) => t.state === 'RUNNING').length
  const open = actions.selected === `service:${svc.id}`
  const scaleInput = h('input', { type: 'text', class: 'count', value: svc.instances, 'aria-label': `instances of ${svc.id}`, onclick: (e: Event) => e.stopPropagation() })
  const row = h(
    'tr',
    { class: `job ${open ? 'open' : ''}`, 'data-service': svc.id, onclick: () => actions.select(open ? null : `service:${svc.id}`) },
    h('td', {}, h('span', { class: 'caret' }, open ? '▾' : '▸'), ' ', h('strong', {}, svc.id)),
    h('td', {}, pill(svc.state)),
    h('td', { class: 'wide' }, splitBar([{ label: 'running', value: running, cls: 'c-node' }], Math.max(svc.instances, running)), h('div', { class: 'muted' }, `${running} of ${svc.instances} instances running`)),
    h(
      'td',
      { class: 'nowrap' },
      svc.state === 'RUNNING'
        ? h('form', { class: 'inline scale', onclick: (e: Event) => e.stopPropagation(), onsubmit: (e: Event) => (e.preventDefault(), actions.scale(svc.id, scaleInput.value.trim())) }, scaleInput, h('button', { type: 'submit', class: 'small' }, 'Scale'), h('button', { type: 'button', class: 'danger small', onclick: () => actions.remove(svc.id) }, 'Stop'))
        : null,
    ),
  )
  if (!open) return [row]
  return [row, h('tr', { class: 'detail' }, h('td', { colspan: 4 }, table(['Instance', 'State', 'Health', 'Node', 'Locality', 'Restarts', 'Volumes', 'Log'], svc.tasks.map((i) => instanceRow(i, actions)), 'No instances.')))]
}

export function servicesTable(p: JobsPage, actions: JobActions): HTMLElement {
  return card('Services', table(['Service', 'State', 'Instances', ''], p.services.flatMap((s) => serviceRows(s, actions)), 'No services yet: paste a spec above and press Deploy service.'))
}

function jobRow(j: JobStatus, actions: JobActions): HTMLElement[] {
  const done = j.tasks.filter((t) => t.state === 'FINISHED').length
  const open = actions.selected === j.id
  const row = h(
    'tr',
    { class: `job ${open ? 'open' : ''}`, 'data-job': j.id, onclick: () => actions.select(open ? null : j.id) },
    h('td', {}, h('span', { class: 'caret' }, open ? '▾' : '▸'), ' ', h('strong', {}, j.id)),
    h('td', {}, pill(j.state)),
    h('td', {}, j.role),
    h('td', { class: 'wide' }, splitBar([{ label: 'finished', value: done, cls: 'c-node' }, { label: 'running', value: j.tasks.filter((t) => t.state === 'RUNNING').length, cls: 'c-rack' }], j.tasks.length), h('div', { class: 'muted' }, `${done} of ${j.tasks.length} finished`)),
    h('td', {}, j.state === 'RUNNING' ? h('button', { class: 'danger small', onclick: (e: Event) => (e.stopPropagation(), actions.kill(j.id)) }, 'Kill') : null),
  )
  if (!open) return [row]
  return [row, h('tr', { class: 'detail' }, h('td', { colspan: 5 }, table(['Task', 'State', 'Node', 'Locality', 'Attempts', 'Exit', 'Input split', 'Log'], j.tasks.map((t) => taskRow(t, actions)), 'No tasks.')))]
}

export function jobsTable(p: JobsPage, actions: JobActions): HTMLElement {
  const jobs = [...p.jobs].sort((a, b) => Number(b.state === 'RUNNING') - Number(a.state === 'RUNNING') || a.id.localeCompare(b.id))
  return h('div', {}, schedulerNote(p.scheduler), card('Jobs', table(['Job', 'State', 'Role', 'Progress', ''], jobs.flatMap((j) => jobRow(j, actions)), 'No jobs yet: paste a spec above and press Run.')))
}
