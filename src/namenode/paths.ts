// Path rules: absolute, '/'-separated, no '.' or '..', bounded lengths. Pure.
import { NAME_BYTES_MAX, PATH_BYTES_MAX, PATH_COMPONENTS_MAX } from '../limits.js'
import { LoamError } from '../rpc/errors.js'

/** The components of an absolute path; [] is the root. Repeated and trailing slashes are folded. */
export function parsePath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new LoamError('invalid-argument', `${quote(path)}: paths are absolute (start with '/')`)
  }
  if (Buffer.byteLength(path) > PATH_BYTES_MAX) {
    throw new LoamError('invalid-argument', `path of ${Buffer.byteLength(path)} bytes is over the limit of ${PATH_BYTES_MAX}`)
  }
  if (path.includes('\0')) throw new LoamError('invalid-argument', `${quote(path)}: a path may not contain NUL`)
  const parts = path.split('/').filter((c) => c.length > 0)
  if (parts.length > PATH_COMPONENTS_MAX) {
    throw new LoamError('invalid-argument', `path has ${parts.length} components, over the limit of ${PATH_COMPONENTS_MAX}`)
  }
  for (const c of parts) checkName(c, path)
  return parts
}

export function checkName(name: string, path = name): void {
  if (name === '.' || name === '..') throw new LoamError('invalid-argument', `${quote(path)}: '.' and '..' are not allowed in paths`)
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) {
    throw new LoamError('invalid-argument', `${quote(path)}: name of ${Buffer.byteLength(name)} bytes is over the limit of ${NAME_BYTES_MAX}`)
  }
  if (name.includes('/') || name.includes('\0')) throw new LoamError('invalid-argument', `${quote(path)}: a name may not contain '/' or NUL`)
}

export function joinPath(parts: readonly string[]): string {
  return '/' + parts.join('/')
}

function quote(path: unknown): string {
  const s = String(path)
  return s.length > 200 ? `${s.slice(0, 200)}...` : s
}
