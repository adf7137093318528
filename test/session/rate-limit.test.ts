import t from 'tap'
import { KeyedRateLimiter } from '../../src/session/rate-limit.js'
import { ManualClock } from '../../src/util/clock.js'

t.test('burst, then one per refill interval, with the suppressed count', async t => {
  const clock = new ManualClock()
  const rl = new KeyedRateLimiter(clock, { burst: 3, perSecond: 1 })
  t.same([1, 2, 3].map(() => rl.take('a').ok), [true, true, true])
  t.same(rl.take('a'), { ok: false, suppressed: 1 })
  t.same(rl.take('a'), { ok: false, suppressed: 2 })
  t.ok(rl.take('b').ok, 'other keys are not affected')
  clock.advance(1000)
  t.same(rl.take('a'), { ok: true, suppressed: 2 }, 'the next logged line says how many were left out')
  t.equal(rl.take('a').ok, false)
})

t.test('the key map is bounded (least recently used evicted)', async t => {
  const clock = new ManualClock()
  const rl = new KeyedRateLimiter(clock, { burst: 1, maxKeys: 100 })
  for (let i = 0; i < 10_000; i++) rl.take(`10.0.${i >> 8}.${i & 255}`)
  t.equal(rl.size, 100)
  t.throws(() => new KeyedRateLimiter(clock, { maxKeys: 0 }), { message: /maxKeys/ })
})
