/**
 * The edge-side load of the lossy-link event scenarios
 * (bench/lib/session-load.ts) against a fake `send` whose answers we
 * control: failed requests are counted (error or deadline), the longest gap
 * without an answer covers an outage, and uploads count only acknowledged bytes.
 */
import t from 'tap'
import { RequestLoop, UploadLoop } from '../../bench/lib/session-load.js'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('open-loop requests: failures and the longest gap across an outage', async t => {
  let down = false
  const loop = new RequestLoop(async (_payload, timeoutMs) => {
    if (down) { await sleep(timeoutMs); throw new Error('timed out') }
    await sleep(2)
  })
  loop.start({ rate: 50, timeoutMs: 100 })
  await sleep(200)
  down = true
  await sleep(400)
  down = false
  await sleep(200)
  const s = await loop.stop()
  t.ok(s.sent >= 30, `sent ${s.sent}`)
  t.equal(s.ok + s.failed, s.sent, 'every request is answered or failed')
  t.ok(s.failed >= 10, `failed during the outage: ${s.failed}`)
  t.ok(s.longestGapMs >= 350, `longest gap ${s.longestGapMs} ms covers the 400 ms outage`)
  t.same(s.errors, ['timed out'])
  t.ok(s.p50Ms > 0 && s.p99Ms >= s.p50Ms)
})

t.test('closed loop (no rate): one request in flight', async t => {
  let inflight = 0
  let most = 0
  const loop = new RequestLoop(async () => { inflight++; most = Math.max(most, inflight); await sleep(5); inflight-- })
  loop.start({ timeoutMs: 1000 })
  await sleep(100)
  const s = await loop.stop()
  t.equal(most, 1)
  t.equal(s.failed, 0)
  t.ok(s.ok > 3)
})

t.test('a send that never settles fails at its deadline', async t => {
  const loop = new RequestLoop(() => new Promise(() => {}))
  loop.start({ rate: 20, timeoutMs: 50 })
  await sleep(100)
  const s = await loop.stop()
  t.equal(s.ok, 0)
  t.equal(s.failed, s.sent)
  t.match(s.errors[0], /no answer within 1050 ms/)
})

t.test('upload counts acknowledged bytes only', async t => {
  let acks = 0
  const up = new UploadLoop(async payload => { await sleep(10); acks++; return payload.length })
  up.start({ bytes: 1000, window: 2, timeoutMs: 1000 })
  await sleep(200)
  const s = await up.stop()
  t.ok(s.bytes > 0 && s.bytes % 1000 === 0 && s.bytes <= acks * 1000, `${s.bytes} bytes for ${acks} acks`)
  t.ok(s.mbit > 0)
})
