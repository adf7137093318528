/**
 * The LMDB aedes persistence (src/device/edge/broker-persistence.ts) against
 * aedes-persistence's own abstract suite (run through a node:test → tap
 * adapter), plus a restart test with a real aedes broker and real MQTT.js
 * clients: retained messages and a persistent QoS 1 session survive.
 */
import t from 'tap'
import assert from 'node:assert'
import { createRequire } from 'node:module'
import { createServer, type AddressInfo } from 'node:net'
import { open } from 'lmdb'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { LmdbPersistence } from '../../src/device/edge/broker-persistence.js'

const require = createRequire(import.meta.url)
const abstract = require('aedes-persistence/abstract.js') as (o: object) => void

t.test('aedes-persistence abstract suite', async t => {
  const base = t.testdir({})
  let n = 0
  const cases: Array<{ name: string, fn: (ctx: object) => Promise<void> }> = []
  abstract({
    testAsync: true,
    persistence: () => {
      const root = open({ path: `${base}/p${n++}`, noSubdir: false, maxDbs: 4, overlappingSync: false, noSync: true })
      return new LmdbPersistence(root.openDB({ name: 'mqtt' }), root)
    },
    test: (name: string, fn: (ctx: object) => Promise<void>) => { cases.push({ name, fn }) }
  })
  t.ok(cases.length >= 40, `the abstract suite registered ${cases.length} tests`)
  for (const c of cases) {
    await t.test(c.name, async tt => {
      await c.fn({ assert, plan () {}, diagnostic: (m: string) => tt.comment(m) })
      tt.pass('ok')
    })
  }
})

async function startBroker (dir: string): Promise<{ url: string, close: () => Promise<void> }> {
  const root = open({ path: dir, noSubdir: false, maxDbs: 4, overlappingSync: false })
  const persistence = new LmdbPersistence(root.openDB({ name: 'mqtt' }), root)
  const broker = await Aedes.createBroker({ id: 'edge-broker', persistence })
  const server = createServer(broker.handle)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    close: async () => {
      await new Promise<void>(resolve => server.close(() => resolve()))
      await new Promise<void>(resolve => broker.close(() => resolve()))
      await persistence.destroy()
    }
  }
}

t.test('retained messages and a QoS 1 session survive a broker restart', async t => {
  const dir = t.testdir({})
  let b = await startBroker(dir)
  const sub = await mqtt.connectAsync(b.url, { clientId: 'mapper-1', clean: false, reconnectPeriod: 0 })
  await sub.subscribeAsync('data/#', { qos: 1 })
  await sub.endAsync()
  const pub = await mqtt.connectAsync(b.url, { clientId: 'pub', reconnectPeriod: 0 })
  for (let i = 0; i < 20; i++) await pub.publishAsync('data/x', String(i), { qos: 1 })
  await pub.publishAsync('cfg/a', 'retained-1', { qos: 1, retain: true })
  await pub.endAsync()
  await b.close()

  b = await startBroker(dir)
  t.teardown(() => b.close())
  // Handler in place before CONNECT: the queue comes right behind CONNACK (DESIGN.md §11).
  const got: string[] = []
  const all = new Promise<void>(resolve => {
    const c = mqtt.connect(b.url, { clientId: 'mapper-1', clean: false, reconnectPeriod: 0 })
    c.on('message', (_topic, payload) => { got.push(payload.toString()); if (got.length === 20) { void c.endAsync().then(resolve) } })
  })
  await all
  t.same(got, Array.from({ length: 20 }, (_, i) => String(i)), 'all 20 queued QoS 1 messages, in order')

  const retained = await new Promise<string>(resolve => {
    const c = mqtt.connect(b.url, { clientId: 'late', reconnectPeriod: 0 })
    c.on('message', (_topic, payload) => { void c.endAsync().then(() => resolve(payload.toString())) })
    c.on('connect', () => { c.subscribe('cfg/#', { qos: 1 }) })
  })
  t.equal(retained, 'retained-1', 'retained message restored')
})
