// Who a connection from this machine really is. The kernel's socket tables
// (/proc/net/tcp, /proc/net/tcp6) name the user owning the connecting socket,
// as identd did; a claim in the frame header is checked against it. A peer on
// another machine cannot be checked this way: its claim stands, as under
// HDFS's simple authentication.
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import { osUserOf } from '../common/identity.js'
import { LoamError } from './errors.js'

export interface Endpoint {
  address: string
  port: number
}

/** '::ffff:127.0.0.1' is an IPv4 peer of a dual-stack socket: the kernel keeps it in the IPv4 table. */
function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return mapped ? mapped[1]! : address
}

/** An endpoint as /proc/net/tcp{,6} writes it: the address in host-order 32-bit words (x86: little-endian), the port big-endian. */
export function procEndpoint(e: Endpoint): string {
  const address = plainAddress(e.address)
  const port = e.port.toString(16).toUpperCase().padStart(4, '0')
  const bytes = net.isIPv4(address) ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address)
  let hex = ''
  for (let i = 0; i < bytes.length; i += 4) hex += Buffer.from(bytes.subarray(i, i + 4)).reverse().toString('hex').toUpperCase()
  return `${hex}:${port}`
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::')
  const words = (s: string): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : [])
  const front = words(head)
  const back = words(tail)
  const all = address.includes('::') ? [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back] : front
  const out = Buffer.alloc(16)
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2))
  return out
}

/**
 * The uid owning the socket whose local end is `from` and remote end `to`, in
 * the text of a /proc/net/tcp table; undefined when no such socket is listed.
 */
export function socketOwner(table: string, from: Endpoint, to: Endpoint): number | undefined {
  const local = procEndpoint(from)
  const remote = procEndpoint(to)
  for (const line of table.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
    const f = line.trim().split(/\s+/)
    if (f[1] === local && f[2] === remote) {
      const uid = Number(f[7])
      return Number.isInteger(uid) ? uid : undefined
    }
  }
  return undefined
}

/** Whether an address is one of this machine's own. */
export function isOwnAddress(address: string): boolean {
  const plain = plainAddress(address)
  if (plain.startsWith('127.') || plain === '::1') return true
  return Object.values(os.networkInterfaces()).some((list) => list?.some((i) => i.address === plain))
}

/**
 * The uid of the process at the far end of a connection accepted here, when
 * that process runs on this machine (in this network namespace); undefined
 * for a peer elsewhere.
 */
export async function peerUid(socket: net.Socket): Promise<number | undefined> {
  const { remoteAddress, remotePort, localAddress, localPort } = socket
  if (!remoteAddress || !remotePort || !localAddress || !localPort || !isOwnAddress(remoteAddress)) return undefined
  const file = net.isIPv4(plainAddress(remoteAddress)) ? '/proc/net/tcp' : '/proc/net/tcp6'
  const table = await readFile(file, 'utf8').catch(() => '')
  return socketOwner(table, { address: remoteAddress, port: remotePort }, { address: localAddress, port: localPort })
}

/** A local peer that may act only as itself. */
export interface OsUser {
  user: string
  groups: string[]
}

/**
 * Whom a connection is bound to: nobody for a peer elsewhere (unknown) and for
 * root or this daemon's own user (the cluster's own processes: a mount or an
 * agent acts for many users); any other local user is held to itself.
 */
export function boundUser(uid: number | undefined): OsUser | undefined {
  if (uid === undefined || uid === 0 || uid === process.getuid?.()) return undefined
  return osUserOf(uid)
}

/** A bound connection calls as its own user only. */
export function checkClaim(bound: OsUser | undefined, claimed: string): void {
  if (bound && claimed !== bound.user) {
    throw new LoamError('permission', `this connection comes from OS user ${bound.user} on this machine and calls as '${claimed}': a process acts as the user that runs it`)
  }
}
