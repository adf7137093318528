/**
 * Issue 13 item 9: one device used 20 client ids with persistent sessions to
 * grow the edge's store from 3 to 40 MB, and it stayed. Now a principal holds
 * at most `sessions.maxSessionsPerPrincipal` persistent sessions, an offline
 * session queues at most `maxQueuedPerClient` packets (newer ones dropped and
 * counted), retained messages are for operators only, and sessions offline
 * for `sessionExpiryMs` are wiped.
 */
import t from 'tap'
import { statSync } from 'node:fs'
import mqtt from 'mqtt'
import { Mapper } from '../device/edge-helpers.js'
import { systemClock, type Clock } from '../../src/util/clock.js'
import { edgeWithDevices } from './mqtt-helpers.js'

t.test('one device with 20 client ids cannot grow the store without bound', async t => {
  // Real timers, but a wall clock the test can move forward (session expiry without sleeping a day).
  let skew = 0
  const clock: Clock = { now: () => Date.now() + skew, setTimeout: (fn, ms) => systemClock.setTimeout(fn, ms), clearTimeout: h => systemClock.clearTimeout(h) }
  const { edge, url, secrets, dir } = await edgeWithDevices(t, ['a'], { sessions: { maxSessionsPerPrincipal: 4, maxQueuedPerClient: 100, sessionExpiryMs: 86_400_000 } }, { clock })
  const A = { username: 'default/a', password: secrets.a }
  const prefix = '$hw/events/device/default/a/'
  const broker = edge.devices?.broker
  if (broker === undefined) throw new Error('no embedded broker')
  const entries = (): number => edge.devices?.store.mqttDb.getKeysCount() ?? 0
  const before = entries()

  // 20 persistent sessions, each subscribed to the device's whole tree, then offline
  const outcomes: Array<number | 'ok'> = []
  for (let i = 0; i < 20; i++) {
    const c = mqtt.connect(url, { ...A, clientId: `default/a:s${i}`, clean: false, reconnectPeriod: 0 })
    const r = await new Promise<number | 'ok'>(resolve => { c.once('connect', () => resolve('ok')); c.once('error', (e: Error & { code?: number }) => resolve(e.code ?? -1)) })
    if (r === 'ok') await c.subscribeAsync(prefix + '#', { qos: 1 })
    await c.endAsync(true)
    outcomes.push(r)
  }
  t.equal(outcomes.filter(r => r === 'ok').length, 4, 'four persistent sessions accepted')
  t.ok(outcomes.slice(4).every(r => r === 3), 'the other 16 refused (CONNACK 3, quota)')

  // flood the offline sessions: 3000 QoS 1 messages on the device's own topics, some retained
  const pub = await Mapper.connect(t, url, { ...A, clientId: 'default/a:pub' })
  const payload = Buffer.alloc(1024, 1)
  for (let i = 0; i < 3000; i++) await pub.client.publishAsync(prefix + `junk/${i}`, payload, { qos: 1, retain: i % 2 === 0 })
  await new Promise(resolve => setTimeout(resolve, 200))
  const queued = [0, 1, 2, 3].map(i => broker.persistence.queued(`default/a:s${i}`))
  const dataFile = statSync(`${dir}/edge/devices/data.mdb`, { throwIfNoEntry: false })?.size
  t.comment(`queued per session: ${queued.join(', ')}; store entries ${before} -> ${entries()}; data.mdb ${dataFile ?? '?'} bytes`)
  t.same(queued, [100, 100, 100, 100], 'each offline session holds at most maxQueuedPerClient packets')
  t.ok(entries() - before <= 4 * 100 + 4 * 2 + 10, `store entries bounded (${entries() - before} added for 12000 deliveries + 1500 retain requests)`)
  const drops = (await edge.registry.metrics()).split('\n').find(l => l.startsWith('edgefabric_edge_device_publish_failures_total{broker="internal",reason="queue-full"}'))
  t.match(drops, / 11600$/, 'every dropped delivery counted')

  // abandoned sessions expire
  skew += 86_400_000 + 1000
  const expired = await broker.clientIds.expire()
  t.equal(expired, 4, 'the four abandoned sessions were wiped')
  t.equal(broker.persistence.sessionOwners.size, 0)
  t.equal(entries(), before, 'the store is back where it started')
  // and the quota is free again
  const again = await Mapper.connect(t, url, { ...A, clientId: 'default/a:s0', clean: false })
  t.ok(again.client.connected)
})
