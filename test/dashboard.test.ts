// The dashboard end to end: a real cluster with files, a volume holding data,
// a finished job and a running one, opened in headless Chromium; every page
// shows what the cluster holds (checked against the CLI's --json), files go up
// and down through the page, jobs run and are killed and services deployed,
// scaled and stopped from it, and bad input shows the CLI's own error line and
// changes nothing.
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import test from 'ava'
import type { Locator, Page } from 'playwright-core'
import { formatBytes } from '../src/common/format.js'
import type { AgentState, JobStatus, VolumeJson } from '../src/dashboard/model.js'
import { startCluster, waitFor, type TestCluster } from './helpers/cluster.js'
import { fsckJson, localTempDir, pattern, sha256 } from './helpers/data.js'
import { readAll } from './helpers/failures.js'
import { openBrowser, testOutputDir } from './helpers/browser.js'

async function mustLoam(c: TestCluster, args: string[], input?: Buffer): Promise<string> {
  const r = await c.loam(args, { input })
  if (r.code !== 0) throw new Error(`loam ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

/** What `loam ARGS --json` prints. */
async function loamJson<T>(c: TestCluster, args: string[]): Promise<T> {
  return JSON.parse(await mustLoam(c, [...args, '--json'])) as T
}

/** The line the CLI prints for a failing command (it must fail). */
async function cliError(c: TestCluster, args: string[], input?: Buffer): Promise<string> {
  const r = await c.loam(args, { input })
  if (r.code === 0) throw new Error(`loam ${args.join(' ')} succeeded; expected an error`)
  return r.stderr.trim()
}

/** The whole page, top to bottom, whatever part of it is scrolled into view. */
async function shoot(page: Page, dir: string, name: string): Promise<void> {
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true })
}

const literally = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Waits until the element's whole text is want (the page redraws every few seconds); fails saying what it shows instead. */
async function shows(loc: Locator, want: string): Promise<void> {
  const exactly = new RegExp(`^\\s*${literally(want)}\\s*$`)
  try {
    await loc.filter({ hasText: exactly }).waitFor({ timeout: 10_000 })
  } catch {
    throw new Error(`the page shows '${(await loc.first().textContent()) ?? '(nothing)'}' where '${want}' was expected`)
  }
}

/** A bar part's width, in percent of its track. */
async function barWidth(part: Locator): Promise<number> {
  const m = /width: ([\d.]+)%/.exec((await part.getAttribute('style')) ?? '')
  if (!m) throw new Error(`a bar part with no width: ${await part.getAttribute('style')}`)
  return Number(m[1])
}

/** Each task's row of an open job shows the node, the locality and the attempts `loam job status` reports. */
async function tasksMatch(page: Page, job: JobStatus): Promise<void> {
  for (const task of job.tasks) {
    const cells = page.locator(`tr[data-task="${task.id}"] > td`)
    await shows(cells.nth(2), task.node ?? '–')
    await shows(cells.nth(3), task.locality ? task.locality.replace(/_/g, ' ').toLowerCase() : '–')
    await shows(cells.nth(4), String(task.attempts))
  }
}

/** Does what act does, and returns the error line the page shows for it (a new one, not one left from before). */
async function errorAfter(page: Page, act: () => Promise<void>): Promise<string> {
  const before = (await page.locator('#error').isVisible()) ? await page.locator('#error').textContent() : null
  await act()
  await page.waitForFunction((old) => {
    const box = document.getElementById('error')!
    return !box.hidden && box.textContent !== old
  }, before)
  return (await page.locator('#error').textContent())?.trim() ?? ''
}

test('the dashboard shows the cluster as the CLI reports it, moves files both ways, runs and kills jobs, deploys, scales and stops a service, and answers bad input with the CLI\'s error', async (t) => {
  const c = await startCluster(t, { nodes: 3, racks: 2, blockSize: '1MiB', cpus: 2, localityWait: '1s' })
  const local = await localTempDir(t)
  const shots = await testOutputDir('dashboard')
  t.log(`screenshots: ${shots}`)

  // What the pages should show: a file of several blocks, a small one, a volume holding data attached to dn2,
  // a finished job, and a job that runs until it is killed from the page.
  const input = pattern(3 * 1024 * 1024 + 12345, 7)
  await writeFile(path.join(local, 'input.bin'), input)
  await mustLoam(c, ['fs', 'put', path.join(local, 'input.bin'), '/data/input.bin'])
  await writeFile(path.join(local, 'hello.txt'), 'hello\n')
  await mustLoam(c, ['fs', 'put', path.join(local, 'hello.txt'), '/data/logs/hello.txt'])
  await mustLoam(c, ['volume', 'create', 'pgdata', '--size', '64MiB', '--replication', '2'])
  // Written while detached (as a restore would be): its replicas give the page bytes per node to show.
  await writeFile(path.join(local, 'base.bin'), pattern(1.5 * 1024 * 1024, 5))
  await mustLoam(c, ['fs', 'put', path.join(local, 'base.bin'), '/volumes/pgdata/base.bin'])
  await mustLoam(c, ['volume', 'attach', 'pgdata', '--node', 'dn2'])
  await mustLoam(c, ['volume', 'snapshot', 'pgdata', 'first'])
  const spec = JSON.stringify({ id: 'count', cmd: 'wc -c', cpus: 0.5, mem: 64, input: '/data/input.bin' })
  await mustLoam(c, ['job', 'run', '-', '--wait'], Buffer.from(spec))
  await mustLoam(c, ['job', 'run', '-'], Buffer.from(JSON.stringify({ id: 'long', cmd: 'sleep 600', cpus: 1, mem: 64 })))
  await waitFor(async () => (await loamJson<JobStatus>(c, ['job', 'status', 'long'])).tasks.every((x) => x.state === 'RUNNING'), 30_000, 'the long job to run')

  const { page } = await openBrowser(t)
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  // A failing step leaves a picture of the page as it was.
  t.teardown(async () => {
    if (!t.passed) await shoot(page, shots, 'failed').catch(() => undefined)
  })
  const base = `http://${c.record.namenode.http}`
  // The API acts with the namenode's rights: without the cluster's dashboard token it answers nothing.
  for (const headers of [{}, { authorization: 'Bearer 0123456789' }, { cookie: 'loam_dashboard=nope' }] as Array<Record<string, string>>) {
    const denied = await fetch(`${base}/api/files?path=/data`, { headers })
    t.is(denied.status, 403)
    t.regex(((await denied.json()) as { error: { line: string } }).error.line, /needs the cluster's access token/)
  }
  t.is((await fetch(`${base}/api/upload?path=/data/sneaky`, { method: 'POST', body: 'x' })).status, 403)
  t.false((await c.client().exists('/data/sneaky')), 'a refused upload wrote nothing')
  // Opened once with its token (as `cluster up` prints it), the page keeps it as a cookie.
  t.regex(c.record.dashboard, /\/\?token=[0-9a-f]{40}$/)
  await page.goto(c.record.dashboard)

  // Overview: the live nodes, the namespace's counts (as fsck finds them, the snapshot's file included), safe mode off.
  await page.goto(`${base}/#/overview`)
  await page.locator('.card', { hasText: 'Datanodes' }).locator('.stat', { hasText: 'live' }).locator('.stat-value', { hasText: '3' }).waitFor()
  const namespace = page.locator('.card', { hasText: 'Namespace' })
  const everything = (await fsckJson(c, '/')).json
  await shows(namespace.locator('.stat', { hasText: 'files' }).locator('.stat-value'), String(everything.files))
  // A snapshot's files share their blocks with the live ones: fsck lists a block once a file, the namenode counts it once.
  await shows(namespace.locator('.stat', { hasText: 'blocks' }).locator('.stat-value'), String(new Set(everything.blocks.map((b) => b.id)).size))
  t.regex((await page.locator('.card', { hasText: 'Namenode' }).textContent()) ?? '', /Safe modeoff/)
  await page.locator('.card', { hasText: 'Scheduler' }).locator('.stat', { hasText: 'agents' }).locator('.stat-value', { hasText: '3' }).waitFor()
  await shoot(page, shots, '1-overview')

  // Nodes: each datanode, live, in its rack, with its replicas, and its agent's cpus, memory and tasks in use
  // as `loam job agents` reports them: the long job's task on its node.
  await page.goto(`${base}/#/nodes`)
  const report = await loamJson<{ datanodes: Array<{ id: string; rack: string; blocks: number }> }>(c, ['report'])
  const { agents } = await loamJson<{ agents: AgentState[] }>(c, ['job', 'agents'])
  const longNode = (await loamJson<JobStatus>(c, ['job', 'status', 'long'])).tasks[0]!.node
  for (const d of report.datanodes) {
    const row = page.locator(`tr[data-node="${d.id}"]`)
    await row.waitFor()
    const text = (await row.textContent()) ?? ''
    t.true(text.includes(d.rack) && text.includes('live'), `${d.id}: ${text}`)
    const agent = agents.find((a) => a.node === d.id)!
    const cells = row.locator('> td')
    await shows(cells.nth(5), String(d.blocks))
    await shows(cells.nth(6), `${agent.usedCpus.toFixed(1)} / ${agent.cpus}`)
    await shows(cells.nth(7), `${formatBytes(agent.usedMemMib * 1048576)} / ${formatBytes(agent.memMib * 1048576)}`)
    t.deepEqual(await row.locator('.chip').allTextContents(), agent.tasks)
    if (d.id === longNode) t.true(agent.usedCpus >= 1 && agent.tasks.includes('long.0'), JSON.stringify(agent))
  }
  await page.locator(`tr[data-node="${longNode}"] .chip`, { hasText: /^long\.0$/ }).waitFor()
  await shoot(page, shots, '2-nodes')

  // Files: the directory, then a file's blocks with the nodes that hold each replica.
  await page.goto(`${base}/#/files/data`)
  await page.locator('a.file', { hasText: 'input.bin' }).waitFor()
  await page.locator('a.dir', { hasText: 'logs/' }).waitFor()
  await shoot(page, shots, '3-files')
  await page.locator('a.file', { hasText: 'input.bin' }).click()
  const fsck = JSON.parse((await c.loam(['fsck', '/data/input.bin', '--json'])).stdout.toString()) as { blocks: Array<{ id: number; replicas: Array<{ node: string }> }> }
  t.is(fsck.blocks.length, 4)
  for (const b of fsck.blocks) {
    const row = page.locator(`tr[data-block="${b.id}"]`)
    await row.waitFor()
    const text = (await row.textContent()) ?? ''
    t.true(text.includes('healthy'), text)
    for (const r of b.replicas) t.true(text.includes(r.node), `block ${b.id} on ${r.node}: ${text}`)
  }
  await shoot(page, shots, '4-file-blocks')

  // Download through the page: the very bytes.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download').click()])
  t.is(sha256(await readFile((await download.path())!)), sha256(input))

  // Upload through the page into /data/logs.
  await page.goto(`${base}/#/files/data/logs`)
  await page.locator('a.file', { hasText: 'hello.txt' }).waitFor()
  const upload = pattern(1.5 * 1024 * 1024, 11)
  await page.setInputFiles('#upload-file', { name: 'up.bin', mimeType: 'application/octet-stream', buffer: upload })
  await page.locator('#upload button[type=submit]').click()
  await page.locator('#notice', { hasText: 'Uploaded /data/logs/up.bin' }).waitFor()
  await page.locator('a.file', { hasText: 'up.bin' }).waitFor()
  t.is(sha256(await readAll(c.client(), '/data/logs/up.bin')), sha256(upload))

  // An upload over an existing file: the CLI's line, and the file as it was.
  const putOver = await cliError(c, ['fs', 'put', path.join(local, 'input.bin'), '/data/logs/hello.txt'])
  await page.setInputFiles('#upload-file', { name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('overwritten\n') })
  t.is(await errorAfter(page, () => page.locator('#upload button[type=submit]').click()), putOver)
  t.is((await readAll(c.client(), '/data/logs/hello.txt')).toString(), 'hello\n')

  // An unknown path: the CLI's line, and the listing stays where it was.
  const lsMissing = await cliError(c, ['fs', 'ls', '/no/such/dir'])
  await page.locator('input[name=path]').fill('/no/such/dir')
  t.is(await errorAfter(page, () => page.locator('input[name=path]').press('Enter')), lsMissing)
  t.true(await page.locator('a.file', { hasText: 'hello.txt' }).isVisible())
  await shoot(page, shots, '5-files-error')

  // Volumes: size, used (figure and bar), replication, where it is attached and under which epoch, the bytes of
  // its replicas on each node, its snapshot; as `loam volume inspect` reports them.
  await page.goto(`${base}/#/volumes`)
  const vol = page.locator('[data-volume="pgdata"]')
  await vol.waitFor()
  const volText = (await vol.textContent()) ?? ''
  t.true(volText.includes('64.0 MiB') && volText.includes('dn2, epoch 1') && volText.includes('first'), volText)
  const inspected = await loamJson<VolumeJson>(c, ['volume', 'inspect', 'pgdata'])
  t.is(inspected.usedBytes, 1.5 * 1024 * 1024)
  t.is(inspected.nodes.reduce((n, x) => n + x.bytes, 0), inspected.usedBytes * inspected.replication, 'every block on as many nodes as the replication')
  t.true((await vol.locator('.usage > span').textContent())?.startsWith(`${formatBytes(inspected.usedBytes)} of ${formatBytes(inspected.sizeBytes)} used`))
  t.is(await barWidth(vol.locator('.usage .bar-part')), (inspected.usedBytes / inspected.sizeBytes) * 100)
  await shows(vol.locator('dt:text-is("Replication") + dd'), String(inspected.replication))
  const perNode = await vol.locator('.node-bytes > span').allTextContents()
  const pairs = Array.from({ length: perNode.length / 2 }, (_, i) => [perNode[2 * i], perNode[2 * i + 1]])
  t.deepEqual(pairs, inspected.nodes.map((n) => [n.node, formatBytes(n.bytes)]))
  const most = Math.max(...inspected.nodes.map((n) => n.bytes))
  const bars = vol.locator('.node-bytes .bar-part')
  for (const [i, n] of inspected.nodes.entries()) t.is(await barWidth(bars.nth(i)), (n.bytes / most) * 100, n.node)
  await shoot(page, shots, '6-volumes')

  // Jobs: the finished job and the running one; the finished one's tasks with the node, locality and attempts
  // `loam job status` reports, and the locality chart counting every task the scheduler placed.
  await page.goto(`${base}/#/jobs`)
  await page.locator('tr[data-job="count"] .pill-finished').waitFor()
  await page.locator('tr[data-job="long"] .pill-running').waitFor()
  await page.locator('tr[data-job="count"]').click()
  await tasksMatch(page, await loamJson<JobStatus>(c, ['job', 'status', 'count']))
  const jobs = await Promise.all((await loamJson<Array<{ id: string }>>(c, ['job', 'ls'])).map((j) => loamJson<JobStatus>(c, ['job', 'status', j.id])))
  const services = await loamJson<unknown[]>(c, ['service', 'ls'])
  t.deepEqual(services, [])
  const placed = jobs.flatMap((j) => j.tasks).filter((x) => x.locality !== null)
  t.is(placed.length, 5)
  const chart = page.locator('.card', { hasText: 'Task locality' })
  for (const locality of ['NODE_LOCAL', 'RACK_LOCAL', 'ANY']) {
    const n = placed.filter((x) => x.locality === locality).length
    const item = chart.locator('li', { has: page.locator('.legend-label', { hasText: new RegExp(`^${locality.replace('_', ' ').toLowerCase()}$`) }) })
    await shows(item.locator('.legend-value'), `${n} tasks ${Math.round((n / placed.length) * 100)}%`)
  }
  await shows(chart.locator('p.muted'), `${placed.length} tasks placed, over ${jobs.length} jobs and 0 services`)
  const jobsBefore = await page.locator('tr.job').count()
  const badSpec = '{"id": "broken", "cmd": '
  const specError = await cliError(c, ['job', 'run', '-'], Buffer.from(badSpec))
  await page.locator('#spec').fill(badSpec)
  t.is(await errorAfter(page, () => page.locator('#run').click()), specError)
  t.is(await page.locator('tr.job').count(), jobsBefore)

  await page.locator('#spec').fill(JSON.stringify({ id: 'from-page', cmd: 'echo made by the page $LOAM_TASK_INDEX', cpus: 0.1, mem: 16, instances: 2 }, null, 2))
  await page.locator('#run').click()
  await page.locator('#notice', { hasText: 'Submitted job from-page' }).waitFor()
  await page.locator('tr[data-job="from-page"] .pill-finished').waitFor({ timeout: 60_000 })
  await tasksMatch(page, await loamJson<JobStatus>(c, ['job', 'status', 'from-page']))
  await page.locator('tr[data-task="from-page.1"]').locator('button', { hasText: 'stdout' }).click()
  await page.locator('#log', { hasText: 'made by the page 1' }).waitFor()

  // Kill from the page: the scheduler ends the job KILLED, its task stops and frees its node, and the page says so.
  await page.locator('tr[data-job="long"] button', { hasText: 'Kill' }).click()
  await page.locator('#notice', { hasText: 'Killed job long' }).waitFor()
  await waitFor(async () => {
    const long = await loamJson<JobStatus>(c, ['job', 'status', 'long'])
    return long.state === 'KILLED' && long.tasks.every((x) => x.state === 'KILLED')
  }, 30_000, 'the long job to be KILLED')
  await waitFor(async () => (await loamJson<{ agents: AgentState[] }>(c, ['job', 'agents'])).agents.every((a) => !a.tasks.includes('long.0')), 30_000, 'the long task to stop')
  await page.locator('tr[data-job="long"] .pill-killed').waitFor()
  t.is(await page.locator('tr[data-job="long"] button', { hasText: 'Kill' }).count(), 0)
  await shoot(page, shots, '7-jobs')

  // A service deployed from the page, scaled to two instances, then stopped.
  await page.locator('#spec').fill(JSON.stringify({ id: 'web', cmd: 'while true; do echo serving $LOAM_TASK_INDEX; sleep 1; done', cpus: 0.1, mem: 16, instances: 1 }, null, 2))
  await page.locator('#deploy').click()
  await page.locator('#notice', { hasText: 'Deployed service web' }).waitFor()
  await page.locator('tr[data-service="web"]', { hasText: '1 of 1 instances running' }).waitFor({ timeout: 60_000 })
  const scaleTo = async (n: string): Promise<void> => {
    await page.locator('tr[data-service="web"] input.count').fill(n)
    await page.locator('tr[data-service="web"] button', { hasText: 'Scale' }).click()
  }
  const scaleError = await cliError(c, ['service', 'scale', 'web', 'two'])
  t.is(await errorAfter(page, () => scaleTo('two')), scaleError)
  await scaleTo('2')
  await page.locator('tr[data-service="web"]', { hasText: '2 of 2 instances running' }).waitFor({ timeout: 60_000 })
  t.is((JSON.parse(await mustLoam(c, ['service', 'status', 'web', '--json'])) as { instances: number }).instances, 2)
  await page.locator('tr[data-task="web.1"]').locator('button', { hasText: 'stdout' }).click()
  await page.locator('#log', { hasText: 'serving 1' }).waitFor()
  await shoot(page, shots, '8-services')
  // Stop: every instance ends, the scheduler forgets the service, and it leaves the page.
  await page.locator('tr[data-service="web"] button', { hasText: 'Stop' }).click()
  await page.locator('#notice', { hasText: 'Stopping service web' }).waitFor()
  await page.locator('tr[data-service="web"]').waitFor({ state: 'detached', timeout: 60_000 })
  t.deepEqual(await loamJson<unknown[]>(c, ['service', 'ls']), [])
  t.regex(await cliError(c, ['service', 'status', 'web', '--json']), /service web: no such service/)
  t.true((await loamJson<{ agents: AgentState[] }>(c, ['job', 'agents'])).agents.every((a) => a.tasks.every((x) => !x.startsWith('web.'))))
  t.deepEqual(pageErrors, [])
})
