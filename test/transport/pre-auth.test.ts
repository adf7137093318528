/**
 * The pre-auth gate (src/transport/pre-auth.ts) on its own, driven by a
 * ManualClock: caps overall and per source, the deadline, slots given back,
 * refusals reported once with their reason; and the FrameDecoder limit that
 * connections raise after authentication.
 */
import t from 'tap'
import { FrameDecoder, frameHeader } from '../../src/transport/framing.js'
import { PreAuthGate, sourceKey, type PreAuthRefusalEvent } from '../../src/transport/pre-auth.js'
import { ManualClock } from '../../src/util/clock.js'

t.test('sourceKey: address without port, IPv4-mapped as IPv4, IPv6 by /64', async t => {
  t.equal(sourceKey('127.0.0.2:4431'), '127.0.0.2')
  t.equal(sourceKey('10.0.0.1'), '10.0.0.1')
  t.equal(sourceKey('[::ffff:10.1.2.3]:80'), '10.1.2.3')
  t.equal(sourceKey('[2001:db8:1:2:aaaa::1]:443'), '2001:db8:1:2::/64')
  t.equal(sourceKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64', 'same /64, same key')
  t.equal(sourceKey('[::1]:9'), '0:0:0:0::/64')
})

t.test('caps overall and per source; slots come back; each refusal reported once', async t => {
  const clock = new ManualClock()
  const events: PreAuthRefusalEvent[] = []
  const gate = new PreAuthGate({ clock, maxPending: 3, maxPendingPerSource: 2, onRefused: e => events.push(e) })
  const a1 = gate.admit('ws', '10.0.0.1:1', () => {})
  const a2 = gate.admit('ws', '10.0.0.1:2', () => {})
  t.ok(a1 !== undefined && a2 !== undefined)
  t.equal(gate.admit('quic', '10.0.0.1:3', () => {}), undefined, 'third from one source refused')
  t.same(events.map(e => [e.reason, e.transport, e.source]), [['unauth_source_limit', 'quic', '10.0.0.1']])
  const b1 = gate.admit('ws', '10.0.0.2:1', () => {})
  t.ok(b1)
  t.equal(gate.admit('ws', '10.0.0.3:1', () => {}), undefined, 'overall cap')
  t.equal(events[1]?.reason, 'unauth_limit')
  a1?.authenticated()
  a1?.release() // idempotent
  t.equal(gate.pending, 2)
  t.equal(gate.pendingFrom('10.0.0.1:9'), 1)
  t.ok(gate.admit('ws', '10.0.0.3:1', () => {}), 'an authenticated connection frees its slot')
  b1?.fail('hello_too_large', 'frame of 16777216 bytes')
  b1?.fail('hello_malformed')
  t.equal(events.filter(e => e.source === '10.0.0.2').length, 1, 'a ticket reports one refusal')
  t.equal(events.at(-1)?.reason, 'hello_too_large')
})

t.test('deadline: expiry closes the connection, reports hello_deadline, frees the slot', async t => {
  const clock = new ManualClock()
  const events: PreAuthRefusalEvent[] = []
  const gate = new PreAuthGate({ clock, deadlineMs: 5000, onRefused: e => events.push(e) })
  const closed: Error[] = []
  const slow = gate.admit('webtransport', '10.0.0.9:5', err => closed.push(err))
  const quick = gate.admit('webtransport', '10.0.0.9:6', err => closed.push(err))
  quick?.authenticated()
  clock.advance(4999)
  t.equal(closed.length, 0)
  clock.advance(1)
  t.equal(closed.length, 1, 'only the unauthenticated one')
  t.match(closed[0], { code: 'EF_PREAUTH_TIMEOUT' })
  t.same(events.map(e => e.reason), ['hello_deadline'])
  t.equal(gate.pending, 0)
  t.equal(slow?.open, false)
  t.equal(clock.pending, 0, 'no timer left behind')
})

t.test('options are validated with their names', async t => {
  t.throws(() => new PreAuthGate({ maxPending: 0 }), { code: 'EF_INVALID_OPTION', message: /preAuth\.maxPending/ })
  t.throws(() => new PreAuthGate({ maxFrameSize: 10 * 1024 * 1024 }), { message: /preAuth\.maxFrameSize/ })
  t.throws(() => new PreAuthGate({ deadlineMs: 1.5 }), { message: /preAuth\.deadlineMs/ })
  const d = new PreAuthGate()
  t.same([d.maxPending, d.maxPendingPerSource, d.deadlineMs, d.maxFrameSize], [512, 64, 5000, 8192])
})

t.test('FrameDecoder: a header above the current limit is refused before any payload; the limit can be raised', async t => {
  const small = new FrameDecoder(16 * 1024 * 1024)
  small.maxFrameSize = 8192
  t.throws(() => small.push(frameHeader(16 * 1024 * 1024)), { code: 'EF_FRAME_TOO_LARGE' }, 'cut at the header')
  t.equal(small.bufferedBytes, 0, 'nothing held')
  const d = new FrameDecoder(16 * 1024 * 1024)
  d.maxFrameSize = 8192
  t.same(d.push(Buffer.concat([frameHeader(3), Buffer.from('abc')])).map(b => Buffer.from(b).toString()), ['abc'])
  d.maxFrameSize = 1 << 20
  const big = Buffer.alloc(100_000, 1)
  t.equal(d.push(Buffer.concat([frameHeader(big.length), big]))[0]?.byteLength, 100_000, 'full size after the raise')
})
