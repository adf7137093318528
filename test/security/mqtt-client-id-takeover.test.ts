/**
 * Issue 13 item 2: MQTT client-id takeover. Before, any authenticated device
 * could CONNECT with another device's client id: the broker kicked the real
 * device off and, with clean=false, handed the attacker the victim's queued
 * messages. Now a client id is bound to the principal owning it (equal to its
 * device id or username, or prefixed by it plus `/` or `:`), a live id is not
 * handed to another principal, and a persistent session belongs to its owner.
 */
import t from 'tap'
import { once } from 'node:events'
import mqtt from 'mqtt'
import { Mapper, sendSnapshot, snapshot } from '../device/edge-helpers.js'
import { hashSecret } from '../../src/device/credentials.js'
import { edgeWithDevices } from './mqtt-helpers.js'

const delta = (name: string): string => `$hw/events/device/default/${name}/twin/update/delta`

async function refused (url: string, opts: mqtt.IClientOptions): Promise<{ code: number | undefined, messages: string[] }> {
  const messages: string[] = []
  const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
  c.on('message', topic => messages.push(topic))
  const [err] = await Promise.race([once(c as never, 'error'), once(c as never, 'connect').then(() => [undefined])]) as [(Error & { code?: number }) | undefined]
  await new Promise(resolve => setTimeout(resolve, 200)) // anything queued behind a CONNACK would arrive now
  await c.endAsync(true)
  return { code: err?.code, messages }
}

t.test('device B cannot take device A\'s client id or its persistent session', async t => {
  const { edge, hub, url, secrets } = await edgeWithDevices(t, ['a', 'b'])
  const A = { username: 'default/a', password: secrets.a }
  const B = { username: 'default/b', password: secrets.b }

  // A creates a persistent session and goes offline; a delta is queued for it.
  const a1 = await Mapper.connect(t, url, { ...A, clientId: 'default/a', clean: false })
  await a1.client.subscribeAsync(delta('a'), { qos: 1 })
  await a1.client.endAsync()
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 2, name: 'a', desired: { target: { value: 30, revision: 2 } }, credentials: [{ username: 'default/a', passwordHash: await hashSecret(secrets.a as string) }] }))
  await new Promise(resolve => setTimeout(resolve, 300))
  t.ok((edge.devices?.broker?.persistence.queued('default/a') ?? 0) > 0, 'a delta is queued for A\'s offline session')

  // The attack: B (authenticated) connects with A's client id, clean=false.
  const attack = await refused(url, { ...B, clientId: 'default/a', clean: false })
  t.equal(attack.code, 5, 'CONNACK 5 not authorized')
  t.same(attack.messages, [], 'B received none of A\'s queued messages')
  const prefixed = await refused(url, { ...B, clientId: 'default/a:evil', clean: true })
  t.equal(prefixed.code, 5, 'ids prefixed by A\'s id are A\'s too')

  // A gets its queued delta.
  const a2 = new Mapper(url, { ...A, clientId: 'default/a', clean: false })
  t.teardown(() => a2.client.endAsync(true))
  const d = await a2.next(delta('a'))
  t.same(d.delta, { target: '30' }, 'the victim gets its own queued delta')

  // Live takeover of an unreserved id: the holder stays connected.
  const live = await Mapper.connect(t, url, { ...A, clientId: 'sensor-gateway-7' })
  const kick = await refused(url, { ...B, clientId: 'sensor-gateway-7' })
  t.equal(kick.code, 5, 'an id in use by another principal is refused')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.ok(live.client.connected, 'the holder was not kicked off')

  // B's own ids work; the same principal may resume its own id (MQTT session takeover within a principal).
  await Mapper.connect(t, url, { ...B, clientId: 'default/b:probe' })
  const again = await Mapper.connect(t, url, { ...A, clientId: 'sensor-gateway-7' })
  t.ok(again.client.connected)
  t.match((await edge.registry.metrics()).split('\n').find(l => l.startsWith('edgefabric_edge_device_acl_denials_total{action="client-id"}')), / 3$/)
})

t.test('a persistent session keeps its owner across an edge restart', async t => {
  const { edge, hub, url, secrets, dir } = await edgeWithDevices(t, ['a', 'b'])
  const a = await Mapper.connect(t, url, { username: 'default/a', password: secrets.a, clientId: 'gw-1', clean: false })
  await a.client.subscribeAsync(delta('a'), { qos: 1 })
  await a.client.endAsync()
  await edge.close()
  const { startEdge } = await import('../device/edge-helpers.js')
  const edge2 = await startEdge(t, hub, 'edge-1', dir + '/edge')
  const url2 = edge2.devices?.brokerUrl as string
  t.equal(edge2.devices?.broker?.persistence.sessionOwners.get('gw-1')?.owner, 'default/a', 'owner record restored from the store')
  const attack = await refused(url2, { username: 'default/b', password: secrets.b, clientId: 'gw-1', clean: false })
  t.equal(attack.code, 5, 'B cannot resume A\'s session after the restart')
  const back = await Mapper.connect(t, url2, { username: 'default/a', password: secrets.a, clientId: 'gw-1', clean: false })
  t.ok(back.client.connected, 'A can')
})
