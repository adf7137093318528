/**
 * DMI wire contract (issue 14 part 2): our hand-written proto against the
 * field table of KubeEdge's v1beta1 api.proto (fixtures/), the Any wrappers
 * of configData against protobufjs' own encoding of google.protobuf
 * wrappers, and the registry's validation of the mapper fields (library and
 * HTTP API).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import protobuf from 'protobufjs'
import { DMI_PROTO_PATH } from '../../src/device/edge/dmi/proto.js'
import { decodeAny, encodeAny } from '../../src/device/edge/dmi/any-value.js'
import { validateDeviceSpec } from '../../src/device/cloud/registry-validate.js'
import { Hub } from '../../src/hub/hub.js'
import { MODEL, modbusDevice } from './dmi-helpers.js'

const wire = JSON.parse(readFileSync(new URL('./fixtures/kubeedge-dmi-v1beta1-wire.json', import.meta.url), 'utf8')) as {
  messages: Record<string, Record<string, string>>
  services: Record<string, Record<string, string>>
}

t.test('every message, field number, type and rpc of KubeEdge DMI v1beta1', async t => {
  const root = new protobuf.Root()
  root.loadSync(DMI_PROTO_PATH, { keepCase: true })
  root.resolveAll()
  const ns = root.lookup('v1beta1') as protobuf.Namespace
  for (const [name, fields] of Object.entries(wire.messages)) {
    const type = ns.lookup(name) as protobuf.Type | null
    t.ok(type !== null, `message ${name}`)
    if (type === null) continue
    const ours: Record<string, string> = {}
    for (const [f, x] of Object.entries(type.fields)) {
      const m = x as unknown as protobuf.MapField
      ours[f] = (x.repeated ? 'repeated ' : '') + (x.map ? `map<${m.keyType},${x.type}>` : x.type) + ' = ' + String(x.id)
    }
    t.same(ours, fields, `fields of ${name}`)
  }
  for (const [name, methods] of Object.entries(wire.services)) {
    const svc = ns.lookup(name) as protobuf.Service
    t.same(Object.fromEntries(Object.entries(svc.methods).map(([m, x]) => [m, `${x.requestType} -> ${x.responseType}`])), methods, `service ${name}`)
  }
})

t.test('configData values: google.protobuf wrappers in Any, as edgecore sends them', async t => {
  const root = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/wrappers.proto') as protobuf.INamespace)
  const cases: Array<[string | number | boolean, string, unknown]> = [
    ['HoldingRegister', 'StringValue', 'HoldingRegister'],
    ['', 'StringValue', ''],
    ['ünï', 'StringValue', 'ünï'],
    [1, 'Int64Value', 1],
    [0, 'Int64Value', 0],
    [-5, 'Int64Value', -5],
    [2 ** 40, 'Int64Value', 2 ** 40],
    [true, 'BoolValue', true],
    [false, 'BoolValue', false],
    [0.5, 'FloatValue', 0.5]
  ]
  for (const [v, type, want] of cases) {
    const a = encodeAny(v)
    t.equal(a.type_url, `type.googleapis.com/google.protobuf.${type}`)
    const decoded = (root.lookupType(`google.protobuf.${type}`).decode(a.value) as unknown as { value: unknown }).value
    t.same(typeof decoded === 'object' && decoded !== null ? Number(decoded) : decoded, want, `protobufjs reads ${JSON.stringify(v)}`)
    t.same(decodeAny(a), want, `round trip ${JSON.stringify(v)}`)
  }
  const f = decodeAny(encodeAny(9600.5)) as number
  t.ok(Math.abs(f - 9600.5) < 1e-3, 'FloatValue keeps float32 precision, as edgecore')
  t.throws(() => decodeAny({ type_url: 'type.googleapis.com/foo.Bar', value: new Uint8Array() }), /unsupported/)
})

t.test('registry validation of the mapper fields', async t => {
  const spec = validateDeviceSpec(modbusDevice('dev1'))
  t.same(spec.protocol, { protocolName: 'modbus', configData: { slaveID: 1, port: '/dev/ttyS0', baud: 9600.5, parity: false } })
  t.equal(spec.properties?.[0]?.pushMethod?.mqtt !== undefined, true)
  t.same(spec.stateReport, { reportCycle: 2000, reportToCloud: true })
  const bad = (patch: object, field: RegExp): void => {
    t.throws(() => validateDeviceSpec({ ...modbusDevice('dev1'), ...patch }), { code: 'EF_DEVICE_SPEC_INVALID', message: field })
  }
  bad({ protocol: { protocolName: 'mod bus' } }, /protocol\.protocolName/)
  bad({ protocol: { protocolName: 'modbus', configData: { nested: { a: 1 } } } }, /protocol\.configData\.nested.*wrapper/)
  bad({ protocol: { protocolName: 'modbus', configData: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])) } }, /at most 64/)
  bad({ properties: [{ name: 'temperature', reportCycle: -1 }] }, /properties\[0\]\.reportCycle/)
  bad({ properties: [{ name: 'temperature' }, { name: 'temperature' }] }, /duplicate/)
  bad({ properties: [{ name: 'temperature', pushMethod: { kafka: {} } }] }, /pushMethod\.kafka.*unknown push method/)
  bad({ properties: [{ name: 'temperature', pushMethod: { http: { hostname: 'x'.repeat(20_000) } } }] }, /larger than 16384/)
  bad({ properties: [{ name: 'temperature', pushMethod: { anomalyDetection: { data: { x: [1] } } } }] }, /anomalyDetection\.data\.x/)
  bad({ methods: [{ name: 'm', propertyNames: 'target' }] }, /methods\[0\]\.propertyNames/)
  bad({ stateReport: { reportToCloud: 'yes' } }, /stateReport\.reportToCloud/)
})

t.test('HTTP API: the mapper fields round-trip, a change of them alone is a new revision, and they must name model properties', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', admin: { host: '127.0.0.1', port: 0 }, devices: true, durability: 'relaxed' })
  t.teardown(() => hub.close(200))
  const reg = hub.devices!
  await reg.upsertModel(MODEL)
  const base = `${hub.adminUrl as string}/v1/devices/default/dev1`
  // Changes need the admin token (generated into the data dir at first start).
  const put = async (body: object): Promise<Response> => await fetch(base, { method: 'PUT', headers: { 'content-type': 'application/json', authorization: `Bearer ${hub.adminToken as string}` }, body: JSON.stringify(body) })
  const ok = await put(modbusDevice('dev1'))
  t.equal(ok.status, 200, await ok.clone().text())
  const view = await (await fetch(base)).json() as any
  t.same(view.spec.protocol.configData.slaveID, 1)
  t.same(view.spec.properties[0].visitors.configData.offset, 2)
  t.same(view.spec.methods[0].propertyNames, ['target'])
  const rev = reg.getDevice('default', 'dev1')!.revision
  const same = await put(modbusDevice('dev1'))
  t.equal(same.status, 200)
  t.equal(reg.getDevice('default', 'dev1')!.revision, rev, 'an identical body is a no-op')
  const changed = await put({ ...modbusDevice('dev1'), protocol: { protocolName: 'modbus', configData: { slaveID: 2 } } })
  t.equal(changed.status, 200)
  t.ok(reg.getDevice('default', 'dev1')!.revision > rev, 'a change of the mapper fields alone is a new revision (and snapshot)')
  const unknown = await put({ ...modbusDevice('dev1'), properties: [{ name: 'humidity' }] })
  t.equal(unknown.status, 422)
  t.match(await unknown.json(), { code: 'EF_DEVICE_SPEC_INVALID', message: /properties\[0\]\.name.*humidity/ })
})
