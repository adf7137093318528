/**
 * ReliableSender on its own (real MemoryStore and LmdbStore; the link to the
 * peer is a recording stub — it is the collaborator here): enqueue() calls in
 * one turn share one append, a bad input fails only its own caller, and the
 * in-memory copy of fresh records never sends what left the outbox.
 */
import t from 'tap'
import { ManualClock } from '../../src/util/clock.js'
import { defaultCodec } from '../../src/codec/codec.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { ReliableSender, type LaneLink } from '../../src/reliable/sender.js'
import type { ReliableStore } from '../../src/reliable/store.js'

const BIG = { maxMessages: 1_000_000, maxBytes: 1 << 30, overflow: 'reject' as const }

/** Counts the store calls the sender makes. */
function counting (s: ReliableStore): { store: ReliableStore, calls: { append: number, pending: number } } {
  const calls = { append: 0, pending: 0 }
  const store = new Proxy(s, {
    get (target, prop) {
      if (prop === 'append') calls.append++
      if (prop === 'pending') calls.pending++
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
  return { store, calls }
}

function link (): LaneLink & { sent: Envelope[], names: () => string[] } {
  const sent: Envelope[] = []
  return {
    sent,
    send: env => { sent.push(env); return true },
    onDrain: async () => {},
    // Resources carried by the data messages sent so far, in order.
    names: () => sent.filter(e => e.router.operation === 'data')
      .flatMap(e => (e.content as { m: Uint8Array[] }).m.map(b => defaultCodec.decode(b).router.resource))
  }
}

const msg = (resource: string, version?: string, id?: string): Envelope => {
  const env = newMessage({ source: 'cloud', group: 'g', operation: 'update', resource, content: 'x', ...(version === undefined ? {} : { resourceVersion: version }) })
  if (id !== undefined) env.header.id = id
  return env
}

for (const kind of ['memory', 'lmdb'] as const) {
  t.test(`${kind}: one append per turn; a bad input fails only its caller`, async t => {
    const base = kind === 'memory' ? new MemoryStore() : await LmdbStore.open(t.testdir(), { durability: 'relaxed' })
    t.teardown(() => base.close())
    const { store, calls } = counting(base)
    const s = new ReliableSender({ peer: 'n1', source: 'cloud', store, clock: new ManualClock(1000), codec: defaultCodec, quota: BIG })
    t.teardown(() => s.close())
    const ps = [s.enqueue(msg('a')), s.enqueue(msg('b', undefined, 'x'.repeat(600))), s.enqueue(msg('c'))]
    const [a, b, c] = await Promise.allSettled(ps)
    t.match(a, { status: 'fulfilled', value: { status: 'queued' } })
    t.match(b, { status: 'rejected', reason: { code: 'EF_INVALID_OPTION' } }, 'the 600-byte id is refused')
    t.match(c, { status: 'fulfilled', value: { status: 'queued' } })
    t.same(base.pending('n1', 0, 10).map(r => r.seq), [1, 2], 'the others are queued, in call order')
    const before = calls.append
    await Promise.all(Array.from({ length: 50 }, (_, i) => s.enqueue(msg(`m${i}`))))
    t.equal(calls.append - before, 1, '50 calls in one turn: one append')
  })

  t.test(`${kind}: fresh records are sent from memory, never after they left the outbox`, async t => {
    const base = kind === 'memory' ? new MemoryStore() : await LmdbStore.open(t.testdir(), { durability: 'relaxed' })
    t.teardown(() => base.close())
    const { store, calls } = counting(base)
    const s = new ReliableSender({ peer: 'n1', source: 'cloud', store, clock: new ManualClock(1000), codec: defaultCodec, quota: BIG, windowMessages: 2 })
    t.teardown(() => s.close())
    const l = link()
    s.attach(l) // connected, but nothing is sent before the peer's resume
    await s.enqueue(msg('a'))
    await s.enqueue(msg('b'))
    s.onResume(0)
    t.same(l.names(), ['a', 'b'])
    t.equal(calls.pending, 0, 'sent from memory: no read-back')
    // Window of 2 full: k v1 waits in memory, then k v2 supersedes it there.
    await s.enqueue(msg('k', '1'))
    t.match(await s.enqueue(msg('k', '2')), { status: 'queued', seq: 4, superseded: [3] })
    s.onAck(2)
    t.same(l.names(), ['a', 'b', 'k'], 'the superseded version is never sent')
    const last = l.sent.filter(e => e.router.operation === 'data').at(-1)
    t.equal(defaultCodec.decode((last?.content as { m: Uint8Array[] }).m[0] as Uint8Array).header.resourceVersion, '2')
    s.onAck(4)
    await s.enqueue(msg('later'))
    t.same(l.names(), ['a', 'b', 'k', 'later'])
    // Offline: nothing is kept in memory; after the reconnect records come from the store.
    s.detach()
    await s.enqueue(msg('offline-1'))
    await s.enqueue(msg('offline-2'))
    const l2 = link()
    s.attach(l2)
    s.onResume(4)
    t.same(l2.names(), ['later', 'offline-1', 'offline-2'], 'resent from the peer\'s resume point')
    t.ok(calls.pending > 0, 'read from the store')
  })
}
