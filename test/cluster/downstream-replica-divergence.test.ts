/**
 * Regression: "acknowledged downstream messages lost: a diverged replica's outbox reader
 * skipped them and the edge's ack purged them" (the chaos runs' downstream loss, 2026-12-07).
 *
 * Evidence from a traced chaos run (EF_CLUSTER_TRACE): edge-9 moved to a hub whose new
 * outbox reader (an R1 ordered consumer, placed on NATS server n2) read seqs 1864, 1884,
 * 1904, 1924, 1944, … 2009 of the node and never 1934 (resource k2, version 192, the newest
 * of k2, PubAck'd by the leader); the edge acked 2009 and the purge below 2010 removed 13
 * messages where the reader had taken 12. Cause: versioned publishes carried
 * Nats-Expected-Last-Subject-Sequence, which nats-server 2.9 checks again on EVERY replica
 * when it applies the message, against that replica's own store; a replica that caught up
 * from a snapshot (or got expected seq 0) rejects it, does not store it and falls out of step
 * (nats-server #5644, #5794, #6194). A reader on that replica skips the message.
 *
 * A replica catching up from a snapshot cannot be produced on demand in a short test, so
 * this test pins the two things the fix rests on:
 *  1. no downstream message in EF_<C>_DOWN carries a Nats-Expected-* header (the header
 *     is stored with the message; before the fix every versioned message had one);
 *  2. what the header did — two hubs publishing versions of one resource at the same time
 *     never leave an older version as the node's pending one — still holds: the edge ends
 *     with the newest version and never sees an older one after a newer one.
 */
import t from 'tap'
import { connect } from '@nats-io/transport-node'
import { jetstream, DeliverPolicy } from '@nats-io/jetstream'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(120_000)

t.test('downstream: no per-replica header checks; two hubs racing on a resource end with the newest version', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const a = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  const b = await startClusterHub(t, nats, 'hub-b', ['wss://127.0.0.1:0'])

  // 1. The edge is offline: what the hubs queue stays in the stream, to be read raw.
  const versions = 40
  const res = (v: number): ReturnType<typeof newMessage> => newMessage({ source: 'test', group: 'app', operation: 'update', resource: 'default/cm/race', content: { v }, resourceVersion: String(v) })
  // Versions from both hubs at once, interleaved: odd ones from A, even ones from B.
  await Promise.all([
    (async () => { for (let v = 1; v <= versions; v += 2) await a.send('edge-1', res(v), { delivery: 'reliable' }) })(),
    (async () => { for (let v = 2; v <= versions; v += 2) await b.send('edge-1', res(v), { delivery: 'reliable' }) })()
  ])
  for (let i = 0; i < 5; i++) await a.send('edge-1', newMessage({ source: 'test', group: 'app', operation: 'publish', resource: 'default/log/l', content: { i } }), { delivery: 'reliable' })

  const nc = await connect({ servers: nats.urls })
  t.teardown(() => nc.close())
  const c = await jetstream(nc).consumers.get('EF_TEST_DOWN', { filter_subjects: 'ef.test.down.edge-1.>', deliver_policy: DeliverPolicy.All })
  const raw: Array<{ headers: string[], v: string | undefined }> = []
  for await (const m of await c.consume()) {
    raw.push({ headers: [...(m.headers?.keys() ?? [])], v: m.headers?.get('Ef-Version') || undefined })
    if (m.info.pending === 0) break
  }
  t.equal(raw.length, 6, 'the stream holds one message for the resource and the 5 unversioned ones')
  t.same(raw.flatMap(r => r.headers.filter(h => /^Nats-Expected/i.test(h))), [], 'no message carries a Nats-Expected-* header')
  // Regression (found in a full npm test run after the header was removed): hub A's v39 landed after
  // hub B's v40 (A had read the subject before v40 arrived) and, with one message per subject, REPLACED
  // it — v40 was lost. Now the subject retains a few and the newest survives the publishers' cleanup.
  t.same(raw.filter(r => r.v !== undefined).map(r => r.v), [String(versions)], 'the pending version of the resource is the newest one')

  // 2. The edge connects (to hub A): it gets the newest version, and nothing older after it.
  const seen: number[] = []
  const edge = await EdgeNode.start({
    hub: a.urls, nodeId: 'edge-1', token: a.createToken('edge-1'), dataDir: subdir(t, 'edge-1'), admin: false,
    onReliable: env => { if (env.header.resourceVersion !== undefined) seen.push(Number(env.header.resourceVersion)) }
  })
  t.teardown(() => edge.close())
  await until('newest version delivered', () => seen.includes(versions), 15_000)
  // More racing versions while the edge is connected.
  await Promise.all([
    (async () => { for (let v = versions + 1; v <= 2 * versions; v += 2) await a.send('edge-1', res(v), { delivery: 'reliable' }) })(),
    (async () => { for (let v = versions + 2; v <= 2 * versions; v += 2) await b.send('edge-1', res(v), { delivery: 'reliable' }) })()
  ])
  await until('outbox empty', async () => (await a.cluster?.outboxDepth('edge-1')) === 0, 15_000)
  t.pass('outbox empty')
  await until('newest version delivered', () => seen.includes(2 * versions), 5000).catch(() => {})
  t.ok(seen.includes(2 * versions), 'the newest version reached the edge')
  t.same(seen.filter((v, i) => i > 0 && v < (seen[i - 1] as number)), [], 'no older version after a newer one')
})
