/**
 * The embedded broker's fast paths for twin updates (issue 16): corked MQTT
 * writes leave as one socket write (BrokerConn), and the engine skips the
 * result/document publishes nobody could receive (SubscriberIndex) without
 * losing a message a client — online, offline with a persistent session, or
 * restored from LMDB after a restart — subscribed to.
 */
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { BrokerConn } from '../../src/device/edge/broker-conn.js'
import { SubscriberIndex } from '../../src/device/edge/broker-subscribers.js'
import { Mapper, sendGrant, sendSnapshot, snapshot, startEdge, startHub, T, until, Upstream } from './edge-helpers.js'

async function socketPair (t: Test): Promise<{ server: Socket, client: Socket }> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const accepted = once(srv, 'connection') as Promise<[Socket]>
  const client = connect((srv.address() as AddressInfo).port, '127.0.0.1')
  const [server] = await accepted
  t.teardown(async () => { client.destroy(); server.destroy(); await new Promise(resolve => srv.close(resolve)) })
  return { server, client }
}

t.test('regression: PUBACK chunks written as one syscall each (Duplex.from had no _writev) — corked chunks reach the socket as one writev', async t => {
  const { server, client } = await socketPair(t)
  const calls: string[] = []
  const s = server as unknown as { _write: (...a: unknown[]) => unknown, _writev: (...a: unknown[]) => unknown }
  const w = s._write.bind(server)
  const wv = s._writev.bind(server)
  s._write = (...a: unknown[]) => { calls.push('write'); return w(...a) }
  s._writev = (...a: unknown[]) => { calls.push(`writev:${(a[0] as unknown[]).length}`); return wv(...a) }
  const conn = new BrokerConn(server, server)
  conn.on('error', () => {})
  // as mqtt-packet writes a packet: cork, several chunks, uncork on the next tick
  conn.cork()
  conn.write(Buffer.from([0x40, 0x02]))
  conn.write(Buffer.from([0x00, 0x01]))
  conn.write(Buffer.from([0x40, 0x02, 0x00, 0x02]))
  process.nextTick(() => conn.uncork())
  const got: Buffer[] = []
  client.on('data', (b: Buffer) => got.push(b))
  await until(() => Buffer.concat(got).length >= 8, 5000, 'bytes at the peer')
  t.same([...Buffer.concat(got)], [0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02], 'bytes in order')
  t.same(calls, ['writev:3'], `one writev for the corked chunks (calls: ${calls.join(', ')})`)

  // reads pass through; the peer closing ends the connection aedes sees
  const read: Buffer[] = []
  conn.on('data', (b: Buffer) => read.push(b))
  client.write(Buffer.from('abc'))
  await until(() => Buffer.concat(read).toString() === 'abc', 5000, 'bytes read through')
  const closed = once(conn, 'close')
  client.end()
  await closed
  t.pass('closed when the peer closed')
})

t.test('SubscriberIndex: exact and wildcard filters, $ topics, bounds', async t => {
  const ix = new SubscriberIndex(3, 2)
  t.notOk(ix.mayMatch('$hw/events/device/default/d1/twin/update/document'), 'nothing subscribed: nobody')
  ix.add('$hw/events/device/default/d1/twin/update/result')
  t.ok(ix.mayMatch('$hw/events/device/default/d1/twin/update/result'), 'exact filter')
  t.notOk(ix.mayMatch('$hw/events/device/default/d2/twin/update/result'), 'exact filter, other device')
  ix.add('$hw/events/device/default/+/twin/update/document')
  t.ok(ix.mayMatch('$hw/events/device/default/d9/twin/update/document'), '+ matches one level')
  t.notOk(ix.mayMatch('$hw/events/device/default/d9/x/twin/update/document'), '+ is one level only')
  t.notOk(ix.mayMatch('$hw/events/device/default/d9/state/update/result'), 'answer cached: nobody')
  ix.add('#')
  t.ok(ix.mayMatch('$hw/events/device/default/d9/state/update/result'), '# matches $ topics too (as aedes delivers them)')
  const b = new SubscriberIndex(10, 10)
  b.add('a/#')
  t.ok(b.mayMatch('a'), 'a/# matches a (qlobber does)')
  t.ok(b.mayMatch('a/b/c'), 'a/# matches deeper')
  t.notOk(b.mayMatch('b'), 'a/# not b')
  const small = new SubscriberIndex(1, 1)
  small.add('x'); small.add('y')
  t.ok(small.overflowed, 'past maxFilters it stops indexing')
  t.ok(small.mayMatch('anything'), 'and answers maybe for every topic')
})

t.test('documents reach a subscriber that came after updates nobody listened to, and an offline persistent session across an edge restart', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const dataDir = t.testdir({}) + '/edge'
  const devices = { mqtt: { port: 0 }, credentials: [{ username: 'admin', password: 'pw', devices: '*' as const }] }
  let edge = await startEdge(t, hub, 'edge-1', dataDir, { devices })
  await edge.waitConnected(10_000)
  await sendGrant(hub, 'edge-1', 'm1', 'mapper-user', 'mapper-secret', ['default/dev1'])
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1 }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 10_000, 'snapshot at the edge')
  const report = async (m: Mapper, v: string): Promise<void> => {
    await m.client.publishAsync(T('dev1/twin/update'), JSON.stringify({ twin: { temperature: { actual: { value: v } } } }), { qos: 1 })
  }
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'mapper-user', password: 'mapper-secret', clientId: 'mapper-1' })
  await report(m, '1') // PUBACK: stored; nobody subscribed to results or documents yet
  t.equal(m.messages.length, 0, 'nothing subscribed, nothing received')

  const watcher = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', clientId: 'watcher' })
  await watcher.client.subscribeAsync('$hw/events/device/default/+/twin/update/document', { qos: 1 })
  await m.client.subscribeAsync(T('dev1/twin/update/result'), { qos: 1 })
  const answer = await m.request(T('dev1/twin/update'), { twin: { temperature: { actual: { value: '2' } } } })
  t.equal(answer.twin.temperature.actual.value, '2', 'result after subscribing (exact filter)')
  const doc = await watcher.next(T('dev1/twin/update/document'), j => j.twin?.temperature?.current?.actual?.value === '2')
  t.ok(doc, 'document after subscribing (wildcard filter)')

  // a persistent session subscribes, goes away; the edge restarts (the index is rebuilt from LMDB)
  const p = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', clientId: 'keeper', clean: false })
  await p.client.subscribeAsync(T('dev1/twin/update/document'), { qos: 1 })
  await p.client.endAsync()
  await m.client.endAsync(); await watcher.client.endAsync()
  await edge.close()
  edge = await startEdge(t, hub, 'edge-1', dataDir, { devices })
  const m2 = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'mapper-user', password: 'mapper-secret', clientId: 'mapper-1' })
  await report(m2, '3') // acknowledged: the document is queued for the offline session by now
  const back = new Mapper(edge.devices?.brokerUrl as string, { username: 'admin', password: 'pw', clientId: 'keeper', clean: false })
  t.teardown(() => back.client.endAsync(true))
  const queued = await back.next(T('dev1/twin/update/document'), j => j.twin?.temperature?.current?.actual?.value === '3')
  t.ok(queued, 'document queued for the offline persistent session restored from LMDB')
})

t.test('regression: a state update nobody subscribed the result of was PUBACKed but never stored or sent (reply?.(await …) skipped the call)', async t => {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge')
  await edge.waitConnected(10_000)
  await sendGrant(hub, 'edge-1', 'm1', 'mapper-user', 'mapper-secret', ['default/dev1'])
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1 }))
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 10_000, 'snapshot at the edge')
  const m = await Mapper.connect(t, edge.devices?.brokerUrl as string, { username: 'mapper-user', password: 'mapper-secret', clientId: 'mapper-1' })
  await m.client.publishAsync(T('dev1/state/update'), JSON.stringify({ event_id: 's1', state: 'online' }), { qos: 1 })
  t.equal(edge.devices?.getTwin('default', 'dev1')?.state, 'online', 'stored at the edge by the time of the PUBACK')
  await up.waitFor(() => up.of('state', 'state/default/dev1').length === 1)
  t.equal((up.of('state', 'state/default/dev1')[0]?.content as { state: string }).state, 'online', 'state report at the cloud')
})
