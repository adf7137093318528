/**
 * End to end: the cloud device registry (hub.devices) → real hub → real edge
 * (embedded aedes) → mosquitto_pub / mosquitto_sub and MQTT.js mappers, and
 * back. Offline convergence in both directions with an edge restart in
 * between, and the full resync of an edge whose store was wiped.
 */
import t from 'tap'
import { rmSync } from 'node:fs'
import { Hub } from '../../src/hub/hub.js'
import type { DeviceModel } from '../../src/device/model.js'
import { Mapper, MODEL, startEdge, T, until } from './edge-helpers.js'
import { freePort, runTool, subscribeTool } from './mosquitto.js'

type TapTest = import('tap').Test

async function startHub (t: TapTest, dataDir: string, port = 0): Promise<Hub> {
  const hub = await Hub.start({ listen: [`ws://127.0.0.1:${port}`], dataDir, admin: false, ackTimeoutMs: 500, devices: true, durability: 'relaxed' })
  t.teardown(() => hub.close(200))
  return hub
}

async function setup (hub: Hub, model: DeviceModel = MODEL): Promise<{ user: string, pass: string }> {
  const reg = hub.devices!
  await reg.upsertModel(model)
  await reg.upsertDevice({ namespace: 'default', name: 'dev1', model: 'default/thermostat', labels: {}, attributes: { vendor: 'acme' }, nodeId: 'edge-1' })
  const g = await reg.grantMapper('edge-1', 'm1', ['default/dev1'])
  return { user: g.username, pass: g.password }
}

t.test('cloud → edge → mosquitto mapper → cloud', async t => {
  const dir = t.testdir({})
  const hub = await startHub(t, dir + '/hub')
  const { user, pass } = await setup(hub)
  const edge = await startEdge(t, hub, 'edge-1', dir + '/edge')
  await edge.waitConnected(10_000)
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 10_000, 'snapshot')
  const port = new URL(edge.devices?.brokerUrl as string).port
  const auth = ['-h', '127.0.0.1', '-p', port, '-u', user, '-P', pass, '-q', '1']

  // desired set at the cloud reaches the mapper as a delta
  const sub = subscribeTool([...auth, '-t', T('dev1/twin/update/delta'), '-C', '1'])
  await sub.subscribed
  await hub.devices!.setDesired('default', 'dev1', { target: 23.5 })
  const out = await sub.result
  t.equal(out.code, 0, out.stderr)
  t.same(out.json[0]?.delta.target, '23.5')

  // reported values reach the cloud
  const pub = await runTool('mosquitto_pub', [...auth, '-t', T('dev1/twin/update'), '-m', JSON.stringify({ event_id: 'r1', timestamp: Date.now(), twin: { temperature: { actual: { value: '19.5' } }, target: { actual: { value: '23.5' } } } })])
  t.equal(pub.code, 0, pub.stderr)
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 19.5, 10_000, 'reported at the cloud')
  t.equal(hub.devices!.getDevice('default', 'dev1')?.reported.target?.value, 23.5)

  // state
  await runTool('mosquitto_pub', [...auth, '-t', T('dev1/state/update'), '-m', '{"event_id":"s","state":"online"}'])
  await until(() => hub.devices!.getDevice('default', 'dev1')?.state === 'online', 10_000, 'state at the cloud')

  // membership through the mapper grant
  const mem = subscribeTool([...auth, '-t', '$hw/events/node/edge-1/membership/get/result', '-C', '1'])
  await mem.subscribed
  await runTool('mosquitto_pub', [...auth, '-t', '$hw/events/node/edge-1/membership/get', '-m', '{"event_id":"m"}'])
  t.same((await mem.result).json[0]?.devices.map((d: { id: string }) => d.id), ['default/dev1'])

  // ACL: the mapper cannot touch another node's membership
  const other = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: user, password: pass })
  await t.rejects(other.client.subscribeAsync('$hw/events/node/edge-2/membership/get/result', { qos: 1 }), 'subscription outside the grant refused')
  t.match(await edge.registry.metrics(), /edgefabric_edge_device_acl_denials_total\{action="subscribe"\} 1/)
})

t.test('offline convergence both ways across an edge restart', async t => {
  const dir = t.testdir({})
  const hubPort = await freePort()
  let hub = await startHub(t, dir + '/hub', hubPort)
  const { user, pass } = await setup(hub)
  await hub.devices!.setDesired('default', 'dev1', { target: 20, mode: 'comfort' })
  const token = hub.createToken('edge-1')
  const target = { url: `ws://127.0.0.1:${hubPort}`, token }
  let edge = await startEdge(t, target, 'edge-1', dir + '/edge')
  await until(() => edge.devices?.getTwin('default', 'dev1')?.desired.mode === 'comfort', 10_000, 'initial sync')
  await edge.close()

  // cloud side changes while the edge is away
  await hub.devices!.setDesired('default', 'dev1', { target: 30 })
  await hub.close(200)

  // edge restarts with the hub unreachable: serves its last state, takes mapper updates into its outbox
  edge = await startEdge(t, target, 'edge-1', dir + '/edge')
  t.equal(edge.state === 'connected', false)
  t.equal(edge.devices?.getTwin('default', 'dev1')?.expected.target, 20, 'last known twin, offline')
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: user, password: pass, clientId: 'mapper-1', clean: false })
  await m.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await m.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '17.25' } }, mode: { expected: { value: 'eco' } } } })
  t.ok(edge.outboxDepth >= 1, 'report waits in the durable outbox')
  await m.client.endAsync()
  await edge.close() // edge restart while still offline

  hub = await startHub(t, dir + '/hub', hubPort)
  // the mapper's persistent session on the embedded broker receives the delta queued while it reconnects
  edge = await startEdge(t, target, 'edge-1', dir + '/edge')
  const m2 = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: user, password: pass, clientId: 'mapper-1', clean: false })
  await m2.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 17.25, 15_000, 'offline report at the cloud')
  await until(() => hub.devices!.getDevice('default', 'dev1')?.desired.mode?.value === 'eco', 15_000, 'edge-set expected merged at the cloud')
  t.equal(hub.devices!.getDevice('default', 'dev1')?.desired.target?.value, 30, 'cloud change kept')
  await until(() => edge.devices?.getTwin('default', 'dev1')?.expected.target === 30, 15_000, 'cloud change at the edge')
  const delta = await m2.next(T('dev1/twin/update/delta'), j => j.delta?.target === '30', 15_000)
  t.equal(delta.twin.target.expected.value, '30')
  await until(() => Object.keys(edge.devices?.getTwin('default', 'dev1')?.pendingExpected ?? { x: 1 }).length === 0, 15_000, 'pending expected settled')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.expected.mode, 'eco')
})

t.test('an edge with a wiped store asks for a resync; a cloud resync gets full reports', async t => {
  const dir = t.testdir({})
  const hub = await startHub(t, dir + '/hub')
  await setup(hub)
  const edge1 = await startEdge(t, hub, 'edge-1', dir + '/edge-a', { devices: { mqtt: { port: 0 }, credentials: [{ username: 'local', password: 'pw', devices: ['default/dev1'] }] } })
  await until(() => edge1.devices?.getTwin('default', 'dev1') !== undefined, 10_000, 'first sync')
  const m = await Mapper.connect(t, edge1.devices?.brokerUrl as string, { username: 'local', password: 'pw' })
  await m.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await m.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '5' } } } })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 5)
  await m.client.endAsync()
  await edge1.close()

  // the device store is lost (same node identity and lane state): the snapshots were all acked before, so only a resync brings them back
  rmSync(dir + '/edge-a/devices', { recursive: true })
  const edge2 = await startEdge(t, hub, 'edge-1', dir + '/edge-a', { devices: { mqtt: { port: 0 }, credentials: [{ username: 'local', password: 'pw', devices: ['default/dev1'] }] } })
  await edge2.waitConnected(10_000)
  const m2 = await Mapper.connect(t, edge2.devices?.brokerUrl as string, { username: 'local', password: 'pw' })
  await m2.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await until(() => edge2.devices?.getTwin('default', 'dev1') !== undefined, 15_000, 'resync brought the snapshot back')
  t.match(await edge2.registry.metrics(), /edgefabric_edge_device_resyncs_total\{direction="up"\} 1/)

  // reports lost in between (simulated: the edge's counter jumps) → the cloud sees a gap, applies the
  // report and asks for a full resync; the edge answers with full reports
  await m2.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '6' } } } })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 6, 10_000, 'report after resync')
  const rec = edge2.devices!.store.get('default/dev1')!
  await edge2.devices!.store.put({ ...rec, edgeSeq: rec.edgeSeq + 5 })
  await m2.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '7' } } } })
  await until(() => hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value === 7, 10_000, 'gap report applied')
  const metricsText = async (): Promise<string> => await edge2.registry.metrics()
  const deadline = Date.now() + 10_000
  while (!/edgefabric_edge_device_resyncs_total\{direction="down"\} 1/.test(await metricsText())) {
    if (Date.now() > deadline) throw new Error('no ResyncRequest from the cloud')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await until(() => hub.devices!.getDevice('default', 'dev1')?.resyncPending === false, 10_000, 'resync answered')
  t.equal(hub.devices!.getDevice('default', 'dev1')?.reported.temperature?.value, 7, 'full report agrees')
})
