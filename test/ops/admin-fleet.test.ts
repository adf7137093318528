/**
 * The hub's fleet API on a real hub (ws on loopback, LMDB): paged and
 * filtered node list, node detail, dead letters (list, show, requeue, purge —
 * admin only, audited in the log), server-sent events.
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { newMessage } from '../../src/codec/envelope.js'

t.test('fleet API', async t => {
  const dir = t.testdir({})
  const logLines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'info' }, new Writable({ write (c: Buffer, _e, cb) { for (const l of c.toString().split('\n')) if (l !== '') logLines.push(JSON.parse(l)); cb() } }))
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: dir + '/hub', logger })
  t.teardown(() => hub.close(200))
  const edges: EdgeNode[] = []
  t.teardown(async () => { for (const e of edges) await e.close() })
  for (const [id, zone] of [['edge-a', 'north'], ['edge-b', 'south'], ['edge-c', 'north']] as const) {
    const e = await EdgeNode.start({ hub: hub.urls[0] as string, nodeId: id, token: hub.createToken(id), dataDir: `${dir}/${id}`, labels: { zone }, admin: false })
    edges.push(e)
    await e.waitConnected(10_000)
  }
  await edges[2]?.close() // edge-c goes offline
  edges.pop()
  for (let i = 0; i < 30; i++) await hub.send('edge-c', newMessage({ source: 'cloud', group: 'g', operation: 'update', resource: `r/${i}`, content: i }), { delivery: 'reliable' })
  for (let i = 0; i < 5; i++) await hub.send('never-seen', newMessage({ source: 'cloud', group: 'g', operation: 'update', resource: `r/${i}`, content: i }), { delivery: 'reliable' })
  // Two superseded messages → two dead letters for edge-c.
  for (const v of ['1', '2', '3']) await hub.send('edge-c', newMessage({ source: 'cloud', group: 'g', operation: 'update', resource: 'cfg', resourceVersion: v, content: { v } }), { delivery: 'reliable' })

  const admin = hub.adminUrl as string
  const token = hub.adminToken as string
  const get = async (path: string, auth = false): Promise<{ status: number, body: any }> => {
    const r = await fetch(admin + path, auth ? { headers: { authorization: `Bearer ${token}` } } : {})
    return { status: r.status, body: await r.json() }
  }
  const post = async (path: string, body: unknown, auth = true): Promise<{ status: number, body: any }> => {
    const r = await fetch(admin + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })
    return { status: r.status, body: await r.json() }
  }

  let r = await get('/api/nodes')
  t.equal(r.status, 200, 'anonymous loopback reader may list')
  t.same(r.body.items.map((n: any) => n.nodeId), ['edge-a', 'edge-b', 'edge-c', 'never-seen'], 'sorted by id; a node that never connected but has a queue is listed')
  t.equal(r.body.total, 4)
  r = await get('/api/nodes?status=disconnected&sort=queue')
  t.same(r.body.items.map((n: any) => [n.nodeId, n.queue]), [['edge-c', 31], ['never-seen', 5]], 'queue depths, sorted by depth')
  r = await get('/api/nodes?label=zone%3Dnorth')
  t.same(r.body.items.map((n: any) => n.nodeId), ['edge-a', 'edge-c'])
  r = await get('/api/nodes?minQueue=10')
  t.same(r.body.items.map((n: any) => n.nodeId), ['edge-c'])
  r = await get('/api/nodes?transport=ws&status=connected&q=B')
  t.same(r.body.items.map((n: any) => n.nodeId), ['edge-b'], 'search is case-insensitive')
  r = await get('/api/nodes?limit=2&offset=2')
  t.same([r.body.total, r.body.items.map((n: any) => n.nodeId)], [4, ['edge-c', 'never-seen']], 'paging')
  t.equal((await get('/api/nodes?limit=100000')).status, 400, 'page size is bounded')
  t.equal((await get('/api/nodes?sort=nope')).status, 400)

  r = await get('/api/nodes/edge-c')
  t.equal(r.body.node.status, 'disconnected')
  t.equal(r.body.outbox.count, 31)
  t.equal(r.body.outbox.head.length, 20, 'outbox head (first 20)')
  t.ok(r.body.outbox.oldestAgeMs >= 0)
  t.same(r.body.deadLetters.map((d: any) => d.code), ['EF_SUPERSEDED', 'EF_SUPERSEDED'])
  t.ok(r.body.reconnects.some((e: any) => e.type === 'disconnected'), 'reconnect history')
  t.equal((await get('/api/nodes/nobody')).status, 404)

  r = await get('/api/info')
  t.equal(r.body.summary.queuedForDisconnected, 36, 'the newcomer\'s question: 36 messages wait for disconnected nodes')
  t.same(r.body.summary.deadLettersByCode, { EF_SUPERSEDED: 2 })

  // Dead letters: list, show, requeue (admin only, audited), purge.
  r = await get('/api/dead-letters?node=edge-c')
  const [newest, older] = r.body.items as Array<{ seq: number, requeueable: boolean }>
  t.ok(newest?.requeueable, 'the message was kept')
  t.equal((await get(`/api/dead-letters/edge-c/${newest?.seq}`)).body.code, 'EF_SUPERSEDED')
  t.equal((await get('/api/dead-letters/edge-c/999999')).status, 404)
  t.equal((await post(`/api/dead-letters/edge-c/${newest?.seq}/requeue`, {}, false)).status, 403, 'anonymous cannot requeue')
  r = await post(`/api/dead-letters/edge-c/${newest?.seq}/requeue`, {})
  t.equal(r.status, 409, 'a superseded version cannot go back behind the newer pending one')
  t.equal(r.body.code, 'EF_REQUEUE_FAILED')
  r = await post('/api/dead-letters/purge', { node: 'edge-c', seqs: [older?.seq] })
  t.same([r.status, r.body.purged], [200, 1])
  // A requeue that works: a message dropped by TTL goes back into the outbox.
  await hub.send('edge-c', newMessage({ source: 'cloud', group: 'g', operation: 'update', resource: 'short', content: 1, ttl: 1 }), { delivery: 'reliable' })
  let ttl: { seq: number } | undefined
  for (let i = 0; i < 400 && ttl === undefined; i++) {
    await new Promise(resolve => setTimeout(resolve, 25))
    ttl = (await get('/api/dead-letters?node=edge-c')).body.items.find((d: any) => d.code === 'EF_TTL_EXPIRED')
  }
  t.ok(ttl, 'TTL expiry recorded (sender timer, 5 s)')
  const before = hub.outboxDepth('edge-c')
  r = await post(`/api/dead-letters/edge-c/${ttl?.seq}/requeue`, {})
  t.equal(r.status, 200)
  t.equal(hub.outboxDepth('edge-c'), before + 1, 'back in the outbox')
  t.notOk((await get('/api/dead-letters?node=edge-c')).body.items.some((d: any) => d.seq === ttl?.seq), 'and no longer a dead letter')
  const audits = logLines.filter(l => l.audit === true)
  t.same(audits.map(l => l.action), ['dead-letter-purge', 'dead-letter-requeue'], 'each action audited')
  t.equal(audits[0]?.principal, 'admin-token')

  // Server-sent events: a summary at once, node events as they happen.
  const ac = new AbortController()
  const res = await fetch(admin + '/api/events', { signal: ac.signal, headers: { accept: 'text/event-stream' } })
  t.match(res.headers.get('content-type'), /text\/event-stream/)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let text = ''
  const readUntil = async (re: RegExp): Promise<void> => {
    while (!re.test(text)) { const { value, done } = await reader.read(); if (done === true) return; text += new TextDecoder().decode(value) }
  }
  await readUntil(/event: summary\ndata: .*"nodes":3/)
  t.pass('summary event')
  await edges[1]?.close()
  edges.pop()
  await readUntil(/event: node\ndata: \{"type":"disconnected","nodeId":"edge-b"/)
  t.pass('node event when edge-b leaves')
  ac.abort()
})
