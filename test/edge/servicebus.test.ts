import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeFabricError, ServiceBusError } from '../../src/errors.js'
import { ModuleBus } from '../../src/edge/bus.js'
import { callLocalHttp, registerServiceBus, startUpstreamEndpoint, type LocalHttpResponse } from '../../src/edge/servicebus.js'

const MiB = 1024 * 1024

/** A local "edge app" on 127.0.0.1:0. */
async function startApp (): Promise<{ port: number, close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    if (url.startsWith('/hello')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': String(req.headers['x-test'] ?? ''), 'x-query': url.split('?')[1] ?? '' })
      res.end('hi')
      return
    }
    if (url === '/echo') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        res.writeHead(201, { 'content-type': 'application/octet-stream', 'x-method': req.method ?? '', 'x-len': String(body.length), 'x-ct': String(req.headers['content-type']) })
        res.end(body)
      })
      return
    }
    if (url === '/hang') return // never answers
    if (url === '/big') { res.writeHead(200, { 'content-length': 2 * MiB }); res.end(Buffer.alloc(2 * MiB, 1)); return }
    if (url === '/big-chunked') {
      res.writeHead(200) // no content-length: chunked, the limit must be enforced while reading
      let sent = 0
      const pump = (): void => {
        while (sent < 2 * MiB) {
          sent += 64 * 1024
          if (!res.write(Buffer.alloc(64 * 1024, 2))) { res.once('drain', pump); return }
        }
        res.end()
      }
      res.on('error', () => {})
      pump()
      return
    }
    res.writeHead(404)
    res.end()
  })
  server.on('error', () => {})
  server.on('clientError', (_e, s) => s.destroy())
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

t.test('callLocalHttp and the servicebus module', async t => {
  const app = await startApp()
  t.teardown(app.close)
  const upstream: Envelope[] = []
  const bus = new ModuleBus({ upstream: env => { upstream.push(env) } })
  const sb = registerServiceBus(bus, { allowedPorts: [app.port], timeoutMs: 500, maxBodyBytes: MiB })
  const tester = bus.register({ name: 'tester', group: 'tests' })
  t.teardown(async () => { await sb.stop(); bus.close() })

  const call = (content: unknown, opts?: { timeoutMs: number }): Promise<Envelope> =>
    tester.request('servicebus', newMessage({ source: 'tester', group: 'servicebus', operation: 'http', resource: 'app', content }), opts ?? { timeoutMs: 5000 })

  t.test('GET with headers and query', async t => {
    const resp = await call({ method: 'GET', path: '/hello?a=1&b=2', headers: { 'x-test': 'yes', connection: 'upgrade' }, port: app.port })
    t.equal(resp.router.operation, 'response')
    const c = resp.content as LocalHttpResponse
    t.equal(c.status, 200)
    t.equal(c.headers['x-echo'], 'yes')
    t.equal(c.headers['x-query'], 'a=1&b=2')
    t.equal(Buffer.from(c.body).toString(), 'hi')
  })

  t.test('POST with a binary body round-trips', async t => {
    const body = new Uint8Array(300_000)
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff
    const resp = await call({ method: 'post', path: '/echo', headers: { 'content-type': 'application/x-bin' }, body, port: app.port })
    const c = resp.content as LocalHttpResponse
    t.equal(c.status, 201)
    t.equal(c.headers['x-method'], 'POST')
    t.equal(c.headers['x-ct'], 'application/x-bin')
    t.equal(c.headers['x-len'], String(body.length))
    t.ok(Buffer.from(c.body).equals(Buffer.from(body)), 'body bytes identical')
    const str = await call({ method: 'PUT', path: '/echo', body: 'héllo', port: app.port })
    t.equal(Buffer.from((str.content as LocalHttpResponse).body).toString('utf8'), 'héllo')
  })

  t.test('a request from the cloud is answered upstream', async t => {
    const req = newMessage({ source: 'cloud', group: 'servicebus', operation: 'request', resource: 'app', sync: true, content: { path: '/hello', port: app.port } })
    t.match(await bus.dispatch(req, 'cloud'), { status: 'delivered', modules: ['servicebus'] })
    for (let i = 0; i < 100 && upstream.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
    t.equal(upstream[0]?.header.parentId, req.header.id)
    t.equal((upstream[0]?.content as LocalHttpResponse).status, 200)
  })

  t.test('disallowed port', async t => {
    const err = await callLocalHttp({ path: '/hello', port: app.port + 1 === 65536 ? 1 : app.port + 1 }, { allowedPorts: [app.port] }).catch(e => e)
    t.ok(err instanceof ServiceBusError)
    t.match(err, { code: 'EF_SERVICEBUS', reason: 'port-not-allowed' })
    const resp = await call({ path: '/hello', port: 22 })
    t.equal(resp.router.operation, 'error')
    t.match(resp.content, { code: 'EF_SERVICEBUS', reason: 'port-not-allowed' })
  })

  t.test('bad requests', async t => {
    const opts = { allowedPorts: [app.port] }
    await t.rejects(callLocalHttp({ path: 'http://evil/', port: app.port }, opts), { code: 'EF_SERVICEBUS', reason: 'bad-request' })
    await t.rejects(callLocalHttp({ path: '/a b', port: app.port }, opts), { code: 'EF_SERVICEBUS', reason: 'bad-request' })
    await t.rejects(callLocalHttp({ method: 'CONNECT', path: '/', port: app.port }, opts), { code: 'EF_SERVICEBUS', reason: 'bad-request' })
    await t.rejects(callLocalHttp({ path: '/', port: app.port, headers: { 'x-a': 'a\r\nInjected: 1' } }, opts), { code: 'EF_SERVICEBUS', reason: 'bad-request' })
    const resp = await call('not an object')
    t.match(resp.content, { code: 'EF_SERVICEBUS', reason: 'bad-request' })
    const op = await tester.request('servicebus', newMessage({ source: 'tester', group: 'servicebus', operation: 'delete', resource: 'app', content: {} }))
    t.match(op.content, { code: 'EF_SERVICEBUS', reason: 'bad-operation' })
  })

  t.test('timeout when the app never answers', async t => {
    const start = Date.now()
    const err = await callLocalHttp({ path: '/hang', port: app.port }, { allowedPorts: [app.port], timeoutMs: 200 }).catch(e => e)
    t.match(err, { code: 'EF_SERVICEBUS', reason: 'timeout' })
    t.ok(Date.now() - start < 2000)
    const resp = await call({ path: '/hang', port: app.port })
    t.match(resp.content, { code: 'EF_SERVICEBUS', reason: 'timeout' })
  })

  t.test('a hanging app does not block other calls (concurrency)', async t => {
    const hang = call({ path: '/hang', port: app.port })
    const start = Date.now()
    const quick = await call({ path: '/hello', port: app.port })
    t.equal((quick.content as LocalHttpResponse).status, 200)
    t.ok(Date.now() - start < 400, 'answered before the hanging call timed out')
    t.match((await hang).content, { reason: 'timeout' })
  })

  t.test('oversize responses', async t => {
    const opts = { allowedPorts: [app.port], maxBodyBytes: MiB }
    await t.rejects(callLocalHttp({ path: '/big', port: app.port }, opts), { code: 'EF_SERVICEBUS', reason: 'response-too-large' })
    await t.rejects(callLocalHttp({ path: '/big-chunked', port: app.port }, opts), { code: 'EF_SERVICEBUS', reason: 'response-too-large' })
    const resp = await call({ path: '/big-chunked', port: app.port })
    t.match(resp.content, { code: 'EF_SERVICEBUS', reason: 'response-too-large' })
  })

  t.test('connection refused', async t => {
    const dead = http.createServer()
    await new Promise<void>(resolve => dead.listen(0, '127.0.0.1', resolve))
    const port = (dead.address() as AddressInfo).port
    await new Promise<void>(resolve => dead.close(() => resolve()))
    await t.rejects(callLocalHttp({ path: '/', port }, { allowedPorts: [port] }), { code: 'EF_SERVICEBUS', reason: 'connect-failed' })
  })
})

t.test('upstream endpoint', async t => {
  const received: Envelope[] = []
  let refuse: Error | undefined
  const bus = {
    async sendUpstream (env: Envelope): Promise<void> {
      if (refuse !== undefined) throw refuse
      received.push(env)
    }
  }
  const ep = await startUpstreamEndpoint({ bus, maxBodyBytes: 1024 })
  t.teardown(() => ep.close())
  t.match(ep.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  // X-EdgeFabric-Client: required without a token (cross-site protection, issue 13 item 6; test/security/).
  const post = (path: string, body: string | Uint8Array, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> =>
    fetch(ep.url + path, { method: 'POST', body, headers: { 'x-edgefabric-client': 'test', ...headers } })

  t.test('JSON post reaches the upstream function', async t => {
    const res = await post('/v1/upstream', JSON.stringify({ group: 'devices', resource: 'ns/dev/d1', operation: 'update', content: { temp: 21.5 }, priority: 'high' }))
    t.equal(res.status, 202)
    const body = await res.json() as { id: string }
    const env = received.at(-1)
    t.equal(env?.header.id, body.id)
    t.equal(env?.router.source, 'servicebus')
    t.equal(env?.router.group, 'devices')
    t.equal(env?.header.priority, 'high')
    t.same(env?.content, { temp: 21.5 })
  })

  t.test('raw post carries binary content', async t => {
    const bytes = new Uint8Array([0, 1, 2, 250, 255])
    const res = await post('/v1/upstream/raw?group=logs&resource=ns%2Flog%2Fa&operation=upload', bytes, { 'content-type': 'application/octet-stream' })
    t.equal(res.status, 202)
    const env = received.at(-1)
    t.equal(env?.router.resource, 'ns/log/a')
    t.ok(env?.content instanceof Uint8Array)
    t.same([...(env?.content as Uint8Array)], [...bytes])
    const missing = await post('/v1/upstream/raw?group=logs', bytes, { 'content-type': 'application/octet-stream' })
    t.equal(missing.status, 400)
    t.match(await missing.json(), { code: 'EF_BAD_FIELD' })
  })

  t.test('bad input', async t => {
    const badJson = await post('/v1/upstream', '{"group":')
    t.equal(badJson.status, 400)
    t.match(await badJson.json(), { code: 'EF_BAD_JSON', message: String })
    const badField = await post('/v1/upstream', JSON.stringify({ group: 'g', resource: '', operation: 'x' }))
    t.equal(badField.status, 400)
    t.match(await badField.json(), { code: 'EF_BAD_FIELD' })
    const tooLarge = await post('/v1/upstream', JSON.stringify({ group: 'g', resource: 'r', operation: 'o', content: 'x'.repeat(2000) }))
    t.equal(tooLarge.status, 413)
    t.match(await tooLarge.json(), { code: 'EF_PAYLOAD_TOO_LARGE' })
    // chunked upload (no content-length) is bounded while reading
    const chunked = await new Promise<number>((resolve, reject) => {
      const r = http.request(ep.url + '/v1/upstream', { method: 'POST', headers: { 'content-type': 'application/json', 'x-edgefabric-client': 'test' } }, res => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      r.on('error', reject)
      r.write('x'.repeat(800))
      setTimeout(() => r.end('y'.repeat(800)), 20)
    })
    t.equal(chunked, 413)
    const media = await post('/v1/upstream', '{}', { 'content-type': 'text/plain' })
    t.equal(media.status, 415)
    await media.body?.cancel()
    const notFound = await post('/v2/x', '{}')
    t.equal(notFound.status, 404)
    await notFound.body?.cancel()
    const get = await fetch(ep.url + '/v1/upstream')
    t.equal(get.status, 405)
    t.equal(get.headers.get('allow'), 'POST')
    await get.body?.cancel()
  })

  t.test('upstream rejection -> 503 with its code', async t => {
    refuse = new EdgeFabricError('EF_OUTBOX_FULL', 'outbox full')
    const res = await post('/v1/upstream', JSON.stringify({ group: 'g', resource: 'r', operation: 'o' }))
    t.equal(res.status, 503)
    t.match(await res.json(), { code: 'EF_OUTBOX_FULL' })
    refuse = new Error('plain')
    const res2 = await post('/v1/upstream', JSON.stringify({ group: 'g', resource: 'r', operation: 'o' }))
    t.equal(res2.status, 503)
    t.match(await res2.json(), { code: 'EF_UPSTREAM_UNAVAILABLE' })
    refuse = undefined
  })

  t.test('malformed HTTP gets a 400 from clientError', async t => {
    const net = await import('node:net')
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(ep.port, '127.0.0.1', () => sock.write('NOT HTTP\r\n\r\n'))
      let data = ''
      sock.on('data', d => { data += d.toString() })
      sock.on('end', () => resolve(data))
      sock.on('error', reject)
    })
    t.match(reply, /^HTTP\/1\.1 400/)
  })
})

t.test('upstream endpoint with a bearer token; close() ends keep-alive sockets', async t => {
  const received: Envelope[] = []
  const bus = new ModuleBus({ upstream: env => { received.push(env) } })
  t.teardown(() => bus.close())
  const ep = await startUpstreamEndpoint({ bus, token: 's3cret' })
  const body = JSON.stringify({ group: 'g', resource: 'r', operation: 'o', content: [1, 2] })
  const agent = new http.Agent({ keepAlive: true })
  const req = (auth?: string): Promise<{ status: number, body: string }> => new Promise((resolve, reject) => {
    const r = http.request(ep.url + '/v1/upstream', {
      method: 'POST', agent, headers: { 'content-type': 'application/json', ...(auth !== undefined ? { authorization: auth } : {}) }
    }, res => {
      let b = ''
      res.on('data', d => { b += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }))
    })
    r.on('error', reject)
    r.end(body)
  })
  t.equal((await req()).status, 401)
  t.equal((await req('Bearer wrong')).status, 401)
  const ok = await req('Bearer s3cret')
  t.equal(ok.status, 202)
  t.same(received[0]?.content, [1, 2])
  t.equal(received.length, 1)
  t.ok(Object.keys(agent.freeSockets).length > 0, 'a keep-alive socket is open')
  const closed = await Promise.race([ep.close().then(() => 'closed'), new Promise(resolve => setTimeout(() => resolve('hung'), 2000))])
  t.equal(closed, 'closed')
  agent.destroy()
  await t.rejects(startUpstreamEndpoint({ bus, host: '0.0.0.0' }), { code: 'EF_INVALID_OPTION', option: 'host' })
})
