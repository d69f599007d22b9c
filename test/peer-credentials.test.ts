// The kernel's socket tables name the user behind a local connection.
import net from 'node:net'
import test from 'ava'
import { boundUser, checkClaim, peerUid, procEndpoint, socketOwner } from '../src/rpc/peer-credentials.js'

test('endpoints are written as /proc/net/tcp writes them', (t) => {
  t.is(procEndpoint({ address: '127.0.0.1', port: 0x9641 }), '0100007F:9641')
  t.is(procEndpoint({ address: '::ffff:127.0.0.1', port: 80 }), '0100007F:0050', 'an IPv4 peer of a dual-stack socket')
  t.is(procEndpoint({ address: '198.18.0.2', port: 8020 }), '020012C6:1F54')
  t.is(procEndpoint({ address: '::1', port: 80 }), '00000000000000000000000001000000:0050')
})

test('the owner of a socket is read from its row, matched on both ends', (t) => {
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F54 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1',
    '   1: 0100007F:A000 0100007F:1F54 01 00000000:00000000 00:00000000 00000000 65534        0 12 1',
    '   2: 0100007F:A001 0100007F:1F54 01 00000000:00000000 00:00000000 00000000  1000        0 13 1',
  ].join('\n')
  const server = { address: '127.0.0.1', port: 8020 }
  t.is(socketOwner(table, { address: '127.0.0.1', port: 0xa000 }, server), 65534)
  t.is(socketOwner(table, { address: '127.0.0.1', port: 0xa001 }, server), 1000)
  t.is(socketOwner(table, { address: '127.0.0.1', port: 0xa002 }, server), undefined)
  t.is(socketOwner(table, { address: '127.0.0.1', port: 0xa000 }, { address: '127.0.0.1', port: 8021 }), undefined, 'the far end must match too')
})

test('a real loopback connection is found owned by the user running this process', async (t) => {
  const accepted = new Promise<net.Socket>((resolve) => {
    const server = net.createServer((s) => {
      server.close()
      resolve(s)
    })
    server.listen(0, '127.0.0.1', () => net.connect((server.address() as net.AddressInfo).port, '127.0.0.1'))
  })
  const socket = await accepted
  t.teardown(() => socket.destroy())
  t.is(await peerUid(socket), process.getuid!())
})

test("root and the daemon's own user act for others; another local user only as itself, with this machine's groups", (t) => {
  t.is(boundUser(undefined), undefined, 'a peer elsewhere: its claim stands')
  t.is(boundUser(0), undefined)
  t.is(boundUser(process.getuid!()), undefined)
  const nobody = boundUser(65534)
  t.is(nobody?.user, 'nobody')
  t.false(nobody?.groups.includes('root'))
  t.notThrows(() => checkClaim(nobody, 'nobody'))
  t.throws(() => checkClaim(nobody, 'root'), { message: /OS user nobody on this machine and calls as 'root'/ })
})
