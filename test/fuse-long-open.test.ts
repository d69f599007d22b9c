// A file held open longer than a block access token lives (a database keeps its
// files open for days): reads, in-place writes, appends and fsync go on working
// through the mount, with tokens of 3 s.
import test from 'ava'
import { startCluster } from './helpers/cluster.js'
import { Cleanups } from './helpers/data.js'
import { mountCluster, python } from './helpers/mount.js'

const cleanups = new Cleanups()
test.after.always(async () => {
  await cleanups.run()
})

const PROGRAM = `
import hashlib, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
shadow = bytearray(os.urandom(3 * 1024 * 1024))
os.write(fd, shadow)
os.fsync(fd)
steps = []
for step in range(3):
    time.sleep(4)  # past the token's life
    assert os.pread(fd, 4096, 1024 * 1024) == bytes(shadow[1024 * 1024:1024 * 1024 + 4096]), 'read after the token expired'
    patch = os.urandom(8192)
    os.pwrite(fd, patch, 100 + step * 1000)
    shadow[100 + step * 1000:100 + step * 1000 + 8192] = patch
    tail = os.urandom(70000)
    os.pwrite(fd, tail, len(shadow))
    shadow += tail
    os.fsync(fd)
    steps.append(step)
os.lseek(fd, 0, 0)
got = b''
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    got += b
assert got == bytes(shadow), 'the whole file reads back as written'
os.close(fd)
print(hashlib.sha256(bytes(shadow)).hexdigest())
`

test('a file held open past its block tokens keeps reading, writing in place, appending and syncing', async (t) => {
  const c = await startCluster(cleanups, { blockSize: '1MiB', blockTokenLifetime: '3s' })
  const m = await mountCluster(cleanups, c, { nodeId: c.record.nodes[0]!.id })
  const sha = (await python(PROGRAM, [`${m.dir}/long-open.bin`])).trim()
  t.regex(sha, /^[0-9a-f]{64}$/)
  const r = await c.loam(['fs', 'cat', '/long-open.bin'])
  const { createHash } = await import('node:crypto')
  t.is(createHash('sha256').update(r.stdout).digest('hex'), sha, 'what the cluster holds is what was written')
})
