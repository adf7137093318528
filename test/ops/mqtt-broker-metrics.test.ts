/**
 * MQTT broker metrics and client table of the edge's embedded broker (issue 15):
 * connected clients by listener, subscriptions of the connected clients, and
 * refusals in one family with a closed `reason` set, every reason at 0 before
 * it first happens. Real hub and edge on loopback, real MQTT.js clients over
 * TCP and WebSocket.
 */
import { once } from 'node:events'
import t from 'tap'
import mqtt, { type MqttClient } from 'mqtt'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { MQTT_DENIAL_REASONS } from '../../src/device/edge/metrics.js'

const DEV = (d: string, s: string): string => `$hw/events/device/default/${d}/${s}`

async function until (pred: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 10_000
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('clients by listener, subscriptions, denials by reason', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub' })
  t.teardown(() => hub.close(100))
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: dir + '/edge', admin: false, durability: 'relaxed',
    devices: {
      mqtt: { host: '127.0.0.1', port: 0, ws: { host: '127.0.0.1', port: 0 } },
      sessions: { maxSessionsPerPrincipal: 1 },
      credentials: [
        { username: 'm1', password: 'p1', devices: ['default/dev1'], role: 'mapper' },
        { username: 'm2', password: 'p2', devices: ['default/dev2'], role: 'mapper' }
      ]
    }
  })
  t.teardown(() => edge.close())
  const broker = edge.devices?.broker
  if (broker === undefined) throw new Error('no embedded broker')
  const scrape = async (): Promise<string> => await edge.registry.metrics()
  const value = async (series: string): Promise<number> => {
    const line = (await scrape()).split('\n').find(l => l.startsWith(series + ' '))
    return line === undefined ? NaN : Number(line.slice(series.length + 1))
  }

  const before = await scrape()
  for (const reason of MQTT_DENIAL_REASONS) t.match(before, `edgefabric_edge_device_mqtt_denials_total{reason="${reason}"} 0`, `${reason} pre-initialised`)
  for (const l of ['tcp', 'tls', 'ws']) t.match(before, `edgefabric_edge_device_mqtt_clients{listener="${l}"} 0`)
  t.match(before, /edgefabric_edge_device_mqtt_subscriptions 0/)

  const clients: MqttClient[] = []
  t.teardown(async () => { await Promise.all(clients.map(c => c.endAsync(true))) })
  const refused = async (url: string, opts: mqtt.IClientOptions): Promise<void> => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
    await once(c as never, 'error')
    await c.endAsync(true)
  }
  const ok = async (url: string, opts: mqtt.IClientOptions): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts })
    clients.push(c)
    return c
  }

  await refused(broker.url, { username: 'm1', password: 'wrong', clientId: 'x1' })
  await refused(broker.url, { clientId: 'x2' })
  const m1 = await ok(broker.url, { username: 'm1', password: 'p1', clientId: 'dev1-mapper', clean: false })
  await refused(broker.url, { username: 'm2', password: 'p2', clientId: 'dev1-mapper' })
  await refused(broker.url, { username: 'm1', password: 'p1', clientId: 'dev1-second', clean: false })
  await m1.subscribeAsync(DEV('dev1', 'twin/update/delta'), { qos: 1 })
  await m1.subscribeAsync(DEV('dev1', 'twin/get/result'), { qos: 1 })
  await t.rejects(m1.subscribeAsync(DEV('dev2', 'twin/update/delta'), { qos: 1 }), 'SUBACK failure for another device')
  await m1.publishAsync(DEV('dev2', 'twin/update'), '{}', { qos: 1 })
  await m1.publishAsync(DEV('dev1', 'twin/update'), '{"twin":{}}', { qos: 1 })
  const m2 = await ok(broker.wsUrl as string, { username: 'm2', password: 'p2', clientId: 'dev2-ws' })
  await m2.subscribeAsync(DEV('dev2', 'twin/update/delta'), { qos: 0 })

  const text = await scrape()
  const want: Record<string, number> = { bad_credentials: 1, not_authorized: 1, client_id_owned: 1, session_quota: 1, subscribe_acl: 1, publish_acl: 1, source_blocked: 0, server_busy: 0, packet_too_large: 0 }
  for (const [reason, n] of Object.entries(want)) t.match(text, `edgefabric_edge_device_mqtt_denials_total{reason="${reason}"} ${n}\n`, `${reason}: ${n}`)
  t.equal(await value('edgefabric_edge_device_mqtt_clients{listener="tcp"}'), 1)
  t.equal(await value('edgefabric_edge_device_mqtt_clients{listener="ws"}'), 1)
  t.equal(await value('edgefabric_edge_device_mqtt_subscriptions'), 3)
  t.match(text, /edgefabric_edge_device_acl_denials_total\{action="connect"\} 2/, 'the older action family still counts')

  const page = broker.clients.page(0, 10)
  t.equal(page.total, 2)
  t.match(page.items[0], { clientId: 'dev1-mapper', username: 'm1', kind: 'mapper', listener: 'tcp', persistent: true, subscriptions: 2, remoteAddress: /127\.0\.0\.1/ })
  t.ok((page.items[0]?.messagesIn ?? 0) >= 1, 'accepted publishes counted (the refused one is not)')
  t.match(page.items[1], { clientId: 'dev2-ws', username: 'm2', listener: 'ws', persistent: false, subscriptions: 1 })
  t.same(broker.clients.page(1, 10).items.map(c => c.clientId), ['dev2-ws'], 'offset')
  t.same(broker.clients.page(0, 10, 'M2').items.map(c => c.clientId), ['dev2-ws'], 'search by username')

  await m2.endAsync()
  await until(async () => await value('edgefabric_edge_device_mqtt_clients{listener="ws"}') === 0, 'ws client gone')
  t.equal(await value('edgefabric_edge_device_mqtt_subscriptions'), 2, 'its subscription left with it')
  t.equal(broker.clients.size, 1)
})
