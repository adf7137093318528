/**
 * DMI end to end (issue 14 part 2): cloud registry → real hub → real edge →
 * a test mapper over real unix sockets, and back. A desired change made
 * while the mapper is down (coalesced, pushed when it is back), a mapper
 * restart (fresh state, with and without registering again), an edge
 * restart (mapper remembered, changes made meanwhile pushed), a socket left
 * by a SIGKILLed process, and the loopback TCP listener.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import mqtt from 'mqtt'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { EdgeClient, MODEL, modbusDevice, socketPath, startDmiEdge, startDmiScene, startHub, TestMapper, until } from './dmi-helpers.js'
import { testdir } from '../testdir.js'

t.test('desired changes while the mapper is down, mapper restarts', async t => {
  const scene = await startDmiScene(t)
  const { hub, edge, edgeSock, mapperSock } = scene
  const reg = hub.devices!
  let mapper = scene.mapper
  const c = new EdgeClient(`unix:${edgeSock}`)
  t.teardown(() => c.close())
  mapper.load(await c.register('modbus-mapper', 'modbus', mapperSock))

  await reg.setDesired('default', 'dev1', { target: 20 })
  await mapper.waitFor(() => mapper.desired('default/dev1', 'target') === '20', 'desired 20 at the mapper')

  // The mapper goes away; the cloud changes desired values twice meanwhile.
  mapper.stop()
  const state = { devices: mapper.devices, models: mapper.models }
  await reg.setDesired('default', 'dev1', { target: 25 })
  await until(() => edge.devices?.getTwin('default', 'dev1')?.desired.target === 25, 'desired 25 at the edge')
  await until(() => edge.dmi!.mappers()[0]?.lastError !== undefined, 'a failed push')
  t.match(await edge.registry.metrics(), /edgefabric_edge_dmi_mappers_behind 1/)
  await reg.setDesired('default', 'dev1', { target: 26, mode: 'eco' })
  await until(() => edge.devices?.getTwin('default', 'dev1')?.desired.target === 26, 'desired 26 at the edge')

  await t.test('back with its state (same process, socket flap): one coalesced UpdateDevice with the latest values', async t => {
    mapper = await TestMapper.start(t, mapperSock)
    for (const [k, v] of state.models) mapper.models.set(k, v)
    for (const [k, v] of state.devices) mapper.devices.set(k, v)
    await mapper.waitFor(() => mapper.desired('default/dev1', 'target') === '26', 'desired 26 at the mapper')
    t.equal(mapper.desired('default/dev1', 'mode'), 'eco')
    await edge.dmi!.idle()
    const updates = mapper.calls.filter(x => x.rpc === 'UpdateDevice')
    t.equal(updates.length, 1, 'changes made while down coalesce into one call')
    t.notOk(mapper.calls.some(x => x.request.device?.spec.properties.some((p: any) => p.desired.value === '25')), 'the superseded value is never sent')
    t.match(await edge.registry.metrics(), /edgefabric_edge_dmi_mappers_behind 0/)
    mapper.stop()
  })

  await t.test('restarted with no state and not registering again: the edge re-creates the model, then the device', async t => {
    await reg.setDesired('default', 'dev1', { target: 27 })
    await until(() => edge.devices?.getTwin('default', 'dev1')?.desired.target === 27, 'desired 27 at the edge')
    mapper = await TestMapper.start(t, mapperSock) // empty
    await mapper.waitFor(() => mapper.desired('default/dev1', 'target') === '27', 'desired 27 at a fresh mapper')
    t.ok(mapper.models.has('default/thermostat'), 'model re-created')
    mapper.stop()
  })

  await t.test('restarted fresh and registering again (mapper-framework start): it gets the latest in the answer', async t => {
    await reg.setDesired('default', 'dev1', { target: 28 })
    await until(() => edge.devices?.getTwin('default', 'dev1')?.desired.target === 28, 'desired 28 at the edge')
    mapper = await TestMapper.start(t, mapperSock)
    const res = await c.register('modbus-mapper', 'modbus', mapperSock)
    mapper.load(res)
    t.equal(mapper.desired('default/dev1', 'target'), '28')
    await edge.dmi!.idle()
    // A retry that was already pending may reach the new mapper before it registers (a race edgecore has
    // too); whatever it sends is the latest state, never a superseded one.
    t.ok(mapper.calls.filter(x => x.request.device !== undefined).every(x => x.request.device.spec.properties[1].desired.value === '28'), 'nothing stale pushed')
    t.equal(mapper.desired('default/dev1', 'target'), '28')
  })

  await t.test('reports over DMI reach MQTT apps through the same engine', async t => {
    const g = await reg.grantMapper('edge-1', 'watcher', ['default/dev1'])
    await until(() => edge.devices?.store.grant('watcher') !== undefined, 'grant at the edge')
    const sub = mqtt.connect(edge.devices!.brokerUrl!, { username: g.username, password: g.password, reconnectPeriod: 0 })
    t.teardown(() => sub.endAsync(true))
    sub.on('error', () => {})
    const got = new Promise<any>(resolve => sub.on('message', (_topic, p) => resolve(JSON.parse(p.toString()))))
    await new Promise<void>(resolve => sub.once('connect', () => resolve()))
    await sub.subscribeAsync('$hw/events/device/default/dev1/twin/update/document', { qos: 1 })
    await c.report('dev1', { temperature: '18.5' })
    const doc = await got
    t.equal(doc.twin.temperature.current.actual.value, '18.5')
    await until(() => reg.getDevice('default', 'dev1')?.reported.temperature?.value === 18.5, 'reported at the cloud')
  })
})

t.test('edge restart: the mapper is remembered and gets what changed while the edge was down', async t => {
  const scene = await startDmiScene(t)
  const { dir, hub, edgeSock, mapperSock, mapper } = scene
  const reg = hub.devices!
  let edge = scene.edge
  let c = new EdgeClient(`unix:${edgeSock}`)
  mapper.load(await c.register('modbus-mapper', 'modbus', mapperSock))
  c.close()
  await edge.close()

  await reg.setDesired('default', 'dev1', { target: 30 })
  await reg.upsertDevice({ ...modbusDevice('dev2'), properties: undefined })
  const before = mapper.calls.length

  edge = await startDmiEdge(t, hub, dir + '/edge', edgeSock)
  await mapper.waitFor(() => mapper.desired('default/dev1', 'target') === '30', 'desired 30 pushed after the edge restart')
  await mapper.waitFor(() => mapper.devices.has('default/dev2'), 'dev2 registered after the edge restart')
  t.same(mapper.calls.slice(before).map(x => x.rpc).sort(), ['RegisterDevice', 'UpdateDevice'], 'exactly the two changes, no re-push of what the mapper had')
  t.same(edge.dmi!.mappers().map(m => m.name), ['modbus-mapper'])

  c = new EdgeClient(`unix:${edgeSock}`)
  t.teardown(() => c.close())
  await c.report('dev2', { temperature: '17' })
  await until(() => reg.getDevice('default', 'dev2')?.reported.temperature?.value === 17, 'report after the restart')
})

t.test('socket file: a stale one from a SIGKILLed process is replaced; a live one or a non-socket is refused', async t => {
  const dir = testdir(t, {})
  const hub = await startHub(t, dir + '/hub')
  const stale = socketPath(t, dir, 'stale.sock')
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => { console.log('up'); process.kill(process.pid, 'SIGKILL') })`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise(resolve => child.once('exit', resolve))
  const edge = await startDmiEdge(t, hub, dir + '/edge', stale)
  const c = new EdgeClient(`unix:${stale}`)
  t.teardown(() => c.close())
  t.same(await c.register('m', 'modbus', '/tmp/m.sock'), { modelList: [], deviceList: [] }, 'serving on the replaced socket')

  await t.rejects(startDmiEdge(t, hub, dir + '/edge2', stale), { code: 'EF_DMI_SOCKET', message: /in use/ })
  const fresh = new EdgeClient(`unix:${stale}`) // a new connection: the socket file must still be there
  t.teardown(() => fresh.close())
  t.same(await fresh.register('m', 'modbus', '/tmp/m.sock'), { modelList: [], deviceList: [] }, 'the refused edge left the live socket alone')
  const plain = socketPath(t, dir, 'plain.sock')
  writeFileSync(plain, 'not a socket')
  await t.rejects(startDmiEdge(t, hub, dir + '/edge3', plain), { code: 'EF_DMI_SOCKET', message: /not a socket/ })
  t.equal(readFileSync(plain, 'utf8'), 'not a socket', 'left alone')
  t.ok(edge.dmi !== undefined)
})

t.test('loopback TCP listener and option validation', async t => {
  const dir = testdir(t, {})
  const hub = await startHub(t, dir + '/hub')
  const reg = hub.devices!
  await reg.upsertModel(MODEL)
  await reg.upsertDevice(modbusDevice('dev1'))
  const sock = socketPath(t, dir, 'dmi.sock')
  const edge = await startDmiEdge(t, hub, dir + '/edge', sock, { dmi: { socket: sock, tcp: { port: 0 } } })
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 'snapshot at the edge')
  t.ok((edge.dmi!.tcpPort ?? 0) > 0)
  const c = new EdgeClient(`127.0.0.1:${edge.dmi!.tcpPort}`)
  t.teardown(() => c.close())
  await c.report('dev1', { temperature: '12' })
  await until(() => reg.getDevice('default', 'dev1')?.reported.temperature?.value === 12, 'report over TCP at the cloud')

  const base = { hub: hub.urls[0] as string, nodeId: 'edge-x', token: hub.createToken('edge-x'), admin: false as const }
  await t.rejects(EdgeNode.start({ ...base, dataDir: dir + '/x1', devices: { mqtt: { port: 0 } }, dmi: { socket: sock + '2', tcp: { host: '0.0.0.0', port: 0 } } }), { code: 'EF_INVALID_OPTION', message: /dmi\.tcp\.host.*loopback/ })
  await t.rejects(EdgeNode.start({ ...base, dataDir: dir + '/x2', dmi: { socket: sock + '3' } }), { code: 'EF_INVALID_OPTION', message: /dmi.*devices/ })
  await t.rejects(EdgeNode.start({ ...base, dataDir: dir + '/x3', devices: { mqtt: { port: 0 } }, dmi: { socket: '/tmp/' + 'x'.repeat(120) } }), { code: 'EF_INVALID_OPTION', message: /dmi\.socket/ })
  await t.rejects(EdgeNode.start({ ...base, dataDir: dir + '/x4', devices: { mqtt: { port: 0 } }, dmi: { socket: sock + '4', retryMinMs: 10, retryMaxMs: 5 } }), { code: 'EF_INVALID_OPTION', message: /dmi\.retryMaxMs/ })
})
