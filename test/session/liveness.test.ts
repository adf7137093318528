import t from 'tap'
import { ManualClock } from '../../src/util/clock.js'
import { Backoff, Liveness } from '../../src/session/liveness.js'

t.test('dialer pings after one heartbeat of silence and dies after 2.5×', async t => {
  const clock = new ManualClock()
  const pings: number[] = []
  let dead: number | undefined
  const l = new Liveness({ clock, heartbeatMs: 1000, role: 'dialer', ping: () => pings.push(clock.now()), dead: ms => { dead = ms } })
  const start = clock.now()
  clock.advance(999)
  t.same(pings, [], 'no ping before a heartbeat of silence')
  clock.advance(1)
  t.same(pings, [start + 1000], 'ping at 1× heartbeat')
  clock.advance(1000)
  t.equal(pings.length, 1, 'one ping per silence')
  t.equal(dead, undefined)
  clock.advance(500)
  t.equal(dead, 2500, 'dead at 2.5× heartbeat of silence')
  clock.advance(10_000)
  t.equal(pings.length, 1, 'nothing after death')
  l.stop()
})

t.test('inbound traffic keeps the link alive; pings resume after silence', async t => {
  const clock = new ManualClock()
  let pings = 0
  let dead = false
  const l = new Liveness({ clock, heartbeatMs: 1000, role: 'dialer', rttSampleMs: 0, ping: () => { pings++ }, dead: () => { dead = true } })
  for (let i = 0; i < 50; i++) { clock.advance(400); l.touch() }
  t.equal(pings, 0, 'busy link sends no pings (RTT sampling off)')
  t.equal(dead, false)
  // answered pings: touch right after each ping
  for (let i = 0; i < 10; i++) { clock.advance(1000); l.touch() }
  t.equal(pings, 10, 'one ping per heartbeat when idle')
  t.equal(dead, false)
  l.stop()
  t.equal(clock.pending, 0, 'stop clears the timer')
})

t.test('acceptor pings later than the dialer, so an idle pair exchanges one ping per heartbeat', async t => {
  const clock = new ManualClock()
  let dialerPings = 0
  let acceptorPings = 0
  // wire them: a ping is answered immediately by a pong; both sides touch on receipt
  const dialer: Liveness = new Liveness({ clock, heartbeatMs: 1000, role: 'dialer', ping: () => { dialerPings++; acceptor.touch(); dialer.touch() }, dead: () => t.fail('dialer dead') })
  const acceptor: Liveness = new Liveness({ clock, heartbeatMs: 1000, role: 'acceptor', ping: () => { acceptorPings++; dialer.touch(); acceptor.touch() }, dead: () => t.fail('acceptor dead') })
  clock.advance(60_000)
  t.equal(dialerPings, 60, 'dialer pings once a heartbeat')
  t.equal(acceptorPings, 0, 'acceptor never needs to')
  dialer.stop()
  acceptor.stop()
})

// issue 16: the session ping is the only RTT source (the ws transport ping is off by default), so a
// busy dialer, which never falls silent, must still sample now and then — and an acceptor never.
t.test('a busy dialer samples the RTT once per rttSampleMs (default 4× heartbeat); a busy acceptor does not', async t => {
  const clock = new ManualClock()
  const pings: number[] = []
  let acceptorPings = 0
  const start = clock.now()
  const d = new Liveness({ clock, heartbeatMs: 1000, role: 'dialer', ping: () => pings.push(clock.now() - start), dead: () => t.fail('dead') })
  const a = new Liveness({ clock, heartbeatMs: 1000, role: 'acceptor', ping: () => { acceptorPings++ }, dead: () => t.fail('dead') })
  t.equal(d.rttSampleMs, 4000)
  t.equal(a.rttSampleMs, 0)
  for (let i = 0; i < 100; i++) { clock.advance(200); d.touch(); a.touch() } // 20 s of steady traffic
  t.ok(pings.length >= 4 && pings.length <= 5, `busy dialer: ${pings.length} RTT pings in 20 s (${pings.join(', ')} ms)`)
  for (let i = 1; i < pings.length; i++) t.ok((pings[i] as number) - (pings[i - 1] as number) >= 4000, 'never more often than rttSampleMs')
  t.equal(acceptorPings, 0, 'busy acceptor: none')
  d.stop()
  a.stop()
})

// issue 17: a SIGKILLed QUIC hub sends nothing (no RST on UDP); a busy edge found out only at 2.5 ×
// heartbeat (12.5 s), so cluster failover over quic took 10–12 s against a 5 s target.
t.test('quick probe: a busy link that falls silent is pinged after 1 s and dead 2 s later; an answer keeps it', async t => {
  const clock = new ManualClock()
  const pings: number[] = []
  let deadAt: number | undefined
  let answer = false // the hub answers pings (pong 2 ms later) once the probe below was answered by hand
  const start = clock.now()
  const l: Liveness = new Liveness({ clock, heartbeatMs: 5000, role: 'dialer', ping: () => { pings.push(clock.now() - start); if (answer) { clock.advance(2); l.touch() } }, dead: () => { deadAt = clock.now() - start } })
  t.same(l.quickProbe, { afterMs: 1000, answerMs: 2000 }, 'on by default for the dialer')
  for (let i = 0; i < 30; i++) { clock.advance(100); l.touch() } // busy: 3 s of traffic every 100 ms
  const lastAt = clock.now() - start
  clock.advance(999)
  t.same(pings, [], 'no probe before 1 s of silence')
  clock.advance(1)
  t.same(pings, [lastAt + 1000], 'probe after 1 s of silence')
  clock.advance(300); l.touch() // the pong
  answer = true
  clock.advance(20_000)
  t.equal(deadAt, undefined, 'an answered probe keeps the link; the idle link then lives on heartbeat pings')
  t.ok(pings.length >= 2 && pings.slice(1).every((p, i) => p - ((pings[i] as number)) >= 5000), `idle again: pings a heartbeat apart (${pings.join(', ')})`)
  l.stop()

  // the hub is gone: a busy link's silence is fatal within afterMs + answerMs, not 2.5 × heartbeat
  const c2 = new ManualClock()
  let dead2: number | undefined
  const s2 = c2.now()
  const l2 = new Liveness({ clock: c2, heartbeatMs: 5000, role: 'dialer', ping: () => {}, dead: () => { dead2 = c2.now() - s2 } })
  for (let i = 0; i < 30; i++) { c2.advance(100); l2.touch() }
  c2.advance(10_000)
  t.equal(dead2, 3000 + 1000 + 2000, 'dead 3 s after the last inbound (was 12.5 s)')
  l2.stop()

  // the acceptor (hub) keeps the heartbeat deadline only
  const c3 = new ManualClock()
  const l3 = new Liveness({ clock: c3, heartbeatMs: 5000, role: 'acceptor', ping: () => {}, dead: () => {} })
  t.equal(l3.quickProbe, false, 'off for the acceptor')
  l3.stop()
})

t.test('quick probe: an idle link (one pong per heartbeat) never gets an extra ping', async t => {
  const clock = new ManualClock()
  let pings = 0
  const l = new Liveness({ clock, heartbeatMs: 5000, role: 'dialer', ping: () => { pings++; clock.advance(2); l.touch() }, dead: () => t.fail('dead') })
  clock.advance(60_000)
  t.equal(pings, 11, 'one ping per 5 s heartbeat (+2 ms answer), no quick probes')
  l.stop()
})

t.test('half-open: acceptor detects a frozen dialer within 3× heartbeat', async t => {
  const clock = new ManualClock()
  let deadAt: number | undefined
  const start = clock.now()
  const l = new Liveness({ clock, heartbeatMs: 5000, role: 'acceptor', ping: () => {}, dead: () => { deadAt = clock.now() } })
  clock.advance(15_000)
  t.ok(deadAt !== undefined && deadAt - start <= 15_000, `detected after ${(deadAt ?? 0) - start} ms`)
  l.stop()
})

t.test('backoff: full jitter within an exponentially growing, capped ceiling', async t => {
  let r = 0.999999
  const b = new Backoff(100, 2000, () => r)
  const ceilings = Array.from({ length: 8 }, () => b.next())
  t.same(ceilings, [99, 199, 399, 799, 1599, 1999, 1999, 1999])
  b.reset()
  r = 0
  t.equal(b.next(), 0, 'full jitter reaches zero')
  // many edges: delays spread across the window instead of synchronizing
  const delays = Array.from({ length: 1000 }, () => { const x = new Backoff(1000, 30_000); x.next(); x.next(); return x.next() })
  const buckets = new Set(delays.map(d => Math.floor(d / 400)))
  t.ok(buckets.size >= 9, `delays spread over ${buckets.size} of 10 buckets`)
  t.ok(delays.every(d => d >= 0 && d < 4000))
})
