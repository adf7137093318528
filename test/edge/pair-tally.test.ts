/**
 * PairTally (src/edge/pair-tally.ts) sums per-message counts between label
 * changes: every count must reach the counter exactly once, under the label
 * values it was made with, by the next flush (scrape).
 */
import t from 'tap'
import { PairTally } from '../../src/edge/pair-tally.js'

t.test('every count reaches the sink once, under its own labels, by the next flush', async t => {
  const sink = new Map<string, number>()
  const calls: string[] = []
  const tally = new PairTally((a, b, n) => {
    calls.push(`${a}/${b}:${n}`)
    sink.set(`${a}/${b}`, (sink.get(`${a}/${b}`) ?? 0) + n)
  })
  const seq: Array<[string, string]> = [['down', 'ws'], ['down', 'ws'], ['down', 'quic'], ['down', 'ws'], ['down', 'ws'], ['down', 'ws']]
  for (const [a, b] of seq) tally.count(a, b)
  t.same(calls, ['down/ws:2', 'down/quic:1'], 'a label change hands the previous sum on')
  tally.flush()
  t.same(Object.fromEntries(sink), { 'down/ws': 5, 'down/quic': 1 }, 'after a flush every count is in')
  tally.flush()
  t.equal(calls.length, 3, 'a second flush adds nothing')
  // Same values, not the same string objects (as decoded from different frames).
  tally.count('bench', ['no', 'module'].join('-'))
  tally.count('bench', ['no', 'module'].join('-'))
  tally.flush()
  t.equal(sink.get('bench/no-module'), 2, 'equal strings are one label set')
})
