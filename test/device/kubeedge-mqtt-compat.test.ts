/**
 * Issue 14 part 1: stock mappers-go mappers against the embedded aedes broker
 * in `compat: 'kubeedge'` mode. Every request is the exact byte string
 * mappers-go builds (kubeedge-structs.ts), sent the way mappers-go sends it
 * (MQTT.js, empty client id, clean session, QoS 0), and every answer is
 * decoded like Go's encoding/json into KubeEdge's dttype structs and checked
 * field by field against their json tags.
 */
import t from 'tap'
import { Mapper, sendSnapshot, snapshot, until } from './edge-helpers.js'
import { D, goMapper, metric, RFC3339_S, setup } from './kubeedge-setup.js'
import {
  createMessageData, createMessageState, createMessageTwinUpdate, DeviceMsg, DeviceTwinDelta, DeviceTwinDocument,
  DeviceTwinResult, formatF6, goDecode, MembershipGetResult, MembershipUpdate, DeviceAttrUpdate, Result
} from './kubeedge-structs.js'

t.test('states, twin reports and readings exactly as mappers-go sends them (items 1, 2, 4, 8)', async t => {
  const { edge, up, url } = await setup(t)
  const m = await goMapper(t, url, 'default/dev1', 's1')
  await m.client.subscribeAsync([`${D}/state/update/result`, `${D}/twin/update/result`, `${D}/twin/update/delta`, `${D}/twin/update/document`], { qos: 0 })

  // item 1 + 2: "OK" accepted case-insensitively, stored as sent; answer is dttype.DeviceMsg with lastOnlineTime (RFC 3339, seconds)
  m.client.publish(`${D}/state/update`, createMessageState('OK'), { qos: 0 })
  const ok = goDecode(DeviceMsg, await m.next(`${D}/state/update/result`)) as any
  t.equal(ok.device.name, 'dev1')
  t.equal(ok.device.state, 'OK', 'state echoed as sent')
  t.match(ok.device.lastOnlineTime, RFC3339_S, 'lastOnlineTime RFC 3339 without fraction')
  t.notOk('last_online' in (m.messages[0]?.json?.device ?? {}), 'no last_online key')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.state, 'OK')
  await up.waitFor(() => up.of('state').length > 0)
  t.match(up.of('state').at(-1)?.content, { state: 'ok', reportedAs: 'OK' }, 'the cloud gets the canonical state and the original')

  m.client.publish(`${D}/state/update`, createMessageState('UNHEALTHY'), { qos: 0 })
  const unhealthy = goDecode(DeviceMsg, await m.next(`${D}/state/update/result`)) as any
  t.equal(unhealthy.device.state, 'UNHEALTHY')
  t.equal(unhealthy.device.lastOnlineTime, undefined, 'KubeEdge sets last_online only for online/ok')
  // regression: DISCONNECTED and ERROR (mappers-go DEVSTDISCONN, DEVSTERR) were answered 400 and never reached the cloud
  for (const sent of ['DISCONNECTED', 'ERROR']) {
    m.client.publish(`${D}/state/update`, createMessageState(sent), { qos: 0 })
    const r = goDecode(DeviceMsg, await m.next(`${D}/state/update/result`)) as any
    t.equal(r.device.state, sent, `${sent} stored and echoed as sent`)
    t.equal(r.device.lastOnlineTime, undefined)
    t.equal(edge.devices?.getTwin('default', 'dev1')?.state, sent)
    await up.waitFor(() => up.of('state').some(m => (m.content as { reportedAs?: string }).reportedAs === sent))
    t.match(up.of('state').at(-1)?.content, { state: sent.toLowerCase(), reportedAs: sent }, `${sent} reaches the cloud`)
  }
  m.client.publish(`${D}/state/update`, createMessageState('EXPLODED'), { qos: 0 })
  const bad = goDecode(Result, await m.next(`${D}/state/update/result`)) as any
  t.equal(bad.code, 400, 'a state no mapper defines gets 400 (KubeEdge drops it silently)')

  // item 8: modbus float register, FormatFloat 'f' 6: kept verbatim
  const v = formatF6(23.5)
  t.equal(v, '23.500000')
  m.client.publish(`${D}/twin/update`, createMessageTwinUpdate('temperature', 'float', v), { qos: 0 })
  const res = goDecode(DeviceTwinResult, await m.next(`${D}/twin/update/result`)) as any
  t.same(Object.keys(res.twin), ['temperature'])
  t.equal(res.twin.temperature.actual.value, '23.500000', 'value verbatim')
  t.equal(typeof res.twin.temperature.actual.metadata.timestamp, 'number')
  t.equal(res.twin.temperature.optional, false)
  t.equal(res.twin.temperature.metadata.type, 'float')
  t.equal(res.twin.temperature.actual_version, undefined, 'versions are not sent to mappers (BuildDeviceTwinResult)')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.reported.temperature?.raw, '23.500000')
  await up.waitFor(() => up.of('report').some(e => (e.content as any).reported.temperature !== undefined))
  t.equal((up.of('report').at(-1)?.content as any).reported.temperature.value, 23.5, 'the cloud gets the typed value')

  // item 8: delta re-published on every update while expected ≠ actual (target 22.5 desired, never reported)
  const deltas = (): number => m.messages.filter(x => x.topic === `${D}/twin/update/delta`).length
  const before = deltas()
  m.client.publish(`${D}/twin/update`, createMessageTwinUpdate('temperature', 'float', formatF6(24)), { qos: 0 })
  await m.next(`${D}/twin/update/result`)
  await until(() => deltas() > before, 5000, 'a delta after an update of another property')
  const dl = goDecode(DeviceTwinDelta, m.messages.filter(x => x.topic === `${D}/twin/update/delta`).at(-1)?.json) as any
  t.same(dl.delta, { target: '22.5' })
  t.equal(dl.twin.target.expected.value, '22.5')
  goDecode(DeviceTwinDocument, (await m.next(`${D}/twin/update/document`)))

  // item 8: out-of-range reading stored and flagged (temperature maximum 125)
  m.client.publish(`${D}/twin/update`, createMessageTwinUpdate('temperature', 'float', formatF6(200)), { qos: 0 })
  const oor = goDecode(DeviceTwinResult, await m.next(`${D}/twin/update/result`, j => j.twin !== undefined && j.twin.temperature?.actual?.value === '200.000000')) as any
  t.equal(oor.twin.temperature.actual.value, '200.000000')
  t.match(edge.devices?.getTwin('default', 'dev1')?.reported.temperature, { value: 200, outOfRange: true })
  t.match(await metric(edge, 'edgefabric_edge_device_out_of_range_readings_total'), / 1$/)

  // item 4: readings on $ke/events/device/{id}/data/update: accepted for the own id, forwarded upstream, subscribable locally
  const app = await Mapper.connect(t, url, { username: 'ops', password: 'ops-pw' })
  await app.client.subscribeAsync('$ke/events/device/+/+/data/update', { qos: 0 })
  const data = createMessageData('temperature', 'float', formatF6(21.25))
  m.client.publish('$ke/events/device/default/dev1/data/update', data, { qos: 0 })
  const seen = await app.next('$ke/events/device/default/dev1/data/update')
  t.same(seen, JSON.parse(data), 'a local app receives the reading')
  await up.waitFor(() => up.of('upload').some(e => (e.content as any).topic === '$ke/events/device/default/dev1/data/update'))
  const upl = up.of('upload').find(e => (e.content as any).topic === '$ke/events/device/default/dev1/data/update')
  t.equal(Buffer.from((upl?.content as any).payload).toString(), data, 'forwarded upstream byte for byte')
  // another device's id: dropped, connection stays
  await m.client.publishAsync('$ke/events/device/default/dev2/data/update', data, { qos: 1 })
  t.ok(m.client.connected, 'refused data publish does not close the connection')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notOk(app.messages.some(x => x.topic.includes('dev2')), 'nobody receives the refused publish')
})

t.test('twin semantics as KubeEdge: null, empty, metadata-only, extra optional twins, key length (item 8)', async t => {
  const { edge, url } = await setup(t)
  const m = await goMapper(t, url, 'default/dev1', 's1')
  await m.client.subscribeAsync(`${D}/twin/update/result`, { qos: 0 })
  const send = async (payload: string): Promise<any> => {
    const n = m.messages.length
    m.client.publish(`${D}/twin/update`, payload, { qos: 0 })
    await until(() => m.messages.length > n, 5000, 'a result')
    return m.messages.splice(n, 1)[0]?.json
  }
  const ts = Date.now()
  let r = goDecode(DeviceTwinResult, await send(`{"event_id":"e1","timestamp":${ts},"twin":{}}`)) as any
  t.same(r.twin, {}, '"twin":{} is a success')
  r = goDecode(DeviceTwinResult, await send(`{"event_id":"e2","timestamp":${ts},"twin":{"temperature":{"metadata":{"type":"float"}}}}`)) as any
  t.same(r.twin, {}, 'metadata-only entry is a success')
  r = goDecode(DeviceTwinResult, await send(`{"event_id":"e3","timestamp":${ts},"twin":{"temperature":null}}`)) as any
  t.same(r.twin, {}, 'null on a model (non-optional) twin: success, nothing deleted')

  // unknown key: added as an optional twin (extraProperties defaults to 'optional' in compat mode)
  r = goDecode(DeviceTwinResult, await send(createMessageTwinUpdate('humidity', 'float', formatF6(40.5)))) as any
  t.same(r.twin.humidity, { actual: { value: '40.500000', metadata: { timestamp: r.twin.humidity.actual.metadata.timestamp } }, optional: true, metadata: { type: 'float' } })
  t.same(edge.devices?.getTwin('default', 'dev1')?.extras.humidity, { type: 'float', actual: '40.500000' })
  const bad = goDecode(Result, await send(createMessageTwinUpdate('humidity', 'float', 'wet'))) as any
  t.equal(bad.code, 400, 'extra twin values are checked by their metadata.type')
  r = goDecode(DeviceTwinResult, await send(`{"event_id":"e4","timestamp":${ts},"twin":{"humidity":null}}`)) as any
  t.same(r.twin, { humidity: null }, 'null deletes an optional twin')
  t.same(edge.devices?.getTwin('default', 'dev1')?.extras, {})

  const long = 'k'.repeat(129)
  const tooLong = goDecode(Result, await send(createMessageTwinUpdate(long, 'string', 'x'))) as any
  t.equal(tooLong.code, 400, 'a key longer than 128 characters gives 400')
  t.match(tooLong.reason, /less than 128/)
  const ok128 = goDecode(DeviceTwinResult, await send(createMessageTwinUpdate('k'.repeat(128), 'string', 'x'))) as any
  t.ok(ok128.twin['k'.repeat(128)], '128 characters are fine')

  const wrongType = goDecode(Result, await send(createMessageTwinUpdate('fan', 'int', '1.5'))) as any
  t.equal(wrongType.code, 400, 'model type still checked')
  const ro = goDecode(Result, await send(`{"event_id":"e5","timestamp":${ts},"twin":{"temperature":{"expected":{"value":"20"}}}}`)) as any
  t.equal(ro.code, 400, 'expected of a ReadOnly property refused')
})

t.test('membership and attributes decode with KubeEdge structs; removed attribute is null (item 3)', async t => {
  const { hub, url } = await setup(t, { credentials: [{ username: 'ops', password: 'ops-pw', devices: '*' }] })
  const ops = await Mapper.connect(t, url, { username: 'ops', password: 'ops-pw' })
  await ops.client.subscribeAsync(['$hw/events/node/edge-1/membership/#', `${D}/updated`], { qos: 1 })
  const got = goDecode(MembershipGetResult, await ops.request('$hw/events/node/edge-1/membership/get', {})) as any
  const dev1 = got.devices.find((d: any) => d.name === 'dev1')
  t.same(dev1.attributes, { serial: { value: 'A1', optional: false, metadata: { type: 'string' } }, vendor: { value: 'acme', optional: false, metadata: { type: 'string' } } })
  t.equal(dev1.id, 'default/dev1')
  t.equal(dev1.twin.target.expected.value, '22.5')

  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, name: 'dev3', attributes: { site: 'b' }, desired: { mode: { value: 'eco', revision: 1 } } }))
  const upd = goDecode(MembershipUpdate, await ops.next('$hw/events/node/edge-1/membership/updated')) as any
  t.equal(upd.added_devices[0].name, 'dev3')
  t.same(upd.added_devices[0].attributes.site, { value: 'b', optional: false, metadata: { type: 'string' } })
  t.equal(upd.added_devices[0].twin.mode.expected.value, 'eco', 'added_devices carry the twin')
  t.equal(upd.added_devices[0].twin.mode.expected_version, undefined, 'without versions (MarshalMembershipUpdate)')
  t.same(upd.removed_devices, [])

  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, attributes: { serial: 'A2' } }))
  const attrs = goDecode(DeviceAttrUpdate, await ops.next(`${D}/updated`)) as any
  t.same(attrs.attributes, { serial: { value: 'A2', optional: false, metadata: { type: 'string' } }, vendor: null }, 'changed as MsgAttr, removed as null')
})

