/**
 * Regression: "acknowledged messages lost in the full-size chaos run" after the per-seq id check
 * (issue 17, 2026-12-07, second loaded run: ≥ 64 lost on all 10 edges). The edge's cumulative
 * ack is a stream seq in the numbering of the replica its hub's outbox reader sits on; under
 * SIGKILLs replicas diverge, and the leader can hold, at or below an acknowledged seq, a message
 * the reader never took. The ack used to purge the node's subjects by seq range, and checked
 * only the part the reader had read: such a message was removed, never delivered.
 *
 * Set up exactly, on a real JetStream: the reader holds one record at a time (mirrorRecords 1),
 * so it has taken X and not Y; then an ack names Y's seq. X must go, Y must stay and be handed
 * out again — the store removes by message now, and publishes again what it never sent.
 */
import t from 'tap'
import { ClusterConnection, resolveClusterOptions } from '../../src/cluster/connection.js'
import type { Consumer } from '@nats-io/jetstream'
import { ClusterStore } from '../../src/cluster/store.js'
import { createCodec } from '../../src/codec/codec.js'
import { nullLogger } from '../../src/ops/logger.js'
import type { QuotaPolicy } from '../../src/reliable/store.js'
import { needNats, startNats, until } from './helpers.js'

t.setTimeout(120_000)

const quota: QuotaPolicy = { maxMessages: 1000, maxBytes: 1 << 20, overflow: 'reject' }
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

t.test('an ack past what the reader took removes only the messages it took', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const c = await ClusterConnection.open(resolveClusterOptions({ servers: nats.urls, name: 'test', replicas: 1 }), nullLogger)
  t.teardown(() => c.close())
  const errors: Error[] = []
  const store = new ClusterStore(c, { codec: createCodec(), mirrorRecords: 1, onError: err => errors.push(err) })
  t.teardown(() => store.close())
  await store.openPeer('edge-1')

  const [ox, oy] = await store.append('edge-1', [{ id: 'x', bytes: bytes('X') }, { id: 'y', bytes: bytes('Y') }], quota, Date.now())
  t.ok(ox?.status === 'queued' && oy?.status === 'queued', 'both queued')
  const sx = ox?.status === 'queued' ? ox.seq : 0
  const sy = oy?.status === 'queued' ? oy.seq : 0
  t.ok(sx > 0 && sy > sx, `X at ${sx}, Y at ${sy}`)
  await until('the reader took X', () => store.pending('edge-1', 0, 10).length === 1, 10_000)
  t.same(store.pending('edge-1', 0, 10).map(r => r.id), ['x'], 'the reader holds X only (full at 1 record)')

  // The edge acknowledges up to Y's seq, a seq this hub never handed out.
  await store.ack('edge-1', sy)
  await until('Y handed out again', () => store.pending('edge-1', 0, 10).some(r => r.id === 'y' && r.seq > sy), 10_000).catch(() => {})
  const again = store.pending('edge-1', 0, 10)
  t.same(again.map(r => r.id), ['y'], 'Y is pending again (before the fix: purged by the range, never delivered)')
  t.ok((again[0]?.seq ?? 0) > sy, `at a seq above the ack (${again[0]?.seq} > ${sy}), so the lane sends it`)
  t.equal(await store.depth('edge-1'), 1, 'the stream holds one message for the node: Y\'s copy (X removed by id)')
  t.same(errors, [], 'no store errors')
})

// Regression: "bench/cluster delivered 790 msg/s and 904 of 5,000 messages only after a rescue"
// (2026-12-07, the first removal-by-message version). It purged each acknowledged message's own
// subject; nats-server 2.9.10 then moves the node's outbox reader (a consumer filtered on
// `…down.<node>.>`) to the first message left on THAT subject — none — so past the end of the
// stream: every message the server had not yet pushed to the reader was skipped. Removal is by
// seq now (id-checked), which leaves consumers alone: 300 messages through a reader that holds
// one record at a time, acknowledged one by one, must all come through in order, none rescued.
t.test('acknowledging one message at a time does not make the reader skip the rest', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const c = await ClusterConnection.open(resolveClusterOptions({ servers: nats.urls, name: 'test', replicas: 1 }), nullLogger)
  t.teardown(() => c.close())
  const store = new ClusterStore(c, { codec: createCodec(), mirrorRecords: 1 })
  t.teardown(() => store.close())
  await store.openPeer('edge-1')
  const N = 300
  const out = await store.append('edge-1', Array.from({ length: N }, (_, i) => ({ id: `m${i}`, bytes: bytes(String(i)) })), quota, Date.now())
  t.equal(out.filter(o => o.status === 'queued').length, N, 'all queued')
  const got: string[] = []
  let acked = 0
  const deadline = Date.now() + 20_000
  while (got.length < N && Date.now() < deadline) {
    const [r] = store.pending('edge-1', acked, 1)
    if (r === undefined) { await new Promise(resolve => setTimeout(resolve, 5)); continue }
    got.push(r.id)
    acked = r.seq
    await store.ack('edge-1', acked)
  }
  t.equal(got.length, N, `every message handed out (got ${got.length})`)
  t.same(got, Array.from({ length: N }, (_, i) => `m${i}`), 'in order, each once: nothing skipped and published again')
  await until('the stream is empty for the node', async () => (await store.depth('edge-1')) === 0, 10_000).catch(() => {})
  t.equal(await store.depth('edge-1'), 0, 'every acknowledged message removed')
})

// Regression: "edge-1: JetStream outbox empty" failed at the end of a full-size chaos run
// (2026-12-07): after an ack's scan published 320 messages again, the node's reader was
// recreated on a server that did not have them (a diverged replica) and sat there delivering
// nothing while the leader held them. The store now compares the leader with the reader after
// each settling run and, when the reader has taken nothing for a while, reads what it lacks
// from the leader. Here the reader's consumer is a stand-in that delivers nothing at all.
t.test('a reader whose consumer delivers nothing still gets what the leader holds', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const c = await ClusterConnection.open(resolveClusterOptions({ servers: nats.urls, name: 'test', replicas: 1 }), nullLogger)
  t.teardown(() => c.close())
  const silent = async (): Promise<Consumer> => {
    const it = {
      async * [Symbol.asyncIterator] () { await new Promise(() => {}) },
      status: async function * () { await new Promise(() => {}) },
      close: async () => {}
    }
    return { consume: async () => it, info: async () => ({}) } as unknown as Consumer
  }
  const store = new ClusterStore(c, { codec: createCodec(), consumerFor: silent })
  t.teardown(() => store.close())
  await store.openPeer('edge-1')
  const out = await store.append('edge-1', [{ id: 'a', bytes: bytes('A') }, { id: 'b', bytes: bytes('B') }], quota, Date.now())
  t.equal(out.filter(o => o.status === 'queued').length, 2)
  t.same(store.pending('edge-1', 0, 10), [], 'the reader has nothing')
  // The edge resumes from 0; the check that follows a session's start (and every ack) finds the gap.
  store.resumed('edge-1', 0)
  await store.ack('edge-1', 0)
  await until('read from the leader', () => store.pending('edge-1', 0, 10).length === 2, 15_000).catch(() => {})
  t.same(store.pending('edge-1', 0, 10).map(r => r.id), ['a', 'b'], 'both handed out, read from the leader (before: never)')
})
