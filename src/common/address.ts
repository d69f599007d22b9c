import { LoamError } from '../rpc/errors.js'

export interface Address {
  host: string
  port: number
}

export function parseAddress(text: string, what = 'address'): Address {
  const at = text.lastIndexOf(':')
  const rawHost = at > 0 ? text.slice(0, at) : ''
  const bracketed = /^\[.*\]$/.test(rawHost)
  const host = bracketed ? rawHost.slice(1, -1) : rawHost
  const portText = text.slice(at + 1)
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN
  // An IPv6 address needs brackets, or its last group would be taken for the port.
  if (!host || (host.includes(':') && !bracketed) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new LoamError('invalid-argument', `${what} '${text}' is not HOST:PORT (for example 127.0.0.1:8020)`)
  }
  return { host, port }
}

export function formatAddress(a: Address): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
