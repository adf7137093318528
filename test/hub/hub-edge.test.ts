/**
 * Hub ↔ edge runtime, in one process over real transports: joining, refusals,
 * routing both ways, request/response, broadcast, edge-to-edge, takeover.
 */
import { cp, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { HubEvent, HubOptions } from '../../src/hub/types.js'

const fast = { backoff: { baseMs: 20, capMs: 200 }, admin: false as const }

async function startHub (t: Tap.Test, listen: string[], extra: Partial<HubOptions> = {}): Promise<Hub> {
  const hub = await Hub.start({ listen, dataDir: t.testdir({}) + '/hub', admin: false, ...extra })
  t.teardown(() => hub.close(200))
  return hub
}

async function startEdge (t: Tap.Test, hub: Hub, nodeId: string, extra: Record<string, unknown> = {}): Promise<EdgeNode> {
  const edge = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId, token: hub.createToken(nodeId), dataDir: t.testdir({}) + '/' + nodeId, ...fast, ...extra })
  t.teardown(() => edge.close())
  return edge
}

function msg (content: unknown, extra: Partial<Parameters<typeof newMessage>[0]> = {}): Envelope {
  return newMessage({ source: 'test', group: 'app', operation: 'update', resource: 'default/thing/a', content, ...extra })
}

declare global { namespace Tap { type Test = import('tap').Test } }

for (const url of ['memory://', 'ws://127.0.0.1:0', 'wss://127.0.0.1:0', 'quic://127.0.0.1:0']) {
  t.test(`join and route both ways over ${url}`, async t => {
    const hub = await startHub(t, [url])
    const events: HubEvent[] = []
    hub.on('event', e => events.push(e))
    const edge = await startEdge(t, hub, 'edge-1', { labels: { zone: 'a' } })
    const app = edge.register({ name: 'app', group: 'app' })
    await edge.waitConnected(10_000)
    const node = hub.node('edge-1')
    t.equal(node?.status, 'connected')
    t.equal(node?.labels.zone, 'a', 'labels reported in hello')
    t.ok(events.some(e => e.type === 'node-connected' && e.nodeId === 'edge-1'))

    // down: hub → module by group
    const got = new Promise<Envelope>(resolve => app.onMessage(env => { resolve(env) }))
    await hub.send('edge-1', msg({ n: 1 }))
    t.same((await got).content, { n: 1 })

    // up: module → hub, stamped with the authenticated node id
    const it = hub.messages()[Symbol.asyncIterator]()
    await app.sendUpstream(msg({ up: true }, { source: 'app' }))
    const up = await it.next()
    t.equal(up.value?.nodeId, 'edge-1')
    t.same(up.value?.envelope.content, { up: true })
    await it.return?.()

    // hub request → module respond
    const responder = edge.register({ name: 'calc', group: 'calc' })
    responder.onMessage(async env => { await responder.respond(env, { doubled: (env.content as { x: number }).x * 2 }) })
    const resp = await hub.request('edge-1', msg({ x: 21 }, { group: 'calc' }), { timeoutMs: 5000 })
    t.same(resp.content, { doubled: 42 })
    t.equal(resp.router.operation, 'response')
  })
}

t.test('requests: edge → cloud, unroutable, timeout, offline', async t => {
  const hub = await startHub(t, ['memory://'], { requestTimeoutMs: 300 })
  const edge = await startEdge(t, hub, 'edge-1')
  const app = edge.register({ name: 'app', group: 'app' })
  await edge.waitConnected()
  hub.on('message', ({ nodeId, envelope }) => {
    if (envelope.header.sync === true) void hub.respond(nodeId, envelope, { pong: envelope.content })
  })
  const r = await app.requestUpstream(msg('ping'), { timeoutMs: 2000 })
  t.same(r.content, { pong: 'ping' })

  const err = await hub.request('edge-1', msg({}, { group: 'nobody' })).catch((e: unknown) => e)
  t.match(err, { code: 'EF_REMOTE_ERROR', remoteCode: 'EF_NO_MODULE' }, 'no module → error response at once')

  edge.register({ name: 'mute', group: 'mute' }) // never answers
  const started = Date.now()
  const err2 = await hub.request('edge-1', msg({}, { group: 'mute' })).catch((e: unknown) => e)
  t.match(err2, { code: 'EF_REQUEST_TIMEOUT' })
  t.ok(Date.now() - started < 2000)

  await t.rejects(hub.send('edge-9', msg({})), { code: 'EF_NODE_OFFLINE' })
})

t.test('refusals are typed and final where retrying cannot help', async t => {
  const hub = await startHub(t, ['memory://'])
  const other = await startHub(t, ['memory://'])
  const dir = t.testdir({})

  // token signed by another hub (pins also mismatch → the dial itself refuses the hub)
  const e1 = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-1', token: other.createToken('edge-1'), dataDir: dir + '/a', ...fast })
  t.teardown(() => e1.close())
  const err1 = await e1.waitConnected(3000).catch((e: unknown) => e)
  t.match(err1, { code: 'EF_JOIN_REFUSED', refusalCode: 'EF_HUB_IDENTITY_MISMATCH', retryable: false }, 'a hub that is not the pinned one is final')
  t.equal(e1.state, 'failed')

  // token for another node name
  await t.rejects(EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-2', token: hub.createToken('edge-1'), dataDir: dir + '/b', ...fast }), { code: 'EF_INVALID_OPTION' })

  // node name already bound to another key
  const first = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-3', token: hub.createToken('edge-3'), dataDir: dir + '/c', ...fast })
  await first.waitConnected()
  await first.close()
  const impostor = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-3', token: hub.createToken('edge-3'), dataDir: dir + '/d', ...fast })
  t.teardown(() => impostor.close())
  const err3 = await impostor.waitConnected(3000).catch((e: unknown) => e)
  t.match(err3, { code: 'EF_JOIN_REFUSED', refusalCode: 'EF_NODE_KEY_MISMATCH', retryable: false })
  t.equal(impostor.state, 'failed')

  // expired token
  const expired = hub.createToken('edge-4', 1)
  await new Promise(resolve => setTimeout(resolve, 1100))
  const late = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-4', token: expired, dataDir: dir + '/e', ...fast })
  t.teardown(() => late.close())
  t.match(await late.waitConnected(3000).catch((e: unknown) => e), { refusalCode: 'EF_TOKEN_EXPIRED' })
})

t.test('node limit is retryable: the edge keeps trying and gets in when a slot frees', async t => {
  const hub = await startHub(t, ['memory://'], { maxNodes: 1 })
  const refused: string[] = []
  hub.on('event', e => { if (e.type === 'handshake-refused') refused.push(e.code) })
  const a = await startEdge(t, hub, 'edge-a')
  await a.waitConnected()
  const b = await startEdge(t, hub, 'edge-b')
  await new Promise(resolve => setTimeout(resolve, 300))
  t.not(b.state, 'connected')
  t.not(b.state, 'failed', 'not a final refusal')
  t.ok(refused.includes('EF_NODE_LIMIT'))
  await a.close()
  await b.waitConnected(5000)
  t.equal(hub.node('edge-b')?.status, 'connected')
})

t.test('last connection wins; the old session is told why', async t => {
  const hub = await startHub(t, ['memory://'])
  const events: HubEvent[] = []
  hub.on('event', e => events.push(e))
  const dir = t.testdir({})
  const token = hub.createToken('edge-1')
  const a = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-1', token, dataDir: dir, ...fast, backoff: { baseMs: 5000, capMs: 5000 } })
  t.teardown(() => a.close())
  await a.waitConnected()
  const reasons: string[] = []
  a.on('disconnected', ({ reason }) => reasons.push(reason))
  // Same node key from another data dir (one process per data dir: EF_DATA_DIR_LOCKED otherwise).
  const dirB = join(t.testdirName, '..', `${basename(t.testdirName)}-b`)
  await cp(join(dir, 'identity'), join(dirB, 'identity'), { recursive: true })
  t.teardown(() => rm(dirB, { recursive: true, force: true }))
  await t.rejects(EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-1', token, dataDir: dir, ...fast }), { code: 'EF_DATA_DIR_LOCKED' }, 'a second edge on the same data dir is refused')
  const b = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-1', token, dataDir: dirB, ...fast })
  t.teardown(() => b.close())
  await b.waitConnected()
  await new Promise(resolve => setTimeout(resolve, 100))
  t.ok(events.some(e => e.type === 'session-replaced'))
  t.match(reasons[0], /replaced by a newer connection/)
  t.equal(hub.nodes().filter(n => n.status === 'connected').length, 1)
})

t.test('broadcast by labels and edge-to-edge forwarding with permission', async t => {
  const hub = await startHub(t, ['memory://'], { edgeToEdge: (from, to) => from.labels.zone === to.labels.zone })
  const e1 = await startEdge(t, hub, 'edge-1', { labels: { zone: 'a' } })
  const e2 = await startEdge(t, hub, 'edge-2', { labels: { zone: 'a' } })
  const e3 = await startEdge(t, hub, 'edge-3', { labels: { zone: 'b' } })
  const apps = [e1, e2, e3].map(e => e.register({ name: 'app', group: 'app' }))
  await Promise.all([e1, e2, e3].map(e => e.waitConnected()))
  const seen: string[] = []
  let direct: ((env: Envelope) => void) | undefined
  apps.forEach((a, i) => a.onMessage(env => {
    if (env.content === 'direct') direct?.(env)
    else seen.push(`edge-${i + 1}`)
  }))
  const r = await hub.broadcast({ zone: 'a' }, msg('hello zone a'))
  t.same(r.sent.sort(), ['edge-1', 'edge-2'])
  await new Promise(resolve => setTimeout(resolve, 50))
  t.same(seen.sort(), ['edge-1', 'edge-2'])

  // edge-1 → edge-2 (same zone): allowed, sender stamped by the hub
  const got = new Promise<Envelope>(resolve => { direct = resolve })
  await apps[0]?.sendUpstream(msg('direct', { destination: 'node:edge-2/app', source: 'node:edge-9/forged' }))
  const env = await got
  t.equal(env.router.source, 'node:edge-1/forged', 'the hub stamps the real sender node')
  t.equal(env.router.destination, 'app')

  // edge-1 → edge-3 (other zone): denied with an error response
  const denied = await apps[0]?.requestUpstream(msg('nope', { destination: 'node:edge-3/app' }), { timeoutMs: 2000 })
  t.equal(denied?.router.operation, 'error')
  t.match(denied?.content, { code: 'EF_FORBIDDEN' })
})

t.test('connection state is broadcast to modules', async t => {
  const hub = await startHub(t, ['memory://'])
  const edge = await startEdge(t, hub, 'edge-1')
  const mod = edge.register({ name: 'watcher', group: 'watch', connectionEvents: true })
  const states: string[] = []
  mod.onMessage(env => { states.push(env.router.operation) })
  await edge.waitConnected()
  await hub.disconnect('edge-1', 'operator test')
  await new Promise(resolve => setTimeout(resolve, 400))
  t.ok(states.includes('connected'))
  t.ok(states.includes('disconnected'))
  t.equal(states.at(-1), 'connected', 'reconnected after the disconnect')
})

// issue 16: with the ws transport ping off by default, an idle ws node's RTT at the hub comes from
// the edge's pings (PingContent.r); before, the hub only had the ws ping's figure.
t.test('the hub knows an idle ws node\'s RTT without a transport ping', async t => {
  const hub = await startHub(t, ['ws://127.0.0.1:0'], { heartbeatMs: 100 })
  const edge = await startEdge(t, hub, 'edge-1')
  await edge.waitConnected(10_000)
  const rtt = (): number | undefined => hub.nodes().find(n => n.nodeId === 'edge-1')?.rttMs
  const end = Date.now() + 10_000
  while (rtt() === undefined && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  t.type(rtt(), 'number', `hub RTT for the idle node: ${String(rtt())} ms`)
  t.type(edge.rttMs, 'number', 'the edge measured it itself')
})
