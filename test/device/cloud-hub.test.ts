/**
 * A real Hub (`devices: true`, LMDB in its data dir) and real EdgeNodes over
 * ws://127.0.0.1:0: snapshots reach the bound edge over the reliable lane
 * (also when it connects later), upstream TwinReports sent with
 * `edge.sendUpstream(env, {delivery: 'reliable'})` update the registry,
 * gaps make the hub ask the edge for a resync, re-binding moves the device,
 * and the registry survives a hub restart.
 */
import t, { type Test } from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { DEVICE_GROUP, twinResource, type DeviceRemoved, type DeviceSnapshot, type ResyncRequest, type TwinReport } from '../../src/device/protocol.js'
import type { DeviceChange } from '../../src/device/cloud/registry-types.js'
import { device, thermostat } from './cloud-helpers.js'

const fast = { backoff: { baseMs: 20, capMs: 200 }, admin: false as const }

async function until<T> (what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

async function startEdge (t: Test, hub: Hub, nodeId: string, got: Envelope[]): Promise<EdgeNode> {
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string,
    nodeId,
    token: hub.createToken(nodeId),
    dataDir: t.testdir() + '/' + nodeId,
    ...fast,
    onReliable: env => { if (env.router.group === DEVICE_GROUP) got.push(env) }
  })
  t.teardown(() => edge.close())
  return edge
}

function twin (r: Omit<TwinReport, 'namespace' | 'name'>, name = 't1'): Envelope {
  return newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', name), content: { namespace: 'default', name, ...r } })
}

t.test('snapshots reach the bound edge over the reliable lane; reliable reports update the registry', async t => {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/hub', admin: false, devices: true })
  t.teardown(() => hub.close(200))
  const reg = hub.devices
  if (reg === undefined) throw new Error('hub.devices missing')
  const appMessages: string[] = []
  hub.on('message', m => appMessages.push(m.envelope.router.group))

  await reg.upsertModel(thermostat as never)
  await reg.upsertDevice(device('t1', 'edge-1'))
  const set = await reg.setDesired('default', 't1', { target: 23.5 }) // while the node has never connected
  const got1: Envelope[] = []
  const edge1 = await startEdge(t, hub, 'edge-1', got1)
  const snapEnv = await until('the snapshot', () => got1.find(e => e.header.resourceVersion === String(set.revision)))
  const snap = snapEnv.content as DeviceSnapshot
  t.equal(snapEnv.router.resource, 'device/default/t1')
  t.equal(snap.desired.target?.value, 23.5, 'the newest desired value arrived')
  t.notOk(got1.some(e => e.header.resourceVersion !== undefined && Number(e.header.resourceVersion) < set.revision && e.router.resource === 'device/default/t1' && got1.indexOf(e) > got1.indexOf(snapEnv)), 'no older snapshot after the newer one')

  const watch = reg.watch({ name: 't1', types: ['reported', 'conflict'] })
  await edge1.sendUpstream(twin({ edgeSeq: 1, baseRevision: set.revision, reported: { temp: { value: 22.25, timestamp: 1234 } } }), { delivery: 'reliable' })
  const change = (await watch.next()).value as DeviceChange
  t.equal(change.type, 'reported')
  t.equal(change.nodeId, 'edge-1')
  const d = reg.getDevice('default', 't1')
  t.same(d?.reported.temp, { value: 22.25, timestamp: 1234 })
  t.equal(d?.syncedRevision, set.revision, 'in sync: the node reported holding the newest revision')
  t.notOk(appMessages.includes(DEVICE_GROUP), '$device messages go to the registry, not to the application stream')

  // an expected value set at the edge against the current base is accepted and comes back as a snapshot
  await edge1.sendUpstream(twin({ edgeSeq: 2, baseRevision: set.revision, reported: {}, expected: { target: { value: 19, timestamp: 2000 } } }), { delivery: 'reliable' })
  t.equal(((await watch.next()).value as DeviceChange).type, 'conflict')
  const merged = reg.getDevice('default', 't1')
  t.equal(merged?.desired.target?.value, 19)
  await until('the merged snapshot', () => got1.find(e => e.header.resourceVersion === String(merged?.revision)))

  // gap: edgeSeq 2 → 5; the hub asks this edge for a full resync
  await edge1.sendUpstream(twin({ edgeSeq: 5, baseRevision: merged?.revision ?? 0, reported: { temp: { value: 25, timestamp: 3000 } } }), { delivery: 'reliable' })
  const rq = await until('a resync request', () => got1.find(e => e.router.operation === 'query'))
  t.equal(rq.router.resource, 'device-resync/edge-1')
  t.same((rq.content as ResyncRequest).devices, [{ namespace: 'default', name: 't1' }])
  await watch.return?.()

  // re-bind to edge-2: edge-1 gets a removal, edge-2 a snapshot
  const got2: Envelope[] = []
  await startEdge(t, hub, 'edge-2', got2)
  const moved = await reg.upsertDevice(device('t1', 'edge-2'))
  const removal = await until('the removal', () => got1.find(e => e.router.operation === 'delete'))
  t.same(removal.content as DeviceRemoved, { namespace: 'default', name: 't1', revision: moved.revision, reason: 'rebound' })
  await until('the snapshot on edge-2', () => got2.find(e => e.header.resourceVersion === String(moved.revision)))

  // the old node can no longer report for it
  const errors: Error[] = []
  reg.on('error', e => errors.push(e))
  await edge1.sendUpstream(twin({ edgeSeq: 6, baseRevision: 0, reported: { temp: { value: -40, timestamp: 4000 } } }), { delivery: 'reliable' })
  await until('the refusal', () => errors.length > 0 ? errors : undefined)
  t.equal((errors[0] as { reason?: string }).reason, 'not_bound')
  t.equal(reg.getDevice('default', 't1')?.reported.temp?.value, 25)
  // the refusal is seen while the hub applies it; the ack follows the hub's inbound commit
  await until('the ack of the refused report', () => edge1.outboxDepth === 0 ? true : undefined)
  t.equal(errors.length, 1, 'refused reports are acknowledged once, not redelivered forever')
})

t.test('the registry persists across a hub restart and pending snapshots still reach the edge', async t => {
  const dataDir = t.testdir() + '/hub'
  let hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir, admin: false, devices: true })
  await hub.devices?.upsertModel(thermostat as never)
  const v = await hub.devices?.upsertDevice(device('t9', 'edge-9'))
  await hub.devices?.setDesired('default', 't9', { mode: 'off' })
  await hub.close(200)
  t.equal(hub.devices?.closed, true, 'hub.close() closes the registry')

  hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir, admin: false, devices: { watchBuffer: 16 } })
  t.teardown(() => hub.close(200))
  const d = hub.devices?.getDevice('default', 't9')
  t.equal(d?.desired.mode?.value, 'off')
  t.ok((d?.revision ?? 0) > (v?.revision ?? 0))
  const got: Envelope[] = []
  await startEdge(t, hub, 'edge-9', got)
  const snap = await until('the snapshot', () => got.find(e => e.header.resourceVersion === String(d?.revision)))
  t.equal((snap.content as DeviceSnapshot).desired.mode?.value, 'off')
})

t.test('Hub option validation and devices disabled by default', async t => {
  await t.rejects(Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/a', admin: false, devices: 'yes' as never }), { code: 'EF_INVALID_OPTION', message: /devices/ })
  await t.rejects(Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/b', admin: false, devices: { watchBuffer: -1 } }), { code: 'EF_INVALID_OPTION', message: /devices\.watchBuffer/ })
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/c', admin: false })
  t.teardown(() => hub.close(200))
  t.equal(hub.devices, undefined)
  const mem = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/d', admin: false, devices: { inMemory: true } })
  t.teardown(() => mem.close(200))
  await mem.devices?.upsertModel(thermostat as never)
  t.equal(mem.devices?.listModels().length, 1)
})
