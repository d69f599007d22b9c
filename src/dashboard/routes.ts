// The dashboard on the namenode's HTTP port: the page (/), its scripts (/app/),
// and the JSON API (/api/) that src/dashboard/web polls.
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'
import type { HttpRoutes } from '../common/http.js'
import type { Logger } from '../common/log.js'
import { errorLine, LoamError, toLoamError, type ErrorCode } from '../rpc/errors.js'
import { allowed, tokenCookie } from './access.js'
import type { DashboardApi } from './api.js'
import type { ApiError } from './model.js'

/** The page and its style sheet, read from the source tree (as the proto schema is). */
const PAGE_DIR = fileURLToPath(new URL('../../../src/dashboard/web/', import.meta.url))
/** The browser's modules: what tsconfig.web.json compiles, and nothing else. */
const SCRIPT_DIR = fileURLToPath(new URL('../../web/', import.meta.url))
const PAGES: Record<string, [file: string, type: string]> = {
  '/': [PAGE_DIR + 'index.html', 'text/html; charset=utf-8'],
  '/style.css': [PAGE_DIR + 'style.css', 'text/css; charset=utf-8'],
}
/** Lowercase names and folders only: nothing outside SCRIPT_DIR can be named. */
const SCRIPT_PATH = /^\/app\/((?:[a-z0-9-]+\/)*[a-z0-9-]+\.js)$/
/** A job spec's limit on the wire, and a little room: a longer body is refused before it is read whole. */
const JSON_BODY_BYTES_MAX = 512 * 1024

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  'not-found': 404,
  exists: 409,
  'not-empty': 409,
  'invalid-argument': 400,
  permission: 403,
  quota: 507,
  'no-space': 507,
  'safe-mode': 503,
  unavailable: 503,
  timeout: 504,
}

/** A handler that has answered by itself (a download's bytes). */
const ANSWERED = Symbol('answered')

type Handler = (q: URLSearchParams, req: IncomingMessage, res: ServerResponse) => Promise<unknown>

/** token: what /api/ requires (dashboardToken of the cluster secret). */
export function dashboardRoutes(api: DashboardApi, token: string, log: Logger): HttpRoutes {
  const get: Record<string, Handler> = {
    '/api/overview': () => api.overview(),
    '/api/nodes': () => api.nodes(),
    '/api/files': async (q) => api.files(required(q, 'path')),
    '/api/download': async (q, _req, res) => {
      await api.download(required(q, 'path'), res)
      return ANSWERED
    },
    '/api/volumes': () => api.volumes(),
    '/api/jobs': () => api.jobs(),
    '/api/logs': async (q) => api.taskLog(required(q, 'task'), q.get('stream') || 'stdout'),
  }
  const post: Record<string, Handler> = {
    '/api/upload': async (q, req) => api.upload(required(q, 'path'), req),
    '/api/jobs': async (_q, req) => api.submitJob(await readBody(req)),
    '/api/jobs/kill': async (q) => api.killJob(required(q, 'id')),
    '/api/services': async (_q, req) => api.deployService(await readBody(req)),
    '/api/services/scale': async (q) => api.scaleService(required(q, 'id'), required(q, 'instances')),
    '/api/services/remove': async (q) => api.removeService(required(q, 'id')),
  }
  return (req, res, path) => {
    const q = new URL(req.url ?? '/', 'http://localhost').searchParams
    if (req.method === 'GET' && PAGES[path]) {
      const [file, type] = PAGES[path]
      // The page opened with the right ?token= keeps it as a cookie for its API calls.
      void sendFile(res, file, type, q.has('token') && allowed(req, q, token) ? { 'set-cookie': tokenCookie(token) } : {})
      return true
    }
    const script = req.method === 'GET' ? SCRIPT_PATH.exec(path) : null
    if (script) {
      void sendFile(res, SCRIPT_DIR + script[1], 'text/javascript; charset=utf-8')
      return true
    }
    const handler = (req.method === 'GET' ? get : req.method === 'POST' ? post : {})[path]
    if (!handler) return false
    const run = allowed(req, q, token) ? handler(q, req, res) : Promise.reject(new LoamError('permission', "the dashboard needs the cluster's access token: open the address 'loam cluster up' prints, or add ?token= from 'loam cluster token'"))
    run.then(
      (value) => {
        if (value !== ANSWERED) sendJson(res, 200, value)
      },
      (err: unknown) => {
        const e = toLoamError(err)
        if (!HTTP_STATUS[e.code]) log.warn({ path, code: e.code, err: e.message }, 'dashboard request failed')
        // Bytes already on their way cannot turn into an error reply: the reader sees a cut transfer.
        if (res.headersSent) res.destroy()
        else sendJson(res, HTTP_STATUS[e.code] ?? 500, { error: { code: e.code, message: e.message, line: errorLine(e) } } satisfies ApiError)
      },
    )
    return true
  }
}

function required(q: URLSearchParams, name: string): string {
  const v = q.get(name)
  if (!v) throw new LoamError('invalid-argument', `the request names no ${name}`)
  return v
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length
    if (bytes > JSON_BODY_BYTES_MAX) throw new LoamError('invalid-argument', `the request body is over ${JSON_BODY_BYTES_MAX} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(body)
}

async function sendFile(res: ServerResponse, file: string, type: string, headers: Record<string, string> = {}): Promise<void> {
  try {
    const body = await readFile(file)
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', ...headers })
    res.end(body)
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' })
    res.end('not found\n')
  }
}
