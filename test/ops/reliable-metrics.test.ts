/**
 * Reliable-delivery metrics on a real hub and edge (ws on loopback, LMDB):
 * outbox depth/bytes/oldest age for a disconnected edge, dead letters by
 * reason (quota_dropped, ttl_expired, superseded), acks and resumes after the
 * edge connects, group-commit histograms, build info, bounded per-node series.
 */
import t, { type Test } from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { newMessage } from '../../src/codec/envelope.js'

function value (text: string, series: string): number | undefined {
  const esc = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const m = new RegExp(`^${esc} (\\S+)$`, 'm').exec(text)
  return m === null ? undefined : Number(m[1])
}

async function waitFor (t: Test, what: string, fn: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await fn()) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.fail(`timed out waiting for ${what}`)
}

t.test('hub: a disconnected edge\'s queue, drops by reason, then delivery', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({
    listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', durability: 'relaxed',
    quota: { maxMessages: 5, overflow: 'drop-oldest' },
    metrics: { perNode: { top: 2, nodes: ['watched'] } }
  })
  t.teardown(() => hub.close(200))
  const msg = (i: number, extra: { ttl?: number, resource?: string, resourceVersion?: string } = {}) =>
    newMessage({ source: 'cloud', group: 'app', operation: 'update', resource: extra.resource ?? `r/${i}`, content: { i, pad: 'x'.repeat(100) }, ...extra })
  for (let i = 0; i < 7; i++) await hub.send('edge-1', msg(i), { delivery: 'reliable' }) // 2 dropped by drop-oldest
  await hub.send('edge-1', msg(100, { resource: 'cfg', resourceVersion: '1' }), { delivery: 'reliable' })
  await hub.send('edge-1', msg(101, { resource: 'cfg', resourceVersion: '2' }), { delivery: 'reliable' }) // supersedes v1
  for (const n of ['a', 'b', 'c']) await hub.send(n, msg(0), { delivery: 'reliable' })
  await hub.send('b', msg(1), { delivery: 'reliable' })
  await new Promise(resolve => setTimeout(resolve, 30))
  let text = await hub.registry.metrics()
  t.equal(value(text, 'edgefabric_hub_reliable_outbox_messages{direction="down"}'), 5 + 4, 'messages waiting, all nodes')
  t.ok((value(text, 'edgefabric_hub_reliable_outbox_bytes{direction="down"}') ?? 0) > 9 * 100)
  t.ok((value(text, 'edgefabric_hub_reliable_oldest_pending_age_seconds{direction="down"}') ?? 0) > 0, 'oldest pending age')
  t.ok((value(text, 'edgefabric_hub_reliable_dead_letters_total{direction="down",reason="quota_dropped"}') ?? 0) >= 2, 'quota drops counted by reason')
  t.equal(value(text, 'edgefabric_hub_reliable_dead_letters_total{direction="down",reason="superseded"}'), 1)
  t.equal(value(text, 'edgefabric_hub_node_outbox_messages{node="edge-1"}'), 5, 'top node by depth has its own series')
  t.equal(value(text, 'edgefabric_hub_node_outbox_messages{node="b"}'), 2)
  t.equal(value(text, 'edgefabric_hub_node_outbox_messages{node="a"}'), undefined, 'beyond the top 2 and not allow-listed: no series')
  t.equal(value(text, 'edgefabric_hub_node_outbox_messages{node="watched"}'), 0, 'allow-listed node always present')
  t.match(text, /edgefabric_build_info\{version="\d+\.\d+\.\d+[^"]*",node_version="[^"]+",transport_quic="(true|false)",role="hub"\} 1/)
  t.ok((value(text, 'edgefabric_hub_reliable_commit_seconds_count') ?? 0) > 0, 'commit latency observed')
  t.ok((value(text, 'edgefabric_hub_reliable_commit_batch_writes_count') ?? 0) > 0, 'group-commit size observed')
  t.notMatch(text, /edgefabric_process_/, 'process metrics are off by default')

  // a TTL that runs out while the node is away
  await hub.send('edge-1', msg(200, { ttl: 1 }), { delivery: 'reliable' })
  await new Promise(resolve => setTimeout(resolve, 20))

  const edge = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: dir + '/edge', durability: 'relaxed', admin: false })
  t.teardown(() => edge.close())
  await waitFor(t, 'the outbox of edge-1 to drain', async () => hub.outboxDepth('edge-1') === 0)
  text = await hub.registry.metrics()
  t.ok((value(text, 'edgefabric_hub_reliable_acked_messages_total{direction="down"}') ?? 0) >= 5, 'acks counted')
  t.equal(value(text, 'edgefabric_hub_reliable_resumes_total{outcome="resent"}'), 1, 'one resume that resent the gap')
  t.ok((value(text, 'edgefabric_hub_reliable_dead_letters_total{direction="down",reason="ttl_expired"}') ?? 0) >= 1, 'TTL expiry counted')
  t.equal(value(text, 'edgefabric_hub_node_outbox_messages{node="edge-1"}'), undefined, 'drained node left the top list')
  const et = await edge.registry.metrics()
  t.match(et, /edgefabric_build_info\{[^}]*role="edge"\} 1/)
  t.equal(value(et, 'edgefabric_edge_reliable_outbox_messages{direction="up"}'), 0)
  t.equal(value(et, 'edgefabric_edge_reliable_duplicates_suppressed_total{direction="down"}'), 0)
})

t.test('process metrics behind the option', async t => {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir({}), metrics: { processMetrics: true } })
  t.teardown(() => hub.close(100))
  t.match(await hub.registry.metrics(), /edgefabric_process_process_resident_memory_bytes/)
})
