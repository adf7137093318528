/**
 * Group commit of upstream `$device` messages (src/device/cloud/registry-inbound.ts,
 * src/hub/device-upstream.ts): a burst of reports from a node's lane is
 * applied in few registry transactions, in lane order, with the edgeSeq
 * stale/gap rules unchanged; the lane's inbound commit (its ack point) waits
 * until they are durable; a failed registry write applies nothing after it
 * until the lane resends. Real LMDB, a real MemoryStore, and a real Hub +
 * EdgeNode over ws for the lane path.
 */
import t, { type Test } from 'tap'
import { systemClock } from '../../src/util/clock.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { StoreError } from '../../src/errors.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { withInboundBarrier } from '../../src/hub/device-upstream.js'
import { DEVICE_GROUP, resyncResource, twinResource, type ResyncRequest } from '../../src/device/protocol.js'
import type { Mutation, RegistryContext } from '../../src/device/cloud/registry-context.js'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import { UpstreamBatcher } from '../../src/device/cloud/registry-inbound.js'
import { createDeviceMetrics } from '../../src/device/cloud/registry-metrics.js'
import { MemoryKv } from '../../src/device/cloud/registry-store.js'
import type { DeviceChange, StoredDevice } from '../../src/device/cloud/registry-types.js'
import { nullLogger } from '../../src/ops/logger.js'
import { Registry } from '../../src/ops/metrics.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { RecordingSink, device, metric, settle, thermostat } from './cloud-helpers.js'

function report (name: string, edgeSeq: number, temp: number, baseRevision = 0): Envelope {
  return newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', name), content: { namespace: 'default', name, edgeSeq, baseRevision, reported: { temp: { value: temp, timestamp: 1000 + temp } } } })
}

/** 3 devices × 100 reports interleaved; t2 skips edgeSeq 50 (a gap). Returns [device, edgeSeq, temp] in send order. */
function burst (): Array<[string, number, number]> {
  const out: Array<[string, number, number]> = []
  const seq = new Map<string, number>()
  for (let i = 0; i < 300; i++) {
    const name = `t${(i % 3) + 1}`
    let s = (seq.get(name) ?? 0) + 1
    if (name === 't2' && s === 50) s = 51
    seq.set(name, s)
    out.push([name, s, i])
  }
  return out
}

function reportedSeqs (changes: DeviceChange[], name: string): number[] {
  return changes.filter(c => c.type === 'reported' && c.name === name).map(c => (c.detail as { edgeSeq: number }).edgeSeq)
}

function checkOrder (t: Test, changes: DeviceChange[], sent: Array<[string, number, number]>): void {
  for (const name of ['t1', 't2', 't3']) {
    t.same(reportedSeqs(changes, name), sent.filter(s => s[0] === name).map(s => s[1]), `${name}: every report applied, in lane order`)
  }
}

t.test('a burst of lane reports is applied in order in few transactions; a gap still asks for a resync; all of it durable', async t => {
  const dir = t.testdir()
  const sink = new RecordingSink()
  const metrics = new Registry()
  let reg = await DeviceRegistry.open({ path: dir + '/db', sink, metricsRegistry: metrics })
  t.teardown(() => reg.close())
  await reg.upsertModel(thermostat as never)
  for (const n of ['t1', 't2', 't3']) await reg.upsertDevice(device(n, 'edge-1'))
  await settle()
  sink.take()
  t.equal(reg.upstreamDurable('edge-1'), undefined, 'nothing outstanding: the lane commits without waiting')

  const changes: DeviceChange[] = []
  reg.on('change', c => changes.push(c))
  const sent = burst()
  for (const [i, [name, edgeSeq, temp]] of sent.entries()) await reg.acceptUpstream('edge-1', report(name, edgeSeq, temp), i + 1)
  t.equal(reg.getDevice('default', 't1')?.reported.temp, undefined, 'accept only queues: nothing applied before the commit')
  await reg.upstreamDurable('edge-1')

  checkOrder(t, changes, sent)
  const commits = await metric(metrics, 'edgefabric_hub_device_upstream_commits_total')
  t.ok(commits >= 1 && commits <= 3, `300 reports in ${commits} transaction(s)`)
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'twin', result: 'applied' }), 299)
  t.equal(await metric(metrics, 'edgefabric_hub_device_upstream_total', { kind: 'twin', result: 'gap' }), 1)
  t.equal(reg.getDevice('default', 't2')?.resyncPending, true, 'the gap marks t2')
  t.equal(reg.getDevice('default', 't1')?.resyncPending, false)
  const resync = changes.filter(c => c.type === 'resync')
  t.same(resync.map(c => [c.name, c.detail?.lastEdgeSeq, c.detail?.edgeSeq]), [['t2', 49, 51]])
  await settle()
  const down = sink.take()
  t.same(down.map(s => [s.nodeId, s.op, s.resource]), [['edge-1', 'query', resyncResource('edge-1')]], 'one ResyncRequest to the node')
  t.same((down[0]?.content as ResyncRequest).devices, [{ namespace: 'default', name: 't2' }])
  t.equal(await metric(metrics, 'edgefabric_hub_device_resyncs_total', { direction: 'requested' }), 1)

  // durable: the newest value of each device survives a reopen
  const last = (name: string): number => sent.filter(s => s[0] === name).at(-1)?.[2] ?? -1
  await reg.close()
  reg = await DeviceRegistry.open({ path: dir + '/db' })
  for (const n of ['t1', 't2', 't3']) t.equal(reg.getDevice('default', n)?.reported.temp?.value, last(n), `${n} after reopen`)

  // direct callers (handleUpstream) share transactions too and still resolve once applied
  const more = [report('t1', 101, 1001), report('t3', 101, 1003), report('t1', 102, 1002)]
  await Promise.all(more.map(async env => { await reg.handleUpstream('edge-1', env) }))
  t.equal(reg.getDevice('default', 't1')?.reported.temp?.value, 1002)
  t.equal(reg.getDevice('default', 't3')?.reported.temp?.value, 1003)
})

/** A registry context over a real MemoryKv whose commit can be made to fail (the store is the collaborator not under test). */
function faultyContext (): { ctx: RegistryContext, kv: MemoryKv, changes: DeviceChange[], failNext: () => void } {
  const kv = new MemoryKv()
  const changes: DeviceChange[] = []
  let fail = false
  const ctx: RegistryContext = {
    kv,
    clock: systemClock,
    logger: nullLogger,
    metrics: createDeviceMetrics(new Registry(), () => ({ devices: 0, models: 0, dispatch: 0, watchers: 0 })),
    maxUploads: 100,
    maxUploadBytes: 1024,
    devicesOf: nodeId => nodeId === 'edge-1' ? new Set(['default/t1']) : undefined,
    mutate: async <T>(fn: (tx: Parameters<Parameters<MemoryKv['transaction']>[0]>[0], m: Mutation) => T) => {
      const m: Mutation = { now: Date.now(), keys: [], changes: [], index: () => {} }
      const r = await kv.transaction(tx => {
        const out = fn(tx, m)
        // MemoryKv applies staged writes only when the callback returns: as a commit that failed
        if (fail) { fail = false; throw new StoreError('injected: commit failed') }
        return out
      })
      changes.push(...m.changes)
      return r
    },
    publish: c => changes.push(...c),
    emitError: () => {}
  }
  return { ctx, kv, changes, failNext: () => { fail = true } }
}

t.test('a failed registry commit: not acknowledged, nothing after it applied, all applied in order after the lane resends', async t => {
  const { ctx, kv, changes, failNext } = faultyContext()
  const stored: StoredDevice = {
    spec: device('t1', 'edge-1') as StoredDevice['spec'],
    revision: 1,
    desired: {},
    reported: {},
    state: 'unknown',
    stateAt: null,
    lastSeen: null,
    lastEdgeSeq: 0,
    syncedRevision: 0,
    resyncPending: false,
    credentials: [],
    createdAt: 0,
    updatedAt: 0
  }
  await kv.transaction(tx => { tx.put('models', 'default/thermostat', thermostat); tx.put('devices', 'default/t1', stored) })
  const b = new UpstreamBatcher(ctx)
  const lastSeq = (): number | undefined => kv.get<StoredDevice>('devices', 'default/t1')?.lastEdgeSeq

  failNext()
  for (let s = 1; s <= 3; s++) await b.accept('edge-1', report('t1', s, s), s)
  await t.rejects(async () => { await b.durable('edge-1') }, { code: 'EF_STORE' }, 'the failed group is not acknowledged')
  t.equal(lastSeq(), 0, 'nothing of it applied')

  // the lane pipelines the next group before the resend: it must not be applied ahead of 1..3
  for (let s = 4; s <= 5; s++) await b.accept('edge-1', report('t1', s, s), s)
  await t.rejects(async () => { await b.durable('edge-1') }, { code: 'EF_STORE' }, 'no later group is acknowledged either (acks are cumulative)')
  t.equal(lastSeq(), 0, 'later reports are held back, not applied out of order')

  // the edge resends from seq 1 (ack timeout): a new generation, applied in order
  for (let s = 1; s <= 5; s++) await b.accept('edge-1', report('t1', s, s * 10), s)
  await b.durable('edge-1')
  t.equal(lastSeq(), 5)
  const d = kv.get<StoredDevice>('devices', 'default/t1')
  t.equal(d?.resyncPending, false, 'no false gap: 4 and 5 were not applied before 1..3')
  t.equal(d?.reported.temp?.value, 50)
  t.same(reportedSeqs(changes, 't1'), [1, 2, 3, 4, 5])
  t.equal(b.durable('edge-1'), undefined, 'idle node state is dropped')
  await b.drain()
})

t.test('the lane store: commitInbound (the ack point) waits for the device barrier; a rejection commits nothing', async t => {
  const store = new MemoryStore()
  let release: () => void = () => {}
  let barrier: Promise<void> | undefined = new Promise<void>(resolve => { release = resolve })
  const lane = withInboundBarrier(store, peer => peer === 'edge-1' ? barrier : undefined)
  t.equal(lane.durability, store.durability, 'other members reach the store')
  t.equal(lane.receivedSeq('edge-1'), 0, 'methods are bound to the store')

  let committed = false
  const c = lane.commitInbound('edge-1', [{ seq: 1, id: 'a' }], 1).then(() => { committed = true })
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(committed, false, 'held until the registry is durable')
  t.equal(store.receivedSeq('edge-1'), 0)
  release()
  await c
  t.equal(store.receivedSeq('edge-1'), 1, 'committed after the barrier')

  barrier = Promise.reject(new StoreError('registry write failed'))
  await t.rejects(lane.commitInbound('edge-1', [{ seq: 2, id: 'b' }], 2), { code: 'EF_STORE' })
  t.equal(store.receivedSeq('edge-1'), 1, 'not committed, so not acknowledged: the edge resends')
  await lane.commitInbound('edge-2', [{ seq: 1, id: 'c' }], 3)
  t.equal(store.receivedSeq('edge-2'), 1, 'other nodes are not held')
  await store.close()
})

t.test('through a real hub lane: a burst of reliable reports from an edge is group-committed, in order; the gap reaches the edge as a ResyncRequest', async t => {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: t.testdir() + '/hub', admin: false, devices: true })
  t.teardown(() => hub.close(200))
  const reg = hub.devices
  if (reg === undefined) throw new Error('hub.devices missing')
  await reg.upsertModel(thermostat as never)
  for (const n of ['t1', 't2', 't3']) await reg.upsertDevice(device(n, 'edge-1'))
  const got: Envelope[] = []
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string,
    nodeId: 'edge-1',
    token: hub.createToken('edge-1'),
    dataDir: t.testdir() + '/edge',
    backoff: { baseMs: 20, capMs: 200 },
    admin: false,
    onReliable: env => { if (env.router.group === DEVICE_GROUP) got.push(env) }
  })
  t.teardown(() => edge.close())
  await edge.waitConnected()

  const changes: DeviceChange[] = []
  reg.on('change', c => changes.push(c))
  const sent = burst()
  await Promise.all(sent.map(async ([name, edgeSeq, temp]) => { await edge.sendUpstream(report(name, edgeSeq, temp), { delivery: 'reliable' }) }))
  const end = Date.now() + 30_000
  while (changes.filter(c => c.type === 'reported').length < sent.length && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))

  checkOrder(t, changes, sent)
  const commits = (await reg.metrics.upstreamCommits.get()).values[0]?.value ?? 0
  t.ok(commits > 0 && commits < sent.length / 4, `${sent.length} reports in ${commits} registry transactions`)
  t.equal(reg.getDevice('default', 't2')?.resyncPending, true)
  while (!got.some(e => e.router.resource === resyncResource('edge-1')) && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  const req = got.find(e => e.router.resource === resyncResource('edge-1'))
  t.same((req?.content as ResyncRequest | undefined)?.devices, [{ namespace: 'default', name: 't2' }], 'the edge is asked for a full report of t2')
})
