/**
 * The node list keeps its id order between requests (src/ops/node-order.ts):
 * pages must equal a plain filter + full sort, also after nodes come and go
 * and queues change between requests (no time-based cache).
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { startAdminServer } from '../../src/ops/admin-server.js'
import { createFleetApi, type FleetNodeInfo, type FleetSource } from '../../src/ops/admin-fleet.js'
import { nullLogger } from '../../src/ops/logger.js'
import { NodeOrder } from '../../src/ops/node-order.js'

t.test('NodeOrder: sorted permutation, recomputed only when the id sequence changes', async t => {
  const o = new NodeOrder()
  const ids = ['c', 'a', 'b']
  const p1 = o.byId(ids)
  t.same([...p1].map(i => ids[i]), ['a', 'b', 'c'])
  t.equal(o.byId([...ids]), p1, 'same sequence (new array): reused')
  const more = ['c', 'a', 'b', '0']
  t.same([...o.byId(more)].map(i => more[i]), ['0', 'a', 'b', 'c'], 'a node added: re-sorted')
  const swapped = ['a', 'c', 'b', '0']
  t.same([...o.byId(swapped)].map(i => swapped[i]), ['0', 'a', 'b', 'c'], 'same ids, another order: re-sorted')
})

t.test('pages equal a plain filter and sort, across changes', async t => {
  let seed = 7
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  const nodes: FleetNodeInfo[] = []
  const add = (i: number): void => {
    nodes.push({ nodeId: `n-${rnd(100000)}-${i}`, status: rnd(3) === 0 ? 'disconnected' : 'connected', labels: { zone: `z${rnd(3)}` }, transport: ['quic', 'ws'][rnd(2)], remoteAddress: undefined, connectedAt: undefined, disconnectedAt: undefined, lastSeen: undefined, rttMs: rnd(4) === 0 ? undefined : rnd(50), sessionId: undefined })
  }
  for (let i = 0; i < 300; i++) add(i)
  const queued = new Map<string, { count: number, bytes: number }>()
  const requeue = (): void => { queued.clear(); for (const n of nodes) if (rnd(3) === 0) queued.set(n.nodeId, { count: 1 + rnd(5), bytes: 10 }) }
  requeue()
  queued.set('ghost', { count: 3, bytes: 1 })
  const source: FleetSource = {
    nodes: () => nodes.map(n => ({ ...n })),
    node: id => nodes.find(n => n.nodeId === id),
    queued: () => new Map(queued),
    outbox: () => ({ count: 0, bytes: 0, firstSeq: 0, lastSeq: 0, inflight: 0, acked: 0 }),
    outboxHead: () => [],
    traffic: () => undefined,
    deadLetters: () => [],
    onNodeEvent: () => () => {},
    warnings: async () => [],
    info: () => ({ role: 'hub' })
  }
  const fleet = createFleetApi({ source, logger: nullLogger, sampleMs: 3_600_000 })
  const admin = await startAdminServer({ registry: new Registry(), api: fleet.routes, auth: { token: 'x' } })
  t.teardown(async () => { await admin.close(); fleet.close() })
  const page = async (qs: string): Promise<{ total: number, items: Array<{ nodeId: string, queue: number }> }> => await (await fetch(`${admin.url}/api/nodes?${qs}`)).json() as never
  const expected = (f: (n: FleetNodeInfo & { queue: number }) => boolean, sort: 'id' | 'queue', offset: number, limit: number): { total: number, ids: string[] } => {
    const all = [...nodes.map(n => ({ ...n, queue: queued.get(n.nodeId)?.count ?? 0 })), { nodeId: 'ghost', status: 'disconnected', labels: {}, queue: 3 } as unknown as FleetNodeInfo & { queue: number }]
    const rows = all.filter(f)
    const byId = (a: { nodeId: string }, b: { nodeId: string }): number => a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0
    rows.sort(sort === 'id' ? byId : (a, b) => b.queue - a.queue || byId(a, b))
    return { total: rows.length, ids: rows.slice(offset, offset + limit).map(r => r.nodeId) }
  }
  const check = async (label: string): Promise<void> => {
    for (const [qs, f, sort, offset, limit] of [
      ['limit=50', () => true, 'id', 0, 50],
      ['limit=40&offset=100', () => true, 'id', 100, 40],
      ['limit=30&status=disconnected', (n: FleetNodeInfo) => n.status === 'disconnected', 'id', 0, 30],
      ['limit=30&offset=10&label=zone%3Dz1&transport=ws', (n: FleetNodeInfo) => n.labels.zone === 'z1' && n.transport === 'ws', 'id', 10, 30],
      ['limit=60&sort=queue', () => true, 'queue', 0, 60],
      ['limit=60&offset=80&sort=queue', () => true, 'queue', 80, 60],
      ['limit=60&sort=queue&minQueue=3', (n: { queue: number }) => n.queue >= 3, 'queue', 0, 60]
    ] as const) {
      const got = await page(qs)
      const want = expected(f as never, sort, offset, limit)
      t.same({ total: got.total, ids: got.items.map(i => i.nodeId) }, want, `${label}: ${qs}`)
    }
  }
  await check('first')
  await check('again (order reused)')
  for (let i = 300; i < 320; i++) add(i)
  nodes.splice(5, 3)
  requeue()
  queued.set('ghost', { count: 3, bytes: 1 })
  await check('after nodes came and went and queues changed')
})
