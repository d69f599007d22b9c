// Headless Chromium (Debian's) driven by playwright-core, for the dashboard's
// end-to-end tests; closed and its profile removed at teardown.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { Teardown } from './cluster.js'

export const CHROMIUM = '/usr/bin/chromium'

/** Where tests leave what a person looks at afterwards (screenshots): test-output/ at the repository's root, ignored by git. */
export async function testOutputDir(name: string): Promise<string> {
  const dir = fileURLToPath(new URL(`../../../test-output/${name}/`, import.meta.url))
  await mkdir(dir, { recursive: true })
  return dir
}

export async function openBrowser(t: Teardown): Promise<{ context: BrowserContext; page: Page }> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'loam-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
    // Without the background-networking flags Chromium's own connections are refused on a closed network, and it stalls.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.teardown(async () => {
    await context.close().catch(() => undefined)
    await rm(profile, { recursive: true, force: true })
  })
  const page = context.pages()[0] ?? (await context.newPage())
  return { context, page }
}
