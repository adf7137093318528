/**
 * External broker mode against a real mosquitto, with mosquitto_pub /
 * mosquitto_sub as the mapper, and the MQTT.js trap regression test
 * (DESIGN.md §11): queued QoS 1 messages behind CONNACK on a
 * persistent-session reconnect must all reach the twin engine.
 */
import t from 'tap'
import mqtt from 'mqtt'
import type { TwinReport } from '../../src/device/protocol.js'
import { sendSnapshot, snapshot, startEdge, startHub, T, until, Upstream } from './edge-helpers.js'
import { runTool, startMosquitto, subscribeTool } from './mosquitto.js'

t.test('external mode: mosquitto_pub/mosquitto_sub mapper, delta and reports', async t => {
  const dir = t.testdir({})
  const mq = await startMosquitto(t, dir)
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', dir + '/edge', { devices: { mode: 'external', external: { url: mq.url, reconnectPeriodMs: 100 } } })
  t.equal(edge.devices?.brokerUrl, undefined, 'no embedded broker in external mode')
  await edge.waitConnected(10_000)
  await edge.devices?.external?.waitConnected(10_000)
  // mosquitto_sub waits for the deltas; the cloud sets desired twice. Subscribed before the first
  // snapshot and counting both, so the first delta cannot be mistaken for the second (it used to
  // race with a late first delta under load).
  const sub = subscribeTool(['-h', '127.0.0.1', '-p', String(mq.port), '-t', T('dev1/twin/update/delta'), '-C', '2', '-q', '1'])
  await sub.subscribed
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, desired: { target: { value: 20, revision: 1 } } }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, desired: { target: { value: 22.5, revision: 2 } } }))
  const out = await sub.result
  t.equal(out.code, 0, out.stderr)
  t.same(out.json.map((j: any) => j?.delta), [{ target: '20' }, { target: '22.5' }])

  // mosquitto_pub reports; mosquitto_sub reads the result
  const res = subscribeTool(['-h', '127.0.0.1', '-p', String(mq.port), '-t', T('dev1/twin/update/result'), '-C', '1', '-q', '1'])
  await res.subscribed
  const pub = await runTool('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mq.port), '-q', '1', '-t', T('dev1/twin/update'), '-m', JSON.stringify({ event_id: 'e1', timestamp: Date.now(), twin: { target: { actual: { value: '22.5' } }, temperature: { actual: { value: '19.25' } } } })])
  t.equal(pub.code, 0, pub.stderr)
  const result = (await res.result).json[0]
  t.equal(result.event_id, 'e1')
  await up.waitFor(() => up.of('report').length === 1)
  const rep = up.of('report')[0]!.content as TwinReport
  t.same([rep.reported.target?.value, rep.reported.temperature?.value, rep.baseRevision], [22.5, 19.25, 2])
})

t.test('MQTT.js handler attached after connectAsync loses queued messages (regression: none lost)', async t => {
  const dir = t.testdir({})
  const mq = await startMosquitto(t, dir)
  const up = new Upstream()
  const hub = await startHub(t, up)
  const devices = { mode: 'external' as const, external: { url: mq.url, clientId: 'edge-1-twins', reconnectPeriodMs: 100 } }
  let edge = await startEdge(t, hub, 'edge-1', dir + '/edge', { devices })
  await edge.waitConnected(10_000)
  await edge.devices?.external?.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1 }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  // the engine's subscriptions must be in place on the persistent session
  await until(() => edge.devices?.external?.subscribed === true, 10_000, 'engine subscriptions')
  await edge.close()

  // the mapper publishes N updates while the edge is down: mosquitto queues them for the session
  const N = 300
  const pub = await mqtt.connectAsync(mq.url, { reconnectPeriod: 0 })
  for (let i = 1; i <= N; i++) {
    await pub.publishAsync(T('dev1/twin/update'), JSON.stringify({ event_id: `e${i}`, twin: { fan: { actual: { value: String(i % 4) } }, temperature: { actual: { value: String(i / 10) } } } }), { qos: 1 })
  }
  await pub.endAsync()

  // restart: the queue arrives right behind CONNACK
  edge = await startEdge(t, hub, 'edge-1', dir + '/edge', { devices })
  await up.waitFor(() => up.of('report').length >= N, 30_000)
  const reports = up.of('report').map(e => e.content as TwinReport)
  t.equal(reports.length, N, `all ${N} queued updates reached the cloud`)
  t.same(reports.map(r => r.edgeSeq), Array.from({ length: N }, (_, i) => i + 1), 'edgeSeq 1..N, nothing skipped')
  t.same(reports.map(r => r.reported.temperature?.value), Array.from({ length: N }, (_, i) => (i + 1) / 10), 'in order')
  t.equal(edge.devices?.getTwin('default', 'dev1')?.edgeSeq, N)

  // The wrong way, for the record: handler attached after connectAsync on the same kind of session.
  const naive0 = await mqtt.connectAsync(mq.url, { clientId: 'naive', clean: false, reconnectPeriod: 0 })
  await naive0.subscribeAsync('naive/#', { qos: 1 })
  await naive0.endAsync()
  const p2 = await mqtt.connectAsync(mq.url, { reconnectPeriod: 0 })
  for (let i = 0; i < N; i++) await p2.publishAsync('naive/x', String(i), { qos: 1 })
  await p2.endAsync()
  const naive = await mqtt.connectAsync(mq.url, { clientId: 'naive', clean: false, reconnectPeriod: 0 })
  let seen = 0
  naive.on('message', () => { seen++ })
  await new Promise(resolve => setTimeout(resolve, 1000))
  await naive.endAsync()
  t.comment(`handler attached after connectAsync saw ${seen}/${N} queued messages (the edge saw ${reports.length}/${N})`)
})
