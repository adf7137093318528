import t from 'tap'
import { ManualClock } from '../../src/util/clock.js'
import { newMessage, newResponse, type Envelope } from '../../src/codec/envelope.js'
import { isEdgeFabricError, MailboxFullError, ModuleBusError, RequestTimeoutError } from '../../src/errors.js'
import { ModuleBus, type DropReason, type ModuleBusOptions } from '../../src/edge/bus.js'

interface Harness {
  bus: ModuleBus
  clock: ManualClock
  upstream: Envelope[]
  drops: Array<[string, DropReason]>
  warns: Array<Record<string, unknown>>
}

function harness (opts: Partial<ModuleBusOptions> = {}): Harness {
  const clock = new ManualClock()
  const upstream: Envelope[] = []
  const drops: Array<[string, DropReason]> = []
  const warns: Array<Record<string, unknown>> = []
  const bus = new ModuleBus({
    clock,
    upstream: env => { upstream.push(env) },
    onDrop: (m, r) => { drops.push([m, r]) },
    logger: { warn: o => { warns.push(o as Record<string, unknown>) }, debug () {} },
    ...opts
  })
  return { bus, clock, upstream, drops, warns }
}

function msg (group: string, extra: Partial<Parameters<typeof newMessage>[0]> = {}): Envelope {
  return newMessage({ source: 'cloud', group, operation: 'update', resource: 'ns/thing/x', content: { n: 1 }, timestamp: 1_700_000_000_000, ...extra })
}

/** Take whatever is queued right now, without waiting. */
async function drain (h: { [Symbol.asyncIterator]: () => AsyncIterator<Envelope> }, n: number): Promise<Envelope[]> {
  const it = h[Symbol.asyncIterator]()
  const out: Envelope[] = []
  for (let i = 0; i < n; i++) {
    const r = await it.next()
    if (r.done === true) break
    out.push(r.value)
  }
  await it.return?.()
  return out
}

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

t.test('dispatch routes by destination first, else by group', async t => {
  const { bus } = harness()
  const a = bus.register({ name: 'a', group: 'g1' })
  const b = bus.register({ name: 'b', group: 'g1' })
  const c = bus.register({ name: 'c', group: 'g2' })

  const r1 = await bus.dispatch(msg('g1'))
  t.same(r1, { status: 'delivered', modules: ['a', 'b'], failed: [] })
  t.equal(a.depth, 1)
  t.equal(b.depth, 1)
  t.equal(c.depth, 0)

  const r2 = await bus.dispatch(msg('g1', { destination: 'c' }))
  t.same(r2, { status: 'delivered', modules: ['c'], failed: [] })
  t.equal(a.depth, 1, 'destination wins over group')

  // destination that is not a module name (e.g. the node id) falls back to the group
  const r3 = await bus.dispatch(msg('g2', { destination: 'edge-1' }))
  t.same(r3, { status: 'delivered', modules: ['c'], failed: [] })
  t.equal(bus.depth('c'), 2)
  t.equal(bus.depth('nope'), undefined)
  const [m] = await drain(c, 1)
  t.equal(m?.router.destination, 'c')
  bus.close()
})

t.test('register validates and rejects duplicates', async t => {
  const { bus } = harness()
  bus.register({ name: 'a', group: 'g' })
  t.throws(() => bus.register({ name: 'a', group: 'other' }), { code: 'EF_MODULE_BUS', reason: 'duplicate-module' })
  t.throws(() => bus.register({ name: '', group: 'g' }), { code: 'EF_INVALID_OPTION' })
  t.throws(() => bus.register({ name: 'x', group: 'g', mailbox: { overflow: 'forever' as 'block' } }), { code: 'EF_INVALID_OPTION', option: 'mailbox.overflow' })
  t.throws(() => new ModuleBus({} as ModuleBusOptions), { code: 'EF_INVALID_OPTION', option: 'upstream' })
  t.ok(bus.unregister('a'))
  t.notOk(bus.unregister('a'))
  bus.register({ name: 'a', group: 'g' }) // name free again
  bus.close()
})

t.test('send, sendToGroup fan-out, unknown targets', async t => {
  const { bus } = harness()
  const src = bus.register({ name: 'src', group: 'tools' })
  const x = bus.register({ name: 'x', group: 'workers' })
  const y = bus.register({ name: 'y', group: 'workers' })
  const env = msg('workers', { source: 'src' })
  await src.sendToGroup('workers', env)
  const [gotX] = await drain(x, 1)
  const [gotY] = await drain(y, 1)
  t.equal(gotX?.header.id, env.header.id)
  t.equal(gotY?.header.id, env.header.id)

  await src.send('x', msg('whatever'))
  t.equal(x.depth, 1)
  await t.rejects(src.send('ghost', msg('g')), { code: 'EF_MODULE_BUS', reason: 'no-module' })
  await t.rejects(src.sendToGroup('ghosts', msg('g')), { code: 'EF_MODULE_BUS', reason: 'no-module' })
  bus.close()
})

t.test('request / respond between modules (onMessage adapter)', async t => {
  const { bus, clock } = harness()
  const client = bus.register({ name: 'client', group: 'c' })
  const server = bus.register({ name: 'server', group: 's' })
  const stop = server.onMessage(async env => {
    const n = (env.content as { n: number }).n
    if (n < 0) await server.respondError(env, 'E_NEG', 'negative')
    else await server.respond(env, { doubled: n * 2 })
  })
  const req = newMessage({ source: 'client', group: 's', operation: 'query', resource: 'r', content: { n: 21 } })
  const resp = await client.request('server', req, { timeoutMs: 1000 })
  t.equal(resp.header.parentId, req.header.id)
  t.equal(resp.router.operation, 'response')
  t.same(resp.content, { doubled: 42 })
  t.equal(req.header.sync, true, 'request() marks the envelope sync')

  const errResp = await client.request({ group: 's' }, newMessage({ source: 'client', group: 's', operation: 'query', resource: 'r', content: { n: -1 } }))
  t.equal(errResp.router.operation, 'error')
  t.same(errResp.content, { code: 'E_NEG', message: 'negative' })
  t.equal(bus.stats().pendingRequests, 0)
  t.equal(clock.pending, 0, 'no timers left behind')
  t.equal(client.depth, 0, 'responses resolve the request, they are not queued')
  await stop()
  bus.close()
})

t.test('a request from the cloud is answered upstream; requestUpstream resolves from dispatch', async t => {
  const { bus, upstream } = harness()
  const m = bus.register({ name: 'meta', group: 'meta' })
  const req = msg('meta', { sync: true, operation: 'query' })
  t.same(await bus.dispatch(req, 'cloud'), { status: 'delivered', modules: ['meta'], failed: [] })
  const [got] = await drain(m, 1)
  await m.respond(got as Envelope, { ok: true })
  t.equal(upstream.length, 1)
  t.equal(upstream[0]?.header.parentId, req.header.id)
  t.equal(upstream[0]?.router.source, 'meta')
  t.equal(upstream[0]?.router.destination, 'cloud')

  // a module asks the cloud
  const ask = newMessage({ source: 'meta', group: 'resource', operation: 'query', resource: 'ns/cm/x' })
  const p = m.requestUpstream(ask, { timeoutMs: 5000 })
  await tick()
  t.equal(upstream[1]?.header.id, ask.header.id)
  t.equal(upstream[1]?.header.sync, true)
  const r = await bus.dispatch(newResponse(ask, 'from-cloud', 'cloud'))
  t.same(r, { status: 'response' })
  t.equal((await p).content, 'from-cloud')
  // the same response again is a late duplicate, dropped and counted
  t.same(await bus.dispatch(newResponse(ask, 'again', 'cloud')), { status: 'late-response' })
  t.equal(bus.stats().unrouted['late-response'], 1)
  bus.close()
})

t.test('request timeout (ManualClock) cleans the pending map', async t => {
  const { bus, clock } = harness()
  const client = bus.register({ name: 'client', group: 'c' })
  bus.register({ name: 'silent', group: 's' })
  const req = newMessage({ source: 'client', group: 's', operation: 'query', resource: 'r' })
  const p = client.request('silent', req, { timeoutMs: 1000 })
  await tick()
  t.equal(bus.stats().pendingRequests, 1)
  clock.advance(999)
  t.equal(bus.stats().pendingRequests, 1)
  clock.advance(1)
  await t.rejects(p, { code: 'EF_REQUEST_TIMEOUT', requestId: req.header.id })
  t.ok((await p.catch(e => e)) instanceof RequestTimeoutError)
  t.equal(bus.stats().pendingRequests, 0)
  t.equal(clock.pending, 0)
  // the server answering after the timeout: dropped, not queued at the client
  const silent = bus.get('silent')
  const [got] = await drain(silent as NonNullable<typeof silent>, 1)
  await silent?.respond(got as Envelope, 'late')
  t.equal(client.depth, 0)
  t.equal(bus.stats().unrouted['late-response'], 1)

  await t.rejects(client.request('silent', newMessage({ source: 'client', group: 's', operation: 'q', resource: 'r' }), { timeoutMs: 0 }), { code: 'EF_INVALID_OPTION' })
  bus.close()
})

t.test('pending requests are bounded', async t => {
  const { bus } = harness({ maxPendingRequests: 2 })
  const c = bus.register({ name: 'c', group: 'c' })
  bus.register({ name: 's', group: 's', mailbox: { capacity: 10 } })
  const mk = (): Envelope => newMessage({ source: 'c', group: 's', operation: 'q', resource: 'r' })
  const p1 = c.request('s', mk())
  const p2 = c.request('s', mk())
  await t.rejects(c.request('s', mk()), { code: 'EF_MODULE_BUS', reason: 'too-many-pending' })
  bus.close()
  await t.rejects(p1, { code: 'EF_MODULE_BUS', reason: 'closed' })
  await t.rejects(p2, { code: 'EF_MODULE_BUS', reason: 'closed' })
})

t.test("overflow 'reject': typed error to the sender, counted", async t => {
  const { bus, drops } = harness()
  const src = bus.register({ name: 'src', group: 'x' })
  const m = bus.register({ name: 'm', group: 'g', mailbox: { capacity: 2 } })
  await src.send('m', msg('g'))
  await src.send('m', msg('g'))
  const err = await src.send('m', msg('g')).catch(e => e)
  t.ok(err instanceof MailboxFullError)
  t.match(err, { code: 'EF_MAILBOX_FULL', module: 'm', reason: 'full' })
  t.same(drops, [['m', 'full']])
  // dispatch reports the refusal instead of throwing
  const r = await bus.dispatch(msg('g'))
  t.equal(r.status, 'rejected')
  t.equal(r.status === 'rejected' ? r.failed[0]?.error.code : '', 'EF_MAILBOX_FULL')
  const s = bus.stats().modules.find(x => x.name === 'm')
  t.match(s, { depth: 2, capacity: 2, overflow: 'reject', accepted: 2, dropped: { full: 2 } })
  await drain(m, 1)
  await src.send('m', msg('g')) // space again
  t.equal(m.depth, 2)
  bus.close()
})

t.test("overflow 'drop-oldest': evicts, counts, logs the id, answers waiting requesters", async t => {
  const { bus, drops, warns, upstream } = harness()
  const src = bus.register({ name: 'src', group: 'x' })
  const m = bus.register({ name: 'm', group: 'g', mailbox: { capacity: 2, overflow: 'drop-oldest' } })
  const e1 = msg('g', { content: 1 })
  const e2 = msg('g', { content: 2 })
  const e3 = msg('g', { content: 3 })
  await src.send('m', e1)
  await src.send('m', e2)
  await src.send('m', e3)
  t.same(drops, [['m', 'drop-oldest']])
  t.equal(warns[0]?.id, e1.header.id, 'the drop is logged with the message id')
  t.same((await drain(m, 2)).map(e => e.content), [2, 3])

  // a local request evicted before consumption fails at once, not at its timeout
  const req = newMessage({ source: 'src', group: 'g', operation: 'q', resource: 'r' })
  const p = src.request('m', req, { timeoutMs: 60_000 })
  await src.send('m', msg('g'))
  await src.send('m', msg('g'))
  await t.rejects(p, { code: 'EF_MAILBOX_FULL', reason: 'dropped', module: 'm' })

  // a cloud request evicted gets an error response upstream
  await drain(m, 2)
  const creq = msg('g', { sync: true, operation: 'query' })
  await bus.dispatch(creq, 'cloud')
  await bus.dispatch(msg('g'), 'cloud')
  await bus.dispatch(msg('g'), 'cloud')
  await tick()
  const answer = upstream.find(e => e.header.parentId === creq.header.id)
  t.equal(answer?.router.operation, 'error')
  t.match(answer?.content, { code: 'EF_MAILBOX_FULL' })
  t.equal(bus.stats().modules.find(x => x.name === 'm')?.dropped['drop-oldest'], 3)
  bus.close()
})

t.test("overflow 'block': waits for space, times out, bounds waiters", async t => {
  const { bus, clock, drops } = harness()
  const src = bus.register({ name: 'src', group: 'x' })
  const m = bus.register({ name: 'm', group: 'g', mailbox: { capacity: 2, overflow: 'block', blockTimeoutMs: 500 } })
  await src.send('m', msg('g', { content: 1 }))
  await src.send('m', msg('g', { content: 2 }))
  let accepted = false
  const p3 = src.send('m', msg('g', { content: 3 })).then(() => { accepted = true })
  // dispatch also waits (backpressure to the hub reader)
  let dispatched: unknown
  const pd = bus.dispatch(msg('g', { content: 4 })).then(r => { dispatched = r })
  await tick()
  t.notOk(accepted, 'blocked while full')
  t.equal(bus.stats().modules.find(x => x.name === 'm')?.blockedSenders, 2)
  const it = m[Symbol.asyncIterator]()
  t.equal((await it.next()).value?.content, 1)
  await p3
  t.ok(accepted, 'consuming freed space and admitted the first blocked sender')
  t.equal(dispatched, undefined, 'second waiter still waits (FIFO)')
  t.equal((await it.next()).value?.content, 2)
  await pd
  t.match(dispatched, { status: 'delivered' })
  t.equal(m.depth, 2)

  // nobody consumes: the blocked send times out with a typed error
  const p5 = src.send('m', msg('g', { content: 5 }))
  clock.advance(499)
  await tick()
  clock.advance(1)
  await t.rejects(p5, { code: 'EF_MAILBOX_FULL', reason: 'block-timeout' })
  t.ok(drops.some(([mod, r]) => mod === 'm' && r === 'block-timeout'))
  t.equal(bus.stats().modules.find(x => x.name === 'm')?.blockedSenders, 0)

  // waiters are bounded by capacity
  const p6 = src.send('m', msg('g'))
  const p7 = src.send('m', msg('g'))
  await t.rejects(src.send('m', msg('g')), { code: 'EF_MAILBOX_FULL', reason: 'too-many-blocked' })
  await it.return?.()
  bus.close()
  await t.rejects(p6, { code: 'EF_MODULE_BUS', reason: 'closed' })
  await t.rejects(p7, { code: 'EF_MODULE_BUS', reason: 'closed' })
  t.equal(clock.pending, 0)
})

t.test('byte bound: too-large for any policy, count of bytes', async t => {
  const { bus } = harness()
  const src = bus.register({ name: 'src', group: 'x' })
  bus.register({ name: 'm', group: 'g', mailbox: { capacity: 100, maxBytes: 4096, overflow: 'drop-oldest' } })
  await t.rejects(src.send('m', msg('g', { content: new Uint8Array(5000) })), { code: 'EF_MAILBOX_FULL', reason: 'too-large' })
  await src.send('m', msg('g', { content: new Uint8Array(1500) }))
  await src.send('m', msg('g', { content: new Uint8Array(1500) }))
  t.equal(bus.depth('m'), 2)
  await src.send('m', msg('g', { content: new Uint8Array(1500) }))
  t.equal(bus.depth('m'), 2, 'bytes bound evicted the oldest')
  const s = bus.stats().modules.find(x => x.name === 'm')
  t.ok((s?.bytes ?? 0) <= 4096)
  t.equal(s?.dropped['drop-oldest'], 1)
  bus.close()
})

t.test('dispatch of unroutable and expired messages', async t => {
  const { bus, drops, clock } = harness()
  bus.register({ name: 'a', group: 'g' })
  t.same(await bus.dispatch(msg('nobody')), { status: 'no-module' })
  t.same(drops, [['nobody', 'no-module']])
  const old = msg('g', { timestamp: clock.now() - 10_000, ttl: 5000 })
  t.same(await bus.dispatch(old), { status: 'expired' })
  // expiry while queued: skipped at consumption, counted
  await bus.dispatch(msg('g', { timestamp: clock.now(), ttl: 100, content: 'short' }))
  await bus.dispatch(msg('g', { content: 'long' }))
  clock.advance(200)
  const a = bus.get('a')
  const got = await drain(a as NonNullable<typeof a>, 1)
  t.equal(got[0]?.content, 'long')
  const st = bus.stats()
  t.same(st.unrouted, { 'no-module': 1, expired: 1 })
  t.equal(st.modules[0]?.dropped.expired, 1)
  t.equal(st.dispatched, 4)
  bus.close()
  t.same(await bus.dispatch(msg('g')), { status: 'closed' })
})

t.test('connection state broadcast reaches opted-in modules, even when full', async t => {
  const { bus } = harness()
  const opted = bus.register({ name: 'twin', group: 'twin', connectionEvents: true, mailbox: { capacity: 1 } })
  const other = bus.register({ name: 'other', group: 'o' })
  await bus.dispatch(msg('twin')) // mailbox now full
  t.equal(bus.broadcastState('disconnected'), 1)
  t.equal(other.depth, 0)
  t.equal(opted.depth, 2, 'state event bypasses the bound')
  t.equal(bus.broadcastState('connected'), 1)
  t.equal(opted.depth, 2, 'unconsumed older event superseded')
  const got = await drain(opted, 2)
  t.equal(got[1]?.router.group, '$edge')
  t.equal(got[1]?.router.operation, 'connected')
  t.match(got[1]?.content, { state: 'connected' })
  t.equal(bus.stats().modules[0]?.dropped.superseded, 1)
  bus.close()
})

t.test('onMessage: handler errors answer sync requests; one consumer at a time', async t => {
  const { bus, upstream } = harness()
  const m = bus.register({ name: 'm', group: 'g' })
  const stop = m.onMessage(() => { throw new Error('boom') })
  t.throws(() => m[Symbol.asyncIterator](), { code: 'EF_MODULE_BUS', reason: 'already-consuming' })
  t.throws(() => m.onMessage(() => {}), { code: 'EF_MODULE_BUS', reason: 'already-consuming' })
  const req = msg('g', { sync: true, operation: 'query' })
  await bus.dispatch(req, 'cloud')
  await tick()
  t.equal(upstream[0]?.header.parentId, req.header.id)
  t.same(upstream[0]?.content, { code: 'EF_HANDLER', message: 'boom' })
  t.equal(bus.stats().modules[0]?.handlerErrors, 1)
  await stop()
  // consumer released: iteration works now
  await bus.dispatch(msg('g', { content: 'after' }))
  t.equal((await drain(m, 1))[0]?.content, 'after')
})

t.test('close rejects pending requests, ends consumers, refuses new work', async t => {
  const { bus, clock } = harness()
  const c = bus.register({ name: 'c', group: 'c' })
  const s = bus.register({ name: 's', group: 's' })
  const p = c.request('s', newMessage({ source: 'c', group: 's', operation: 'q', resource: 'r' }), { timeoutMs: 10_000 })
  const up = c.requestUpstream(newMessage({ source: 'c', group: 'cloud', operation: 'q', resource: 'r' }), { timeoutMs: 10_000 })
  const consumed: Envelope[] = []
  const loop = (async () => { for await (const e of c) consumed.push(e) })()
  await tick()
  bus.close()
  bus.close() // idempotent
  await t.rejects(p, { code: 'EF_MODULE_BUS', reason: 'closed' })
  await t.rejects(up, { code: 'EF_MODULE_BUS', reason: 'closed' })
  await loop
  t.ok(c.closed)
  t.ok(s.closed)
  t.equal(clock.pending, 0, 'all timers cleared')
  t.throws(() => bus.register({ name: 'n', group: 'g' }), { code: 'EF_MODULE_BUS', reason: 'closed' })
  t.ok(isEdgeFabricError(await c.send('s', msg('s')).catch(e => e), ModuleBusError.code))
  await t.rejects(bus.sendUpstream(msg('x')), { code: 'EF_MODULE_BUS', reason: 'closed' })
  t.equal(bus.broadcastState('connected'), 0)
})

t.test('unregister drops queued messages (counted) and answers queued cloud requests', async t => {
  const { bus, upstream, drops } = harness()
  bus.register({ name: 'm', group: 'g' })
  const creq = msg('g', { sync: true, operation: 'query' })
  await bus.dispatch(creq, 'cloud')
  await bus.dispatch(msg('g'), 'cloud')
  bus.unregister('m')
  await tick()
  t.same(drops, [['m', 'closed'], ['m', 'closed']])
  t.equal(upstream.length, 1)
  t.equal(upstream[0]?.header.parentId, creq.header.id)
  t.match(upstream[0]?.content, { code: 'EF_MODULE_BUS' })
  bus.close()
})

t.test('upstream rejection reaches the sender', async t => {
  const { bus } = harness({ upstream: () => { throw new Error('outbox full') } })
  const m = bus.register({ name: 'm', group: 'g' })
  await t.rejects(m.sendUpstream(msg('x')), { message: 'outbox full' })
  await t.rejects(m.requestUpstream(msg('x')), { message: 'outbox full' })
  t.equal(bus.stats().upstreamFailed, 2)
  t.equal(bus.stats().pendingRequests, 0)
  bus.close()
})

t.test('byte estimate is cheap and close for binary', async t => {
  const { estimateEnvelopeBytes } = await import('../../src/edge/bus.js')
  const bin = estimateEnvelopeBytes(msg('g', { content: new Uint8Array(100_000) }))
  t.ok(bin >= 100_000 && bin < 100_400, `binary ${bin}`)
  const str = estimateEnvelopeBytes(msg('g', { content: 'x'.repeat(5000) }))
  t.ok(str >= 5000 && str < 5400, `string ${str}`)
  // Bounded work is asserted by counting the elements read, not by timing the walk
  // (a 50 ms bound on wall time failed nothing real and could fail on a loaded machine).
  let reads = 0
  const big = new Proxy(Array.from({ length: 1_000_000 }, (_, i) => i), {
    get (target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++
      return Reflect.get(target, key, receiver)
    }
  })
  const n = estimateEnvelopeBytes(msg('g', { content: { rows: big } }))
  t.ok(n > 8_000_000 && n < 10_000_000, `array extrapolated: ${n}`)
  t.ok(reads > 0 && reads <= 2048, `bounded walk: ${reads} of 1,000,000 elements read (node budget 2048)`)
})
