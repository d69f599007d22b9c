// A job's input, split as data-local jobs need it: one split per block, with
// the datanodes (and their racks) that hold a replica of it.
import path from 'node:path'
import type { LoamClient } from '../client/client.js'
import { LoamError, toLoamError } from '../rpc/errors.js'
import { InodeType } from '../rpc/messages.js'
import { INPUT_FILES_MAX } from '../limits.js'

export interface Split {
  path: string
  offset: number
  length: number
  nodes: string[]
  racks: string[]
}

const GLOB = /[*?[]/

/** A single-level glob ('*', '?', '[abc]') as a regular expression over one name. */
function globRegExp(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!
    if (ch === '*') re += '[^/]*'
    else if (ch === '?') re += '[^/]'
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) throw new LoamError('invalid-argument', `input glob ${glob}: '[' without ']'`)
      re += `[${glob.slice(i + 1, end).replace(/\\/g, '\\\\')}]`
      i = end
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** The files an input names: a file, a directory's files, or a glob in its last component. */
async function inputFiles(client: LoamClient, input: string): Promise<string[]> {
  const dir = path.posix.dirname(input)
  const last = path.posix.basename(input)
  if (GLOB.test(dir)) throw new LoamError('invalid-argument', `input ${input}: only the last component may be a glob`)
  const files: string[] = []
  if (GLOB.test(last)) {
    const re = globRegExp(last)
    for await (const st of client.list(dir)) if (st.type === InodeType.FILE && re.test(st.name)) files.push(path.posix.join(dir, st.name))
  } else {
    const st = await client.stat(input)
    if (st.type === InodeType.FILE) files.push(input)
    else for await (const child of client.list(input)) if (child.type === InodeType.FILE) files.push(path.posix.join(input, child.name))
  }
  if (files.length === 0) throw new LoamError('not-found', `input ${input} matches no file`)
  if (files.length > INPUT_FILES_MAX) throw new LoamError('invalid-argument', `input ${input} matches ${files.length} files; at most ${INPUT_FILES_MAX}`)
  return files.sort()
}

/** One split per block of the input's files; a refusal names the spec's field (`input: /x: no such file or directory`). */
export async function splitInput(client: LoamClient, input: string): Promise<Split[]> {
  try {
    return await blockSplits(client, input)
  } catch (err) {
    const e = toLoamError(err)
    throw e.message.startsWith('input') ? e : new LoamError(e.code, `input: ${e.message}`)
  }
}

async function blockSplits(client: LoamClient, input: string): Promise<Split[]> {
  const splits: Split[] = []
  for (const file of await inputFiles(client, input)) {
    const { blocks } = await client.getBlockLocations(file, 0, 0)
    for (const lb of blocks) {
      if (!lb.block || lb.block.lengthBytes === 0) continue
      splits.push({
        path: file,
        offset: lb.offsetBytes,
        length: lb.block.lengthBytes,
        nodes: lb.locations.map((l) => l.id),
        racks: [...new Set(lb.locations.map((l) => l.rack))],
      })
    }
  }
  if (splits.length === 0) throw new LoamError('invalid-argument', `input ${input} holds no data: its files are empty`)
  return splits
}
