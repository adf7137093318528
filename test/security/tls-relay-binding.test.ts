/**
 * Issue 13 item 10, "the session bound to the channel where the transport
 * allows it": a relay that terminates the edge's TLS with a certificate the
 * edge accepts and opens its own wss connection to the hub forwarded the
 * edge's join unchanged, and the hub admitted the relayed session (the relay
 * could then inject commands). The relay here holds a certificate issued
 * under the hub's CA — what a stolen CA key or a shared corporate CA gives —
 * so the edge's pin (the CA fingerprint in its token) accepts it.
 *
 * Now the edge signs the TLS exporter of its connection (RFC 5705 / RFC 8446
 * §7.5) into its hello and join proof; the hub compares it with the exporter
 * of its own end. Both legs of the relay differ: refused with
 * EF_CHANNEL_BINDING_MISMATCH, counted, the token stays unused, and the same
 * edge joins directly afterwards; reconnecting through the relay once bound
 * (only its key's signature, no token) is refused the same way. A hello without a binding, or signed with
 * another connection's, is refused the same way (raw client on the transport).
 */
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { Hub } from '../../src/hub/hub.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { issueServerCertificate } from '../../src/identity/pki.js'
import { generateKeyPairSync } from 'node:crypto'
import { edgeJoinSecret, joinProof, tokenPayloadPart } from '../../src/identity/join-proof.js'
import { rawPublicKey, signChallenge } from '../../src/identity/node-key.js'
import { decodeJoinToken } from '../../src/identity/token.js'
import { CAPABILITIES, PROTOCOL_VERSION, helloContext, isSessionMessage, parseChallenge, parseHello, parseRefused, sessionMessage } from '../../src/session/protocol.js'
import type { Envelope } from '../../src/codec/envelope.js'
import { dial } from '../../src/transport/index.js'
import { counterValue } from './helpers.js'

interface Relay { url: string, forwardedHello: () => boolean, close: () => Promise<void> }

/** A wss relay presenting `cert`: each inbound WebSocket gets its own wss connection to `target`, messages copied both ways. */
async function tlsRelay (target: string, cert: { chainPem: string, keyPem: string }): Promise<Relay> {
  let hello = false
  const server = createHttpsServer({ cert: cert.chainPem, key: cert.keyPem })
  const wss = new WebSocketServer({ server })
  wss.on('error', () => {})
  server.on('error', () => {})
  wss.on('connection', edge => {
    edge.on('error', () => {})
    const hub = new WebSocket(target, { rejectUnauthorized: false })
    hub.on('error', () => {})
    const early: Buffer[] = []
    edge.on('message', (m: Buffer) => {
      if (m.includes(Buffer.from('hello'))) hello = true
      if (hub.readyState === WebSocket.OPEN) hub.send(m); else early.push(m)
    })
    hub.on('open', () => { for (const m of early.splice(0)) hub.send(m) })
    hub.on('message', (m: Buffer) => { if (edge.readyState === WebSocket.OPEN) edge.send(m) })
    hub.on('close', () => edge.close())
    edge.on('close', () => hub.close())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `wss://127.0.0.1:${(server.address() as AddressInfo).port}`,
    forwardedHello: () => hello,
    close: async () => {
      for (const c of wss.clients) c.terminate()
      await new Promise(resolve => { wss.close(() => server.close(resolve)) })
    }
  }
}

t.test('a TLS-terminating relay with an accepted certificate cannot carry an edge\'s join', async t => {
  const root = t.testdir({})
  const hub = await Hub.start({ listen: ['wss://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(async () => await hub.close(100))
  const refusals: string[] = []
  hub.on('event', e => { if (e.type === 'handshake-refused') refusals.push(e.code) })
  const ca = { certPem: await readFile(join(root, 'hub', 'identity', 'ca.crt'), 'utf8'), keyPem: await readFile(join(root, 'hub', 'identity', 'ca.key'), 'utf8') }
  const relayCert = await issueServerCertificate(ca, { commonName: 'relay', altNames: ['127.0.0.1'], days: 1 })
  const relay = await tlsRelay(hub.urls[0] as string, relayCert)
  t.teardown(relay.close)

  const token = hub.createToken('edge-r')
  const edge = await EdgeNode.start({ hub: relay.url, nodeId: 'edge-r', token, dataDir: join(root, 'edge'), admin: false })
  t.teardown(async () => await edge.close())
  // Before the fix the relayed join was admitted: 'connected' came instead.
  const outcome = await Promise.race([
    once(edge, 'failed').then(([e]) => (e as { refusalCode: string }).refusalCode),
    once(edge, 'connected').then(() => 'joined through the relay')
  ])
  t.equal(outcome, 'EF_CHANNEL_BINDING_MISMATCH', 'the edge is refused through the relay, and stops')
  t.ok(relay.forwardedHello(), 'the relay did accept the edge\'s TLS and forward its hello (the pin passed)')
  t.ok(refusals.length >= 1 && refusals.every(c => c === 'EF_CHANNEL_BINDING_MISMATCH'), 'the hub refused it, as a typed event')
  t.ok(await counterValue(hub.registry, 'edgefabric_hub_handshake_refusals_total', { code: 'EF_CHANNEL_BINDING_MISMATCH' }) >= 1, 'and counted it')
  t.notOk(hub.nodes().some(n => n.nodeId === 'edge-r'), 'no session for the node')

  // A relay that strips the binding, or signs another one into a hello of its own making (a raw
  // client on a direct wss connection stands in for it): refused the same way, the token unused.
  const pins = decodeJoinToken(token).pins
  for (const how of ['none', 'other'] as const) {
    const conn = await dial(hub.urls[0] as string, { expectedRemoteIdentity: pins.tls })
    t.teardown(async () => await conn.close())
    t.ok(conn.channelBinding?.() instanceof Uint8Array, 'a wss connection offers its binding')
    const refused = new Promise<string>(resolve => {
      conn.on('message', env => {
        if (!isSessionMessage(env)) return
        if (env.router.operation === 'refused') resolve(parseRefused(env).code)
        if (env.router.operation === 'welcome') resolve('welcome')
        if (env.router.operation !== 'challenge') return
        const ch = parseChallenge(env)
        const { privateKey, publicKey } = generateKeyPairSync('ed25519')
        const key = rawPublicKey(publicKey)
        const cb = how === 'other' ? new Uint8Array(32).fill(7) : undefined
        const payload = tokenPayloadPart(token)
        conn.send(sessionMessage('hello', {
          version: PROTOCOL_VERSION,
          node: 'edge-r',
          key,
          sig: signChallenge({ privateKey }, ch.nonce, helloContext('edge-r', ch.hub, cb)),
          join: { payload, proof: joinProof(edgeJoinSecret(token), payload, { node: 'edge-r', hub: ch.hub, nonce: ch.nonce, key, ...(cb !== undefined ? { channelBinding: cb } : {}) }) },
          capabilities: [...CAPABILITIES],
          labels: {},
          ...(cb !== undefined ? { channelBinding: cb } : {})
        }, 'edge-r'), { channel: 'control' })
      })
    })
    t.equal(await refused, 'EF_CHANNEL_BINDING_MISMATCH', `a hello with ${how === 'none' ? 'no' : 'another connection\'s'} binding is refused`)
  }

  // The token was never used: the same edge joins directly.
  const direct = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-r', token, dataDir: join(root, 'edge3'), admin: false })
  t.teardown(async () => await direct.close())
  await direct.waitConnected(10_000)
  t.ok(hub.nodes().some(n => n.nodeId === 'edge-r'), 'direct wss join works: both ends compute the same binding')

  // The bound node reconnecting through the relay (no token any more, only its key's signature): refused too.
  await direct.close()
  refusals.length = 0
  const again = await EdgeNode.start({ hub: relay.url, nodeId: 'edge-r', dataDir: join(root, 'edge3'), admin: false })
  t.teardown(async () => await again.close())
  const second = await Promise.race([
    once(again, 'failed').then(([e]) => (e as { refusalCode: string }).refusalCode),
    once(again, 'connected').then(() => 'reconnected through the relay')
  ])
  t.equal(second, 'EF_CHANNEL_BINDING_MISMATCH', 'a bound node\'s session cannot be relayed either')
})

t.test('a hello\'s binding is bytes of a bounded length (typed refusal, not a crash)', async t => {
  const hello = (cb: unknown): Envelope => sessionMessage('hello', { version: PROTOCOL_VERSION, node: 'n', key: new Uint8Array(32), sig: new Uint8Array(64), capabilities: [], channelBinding: cb }, 'n')
  t.same(parseHello(hello(new Uint8Array(32).fill(1))).channelBinding, new Uint8Array(32).fill(1))
  for (const bad of [new Uint8Array(0), new Uint8Array(65), 'abc', 42]) t.throws(() => parseHello(hello(bad)), { code: 'EF_PROTOCOL' })
})
