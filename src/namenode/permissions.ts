// Who may do what: HDFS's permission model (POSIX mode bits with the sticky
// bit, owner and group; no ACLs), as pure functions over the inodes of a path.
// The superuser (the namenode's own user, --superuser, or a member of
// --supergroup) passes every check.
import { checkPrincipalName } from '../common/validate.js'
import { LoamError } from '../rpc/errors.js'

export const READ = 4
export const WRITE = 2
export const EXECUTE = 1
const STICKY = 0o1000

export interface Principal {
  user: string
  /** Primary group first. */
  groups: string[]
  superuser: boolean
}

export interface Owned {
  owner: string
  group: string
  mode: number
  /** Directories are traversed on the way to what a path names. */
  isDir: boolean
}

/** What an operation needs along its path, as HDFS's FSPermissionChecker puts it. */
export interface PathCheck {
  /** On the deepest existing directory above the target (creating one or more levels below it). */
  ancestor?: number
  /** On the target's parent directory. */
  parent?: number
  /** On the target itself, when it exists. */
  self?: number
  /** The target's owner (or the superuser) only. */
  owner?: boolean
  /** Removing or renaming the target: in a sticky directory only its owner, the directory's, or the superuser may. */
  sticky?: boolean
}

export function permits(p: Principal, rec: Owned, access: number): boolean {
  if (p.superuser) return true
  const shift = rec.owner === p.user ? 6 : p.groups.includes(rec.group) ? 3 : 0
  return ((rec.mode >> shift) & access) === access
}

/**
 * inodes: the path's inodes from the root down, one more than components;
 * undefined from the first component that does not exist. Traversal needs
 * execute on every existing directory above the target.
 */
export function checkPath(p: Principal, path: string, inodes: Array<Owned | undefined>, check: PathCheck): void {
  if (p.superuser) return
  const target = inodes.length - 1
  const parent = target - 1
  let ancestor = -1
  for (let i = 0; i < target; i++) {
    const rec = inodes[i]
    if (!rec?.isDir) break
    ancestor = i
    if (!permits(p, rec, EXECUTE)) throw denied(p, prefixOf(path, i), 'execute (search)', rec)
  }
  if (check.ancestor !== undefined && ancestor >= 0) need(p, prefixOf(path, ancestor), inodes[ancestor]!, check.ancestor)
  const dir = parent >= 0 && parent === ancestor ? inodes[parent] : undefined
  if (check.parent !== undefined && dir) need(p, prefixOf(path, parent), dir, check.parent)
  const self = inodes[target]
  if (!self) return
  if (check.self !== undefined) need(p, path, self, check.self)
  if (check.owner && self.owner !== p.user) throw denied(p, path, 'ownership', self)
  if (check.sticky && dir && (dir.mode & STICKY) !== 0 && p.user !== dir.owner && p.user !== self.owner) {
    throw denied(p, path, `ownership (its directory ${prefixOf(path, parent)} is sticky)`, self)
  }
}

/** A directory of a subtree, as checkSubtree sees it. */
export interface SubtreeDir {
  path: string
  rec: Owned
  empty: boolean
}

/**
 * A recursive delete removes everything below its target, so (as in HDFS) the
 * caller needs read, write and execute on every non-empty directory of the
 * subtree: write on the parent alone must not remove another user's 0700 tree.
 */
export function checkSubtree(p: Principal, dirs: Iterable<SubtreeDir>): void {
  if (p.superuser) return
  for (const d of dirs) {
    if (!d.empty) need(p, d.path, d.rec, READ | WRITE | EXECUTE)
  }
}

/** chown: only the superuser gives a file away; its owner may change its group to one of their own. */
export function checkChown(p: Principal, path: string, rec: Owned, owner: string, group: string): void {
  checkPrincipalName(owner, 'user')
  checkPrincipalName(group, 'group')
  if (p.superuser) return
  if (owner && owner !== rec.owner) throw new LoamError('permission', `${path}: only the superuser may change an owner (user ${p.user} asked for ${owner})`)
  if (rec.owner !== p.user) throw denied(p, path, 'ownership', rec)
  if (group && group !== rec.group && !p.groups.includes(group)) {
    throw new LoamError('permission', `${path}: user ${p.user} is not in group ${group}, so cannot give the file to it`)
  }
}

/** A volume's owner (or the superuser) alone attaches, mounts, snapshots, resizes or removes it. */
export function checkVolumeOwner(p: Principal, volume: { name: string; owner: string }, action: string): void {
  if (p.superuser || p.user === volume.owner) return
  throw new LoamError('permission', `volume ${volume.name}: only its owner ${volume.owner} or the superuser may ${action} it (this is user ${p.user})`)
}

/** Cluster administration (datanodes registering, decommissioning) is the superuser's. */
export function checkSuperuser(p: Principal, action: string): void {
  if (!p.superuser) throw new LoamError('permission', `only the superuser may ${action} (this is user ${p.user}); run it as the namenode's user or a member of its supergroup`)
}

function need(p: Principal, path: string, rec: Owned, access: number): void {
  if (!permits(p, rec, access)) throw denied(p, path, accessWords(access), rec)
}

function denied(p: Principal, path: string, what: string, rec: Owned): LoamError {
  return new LoamError(
    'permission',
    `${path}: permission denied: user ${p.user} needs ${what} (owner ${rec.owner}, group ${rec.group}, mode ${(rec.mode & 0o7777).toString(8).padStart(4, '0')}); its owner can change that with 'loam fs chmod' or 'loam fs chown'`,
  )
}

function accessWords(access: number): string {
  const words = [access & READ ? 'read' : '', access & WRITE ? 'write' : '', access & EXECUTE ? 'execute' : ''].filter(Boolean)
  return `${words.join(' and ')} permission`
}

/** The path of the i-th inode of a path's inodes (0: the root). */
function prefixOf(path: string, i: number): string {
  return '/' + path.split('/').filter(Boolean).slice(0, i).join('/')
}
