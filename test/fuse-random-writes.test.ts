// Writes at any offset through a real mount, on a cluster with 1 MiB blocks so
// that writes, holes and truncations cross block boundaries. A python3 program
// does every operation to a file in the mount and to a shadow file on local
// disk; the two must end identical, read through the mount that wrote, through
// a fresh mount, and with loam fs cat.
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { startCluster, type TestCluster } from './helpers/cluster.js'
import { Cleanups, loamHashed, localTempDir, MiB, pattern, sha256, sha256File } from './helpers/data.js'
import { mountCluster, python, sh, type TestMount } from './helpers/mount.js'

const BLOCK_BYTES = MiB
const cleanups = new Cleanups()
let c: TestCluster

test.before(async () => {
  c = await startCluster(cleanups, { blockSize: '1MiB' })
})

test.after.always(async () => {
  await cleanups.run()
})

// argv: mount file, shadow file, seed, operations, 'new' (create, truncate) or 'existing' (keep the bytes there).
// Every operation goes to both files; every 25 operations a random range is read back from both
// while they are open (read-your-writes). Prints what it did as JSON.
const WRITER = `
import json, os, random, sys
path, shadow, seed, ops, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
BLOCK = ${BLOCK_BYTES}
rng = random.Random(seed)
flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if how == 'new' else 0)
fds = [os.open(p, flags, 0o644) for p in (path, shadow)]
size = os.fstat(fds[1]).st_size
assert os.fstat(fds[0]).st_size == size, 'the two files start the same size'
done = {'pwrite': 0, 'hole': 0, 'cross': 0, 'fsync': 0, 'down': 0, 'up': 0, 'reads': 0}
for i in range(ops):
    r = rng.random()
    if r < 0.04:
        for fd in fds: os.fsync(fd)
        done['fsync'] += 1
    elif r < 0.07:
        size = rng.randrange(0, size + 1)
        for fd in fds: os.ftruncate(fd, size)
        done['down'] += 1
    elif r < 0.09:
        size += rng.randrange(1, 2 * BLOCK)
        for fd in fds: os.ftruncate(fd, size)
        done['up'] += 1
    else:
        length = rng.choice([1, rng.randrange(1, 4096), rng.randrange(1, 300 * 1024 + 1)])
        kind = rng.random()
        if kind < 0.15:
            off = size + rng.randrange(1, 1536 * 1024)
            done['hole'] += 1
        elif kind < 0.35:
            off = max(0, rng.randrange(1, (size + length) // BLOCK + 2) * BLOCK - rng.randrange(1, length + 1))
        else:
            off = rng.randrange(0, size + 1)
        if off // BLOCK != (off + length - 1) // BLOCK: done['cross'] += 1
        data = rng.randbytes(length)
        for fd in fds:
            n = os.pwrite(fd, data, off)
            assert n == length, f'pwrite of {length} at {off} wrote {n}'
        size = max(size, off + length)
        done['pwrite'] += 1
    if i % 25 == 24:
        off, length = rng.randrange(0, size + 1), rng.randrange(0, 512 * 1024)
        got, want = (os.pread(fd, length, off) for fd in fds)
        assert got == want, f'operation {i}: pread of {length} at {off} reads other bytes through the mount'
        assert os.fstat(fds[0]).st_size == size, f'operation {i}: fstat size {os.fstat(fds[0]).st_size}, want {size}'
        done['reads'] += 1
for fd in fds: os.close(fd)
done['size'] = size
print(json.dumps(done))
`

interface WriterResult {
  pwrite: number
  hole: number
  cross: number
  fsync: number
  down: number
  up: number
  reads: number
  size: number
}

async function mountSha(file: string): Promise<{ sha: string; size: number }> {
  const { stdout } = await sh(`stat -c %s '${file}' && sha256sum < '${file}'`, { timeoutMs: 120_000 })
  const [size, sum] = stdout.split('\n')
  return { size: Number(size), sha: sum!.split(' ')[0]! }
}

/** The file reads back as want (sha256 and size) through the given mounts and with loam fs cat. */
async function readsBack(t: ExecutionContext, mounts: TestMount[], remote: string, want: { sha: string; size: number }, what: string): Promise<void> {
  for (const [i, m] of mounts.entries()) t.deepEqual(await mountSha(path.join(m.dir, remote)), want, `${what}: through mount ${i}`)
  const cat = await loamHashed(c, ['fs', 'cat', remote])
  t.is(cat.code, 0, cat.stderr)
  t.deepEqual({ sha: cat.sha256, size: cat.bytes }, want, `${what}: loam fs cat`)
}

async function randomWrites(t: ExecutionContext, remote: string, seed: number, how: 'new' | 'existing', shadow: string): Promise<void> {
  const m = await mountCluster(t, c)
  const done = JSON.parse(await python(WRITER, [path.join(m.dir, remote), shadow, String(seed), '300', how])) as WriterResult
  t.log(JSON.stringify(done))
  // The seed is fixed: these hold every run, and make sure the run crossed blocks, made holes, synced and truncated.
  t.true(done.pwrite > 200 && done.hole > 10 && done.cross > 10 && done.fsync > 0 && done.down > 0 && done.up > 0 && done.reads === 12, JSON.stringify(done))
  const want = { sha: await sha256File(shadow), size: done.size }
  t.true(want.size > 2 * BLOCK_BYTES, 'the file spans several blocks')
  const fresh = await mountCluster(t, c)
  await readsBack(t, [m, fresh], remote, want, 'after close')
}

test('random pwrites, holes, fsyncs and ftruncates to a new file leave the bytes a local file has', async (t) => {
  const local = await localTempDir(t)
  await randomWrites(t, '/random-new', 1, 'new', path.join(local, 'shadow'))
})

test('random writes into a file that already has full blocks (written with loam fs put) leave the bytes a local file has', async (t) => {
  const local = await localTempDir(t)
  const data = pattern(2 * BLOCK_BYTES + 500_000, 31)
  const put = await c.loam(['fs', 'put', '-', '/random-existing'], { input: data })
  t.is(put.code, 0, put.stderr)
  const shadow = path.join(local, 'shadow')
  await writeFile(shadow, data)
  await randomWrites(t, '/random-existing', 2, 'existing', shadow)
})

test('truncate -s on a file open nowhere cuts and extends it across blocks; a sparse file reads zeros in its hole', async (t) => {
  const size = 3 * BLOCK_BYTES + 12_345
  const data = pattern(size, 41)
  const put = await c.loam(['fs', 'put', '-', '/cut'], { input: data })
  t.is(put.code, 0, put.stderr)
  const m = await mountCluster(t, c)
  const file = path.join(m.dir, 'cut')
  let local = data
  // Down into the middle of a block, up past two block boundaries, exactly to a boundary, to 0, and up from nothing.
  for (const to of [1_234_567, 2_500_000, 2 * BLOCK_BYTES, 0, BLOCK_BYTES + 1]) {
    await sh(`truncate -s ${to} '${file}'`)
    local = to <= local.length ? local.subarray(0, to) : Buffer.concat([local, Buffer.alloc(to - local.length)])
    await readsBack(t, [m], '/cut', { sha: sha256(local), size: to }, `truncate -s ${to}`)
  }

  // Seek 5 MiB into a new file, write one byte: the hole reads as zeros.
  const sparse = path.join(m.dir, 'sparse')
  await sh(`printf '\\007' | dd of='${sparse}' bs=1 seek=${5 * MiB} status=none`)
  const { stdout } = await sh(`stat -c %s '${sparse}'; cmp -n ${5 * MiB} '${sparse}' /dev/zero && echo zeros; od -An -tx1 -j ${5 * MiB} '${sparse}'`)
  t.deepEqual(stdout.split('\n').map((l) => l.trim()), [String(5 * MiB + 1), 'zeros', '07', ''])
  const fresh = await mountCluster(t, c)
  await readsBack(t, [m, fresh], '/sparse', { sha: sha256(Buffer.concat([Buffer.alloc(5 * MiB), Buffer.from([7])])), size: 5 * MiB + 1 }, 'the sparse file')
  await readsBack(t, [fresh], '/cut', { sha: sha256(local), size: BLOCK_BYTES + 1 }, 'the truncated file, through a fresh mount')
})
