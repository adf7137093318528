/**
 * DMI v1beta1 conformance (issue 14 part 2): every rpc of both services,
 * over real unix sockets, with a real hub (device registry) and a real edge,
 * and a mapper written in the test against the proto (dmi-helpers.ts).
 * Field by field against what mapper-framework reads
 * (pkg/util/parse/grpc.go) and what edgecore's ConvertDevice sends.
 */
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { decodeAnyMap, EdgeClient, MODEL, modbusDevice, socketPath, startDmiEdge, startHub, TestMapper, until } from './dmi-helpers.js'

t.test('conformance', async t => {
  const dir = t.testdir({})
  const hub = await startHub(t, dir + '/hub')
  const reg = hub.devices!
  await reg.upsertModel(MODEL)
  await reg.upsertDevice(modbusDevice('dev1'))
  await reg.upsertDevice({ ...modbusDevice('dev2', 'edge-1', 'opcua'), properties: undefined, methods: undefined })
  await reg.upsertDevice({ namespace: 'default', name: 'plain', model: 'default/thermostat', labels: {}, attributes: {}, nodeId: 'edge-1' })
  await reg.setDesired('default', 'dev1', { target: 21 })
  const edgeSock = socketPath(t, dir, 'dmi.sock')
  const edge = await startDmiEdge(t, hub, dir + '/edge', edgeSock, { dmi: { socket: edgeSock, retryMinMs: 50, retryMaxMs: 400, callTimeoutMs: 2000, maxMappers: 2 } })
  await until(() => edge.devices?.listDevices().length === 3 && edge.devices.getTwin('default', 'dev1')?.desired.target === 21, 'the latest snapshots at the edge')
  const modbus = await TestMapper.start(t, socketPath(t, dir, 'modbus.sock'))
  const c = new EdgeClient(`unix:${edgeSock}`)
  t.teardown(() => c.close())

  await t.test('MapperRegister withData returns the devices of the protocol and their models', async t => {
    const res = await c.register('modbus-mapper', 'modbus', modbus.socket)
    modbus.load(res)
    t.equal(res.deviceList.length, 1, 'only the modbus device')
    const d = res.deviceList[0]
    t.equal(d.name, 'dev1')
    t.equal(d.namespace, 'default')
    t.equal(d.spec.deviceModelReference, 'thermostat')
    t.equal(d.spec.protocol.protocolName, 'modbus')
    const cfg = decodeAnyMap(d.spec.protocol.configData.data)
    t.equal(cfg.slaveID, 1)
    t.equal(cfg.port, '/dev/ttyS0')
    t.equal(cfg.parity, false)
    t.ok(Math.abs((cfg.baud as number) - 9600.5) < 0.01, 'non-integers travel as FloatValue')
    t.same(d.spec.protocol.configData.data.slaveID.type_url, 'type.googleapis.com/google.protobuf.Int64Value')
    t.same(d.spec.properties.map((p: any) => p.name), ['temperature', 'target', 'mode'], 'the device\'s own property list')
    const temp = d.spec.properties[0]
    t.equal(temp.visitors.protocolName, 'modbus')
    t.same(decodeAnyMap(temp.visitors.configData.data), { register: 'HoldingRegister', offset: 2, limit: 1, scale: decodeAnyMap(temp.visitors.configData.data).scale })
    t.ok(Math.abs((decodeAnyMap(temp.visitors.configData.data).scale as number) - 0.1) < 1e-6)
    t.equal(temp.reportCycle, 1000)
    t.equal(temp.collectCycle, 500)
    t.equal(temp.reportToCloud, true)
    t.same(temp.pushMethod.mqtt, { address: 'tcp://127.0.0.1:1883', topic: 'temp', qos: 1, retained: false })
    const target = d.spec.properties[1]
    t.equal(target.desired.value, '21', 'the desired value reaches the mapper')
    t.equal(target.desired.metadata.type, 'float')
    t.ok(Number(target.desired.metadata.timestamp) > 0)
    t.ok(d.spec.properties[2].visitors.configData !== null, 'visitors.configData present even when empty (mapper-framework dereferences it)')
    t.same(d.spec.methods, [{ name: 'setTarget', description: 'set the target', propertyNames: ['target'] }])
    t.equal(d.status.reportCycle, 2000)
    t.equal(d.status.reportToCloud, true)
    t.equal(res.modelList.length, 1)
    const m = res.modelList[0]
    t.equal(m.name, 'thermostat')
    t.equal(m.namespace, 'default')
    t.same(m.spec.properties[0], { name: 'temperature', description: '', type: 'float', accessMode: 'ReadOnly', minimum: '-40', maximum: '125', unit: 'C' })
    await edge.dmi!.idle()
    t.same(modbus.calls, [], 'a mapper that got the list is not sent it again')
  })

  await t.test('MapperRegister without data: the edge pushes CreateDeviceModel then RegisterDevice', async t => {
    const opcua = await TestMapper.start(t, socketPath(t, dir, 'opcua.sock'))
    const res = await c.register('opcua-mapper', 'opcua', opcua.socket, false)
    t.same(res.deviceList, [])
    t.same(res.modelList, [])
    await opcua.waitFor(() => opcua.devices.has('default/dev2'), 'dev2 registered')
    t.same(opcua.calls.map(x => x.rpc), ['CreateDeviceModel', 'RegisterDevice'])
    const d = opcua.devices.get('default/dev2')
    t.same(d.spec.properties.map((p: any) => p.name), ['temperature', 'target', 'mode'], 'no property list on the device: every model property')
    t.same(d.spec.properties[0].visitors.protocolName, 'opcua')
    t.same(edge.dmi!.mappers().map(m => m.protocol).sort(), ['modbus', 'opcua'])
    await until(() => edge.dmi!.mappers().find(m => m.protocol === 'opcua')?.acknowledged.includes('default/dev2') === true, 'the edge saw the answer')
  })

  await t.test('MapperRegister refusals', async t => {
    await t.rejects(c.register('x', '', modbus.socket), { code: grpc.status.INVALID_ARGUMENT }, 'protocol required')
    await t.rejects(c.register('x', 'modbus', 'relative.sock'), { code: grpc.status.INVALID_ARGUMENT, details: /absolute path/ })
    await t.rejects(c.call('MapperRegister', { withData: true }), { code: grpc.status.INVALID_ARGUMENT, details: /mapper is required/ })
    await t.rejects(c.register('bacnet-mapper', 'bacnet', '/tmp/none.sock'), { code: grpc.status.RESOURCE_EXHAUSTED, details: /maxMappers/ })
  })

  await t.test('UpdateDevice carries a desired value set at the cloud', async t => {
    await reg.setDesired('default', 'dev1', { target: 22.5 })
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'UpdateDevice' && x.request.device.spec.properties[1].desired.value === '22.5'), 'UpdateDevice with 22.5')
    const call = modbus.calls.find(x => x.rpc === 'UpdateDevice')!
    t.equal(call.request.device.name, 'dev1')
    t.equal(call.request.device.spec.protocol.protocolName, 'modbus')
  })

  await t.test('RegisterDevice for a new device, UpdateDeviceModel for a changed model, RemoveDevice, RemoveDeviceModel', async t => {
    modbus.calls.length = 0
    await reg.upsertDevice({ ...modbusDevice('dev4'), properties: undefined })
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'RegisterDevice' && x.request.device.name === 'dev4'), 'RegisterDevice dev4')
    t.notOk(modbus.calls.some(x => x.rpc === 'CreateDeviceModel'), 'the model is already there')
    t.ok(modbus.devices.has('default/dev4'), 'the mapper took it')
    await edge.dmi!.idle()
    modbus.calls.length = 0
    await reg.upsertModel({ ...MODEL, properties: [...MODEL.properties, { name: 'humidity', type: 'int', accessMode: 'ReadOnly', minimum: 0, maximum: 100 }] })
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'UpdateDeviceModel'), 'UpdateDeviceModel')
    const um = modbus.calls.find(x => x.rpc === 'UpdateDeviceModel')!.request.model
    t.same(um.spec.properties.map((p: any) => p.name), ['temperature', 'target', 'mode', 'humidity'])
    t.same(um.spec.properties[3].maximum, '100')
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'UpdateDevice' && x.request.device.name === 'dev4'), 'dev4 gets the new property')
    t.ok(modbus.calls.findIndex(x => x.rpc === 'UpdateDeviceModel') < modbus.calls.findIndex(x => x.rpc === 'UpdateDevice'), 'model before device')

    modbus.calls.length = 0
    await reg.deleteDevice('default', 'dev4')
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'RemoveDevice'), 'RemoveDevice')
    t.same(modbus.calls[0]?.request, { deviceName: 'dev4', deviceNamespace: 'default' })
    t.notOk(modbus.calls.some(x => x.rpc === 'RemoveDeviceModel'), 'dev1 still uses the model')
  })

  await t.test('ReportDeviceStatus goes through the twin engine to the cloud', async t => {
    await c.report('dev1', { temperature: '21.5', target: '22.5' })
    await until(() => reg.getDevice('default', 'dev1')?.reported.temperature?.value === 21.5, 'reported at the cloud')
    t.equal(reg.getDevice('default', 'dev1')?.reported.target?.value, 22.5)
    t.equal(edge.devices!.getTwin('default', 'dev1')?.reported.temperature?.value, 21.5, 'stored at the edge')
    await t.rejects(c.report('dev1', { temperature: 'hot' }), { code: grpc.status.INVALID_ARGUMENT, details: /EF_TWIN_BAD_VALUE/ }, 'same validation as MQTT')
    await t.rejects(c.report('dev1', { temperature: '500' }), { code: grpc.status.INVALID_ARGUMENT, details: /maximum/ })
    await t.rejects(c.report('dev1', { nosuch: '1' }), { code: grpc.status.NOT_FOUND, details: /EF_TWIN_UNKNOWN_PROPERTY/ })
    await t.rejects(c.report('ghost', { temperature: '1' }), { code: grpc.status.NOT_FOUND, details: /EF_TWIN_UNKNOWN_DEVICE/ })
    await t.rejects(c.call('ReportDeviceStatus', { deviceName: 'dev1', deviceNamespace: 'default', reportedDevice: { twins: [] } }), { code: grpc.status.INVALID_ARGUMENT, details: /no twins/ })
    await t.rejects(c.report('a/b', { temperature: '1' }), { code: grpc.status.INVALID_ARGUMENT })
    t.equal(reg.getDevice('default', 'dev1')?.reported.temperature?.value, 21.5, 'refused reports changed nothing')
    // an empty namespace (KubeEdge ≤ 1.16 mappers) means `default`
    await c.report('dev1', { temperature: '20' }, '')
    await until(() => reg.getDevice('default', 'dev1')?.reported.temperature?.value === 20, 'empty namespace → default')
  })

  await t.test('ReportDeviceStates goes through the twin engine to the cloud', async t => {
    await c.call('ReportDeviceStates', { deviceName: 'dev1', deviceNamespace: 'default', state: 'online' })
    await until(() => reg.getDevice('default', 'dev1')?.state === 'online', 'state at the cloud')
    await t.rejects(c.call('ReportDeviceStates', { deviceName: 'dev1', deviceNamespace: 'default', state: '' }), { code: grpc.status.INVALID_ARGUMENT })
    await t.rejects(c.call('ReportDeviceStates', { deviceName: 'dev1', deviceNamespace: 'default', state: 'sideways' }), { code: grpc.status.INVALID_ARGUMENT, details: /state/ })
    await t.rejects(c.call('ReportDeviceStates', { deviceName: 'ghost', deviceNamespace: 'default', state: 'online' }), { code: grpc.status.NOT_FOUND })
  })

  await t.test('RemoveDeviceModel once no device of the mapper uses the model', async t => {
    modbus.calls.length = 0
    await reg.deleteDevice('default', 'dev1')
    await modbus.waitFor(() => modbus.calls.some(x => x.rpc === 'RemoveDeviceModel'), 'RemoveDeviceModel')
    t.same(modbus.calls.map(x => x.rpc), ['RemoveDevice', 'RemoveDeviceModel'])
    t.same(modbus.calls[1]?.request, { modelName: 'thermostat', modelNamespace: 'default' })
  })

  await t.test('GetDevice is part of the mapper service (edgecore does not call it, nor does the edge)', async t => {
    const svc = (grpc.loadPackageDefinition((await import('@grpc/proto-loader')).loadSync((await import('./dmi-helpers.js')).PROTO, { keepCase: true })) as any).v1beta1.DeviceMapperService.service
    t.same(Object.keys(svc).sort(), ['CreateDeviceModel', 'GetDevice', 'RegisterDevice', 'RemoveDevice', 'RemoveDeviceModel', 'UpdateDevice', 'UpdateDeviceModel'])
    t.equal(svc.GetDevice.path, '/v1beta1.DeviceMapperService/GetDevice')
    t.notOk(modbus.calls.some(x => x.rpc === 'GetDevice'))
  })

  await t.test('metrics count served calls and pushes', async t => {
    const text = await edge.registry.metrics()
    t.match(text, /edgefabric_edge_dmi_served_total\{rpc="MapperRegister",result="ok"\} [1-9]/)
    t.match(text, /edgefabric_edge_dmi_served_total\{rpc="ReportDeviceStatus",result="refused"\} [1-9]/)
    t.match(text, /edgefabric_edge_dmi_pushes_total\{rpc="UpdateDevice",result="ok"\} [1-9]/)
    t.match(text, /edgefabric_edge_dmi_mappers 2/)
    t.match(edge.status(), { dmi: { socket: edgeSock, mappers: [{ name: 'modbus-mapper', protocol: 'modbus', devices: 0 }, { name: 'opcua-mapper', protocol: 'opcua', devices: 1 }] } }, 'status page')
  })
})
