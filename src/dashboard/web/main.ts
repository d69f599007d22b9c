// The dashboard's shell: a page per tab (#/overview, #/nodes, #/files/PATH,
// #/volumes, #/jobs), each polling its part of /api every few seconds. Forms
// stay put while the data under them refreshes; a failed action shows the
// CLI's one-line error and changes nothing.
import type { FilesPage, JobsPage, JobStatus, NodesPage, Overview, ServiceStatus, TaskLog, VolumesPage } from '../model.js'
import { joinPath } from '../model.js'
import { ApiFailure, getJson, h, postJson } from './dom.js'
import { filesPage, jobsTable, localityChart, nodesPage, overviewPage, servicesTable, volumesPage, type JobActions } from './pages.js'

const POLL_MS = 2000

interface View {
  /** Built once when the tab opens: forms and the place the data goes. */
  mount(page: HTMLElement): void
  /** Fetches and shows the data; called again every POLL_MS. */
  refresh(): Promise<void>
}

const errorBox = document.getElementById('error')!
const noticeBox = document.getElementById('notice')!
const updated = document.getElementById('updated')!
const pageBox = document.getElementById('page')!

function showError(err: unknown): void {
  errorBox.textContent = err instanceof ApiFailure ? err.line : `loam: ${(err as Error).message}`
  errorBox.hidden = false
  noticeBox.hidden = true
}

function showNotice(text: string): void {
  errorBox.hidden = true
  noticeBox.textContent = text
  noticeBox.hidden = false
}

function clearMessages(): void {
  errorBox.hidden = true
  noticeBox.hidden = true
}

/** A view whose whole content is the API's answer, drawn again at each refresh. */
function simple<T>(path: string, draw: (data: T) => HTMLElement): View {
  let box: HTMLElement
  return {
    mount(page) {
      box = h('div', { class: 'data' })
      page.append(box)
    },
    async refresh() {
      box.replaceChildren(draw(await getJson<T>(path)))
    },
  }
}

function filesView(initialPath: string): View {
  let current = initialPath
  let box: HTMLElement
  const dirOf = (p: FilesPage): string => (p.kind === 'directory' ? p.path : p.path.replace(/\/[^/]*$/, '') || '/')
  let shownDir = '/'
  const draw = (p: FilesPage): void => {
    shownDir = dirOf(p)
    uploadDir.textContent = shownDir
    box.replaceChildren(filesPage(p, (path) => void open(path)))
  }
  /** Goes to path only once it is known to exist: an unknown path shows the error and leaves the page as it was. */
  const open = async (path: string): Promise<void> => {
    try {
      const p = await getJson<FilesPage>('/api/files', { path })
      clearMessages()
      current = path
      history.replaceState(null, '', `#/files${path === '/' ? '/' : path}`)
      draw(p)
    } catch (err) {
      showError(err)
    }
  }
  const goInput = h('input', { type: 'text', name: 'path', placeholder: '/path/to/dir/or/file', 'aria-label': 'path' })
  const fileInput = h('input', { type: 'file', name: 'file', id: 'upload-file' })
  const uploadDir = h('span', { class: 'mono' }, '/')
  const upload = async (ev: Event): Promise<void> => {
    ev.preventDefault()
    const file = fileInput.files?.[0]
    if (!file) return showError(new Error('choose a file to upload first'))
    const target = joinPath(shownDir, file.name)
    try {
      await postJson<FilesPage>('/api/upload', { path: target }, file)
      showNotice(`Uploaded ${target} (${file.size} bytes)`)
      fileInput.value = ''
      await refresh()
    } catch (err) {
      showError(err)
    }
  }
  const refresh = async (): Promise<void> => draw(await getJson<FilesPage>('/api/files', { path: current }))
  return {
    mount(page) {
      page.append(
        h(
          'div',
          { class: 'toolbar' },
          h('form', { class: 'inline', onsubmit: (ev: Event) => (ev.preventDefault(), void open(goInput.value.trim() || '/')) }, goInput, h('button', { type: 'submit' }, 'Go')),
          h('form', { class: 'inline', id: 'upload', onsubmit: (ev: Event) => void upload(ev) }, h('label', {}, 'Upload into ', uploadDir), fileInput, h('button', { type: 'submit' }, 'Upload')),
        ),
      )
      box = h('div', { class: 'data' })
      page.append(box)
    },
    refresh,
  }
}

function jobsView(): View {
  let box: HTMLElement
  let chartBox: HTMLElement
  let last: JobsPage | undefined
  /** The log open below the tables: read again at every refresh, as `loam logs --follow` would. */
  let logShown: { task: string; stream: 'stdout' | 'stderr' } | undefined
  const readLog = async (): Promise<void> => {
    if (!logShown) return
    const { task, stream } = logShown
    const log = await getJson<TaskLog>('/api/logs', { task, stream })
    if (logShown?.task !== task || logShown.stream !== stream) return
    logTitle.textContent = `${stream} of ${task}`
    logText.textContent = (log.skippedBytes > 0 ? `… ${log.skippedBytes} bytes before this\n` : '') + (log.text || '(no output yet)')
  }
  const logTitle = h('h2', {}, 'Log')
  const logText = h('pre', { id: 'log' })
  const closeLog = (): void => {
    logShown = undefined
    logCard.hidden = true
  }
  const logCard = h('section', { class: 'card', id: 'log-card', hidden: true }, logTitle, logText, h('button', { class: 'small', onclick: closeLog }, 'Close'))
  const spec = h('textarea', { id: 'spec', rows: 9, spellcheck: 'false', placeholder: '{\n  "id": "hello",\n  "cmd": "echo hello from $LOAM_TASK_ID",\n  "cpus": 0.1,\n  "mem": 32,\n  "instances": 2\n}' })
  const actions: JobActions = {
    selected: null,
    select(id) {
      actions.selected = id
      if (last) draw(last)
    },
    kill(id) {
      postJson<JobStatus>('/api/jobs/kill', { id }).then(() => (showNotice(`Killed job ${id}`), refresh()), showError)
    },
    scale(id, instances) {
      postJson<ServiceStatus>('/api/services/scale', { id, instances }).then((s) => (showNotice(`Service ${id} scaled to ${s.instances}`), refresh()), showError)
    },
    remove(id) {
      postJson<ServiceStatus>('/api/services/remove', { id }).then(() => (showNotice(`Stopping service ${id}`), refresh()), showError)
    },
    showLog(task, stream) {
      logShown = { task, stream }
      readLog().then(() => {
        logCard.hidden = false
        logCard.scrollIntoView({ block: 'nearest' })
      }, showError)
    },
  }
  const draw = (p: JobsPage): void => {
    last = p
    // Someone typing a service's instance count keeps the field: this refresh waits for the next.
    if (document.activeElement instanceof HTMLInputElement && box.contains(document.activeElement)) return
    chartBox.replaceChildren(localityChart(p))
    box.replaceChildren(jobsTable(p, actions), servicesTable(p, actions))
  }
  const refresh = async (): Promise<void> => {
    draw(await getJson<JobsPage>('/api/jobs'))
    // A log that cannot be read now (its agent gone) keeps what it showed.
    await readLog().catch(() => undefined)
  }
  /** The spec box serves both: the button pressed says whether it is a job or a service. */
  const submit = async (ev: SubmitEvent): Promise<void> => {
    ev.preventDefault()
    const asService = (ev.submitter as HTMLButtonElement | null)?.value === 'service'
    try {
      if (asService) {
        const svc = await postJson<ServiceStatus>('/api/services', {}, spec.value)
        showNotice(`Deployed service ${svc.id}: ${svc.instances} instances`)
        actions.selected = `service:${svc.id}`
      } else {
        const job = await postJson<JobStatus>('/api/jobs', {}, spec.value)
        showNotice(`Submitted job ${job.id}: ${job.tasks.length} tasks`)
        actions.selected = job.id
      }
      await refresh()
    } catch (err) {
      showError(err)
    }
  }
  return {
    mount(page) {
      chartBox = h('div', {})
      box = h('div', { class: 'data' })
      page.append(
        h(
          'div',
          { class: 'grid two' },
          h(
            'section',
            { class: 'card' },
            h('h2', {}, 'Run a job or deploy a service'),
            h(
              'form',
              { id: 'run-job', onsubmit: (ev: Event) => void submit(ev as SubmitEvent) },
              spec,
              h('div', { class: 'row' }, h('span', { class: 'muted' }, 'A JSON spec, as for loam job run or loam service deploy'), h('span', {}, h('button', { type: 'submit', value: 'job', id: 'run' }, 'Run job'), ' ', h('button', { type: 'submit', value: 'service', id: 'deploy' }, 'Deploy service'))),
            ),
          ),
          chartBox,
        ),
        box,
        logCard,
      )
    },
    refresh,
  }
}

const TABS: Record<string, (rest: string) => View> = {
  overview: () => simple<Overview>('/api/overview', overviewPage),
  nodes: () => simple<NodesPage>('/api/nodes', nodesPage),
  files: (rest) => filesView(rest || '/'),
  volumes: () => simple<VolumesPage>('/api/volumes', volumesPage),
  jobs: () => jobsView(),
}

let generation = 0
let lastOkMs = 0

/** Opens the tab the address names, and keeps it fresh until another opens. */
function route(): void {
  const m = /^#\/([a-z]+)(\/.*)?$/.exec(location.hash)
  const tab = m && TABS[m[1]!] ? m[1]! : 'overview'
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav.tabs a')) a.classList.toggle('active', a.dataset.tab === tab)
  const view = TABS[tab]!(decodeURIComponent(m?.[2] ?? ''))
  const mine = ++generation
  clearMessages()
  pageBox.replaceChildren()
  pageBox.dataset.tab = tab
  view.mount(pageBox)
  const tick = async (): Promise<void> => {
    if (mine !== generation) return
    try {
      await view.refresh()
      lastOkMs = Date.now()
      updated.classList.remove('stale')
      showAge()
    } catch (err) {
      // The first load's failure is the page's error; later ones only mark the data stale.
      if (lastOkMs === 0 || pageBox.querySelector('.data')?.childElementCount === 0) showError(err)
      updated.classList.add('stale')
      updated.title = err instanceof Error ? err.message : String(err)
    }
    if (mine === generation) setTimeout(() => void tick(), POLL_MS)
  }
  void tick()
}

function showAge(): void {
  updated.textContent = lastOkMs === 0 ? 'loading…' : `updated ${Math.max(0, Math.round((Date.now() - lastOkMs) / 1000))}s ago`
}
setInterval(showAge, 500)

// Links within the files tab rewrite the address with replaceState, which fires no hashchange: every hashchange is a new page.
window.addEventListener('hashchange', route)
route()
