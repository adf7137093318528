/**
 * Issue 14 part 1, access side, with mappers-go payloads (kubeedge-structs.ts):
 * mapper wildcards filtered per message, operator credentials, refused
 * publishes that keep the connection (logged once per client per minute),
 * the oversize-on-disconnect regression, legacy single-level topics and
 * anonymous loopback mappers.
 */
import t from 'tap'
import mqtt from 'mqtt'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { createLogger } from '../../src/ops/logger.js'
import { Mapper, until } from './edge-helpers.js'
import { D, goMapper, metric, setup } from './kubeedge-setup.js'
import { createMessageState, createMessageTwinUpdate, DeviceMsg, DeviceTwinDelta, DeviceTwinResult, formatF6, goDecode, MembershipGetResult } from './kubeedge-structs.js'

t.test('wildcards for mappers, operator sees all, refused publish keeps the connection, disconnects are not oversize (items 5, 6)', async t => {
  const lines: string[] = []
  const logger = createLogger({ level: 'info', destination: new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } }) })
  const { edge, hub, url } = await setup(t, {}, { logger })
  const { sendGrant } = await import('./edge-helpers.js')
  await sendGrant(hub, 'edge-1', 'modbus', 'mapper/edge-1/modbus', 'ms', ['default/dev1'])
  await until(() => edge.devices?.store.grant('modbus') !== undefined)
  const mapper = await goMapper(t, url, 'mapper/edge-1/modbus', 'ms')
  await mapper.client.subscribeAsync(['$hw/events/node/#', '$hw/events/#'], { qos: 1 })
  const ops = await Mapper.connect(t, url, { username: 'ops', password: 'ops-pw' })
  await ops.client.subscribeAsync('$hw/events/#', { qos: 1 })
  const d2 = await goMapper(t, url, 'default/dev2', 's2')
  await d2.client.publishAsync('$hw/events/device/default/dev2/twin/update', createMessageTwinUpdate('temperature', 'float', '1.000000'), { qos: 1 })
  await mapper.client.publishAsync(`${D}/twin/update`, createMessageTwinUpdate('temperature', 'float', '2.000000'), { qos: 1 })
  await ops.next('$hw/events/device/default/dev2/twin/update/result')
  await ops.next(`${D}/twin/update/result`)
  await mapper.next(`${D}/twin/update/result`)
  t.notOk(mapper.messages.some(x => x.topic.includes('/dev2/')), 'the mapper\'s wildcard never shows another device')
  // a mapper-sdk style membership get through the wildcard subscription
  await mapper.client.publishAsync('$hw/events/node/edge-1/membership/get', '{"event_id":"m1","timestamp":1}', { qos: 1 })
  const mem = goDecode(MembershipGetResult, await mapper.next('$hw/events/node/edge-1/membership/get/result')) as any
  t.equal(mem.event_id, 'm1')

  // refused publishes at QoS 0 and 1: dropped, counted, connection kept
  for (const qos of [0, 1] as const) await mapper.client.publishAsync('$hw/events/device/default/dev2/twin/update', createMessageTwinUpdate('temperature', 'float', '9.000000'), { qos })
  await mapper.client.publishAsync('$hw/events/node/other-node/membership/get', '{}', { qos: 1 })
  t.ok(mapper.client.connected)
  const again = await mapper.request(`${D}/twin/get`, {})
  t.ok(again.twin, 'still served after refusals')
  t.match(await metric(edge, 'edgefabric_edge_device_acl_denials_total{action="publish"}'), / 3$/)
  t.equal(lines.filter(l => l.includes('device broker denied') && l.includes('"action":"publish"')).length, 1, 'three refusals, one log line per client per minute')
  t.equal(edge.devices?.getTwin('default', 'dev2')?.reported.temperature?.value, 1, 'dev2 untouched by refused publishes')

  // regression: a normal disconnect was counted as an oversize denial and logged "device connection cut"
  for (let i = 0; i < 3; i++) {
    const c = mqtt.connect(url, { username: 'ops', password: 'ops-pw', reconnectPeriod: 0 })
    await once(c as never, 'connect')
    await c.endAsync()
  }
  const raw = mqtt.connect(url, { username: 'ops', password: 'ops-pw', reconnectPeriod: 0 })
  await once(raw as never, 'connect')
  raw.stream.destroy()
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notMatch(await metric(edge, 'edgefabric_edge_device_acl_denials_total{action="oversize"}'), / [1-9]/, 'no oversize denials for normal disconnects')
  await raw.endAsync(true)
})

t.test('legacy single-level topics resolve to default/{name} (item 7)', async t => {
  const { edge, url } = await setup(t, { legacyTopics: true })
  const m = await goMapper(t, url, 'default/dev1', 's1')
  const L = '$hw/events/device/dev1'
  await m.client.subscribeAsync([`${L}/twin/update/result`, `${L}/twin/update/delta`, `${L}/state/update/result`], { qos: 0 })
  m.client.publish(`${L}/twin/update`, createMessageTwinUpdate('temperature', 'float', formatF6(19.5)), { qos: 0 })
  const r = goDecode(DeviceTwinResult, await m.next(`${L}/twin/update/result`)) as any
  t.equal(r.twin.temperature.actual.value, '19.500000')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.reported.temperature?.value, 19.5)
  const dl = goDecode(DeviceTwinDelta, await m.next(`${L}/twin/update/delta`)) as any
  t.same(dl.delta, { target: '22.5' }, 'delta published on the single-level topic too')
  m.client.publish(`${L}/state/update`, createMessageState('online'), { qos: 0 })
  t.equal((goDecode(DeviceMsg, await m.next(`${L}/state/update/result`)) as any).device.state, 'online')
  // not the other device's single-level topics
  await m.client.publishAsync('$hw/events/device/dev2/twin/update', createMessageTwinUpdate('temperature', 'float', '5.000000'), { qos: 1 })
  t.equal(edge.devices?.getTwin('default', 'dev2')?.reported.temperature, undefined)
})

t.test('anonymous mappers only with allowAnonymous, only from loopback, as the node\'s mapper (item 9)', async t => {
  const closed = await setup(t)
  const c = mqtt.connect(closed.url, { reconnectPeriod: 0, clientId: '' })
  const [err] = await once(c as never, 'error') as [Error]
  t.match(err.message, /Bad username or password|Not authorized/i, 'anonymous refused by default')
  await c.endAsync(true)
  t.same(closed.edge.devices?.warnings, [])

  const { edge, url } = await setup(t, { allowAnonymous: true }, { admin: { host: '127.0.0.1', port: 0 } })
  t.match(edge.devices?.warnings, [/anonymous/], 'warning kept for the status page')
  const status = await (await fetch(`${edge.adminUrl as string}/status`)).json() as { warnings?: string }
  t.match(status.warnings, /anonymous access is on/, 'and shown on the status page')
  const anon = await goMapper(t, url)
  await anon.client.subscribeAsync('$hw/events/#', { qos: 0 })
  anon.client.publish(`${D}/twin/update`, createMessageTwinUpdate('temperature', 'float', formatF6(30)), { qos: 0 })
  const r = goDecode(DeviceTwinResult, await anon.next(`${D}/twin/update/result`)) as any
  t.equal(r.twin.temperature.actual.value, '30.000000', 'acts for the node\'s devices')
  await anon.client.publishAsync('$hw/events/node/other/membership/get', '{}', { qos: 1 })
  t.ok(anon.client.connected)
  const { isLoopback } = await import('../../src/device/edge/broker-internal.js')
  t.ok(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('::ffff:127.0.0.5'))
  t.notOk(isLoopback('10.0.0.1') || isLoopback('::ffff:192.168.1.2') || isLoopback(undefined))
})
