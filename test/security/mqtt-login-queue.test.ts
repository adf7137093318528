/**
 * Units of the login flood defence (issue 13 item 8; src/device/edge/auth.ts,
 * auth-queue.ts, auth-ledger.ts) on a manual clock: verified credentials
 * answered without scrypt, trusted sources first, per-username budget, one
 * queued check per failing source, a full queue making room for a better
 * class, the deadline, IPv6 sources counted per /64. The attack itself, with
 * real sockets, is mqtt-login-flood.test.ts.
 */
import t from 'tap'
import { ManualClock } from '../../src/util/clock.js'
import { CredentialIndex } from '../../src/device/edge/acl.js'
import { Authenticator } from '../../src/device/edge/auth.js'
import { CheckQueue } from '../../src/device/edge/auth-queue.js'
import { sourceKey } from '../../src/device/edge/auth-ledger.js'
import { hashSecret } from '../../src/device/credentials.js'

const pw = (s: string): Buffer => Buffer.from(s)

t.test('a verified credential is answered without a check; rotation misses the cache', async t => {
  const idx = new CredentialIndex()
  idx.setDevice('ns/a', [{ username: 'a', passwordHash: await hashSecret('right') }])
  const auth = new Authenticator(idx, new ManualClock(), 1000, 100, { maxConcurrent: 1 })
  t.equal((await auth.check('a', pw('right'), '10.0.0.1')).outcome, 'ok-checked')
  t.equal((await auth.check('a', pw('right'), '10.0.0.9')).outcome, 'ok-cached', 'any address, no scrypt')
  t.equal((await auth.check('a', pw('wrong'), '10.0.0.2')).outcome, 'bad-credentials')
  idx.setDevice('ns/a', [{ username: 'a', passwordHash: await hashSecret('new') }])
  t.equal((await auth.check('a', pw('right'), '10.0.0.1')).outcome, 'bad-credentials', 'old secret refused after rotation')
  t.equal((await auth.check('a', pw('new'), '10.0.0.1')).outcome, 'ok-checked')
})

t.test('per-username budget: sources that failed for it get no more checks, a never-failed source does', async t => {
  const idx = new CredentialIndex()
  idx.setDevice('ns/b', [{ username: 'b', passwordHash: await hashSecret('right') }])
  const auth = new Authenticator(idx, new ManualClock(), 1000, 100, { maxFailuresPerUsername: 3 })
  for (let i = 1; i <= 3; i++) t.equal((await auth.check('b', pw(`g${i}`), `10.0.1.${i}`)).outcome, 'bad-credentials')
  t.equal((await auth.check('b', pw('g9'), '10.0.1.1')).outcome, 'username-budget', 'a failed source: refused without a check')
  t.equal((await auth.check('b', pw('right'), '10.0.1.1')).outcome, 'username-budget', 'even with the right password, until the window ends')
  t.equal((await auth.check('b', pw('right'), '10.0.2.1')).outcome, 'ok-checked', 'a source that never failed for it is checked: no lock-out')
})

t.test('queue: trusted before clean before suspect; the last slots kept for the better classes', async t => {
  const clock = new ManualClock()
  const q = new CheckQueue(clock, { maxConcurrent: 1, maxQueued: 10, queueTimeoutMs: 1000 }, () => 0)
  const order: string[] = []
  const gates = new Map<string, () => void>()
  const job = (name: string, cls: 0 | 1 | 2, user = name): Promise<unknown> => q.submit(user, name, false, () => cls, async () => {
    order.push(name)
    await new Promise<void>(resolve => gates.set(name, resolve))
    return true
  })
  const tick = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }
  const open = async (name: string): Promise<void> => { (gates.get(name) as () => void)(); await tick() }
  const all = [job('x', 1)]
  all.push(job('s', 2), job('c', 1), job('t', 0))
  t.same(order, ['x'], 'one slot, taken')
  await open('x')
  t.same(order, ['x', 't'], 'the trusted check goes first')
  await open('t')
  t.same(order, ['x', 't', 'c'], 'then the clean one')
  await open('c')
  t.same(order, ['x', 't', 'c', 's'], 'the suspect one last')
  await open('s')
  await Promise.all(all)

  // Three slots: the last is a trusted check's, the one before a clean one's.
  const q3 = new CheckQueue(clock, { maxConcurrent: 3, maxQueued: 10, queueTimeoutMs: 1000 }, () => 0)
  const o3: string[] = []
  const job3 = (name: string, cls: 0 | 1 | 2): Promise<unknown> => q3.submit(name, name, false, () => cls, async () => {
    o3.push(name)
    await new Promise<void>(resolve => gates.set(name, resolve))
    return true
  })
  const more = [job3('s1', 2), job3('s2', 2), job3('c1', 1), job3('c2', 1), job3('t1', 0)]
  t.same(o3, ['s1', 'c1', 't1'], 'one suspect, one clean, one trusted check run; the rest wait')
  await open('t1')
  t.same(o3, ['s1', 'c1', 't1'], 'the freed last slot is not given to a clean or suspect check')
  await open('c1')
  t.same(o3, ['s1', 'c1', 't1', 'c2'])
  await open('s1')
  t.same(o3, ['s1', 'c1', 't1', 'c2', 's2'])
  await open('c2')
  await open('s2')
  await Promise.all(more)
})

t.test('queue: one check per failing source, a full queue admits a better class, deadline', async t => {
  const clock = new ManualClock()
  const q = new CheckQueue(clock, { maxConcurrent: 1, maxQueued: 2, queueTimeoutMs: 1000 }, () => 0)
  let release!: () => void
  const running = q.submit('x', 'r', false, () => 1, async () => await new Promise<boolean>(resolve => { release = () => resolve(true) }))
  const s1 = q.submit('b', 'evil', true, () => 2, async () => false)
  t.equal(await q.submit('b', 'evil', true, () => 2, async () => false), 'source-pending')
  const s2 = q.submit('b', 'evil2', true, () => 2, async () => false)
  const trusted = q.submit('b', 'gw', false, () => 0, async () => true)
  t.equal(await s2, 'queue-full', 'the newest suspect check made room')
  t.equal(await q.submit('b', 'evil3', true, () => 2, async () => false), 'queue-full', 'no room for another suspect one')
  release()
  t.equal(await running, true)
  t.equal(await trusted, true, 'the trusted check ran first')
  t.equal(await s1, false)
  await new Promise(resolve => setImmediate(resolve)) // its slot is given back
  const late = q.submit('b', 'evil4', false, () => 2, async () => false)
  const hold = q.submit('b', 'evil5', false, () => 2, async () => false)
  clock.advance(1000)
  t.same([await late, await hold].sort(), [false, 'queue-timeout'].sort(), 'the waiting one timed out')
  t.equal(q.queued, 0)
})

t.test('sources: IPv4-mapped as IPv4, IPv6 per /64', async t => {
  t.equal(sourceKey('::ffff:127.0.0.2'), '127.0.0.2')
  t.equal(sourceKey('10.1.2.3'), '10.1.2.3')
  t.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  t.equal(sourceKey('2001:db8:1:2:bbbb:1:2:3'), '2001:db8:1:2::/64', 'same /64, same source')
  t.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(sourceKey('::1'), '::1')
  t.equal(sourceKey(undefined), '')
})
