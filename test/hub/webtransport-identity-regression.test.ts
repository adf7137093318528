/**
 * Regression: an edge joining over https:// (WebTransport) was refused with
 * EF_HUB_IDENTITY_MISMATCH. The join token pins the hub's CA (DESIGN.md §9),
 * but WebTransport can only pin a LEAF certificate hash (valid ≤ 14 days),
 * so the CA hash never matched, and the hub served its 365-day server.pem,
 * which WebTransport pinning refuses anyway. Now the hub serves a short-lived
 * leaf issued by its CA and the dialer verifies, before anything is sent,
 * that the leaf was signed by the pinned CA, then pins that leaf
 * (src/transport/webtransport-pin.ts, src/transport/tls-pin.ts).
 *
 * The security property is tested too: a hub with its own CA, and an
 * impostor presenting its own leaf plus a copy of the pinned CA certificate,
 * are refused with EF_HUB_IDENTITY_MISMATCH and never see the join token.
 */
import t, { type Test } from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { ManualClock } from '../../src/util/clock.js'
import { Hub } from '../../src/hub/hub.js'
import { certificateFingerprint, certificateValidity } from '../../src/identity/tls.js'
import { dial, listen } from '../../src/transport/index.js'
import type { Connection } from '../../src/transport/types.js'
import { webtransportStatus } from '../../src/transport/webtransport.js'
import { peekCertificate } from '../../src/transport/webtransport-pin.js'
import { forgeChain } from '../transport/forged-cert.js'

const fast = { backoff: { baseMs: 20, capMs: 200 }, admin: false as const }
const URL_ = 'https://127.0.0.1:0/edgefabric'

async function startHub (t: Test): Promise<Hub> {
  const hub = await Hub.start({ listen: [URL_], dataDir: t.testdir({}) + '/hub', admin: false })
  t.teardown(() => hub.close(200))
  return hub
}

async function startEdge (t: Test, hubUrl: string, token: string, nodeId = 'edge-1'): Promise<EdgeNode> {
  const edge = await EdgeNode.start({ hub: hubUrl, nodeId, token, dataDir: t.testdir({}) + '/' + nodeId, ...fast })
  t.teardown(() => edge.close())
  return edge
}

function msg (content: unknown): Envelope {
  return newMessage({ source: 'test', group: 'app', operation: 'update', resource: 'default/thing/a', content })
}

const status = await webtransportStatus()
t.comment(`WebTransport mode on this machine: ${status.mode}${status.reason !== undefined ? ` — ${status.reason}` : ''}`)

if (status.mode === 'unavailable') {
  // A separate, valid product state: the transport says so plainly (EF_TRANSPORT_UNAVAILABLE).
  t.test('https:// hub without WebTransport', async t => {
    await t.rejects(Hub.start({ listen: [URL_], dataDir: t.testdir({}) + '/hub', admin: false }), { code: 'EF_TRANSPORT_UNAVAILABLE' })
  })
  t.pass(`skipped the join tests: WebTransport unavailable here: ${status.reason ?? ''}`)
} else {
  // An HTTP/3 listener is UDP only: the dialer has no TCP port to read the chain from, so a
  // CA pin cannot be resolved to the leaf there yet (see src/transport/webtransport-pin.ts).
  const todo = status.mode === 'http3' ? 'HTTP/3-only listener: no TCP certificate read for CA pins yet' : false
  t.test('edge joins a hub over https:// with a token pinning the hub CA, messages flow both ways', { todo }, async t => {
    const hub = await startHub(t)
    const url = hub.urls[0] as string
    t.match(url, /^https:\/\/127\.0\.0\.1:\d+\/edgefabric$/)
    const edge = await startEdge(t, url, hub.createToken('edge-1'))
    const app = edge.register({ name: 'app', group: 'app' })
    await edge.waitConnected(15_000)
    t.equal(hub.node('edge-1')?.status, 'connected')
    t.equal(hub.node('edge-1')?.transport, 'webtransport', 'the session runs over WebTransport')

    const down = new Promise<Envelope>(resolve => app.onMessage(env => { resolve(env) }))
    await hub.send('edge-1', msg({ n: 1 }))
    t.same((await down).content, { n: 1 }, 'hub → edge')

    const it = hub.messages()[Symbol.asyncIterator]()
    await app.sendUpstream(msg({ up: true }))
    const up = await it.next()
    t.equal(up.value?.nodeId, 'edge-1')
    t.same(up.value?.envelope.content, { up: true }, 'edge → hub')
    await it.return?.()

    // What the transport verified: the leaf the hub serves, not the CA the token pins.
    const listenerIdentity = hub.transportListeners[0]?.identity as string
    t.not(listenerIdentity, hub.identity.caFingerprint)
    t.not(listenerIdentity, hub.identity.serverFingerprint, 'https:// does not serve the 365-day server.pem')
    const { notBefore, notAfter } = certificateValidity(await leafDer(hub))
    t.ok(notAfter.getTime() - notBefore.getTime() <= 14 * 86_400_000, 'the served leaf is valid for at most 14 days')
    const c: Connection = await dial(url, { expectedRemoteIdentity: hub.identity.caFingerprint })
    t.equal(c.remoteIdentity, listenerIdentity, 'a CA-pinned dial reports the verified leaf, as wss:// does')
    await c.close()
  })

  t.test('the https:// leaf is reissued under the same CA while the hub runs; tokens stay valid', { todo }, async t => {
    const hub = await startHub(t)
    const url = hub.urls[0] as string
    const e1 = await startEdge(t, url, hub.createToken('edge-1'))
    await e1.waitConnected(15_000)
    const listener = hub.transportListeners[0]
    const before = listener?.identity as string
    const after = await hub.rotateWebTransportCertificate()
    t.match(after, /^[0-9a-f]{64}$/)
    t.not(after, before, 'a new leaf')
    t.equal(listener?.identity, after, 'the listener reports the new leaf')
    t.same(await leafDer(hub).then(d => certificateFingerprint(d)), after, 'and serves it to new connections')
    t.equal(hub.node('edge-1')?.status, 'connected', 'the open session is unaffected')
    const e2 = await startEdge(t, url, hub.createToken('edge-2'), 'edge-2')
    await e2.waitConnected(15_000)
    const app = e2.register({ name: 'app', group: 'app' })
    const down = new Promise<Envelope>(resolve => app.onMessage(env => { resolve(env) }))
    await hub.send('edge-2', msg({ after: 'rotation' }))
    t.same((await down).content, { after: 'rotation' }, 'a new edge joins over the new leaf with a CA-pinning token')
    const c = await dial(url, { expectedRemoteIdentity: before }).catch((e: unknown) => e)
    t.match(c, { code: 'EF_IDENTITY_MISMATCH' }, 'the old leaf is no longer served')
  })

  t.test('the hub schedules the reissue half-way through the leaf lifetime', { todo }, async t => {
    const clock = new ManualClock()
    const hub = await Hub.start({ listen: [URL_], dataDir: t.testdir({}) + '/hub', admin: false, clock })
    t.teardown(() => hub.close(200))
    const listener = hub.transportListeners[0]
    const before = listener?.identity
    clock.advance(6 * 86_400_000)
    await new Promise(resolve => setTimeout(resolve, 200))
    t.equal(listener?.identity, before, 'not after 6 days')
    clock.advance(1 * 86_400_000 + 60_000)
    t.ok(await eventually(() => listener?.identity !== before, 5000), 'reissued after 7 days')
    const c = await dial(hub.urls[0] as string, { expectedRemoteIdentity: hub.identity.caFingerprint })
    t.equal(c.remoteIdentity, listener?.identity, 'the new leaf is served and chains to the CA')
    await c.close()
  })

  t.test('a hub whose certificate the pinned CA did not issue is refused (EF_HUB_IDENTITY_MISMATCH)', { todo }, async t => {
    const hub = await startHub(t)
    const token = hub.createToken('edge-1')

    // 1. another hub: its own dev CA
    const other = await startHub(t)
    const e1 = await startEdge(t, other.urls[0] as string, token)
    const err1 = await e1.waitConnected(10_000).catch((e: unknown) => e)
    t.match(err1, { code: 'EF_JOIN_REFUSED', refusalCode: 'EF_HUB_IDENTITY_MISMATCH', retryable: false }, 'another hub is final')
    t.equal(e1.state, 'failed')
    t.equal(other.node('edge-1'), undefined, 'the other hub never saw a join')

    // 2. an impostor: its own leaf claiming the hub CA as issuer, plus a copy of the
    //    (public) hub CA certificate. Node links this chain by name like a real one.
    const forged = await forgeChain(hub.identity.tls.caCertPem)
    let accepted = 0
    const impostor = await listen(URL_, { identity: { cert: forged.cert, key: forged.key }, onConnection: c => { accepted++; c.abort(new Error('impostor')) } })
    t.teardown(() => impostor.close(100))
    const e2 = await startEdge(t, impostor.url, token, 'edge-1')
    const err2 = await e2.waitConnected(10_000).catch((e: unknown) => e)
    t.match(err2, { code: 'EF_JOIN_REFUSED', refusalCode: 'EF_HUB_IDENTITY_MISMATCH', retryable: false }, 'a forged chain is final')
    t.match((err2 as Error).message, /did not issue the server certificate/, 'the reason names the failed signature check')
    t.equal(accepted, 0, 'no WebTransport session was opened to the impostor: the token was never sent')

    // The same at the transport level, and the impostor's exact leaf pin still works
    // (a leaf pin is an explicit trust decision; CA pins are what must not be forgeable).
    await t.rejects(dial(impostor.url, { expectedRemoteIdentity: hub.identity.caFingerprint }), { code: 'EF_IDENTITY_MISMATCH', actual: forged.leafFingerprint })
    const direct = await dial(impostor.url, { expectedRemoteIdentity: forged.leafFingerprint }).catch((e: unknown) => e)
    t.notOk(direct instanceof Error, 'pinning the impostor leaf itself connects')
    if (!(direct instanceof Error)) (direct as Connection).abort(new Error('done'))
  })
}

async function eventually (cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (cond()) return true
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return cond()
}

/** The leaf the hub's https:// listener presents (read over TLS on TCP, as a dialer sees it). */
async function leafDer (hub: Hub): Promise<Uint8Array> {
  const u = new URL(hub.urls[0] as string)
  const peer = await peekCertificate(u.hostname, Number(u.port), 3000)
  if (peer?.chain[0] === undefined) throw new Error('no certificate read')
  return peer.chain[0]
}
