/**
 * Regression: "acknowledged upstream messages lost after a failed inbound commit"
 * (found in the CI-size chaos run, 2026-12-07: 70–85 of 500 upstream messages acked to
 * their edges and missing from EF_TEST_UP after a NATS server kill).
 *
 * What happened: while the stream leader was being re-elected, the upstream publishes of
 * messages 25–31 failed ("jetstream is not enabled"), so the hub lane's commits for them
 * failed and were not acknowledged. But the edge kept sending newer messages in its window;
 * once JetStream answered again, the commit of message 33 succeeded and its CUMULATIVE ack
 * (u = 33) told the edge that 25–32 were stored too: the edge dropped them from its outbox.
 *
 * The same scenario here, deterministic and small: one NATS server, one hub, one edge
 * sending upstream every 60 ms; EF_TEST_UP stops taking `ef.test.up.>` for ~1.5 s (its
 * subjects are changed: every publish fails with "no responders", as during a leader
 * election) and takes it again. Every message the edge was acknowledged for must be in the
 * stream.
 */
import t from 'tap'
import { connect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, DeliverPolicy } from '@nats-io/jetstream'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(120_000)

t.test('upstream: a failed commit is never acknowledged by a later one', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const hub = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  hub.on('message', () => {})
  const edge = await EdgeNode.start({
    hub: hub.urls, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: subdir(t, 'edge-1'),
    backoff: { baseMs: 20, capMs: 300 }, admin: false
  })
  t.teardown(() => edge.close())
  await edge.waitConnected(15_000)

  const nc = await connect({ servers: nats.urls })
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  const N = 60
  const sending = (async () => {
    for (let i = 1; i <= N; i++) {
      await edge.sendUpstream(newMessage({ source: 'test', group: 'app', operation: 'upload', resource: 'default/report/r', content: { i } }))
      await new Promise(resolve => setTimeout(resolve, 60))
    }
  })()
  await new Promise(resolve => setTimeout(resolve, 800))
  await jsm.streams.update('EF_TEST_UP', { subjects: ['ef.test.elsewhere.>'] })
  await new Promise(resolve => setTimeout(resolve, 1500))
  await jsm.streams.update('EF_TEST_UP', { subjects: ['ef.test.up.>'] })
  await sending
  // The edge's outbox empties only once every message was acknowledged.
  await until('edge outbox empty', () => edge.outboxDepth === 0, 40_000)

  const total = (await jsm.streams.info('EF_TEST_UP')).state.messages
  const seen = new Set<number>()
  if (total > 0) {
    const c = await jetstream(nc).consumers.get('EF_TEST_UP', { filter_subjects: 'ef.test.up.>', deliver_policy: DeliverPolicy.All })
    let read = 0
    for await (const m of await c.consume()) {
      seen.add(m.json<{ i: number }>().i)
      if (++read >= total) break
    }
  }
  const missing = [...Array(N).keys()].map(k => k + 1).filter(i => !seen.has(i))
  t.comment(`EF_TEST_UP holds ${total} messages`)
  t.same(missing, [], `all ${N} acknowledged upstream messages are in EF_TEST_UP`)
})
