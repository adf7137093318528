/**
 * Authenticator and ACL rules (src/device/edge/acl.ts) as units: scrypt hashes
 * from the cloud, local credentials, cache keyed by the stored hash, bounded
 * concurrent checks, topic confinement.
 */
import t from 'tap'
import { ManualClock } from '../../src/util/clock.js'
import { CredentialIndex, mayPublish as pub, mayRead as read, maySubscribe as sub, type AclContext, type Principal } from '../../src/device/edge/acl.js'
import { Authenticator } from '../../src/device/edge/auth.js'
import { hashSecret } from '../../src/device/credentials.js'

t.test('credentials from snapshots, grants and local config', async t => {
  const idx = new CredentialIndex([{ username: 'local', password: 'pw', devices: ['ns/a'] }, { username: 'ops', passwordHash: await hashSecret('ops-pw'), devices: '*' }])
  const h1 = await hashSecret('s1')
  idx.setDevice('ns/a', [{ username: 'dev-a', passwordHash: h1 }])
  idx.setGrant('m', { username: 'mapper/n1/m', passwordHash: await hashSecret('ms'), nodeId: 'n1', devices: ['ns/a', 'ns/b'] })
  const clock = new ManualClock()
  const auth = new Authenticator(idx, clock, 1000)
  const pw = (s: string): Buffer => Buffer.from(s)
  t.match(await auth.authenticate('dev-a', pw('s1')), { kind: 'device', device: 'ns/a' })
  t.equal(await auth.authenticate('dev-a', pw('s2')), undefined, 'wrong secret')
  t.equal(await auth.authenticate('dev-a', undefined), undefined, 'no password')
  t.equal(await auth.authenticate(undefined, pw('s1')), undefined, 'anonymous')
  t.match(await auth.authenticate('mapper/n1/m', pw('ms')), { kind: 'mapper', nodeId: 'n1' })
  t.match(await auth.authenticate('local', pw('pw')), { kind: 'local' })
  t.match(await auth.authenticate('ops', pw('ops-pw')), { kind: 'operator' })

  // rotation: the cached success is keyed by the stored hash, so the old secret stops working at once
  idx.setDevice('ns/a', [{ username: 'dev-a', passwordHash: await hashSecret('s3') }])
  t.equal(await auth.authenticate('dev-a', pw('s1')), undefined, 'old secret refused after rotation')
  t.match(await auth.authenticate('dev-a', pw('s3')), { kind: 'device' })
  idx.removeDevice('ns/a')
  t.equal(await auth.authenticate('dev-a', pw('s3')), undefined, 'revoked with the device')
})

t.test('bounded concurrent scrypt checks', async t => {
  const idx = new CredentialIndex()
  idx.setDevice('ns/a', [{ username: 'u', passwordHash: await hashSecret('right') }])
  const auth = new Authenticator(idx, new ManualClock(), 1000, 100, { maxConcurrent: 1, maxQueued: 1 })
  const results = await Promise.all(['w1', 'w2', 'w3', 'w4'].map(async p => await auth.authenticate('u', Buffer.from(p))))
  t.same(results.filter(r => r === 'busy').length, 2, 'checks beyond maxConcurrent + maxQueued answered busy')
  t.match(await auth.authenticate('u', Buffer.from('right')), { kind: 'device' }, 'free again afterwards')
})

const ctx: AclContext = { nodeDevices: new Set(['ns/a', 'ns/b', 'ns/c']) }
const mayPublish = (p: Principal, topic: string): boolean => pub(p, topic, ctx)
const maySubscribe = (p: Principal, filter: string): boolean => sub(p, filter, ctx)

t.test('topic confinement', async t => {
  const dev: Principal = { kind: 'device', username: 'd', device: 'ns/a' }
  const mapper: Principal = { kind: 'mapper', username: 'm', nodeId: 'n1', devices: new Set(['ns/a', 'ns/b']) }
  const own = '$hw/events/device/ns/a/twin/update'
  t.ok(mayPublish(dev, own))
  t.notOk(mayPublish(dev, '$hw/events/device/ns/b/twin/update'))
  t.notOk(mayPublish(dev, '$hw/events/device/ns/ab/twin/update'), 'prefix of another name is not a match')
  t.ok(mayPublish(dev, '$hw/events/upload/anything'))
  t.ok(maySubscribe(dev, '$hw/events/device/ns/a/#'))
  t.notOk(maySubscribe(dev, '$hw/events/device/ns/+/twin/update/delta'))
  t.notOk(maySubscribe(dev, '$hw/events/upload/#'), 'upload topics are publish-only')
  t.notOk(maySubscribe(dev, '$hw/events/node/n1/membership/get/result'))
  t.ok(mayPublish(mapper, '$hw/events/device/ns/b/state/update'))
  t.ok(maySubscribe(mapper, '$hw/events/node/n1/membership/#'))
  t.notOk(maySubscribe(mapper, '$hw/events/node/n2/membership/#'))
  t.notOk(mayPublish(mapper, '$hw/events/device/ns/c/twin/update'))
  t.ok(mayPublish({ kind: 'operator', username: 'x' }, 'anything/at/all'))
  t.ok(maySubscribe({ kind: 'operator', username: 'x' }, '#'))
})

t.test('mapper wildcards: granted when they can reach its topics, filtered per message (issue 14 item 5)', async t => {
  const mapper: Principal = { kind: 'mapper', username: 'm', nodeId: 'n1', devices: new Set(['ns/a']) }
  const node: Principal = { kind: 'mapper', username: '(anonymous)', nodeId: 'n1', devices: 'node', anonymous: true }
  for (const f of ['$hw/events/node/#', '$hw/events/#', '$hw/events/device/+/+/twin/update/delta', '$ke/events/device/+/+/data/update', '#']) {
    t.ok(maySubscribe(mapper, f), `granted ${f}`)
    t.ok(maySubscribe(node, f), `node-wide granted ${f}`)
  }
  t.notOk(maySubscribe(mapper, '$hw/events/node/n2/#'), 'another node')
  t.notOk(maySubscribe(mapper, '$hw/events/device/ns/b/#'), 'another device')
  t.ok(read(mapper, '$hw/events/device/ns/a/twin/update/delta', ctx))
  t.notOk(read(mapper, '$hw/events/device/ns/b/twin/update/delta', ctx), 'wildcard delivery filtered')
  t.ok(read(mapper, '$hw/events/node/n1/membership/updated', ctx))
  t.notOk(read(mapper, '$hw/events/node/n2/membership/updated', ctx))
  t.ok(read(node, '$hw/events/device/ns/c/twin/update/delta', ctx), 'node-wide: every device bound to the node')
  t.notOk(read(node, '$hw/events/device/ns/z/twin/update/delta', ctx), 'but not devices of other nodes')
  t.notOk(read(mapper, '$hw/events/upload/x', ctx), 'upload records are publish-only')
  t.ok(read({ kind: 'operator', username: 'o' }, '$hw/events/upload/x', ctx))
  // legacy single-level topics
  const lctx: AclContext = { nodeDevices: new Set(['default/a']), legacyNamespace: 'default' }
  const dev: Principal = { kind: 'device', username: 'd', device: 'default/a' }
  t.ok(pub(dev, '$hw/events/device/a/twin/update', lctx))
  t.ok(pub(dev, '$ke/events/device/a/data/update', lctx))
  t.notOk(pub(dev, '$hw/events/device/b/twin/update', lctx))
  t.notOk(pub(dev, '$hw/events/device/a/twin/update', ctx), 'legacy off: single-level refused')
})
