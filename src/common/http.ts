// Every daemon's HTTP side: /status (JSON) and /metrics (Prometheus text), and
// whatever further pages a daemon adds (the namenode's dashboard).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Address } from './address.js'

export interface StatusServer {
  address: Address
  registry: Registry
  close(): Promise<void>
}

/** Takes a request it serves (answering it, possibly later) and returns true; false leaves it to the next. */
export type HttpRoutes = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => boolean

export interface StatusServerOptions {
  /** Made before the server so the RPC server can register its metrics in it too. */
  registry?: Registry
  routes?: HttpRoutes
}

export async function startStatusServer(host: string, port: number, status: () => unknown, opts: StatusServerOptions = {}): Promise<StatusServer> {
  const registry = opts.registry ?? new Registry()
  collectDefaultMetrics({ register: registry })
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(status()))
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType })
          res.end(text)
        },
        (err: Error) => {
          res.writeHead(500)
          res.end(err.message)
        },
      )
    } else if (!opts.routes?.(req, res, path)) {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found: try /status or /metrics\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => resolve())
  })
  const a = server.address() as AddressInfo
  return {
    address: { host, port: a.port },
    registry,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}
