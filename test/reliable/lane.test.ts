/**
 * The ACK lane end to end, hub ↔ edge in one process on real LMDB stores:
 * offline queueing, window, supersession, TTL, quotas, dead letters, the edge
 * outbox, resume after reconnect and offline autonomy after an edge restart.
 */
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode, type EdgeOptions } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { HubOptions } from '../../src/hub/types.js'
import type { LaneEvent } from '../../src/reliable/sender.js'

type Test = import('tap').Test

const fast = { backoff: { baseMs: 20, capMs: 200 }, admin: false as const, durability: 'relaxed' as const }

async function startHub (t: Test, extra: Partial<HubOptions> = {}, dir = t.testdir({})): Promise<Hub> {
  const hub = await Hub.start({ listen: ['memory://'], dataDir: `${dir}/hub`, admin: false, durability: 'relaxed', ...extra })
  t.teardown(() => hub.close(100))
  return hub
}

async function startEdge (t: Test, hub: Hub | { url: string, token: string }, nodeId: string, extra: Partial<EdgeOptions> = {}, dir = t.testdir({})): Promise<EdgeNode> {
  const url = hub instanceof Hub ? hub.urls[0] as string : hub.url
  const token = hub instanceof Hub ? hub.createToken(nodeId) : hub.token
  const edge = await EdgeNode.start({ hub: url, nodeId, token, dataDir: `${dir}/${nodeId}`, ...fast, ...extra })
  t.teardown(() => edge.close())
  return edge
}

function update (name: string, version: number | undefined, content: unknown, extra: Partial<Parameters<typeof newMessage>[0]> = {}): Envelope {
  return newMessage({
    source: 'cloud', group: 'app', operation: 'update', resource: `default/thing/${name}`, content,
    ...(version !== undefined ? { resourceVersion: String(version) } : {}), ...extra
  })
}

async function until (check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

t.test('messages queued for an offline node are all delivered in order after it joins', async t => {
  const hub = await startHub(t)
  const n = 3000
  for (let i = 0; i < n; i++) await hub.send('edge-1', update(`k${i % 10}`, undefined, { i }), { delivery: 'reliable' })
  t.equal(hub.outboxDepth('edge-1'), n, 'durable while offline')
  const edge = await startEdge(t, hub, 'edge-1')
  const got: number[] = []
  edge.register({ name: 'app', group: 'app' }).onMessage(env => { got.push((env.content as { i: number }).i) })
  const started = Date.now()
  await until(() => got.length === n)
  t.same(got, Array.from({ length: n }, (_, i) => i), 'every message once, in order')
  await until(() => hub.outboxDepth('edge-1') === 0)
  t.comment(`drained ${n} in ${Date.now() - started} ms`)
})

t.test('supersession: only the newest pending version of a resource is delivered; deletes are ordered', async t => {
  const hub = await startHub(t)
  const events: LaneEvent[] = []
  hub.on('lane', e => events.push(e))
  for (let v = 1; v <= 5; v++) await hub.send('edge-1', update('a', v, { v }), { delivery: 'reliable' })
  await hub.send('edge-1', update('a', 3, { v: 3, late: true }), { delivery: 'reliable' }) // older than pending: stale
  await hub.send('edge-1', update('b', 10, { v: 10 }), { delivery: 'reliable' })
  await hub.send('edge-1', update('b', 11, null, { operation: 'delete' }), { delivery: 'reliable' })
  await hub.send('edge-1', update('b', 9, { v: 9 }), { delivery: 'reliable' }) // older than the pending delete: stale
  t.equal(hub.outboxDepth('edge-1'), 2, 'one pending message per resource')
  t.ok(events.some(e => e.type === 'superseded'))
  t.equal(events.filter(e => e.type === 'stale').length, 2)
  const edge = await startEdge(t, hub, 'edge-1')
  const got: Envelope[] = []
  edge.register({ name: 'app', group: 'app' }).onMessage(env => { got.push(env) })
  await until(() => got.length === 2)
  t.same(got.map(e => [e.router.resource, e.router.operation, e.header.resourceVersion]), [
    ['default/thing/a', 'update', '5'], ['default/thing/b', 'delete', '11']
  ])
  await until(() => edge.getResource('default/thing/b') !== undefined)
  t.equal(edge.getResource('default/thing/a')?.version, '5')
  t.equal(edge.getResource('default/thing/b')?.deleted, true, 'delete tombstone stored')
  // an older update arriving after the delete is acknowledged but not delivered
  await hub.send('edge-1', update('b', 7, { v: 7 }), { delivery: 'reliable' })
  await until(() => hub.outboxDepth('edge-1') === 0)
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(got.length, 2, 'stale update not delivered')
})

t.test('TTL, quota (reject and drop-oldest) and dead letters are explicit', async t => {
  const hub = await startHub(t, { quota: { maxMessages: 3 } })
  const lane: LaneEvent[] = []
  hub.on('lane', e => lane.push(e))
  await hub.send('edge-1', update('x', undefined, 'short-lived', { ttl: 50 }), { delivery: 'reliable' })
  await hub.send('edge-1', update('y', undefined, 'kept'), { delivery: 'reliable' })
  await hub.send('edge-1', update('z', undefined, 'kept too'), { delivery: 'reliable' })
  await t.rejects(hub.send('edge-1', update('w', undefined, 'one too many'), { delivery: 'reliable' }), { code: 'EF_QUOTA_EXCEEDED' })
  await new Promise(resolve => setTimeout(resolve, 100))
  const edge = await startEdge(t, hub, 'edge-1')
  const got: unknown[] = []
  edge.register({ name: 'app', group: 'app' }).onMessage(env => { got.push(env.content) })
  await until(() => got.length === 2)
  await until(() => hub.outboxDepth('edge-1') === 0)
  t.same(got, ['kept', 'kept too'], 'the expired message is not delivered')
  const dead = hub.store?.deadLetters('edge-1') ?? []
  t.ok(dead.some(d => d.code === 'EF_TTL_EXPIRED'), 'expiry recorded')

  const hub2 = await startHub(t, { quota: { maxMessages: 2, overflow: 'drop-oldest' } })
  for (let i = 0; i < 4; i++) await hub2.send('edge-2', update(`q${i}`, undefined, i), { delivery: 'reliable' })
  t.equal(hub2.outboxDepth('edge-2'), 2)
  t.equal(hub2.store?.deadLetters('edge-2').filter(d => d.code === 'EF_QUOTA_DROPPED').length, 2, 'dropped ones are recorded')
})

t.test('a message the edge keeps rejecting is dead-lettered and does not block the queue', async t => {
  const hub = await startHub(t, { maxRejections: 2 })
  const edge = await startEdge(t, hub, 'edge-1')
  // a mailbox of one that nobody consumes: the second message is rejected
  edge.register({ name: 'stuck', group: 'stuck', mailbox: { capacity: 1, overflow: 'reject' } })
  const ok: unknown[] = []
  edge.register({ name: 'app', group: 'app' }).onMessage(env => { ok.push(env.content) })
  await edge.waitConnected()
  await hub.send('edge-1', newMessage({ source: 'cloud', group: 'stuck', operation: 'update', resource: 'r/s/1', content: 1 }), { delivery: 'reliable' })
  await hub.send('edge-1', newMessage({ source: 'cloud', group: 'stuck', operation: 'update', resource: 'r/s/2', content: 2 }), { delivery: 'reliable' })
  await hub.send('edge-1', update('after', undefined, 'after the poison'), { delivery: 'reliable' })
  await until(() => ok.length === 1, 15_000)
  t.same(ok, ['after the poison'], 'the queue moved past the poison message')
  const dead = hub.store?.deadLetters('edge-1') ?? []
  t.ok(dead.some(d => d.code === 'EF_REJECTED_BY_PEER' && d.seq === 2), `dead letter recorded: ${JSON.stringify(dead)}`)
})

t.test('edge outbox: reports made while the hub is down arrive after it is back; resume resends only the gap', async t => {
  const dir = t.testdir({})
  let hub = await Hub.start({ listen: ['memory://lane-restart'], dataDir: `${dir}/hub`, admin: false, durability: 'relaxed' })
  const token = hub.createToken('edge-1')
  const received: number[] = []
  const onUpstream = ({ envelope }: { envelope: Envelope }): void => { received.push((envelope.content as { i: number }).i) }
  hub.on('message', onUpstream)
  const edge = await startEdge(t, { url: 'memory://lane-restart', token }, 'edge-1', {}, dir)
  await edge.waitConnected()
  for (let i = 0; i < 100; i++) await edge.sendUpstream(update('r', undefined, { i }))
  await until(() => received.length === 100)
  await until(() => edge.outboxDepth === 0) // the acks are back
  await hub.close(100)
  await until(() => edge.state !== 'connected')
  for (let i = 100; i < 300; i++) await edge.sendUpstream(update('r', undefined, { i }))
  t.equal(edge.outboxDepth, 200, 'durable in the edge outbox while offline')
  hub = await Hub.start({ listen: ['memory://lane-restart'], dataDir: `${dir}/hub`, admin: false, durability: 'relaxed' })
  t.teardown(() => hub.close(100))
  hub.on('message', onUpstream)
  const back = Date.now()
  await until(() => received.length >= 300)
  t.comment(`backlog of 200 drained ${Date.now() - back} ms after the hub came back`)
  t.same(received, Array.from({ length: 300 }, (_, i) => i), 'each exactly once: the hub remembered what it had')
  await until(() => edge.outboxDepth === 0)
})

t.test('offline autonomy: an edge restarted with the hub unreachable serves the last known resources', async t => {
  const dir = t.testdir({})
  const hub = await startHub(t, {}, dir)
  const token = hub.createToken('edge-1')
  const url = hub.urls[0] as string
  const e1 = await EdgeNode.start({ hub: url, nodeId: 'edge-1', token, dataDir: `${dir}/edge-1`, ...fast })
  for (let v = 1; v <= 3; v++) await hub.send('edge-1', update('cfg', v, { level: v }), { delivery: 'reliable' })
  await until(() => e1.getResource('default/thing/cfg')?.version === '3')
  await e1.close()
  await hub.close(100)
  const e2 = await EdgeNode.start({ hub: url, nodeId: 'edge-1', token, dataDir: `${dir}/edge-1`, ...fast, localApi: { port: 0 } })
  t.teardown(() => e2.close())
  t.not(e2.state, 'connected')
  t.same(e2.getResource('default/thing/cfg')?.envelope?.content, { level: 3 }, 'library call serves the stored object')
  const res = await fetch(`${e2.localApiUrl as string}/v1/resources?prefix=default/thing/`)
  const body = await res.json() as { items: Array<{ key: string, version: string, envelope: { content: unknown } }> }
  t.same(body.items.map(i => [i.key, i.version, i.envelope.content]), [['default/thing/cfg', '3', { level: 3 }]], 'local HTTP API serves it too')
  await e2.sendUpstream(update('report', undefined, 'made offline'))
  t.equal(e2.outboxDepth, 1, 'upstream messages accepted into the outbox while offline')
})
