/**
 * ws:// / wss:// behaviour beyond the shared compliance suite: the wire
 * format (channel byte), protocol violations, size limits, certificate
 * pinning, client certificates, maxConnections, dial timeouts.
 */
import { once } from 'node:events'
import { request } from 'node:http'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import t from 'tap'
import WebSocket from 'ws'
import { defaultCodec } from '../../src/codec/codec.js'
import type { Channel, Connection, ListenOptions, Listener } from '../../src/transport/types.js'
import { createWsTransport, wsTransport } from '../../src/transport/ws.js'
import { collect, msg, withTimeout } from './compliance-helpers.js'
import { testPki } from './ws-test-certs.js'

const pki = await testPki()
const serverIdentity = { cert: pki.chain, key: pki.leafKey }
const CODE = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code

async function listenWith (url: string, extra: Partial<ListenOptions> = {}): Promise<{ listener: Listener, inbound: Connection[], next: () => Promise<Connection> }> {
  const inbound: Connection[] = []
  const waiters: Array<(c: Connection) => void> = []
  const listener = await wsTransport.listen(new URL(url), {
    ...extra,
    onConnection: c => {
      inbound.push(c)
      waiters.shift()?.(c)
    }
  })
  const next = (): Promise<Connection> => withTimeout(new Promise<Connection>(resolve => { waiters.push(resolve) }), 5000, 'inbound connection')
  return { listener, inbound, next }
}

async function rawClient (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  ws.on('error', () => {})
  await withTimeout(once(ws, 'open'), 5000, 'raw client open')
  return ws
}

const dialErr = (p: Promise<Connection>): Promise<unknown> =>
  p.then(c => { c.abort(new Error('should not have connected')); return undefined }, (e: unknown) => e)

t.test('one channel byte then the encoded envelope, in both directions', async t => {
  const { listener, next } = await listenWith('ws://127.0.0.1:0')
  t.teardown(() => listener.close(100))
  const inboundP = next()
  const raw = await rawClient(listener.url)
  t.teardown(() => { raw.terminate() })
  const server = await inboundP
  t.equal(server.headOfLineBlocking, true)
  t.equal(server.remoteIdentity, undefined, 'plain ws:// authenticates nobody')
  const env = msg(7, { hello: 'world' })
  const got = collect(server, 4)
  const channels: Channel[] = ['control', 'high', 'normal', 'bulk']
  channels.forEach((_ch, i) => { raw.send(Buffer.concat([Buffer.from([i]), defaultCodec.encode(env)])) })
  const all = await got
  t.same(all.map(m => m.channel), channels, 'byte 0..3 → control, high, normal, bulk')
  t.same(all[0]?.env.content, { hello: 'world' })
  const rawGot = once(raw, 'message') as Promise<[Buffer, boolean]>
  server.send(msg(8, 'x'), { channel: 'high' })
  const [data, isBinary] = await withTimeout(rawGot, 5000, 'raw message')
  t.equal(isBinary, true, 'binary message')
  t.equal(data[0], 1, 'first byte is the channel (high = 1)')
  // a stream frame (src/codec/stream.ts): the first on its channel, so a fresh stream decoder reads it
  const rx = defaultCodec.createStream?.()
  t.equal(rx?.decode(data.subarray(1)).content, 'x', 'the rest is the envelope, no length prefix')
})

for (const [name, payload] of [
  ['unknown channel byte', Buffer.from([9, 1, 2, 3])],
  ['empty message', Buffer.alloc(0)],
  ['text message', 'hello']
] as const) {
  t.test(`${name} → ProtocolError and closed connection`, async t => {
    const { listener, next } = await listenWith('ws://127.0.0.1:0')
    t.teardown(() => listener.close(100))
    const inboundP = next()
    const raw = await rawClient(listener.url)
    const server = await inboundP
    const rawClosed = once(raw, 'close')
    raw.send(payload)
    const info = await withTimeout(server.closed(), 5000, 'server closes')
    t.equal(CODE(info.error), 'EF_PROTOCOL')
    t.match(info, { initiator: 'local', clean: false })
    await withTimeout(rawClosed, 5000, 'raw client sees the close')
  })
}

t.test('oversize message → FrameTooLargeError with the declared size, checked from the header', async t => {
  const { listener, next } = await listenWith('ws://127.0.0.1:0', { maxFrameSize: 64 * 1024 })
  t.teardown(() => listener.close(100))
  const inboundP = next()
  const raw = await rawClient(listener.url)
  t.teardown(() => { raw.terminate() })
  const server = await inboundP
  raw.send(Buffer.alloc(1 + 100_000, 2))
  const info = await withTimeout(server.closed(), 5000, 'server closes')
  t.equal(CODE(info.error), 'EF_FRAME_TOO_LARGE')
  t.match(info.error, { size: 100_000, limit: 64 * 1024 })
  // exactly at the limit is fine
  const { listener: l2, next: next2 } = await listenWith('ws://127.0.0.1:0', { maxFrameSize: 64 * 1024 })
  t.teardown(() => l2.close(100))
  const in2 = next2()
  const client = await wsTransport.dial(new URL(l2.url), { maxFrameSize: 64 * 1024 })
  t.teardown(() => client.abort(new Error('teardown')))
  const s2 = await in2
  const got = collect(s2, 1)
  const probe = defaultCodec.encode(msg(1, new Uint8Array(0)))
  client.send(msg(1, new Uint8Array(64 * 1024 - probe.byteLength - 16)))
  t.equal((await got).length, 1, 'a frame just under the limit passes')
})

t.test('wss:// pinning', async t => {
  const { listener, inbound } = await listenWith('wss://127.0.0.1:0', { identity: serverIdentity })
  t.teardown(() => listener.close(100))
  t.equal(listener.identity, pki.leafFingerprint, 'Listener.identity = sha256 of the server certificate')
  t.match(listener.url, /^wss:\/\/127\.0\.0\.1:\d+$/)
  t.not(listener.url, 'wss://127.0.0.1:0')
  const url = new URL(listener.url)

  const leafPinned = await wsTransport.dial(url, { expectedRemoteIdentity: pki.leafFingerprint })
  t.equal(leafPinned.remoteIdentity, pki.leafFingerprint, 'remoteIdentity = server certificate fingerprint')
  await leafPinned.close()

  const caPinned = await wsTransport.dial(url, { expectedRemoteIdentity: pki.caFingerprint.toUpperCase().replace(/(..)(?!$)/g, '$1:') })
  t.equal(caPinned.remoteIdentity, pki.leafFingerprint, 'pinning the CA (colon form accepted) works; identity is still the leaf')
  await caPinned.close()

  const viaCa = await wsTransport.dial(url, { identity: { ca: pki.caCert } })
  t.equal(viaCa.remoteIdentity, pki.leafFingerprint, 'normal CA validation with identity.ca')
  await viaCa.close()

  const before = inbound.length
  t.equal(CODE(await dialErr(wsTransport.dial(url, { expectedRemoteIdentity: pki.otherFingerprint }))), 'EF_IDENTITY_MISMATCH')
  t.equal(CODE(await dialErr(wsTransport.dial(url, { identity: { ca: pki.caCert }, expectedRemoteIdentity: pki.otherFingerprint }))), 'EF_IDENTITY_MISMATCH', 'ca + wrong pin')
  t.equal(CODE(await dialErr(wsTransport.dial(url))), 'EF_DIAL_FAILED', 'no pin, no ca: system CA validation rejects the dev CA')
  t.equal(CODE(await dialErr(wsTransport.dial(url, { identity: { ca: pki.otherCert } }))), 'EF_DIAL_FAILED', 'wrong ca')
  t.equal(inbound.length, before, 'no inbound connection from refused dials')
  t.equal(CODE(await dialErr(wsTransport.dial(new URL('ws://127.0.0.1:1'), { expectedRemoteIdentity: pki.leafFingerprint }))),
    'EF_IDENTITY_MISMATCH', 'ws:// cannot satisfy a pin')
})

t.test('a wrong pin sends no HTTP request (pin checked before the upgrade is written)', async t => {
  let appBytes = 0
  const server = createTlsServer({ cert: pki.otherCert, key: pki.otherKey }, socket => {
    socket.on('error', () => {})
    socket.on('data', d => { appBytes += d.length })
  })
  server.on('tlsClientError', () => {})
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const port = (server.address() as { port: number }).port
  const err = await dialErr(wsTransport.dial(new URL(`wss://127.0.0.1:${port}`), { expectedRemoteIdentity: pki.leafFingerprint }))
  t.equal(CODE(err), 'EF_IDENTITY_MISMATCH')
  t.match(err, { expected: pki.leafFingerprint, actual: pki.otherFingerprint })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(appBytes, 0, 'the server received no application bytes')
})

t.test('client certificates: listener expectedRemoteIdentity', async t => {
  const { listener, next } = await listenWith('wss://127.0.0.1:0', { identity: serverIdentity, expectedRemoteIdentity: pki.otherFingerprint })
  t.teardown(() => listener.close(100))
  const url = new URL(listener.url)
  const inboundP = next()
  const client = await wsTransport.dial(url, { expectedRemoteIdentity: pki.caFingerprint, identity: { cert: pki.otherCert, key: pki.otherKey } })
  t.teardown(() => client.abort(new Error('teardown')))
  const server = await inboundP
  t.equal(server.remoteIdentity, pki.otherFingerprint, 'inbound remoteIdentity = client certificate fingerprint')
  const err = await dialErr(wsTransport.dial(url, { expectedRemoteIdentity: pki.caFingerprint }))
  t.equal(CODE(err), 'EF_DIAL_FAILED', 'no client certificate → refused')
  t.match(String((err as Error).message), /403/)
  await t.rejects(wsTransport.listen(new URL('ws://127.0.0.1:0'), { onConnection: () => {}, expectedRemoteIdentity: 'x' }), { code: 'EF_INVALID_OPTION' })
})

t.test('maxConnections refuses the extra upgrade with 503', async t => {
  const { listener } = await listenWith('ws://127.0.0.1:0', { maxConnections: 2 })
  t.teardown(() => listener.close(100))
  const url = new URL(listener.url)
  const a = await wsTransport.dial(url)
  const b = await wsTransport.dial(url)
  t.teardown(() => { a.abort(new Error('x')); b.abort(new Error('x')) })
  const err = await dialErr(wsTransport.dial(url))
  t.equal(CODE(err), 'EF_DIAL_FAILED')
  t.match(String((err as Error).message), /503/)
  await a.close()
  await withTimeout((async () => { while (listener.connections.size > 1) await new Promise(resolve => setTimeout(resolve, 10)) })(), 5000, 'slot freed')
  await new Promise(resolve => setTimeout(resolve, 50)) // the server socket closes right after the close handshake
  const c = await wsTransport.dial(url)
  t.equal(c.status, 'open', 'a freed slot can be used again')
  c.abort(new Error('done'))
})

t.test('listener: path, plain HTTP, port in use', async t => {
  const { listener } = await listenWith('ws://127.0.0.1:0/fabric')
  t.teardown(() => listener.close(100))
  t.match(listener.url, /^ws:\/\/127\.0\.0\.1:\d+\/fabric$/)
  const u = new URL(listener.url)
  const conn = await wsTransport.dial(u)
  conn.abort(new Error('done'))
  const err = await dialErr(wsTransport.dial(new URL(`ws://127.0.0.1:${u.port}/other`)))
  t.match(String((err as Error).message), /404/)
  const status = await new Promise<number | undefined>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: Number(u.port), path: '/fabric' }, res => { res.resume(); resolve(res.statusCode) })
    req.on('error', reject)
    req.end()
  })
  t.equal(status, 426, 'plain HTTP gets 426 Upgrade Required')
  await t.rejects(wsTransport.listen(new URL(`ws://127.0.0.1:${u.port}`), { onConnection: () => {} }), { code: 'EF_LISTEN_FAILED' })
  await t.rejects(wsTransport.listen(new URL('wss://127.0.0.1:0'), { onConnection: () => {} }), { code: 'EF_INVALID_OPTION' }, 'wss needs identity')
})

t.test('dial timeout and abort during the handshake leave nothing behind', async t => {
  // A TCP server that accepts and never answers the upgrade.
  const sockets = new Set<Socket>()
  const silent: NetServer = createNetServer(s => { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)); s.resume() })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); silent.close() })
  const url = new URL(`ws://127.0.0.1:${(silent.address() as { port: number }).port}`)
  const started = Date.now()
  t.equal(CODE(await dialErr(wsTransport.dial(url, { timeoutMs: 300 }))), 'EF_DIAL_TIMEOUT')
  t.ok(Date.now() - started < 2000, 'timed out promptly')
  const ac = new AbortController()
  const p = wsTransport.dial(url, { signal: ac.signal })
  setTimeout(() => ac.abort(), 100)
  t.equal(CODE(await dialErr(p)), 'EF_ABORTED')
  const gone = await withTimeout((async () => { while (sockets.size > 0) await new Promise(resolve => setTimeout(resolve, 10)) })(), 3000, 'client sockets closed')
  t.equal(gone, undefined, 'the server saw both client sockets close')
})

t.test('RTT is measured with ws ping/pong', async t => {
  const fast = createWsTransport({ pingIntervalMs: 20 })
  let server: Connection | undefined
  const listener = await fast.listen(new URL('ws://127.0.0.1:0'), { onConnection: c => { server = c } })
  t.teardown(() => listener.close(100))
  const client = await fast.dial(new URL(listener.url))
  t.teardown(() => client.abort(new Error('teardown')))
  await withTimeout((async () => {
    while (client.stats.rttMs === undefined || server?.stats.rttMs === undefined) await new Promise(resolve => setTimeout(resolve, 10))
  })(), 5000, 'rtt on both sides')
  t.ok((client.stats.rttMs ?? -1) >= 0 && (client.stats.rttMs ?? 1e9) < 1000, `client rtt ${client.stats.rttMs} ms`)
})

t.test('a long close reason is truncated, not thrown', async t => {
  const { listener, next } = await listenWith('ws://127.0.0.1:0')
  t.teardown(() => listener.close(100))
  const inboundP = next()
  const client = await wsTransport.dial(new URL(listener.url))
  const server = await inboundP
  await client.close('é'.repeat(200))
  const info = await withTimeout(server.closed(), 5000, 'server sees close')
  t.equal(info.clean, true)
  t.ok(Buffer.byteLength(info.reason ?? '') <= 123, 'reason within the RFC 6455 limit')
})
