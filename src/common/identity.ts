// Users and groups of this machine: the namespace stores names, the kernel speaks numbers.
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { GROUPS_PER_CALLER_MAX } from '../limits.js'

const NOBODY = 65534

function table(file: string): { byName: Map<string, number>; byId: Map<number, string> } {
  const byName = new Map<string, number>()
  const byId = new Map<number, string>()
  for (const [name, , id] of lines(file)) {
    const n = Number(id)
    if (!name || !Number.isInteger(n)) continue
    byName.set(name, n)
    if (!byId.has(n)) byId.set(n, name)
  }
  return { byName, byId }
}

export class Identities {
  private readonly users = table('/etc/passwd')
  private readonly groups = table('/etc/group')

  uid(user: string): number {
    return this.users.byName.get(user) ?? numeric(user)
  }

  gid(group: string): number {
    return this.groups.byName.get(group) ?? numeric(group)
  }

  user(uid: number): string {
    return this.users.byId.get(uid) ?? String(uid)
  }

  group(gid: number): string {
    return this.groups.byId.get(gid) ?? String(gid)
  }
}

function numeric(name: string): number {
  return /^\d+$/.test(name) ? Number(name) : NOBODY
}

/** The operating-system user running this process, and its groups (primary first), by name: who a client acts as. */
export function processIdentity(): { user: string; groups: string[] } {
  const ids = new Identities()
  const uid = process.getuid?.() ?? 0
  let user: string
  try {
    user = os.userInfo().username
  } catch {
    user = ids.user(uid)
  }
  const gids = [process.getgid?.() ?? 0, ...(process.getgroups?.() ?? [])]
  // A call names at most GROUPS_PER_CALLER_MAX groups: the primary group and the first others.
  return { user, groups: [...new Set(gids.map((gid) => ids.group(gid)))].slice(0, GROUPS_PER_CALLER_MAX) }
}

/**
 * The name and groups (primary first) this machine's files give a uid: how a
 * server names the user behind a local connection, whatever that peer claims.
 */
export function osUserOf(uid: number): { user: string; groups: string[] } {
  const ids = new Identities()
  const user = ids.user(uid)
  const entry = lines('/etc/passwd').find((f) => Number(f[2]) === uid)
  const primary = entry ? [ids.group(Number(entry[3]))] : []
  const others = lines('/etc/group').filter((f) => (f[3] ?? '').split(',').includes(user)).map((f) => f[0]!)
  return { user, groups: [...new Set([...primary, ...others])].slice(0, GROUPS_PER_CALLER_MAX) }
}

/** A colon-separated file's fields, line by line; none for a machine without the file (names and numbers then pass through as digits). */
function lines(file: string): string[][] {
  try {
    return readFileSync(file, 'utf8').split('\n').map((l) => l.split(':'))
  } catch {
    return []
  }
}

/** A user's uid and primary gid by this machine's /etc/passwd; undefined for a user it does not list. */
export function passwdEntry(user: string): { uid: number; gid: number } | undefined {
  const f = lines('/etc/passwd').find((e) => e[0] === user)
  const uid = Number(f?.[2])
  const gid = Number(f?.[3])
  return f && Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined
}
