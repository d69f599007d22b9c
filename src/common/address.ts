import { LoamError } from '../rpc/errors.js'

export interface Address {
  host: string
  port: number
}

export function parseAddress(text: string, what = 'address'): Address {
  const at = text.lastIndexOf(':')
  const host = at > 0 ? text.slice(0, at).replace(/^\[|\]$/g, '') : ''
  const port = Number(text.slice(at + 1))
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new LoamError('invalid-argument', `${what} '${text}' is not HOST:PORT (for example 127.0.0.1:8020)`)
  }
  return { host, port }
}

export function formatAddress(a: Address): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
