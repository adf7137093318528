/**
 * MemoryStore runs the store compliance suite, plus its own edge cases
 * (option validation, no aliasing of caller buffers).
 */
import t from 'tap'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { BIG, runStoreCompliance } from './store-compliance.js'

runStoreCompliance(t, async () => new MemoryStore({ dedupWindow: 5, maxDeadLetters: 50 }), { dedupWindow: 5, maxDeadLetters: 50 })

t.test('default sizes', async t => {
  runStoreCompliance(t, async () => new MemoryStore(), {})
})

t.test('options are validated; durability is reported', async t => {
  t.equal(new MemoryStore().durability, 'sync')
  t.equal(new MemoryStore({ durability: 'relaxed' }).durability, 'relaxed')
  t.throws(() => new MemoryStore({ durability: 'fast' as 'sync' }), { code: 'EF_INVALID_OPTION' })
  t.throws(() => new MemoryStore({ dedupWindow: 0 }), { code: 'EF_INVALID_OPTION' })
})

t.test('holes from removals are compacted (pending stays fast)', async t => {
  const s = new MemoryStore()
  const n = 20_000
  // Every other record superseded, then most acked: the walk over holes must stay short.
  await s.append('p', Array.from({ length: n }, (_, i) => ({ id: `m${i}`, bytes: new Uint8Array(1), key: `k${i >> 1}`, version: String(i) })), BIG, 1)
  t.equal(s.outboxStats('p').count, n / 2)
  const t0 = performance.now()
  for (let i = 0; i < 2000; i++) s.pending('p', i * 10, 16)
  t.ok(performance.now() - t0 < 1000, 'pending() on a holey outbox is fast')
  await s.ack('p', n - 2)
  t.same(s.pending('p', 0, 10).map(r => r.seq), [n])
})
