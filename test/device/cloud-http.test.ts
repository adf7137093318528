/**
 * The device API on a real Hub's admin HTTP server, with real fetch: models,
 * devices, desired values, credentials, mappers, errors as {code, message}
 * with proper statuses, body limits, watch as NDJSON and SSE, admin token.
 */
import t, { type Test } from 'tap'
import { Hub } from '../../src/hub/hub.js'
import { thermostat } from './cloud-helpers.js'

/** The generated admin token of the last hub started without an explicit one (admin token by default, issue 13 item 7). */
let generated: Record<string, string> = {}

async function start (t: Test, admin: { token?: string } = {}): Promise<{ hub: Hub, url: string }> {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/hub', admin: { host: '127.0.0.1', port: 0, ...admin }, devices: true })
  t.teardown(() => hub.close(200))
  generated = admin.token === undefined ? { authorization: `Bearer ${hub.adminToken as string}` } : {}
  return { hub, url: hub.adminUrl as string }
}

async function call (url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: any }> {
  const init: RequestInit = { method, headers: { ...generated, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } }
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body)
  const res = await fetch(url, init)
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

/** Read stream lines until `n` non-empty ones arrived. */
async function lines (reader: ReadableStreamDefaultReader<Uint8Array>, n: number, sep: string): Promise<string[]> {
  let buf = ''
  const dec = new TextDecoder()
  for (;;) {
    const parts = buf.split(sep).filter(x => x.trim() !== '' && !x.startsWith(':'))
    if (parts.length > n || (parts.length === n && buf.endsWith(sep))) return parts.slice(0, n)
    const { value, done } = await reader.read()
    if (done === true) return parts
    buf += dec.decode(value, { stream: true })
  }
}

t.test('models, devices, desired, credentials, mappers over HTTP', async t => {
  const { hub, url } = await start(t)
  const api = url + '/v1'
  let r = await call(`${api}/device-models/default/thermostat`, 'PUT', { properties: thermostat.properties })
  t.equal(r.status, 200)
  t.equal(r.json.model.name, 'thermostat', 'namespace/name come from the path')
  r = await call(`${api}/device-models/default/thermostat`, 'GET')
  t.equal(r.json.properties.length, 5)
  r = await call(`${api}/device-models`, 'GET')
  t.equal(r.json.items.length, 1)
  r = await call(`${api}/device-models/default/bad`, 'PUT', { properties: [{ name: 'x', type: 'int', minimum: 3, maximum: 1 }] })
  t.equal(r.status, 422)
  t.equal(r.json.code, 'EF_DEVICE_MODEL_INVALID')
  t.match(r.json.message, /greater than maximum/)

  r = await call(`${api}/devices/default/t1`, 'PUT', { model: 'default/thermostat', labels: { room: 'a' }, attributes: {}, nodeId: 'edge-1' })
  t.equal(r.status, 200)
  t.equal(r.json.spec.nodeId, 'edge-1')
  t.equal(r.json.desired.target.value, 20)
  r = await call(`${api}/devices/default/t2`, 'PUT', { model: 'default/nope' })
  t.equal(r.status, 422, 'a missing model in the body is a bad request, not a missing URL')
  t.equal(r.json.code, 'EF_DEVICE_MODEL_NOT_FOUND')
  r = await call(`${api}/devices/default/t2`, 'PUT', { name: 'other', model: 'default/thermostat' })
  t.equal(r.status, 400, 'body naming another device')
  r = await call(`${api}/devices?node=edge-1`, 'GET')
  t.same(r.json.items.map((d: any) => d.spec.name), ['t1'])
  r = await call(`${api}/devices?label=room=b`, 'GET')
  t.same(r.json.items, [])
  for (const n of ['p1', 'p2', 'p3']) await call(`${api}/devices/paged/${n}`, 'PUT', { model: 'default/thermostat' })
  r = await call(`${api}/devices?namespace=paged&limit=2`, 'GET')
  t.same([r.json.items.map((d: any) => d.spec.name), r.json.next], [['p1', 'p2'], 'paged/p2'], 'first page and cursor')
  r = await call(`${api}/devices?namespace=paged&limit=2&after=${r.json.next}`, 'GET')
  t.same([r.json.items.map((d: any) => d.spec.name), r.json.next], [['p3'], undefined], 'last page')
  r = await call(`${api}/devices?limit=0`, 'GET')
  t.equal(r.status, 400)
  for (const n of ['p1', 'p2', 'p3']) await call(`${api}/devices/paged/${n}`, 'DELETE')
  r = await call(`${api}/devices/default/t1/desired`, 'PUT', { target: 24 })
  t.equal(r.status, 200)
  t.equal(r.json.desired.target.value, 24)
  t.equal(hub.devices?.getDevice('default', 't1')?.desired.target?.value, 24, 'same registry as the library API')
  for (const [body, code] of [[{ target: 99 }, 'EF_DEVICE_OUT_OF_RANGE'], [{ temp: 1 }, 'EF_DEVICE_READ_ONLY'], [{ zz: 1 }, 'EF_DEVICE_UNKNOWN_PROPERTY'], [{ power: 'on' }, 'EF_DEVICE_TYPE_MISMATCH']] as const) {
    r = await call(`${api}/devices/default/t1/desired`, 'PUT', body)
    t.same([r.status, r.json.code], [422, code], `desired ${JSON.stringify(body)}`)
  }
  r = await call(`${api}/devices/default/t1/credentials`, 'POST', {})
  t.equal(r.status, 200)
  t.equal(r.json.username, 'default/t1')
  t.type(r.json.password, 'string')
  r = await call(`${api}/devices/default/t1`, 'GET')
  t.same(r.json.credentials.map((c: any) => c.username), ['default/t1'])
  t.notMatch(JSON.stringify(r.json), /scrypt/, 'hashes are not served')
  r = await call(`${api}/devices/default/t1/credentials`, 'POST')
  t.equal(r.status, 415, 'POST without a JSON content type is refused (no cross-site form posts)')
  r = await call(`${api}/mappers/edge-1/modbus`, 'PUT', { devices: ['default/t1'] })
  t.equal(r.json.username, 'mapper/edge-1/modbus')
  r = await call(`${api}/mappers?node=edge-1`, 'GET')
  t.same(r.json.items.map((m: any) => m.devices), [['default/t1']])
  r = await call(`${api}/mappers/edge-1/modbus`, 'DELETE')
  t.equal(r.status, 200)
  r = await call(`${api}/nodes/edge-1/resync`, 'POST', {})
  t.same(r.json, { devices: 1 })
  r = await call(`${api}/device-models/default/thermostat`, 'DELETE')
  t.same([r.status, r.json.code], [409, 'EF_DEVICE_MODEL_IN_USE'])
  r = await call(`${api}/devices/default/t1`, 'DELETE')
  t.equal(r.status, 200)
  r = await call(`${api}/devices/default/t1`, 'GET')
  t.same([r.status, r.json.code], [404, 'EF_NOT_FOUND'])
  r = await call(`${api}/devices/default/t1`, 'DELETE')
  t.same([r.status, r.json.code], [404, 'EF_DEVICE_NOT_FOUND'])
  r = await call(`${api}/device-models/default/thermostat`, 'DELETE')
  t.equal(r.status, 200)
})

t.test('errors: bad JSON 400, oversize 413, unknown 404, wrong method 405; built-in routes still work', async t => {
  const { url } = await start(t)
  let r = await call(`${url}/v1/devices/default/t1/desired`, 'PUT', '{"target": ')
  t.same([r.status, r.json.code], [400, 'EF_BAD_JSON'])
  r = await call(`${url}/v1/devices/default/t1/desired`, 'PUT', JSON.stringify({ x: 'a'.repeat(1024 * 1024 + 10) }))
  t.same([r.status, r.json.code], [413, 'EF_BODY_TOO_LARGE'])
  r = await call(`${url}/v1/devices/default/t1/desired`, 'PUT', 'x', { 'content-type': 'text/plain' })
  t.equal(r.status, 415)
  r = await call(`${url}/v1/nothing-here`, 'GET')
  t.same([r.status, r.json.code], [404, 'EF_NOT_FOUND'])
  r = await call(`${url}/v1/devices/default/t1`, 'POST', {})
  t.same([r.status, r.json.code], [405, 'EF_METHOD_NOT_ALLOWED'])
  r = await call(`${url}/v1/devices/default/t1/desired`, 'PUT', [1, 2])
  t.same([r.status, r.json.code], [404, 'EF_DEVICE_NOT_FOUND'], 'unknown device')
  const health = await fetch(url + '/healthz')
  t.equal(health.status, 200)
  const metrics = await (await fetch(url + '/metrics')).text()
  t.match(metrics, /edgefabric_hub_device_rejections_total\{code="EF_DEVICE_NOT_FOUND"\} 1/)
  t.match(metrics, /edgefabric_hub_device_devices 0/)
})

t.test('watch streams NDJSON and SSE', async t => {
  const { hub, url } = await start(t)
  await hub.devices?.upsertModel(thermostat as never)
  await hub.devices?.upsertDevice({ namespace: 'default', name: 't1', model: 'default/thermostat', labels: {}, attributes: {} })
  const ac = new AbortController()
  t.teardown(() => ac.abort())
  const nd = await fetch(`${url}/v1/devices/default/t1/watch?type=desired`, { signal: ac.signal })
  t.match(nd.headers.get('content-type'), /application\/x-ndjson/)
  const sse = await fetch(`${url}/v1/watch`, { signal: ac.signal, headers: { accept: 'text/event-stream' } })
  t.match(sse.headers.get('content-type'), /text\/event-stream/)
  await call(`${url}/v1/devices/default/t1/desired`, 'PUT', { target: 21 })
  await call(`${url}/v1/devices/default/t1`, 'PUT', { model: 'default/thermostat', labels: { a: 'b' } })
  await call(`${url}/v1/devices/default/t1/desired`, 'PUT', { target: 22 })
  const got = await lines((nd.body as ReadableStream<Uint8Array>).getReader(), 2, '\n')
  t.same(got.map(l => JSON.parse(l).detail.desired.target.value), [21, 22], 'filtered: desired changes only')
  const events = await lines((sse.body as ReadableStream<Uint8Array>).getReader(), 3, '\n\n')
  t.same(events.map(e => JSON.parse(e.split('data: ')[1] as string).type), ['desired', 'device-upserted', 'desired'])
  t.ok(events.every(e => e.startsWith('event: change\n')))
  ac.abort()
})

t.test('admin token: changes need the bearer token; loopback without one reads only', async t => {
  const { url } = await start(t, { token: 's3cret-token' })
  let r = await call(`${url}/v1/devices`, 'GET')
  t.same(r.status, 200, 'anonymous loopback reader (read-only role)')
  r = await call(`${url}/v1/device-models/default/thermostat`, 'PUT', { properties: thermostat.properties })
  t.same([r.status, r.json.code], [403, 'EF_FORBIDDEN'], 'no change without the admin token')
  r = await call(`${url}/v1/devices`, 'GET', undefined, { authorization: 'Bearer wrong' })
  t.equal(r.status, 401)
  r = await call(`${url}/v1/devices`, 'GET', undefined, { authorization: 'Bearer s3cret-token' })
  t.same([r.status, r.json.items], [200, []])
  r = await call(`${url}/v1/device-models/default/thermostat`, 'PUT', { properties: thermostat.properties }, { authorization: 'Bearer s3cret-token' })
  t.equal(r.status, 200)
})

t.test('without a token, changes from a non-loopback peer are refused (403), reads served', async t => {
  // A real peer at a non-loopback address would need traffic to a non-loopback
  // address; the request and response objects stand in for the HTTP layer here.
  const { Readable } = await import('node:stream')
  const { DeviceRegistry } = await import('../../src/device/cloud/registry.js')
  const { deviceRoutes } = await import('../../src/device/cloud/http-api.js')
  const reg = await DeviceRegistry.open()
  t.teardown(() => reg.close())
  const routes = deviceRoutes(reg)
  const call = async (method: string, path: string, remoteAddress: string): Promise<{ status: number, body: any }> => {
    const req = Object.assign(Readable.from([Buffer.from(JSON.stringify({ properties: [] }))]), {
      method, url: path, headers: { 'content-type': 'application/json' }, socket: { remoteAddress }
    })
    let status = 0
    let text = ''
    const res = { headersSent: false, setHeader () {}, writeHead (s: number) { status = s; return res }, end (b: string) { text = b }, destroy () {} }
    t.equal(await routes(req as never, res as never, path), true)
    return { status, body: JSON.parse(text) }
  }
  let r = await call('PUT', '/v1/device-models/default/m', '192.0.2.10')
  t.same([r.status, r.body.code], [403, 'EF_FORBIDDEN'])
  t.equal(reg.listModels().length, 0, 'nothing changed')
  r = await call('GET', '/v1/devices', '192.0.2.10')
  t.equal(r.status, 200, 'reads are served as /status is')
  r = await call('PUT', '/v1/device-models/default/m', '::ffff:127.0.0.1')
  t.equal(r.status, 200, 'loopback (also IPv4-mapped) may change')
})
