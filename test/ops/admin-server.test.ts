import t from 'tap'
import { Agent, request } from 'node:http'
import { Writable } from 'node:stream'
import { createHash } from 'node:crypto'
import { createHubMetrics, Registry } from '../../src/ops/metrics.js'
import { isLoopbackHost, startAdminServer } from '../../src/ops/admin-server.js'
import { createLogger } from '../../src/ops/logger.js'
import { renderStatusHtml } from '../../src/ops/status-page.js'
import { isEdgeFabricError } from '../../src/errors.js'

interface Res { status: number, headers: Record<string, string | string[] | undefined>, body: string }

function get (url: string, opts: { method?: string, agent?: Agent } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', agent: opts.agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('routes', async t => {
  const metrics = createHubMetrics(new Registry())
  metrics.connectedNodes.set(2)
  let ready = false
  const srv = await startAdminServer({
    registry: metrics.registry,
    title: 'edgefabric hub <test>',
    health: () => ({ ok: true }),
    ready: () => ready ? { ok: true } : { ok: false, detail: { reason: 'no listener yet' } },
    status: () => ({
      nodeCount: 2,
      nodes: [{ id: 'edge-1', label: '<script>alert(1)</script>', rttMs: 1.23456 }, { id: 'edge-2', transport: 'quic' }],
      rates: { upPerSec: 10.5, downPerSec: 3 }
    })
  })
  t.teardown(() => srv.close())
  t.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/)

  const m = await get(srv.url + '/metrics')
  t.equal(m.status, 200)
  t.equal(m.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
  t.match(m.body, /# HELP edgefabric_hub_connected_nodes /)
  t.match(m.body, /^edgefabric_hub_connected_nodes 2$/m)

  const h = await get(srv.url + '/healthz')
  t.equal(h.status, 200)
  t.same(JSON.parse(h.body), { status: 'ok' })

  const r1 = await get(srv.url + '/readyz')
  t.equal(r1.status, 503)
  t.same(JSON.parse(r1.body), { status: 'fail', detail: { reason: 'no listener yet' } })
  ready = true
  const r2 = await get(srv.url + '/readyz?verbose=1')
  t.equal(r2.status, 200)

  const s = await get(srv.url + '/status')
  t.equal(s.status, 200)
  t.match(s.headers['content-type'], /^application\/json/)
  t.equal(JSON.parse(s.body).nodes[0].id, 'edge-1')

  const page = await get(srv.url + '/')
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], /default-src 'none'/)
  t.match(page.body, '<title>edgefabric hub &lt;test&gt;</title>')
  t.match(page.body, '&lt;script&gt;alert(1)&lt;/script&gt;', 'status values escaped on the server-rendered paint')
  t.notMatch(page.body, '<script>alert(1)', 'no raw script from status values')
  t.match(page.body, '<td>edge-2</td>')
  t.match(page.body, '1.235', 'numbers rounded')
  t.match(page.body, "fetch('status'", 'page refreshes from /status')
  t.equal((page.body.match(/<script>/g) ?? []).length, 1, 'exactly one (our own) script element')
  const script = page.body.slice(page.body.indexOf('<script>') + 8, page.body.indexOf('</script>'))
  t.doesNotThrow(() => new Function(script), 'inline script parses')
  const hash = createHash('sha256').update(script).digest('base64')
  t.match(page.headers['content-security-policy'], `script-src 'sha256-${hash}'`, 'CSP allows exactly the inline script')

  t.equal((await get(srv.url + '/nope')).status, 404)
  const post = await get(srv.url + '/metrics', { method: 'POST' })
  t.equal(post.status, 405)
  t.equal(post.headers.allow, 'GET, HEAD')
  const head = await get(srv.url + '/healthz', { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '')
})

t.test('the renderer embedded in the page escapes too and behaves the same client-side', async t => {
  // The page runs renderStatusHtml's own source; evaluate that source the way a browser would.
  const render = new Function(`return (${renderStatusHtml.toString()})`)() as (s: unknown) => string
  const html = render({ nodes: [{ id: '"><img src=x onerror=alert(1)>' }], up: true })
  t.notMatch(html, '<img')
  t.match(html, '&quot;&gt;&lt;img')
  t.match(html, '<th>up</th><td>true</td>')
  t.equal(render([1, 2]), renderStatusHtml([1, 2]))
  const many = render({ nodes: Array.from({ length: 600 }, (_, i) => ({ id: i })) })
  t.match(many, '100 more not shown')
})

t.test('failing callbacks: thrown health, hanging ready, unserializable status', async t => {
  const srv = await startAdminServer({
    registry: new Registry(),
    health: () => { throw new Error('db gone') },
    ready: () => new Promise(() => {}),
    status: () => ({ big: 1n }),
    callbackTimeoutMs: 50
  })
  t.teardown(() => srv.close())
  const h = await get(srv.url + '/healthz')
  t.equal(h.status, 503)
  t.same(JSON.parse(h.body), { status: 'fail', detail: 'db gone' })
  const r = await get(srv.url + '/readyz')
  t.equal(r.status, 503)
  t.match(JSON.parse(r.body).detail, /within 50 ms/)
  const s = await get(srv.url + '/status')
  t.equal(s.status, 500)
  const page = await get(srv.url + '/')
  t.equal(page.status, 200)
  t.match(page.body, 'status unavailable')
})

t.test('close() returns promptly with an open keep-alive connection, and is idempotent', async t => {
  const srv = await startAdminServer({ registry: new Registry() })
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  t.equal((await get(srv.url + '/healthz', { agent })).status, 200)
  t.equal(agent.freeSockets[Object.keys(agent.freeSockets)[0] ?? '']?.length, 1, 'socket kept alive')
  const t0 = Date.now()
  await Promise.all([srv.close(), srv.close()])
  t.ok(Date.now() - t0 < 1000, `closed in ${Date.now() - t0} ms`)
  await t.rejects(get(srv.url + '/healthz'))
})

t.test('loopback detection; bad options and busy ports are typed errors', async t => {
  t.ok(isLoopbackHost('127.0.0.1'))
  t.ok(isLoopbackHost('::1'))
  t.ok(isLoopbackHost('localhost'))
  t.notOk(isLoopbackHost('0.0.0.0'))
  t.notOk(isLoopbackHost('10.1.2.3'))

  // (Binding 0.0.0.0 for real is not done here: tests only open sockets on 127.0.0.1.)
  const lines: string[] = []
  const logger = createLogger({ level: 'info', destination: new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } }) })
  const srv = await startAdminServer({ registry: new Registry(), logger })
  await srv.close()
  t.match(lines.join(''), /"component":"admin"/)
  t.notMatch(lines.join(''), /non-loopback/)

  await t.rejects(startAdminServer({ registry: new Registry(), port: 70000 }), { code: 'EF_INVALID_OPTION' })
  const a = await startAdminServer({ registry: new Registry() })
  t.teardown(() => a.close())
  try {
    await startAdminServer({ registry: new Registry(), port: a.port })
    t.fail('expected EADDRINUSE')
  } catch (err) {
    t.ok(isEdgeFabricError(err, 'EF_LISTEN_FAILED'), String(err))
  }
})
