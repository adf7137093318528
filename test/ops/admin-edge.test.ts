/**
 * The edge's console API on a real edge (issue 15): the embedded broker's
 * MQTT clients (paged, bounded), warnings (anonymous MQTT allowed, the join
 * token about to expire before the first join), and dead-letter actions on the
 * upstream outbox (requeue, purge: admin only, audited in the log). The edge
 * is started against a hub address nothing listens on, so messages stay in its
 * outbox and a superseded version becomes a dead letter.
 */
import { createServer, type AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import mqtt, { type MqttClient } from 'mqtt'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { newMessage } from '../../src/codec/envelope.js'

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise(resolve => s.close(resolve))
  return port
}

t.test('edge console API: MQTT clients, warnings, dead-letter actions', async t => {
  const dir = t.testdir({})
  // A hub only to sign a join token (1 h left: the warning shows until the first join); then it goes away.
  const signer = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub' })
  const token = signer.createToken('edge-1', 1800)
  await signer.close(100)
  const logLines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'info' }, new Writable({ write (c: Buffer, _e, cb) { for (const l of c.toString().split('\n')) if (l !== '') logLines.push(JSON.parse(l)); cb() } }))
  const edge = await EdgeNode.start({
    hub: `ws://127.0.0.1:${await freePort()}`, nodeId: 'edge-1', token, dataDir: dir + '/edge', logger, backoff: { baseMs: 1000, capMs: 5000 },
    admin: { host: '127.0.0.1', port: 0 },
    devices: { mqtt: { host: '127.0.0.1', port: 0 }, allowAnonymous: true, credentials: [{ username: 'm1', password: 'p1', devices: '*', role: 'mapper' }] }
  })
  t.teardown(() => edge.close())
  const admin = edge.adminUrl as string
  const adminToken = edge.adminToken as string
  const get = async (path: string): Promise<{ status: number, body: any }> => {
    const r = await fetch(admin + path)
    return { status: r.status, body: await r.json() }
  }
  const post = async (path: string, body: unknown, auth = true): Promise<{ status: number, body: any }> => {
    const r = await fetch(admin + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${adminToken}` } : {}) }, body: JSON.stringify(body) })
    return { status: r.status, body: await r.json() }
  }

  // Warnings
  const info = await get('/api/info')
  t.equal(info.status, 200)
  t.match(info.body.warnings, [/anonymous access is on/], 'anonymous MQTT allowed')
  t.ok(info.body.warnings.some((w: string) => /the join token expires soon/.test(w)), 'join token near expiry before the first join')

  // MQTT clients: 12 connected (one anonymous over loopback), paged
  const clients: MqttClient[] = []
  t.teardown(async () => { await Promise.all(clients.map(c => c.endAsync(true))) })
  const url = edge.devices?.brokerUrl as string
  for (let i = 0; i < 11; i++) clients.push(await mqtt.connectAsync(url, { clientId: `mapper-${String(i).padStart(2, '0')}`, username: 'm1', password: 'p1', reconnectPeriod: 0 }))
  clients.push(await mqtt.connectAsync(url, { clientId: 'anon-1', reconnectPeriod: 0 }))
  await clients[0]?.subscribeAsync('$hw/events/device/default/dev1/twin/update/delta', { qos: 1 })
  let r = await get('/api/mqtt-clients?limit=5')
  t.equal(r.status, 200)
  t.equal(r.body.total, 12)
  t.equal(r.body.items.length, 5)
  t.match(r.body.items[0], { clientId: 'mapper-00', username: 'm1', kind: 'mapper', listener: 'tcp', subscriptions: 1, persistent: false, remoteAddress: /127\.0\.0\.1/, messagesIn: 0 })
  t.ok(r.body.items[0].connectedAt > 0)
  r = await get('/api/mqtt-clients?offset=10&limit=5')
  t.same(r.body.items.map((c: any) => c.clientId), ['mapper-10', 'anon-1'], 'last page')
  t.match(r.body.items[1], { username: 'anonymous' })
  r = await get('/api/mqtt-clients?q=anon')
  t.same(r.body.items.map((c: any) => c.clientId), ['anon-1'], 'search')
  t.equal((await get('/api/mqtt-clients?limit=100000')).status, 400, 'page size bounded')
  r = await get('/api/edge')
  t.equal(r.body.mqttClients.total, 12, 'the edge view carries the count and the first page')

  // Dead letters of the upstream outbox: v1 superseded by v2 while the hub is unreachable.
  for (const v of ['1', '2']) await edge.sendUpstream(newMessage({ source: 'edge', group: 'g', operation: 'update', resource: 'cfg', resourceVersion: v, content: { v } }))
  await edge.sendUpstream(newMessage({ source: 'edge', group: 'g', operation: 'update', resource: 'other', content: {} }))
  r = await get('/api/dead-letters')
  t.equal(r.body.items.length, 1)
  const dead = r.body.items[0]
  t.match(dead, { peer: 'cloud', code: 'EF_SUPERSEDED', key: 'cfg', requeueable: true })
  t.equal((await get(`/api/dead-letters/cloud/${dead.seq as number}`)).body.seq, dead.seq, 'show one')
  t.equal((await post(`/api/dead-letters/cloud/${dead.seq as number}/requeue`, {}, false)).status, 403, 'actions need the admin token, also on loopback')
  const before = (await get('/api/edge')).body.outbox.count
  r = await post(`/api/dead-letters/cloud/${dead.seq as number}/requeue`, {})
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.equal((await get('/api/edge')).body.outbox.count, before, 'requeued v1 supersedes v2 in the outbox (same resource): still 2 waiting')
  r = await get('/api/dead-letters')
  t.same(r.body.items.map((d: any) => d.seq).includes(dead.seq), false, 'the requeued dead letter is gone')
  t.equal((await post('/api/dead-letters/cloud/999/requeue', {})).status, 404)
  r = await post('/api/dead-letters/purge', { node: 'cloud' })
  t.equal(r.status, 200)
  t.equal((await get('/api/dead-letters')).body.items.length, 0, 'purged')
  t.equal((await post('/api/edge', {})).status, 405, 'no other actions')
  const audits = logLines.filter(l => l.audit === true)
  t.same(audits.map(l => l.action), ['dead-letter-requeue', 'dead-letter-purge'], 'each action audited')
  t.equal(audits[0]?.principal, 'admin-token')
})
