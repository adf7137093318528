/**
 * Edge twin engine over the embedded broker, against a real hub (snapshots
 * sent with hub.sendReliable as the cloud registry does) and real MQTT.js
 * mappers: desired → delta, reported → cloud, membership, state, attributes,
 * and the KubeEdge version-counter bug not reproduced.
 */
import t, { type Test } from 'tap'
import type { TwinReport, StateReport } from '../../src/device/protocol.js'
import { Mapper, sendGrant, sendRemoval, sendSnapshot, snapshot, startEdge, startHub, T, until, Upstream } from './edge-helpers.js'

/** A hub, edge-1 connected and holding default/dev1 from `snap`, and a mapper granted dev1 connected to its broker. */
async function withDevice (t: Test, snap: Parameters<typeof snapshot>[0]): Promise<{ up: Upstream, hub: Awaited<ReturnType<typeof startHub>>, edge: Awaited<ReturnType<typeof startEdge>>, m: Mapper }> {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge')
  await edge.waitConnected(10_000)
  await sendGrant(hub, 'edge-1', 'm1', 'mapper-user', 'mapper-secret', ['default/dev1'])
  await sendSnapshot(hub, 'edge-1', snapshot(snap))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 10_000, 'snapshot at the edge')
  const url = edge.devices?.brokerUrl as string
  t.match(url, /^mqtt:\/\/127\.0\.0\.1:\d+$/)
  const m = await Mapper.connect(t, url, { username: 'mapper-user', password: 'mapper-secret', clientId: 'mapper-1' })
  return { up, hub, edge, m }
}

t.test('desired set at the cloud reaches the mapper as a delta; reported values reach the cloud', async t => {
  const { up, hub, edge, m } = await withDevice(t, { revision: 1, desired: { target: { value: 20, revision: 1 } } })
  await m.client.subscribeAsync(T('dev1/#'), { qos: 1 })

  // twin/get
  const got = await m.request(T('dev1/twin/get'), {})
  t.same(got.twin.target.expected.value, '20', 'expected value as a string, KubeEdge style')
  t.equal(got.twin.target.metadata.type, 'float')
  t.equal(got.twin.temperature.expected, undefined, 'no expected for a ReadOnly property without desired')

  // mapper reports actual values → result, and a TwinReport upstream
  const res = await m.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '21.5', metadata: { timestamp: 1234 } } }, target: { actual: { value: '20' } } } })
  t.equal(res.twin.temperature.actual.value, '21.5')
  t.equal(res.twin.temperature.actual.metadata.timestamp, 1234)
  await up.waitFor(() => up.of('report', 'twin/default/dev1').length >= 1)
  const rep = up.of('report', 'twin/default/dev1')[0]!.content as TwinReport
  t.same(rep.reported.temperature, { value: 21.5, timestamp: 1234 }, 'parsed by model type (float)')
  t.equal(rep.reported.target?.value, 20)
  t.equal(rep.edgeSeq, 1)
  t.equal(rep.baseRevision, 1)
  t.equal(rep.expected, undefined)
  const doc = await m.next(T('dev1/twin/update/document'))
  t.equal(doc.twin.temperature.last.actual, undefined, 'document: last had no actual')
  t.equal(doc.twin.temperature.current.actual.value, '21.5')

  // the cloud sets desired target=25 → delta to the mapper
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, desired: { target: { value: 25, revision: 2 } } }))
  const delta = await m.next(T('dev1/twin/update/delta'), j => j.delta?.target === '25')
  t.same(delta.delta, { target: '25' })
  t.equal(delta.twin.target.actual.value, '20')
  const doc2 = await m.next(T('dev1/twin/update/document'), j => j.twin.target !== undefined)
  t.equal(doc2.twin.target.last.expected.value, '20')
  t.equal(doc2.twin.target.current.expected.value, '25')

  // mapper applies it: actual = expected → no further delta for that update
  await m.request(T('dev1/twin/update'), { twin: { target: { actual: { value: '25' } } } })
  await up.waitFor(() => up.of('report', 'twin/default/dev1').length >= 2)
  const rep2 = up.of('report', 'twin/default/dev1')[1]!.content as TwinReport
  t.equal(rep2.edgeSeq, 2, 'edgeSeq +1 per report')
  t.equal(rep2.baseRevision, 2)
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notOk(m.messages.some(x => x.topic === T('dev1/twin/update/delta')), 'no delta once expected = actual')
  const twin = edge.devices?.getTwin('default', 'dev1')
  t.same(twin?.expected.target, 25)
  t.same(twin?.reported.target?.value, 25)

  // an expected set from the edge goes up with baseRevision (merged at the cloud)
  await m.request(T('dev1/twin/update'), { twin: { mode: { expected: { value: 'eco' } } } })
  await up.waitFor(() => up.of('report', 'twin/default/dev1').length >= 3)
  const rep3 = up.of('report', 'twin/default/dev1')[2]!.content as TwinReport
  t.same(rep3.expected?.mode?.value, 'eco')
  t.equal(rep3.baseRevision, 2)
  t.same(edge.devices?.getTwin('default', 'dev1')?.pendingExpected, { mode: 'eco' })
})

t.test('a local expected bump never blocks a later cloud update (KubeEdge counter bug)', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge', { devices: { mqtt: { port: 0 }, credentials: [{ username: 'admin', password: 'pw', devices: '*' }] } })
  await edge.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 5, desired: { target: { value: 20, revision: 5 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw' })
  await m.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  // local bumps (twice), made against revision 5
  await m.request(T('dev1/twin/update'), { twin: { target: { expected: { value: '22' } } } })
  await m.request(T('dev1/twin/update'), { twin: { target: { expected: { value: '23' } } } })
  t.same(edge.devices?.getTwin('default', 'dev1')?.expected.target, 23)
  // the cloud had set target=30 at revision 6 (after our base): cloud wins, accepted at the edge
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 6, desired: { target: { value: 30, revision: 6 } } }))
  const delta = await m.next(T('dev1/twin/update/delta'), j => j.delta?.target === '30')
  t.equal(delta.twin.target.expected.value, '30')
  const twin = edge.devices?.getTwin('default', 'dev1')
  t.same(twin?.expected.target, 30, 'cloud update accepted after local bumps')
  t.same(twin?.pendingExpected, {}, 'local value settled')
  // a snapshot that does not yet reflect a newer local expected keeps it pending
  await m.request(T('dev1/twin/update'), { twin: { mode: { expected: { value: 'eco' } } } })
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 7, desired: { target: { value: 30, revision: 6 } }, attributes: { floor: '2' } }))
  await until(() => edge.devices?.getTwin('default', 'dev1')?.revision === 7)
  t.same(edge.devices?.getTwin('default', 'dev1')?.pendingExpected, { mode: 'eco' }, 'cloud has not decided on mode yet')
  // ... and the cloud accepting it settles it
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 8, desired: { target: { value: 30, revision: 6 }, mode: { value: 'eco', revision: 8 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1')?.revision === 8)
  t.same(edge.devices?.getTwin('default', 'dev1')?.pendingExpected, {})
  t.same(edge.devices?.getTwin('default', 'dev1')?.expected.mode, 'eco')
})

t.test('membership, state and attribute updates', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge')
  await edge.waitConnected(10_000)
  await sendGrant(hub, 'edge-1', 'm1', 'mapper', 'secret', ['default/dev1', 'default/dev2'])
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, attributes: { vendor: 'acme' } }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'mapper', password: 'secret' })
  await m.client.subscribeAsync(['$hw/events/node/edge-1/membership/#', T('dev1/#'), T('dev2/#')], { qos: 1 })

  const mem = await m.request('$hw/events/node/edge-1/membership/get', {}, '$hw/events/node/edge-1/membership/get/result')
  t.same(mem.devices.map((d: { id: string }) => d.id), ['default/dev1'])
  t.same(mem.devices[0].attributes, { vendor: 'acme' })

  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 3, name: 'dev2' }))
  const added = await m.next('$hw/events/node/edge-1/membership/updated', j => j.added_devices?.length === 1)
  t.equal(added.added_devices[0].id, 'default/dev2')
  t.same(edge.devices?.listDevices().map(d => d.name).sort(), ['dev1', 'dev2'])

  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 4, attributes: { vendor: 'acme', firmware: '2.1' } }))
  const upd = await m.next(T('dev1/updated'))
  t.equal(upd.attributes.firmware.value, '2.1')

  const st = await m.request(T('dev1/state/update'), { state: 'online' })
  t.equal(st.device.state, 'online')
  await up.waitFor(() => up.of('state', 'state/default/dev1').length === 1)
  t.equal((up.of('state')[0]!.content as StateReport).state, 'online')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.state, 'online')
  const bad = await m.request(T('dev1/state/update'), { state: 'sleepy' })
  t.equal(bad.error, 'EF_TWIN_BAD_REQUEST')

  await sendRemoval(hub, 'edge-1', 'dev2', 5)
  const removed = await m.next('$hw/events/node/edge-1/membership/updated', j => j.removed_devices?.length === 1)
  t.equal(removed.removed_devices[0].id, 'default/dev2')
  t.equal(edge.devices?.getTwin('default', 'dev2'), undefined)

  // upload records go to the cloud as they are
  await m.client.publishAsync('$hw/events/upload/dev1/readings', Buffer.from([1, 2, 3]), { qos: 1 })
  await m.client.publishAsync('SYS/dis/upload_records', '{"r":1}', { qos: 1 })
  await up.waitFor(() => up.of('upload').length === 2)
  const uploads = up.of('upload').map(e => e.content as { topic: string, payload: Uint8Array })
  t.same(uploads.map(u => u.topic).sort(), ['$hw/events/upload/dev1/readings', 'SYS/dis/upload_records'])
  t.same([...uploads.find(u => u.topic.startsWith('$hw'))!.payload], [1, 2, 3])
})

t.test('a delta queued for an offline mapper session survives an edge restart (LMDB broker persistence)', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const dataDir = t.testdir({}) + '/edge'
  const devices = { mqtt: { port: 0 }, credentials: [{ username: 'admin', password: 'pw', devices: '*' as const }] }
  let edge = await startEdge(t, hub, 'edge-1', dataDir, { devices })
  await edge.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, desired: { target: { value: 10, revision: 1 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', clientId: 'mapper-p', clean: false })
  await m.client.subscribeAsync(T('dev1/twin/update/delta'), { qos: 1 })
  await m.client.endAsync()

  // the mapper is away; the cloud changes desired → the delta is queued for its session
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, desired: { target: { value: 11, revision: 2 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1')?.revision === 2)
  await new Promise(resolve => setTimeout(resolve, 100))
  await edge.close()

  edge = await startEdge(t, hub, 'edge-1', dataDir, { devices })
  // handler in place before CONNECT (Mapper): the queue follows CONNACK
  const back = new Mapper(edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', clientId: 'mapper-p', clean: false })
  t.teardown(() => back.client.endAsync(true))
  const delta = await back.next(T('dev1/twin/update/delta'), j => j.delta?.target === '11')
  t.equal(delta.twin.target.expected.value, '11', 'queued delta delivered after the restart')
})

// The engine pipelines one device's updates (the next is computed while the previous commits):
// a burst must still reach the cloud in edgeSeq order with the values in publish order, and
// every answer must come after its own write.
t.test('a burst of one device\'s updates: answers for all, reports in edgeSeq order, last value kept', async t => {
  const { up, edge, m } = await withDevice(t, { revision: 1 })
  await m.client.subscribeAsync(T('dev1/twin/update/result'), { qos: 1 })
  const N = 60
  const answers = await Promise.all(Array.from({ length: N }, async (_, i) =>
    await m.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: String(i) } } } })))
  t.equal(answers.filter(a => a.twin?.temperature?.actual?.value !== undefined).length, N, 'every update answered with its value')
  await up.waitFor(() => up.of('report', 'twin/default/dev1').length >= N)
  const reps = up.of('report', 'twin/default/dev1').map(e => e.content as TwinReport)
  t.same(reps.map(r => r.edgeSeq), Array.from({ length: N }, (_, i) => i + 1), 'edgeSeq 1..N in order')
  t.same(reps.map(r => r.reported.temperature?.value), Array.from({ length: N }, (_, i) => i), 'values in publish order')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.reported.temperature?.value, N - 1, 'the store keeps the last')
})
