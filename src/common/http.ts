// Every daemon's HTTP side: /status (JSON) and /metrics (Prometheus text).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Address } from './address.js'

export interface StatusServer {
  address: Address
  registry: Registry
  close(): Promise<void>
}

export async function startStatusServer(host: string, port: number, status: () => unknown, registry = new Registry()): Promise<StatusServer> {
  collectDefaultMetrics({ register: registry })
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
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
    } else {
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
