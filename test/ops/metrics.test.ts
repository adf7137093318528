import t from 'tap'
import { register as globalRegistry } from 'prom-client'
import { HotCounter, LATENCY_BUCKETS, Registry, createEdgeMetrics, createHubMetrics, statusClass } from '../../src/ops/metrics.js'

t.test('two hub instances in one process do not collide, and nothing lands on the global registry', async t => {
  const before = (await globalRegistry.getMetricsAsJSON()).length
  const a = createHubMetrics(new Registry())
  const b = createHubMetrics(new Registry())
  a.messages.inc({ direction: 'up', transport: 'quic' }, 3)
  b.messages.inc({ direction: 'up', transport: 'quic' })
  t.match(await a.registry.metrics(), /edgefabric_hub_messages_total\{direction="up",transport="quic"\} 3/)
  t.match(await b.registry.metrics(), /edgefabric_hub_messages_total\{direction="up",transport="quic"\} 1/)
  t.equal((await globalRegistry.getMetricsAsJSON()).length, before)
  // hub and edge can share one registry too (names are prefixed per role)
  const shared = new Registry()
  createHubMetrics(shared)
  createEdgeMetrics(shared)
  t.ok(shared.getSingleMetric('edgefabric_hub_connected_nodes'))
  t.ok(shared.getSingleMetric('edgefabric_edge_connected'))
})

t.test('hub metric names, help and labels', async t => {
  const m = createHubMetrics(new Registry())
  const expected: Record<string, string[]> = {
    edgefabric_hub_connected_nodes: [],
    edgefabric_hub_sessions_opened_total: ['transport'],
    edgefabric_hub_sessions_closed_total: ['reason'],
    edgefabric_hub_handshake_refusals_total: ['code'],
    edgefabric_hub_connection_refusals_total: ['stage', 'reason', 'transport'],
    edgefabric_hub_messages_total: ['direction', 'transport'],
    edgefabric_hub_bytes_total: ['direction', 'transport'],
    edgefabric_hub_request_duration_seconds: [],
    edgefabric_hub_requests_total: ['result'],
    edgefabric_hub_node_rtt_seconds: ['node'],
    edgefabric_hub_dropped_messages_total: ['reason'],
    edgefabric_hub_broadcasts_total: [],
    edgefabric_hub_broadcast_deliveries_total: [],
    edgefabric_hub_edge_forwards_total: ['result'],
    edgefabric_hub_registry_snapshots_total: ['event'],
    edgefabric_hub_registry_log_purged_entries_total: []
  }
  const all = m.registry.getMetricsAsArray()
  t.same(all.map(x => x.name).sort(), Object.keys(expected).sort())
  for (const metric of all) {
    t.ok(metric.help.length > 10, `${metric.name} has help`)
    t.same([...((metric as unknown as { labelNames: string[] }).labelNames)].sort(), (expected[metric.name] ?? []).sort(), `${metric.name} labels`)
  }
  m.requestLatency.observe(0.003)
  const text = await m.registry.metrics()
  t.match(text, /edgefabric_hub_request_duration_seconds_bucket\{le="0.0005"\} 0/)
  t.match(text, /edgefabric_hub_request_duration_seconds_bucket\{le="0.005"\} 1/)
  t.match(text, /edgefabric_hub_request_duration_seconds_bucket\{le="10"\} 1/)
  t.equal(LATENCY_BUCKETS[0], 0.0005)
  t.equal(LATENCY_BUCKETS.at(-1), 10)
})

t.test('per-node RTT series are removed on disconnect', async t => {
  const m = createHubMetrics(new Registry())
  m.rtt.set({ node: 'edge-1' }, 0.012)
  m.rtt.set({ node: 'edge-2' }, 0.02)
  t.match(await m.registry.metrics(), /node="edge-1"/)
  m.rtt.remove({ node: 'edge-1' })
  const text = await m.registry.metrics()
  t.notMatch(text, /node="edge-1"/)
  t.match(text, /edgefabric_hub_node_rtt_seconds\{node="edge-2"\} 0.02/)
})

t.test('edge metric names and the offline/reconnect bookkeeping', async t => {
  let now = 1_000_000
  const m = createEdgeMetrics(new Registry(), { now: () => now })
  const names = m.registry.getMetricsAsArray().map(x => x.name).sort()
  t.same(names, [
    'edgefabric_edge_bytes_total', 'edgefabric_edge_connected', 'edgefabric_edge_mailbox_depth',
    'edgefabric_edge_mailbox_drops_total', 'edgefabric_edge_messages_total', 'edgefabric_edge_offline_duration_seconds',
    'edgefabric_edge_offline_seconds_total', 'edgefabric_edge_reconnects_total', 'edgefabric_edge_request_duration_seconds',
    'edgefabric_edge_rtt_seconds', 'edgefabric_edge_servicebus_calls_total'
  ])
  const value = async (name: string): Promise<number> => {
    const j = await m.registry.getSingleMetric(name)?.get()
    return j?.values[0]?.value ?? NaN
  }
  t.equal(await value('edgefabric_edge_connected'), 0)
  m.setConnected(true) // first connect: not a reconnect
  t.equal(await value('edgefabric_edge_connected'), 1)
  t.equal(await value('edgefabric_edge_reconnects_total'), 0)
  m.setConnected(false)
  now += 7_500
  t.equal(await value('edgefabric_edge_offline_duration_seconds'), 7.5, 'current outage computed at scrape time')
  m.setConnected(false) // idempotent: does not restart the outage
  now += 2_500
  m.setConnected(true)
  t.equal(await value('edgefabric_edge_reconnects_total'), 1)
  t.equal(await value('edgefabric_edge_offline_seconds_total'), 10)
  t.equal(await value('edgefabric_edge_offline_duration_seconds'), 0)
  m.mailboxDepth.set({ module: 'twin' }, 4)
  m.mailboxDrops.inc({ module: 'twin', reason: 'overflow_drop_oldest' })
  m.servicebusCalls.inc({ status: statusClass(503) })
  const text = await m.registry.metrics()
  t.match(text, /edgefabric_edge_mailbox_depth\{module="twin"\} 4/)
  t.match(text, /edgefabric_edge_mailbox_drops_total\{module="twin",reason="overflow_drop_oldest"\} 1/)
  t.match(text, /edgefabric_edge_servicebus_calls_total\{status="5xx"\} 1/)
})

t.test('statusClass', async t => {
  t.equal(statusClass(200), '2xx')
  t.equal(statusClass(404), '4xx')
  t.equal(statusClass(undefined), 'error')
  t.equal(statusClass(99), 'error')
})

t.test('process metrics are opt-in and per registry', async t => {
  const a = createEdgeMetrics(new Registry(), { processMetrics: true })
  const b = createHubMetrics(new Registry(), { processMetrics: true })
  t.match(await a.registry.metrics(), /edgefabric_process_process_resident_memory_bytes|edgefabric_process_nodejs_heap_size_total_bytes/)
  t.match(await b.registry.metrics(), /edgefabric_process_nodejs_eventloop_lag_seconds/)
  t.notMatch(await createHubMetrics(new Registry()).registry.metrics(), /edgefabric_process_/)
})

t.test('HotCounter: add() sums are exact at every read (get and scrape), inc() still works, label sets are bounded', async t => {
  const registry = new Registry()
  const c = new HotCounter({ name: 'x_total', help: 'x', labelNames: ['a', 'b'] as const, registers: [registry] })
  for (let i = 0; i < 1000; i++) c.add({ a: 'p', b: i % 2 === 0 ? 'even' : 'odd' })
  c.add({ a: 'q', b: 'even' }, 5)
  c.inc({ a: 'p', b: 'even' }, 2)
  const values = async (): Promise<Record<string, number>> => Object.fromEntries((await c.get()).values.map(v => [`${String(v.labels.a)}/${String(v.labels.b)}`, v.value]))
  t.same(await values(), { 'p/even': 502, 'p/odd': 500, 'q/even': 5 })
  c.add({ a: 'p', b: 'odd' })
  t.match(await registry.metrics(), /x_total\{a="p",b="odd"\} 501/, 'a scrape sees the pending sum')
  t.same(await values(), { 'p/even': 502, 'p/odd': 501, 'q/even': 5 }, 'and nothing is counted twice')
  for (let i = 0; i < 1100; i++) c.add({ a: `k${i}`, b: 'x' })
  t.equal((await c.get()).values.length, 1103, 'past 1024 pending label sets, adds go straight to the counter')
})
