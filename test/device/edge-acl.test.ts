/**
 * Embedded broker security and bad input (DESIGN.md §8, §9): per-device
 * credentials from snapshots (scrypt hashes only), mapper grants, local
 * credentials, topic confinement, counters; malformed / wrong-typed /
 * oversize / unknown-device requests answered with {code, reason} while
 * everything else keeps working.
 */
import t from 'tap'
import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import mqtt from 'mqtt'
import { hashSecret } from '../../src/device/credentials.js'
import { InvalidOptionError } from '../../src/errors.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Mapper, sendSnapshot, snapshot, startEdge, startHub, T, until, Upstream } from './edge-helpers.js'

async function metric (edge: EdgeNode, name: string): Promise<string> {
  const text = await edge.registry.metrics()
  return text.split('\n').filter(l => l.startsWith(name)).join('\n')
}

t.test('devices authenticate and stay on their own topics', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge')
  await edge.waitConnected(10_000)
  const h1 = await hashSecret('s1')
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, credentials: [{ username: 'dev1', passwordHash: h1 }] }))
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, name: 'dev2', credentials: [{ username: 'dev2', passwordHash: await hashSecret('s2') }] }))
  await until(() => edge.devices?.listDevices().length === 2)
  const url = edge.devices?.brokerUrl as string

  // wrong password / unknown user / anonymous: CONNACK refused
  for (const opts of [{ username: 'dev1', password: 'nope' }, { username: 'ghost', password: 'x' }, {}]) {
    const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
    const [err] = await once(c as never, 'error') as [Error]
    t.match(err.message, /Bad username or password|Not authorized/i, `refused: ${JSON.stringify(opts)}`)
    await c.endAsync(true)
  }

  const d1 = await Mapper.connect(t, url, { username: 'dev1', password: 's1', clientId: 'dev1' })
  // own topics: granted; another device's topics, wildcards reaching out: refused (SUBACK 128)
  await d1.client.subscribeAsync(T('dev1/twin/update/result'), { qos: 1 })
  for (const filter of [T('dev2/twin/update/result'), '$hw/events/device/#', '#']) {
    await t.rejects(d1.client.subscribeAsync(filter, { qos: 1 }), `SUBACK failure for ${filter}`)
  }
  const own = await d1.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '1' } } } })
  t.equal(own.twin.temperature.actual.value, '1')

  // publishing to another device's topic: dropped and counted, the connection stays (issue 14 item 6)
  await d1.client.publishAsync(T('dev2/twin/update'), JSON.stringify({ twin: { temperature: { actual: { value: '99' } } } }), { qos: 1 })
  t.ok(d1.client.connected, 'still connected after a refused publish')
  const again = await d1.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '2' } } } })
  t.equal(again.twin.temperature.actual.value, '2', 'and still served')
  t.equal(edge.devices?.getTwin('default', 'dev2')?.reported.temperature, undefined, 'dev2 untouched')
  t.match(await metric(edge, 'edgefabric_edge_device_acl_denials_total'), /action="connect"} 3[\s\S]*action="subscribe"} 3[\s\S]*action="publish"} 1/)

  // credential removed with the device: its live session is cut, and the cached verification does not outlive it
  const live = await Mapper.connect(t, url, { username: 'dev1', password: 's1', clientId: 'dev1-live' })
  const cut = once(live.client as never, 'close')
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, credentials: [] }))
  await cut
  await until(() => edge.devices?.getTwin('default', 'dev1')?.revision === 2)
  const c = mqtt.connect(url, { reconnectPeriod: 0, username: 'dev1', password: 's1' })
  await once(c as never, 'error')
  await c.endAsync(true)
})

t.test('bad input gets {code, reason} on the result topic; others unaffected', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge', { devices: { mqtt: { port: 0 }, maxPayloadBytes: 1024, credentials: [{ username: 'admin', password: 'pw', devices: '*' }] } })
  await edge.waitConnected(10_000)
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1 }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined)
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw' })
  await m.client.subscribeAsync(['$hw/events/device/#'], { qos: 1 })
  const bystander = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw' })
  await bystander.client.subscribeAsync(T('dev1/twin/update'), { qos: 1 })

  const raw = async (payload: string | Buffer): Promise<any> => {
    await m.client.publishAsync(T('dev1/twin/update'), payload, { qos: 1 })
    return await m.next(T('dev1/twin/update/result'))
  }
  const cases: Array<[string, string | Buffer, string, number]> = [
    ['malformed JSON', '{"twin": ', 'EF_TWIN_BAD_JSON', 400],
    ['not an object', '[1,2]', 'EF_TWIN_BAD_JSON', 400],
    ['twin missing', '{"event_id":"x"}', 'EF_TWIN_BAD_REQUEST', 400],
    ['wrong type (float)', JSON.stringify({ twin: { temperature: { actual: { value: 'hot' } } } }), 'EF_TWIN_BAD_VALUE', 400],
    ['wrong type (int)', JSON.stringify({ twin: { fan: { expected: { value: '1.5' } } } }), 'EF_TWIN_BAD_VALUE', 400],
    ['wrong type (boolean)', JSON.stringify({ twin: { power: { expected: { value: 'yes' } } } }), 'EF_TWIN_BAD_VALUE', 400],
    ['above maximum', JSON.stringify({ twin: { target: { expected: { value: '99' } } } }), 'EF_TWIN_BAD_VALUE', 400],
    ['ReadOnly expected', JSON.stringify({ twin: { temperature: { expected: { value: '20' } } } }), 'EF_TWIN_READ_ONLY', 400],
    ['unknown property', JSON.stringify({ twin: { humidity: { actual: { value: '1' } } } }), 'EF_TWIN_UNKNOWN_PROPERTY', 404],
    ['oversize', Buffer.alloc(4096, 0x20), 'EF_TWIN_TOO_LARGE', 413]
  ]
  for (const [what, payload, code, status] of cases) {
    const r = await raw(payload)
    t.equal(r.error, code, what)
    t.equal(r.code, status, `${what}: KubeEdge-style numeric code`)
    t.type(r.reason, 'string')
  }
  // all or nothing: one bad twin refuses the whole request
  const mixed = await raw(JSON.stringify({ twin: { target: { expected: { value: '21' } }, fan: { expected: { value: '9' } } } }))
  t.equal(mixed.error, 'EF_TWIN_BAD_VALUE')
  t.same(edge.devices?.getTwin('default', 'dev1')?.pendingExpected, {}, 'nothing applied')

  // unknown device
  await m.client.publishAsync(T('nosuch/twin/update'), JSON.stringify({ event_id: 'u', twin: {} }), { qos: 1 })
  const unknown = await m.next(T('nosuch/twin/update/result'))
  t.same([unknown.error, unknown.code, unknown.event_id], ['EF_TWIN_UNKNOWN_DEVICE', 404, 'u'])

  const errs = await metric(edge, 'edgefabric_edge_device_request_errors_total')
  for (const code of ['EF_TWIN_BAD_JSON', 'EF_TWIN_BAD_VALUE', 'EF_TWIN_READ_ONLY', 'EF_TWIN_TOO_LARGE', 'EF_TWIN_UNKNOWN_DEVICE']) t.match(errs, new RegExp(`code="${code}"`), `counted: ${code}`)
  t.equal(up.of('report').length, 0, 'no bad request reached the cloud')
  t.notOk(bystander.messages.some(x => x.json === '' || (typeof x.json === 'string' && x.json.length >= 4096)), 'oversize payload not forwarded to other clients')

  // a packet far over the bound is cut at the socket, the broker and other clients carry on
  const sock = netConnect((edge.devices?.brokerUrl as string).replace('mqtt://', '').split(':')[1] as unknown as number, '127.0.0.1')
  await once(sock, 'connect')
  sock.on('error', () => {})
  sock.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])) // PUBLISH announcing ~256 MiB
  await once(sock, 'close')
  t.match(await metric(edge, 'edgefabric_edge_device_acl_denials_total'), /action="oversize"} 1/)

  const ok = await raw(JSON.stringify({ event_id: 'fine', twin: { temperature: { actual: { value: '22.5' } } } }))
  t.equal(ok.event_id, 'fine')
  t.equal(ok.twin.temperature.actual.value, '22.5', 'valid update still works')
  await up.waitFor(() => up.of('report').length === 1)
})

t.test('devices option is validated, naming the option', async t => {
  const dataDir = t.testdir({})
  const base = { hub: 'ws://127.0.0.1:1', nodeId: 'n', token: 'x', dataDir, admin: false as const }
  const bad: Array<[object, string]> = [
    [{ mode: 'sideways' }, 'devices.mode'],
    [{ mode: 'external' }, 'devices.external.url'],
    [{ mqtt: { port: 70000 } }, 'devices.mqtt.port'],
    [{ maxPayloadBytes: 0 }, 'devices.maxPayloadBytes'],
    [{ credentials: [{ username: 'a', devices: '*' }] }, 'devices.credentials[0]'],
    [{ credentials: [{ username: 'a', password: 'b', devices: ['no-slash'] }] }, 'devices.credentials[0].devices'],
    [{ credentials: [{ username: 'a', password: 'b', devices: '*', role: 'root' }] }, 'devices.credentials[0].role'],
    [{ compat: 'kube' }, 'devices.compat'],
    [{ legacyTopics: 'yes' }, 'devices.legacyTopics'],
    [{ legacyNamespace: 'Not_A_Label' }, 'devices.legacyNamespace'],
    [{ allowAnonymous: 1 }, 'devices.allowAnonymous'],
    [{ extraProperties: 'maybe' }, 'devices.extraProperties'],
    [{ sessions: { maxQueuedPerClient: 0 } }, 'devices.sessions.maxQueuedPerClient'],
    [{ auth: { maxConcurrent: 0 } }, 'devices.auth.maxConcurrent']
  ]
  for (const [devices, option] of bad) {
    const err = await EdgeNode.start({ ...base, devices } as never).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof InvalidOptionError, `${option}: InvalidOptionError`)
    t.equal((err as InvalidOptionError).option, option)
  }
})
