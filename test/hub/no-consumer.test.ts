/**
 * Regression (issue 12, "Nothing is lost without a trace"): a reliable
 * upstream message sent to a hub with NO consumer (no onUpstream, no
 * 'message' listener, no hub.messages() iterator — e.g. the CLI hub) was
 * acknowledged and vanished. Now the hub refuses it with EF_NO_CONSUMER, the
 * edge keeps it in its durable outbox (not counted as a rejection, never
 * dead-lettered for it), probes again with backoff, and resends at once when
 * a consumer attaches.
 */
import t from 'tap'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { LaneEvent } from '../../src/reliable/sender.js'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

for (const consumer of ['messages()', "on('message')"] as const) {
  t.test(`reliable upstream with no consumer is kept at the edge, then delivered to ${consumer}`, async t => {
    const dir = t.testdir({})
    const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: `${dir}/hub`, admin: false })
    t.teardown(() => hub.close(200))
    const edge = await EdgeNode.start({
      hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: `${dir}/edge`,
      admin: false, backoff: { baseMs: 20, capMs: 200 }
    })
    t.teardown(() => edge.close())
    const events: LaneEvent[] = []
    edge.on('lane', e => events.push(e))
    await edge.waitConnected(10_000)

    await edge.sendUpstream(newMessage({ source: 'edge-1', group: 'app', operation: 'upload', resource: 'default/report/1', content: { n: 1 } }))
    // Holds at 0, 0.2, 0.6, 1.4 s: more than the edge's maxRejections (5 by default) would allow in 1.8 s if counted.
    await sleep(1800)
    const holds = events.filter(e => e.type === 'held')
    t.ok(holds.length >= 3, `the edge was told to hold ${holds.length} times`)
    t.match(holds[0], { seq: 1, reason: /no consumer/ })
    t.equal(edge.outboxDepth, 1, 'still durable in the edge outbox')
    t.same(events.filter(e => e.type === 'dead-letter'), [], 'never dead-lettered')
    t.same(edge.store.deadLetters(), [])

    const started = Date.now()
    let got: unknown
    if (consumer === 'messages()') {
      const it = hub.messages()[Symbol.asyncIterator]()
      got = (await it.next()).value?.envelope.content
    } else {
      got = await new Promise(resolve => hub.on('message', m => resolve(m.envelope.content)))
    }
    const ms = Date.now() - started
    t.same(got, { n: 1 }, 'delivered once a consumer attached')
    t.ok(ms < 1000, `within ${ms} ms of the consumer attaching (resume, not the 3.2 s backoff)`)
    for (let i = 0; i < 100 && edge.outboxDepth > 0; i++) await sleep(20)
    t.equal(edge.outboxDepth, 0, 'acknowledged')
  })
}
