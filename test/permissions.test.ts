// The permission rules and block access tokens as pure functions: tables of cases, no processes.
import test from 'ava'
import { BlockOp, issueBlockToken, verifyBlockToken, type BlockKey } from '../src/rpc/block-token.js'
import { BlockKeys } from '../src/namenode/block-keys.js'
import { LoamError } from '../src/rpc/errors.js'
import { checkCaller } from '../src/common/validate.js'
import { GROUPS_PER_CALLER_MAX, PRINCIPAL_NAME_BYTES_MAX } from '../src/limits.js'
import { checkChown, checkPath, checkSubtree, EXECUTE, permits, READ, WRITE, type Owned, type Principal } from '../src/namenode/permissions.js'

const alice: Principal = { user: 'alice', groups: ['staff'], superuser: false }
const bob: Principal = { user: 'bob', groups: ['staff', 'dev'], superuser: false }
const carol: Principal = { user: 'carol', groups: ['carol'], superuser: false }
const root: Principal = { user: 'root', groups: ['root'], superuser: true }
const dir = (owner: string, mode: number, group = 'staff'): Owned => ({ owner, group, mode, isDir: true })
const file = (owner: string, mode: number, group = 'staff'): Owned => ({ owner, group, mode, isDir: false })

test('mode bits: owner, then group, then others; the superuser passes', (t) => {
  const cases: Array<[Principal, Owned, number, boolean]> = [
    [alice, file('alice', 0o600), READ | WRITE, true],
    [bob, file('alice', 0o640), READ, true],
    [bob, file('alice', 0o640), WRITE, false],
    [carol, file('alice', 0o640), READ, false],
    [carol, file('alice', 0o644), READ, true],
    [alice, file('alice', 0o077), READ, false],
    [root, file('alice', 0o000), READ | WRITE | EXECUTE, true],
  ]
  for (const [p, rec, access, want] of cases) t.is(permits(p, rec, access), want, `${p.user} ${access} on ${rec.owner} ${rec.mode.toString(8)}`)
})

test('a path: search on every directory above, write on the parent, and the sticky bit', (t) => {
  const path = (...inodes: Array<Owned | undefined>): Array<Owned | undefined> => inodes
  t.notThrows(() => checkPath(carol, '/home/alice/f', path(dir('root', 0o755), dir('root', 0o755), dir('alice', 0o755), file('alice', 0o644)), { self: READ }))
  const e = t.throws(() => checkPath(carol, '/home/alice/f', path(dir('root', 0o755), dir('root', 0o755), dir('alice', 0o700), file('alice', 0o644)), { self: READ }), { instanceOf: LoamError })
  t.regex(e.message, /^\/home\/alice: permission denied: user carol needs execute/)
  t.throws(() => checkPath(carol, '/home/alice', path(dir('root', 0o755), dir('root', 0o755), dir('alice', 0o755)), { parent: WRITE | EXECUTE, sticky: true }), { message: /\/home: permission denied/ })
  const tmp = path(dir('root', 0o755), dir('root', 0o1777), file('alice', 0o644))
  t.throws(() => checkPath(carol, '/tmp/f', tmp, { parent: WRITE | EXECUTE, sticky: true }), { message: /sticky/ })
  t.notThrows(() => checkPath(alice, '/tmp/f', tmp, { parent: WRITE | EXECUTE, sticky: true }))
  t.notThrows(() => checkPath(carol, '/tmp/new/deeper', path(dir('root', 0o755), dir('root', 0o1777), undefined, undefined), { ancestor: WRITE | EXECUTE }), 'mkdir -p below a writable directory')
  t.throws(() => checkPath(carol, '/x/y', path(dir('root', 0o755), undefined, undefined), { ancestor: WRITE | EXECUTE }))
  t.throws(() => checkPath(bob, '/f', path(dir('root', 0o777), file('alice', 0o777)), { owner: true }), { message: /ownership/ })
})

test('a recursive delete needs read, write and execute on every non-empty directory below its target', (t) => {
  const tree = (...dirs: Array<[string, Owned, boolean]>): Array<{ path: string; rec: Owned; empty: boolean }> => dirs.map(([path, rec, empty]) => ({ path, rec, empty }))
  t.notThrows(() => checkSubtree(carol, tree(['/open/d', dir('carol', 0o700), false], ['/open/d/e', dir('carol', 0o755), false])))
  t.throws(() => checkSubtree(carol, tree(['/open/d', dir('carol', 0o755), false], ['/open/d/alice', dir('alice', 0o700), false])), { message: /^\/open\/d\/alice: permission denied: user carol needs read and write and execute/ })
  t.throws(() => checkSubtree(bob, tree(['/open/d', dir('alice', 0o755), false])), { message: /needs read and write and execute/ }, 'group read and execute are not enough')
  t.notThrows(() => checkSubtree(bob, tree(['/open/d', dir('alice', 0o775), false])), 'group rwx is')
  t.notThrows(() => checkSubtree(carol, tree(['/open/empty', dir('alice', 0o700), true])), 'an empty directory goes with write on its parent, as rmdir')
  t.notThrows(() => checkSubtree(root, tree(['/open/d', dir('alice', 0o000), false])))
})

test('chown: the owner gives its group to one of its own groups; only the superuser gives a file away', (t) => {
  const f = file('bob', 0o644)
  t.notThrows(() => checkChown(bob, '/f', f, '', 'dev'))
  t.throws(() => checkChown(bob, '/f', f, '', 'wheel'), { message: /not in group wheel/ })
  t.throws(() => checkChown(bob, '/f', f, 'alice', ''), { message: /only the superuser/ })
  t.throws(() => checkChown(alice, '/f', f, '', 'staff'))
  t.notThrows(() => checkChown(root, '/f', f, 'alice', 'wheel'))
  for (const [owner, group] of [['a:b', ''], ['a/b', ''], ['a\0b', ''], ['', 'g:h'], ['x'.repeat(PRINCIPAL_NAME_BYTES_MAX + 1), ''], ['', 'é'.repeat(128)]]) {
    t.is(t.throws(() => checkChown(root, '/f', f, owner!, group!), { instanceOf: LoamError })?.code, 'invalid-argument', `even the superuser cannot chown to ${JSON.stringify([owner, group])}`)
  }
})

test('who a frame header names: bounded user and group names, a bounded number of groups', (t) => {
  t.notThrows(() => checkCaller('alice', ['staff', 'dev']))
  t.notThrows(() => checkCaller('', []), 'no user is nobody')
  t.notThrows(() => checkCaller('x'.repeat(PRINCIPAL_NAME_BYTES_MAX), Array.from({ length: GROUPS_PER_CALLER_MAX }, (_, i) => `g${i}`)))
  const code = (user: string, groups: string[]): string | undefined => t.throws(() => checkCaller(user, groups), { instanceOf: LoamError })?.code
  t.is(code('x'.repeat(PRINCIPAL_NAME_BYTES_MAX + 1), []), 'invalid-argument')
  t.is(code('a\0b', []), 'invalid-argument')
  t.is(code('../etc', []), 'invalid-argument')
  t.is(code('root:wheel', []), 'invalid-argument')
  t.is(code('alice', Array.from({ length: GROUPS_PER_CALLER_MAX + 1 }, (_, i) => `g${i}`)), 'invalid-argument')
  t.is(code('alice', ['ok', 'g'.repeat(PRINCIPAL_NAME_BYTES_MAX + 1)]), 'invalid-argument')
})

test('a block access token opens one block, for one operation, until it expires, under the key that signed it', (t) => {
  const key: BlockKey = { id: 7, key: Buffer.alloc(32, 7), expiresMs: 5000 }
  const keys = new Map([[key.id, key]])
  const token = issueBlockToken(key, { blockId: 42, op: BlockOp.READ, expiresMs: 1000 })
  t.deepEqual(verifyBlockToken(keys, token, 42, [BlockOp.READ], 999), { blockId: 42, op: BlockOp.READ, expiresMs: 1000 })
  const code = (fn: () => unknown): string | undefined => t.throws(fn, { instanceOf: LoamError })?.code
  t.is(code(() => verifyBlockToken(keys, token, 43, [BlockOp.READ], 999)), 'permission')
  t.is(code(() => verifyBlockToken(keys, token, 42, [BlockOp.WRITE], 999)), 'permission')
  t.is(code(() => verifyBlockToken(keys, token, 42, [BlockOp.READ], 1001)), 'token-expired')
  t.is(code(() => verifyBlockToken(new Map([[7, { ...key, key: Buffer.alloc(32, 8) }]]), token, 42, [BlockOp.READ], 999)), 'permission', 'another key under the same id')
  t.is(code(() => verifyBlockToken(new Map(), token, 42, [BlockOp.READ], 999)), 'token-expired', 'a key the datanode does not hold: ask again')
  t.is(code(() => verifyBlockToken(keys, token, 42, [BlockOp.READ], 5001)), 'token-expired', 'a key past its time')
  const tampered = Buffer.from(token)
  tampered[20] = tampered[20]! ^ 1
  t.is(code(() => verifyBlockToken(keys, tampered, 42, [BlockOp.READ], 999)), 'permission')
  t.is(code(() => verifyBlockToken(keys, undefined, 42, [BlockOp.READ], 999)), 'permission')
})

test('block keys: random, one signs at a time, the next is out a rotation before it signs, each kept until its tokens expire', (t) => {
  const rotation = 1000
  const lifetime = 300
  const keys = new BlockKeys(rotation, lifetime)
  t.true(keys.rotate(0))
  t.false(keys.rotate(500), 'nothing due')
  const [first, next] = keys.all()
  t.is(keys.all().length, 2)
  t.is(keys.signing(500).id, first!.id)
  t.notDeepEqual(Buffer.from(first!.key), Buffer.from(next!.key))
  t.true(keys.rotate(1000))
  t.is(keys.signing(1000).id, next!.id, 'the next key, handed out a rotation ago, signs now')
  t.deepEqual(keys.all().map((k) => k.id), [first!.id, next!.id, (next!.id + 1) >>> 0], 'the old key stays while its tokens may be valid')
  keys.rotate(rotation + rotation + lifetime + 1)
  t.false(keys.all().some((k) => k.id === first!.id), 'and goes once they cannot be')
  t.true(keys.all().every((k) => k.expiresMs - k.signFromMs === rotation + lifetime))
})
