// The handshake every connection starts with (see auth.ts), then, unless
// --insecure, TLS 1.2 with a pre-shared key derived for this one connection.
// Nothing a peer sends is framed or acted on before it has proved it holds the secret.
import type net from 'node:net'
import tls from 'node:tls'
import { HANDSHAKE_TIMEOUT_MS, HELLO_TIMEOUT_MS } from '../limits.js'
import { ACCEPT_BYTE, decodeHello, encodeHello, HELLO_BYTES, newNonce, proof, PROOF_BYTES, proofMatches, SERVER_HELLO_BYTES, type Security } from './auth.js'
import { LoamError } from './errors.js'

// AES-GCM with a pre-shared key: no certificates to manage, and AES-NI keeps it near loopback speed.
const TLS_OPTIONS = { ciphers: 'PSK-AES128-GCM-SHA256', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const
const PSK_IDENTITY = 'loam'

/** The serving end: resolves with the socket to frame, or rejects (the caller closes raw). */
export function acceptSecure(raw: net.Socket, security: Security, timeoutMs = HANDSHAKE_TIMEOUT_MS, helloTimeoutMs = HELLO_TIMEOUT_MS): Promise<net.Socket> {
  return withDeadline(raw, timeoutMs, 'the peer', async () => {
    const hello = decodeHello(await withDeadline(raw, helloTimeoutMs, 'the peer', () => readExactly(raw, HELLO_BYTES, 'the peer'), 'hello'))
    const serverNonce = newNonce()
    const encrypt = security.encrypt
    // Answered in this daemon's own mode: a peer in the other mode learns it and says so.
    raw.write(Buffer.concat([encodeHello({ encrypt, nonce: serverNonce }), proof(security.secret, 'server', hello.nonce, serverNonce, encrypt)]))
    const got = await readExactly(raw, PROOF_BYTES, 'the peer')
    if (hello.encrypt !== encrypt) throw new LoamError('protocol', `the peer ${hello.encrypt ? 'encrypts' : 'runs --insecure'} and this daemon does not`)
    if (!proofMatches(proof(security.secret, 'client', hello.nonce, serverNonce, encrypt), got)) {
      throw new LoamError('permission', 'the peer does not hold the cluster secret')
    }
    raw.write(Buffer.from([ACCEPT_BYTE]))
    if (!encrypt) return raw
    const psk = proof(security.secret, 'tls', hello.nonce, serverNonce, encrypt)
    // Node accepts pskCallback on a server TLSSocket; its types list it for tls.createServer only.
    const serverOptions: tls.TLSSocketOptions & Pick<tls.TlsOptions, 'pskCallback'> = { isServer: true, ...TLS_OPTIONS, pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? psk : null) }
    const secure = new tls.TLSSocket(raw, serverOptions)
    await settled(secure, 'secure', 'the peer')
    return secure
  })
}

/** The calling end; where names the peer in errors ('namenode at 127.0.0.1:8020'). */
export function connectSecure(raw: net.Socket, security: Security, where: string, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<net.Socket> {
  return withDeadline(raw, timeoutMs, where, async () => {
    const encrypt = security.encrypt
    const clientNonce = newNonce()
    raw.write(encodeHello({ encrypt, nonce: clientNonce }))
    const reply = await readExactly(raw, SERVER_HELLO_BYTES, where)
    let hello
    try {
      hello = decodeHello(reply)
    } catch (err) {
      throw new LoamError('protocol', `${where}: ${(err as Error).message}; is it a Loam daemon?`)
    }
    if (hello.encrypt !== encrypt) {
      throw new LoamError('protocol', `${where} ${hello.encrypt ? 'encrypts its connections' : 'runs --insecure'} and this process ${encrypt ? 'encrypts' : 'runs --insecure'}: start every process of a cluster the same way (LOAM_INSECURE=1 or --insecure on all or none)`)
    }
    if (!proofMatches(proof(security.secret, 'server', clientNonce, hello.nonce, encrypt), reply.subarray(HELLO_BYTES))) {
      throw new LoamError('permission', `${where} does not share this process's cluster secret: check --secret-file or LOAM_SECRET_FILE on both`)
    }
    raw.write(proof(security.secret, 'client', clientNonce, hello.nonce, encrypt))
    const accept = await readExactly(raw, 1, where).catch(() => {
      throw new LoamError('permission', `${where} refused this process at the handshake: it does not hold the cluster secret; check --secret-file or LOAM_SECRET_FILE`)
    })
    if (accept[0] !== ACCEPT_BYTE) throw new LoamError('protocol', `${where} answered the handshake with ${accept[0]}`)
    if (!encrypt) return raw
    const psk = proof(security.secret, 'tls', clientNonce, hello.nonce, encrypt)
    const secure = tls.connect({ socket: raw, ...TLS_OPTIONS, pskCallback: () => ({ psk, identity: PSK_IDENTITY }), checkServerIdentity: () => undefined })
    await settled(secure, 'secureConnect', where)
    return secure
  })
}

/** step: what the peer must finish in time, in the error (the whole handshake, or its first message). */
async function withDeadline<T>(raw: net.Socket, timeoutMs: number, what: string, run: () => Promise<T>, step = 'handshake'): Promise<T> {
  raw.setNoDelay(true)
  // Errors surface as 'close' to the reads below; this listener keeps them from being thrown.
  raw.on('error', () => undefined)
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    raw.destroy()
  }, timeoutMs)
  try {
    return await run()
  } catch (err) {
    if (timedOut) throw new LoamError('timeout', `${what}: no ${step} within ${timeoutMs} ms`)
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Exactly n bytes. The handshake is in lockstep, so a peer that sends more
 * is not speaking it; the socket is left paused, with nothing read ahead.
 */
function readExactly(socket: net.Socket, n: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const done = (): void => {
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.pause()
    }
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.length
      if (got < n) return
      done()
      if (got > n) reject(new LoamError('protocol', `${what} sent more than the handshake allows`))
      else resolve(Buffer.concat(chunks, n))
    }
    const onClose = (): void => {
      done()
      reject(new LoamError('unavailable', `${what} closed the connection during the handshake`))
    }
    socket.on('data', onData)
    socket.on('close', onClose)
    socket.resume()
  })
}

function settled(socket: tls.TLSSocket, event: 'secure' | 'secureConnect', what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.off(event, onReady)
      reject(new LoamError('permission', `${what}: the encrypted channel failed (${err.message})`))
    }
    const onReady = (): void => {
      socket.off('error', onError)
      resolve()
    }
    socket.once(event, onReady)
    socket.once('error', onError)
  })
}
