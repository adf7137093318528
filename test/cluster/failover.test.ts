/**
 * Failover with real processes (issue 17): 3 NATS servers, 2 hub processes in
 * cluster mode, a producer hub in this process, edges over wss and quic in
 * this process listing both hubs. Each round SIGKILLs the hub holding the
 * edges; they reconnect to the other hub and resume from their acknowledged
 * point. Measured: SIGKILL → first reliable delivery through the new hub, at
 * the default heartbeat (5 s). Checked: nothing acknowledged to the producer
 * is lost, no edge's stream goes backwards.
 *
 * Build first: the hub fixture imports ../../../dist (npm run build).
 */
import t from 'tap'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { needNats, startClusterHub, startHubProcesses, startNats, subdir, until } from './helpers.js'

t.setTimeout(240_000)
const ROUNDS = Number(process.env.EF_CLUSTER_FAILOVER_ROUNDS ?? 2)

t.test('edges fail over to another hub and resume', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t)
  const hubs = await startHubProcesses(t, nats, ['hub-1', 'hub-2'])
  // The producer: any hub serves any node, so one in this process sends to all edges.
  const producer = await startClusterHub(t, nats, 'producer', ['ws://127.0.0.1:0'])
  const h1 = hubs[0] as typeof hubs[number]
  const h2 = hubs[1] as typeof hubs[number]
  const edges: Array<{ node: string, edge: EdgeNode, got: Map<number, number>, last: number, backwards: number, url: string }> = []
  for (const [i, kind] of (['wss', 'wss', 'quic', 'quic'] as const).entries()) {
    const node = `edge-${kind}-${i}`
    const rec = { node, edge: undefined as unknown as EdgeNode, got: new Map<number, number>(), last: 0, backwards: 0, url: '' }
    rec.edge = await EdgeNode.start({
      hub: [h1[kind], h2[kind]], nodeId: node, token: producer.createToken(node), dataDir: subdir(t, node), admin: false,
      backoff: { baseMs: 100, capMs: 1000 },
      onReliable: env => {
        const n = (env.content as { n: number }).n
        if (!rec.got.has(n)) rec.got.set(n, Date.now())
        if (n < rec.last) rec.backwards++
        rec.last = Math.max(rec.last, n)
      }
    })
    t.teardown(() => rec.edge.close())
    edges.push(rec)
  }
  await Promise.all(edges.map(async e => { await e.edge.waitConnected(30_000) }))

  let n = 0
  const acked = new Map<string, Set<number>>(edges.map(e => [e.node, new Set<number>()]))
  let producing = true
  const produce = (async () => {
    while (producing) {
      n++
      const i = n
      await Promise.all(edges.map(async e => {
        try {
          await producer.send(e.node, newMessage({ source: 'test', group: 'app', operation: 'insert', resource: 'default/log/f', content: { n: i } }), { delivery: 'reliable' })
          acked.get(e.node)?.add(i)
        } catch { /* refused (cluster hiccup): not acknowledged, not counted */ }
      }))
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  })()

  const times: Record<string, number[]> = { wss: [], quic: [] }
  let holder = h1
  for (let round = 0; round < ROUNDS; round++) {
    await until('deliveries flowing', () => edges.every(e => e.got.size > 0 && Date.now() - Math.max(...e.got.values()) < 1000), 60_000)
    const killedAt = Date.now()
    await holder.proc.kill()
    await until('every edge received through the other hub', () => edges.every(e => [...e.got.values()].some(at => at > killedAt + 20)), 60_000)
    for (const e of edges) {
      const first = Math.min(...[...e.got.values()].filter(at => at > killedAt + 20))
      ;(times[e.node.includes('quic') ? 'quic' : 'wss'] as number[]).push(first - killedAt)
    }
    // Bring the killed hub back; the next round kills the one now holding the edges.
    const ready = holder.proc.waitFor(m => m.type === 'ready', 60_000)
    holder.proc.start()
    await ready
    holder = holder === h1 ? h2 : h1
  }
  producing = false
  await produce
  let refused = 0
  for (const e of edges) {
    const want = acked.get(e.node) ?? new Set<number>()
    refused += n - want.size
    await until(`${e.node} drained`, () => [...want].every(i => e.got.has(i)), 30_000).catch(() => {})
    if (![...want].every(i => e.got.has(i))) t.comment(`${e.node}: state ${e.edge.state}, last received ${e.last}, producer's stream depth ${await producer.cluster?.outboxDepth(e.node)}`)
    t.same([...want].filter(i => !e.got.has(i)), [], `${e.node}: nothing acknowledged was lost (${want.size} acknowledged)`)
    t.equal(e.backwards, 0, `${e.node}: never an older message after a newer one`)
  }
  t.comment(`sends refused with an error (not acknowledged, so not owed): ${refused}`)
  // Nearest-rank percentiles; EF_CLUSTER_FAILOVER_ROUNDS=5 gives 10 samples per transport (RESULTS.md).
  const fmt = (xs: number[]): string => { const s = [...xs].sort((a, b) => a - b); const at = (p: number): number | undefined => s[Math.max(0, Math.ceil(p * s.length) - 1)]; return `n=${s.length} min=${s[0]} p50=${at(0.5)} p90=${at(0.9)} max=${s[s.length - 1]} ms [${s.join(' ')}]` }
  t.comment(`failover SIGKILL → first delivery through the other hub (default heartbeat 5 s): wss ${fmt(times.wss ?? [])}; quic ${fmt(times.quic ?? [])}`)
  t.ok(Math.max(...(times.wss ?? [])) <= 5000, `wss failover within 5 s (${fmt(times.wss ?? [])})`)
  // quic: 3.1 s here (busy-link quick probe: 1 s silence + 2 s unanswered, then the redial); it took
  // 10–12 s before (idle timeout / 2.5 × heartbeat). Asserted far below that, the figure is reported.
  t.ok(Math.max(...(times.quic ?? [])) <= 8000, `quic failover well below the old 10–12 s (${fmt(times.quic ?? [])})`)
})
