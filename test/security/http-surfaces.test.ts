/**
 * Issue 13 items 6 and 7, attacked the way the outside report did: raw HTTP
 * requests over real sockets against a real hub (admin server + device API)
 * and a real edge (admin, local API, ServiceBus upstream endpoint).
 *
 *  - a forged Host (DNS rebinding) on every admin and local API;
 *  - a cross-site form post (text/plain, form-urlencoded) to /v1/upstream/raw;
 *  - anonymous device changes and credential issuance on the hub admin;
 *  - an anonymous watch flood taking every watch slot;
 *  - the admin token generated at first start, kept across restarts.
 */
import { once } from 'node:events'
import { stat, readFile } from 'node:fs/promises'
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { Envelope } from '../../src/codec/envelope.js'
import { rawRequest, rawStream } from './http-raw.js'

function hostOf (url: string): string { return new URL(url).host }

t.test('hub and edge: forged Host, cross-site posts, anonymous changes, watch flood', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', devices: true })
  t.teardown(() => hub.close(200))
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: dir + '/edge',
    upstreamEndpoint: { port: 0 }, localApi: { port: 0 }
  })
  t.teardown(() => edge.close())
  const admin = hub.adminUrl as string
  const token = hub.adminToken as string
  t.ok(hub.adminTokenCreated, 'first start generated the admin token')

  t.test('forged Host (DNS rebinding) is refused on every surface', async t => {
    for (const [name, url, path] of [['hub admin', admin, '/status'], ['hub device API', admin, '/v1/devices'], ['hub console', admin, '/console/'],
      ['edge admin', edge.adminUrl as string, '/status'], ['edge local API', edge.localApiUrl as string, '/v1/resources']] as const) {
      const forged = await rawRequest(url, `GET ${path} HTTP/1.1\nHost: rebind.evil.example:${new URL(url).port}`)
      t.equal(forged.status, 421, `${name}: forged Host refused`)
      t.match(forged.body, /EF_HOST_NOT_ALLOWED/)
      const ok = await rawRequest(url, `GET ${path} HTTP/1.1\nHost: ${hostOf(url)}`)
      t.equal(ok.status, 200, `${name}: the real Host is served`)
      const local = await rawRequest(url, `GET ${path} HTTP/1.1\nHost: localhost:${new URL(url).port}`)
      t.equal(local.status, 200, `${name}: localhost is served`)
    }
    const up = await rawRequest(edge.upstreamUrl as string, `POST /v1/upstream HTTP/1.1\nHost: rebind.evil.example\nContent-Type: application/json\nX-EdgeFabric-Client: x`,
      JSON.stringify({ group: 'g', resource: 'r', operation: 'o' }))
    t.equal(up.status, 421, 'upstream endpoint: forged Host refused even with the client header')
  })

  t.test('cross-site posts to the upstream endpoint send nothing', async t => {
    const sent: Envelope[] = []
    const orig = edge.bus.sendUpstream.bind(edge.bus)
    edge.bus.sendUpstream = async (env: Envelope) => { sent.push(env); await orig(env) }
    t.teardown(() => { edge.bus.sendUpstream = orig })
    const up = edge.upstreamUrl as string
    const h = hostOf(up)
    // What <form method=post enctype=text/plain action=http://127.0.0.1:port/v1/upstream/raw?...> sends.
    const form = await rawRequest(up, `POST /v1/upstream/raw?group=g&resource=r&operation=o HTTP/1.1\nHost: ${h}\nOrigin: http://evil.example\nContent-Type: text/plain`, 'x=1')
    t.equal(form.status, 403, 'cross-origin form post refused')
    // The same without Origin (some browsers omit it on form posts): no client header → refused.
    const plain = await rawRequest(up, `POST /v1/upstream/raw?group=g&resource=r&operation=o HTTP/1.1\nHost: ${h}\nContent-Type: text/plain`, 'x=1')
    t.equal(plain.status, 403)
    t.match(plain.body, /EF_CLIENT_HEADER_REQUIRED/)
    const urlenc = await rawRequest(up, `POST /v1/upstream/raw?group=g&resource=r&operation=o HTTP/1.1\nHost: ${h}\nContent-Type: application/x-www-form-urlencoded\nX-EdgeFabric-Client: x`, 'x=1')
    t.equal(urlenc.status, 415, 'a form body is refused even with the header')
    const jsonAsText = await rawRequest(up, `POST /v1/upstream HTTP/1.1\nHost: ${h}\nContent-Type: text/plain\nX-EdgeFabric-Client: x`, JSON.stringify({ group: 'g', resource: 'r', operation: 'o' }))
    t.equal(jsonAsText.status, 415, 'JSON sent as text/plain is refused')
    t.equal(sent.length, 0, 'nothing reached the bus')
    const good = await rawRequest(up, `POST /v1/upstream/raw?group=g&resource=r&operation=o HTTP/1.1\nHost: ${h}\nContent-Type: application/octet-stream\nX-EdgeFabric-Client: app`, 'x=1')
    t.equal(good.status, 202, 'a local app with the header and a binary type is served')
    t.equal(sent.length, 1)
  })

  t.test('hub admin: anonymous and read-only callers cannot change devices or issue credentials', async t => {
    const h = hostOf(admin)
    const model = JSON.stringify({ properties: [{ name: 'x', type: 'int', accessMode: 'ReadWrite' }] })
    const anon = await rawRequest(admin, `PUT /v1/device-models/default/m HTTP/1.1\nHost: ${h}\nContent-Type: application/json`, model)
    t.equal(anon.status, 403, 'anonymous loopback caller is read-only')
    const wrong = await rawRequest(admin, `PUT /v1/device-models/default/m HTTP/1.1\nHost: ${h}\nContent-Type: application/json\nAuthorization: Bearer nope`, model)
    t.equal(wrong.status, 401)
    const cross = await rawRequest(admin, `PUT /v1/device-models/default/m HTTP/1.1\nHost: ${h}\nOrigin: http://evil.example\nContent-Type: application/json\nAuthorization: Bearer ${token}`, model)
    t.equal(cross.status, 403, 'even with the token, a cross-origin request is refused')
    const ok = await rawRequest(admin, `PUT /v1/device-models/default/m HTTP/1.1\nHost: ${h}\nContent-Type: application/json\nAuthorization: Bearer ${token}`, model)
    t.equal(ok.status, 200, 'the admin token may change')
    const dev = await rawRequest(admin, `PUT /v1/devices/default/d1 HTTP/1.1\nHost: ${h}\nContent-Type: application/json\nAuthorization: Bearer ${token}`, JSON.stringify({ model: 'default/m', nodeId: 'edge-1' }))
    t.equal(dev.status, 200)
    const cred = await rawRequest(admin, `POST /v1/devices/default/d1/credentials HTTP/1.1\nHost: ${h}\nContent-Type: application/json`, '{}')
    t.equal(cred.status, 403, 'no credential for an anonymous caller')
    t.notMatch(cred.body, /password|secret/i)
  })

  t.test('anonymous watch flood: a few slots, the admin keeps its own', async t => {
    const h = hostOf(admin)
    const streams: Array<{ status: number, close: () => void }> = []
    t.teardown(() => { for (const s of streams) s.close() })
    for (let i = 0; i < 40; i++) streams.push(await rawStream(admin, `GET /v1/watch HTTP/1.1\nHost: ${h}`))
    const served = streams.filter(s => s.status === 200).length
    const refused = streams.filter(s => s.status === 429).length
    t.equal(served, 8, 'anonymous readers share 8 watch slots')
    t.equal(refused, 32)
    const adminWatch = await rawStream(admin, `GET /v1/watch HTTP/1.1\nHost: ${h}\nAuthorization: Bearer ${token}`)
    streams.push(adminWatch)
    t.equal(adminWatch.status, 200, 'the admin still gets a watch during the flood')
    // Closing anonymous streams gives their slots back.
    for (const s of streams.slice(0, 8)) s.close()
    let again = 0
    for (let i = 0; i < 50 && again !== 200; i++) {
      await new Promise(resolve => setTimeout(resolve, 20))
      const s = await rawStream(admin, `GET /v1/watch HTTP/1.1\nHost: ${h}`)
      streams.push(s)
      again = s.status
    }
    t.equal(again, 200, 'slots are released when a watcher goes away')
  })
})

t.test('admin token: generated once into the data dir (0600), kept across restarts, --admin-token overrides', async t => {
  const dir = t.testdir({})
  const a = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir })
  const first = a.adminToken as string
  t.ok(a.adminTokenCreated)
  t.ok(first.length >= 40, 'a long random token')
  await a.close(100)
  const st = await stat(dir + '/admin-token')
  t.equal(st.mode & 0o777, 0o600, 'owner-only file')
  t.equal((await readFile(dir + '/admin-token', 'utf8')).trim(), first)
  const b = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir })
  t.equal(b.adminToken, first, 'same token after a restart')
  t.notOk(b.adminTokenCreated, 'not printed again')
  await b.close(100)
  const c = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir, admin: { token: 'operator-chosen-token' } })
  t.teardown(() => c.close(100))
  t.equal(c.adminToken, 'operator-chosen-token')
  const r = await rawRequest(c.adminUrl as string, `GET /metrics HTTP/1.1\nHost: ${hostOf(c.adminUrl as string)}\nAuthorization: Bearer ${first}`)
  t.equal(r.status, 401, 'the file token no longer works when overridden')
  void once
})
