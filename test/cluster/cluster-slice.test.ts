/**
 * Cluster mode end to end in one process (issue 17, items 2–4): a real
 * 3-server NATS cluster with JetStream, two hubs in cluster mode, real edges
 * over wss and quic on loopback.
 */
import t from 'tap'
import { copyFileSync, mkdirSync } from 'node:fs'
import { connect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(180_000)

const fast = { backoff: { baseMs: 20, capMs: 300 }, admin: false as const }

function msg (content: unknown, extra: Partial<Parameters<typeof newMessage>[0]> = {}): Envelope {
  return newMessage({ source: 'test', group: 'app', operation: 'update', resource: 'default/thing/a', content, ...extra })
}

t.test('two hubs share identity, bindings, presence, routing and durable outboxes', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t)
  const a = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  const b = await startClusterHub(t, nats, 'hub-b', ['quic://127.0.0.1:0', 'wss://127.0.0.1:0'])

  t.equal(b.identity.caFingerprint, a.identity.caFingerprint, 'hub B adopted the cluster CA')
  t.equal(b.identity.quicPeerId, a.identity.quicPeerId, 'and the QUIC key')

  // A token minted by hub A works against hub B.
  const received: Envelope[] = []
  const edge = await EdgeNode.start({
    hub: [b.urls[0] as string], nodeId: 'edge-1', token: a.createToken('edge-1'), dataDir: subdir(t, 'edge-1'), ...fast,
    onReliable: env => { received.push(env) }
  })
  t.teardown(() => edge.close())
  const app = edge.register({ name: 'app', group: 'app' })
  const live: Envelope[] = []
  app.onMessage(async env => {
    if (env.header.sync === true) await app.respond(env, { echo: env.content })
    else live.push(env)
  })
  await edge.waitConnected(15_000)
  t.ok(b.holds('edge-1'), 'hub B holds the session')
  t.notOk(a.holds('edge-1'))
  await until('presence', async () => (await a.cluster?.presenceOf('edge-1'))?.hub === 'hub-b')
  t.ok((await b.bindings.get('edge-1')) !== undefined, 'binding stored in the cluster')
  t.ok((await a.bindings.get('edge-1')) !== undefined, 'and visible from hub A')

  // Request from hub A reaches the edge on hub B.
  const res = await a.request('edge-1', msg({ x: 1 }), { timeoutMs: 5000 })
  t.same(res.content, { echo: { x: 1 } }, 'request from hub A answered by the edge on hub B')

  // Best-effort send from A.
  await a.send('edge-1', msg({ live: true }))
  await until('best-effort message', () => live.length > 0)
  t.same(live[0]?.content, { live: true }, 'best-effort send from hub A')
  await t.rejects(a.send('edge-9', msg({})), { code: 'EF_NODE_OFFLINE' }, 'an unknown node is offline cluster-wide')

  // Reliable sends from hub A, with versions: delivered via hub B, stale ones refused.
  for (let v = 1; v <= 50; v++) await a.send('edge-1', msg({ v }, { resource: `default/cm/r${v % 5}`, resourceVersion: String(v) }), { delivery: 'reliable' })
  const stale = await a.sendReliable('edge-1', msg({ v: 3 }, { resource: 'default/cm/r3', resourceVersion: '3' }))
  // The edge is online: v48 may already be delivered, acknowledged and purged from the stream when v3
  // is checked, and then v3 is queued (the edge's receiver drops it as stale; the ordering check below
  // covers that). Only if v48 had not reached the edge when the check returned must v3 be refused here.
  if (received.some(e => e.router.resource === 'default/cm/r3' && e.header.resourceVersion === '48')) t.ok(stale.status === 'stale' || stale.status === 'queued', `v3 after v48 was delivered: ${stale.status}`)
  else t.equal(stale.status, 'stale', 'an older version than the pending one is stale')
  for (let i = 0; i < 20; i++) await a.send('edge-1', msg({ i }, { resource: 'default/log/x' }), { delivery: 'reliable' })
  await until('reliable delivery', () => received.filter(e => e.router.resource === 'default/log/x').length >= 20)
  await until('outbox drained', async () => (await a.cluster?.outboxDepth('edge-1')) === 0)
  const last = new Map<string, number>()
  const backwards: string[] = []
  for (const e of received) {
    if (e.header.resourceVersion === undefined) continue
    const v = Number(e.header.resourceVersion)
    const prev = last.get(e.router.resource) ?? 0
    if (v <= prev) backwards.push(`${e.router.resource} ${v} after ${prev}`)
    last.set(e.router.resource, v)
  }
  t.same(backwards, [], 'no older version after a newer one')
  t.same([...last.entries()].sort(), [['default/cm/r0', 50], ['default/cm/r1', 46], ['default/cm/r2', 47], ['default/cm/r3', 48], ['default/cm/r4', 49]], 'newest version of each resource arrived')

  // Upstream reliable messages land in EF_TEST_UP for any NATS client.
  for (let i = 0; i < 5; i++) await app.sendUpstream(msg({ up: i }, { source: 'app', resource: 'default/report/u' }))
  const nc = await connect({ servers: nats.urls })
  t.teardown(() => nc.close())
  const js = jetstream(nc)
  const ups: Array<{ node: string | undefined, content: unknown }> = []
  const cons = await js.consumers.get('EF_TEST_UP', { filter_subjects: 'ef.test.up.edge-1', deliver_policy: DeliverPolicy.All })
  const it = await cons.consume()
  for await (const m of it) {
    ups.push({ node: m.headers?.get('Ef-Node'), content: m.json() })
    if (ups.length >= 5) break
  }
  t.same(ups.map(u => u.content), [0, 1, 2, 3, 4].map(i => ({ up: i })), 'a plain NATS consumer reads what the edge sent up')
  t.ok(ups.every(u => u.node === 'edge-1'), 'with the authenticated node in Ef-Node')

  // A plain NATS client publishes to the node (durable) with the documented subject and headers.
  const h = natsHeaders()
  h.set('Ef-Content', 'json')
  h.set('Ef-Resource', 'default/plain/p')
  h.set('Ef-Operation', 'update')
  h.set('Ef-Version', '7')
  await js.publish('ef.test.down.edge-1.r.plain-p', JSON.stringify({ from: 'nats' }), { headers: h })
  await until('plain publish delivered', () => received.some(e => e.router.resource === 'default/plain/p'))
  const plain = received.find(e => e.router.resource === 'default/plain/p')
  t.same(plain?.content, { from: 'nats' })
  t.equal(plain?.header.resourceVersion, '7')

  // A plain NATS request to the node.
  const rh = natsHeaders()
  rh.set('Ef-Content', 'json')
  rh.set('Ef-Group', 'app')
  const r = await nc.request('ef.test.node.edge-1.req', JSON.stringify({ q: 1 }), { timeout: 5000, headers: rh })
  t.same(r.json(), { echo: { q: 1 } }, 'a plain NATS request is answered by the node')
  const jsm = await jetstreamManager(nc)
  t.ok((await jsm.streams.info('EF_TEST_DOWN')).config.num_replicas === 3, 'downstream outbox is R3')
})

t.test('a node reconnecting to another hub keeps its outbox; last connection wins across hubs', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t)
  const a = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  const b = await startClusterHub(t, nats, 'hub-b', ['wss://127.0.0.1:0'])
  const received: number[] = []
  const dir = subdir(t, 'edges')
  const token = a.createToken('edge-2')
  const start = async (url: string): Promise<EdgeNode> => await EdgeNode.start({
    hub: [url], nodeId: 'edge-2', token, dataDir: dir + '/edge-2', ...fast,
    onReliable: env => { received.push((env.content as { i: number }).i) }
  })
  let edge = await start(a.urls[0] as string)
  await edge.waitConnected(15_000)
  await edge.close()
  await until('hub A saw the node leave', () => !a.holds('edge-2'))
  // Queued while the node is offline, from hub A.
  for (let i = 0; i < 100; i++) await a.send('edge-2', msg({ i }, { resource: 'default/log/y' }), { delivery: 'reliable' })
  t.equal(await a.cluster?.outboxDepth('edge-2'), 100, 'queued in JetStream while offline')
  edge = await start(b.urls[0] as string)
  t.teardown(() => edge.close())
  await until('outbox delivered through hub B', () => received.length >= 100)
  t.same([...new Set(received)].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i), 'every message arrived through the other hub')
  await until('drained', async () => (await b.cluster?.outboxDepth('edge-2')) === 0)

  // The same node (same key, another process's data dir) connects to hub A: the session on B is closed.
  const twinDir = dir + '/edge-2-twin'
  mkdirSync(twinDir + '/identity', { recursive: true, mode: 0o700 })
  copyFileSync(dir + '/edge-2/identity/edge.key', twinDir + '/identity/edge.key')
  const events: string[] = []
  b.on('event', e => { if (e.type === 'node-disconnected' && e.nodeId === 'edge-2') events.push(e.reason) })
  const twin = await EdgeNode.start({ hub: [a.urls[0] as string], nodeId: 'edge-2', token, dataDir: twinDir, ...fast, backoff: { baseMs: 5000, capMs: 5000 } })
  t.teardown(() => twin.close())
  await twin.waitConnected(15_000)
  const since = Date.now()
  await until('hub B closed its older session', () => !b.holds('edge-2'), 10_000)
  // Issue 17: never two sessions for longer than one heartbeat (5 s by default). Typically 0–100 ms on a
  // quiet machine; 3.8 s was seen with the 2 cores at load 20, so the bar is the requirement itself.
  t.ok(Date.now() - since < 5000, `hub B let go within one heartbeat (${Date.now() - since} ms after the new session was up)`)
  t.ok(a.holds('edge-2'), 'hub A holds the newer session')
  t.match(events[0], /replaced/, 'closed as replaced')
  t.equal((await a.cluster?.presenceOf('edge-2'))?.hub, 'hub-a', 'presence names hub A')
})
