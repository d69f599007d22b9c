// A datanode dies while a program writes through the mount: the write goes on
// with the nodes left (a new generation stamp, unacknowledged packets sent
// again) and every byte the program wrote is in the file afterwards.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import path from 'node:path'
import test from 'ava'
import { startCluster, waitFor } from './helpers/cluster.js'
import { localTempDir, sha256File } from './helpers/data.js'
import { mountCluster, run } from './helpers/mount.js'

// Writes part one (random offsets), fsyncs, says so, waits for a line (with "pause"), writes part two, closes.
const WRITER = `
import os, sys, random
random.seed(7)
path, pause = sys.argv[1], sys.argv[2] == 'pause'
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
def part(n):
    for _ in range(n):
        off = random.randrange(0, 6 * 1024 * 1024)
        os.pwrite(fd, random.randbytes(random.randrange(1, 256 * 1024)), off)
part(40)
os.fsync(fd)
if pause:
    print('synced', flush=True)
    sys.stdin.readline()
part(40)
os.fsync(fd)
os.close(fd)
`

test('a datanode killed in the middle of a write through the mount: the write goes on and nothing is lost', async (t) => {
  const c = await startCluster(t, { nodes: 4, racks: 2, blockSize: '1MiB', heartbeat: '1s', deadAfter: '4s' })
  const m = await mountCluster(t, c, { timeout: '20s' })
  const shadow = path.join(await localTempDir(t), 'shadow')
  await run('python3', ['-c', WRITER, shadow, 'no'])
  const writer = spawn('python3', ['-c', WRITER, `${m.dir}/f`, 'pause'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  writer.stdout.on('data', (b: Buffer) => (out += b.toString()))
  writer.stderr.on('data', (b: Buffer) => (err += b.toString()))
  const exited = new Promise<number | null>((resolve) => writer.once('close', resolve))
  await waitFor(() => out.includes('synced') || writer.exitCode !== null, 60_000, 'the first part to be synced')
  t.is(writer.exitCode, null, err)

  // Kill a node that holds replicas of the file's blocks while its pipelines are open.
  const blocks = (await c.client().getBlockLocations('/f', 0, 0)).blocks
  const holders = new Map<string, number>()
  for (const b of blocks) for (const l of b.locations) holders.set(l.id, (holders.get(l.id) ?? 0) + 1)
  const victim = [...holders.entries()].sort((a, b) => b[1] - a[1])[0]![0]
  await c.killNode(c.record.nodes.findIndex((n) => n.id === victim))
  writer.stdin.end('go\n')
  t.is(await exited, 0, `the writer failed: ${err}`)

  const cat = await c.loam(['fs', 'cat', '/f'])
  t.is(cat.code, 0, cat.stderr)
  t.is(createHash('sha256').update(cat.stdout).digest('hex'), await sha256File(shadow), 'the file holds every write')
  const after = (await c.client().getBlockLocations('/f', 0, 0)).blocks
  t.true(after.every((b) => b.locations.every((l) => l.id !== victim) && b.locations.length > 0), 'no block is served from the dead node')
})
