// Whether a datanode runs on this machine (so its replicas can be read from disk).
import os from 'node:os'

let localAddresses: Set<string> | undefined

export function isLocalHost(host: string): boolean {
  const h = host.replace(/^::ffff:/, '')
  if (h === 'localhost' || h === '::1' || h.startsWith('127.')) return true
  localAddresses ??= new Set(
    Object.values(os.networkInterfaces())
      .flat()
      .map((i) => i?.address ?? ''),
  )
  return localAddresses.has(h)
}
