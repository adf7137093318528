/**
 * Embedded broker listeners (TLS, WebSocket) and `both` mode (embedded
 * broker for devices + a real mosquitto as the external broker).
 */
import t from 'tap'
import type { TwinReport } from '../../src/device/protocol.js'
import { generateSelfSignedCertificate } from '../../src/identity/tls.js'
import { Mapper, sendSnapshot, snapshot, startEdge, startHub, T, until, Upstream } from './edge-helpers.js'
import { startMosquitto } from './mosquitto.js'

const local = [{ username: 'admin', password: 'pw', devices: '*' as const }]

t.test('TLS and WebSocket listeners', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const cert = await generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['127.0.0.1'] })
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge', { devices: { mqtt: { port: 0, tls: { cert: cert.cert, key: cert.key }, ws: { port: 0 } }, credentials: local } })
  await edge.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, desired: { target: { value: 10, revision: 1 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  t.match(edge.devices?.brokerUrl, /^mqtts:\/\/127\.0\.0\.1:\d+$/)
  t.match(edge.devices?.wsUrl, /^ws:\/\/127\.0\.0\.1:\d+$/)

  const tls = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', ca: cert.cert, servername: 'localhost' })
  await tls.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  t.equal((await tls.request(T('dev1/twin/get'), {})).twin.target.expected.value, '10', 'over TLS')
  const ws = await Mapper.connect(t, edge.devices?.wsUrl as string, { username: 'admin', password: 'pw' })
  await ws.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await ws.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '3.5' } } } })
  await up.waitFor(() => up.of('report').length === 1)
  t.equal((up.of('report')[0]!.content as TwinReport).reported.temperature?.value, 3.5, 'over WebSocket')
  // a plain TCP client cannot talk to the TLS listener
  const plain = new Mapper((edge.devices?.brokerUrl as string).replace('mqtts:', 'mqtt:'), { username: 'admin', password: 'pw', connectTimeout: 2000 })
  const outcome = await new Promise<string>(resolve => { plain.client.once('connect', () => resolve('connected')); plain.client.once('close', () => resolve('closed')) })
  await plain.client.endAsync(true)
  t.equal(outcome, 'closed')
})

t.test('both mode: devices on the embedded broker and on an external mosquitto', async t => {
  const dir = t.testdir({})
  const mq = await startMosquitto(t, dir)
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', dir + '/edge', { devices: { mode: 'both', mqtt: { port: 0 }, external: { url: mq.url, reconnectPeriodMs: 100 }, credentials: local } })
  await edge.waitConnected(10_000)
  await edge.devices?.external?.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1 }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  const inner = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw' })
  const outer = await Mapper.connect(t, mq.url, {})
  await inner.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await outer.client.subscribeAsync(T('dev1/#'), { qos: 1 })
  await new Promise(resolve => setTimeout(resolve, 300)) // the edge's own subscriptions on mosquitto

  // a cloud change reaches mappers on both brokers
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, desired: { target: { value: 12, revision: 2 } } }))
  t.equal((await inner.next(T('dev1/twin/update/delta'))).delta.target, '12')
  t.equal((await outer.next(T('dev1/twin/update/delta'))).delta.target, '12')
  // each answer goes back on the broker the request came from
  const viaOuter = await outer.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '1' } } } })
  t.equal(viaOuter.twin.temperature.actual.value, '1')
  const viaInner = await inner.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '2' } } } })
  t.equal(viaInner.twin.temperature.actual.value, '2')
  await up.waitFor(() => up.of('report').length === 2)
  t.same(up.of('report').map(e => (e.content as TwinReport).reported.temperature?.value), [1, 2])
  t.notOk(inner.messages.some(m => m.topic === T('dev1/twin/update/result') && m.json.twin?.temperature?.actual?.value === '1'), 'outer result not echoed to the embedded broker')
})
