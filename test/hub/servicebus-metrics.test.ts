/**
 * ServiceBus through the hub (cloud calls an app on the edge's loopback; an
 * edge app posts upstream over local HTTP) and the admin endpoints.
 */
import { createServer, request } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'

function httpGet (url: string, init: { method?: string, body?: string, headers?: Record<string, string> } = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: init.headers }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end(init.body)
  })
}

t.test('ServiceBus both ways and admin endpoints', async t => {
  const app = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      res.setHeader('x-app', 'thermo')
      res.end(JSON.stringify({ method: req.method, url: req.url, body, auth: req.headers['x-token'] }))
    })
  })
  app.listen(0, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => { app.close() })
  const appPort = (app.address() as AddressInfo).port

  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir({}) + '/hub' })
  t.teardown(() => hub.close(200))
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: t.testdir({}) + '/edge',
    serviceBus: { allowedPorts: [appPort] }, upstreamEndpoint: { port: 0 }
  })
  t.teardown(() => edge.close())
  await edge.waitConnected()

  const res = await hub.callEdgeHttp('edge-1', { method: 'POST', path: '/v1/fan?speed=3', port: appPort, headers: { 'x-token': 'abc' }, body: 'hello' }, { timeoutMs: 5000 })
  t.equal(res.status, 200)
  t.equal(res.headers['x-app'], 'thermo')
  t.same(JSON.parse(Buffer.from(res.body).toString()), { method: 'POST', url: '/v1/fan?speed=3', body: 'hello', auth: 'abc' })

  const denied = await hub.callEdgeHttp('edge-1', { path: '/', port: 1 }).catch((e: unknown) => e)
  t.match(denied, { code: 'EF_REMOTE_ERROR', remoteCode: 'EF_SERVICEBUS' }, 'a port the edge did not allow is refused')

  // edge app → local upstream endpoint → hub
  const upstream = once(hub, 'message')
  const posted = await httpGet(`${edge.upstreamUrl as string}/v1/upstream`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-edgefabric-client': 'test' },
    body: JSON.stringify({ group: 'telemetry', resource: 'default/device/t1', operation: 'upload', content: { celsius: 21.5 } })
  })
  t.equal(posted.status, 202)
  const [m] = await upstream as [{ nodeId: string, envelope: { content: unknown, router: { group: string } } }]
  t.equal(m.nodeId, 'edge-1')
  t.same(m.envelope.content, { celsius: 21.5 })

  // admin endpoints of hub and edge
  const metrics = await httpGet(`${hub.adminUrl as string}/metrics`)
  t.equal(metrics.status, 200)
  t.match(metrics.body, /edgefabric_hub_connected_nodes 1/)
  t.match(metrics.body, /edgefabric_hub_sessions_opened_total\{transport="ws"\} 1/)
  t.match(metrics.body, /edgefabric_hub_bytes_total\{direction="up",transport="ws"\} [1-9]/)
  t.equal((await httpGet(`${hub.adminUrl as string}/healthz`)).status, 200)
  t.equal((await httpGet(`${hub.adminUrl as string}/readyz`)).status, 200)
  const status = JSON.parse((await httpGet(`${hub.adminUrl as string}/status`)).body) as { nodes: Array<{ nodeId: string, status: string }> }
  t.same(status.nodes.map(n => [n.nodeId, n.status]), [['edge-1', 'connected']])
  const edgeMetrics = await httpGet(`${edge.adminUrl as string}/metrics`)
  t.match(edgeMetrics.body, /edgefabric_edge_connected 1/)
  t.equal((await httpGet(`${edge.adminUrl as string}/readyz`)).status, 200)
  await hub.close(200)
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal((await httpGet(`${edge.adminUrl as string}/readyz`)).status, 503, 'edge not ready while the hub is gone')
})
