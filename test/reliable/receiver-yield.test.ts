/**
 * The commit in flight progresses while the next group is handed over (issue
 * 16, drain). lmdb-js starts a write transaction from a setImmediate and runs
 * its callback on the main thread, so a group handed to a synchronous
 * application in one run held the previous commit (and its ack) back until the
 * whole group was through, every commit cycle. The receiver now yields a turn
 * between data messages while a commit is in flight. Real LMDB store (`sync`)
 * in a test dir.
 */
import t from 'tap'
import { defaultCodec } from '../../src/codec/codec.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { ReliableReceiver } from '../../src/reliable/receiver.js'
import { systemClock } from '../../src/util/clock.js'

const BATCH = 64
const msg = (i: number): Uint8Array => Uint8Array.from(defaultCodec.encode(newMessage({ source: 'cloud', group: 'app', operation: 'update', resource: `r/${i % 10}`, content: { i } })))
const batch = (first: number): { s: number[], m: Uint8Array[] } => {
  const s: number[] = []
  for (let seq = first; seq < first + BATCH; seq++) s.push(seq)
  return { s, m: s.map(msg) }
}

/** A synchronous application that takes a while per message (CPU, no await). */
function busy (us: number): void {
  const end = performance.now() + us / 1000
  while (performance.now() < end) { /* work */ }
}

t.test('the previous group commits and is acknowledged while a long group is handed to a synchronous application', async t => {
  const store = await LmdbStore.open(t.testdir(), { durability: 'sync' })
  t.teardown(async () => { await store.close() })
  // What happened, in order: 'd<seq>' for a hand-over, 'a<u>' for an ack.
  const events: string[] = []
  const r = new ReliableReceiver({
    peer: 'cloud', source: 'edge', store, clock: systemClock, codec: defaultCodec,
    deliver: (env: Envelope) => { busy(150); events.push(`d${(env.content as { i: number }).i}`); return 'ok' },
    sendControl: env => { if (env.router.operation === 'ack') events.push(`a${(env.content as { u: number }).u}`) }
  })
  r.onData(batch(1))
  // Group 1 is handed over and its commit issued (all in microtasks) before this turn ends.
  await new Promise(resolve => setImmediate(resolve))
  const batches = 20 // ≈190 ms of hand-over: far longer than one LMDB commit, even on a loaded machine
  for (let b = 1; b <= batches; b++) r.onData(batch(1 + b * BATCH))
  await r.idle()
  const last = (batches + 1) * BATCH
  t.equal(events.filter(e => e.startsWith('d')).length, last, 'every message handed over once')
  const firstAck = events.indexOf(`a${BATCH}`)
  const lastHandOver = events.indexOf(`d${last}`)
  t.ok(firstAck >= 0, 'group 1 acknowledged')
  // Before the change, the ack of group 1 came only after all of group 2 (d1344) was handed over.
  t.ok(firstAck < lastHandOver, `group 1's ack (event ${firstAck}) comes before the end of group 2's hand-over (event ${lastHandOver})`)
  t.equal(events[events.length - 1], `a${last}`, 'the last ack covers everything')
  t.equal(store.receivedSeq('cloud'), last)
})
