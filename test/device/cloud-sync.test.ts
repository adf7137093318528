/**
 * Conflict rules and edge sync at the registry (protocol.ts, README "Device
 * twins"): reported values ordered by edgeSeq, expected values merged against
 * the base revision, gap → ResyncRequest, edge ResyncRequest → snapshots,
 * state, uploads (bounded log), misdirected reports, watch buffer policy.
 * Real LMDB; upstream messages are the envelopes an edge would send.
 */
import t, { type Test } from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import { DEVICE_GROUP, resyncResource, stateResource, twinResource, type DeviceSnapshot, type ResyncRequest, type TwinReport } from '../../src/device/protocol.js'
import type { DeviceChange } from '../../src/device/cloud/registry-types.js'
import { Registry } from '../../src/ops/metrics.js'
import { RecordingSink, device, metric, settle, thermostat } from './cloud-helpers.js'

function report (r: Partial<TwinReport> & { edgeSeq: number, baseRevision: number }, name = 't1'): Envelope {
  return newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', name), content: { namespace: 'default', name, reported: {}, ...r } })
}
const val = (value: number | string | boolean, timestamp = 1000): { value: number | string | boolean, timestamp: number } => ({ value, timestamp })

async function setup (t: Test, extra: Parameters<typeof DeviceRegistry.open>[0] = {}): Promise<{ reg: DeviceRegistry, sink: RecordingSink, metrics: Registry }> {
  const sink = new RecordingSink()
  const metrics = new Registry()
  const reg = await DeviceRegistry.open({ path: t.testdir() + '/db', sink, metricsRegistry: metrics, ...extra })
  t.teardown(() => reg.close())
  await reg.upsertModel(thermostat as never)
  await reg.upsertDevice(device('t1', 'edge-1'))
  await settle()
  sink.take()
  return { reg, sink, metrics }
}

t.test('reported values: edge authoritative, ordered by edgeSeq, stale ones ignored', async t => {
  const { reg, sink, metrics } = await setup(t)
  const rev = reg.getDevice('default', 't1')?.revision ?? 0
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: rev, reported: { temp: val(19.5, 100), target: val(20, 100) } }))
  let d = reg.getDevice('default', 't1')
  t.same(d?.reported.temp, { value: 19.5, timestamp: 100 }, 'reported value stored with its timestamp')
  t.equal(d?.syncedRevision, rev, 'the node says it holds the current snapshot')
  t.ok((d?.lastSeen ?? 0) > 0)
  t.equal(d?.revision, rev, 'reports do not bump the revision')
  await reg.handleUpstream('edge-1', report({ edgeSeq: 2, baseRevision: rev, reported: { temp: val(21, 200) } }))
  await reg.handleUpstream('edge-1', report({ edgeSeq: 2, baseRevision: rev, reported: { temp: val(5, 150) } }))
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: rev, reported: { temp: val(6, 150) } }))
  d = reg.getDevice('default', 't1')
  t.equal(d?.reported.temp?.value, 21, 'duplicate and older edgeSeq ignored')
  t.equal(d?.reported.target?.value, 20, 'a partial report keeps other reported values')
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'twin', result: 'stale' }), 2)
  await reg.handleUpstream('edge-1', report({ edgeSeq: 3, baseRevision: rev, reported: { temp: val('hot'), nope: val(1), target: val(99) } }))
  d = reg.getDevice('default', 't1')
  t.equal(d?.reported.temp?.value, 21, 'a wrongly typed reported value is ignored')
  t.notOk(d !== undefined && 'nope' in d.reported, 'unknown properties ignored')
  t.equal(d?.reported.target?.value, 99, 'out of range actual values are facts and kept')
  await settle()
  t.same(sink.take(), [], 'plain reports send nothing down')
})

t.test('expected merged against the base: accepted when the cloud did not change it since', async t => {
  const { reg, sink, metrics } = await setup(t)
  const base = reg.getDevice('default', 't1')?.revision ?? 0
  const changes: DeviceChange[] = []
  reg.on('change', c => changes.push(c))
  // the edge (offline) set target=24 against base; the cloud meanwhile changed only "mode"
  const after = await reg.setDesired('default', 't1', { mode: 'eco' })
  await settle()
  sink.take()
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: base, expected: { target: val(24, 500) } }))
  const d = reg.getDevice('default', 't1')
  t.equal(d?.desired.target?.value, 24, 'edge value accepted: the cloud had not touched target since the base')
  t.equal(d?.desired.mode?.value, 'eco', 'the cloud change of another property stands')
  t.ok((d?.revision ?? 0) > after.revision, 'revision bumped')
  t.equal(d?.desired.target?.revision, d?.revision)
  await settle()
  const sent = sink.take()
  t.same(sent.map(s => [s.nodeId, s.op, s.version]), [['edge-1', 'update', String(d?.revision)]], 'a snapshot carries the merged result back')
  t.equal((sent[0]?.content as DeviceSnapshot).desired.target?.value, 24)
  t.equal(await metric(metrics, 'edgefabric_hub_device_expected_merges_total', { result: 'accepted' }), 1)
  t.ok(changes.some(c => c.type === 'conflict' && (c.detail?.accepted as string[]).includes('target')))
  t.ok(changes.some(c => c.type === 'desired' && c.detail?.source === 'edge'))
})

t.test('expected rejected (cloud wins) when the cloud changed that property after the base', async t => {
  const { reg, sink, metrics } = await setup(t)
  const base = reg.getDevice('default', 't1')?.revision ?? 0
  await reg.setDesired('default', 't1', { target: 26 })
  await settle()
  sink.take()
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: base, expected: { target: val(18), power: val(true), temp: val(3), 'fan.speed': val(7) } }))
  const d = reg.getDevice('default', 't1')
  t.equal(d?.desired.target?.value, 26, 'cloud value kept')
  t.equal(d?.desired.power?.value, true, 'power had no cloud change since the base: accepted')
  t.notOk(d !== undefined && 'temp' in d.desired, 'ReadOnly expected refused')
  t.notOk(d !== undefined && 'fan.speed' in d.desired, 'out of range expected refused')
  t.equal(await metric(metrics, 'edgefabric_hub_device_expected_merges_total', { result: 'rejected' }), 3)
  await settle()
  const snap = sink.take()[0]?.content as DeviceSnapshot
  t.equal(snap.desired.target?.value, 26, 'the snapshot brings the cloud value back to the edge')
  t.equal(snap.revision, d?.revision)

  // No KubeEdge-style counter bug: after the edge's local bump was merged, a LATER cloud update still applies.
  const later = await reg.setDesired('default', 't1', { power: false })
  t.equal(later.desired.power?.value, false, 'cloud update after an accepted edge change is not considered stale')
  await settle()
  t.equal((sink.take()[0]?.content as DeviceSnapshot).desired.power?.value, false)
})

t.test('a gap in edgeSeq sends a ResyncRequest; a full report clears it', async t => {
  const { reg, sink, metrics } = await setup(t)
  await reg.upsertDevice(device('t2', 'edge-1'))
  await settle()
  sink.take()
  const rev = reg.getDevice('default', 't1')?.revision ?? 0
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: rev, reported: { temp: val(20) } }))
  await reg.handleUpstream('edge-1', report({ edgeSeq: 4, baseRevision: rev, reported: { temp: val(22) } }))
  t.equal(reg.getDevice('default', 't1')?.reported.temp?.value, 22, 'the report after the gap is still applied')
  t.equal(reg.getDevice('default', 't1')?.resyncPending, true)
  await settle()
  let sent = sink.take()
  t.same(sent.map(s => [s.nodeId, s.op, s.resource]), [['edge-1', 'query', resyncResource('edge-1')]])
  t.same(sent[0]?.content as ResyncRequest, { nodeId: 'edge-1', devices: [{ namespace: 'default', name: 't1' }] })
  t.equal(await metric(metrics, 'edgefabric_hub_device_resyncs_total', { direction: 'requested' }), 1)

  // a second device gaps while the first is outstanding: the request lists both (one request per node, superseding)
  await reg.handleUpstream('edge-1', report({ edgeSeq: 3, baseRevision: rev, reported: {} }, 't2'))
  await settle()
  sent = sink.take()
  t.same((sent[0]?.content as ResyncRequest).devices?.map(d => d.name).sort(), ['t1', 't2'])

  // the edge answers with a full report (it restarted its counter): replaces reported, clears the mark
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: rev, full: true, reported: { target: val(20) } }))
  const d = reg.getDevice('default', 't1')
  t.equal(d?.resyncPending, false)
  t.same(Object.keys(d?.reported ?? {}), ['target'], 'a full report replaces the reported map')
  await reg.handleUpstream('edge-1', report({ edgeSeq: 2, baseRevision: rev, reported: { temp: val(23) } }))
  t.equal(reg.getDevice('default', 't1')?.reported.temp?.value, 23, 'sequence continues from the full report')
  await settle()
  t.same(sink.take().filter(s => s.op === 'query').length, 0, 'no further resync requests')
})

t.test('an edge ResyncRequest re-sends snapshots (new revision) and mapper grants for that node', async t => {
  const { reg, sink, metrics } = await setup(t)
  await reg.upsertDevice(device('t2', 'edge-1'))
  await reg.upsertDevice(device('t3', 'edge-2'))
  await reg.grantMapper('edge-1', 'modbus', ['default/t1'])
  await settle()
  sink.take()
  const before = reg.getDevice('default', 't1')?.revision ?? 0
  const env = newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation: 'query', resource: resyncResource('edge-1'), content: { nodeId: 'edge-1' } })
  await reg.handleUpstream('edge-1', env)
  await settle()
  const sent = sink.take()
  t.same(sent.map(s => `${s.nodeId} ${s.op} ${s.resource}`).sort(), ['edge-1 update device/default/t1', 'edge-1 update device/default/t2', 'edge-1 update mapper/edge-1/modbus'])
  t.ok(sent.every(s => Number(s.version) > before), 'new revisions, so an edge that stored the old ones applies them')
  t.equal(await metric(metrics, 'edgefabric_hub_device_resyncs_total', { direction: 'answered' }), 1)
  t.equal(reg.getDevice('default', 't1')?.desired.target?.value, 20, 'content unchanged')
})

t.test('resyncNode: snapshots down and a request for full reports up', async t => {
  const { reg, sink, metrics } = await setup(t)
  await reg.upsertDevice(device('t2', 'edge-1'))
  await reg.upsertDevice(device('t3', 'edge-2'))
  await settle()
  sink.take()
  t.equal(await reg.resyncNode('edge-1'), 2)
  await settle()
  const sent = sink.take()
  t.same(sent.map(s => `${s.nodeId} ${s.op} ${s.resource}`).sort(), ['edge-1 query device-resync/edge-1', 'edge-1 update device/default/t1', 'edge-1 update device/default/t2'])
  t.same((sent.find(s => s.op === 'query')?.content as ResyncRequest).devices?.map(d => d.name).sort(), ['t1', 't2'])
  t.equal(reg.getDevice('default', 't1')?.resyncPending, true)
  t.equal(reg.getDevice('default', 't3')?.resyncPending, false, 'other nodes untouched')
  t.equal(await metric(metrics, 'edgefabric_hub_device_resyncs_total', { direction: 'requested' }), 1)
  await reg.handleUpstream('edge-1', report({ edgeSeq: 7, baseRevision: 0, full: true, reported: {} }))
  t.equal(reg.getDevice('default', 't1')?.resyncPending, false, 'the full report answers it')
  await t.rejects(reg.resyncNode('Bad/Node'), { code: 'EF_DEVICE_SPEC_INVALID' })
})

t.test('misdirected and malformed upstream messages: counted, error event, lane not blocked', async t => {
  const { reg, metrics } = await setup(t)
  const errors: Error[] = []
  reg.on('error', e => errors.push(e))
  await reg.handleUpstream('edge-2', report({ edgeSeq: 1, baseRevision: 0, reported: { temp: val(99) } }))
  t.equal(reg.getDevice('default', 't1')?.reported.temp, undefined, 'a node cannot report for a device bound elsewhere')
  await reg.handleUpstream('edge-1', report({ edgeSeq: 1, baseRevision: 0 }, 'ghost'))
  await reg.handleUpstream('edge-1', newMessage({ source: 'x', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', 't1'), content: { namespace: 'default', name: 't1', edgeSeq: -1 } }))
  await reg.handleUpstream('edge-1', newMessage({ source: 'x', group: DEVICE_GROUP, operation: 'frob', resource: 'what/ever', content: null }))
  t.same(errors.map(e => (e as { code?: string, reason?: string }).reason), ['not_bound', 'unknown_device', 'invalid', 'invalid'])
  t.ok(errors.every(e => (e as { code?: string }).code === 'EF_DEVICE_BAD_REPORT'))
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'twin', result: 'not_bound' }), 1)
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'twin', result: 'invalid' }), 1)
})

t.test('state reports and the bounded upload log', async t => {
  const { reg, metrics } = await setup(t, { maxUploads: 3, maxUploadBytes: 4 })
  const state = (s: string, ts: number): Envelope => newMessage({ source: 'x', group: DEVICE_GROUP, operation: 'state', resource: stateResource('default', 't1'), content: { namespace: 'default', name: 't1', state: s, timestamp: ts } })
  await reg.handleUpstream('edge-1', state('online', 500))
  t.equal(reg.getDevice('default', 't1')?.state, 'online')
  t.equal(reg.getDevice('default', 't1')?.stateAt, 500)
  await reg.handleUpstream('edge-1', state('offline', 400))
  t.equal(reg.getDevice('default', 't1')?.state, 'online', 'an older state report does not overwrite a newer one')
  await reg.handleUpstream('edge-1', state('exploded', 600))
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'state', result: 'invalid' }), 1)
  for (let i = 0; i < 5; i++) {
    await reg.handleUpstream('edge-1', newMessage({ source: 'x', group: DEVICE_GROUP, operation: 'upload', resource: 'upload/$hw/events/upload/default/t1', content: { topic: '$hw/events/upload/default/t1', payload: new Uint8Array([i, 1, 2, 3, 4, 5]), timestamp: i } }))
  }
  const ups = reg.listUploads()
  t.same(ups.map(u => u.timestamp), [4, 3, 2], 'newest first, only maxUploads kept')
  t.same([...ups[0]?.payload ?? []], [4, 1, 2, 3], 'payload truncated to maxUploadBytes')
  t.equal(ups[0]?.truncated, true)
  t.equal(await metric(metrics, 'edgefabric_hub_device_upload_drops_total', { reason: 'evicted' }), 2)
})

t.test('watch: filtered, and a watcher that falls behind is closed with WatchOverflowError', async t => {
  const { reg, metrics } = await setup(t, { watchBuffer: 3 })
  const all = reg.watch()
  const t1 = reg.watch({ namespace: 'default', name: 't1', types: ['desired'] })
  const slow = reg.watch()
  await reg.setDesired('default', 't1', { target: 21 })
  await reg.upsertDevice(device('t2', 'edge-1'))
  const first = await all.next()
  t.equal(first.value?.type, 'desired')
  const second = await all.next()
  t.equal(second.value?.type, 'device-upserted')
  const only = await t1.next()
  t.same(only.value?.detail?.desired, { target: { value: 21, revision: only.value?.revision, timestamp: only.value?.at } })
  await reg.setDesired('default', 't2', { target: 22 })
  await reg.setDesired('default', 't2', { target: 23 }) // 4th change: "slow" overflows (buffer 3)
  const got: string[] = []
  await t.rejects((async () => { for await (const c of slow) got.push(c.type) })(), { code: 'EF_DEVICE_WATCH_OVERFLOW' })
  t.same(got, ['desired', 'device-upserted', 'desired'], 'what was buffered is delivered before the error')
  t.equal(await metric(metrics, 'edgefabric_hub_device_watch_overflows_total'), 1)
  const third = await all.next()
  t.equal(third.value?.name, 't2', 'other watchers are unaffected')
  await all.return?.()
  await reg.close()
  t.same(await t1.next(), { value: undefined, done: true }, 'close ends watchers normally')
})
