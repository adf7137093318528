/**
 * quic:// behaviour beyond the shared compliance suite: identity pinning on
 * both sides, setup protocol violations from a raw QUIC peer, refusals,
 * close-protocol corner cases, options and identity helpers.
 */
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import type { Channel, Connection, Listener } from '../../src/transport/types.js'
import {
  createQuicTransport, decodeQuicIdentity, encodeQuicIdentity, generateQuicIdentity, quicPeerId
} from '../../src/transport/quic.js'
import { quicIdentityBytes } from '../../src/transport/quic-identity.js'
import { nativeBinding, type NativeConnection } from '../../src/transport/quic-native.js'

const quic = createQuicTransport({ maxIdleTimeoutMs: 3000, keepAliveIntervalMs: 1000 })
const CODE = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code

function msg (seq: number, content: unknown = { seq }, channel: Channel = 'normal'): Envelope {
  return newMessage({ source: 't', group: 'g', operation: 'update', resource: `ns/x/${seq}`, content, priority: channel })
}

function collect (conn: Connection, n: number): Promise<Envelope[]> {
  const got: Envelope[] = []
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n}`)), 20_000)
    conn.on('message', env => {
      got.push(env)
      if (got.length === n) { clearTimeout(timer); resolve(got) }
    })
  })
}

async function pair (listenExtra = {}, dialExtra = {}): Promise<{ listener: Listener, client: Connection, server: Connection }> {
  let onServer!: (c: Connection) => void
  const serverP = new Promise<Connection>(resolve => { onServer = resolve })
  const listener = await quic.listen(new URL('quic://127.0.0.1:0'), { ...listenExtra, onConnection: c => onServer(c) })
  const client = await quic.dial(new URL(listener.url), { expectedRemoteIdentity: listener.identity as string, ...dialExtra })
  return { listener, client, server: await serverP }
}

t.test('identity helpers', async t => {
  const key = await generateQuicIdentity()
  const bytes = encodeQuicIdentity(key)
  t.equal(quicPeerId(decodeQuicIdentity(bytes)), quicPeerId(key), 'protobuf round trip keeps the peer id')
  t.equal(quicPeerId(bytes), quicPeerId(key), 'peer id from bytes')
  t.match(quicPeerId(key), /^12D3KooW/, 'Ed25519 peer id')
  t.throws(() => decodeQuicIdentity(new Uint8Array([1, 2, 3])), { code: 'EF_INVALID_OPTION' })
  await t.rejects(quic.listen(new URL('quic://127.0.0.1:0'), { identity: 'not a key', onConnection: () => {} }), { code: 'EF_INVALID_OPTION' })
  t.throws(() => createQuicTransport({ maxIdleTimeoutMs: 1000, keepAliveIntervalMs: 1000 }), { code: 'EF_INVALID_OPTION' })
})

t.test('a persisted identity gives a stable listener id; the listener pins the dialer', async t => {
  const serverKey = await generateQuicIdentity()
  const clientKey = await generateQuicIdentity()
  const stranger = await generateQuicIdentity()
  const accepted: Connection[] = []
  const listener = await quic.listen(new URL('quic://127.0.0.1:0'), {
    identity: encodeQuicIdentity(serverKey),
    expectedRemoteIdentity: quicPeerId(clientKey),
    onConnection: c => accepted.push(c)
  })
  t.teardown(() => listener.close(100))
  t.equal(listener.identity, quicPeerId(serverKey))
  t.match(listener.url, /^quic:\/\/127\.0\.0\.1:\d+$/)
  t.not(listener.url, 'quic://127.0.0.1:0', 'real port in the URL')

  const ok = await quic.dial(new URL(listener.url), { identity: clientKey, expectedRemoteIdentity: listener.identity })
  t.equal(ok.remoteIdentity, listener.identity)
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(accepted.length, 1)
  t.equal(accepted[0]?.remoteIdentity, quicPeerId(clientKey), 'listener sees the dialer identity')
  await ok.close()

  const err = await quic.dial(new URL(listener.url), { identity: stranger, expectedRemoteIdentity: listener.identity })
    .then(c => { c.abort(new Error('x')); return undefined }, (e: unknown) => e)
  t.equal(CODE(err), 'EF_IDENTITY_MISMATCH', 'listener refuses an unexpected dialer')
  t.match(err, { expected: quicPeerId(clientKey), actual: quicPeerId(stranger) })
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(accepted.length, 1, 'refused connection never reaches onConnection')
})

t.test('maxConnections refuses with a typed dial error', async t => {
  const { listener, client } = await pair({ maxConnections: 1 })
  t.teardown(() => listener.close(100))
  const err = await quic.dial(new URL(listener.url), { expectedRemoteIdentity: listener.identity as string })
    .then(c => { c.abort(new Error('x')); return undefined }, (e: unknown) => e)
  t.equal(CODE(err), 'EF_DIAL_FAILED')
  t.match(String(err), /maxConnections/)
  t.equal(client.status, 'open', 'the first connection is untouched')
})

t.test('setup protocol violations from a raw QUIC peer are refused', async t => {
  const binding = await nativeBinding()
  const accepted: Connection[] = []
  const listener = await quic.listen(new URL('quic://127.0.0.1:0'), { maxFrameSize: 1024, onConnection: c => accepted.push(c) })
  t.teardown(() => listener.close(100))
  const port = Number(new URL(listener.url).port)
  const config = new binding.QuinnConfig({
    privateKeyProto: quicIdentityBytes(await generateQuicIdentity()),
    handshakeTimeout: 3000,
    maxIdleTimeout: 3000,
    keepAliveInterval: 1000,
    maxConcurrentStreamLimit: 8,
    maxStreamData: 1 << 20,
    maxConnectionData: 1 << 22,
    receiveBufferSize: 1 << 20,
    sendBufferSize: 1 << 20
  })
  async function raw (prefaces: number[][], waitMs = 5000): Promise<number> {
    const client = new binding.Client(config, 0)
    const conn: NativeConnection = await client.outboundConnection('127.0.0.1', port)
    for (const p of prefaces) {
      const s = await conn.outboundStream()
      await s.write(Uint8Array.from(p))
    }
    const started = Date.now()
    await Promise.race([conn.closed(), new Promise(resolve => setTimeout(resolve, waitMs))])
    client.abort()
    return Date.now() - started
  }
  t.ok(await raw([[9]]) < 4000, 'unknown channel preface: connection dropped')
  t.ok(await raw([[0], [0]]) < 4000, 'two control streams: connection dropped')
  t.ok(await raw([[0, 0x00, 0x10, 0x00, 0x00, 0]]) < 4000, 'a declared frame beyond maxFrameSize during setup: dropped')
  t.equal(accepted.length, 0, 'none reached onConnection')
  t.ok(await raw([[0], [1], [2], [3]], 300) >= 300, 'a well-formed setup stays up')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(accepted.length, 1, 'and reaches onConnection')
})

t.test('a huge declared frame length aborts before allocating', async t => {
  const { listener, client, server } = await pair({ maxFrameSize: 1024 })
  t.teardown(() => listener.close(100))
  client.send(msg(1, new Uint8Array(4096), 'bulk'))
  const info = await server.closed()
  t.equal(CODE(info.error), 'EF_FRAME_TOO_LARGE')
  t.match(info.error, { limit: 1024 })
})

t.test('bulk data in flight when CLOSE arrives is delivered before the clean close', async t => {
  const { listener, client, server } = await pair()
  t.teardown(() => listener.close(100))
  const n = 64
  const got = collect(server, n + 1)
  const chunk = new Uint8Array(64 * 1024).fill(7)
  for (let i = 0; i < n; i++) client.send(msg(i, chunk, 'bulk'))
  client.send(msg(n, 'last control', 'control'))
  const closing = client.close('bye')
  const all = await got
  t.equal(all.length, n + 1)
  await closing
  t.match(await server.closed(), { initiator: 'remote', clean: true, reason: 'bye' })
  t.match(await client.closed(), { initiator: 'local', clean: true })
})

t.test('graceful close completes while the receiver is paused; data waits for resume', async t => {
  const { listener, client, server } = await pair()
  t.teardown(() => listener.close(100))
  client.pause()
  const n = 32
  for (let i = 0; i < n; i++) server.send(msg(i, new Uint8Array(64 * 1024), 'bulk'))
  await server.close('done')
  t.match(await server.closed(), { initiator: 'local', clean: true }, 'closer finishes without the paused peer delivering')
  let delivered = 0
  client.on('message', () => { delivered++ })
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(delivered, 0, 'nothing delivered while paused')
  t.equal(client.status, 'closing', 'peer holds the clean close until its buffer is delivered')
  client.resume()
  t.match(await client.closed(), { initiator: 'remote', clean: true, reason: 'done' })
  t.equal(delivered, n, 'everything delivered after resume')
})

t.test('simultaneous close from both sides is clean on both', async t => {
  const { listener, client, server } = await pair()
  t.teardown(() => listener.close(100))
  const a = collect(server, 10)
  const b = collect(client, 10)
  for (let i = 0; i < 10; i++) { client.send(msg(i)); server.send(msg(i)) }
  await Promise.all([client.close('c'), server.close('s')])
  t.equal((await a).length, 10)
  t.equal((await b).length, 10)
  t.match(await client.closed(), { clean: true })
  t.match(await server.closed(), { clean: true })
})

t.test('dial cancellation and timeouts', async t => {
  // A bound UDP socket that never answers: the QUIC handshake just hangs.
  const { createSocket } = await import('node:dgram')
  const sink = createSocket('udp4')
  sink.on('error', () => {})
  await new Promise<void>(resolve => sink.bind(0, '127.0.0.1', resolve))
  t.teardown(() => sink.close())
  const url = new URL(`quic://127.0.0.1:${sink.address().port}`)

  let started = Date.now()
  const err = await quic.dial(url, { timeoutMs: 300 }).then(() => undefined, (e: unknown) => e)
  t.equal(CODE(err), 'EF_DIAL_TIMEOUT')
  t.ok(Date.now() - started < 1500, 'timeout honoured')

  const ac = new AbortController()
  started = Date.now()
  const p = quic.dial(url, { signal: ac.signal, timeoutMs: 5000 })
  setTimeout(() => ac.abort(), 100)
  t.equal(CODE(await p.then(() => undefined, (e: unknown) => e)), 'EF_ABORTED')
  t.ok(Date.now() - started < 1000, 'abort honoured mid-handshake')

  await t.rejects(quic.dial(new URL('quic://127.0.0.1'), {}), { code: 'EF_UNSUPPORTED_URL' }, 'port required')
  await t.rejects(quic.dial(new URL('ws://127.0.0.1:1'), {}), { code: 'EF_UNSUPPORTED_URL' })
})

t.test('listening on a port in use is a typed error', async t => {
  const first = await quic.listen(new URL('quic://127.0.0.1:0'), { onConnection: () => {} })
  t.teardown(() => first.close(100))
  await t.rejects(quic.listen(new URL(first.url), { onConnection: () => {} }), { code: 'EF_LISTEN_FAILED' })
})

t.test('stats and rtt', async t => {
  const { listener, client, server } = await pair()
  t.teardown(() => listener.close(100))
  const got = collect(server, 1)
  client.send(msg(1, 'x'))
  await got
  t.equal(client.stats.messagesSent, 1)
  t.equal(typeof client.stats.rttMs, 'number', 'rtt measured (0 ms on loopback)')
  t.equal(client.headOfLineBlocking, false)
  t.equal(client.transport, 'quic')
  t.match(client.remoteAddress, /^127\.0\.0\.1:\d+$/)
})
