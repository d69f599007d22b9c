// mkdir -p that ends: Node's recursive mkdir spins forever where the kernel
// answers ENOENT for a child of an existing directory (procfs does).
import { mkdir, stat } from 'node:fs/promises'
import path from 'node:path'

const DEPTH_MAX = 256

export async function mkdirp(dir: string, mode = 0o700, depth = 0): Promise<void> {
  try {
    await mkdir(dir, { mode })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      if ((await stat(dir)).isDirectory()) return
      throw err
    }
    const parent = path.dirname(dir)
    if (code !== 'ENOENT' || parent === dir || depth >= DEPTH_MAX) throw err
    await mkdirp(parent, mode, depth + 1)
    // Once more only: a second ENOENT with the parent in place is the kernel's final word.
    try {
      await mkdir(dir, { mode })
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code !== 'EEXIST') throw again
    }
  }
}
