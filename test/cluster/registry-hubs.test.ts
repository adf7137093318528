/**
 * The device registry is cluster-wide (issue 17): two hubs in cluster mode on a
 * real 3-server NATS cluster, each with its admin HTTP API. A model and a device
 * created through hub A's API are read and watched through hub B's; revisions
 * are cluster-wide and grow; hubs A and B updating one device at the same time
 * lose no update; an edge connected to hub B gets the snapshots of changes made
 * on hub A, and its reports reach hub A's view.
 */
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { DEVICE_GROUP, twinResource, type DeviceSnapshot } from '../../src/device/protocol.js'
import type { DeviceView } from '../../src/device/cloud/registry-types.js'
import type { Hub } from '../../src/hub/hub.js'
import { thermostat } from '../device/cloud-helpers.js'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(180_000)

async function api (hub: Hub, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch((hub.adminUrl as string) + path, {
    method,
    headers: { authorization: `Bearer ${hub.adminToken as string}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: res.status, json: await res.json() }
}

t.test('registry shared by two hubs: HTTP API, watch, revisions, concurrent updates, edge on the other hub', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const extra = { admin: { port: 0 }, devices: true }
  const a = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'], extra)
  const b = await startClusterHub(t, nats, 'hub-b', ['wss://127.0.0.1:0'], extra)

  // Hub B watches before anything exists (NDJSON stream of its admin API).
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  const watched: Array<{ type: string, revision: number, detail?: any }> = []
  const res = await fetch(`${b.adminUrl as string}/v1/watch`, { signal: ac.signal, headers: { authorization: `Bearer ${b.adminToken as string}` } })
  void (async () => {
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buf += new TextDecoder().decode(value)
      let i
      while ((i = buf.indexOf('\n')) >= 0) { const line = buf.slice(0, i); buf = buf.slice(i + 1); if (line.trim() !== '') watched.push(JSON.parse(line)) }
    }
  })().catch(() => {})

  let r = await api(a, 'PUT', '/v1/device-models/default/thermostat', { properties: thermostat.properties })
  t.equal(r.status, 200, 'model created through hub A')
  r = await api(a, 'PUT', '/v1/devices/default/t1', { model: 'default/thermostat', labels: { room: 'a' }, attributes: {}, nodeId: 'edge-1' })
  t.equal(r.status, 200, 'device created through hub A')
  const created = r.json as DeviceView
  await until('hub B reads the device', async () => (await api(b, 'GET', '/v1/devices/default/t1')).status === 200)
  const onB = (await api(b, 'GET', '/v1/devices/default/t1')).json as DeviceView
  t.equal(onB.revision, created.revision, 'hub B reads the revision hub A wrote')
  t.same((await api(b, 'GET', '/v1/device-models/default/thermostat')).json.properties.length, thermostat.properties.length, 'and the model')
  await until('hub B watch sees the changes made on A', () => watched.some(c => c.type === 'device-upserted'))
  t.same(watched.slice(0, 2).map(c => c.type), ['model-upserted', 'device-upserted'], 'hub B watchers get hub A\'s changes, in order')

  // Revisions are cluster-wide: alternate hubs, each change gets a higher one.
  const revs: number[] = [created.revision]
  for (let i = 0; i < 6; i++) {
    const hub = i % 2 === 0 ? b : a
    const v = (await api(hub, 'PUT', '/v1/devices/default/t1/desired', { target: 10 + i })).json as DeviceView
    revs.push(v.revision)
  }
  t.ok(revs.every((v, i) => i === 0 || v > (revs[i - 1] as number)), `revisions grow across hubs: ${revs.join(' ')}`)

  // Both hubs update the same device at once, each its own property, several times.
  const n = 15
  const fromA: number[] = []
  const fromB: number[] = []
  await Promise.all([
    (async () => { for (let i = 0; i < n; i++) fromA.push((await a.devices?.setDesired('default', 't1', { target: 5 + i }))?.revision ?? -1) })(),
    (async () => { for (let i = 0; i < n; i++) fromB.push((await b.devices?.setDesired('default', 't1', { 'fan.speed': i % 4 }))?.revision ?? -1) })()
  ])
  const all = [...fromA, ...fromB]
  t.equal(new Set(all).size, all.length, 'every concurrent update got its own revision')
  const last = Math.max(...all)
  await until('both hubs at the last revision', () => a.devices?.getDevice('default', 't1')?.revision === last && b.devices?.getDevice('default', 't1')?.revision === last)
  for (const [name, hub] of [['A', a], ['B', b]] as const) {
    const d = hub.devices?.getDevice('default', 't1')
    t.same([d?.desired.target?.value, d?.desired['fan.speed']?.value], [5 + n - 1, (n - 1) % 4], `hub ${name}: neither hub's last update was lost`)
  }
  await until('hub B watch saw every desired change', () => watched.filter(c => c.type === 'desired').length >= 6 + 2 * n)
  const desiredRevs = watched.filter(c => c.type === 'desired').map(c => c.revision)
  t.ok(desiredRevs.every((v, i) => i === 0 || v > (desiredRevs[i - 1] as number)), 'hub B\'s watch delivers them in revision order')

  // An edge on hub B gets the newest snapshot; its report reaches hub A's view.
  const got: Envelope[] = []
  const edge = await EdgeNode.start({
    hub: [b.urls[0] as string], nodeId: 'edge-1', token: a.createToken('edge-1'), dataDir: subdir(t, 'edge-1'), admin: false,
    backoff: { baseMs: 20, capMs: 200 },
    onReliable: env => { if (env.router.group === DEVICE_GROUP) got.push(env) }
  })
  t.teardown(() => edge.close())
  await until('the newest snapshot on the edge (connected to hub B)', () => got.some(e => e.header.resourceVersion === String(last)), 20_000)
  const snap = got.find(e => e.header.resourceVersion === String(last))?.content as DeviceSnapshot
  t.same([snap.desired.target?.value, snap.desired['fan.speed']?.value], [5 + n - 1, (n - 1) % 4])
  const vs = got.filter(e => e.router.resource === 'device/default/t1').map(e => Number(e.header.resourceVersion))
  t.ok(vs.every((v, i) => i === 0 || v > (vs[i - 1] as number)), `no older snapshot after a newer one: ${vs.join(' ')}`)

  const later = await a.devices?.setDesired('default', 't1', { mode: 'eco' })
  await until('a change made on A after the edge joined B reaches it', () => got.some(e => e.header.resourceVersion === String(later?.revision)), 20_000)
  await edge.sendUpstream(newMessage({
    source: 'devicetwin', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', 't1'),
    content: { namespace: 'default', name: 't1', edgeSeq: 1, baseRevision: later?.revision ?? 0, reported: { temp: { value: 22.5, timestamp: 1000 } } }
  }), { delivery: 'reliable' })
  await until('the report (through hub B) in hub A\'s view', () => a.devices?.getDevice('default', 't1')?.reported.temp?.value === 22.5, 20_000)
  t.equal(a.devices?.getDevice('default', 't1')?.syncedRevision, later?.revision, 'hub A sees the edge in sync')
})
