/**
 * ReliableReceiver on its own (MemoryStore, no transport): batches that queue
 * up behind a running one are merged into one commit and one ack; the next
 * group is handed to the application while the previous one commits; stale
 * versions are recognised inside a group that is not committed yet; and on
 * the hub equal resource names from different nodes do not make each other
 * stale.
 */
import t from 'tap'
import { defaultCodec } from '../../src/codec/codec.js'
import { systemClock } from '../../src/util/clock.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { ReliableReceiver } from '../../src/reliable/receiver.js'
import type { InboundItem, InboundResult } from '../../src/reliable/store.js'

function msg (i: number, version?: number, resource = `r/${i}`): Uint8Array {
  return defaultCodec.encode(newMessage({
    source: 'cloud', group: 'app', operation: 'update', resource, content: { i },
    ...(version !== undefined ? { resourceVersion: String(version) } : {})
  }))
}

/** A MemoryStore whose commits can be held open, counting them. */
class SlowStore extends MemoryStore {
  commits = 0
  gate: Promise<void> = Promise.resolve()
  override async commitInbound (peer: string, items: InboundItem[], now: number): Promise<InboundResult> {
    this.commits++
    await this.gate
    return await super.commitInbound(peer, items, now)
  }
}

function receiver (store: MemoryStore, delivered: number[]): { r: ReliableReceiver, acks: number[] } {
  const acks: number[] = []
  const r = new ReliableReceiver({
    peer: 'cloud', source: 'edge', store, clock: systemClock, codec: defaultCodec,
    deliver: (env: Envelope) => { delivered.push((env.content as { i: number }).i); return 'ok' },
    sendControl: env => { if (env.router.operation === 'ack') acks.push((env.content as { u: number }).u) }
  })
  return { r, acks }
}

t.test('batches queued behind a running one share one commit and one ack; seqs going back are duplicates', async t => {
  const store = new SlowStore()
  let open: () => void = () => {}
  store.gate = new Promise(resolve => { open = resolve })
  const delivered: number[] = []
  const { r, acks } = receiver(store, delivered)
  r.onData({ s: [1, 2], m: [msg(1), msg(2)] })
  await new Promise(resolve => setImmediate(resolve))
  // group 1 is committing (held); these three queue up and become one group
  r.onData({ s: [3, 4], m: [msg(3), msg(4)] })
  r.onData({ s: [1, 2, 3], m: [msg(1), msg(2), msg(3)] }) // a resend after an ack timeout
  r.onData({ s: [5], m: [msg(5)] })
  // The hand-over yields a turn before each data message while a commit is in flight (so that
  // commit can progress): a few turns, the commit still held all along.
  for (let turn = 0; turn < 10 && delivered.length < 5; turn++) await new Promise(resolve => setImmediate(resolve))
  t.same(delivered, [1, 2, 3, 4, 5], 'the next group is handed over while the previous one commits; resent seqs are skipped')
  t.same(acks, [], 'nothing acknowledged before its commit')
  open()
  await r.idle()
  t.equal(store.commits, 2, 'two commits for four batches')
  t.same(acks, [2, 5], 'one cumulative ack per commit, in order')
  t.equal(store.receivedSeq('cloud'), 5)
})

t.test('an older version later in the same uncommitted group is stale, not delivered', async t => {
  const store = new MemoryStore()
  const delivered: number[] = []
  const { r, acks } = receiver(store, delivered)
  // seq 2 carries v5 of "x", seq 3 an older v4 of "x" (queued after v5 was acknowledged at the producer)
  r.onData({ s: [1, 2, 3, 4], m: [msg(1), msg(2, 5, 'x'), msg(3, 4, 'x'), msg(4)] })
  await r.idle()
  t.same(delivered, [1, 2, 4], 'v4 after v5 is not handed to the application')
  t.same(acks, [4], 'but acknowledged')
  t.equal(store.getResource('x')?.version, '5')
})

t.test('hub: the same resource name from two nodes is versioned per node', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['memory://receiver-xnode'], dataDir: `${dir}/hub`, admin: false, durability: 'relaxed' })
  t.teardown(() => hub.close(100))
  const got: string[] = []
  hub.on('message', m => got.push(`${m.nodeId}:${m.envelope.header.resourceVersion ?? ''}`))
  const edges: EdgeNode[] = []
  for (const id of ['a', 'b']) {
    const e = await EdgeNode.start({ hub: 'memory://receiver-xnode', nodeId: id, token: hub.createToken(id), dataDir: `${dir}/${id}`, admin: false, durability: 'relaxed' })
    t.teardown(() => e.close())
    await e.waitConnected()
    edges.push(e)
  }
  const report = (v: number): Envelope => newMessage({ source: 'app', group: 'twin', operation: 'report', resource: 'device/status', resourceVersion: String(v), content: v })
  await edges[0]?.sendUpstream(report(5))
  while (got.length < 1) await new Promise(resolve => setTimeout(resolve, 10))
  await edges[1]?.sendUpstream(report(3))
  await edges[0]?.sendUpstream(report(4)) // stale for node a
  const end = Date.now() + 5000
  while ((edges[0]?.outboxDepth !== 0 || edges[1]?.outboxDepth !== 0) && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 10))
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(got.sort(), ['a:5', 'b:3'], "node b's v3 is delivered; node a's own older v4 is not")
})

/** A MemoryStore whose next commit fails once (a full disk, a lost cluster leader). */
class FailOnceStore extends SlowStore {
  failNext = false
  override async commitInbound (peer: string, items: InboundItem[], now: number): Promise<InboundResult> {
    if (this.failNext) {
      this.failNext = false
      this.commits++
      await this.gate
      throw new Error('commit failed (test)')
    }
    return await super.commitInbound(peer, items, now)
  }
}

// Regression (issue 17's cluster chaos run, same contract for LMDB): after one failed commit the receiver
// went on with the next groups; seqs may skip (superseded, expired records), so the next commit's
// cumulative ack covered the records that were never stored — acknowledged, and lost.
t.test('a failed commit: nothing after it is committed or acked until a new session resumes from the durable point', async t => {
  const store = new FailOnceStore()
  const delivered: number[] = []
  const acks: number[] = []
  const resumes: number[] = []
  const broken: Error[] = []
  const r = new ReliableReceiver({
    peer: 'cloud', source: 'edge', store, clock: systemClock, codec: defaultCodec,
    deliver: (env: Envelope) => { delivered.push((env.content as { i: number }).i); return 'ok' },
    sendControl: env => {
      if (env.router.operation === 'ack') acks.push((env.content as { u: number }).u)
      if (env.router.operation === 'resume') resumes.push((env.content as { r: number }).r)
    },
    onBroken: err => broken.push(err)
  })
  r.onData({ s: [1, 2], m: [msg(1), msg(2)] })
  await r.idle()
  t.same(acks, [2])
  let open: () => void = () => {}
  store.gate = new Promise(resolve => { open = resolve })
  store.failNext = true
  r.onData({ s: [3, 4], m: [msg(3), msg(4)] }) // this commit will fail
  await new Promise(resolve => setImmediate(resolve))
  r.onData({ s: [6, 7], m: [msg(6), msg(7)] }) // seq 5 was superseded at the sender: a legitimate skip
  await new Promise(resolve => setImmediate(resolve))
  open()
  await r.idle()
  r.onData({ s: [8], m: [msg(8)] })
  await r.idle()
  t.same(acks, [2], 'no ack after the failed commit (before the fix: 7, then 8 — records 3 and 4 acknowledged, never stored)')
  t.equal(store.receivedSeq('cloud'), 2, 'the durable point stays before the failed records')
  t.equal(broken.length, 1, 'the session is told to end, once')
  // the new session: resume from the durable point, the sender resends 3, 4, 6, 7, 8
  r.sendResume()
  await r.idle()
  t.same(resumes, [2], 'resume from the last durable seq')
  r.onData({ s: [3, 4, 6, 7, 8], m: [msg(3), msg(4), msg(6), msg(7), msg(8)] })
  await r.idle()
  t.same(acks, [2, 8], 'acknowledged once stored')
  t.equal(store.receivedSeq('cloud'), 8)
})
