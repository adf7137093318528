/**
 * The device registry's behaviour over any DeviceKv backend (aedes-persistence
 * style): validation, persistence across reopen, revisions, re-bind, delete,
 * credentials, mapper grants and the transactional outbox to the lane. Run by
 * test/device/cloud-registry.test.ts (LMDB) and test/cluster/registry-store.test.ts
 * (JetStream, a real 3-server NATS cluster). The sink (the hub's reliable lane)
 * is a recording collaborator; the real hub path is test/device/cloud-hub.test.ts.
 */
import type { Test } from 'tap'
import { verifySecret } from '../../src/device/credentials.js'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import type { DeviceKv } from '../../src/device/cloud/registry-store.js'
import type { DeviceRemoved, DeviceSnapshot, MapperGrant } from '../../src/device/protocol.js'
import { Registry } from '../../src/ops/metrics.js'
import { RecordingSink, device, metric, settle, thermostat } from './cloud-helpers.js'

/** Open the store called `name` in test `t`: the same name in the same test is the same (persistent) store. */
export type KvOpener = (t: Test, name: string) => Promise<DeviceKv>

export function runRegistrySuite (t: Test, open: KvOpener): void {
  t.test('validation: typed errors with stable codes, counted', async t => {
    const metrics = new Registry()
    const reg = await DeviceRegistry.open({ kv: await open(t, 'db'), metricsRegistry: metrics })
    t.teardown(() => reg.close())
    const bad = async (p: Promise<unknown>, code: string, what: string): Promise<void> => { await t.rejects(p, { code }, what) }
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a b', type: 'int', accessMode: 'ReadWrite' }] }), 'EF_DEVICE_MODEL_INVALID', 'property name with a space')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'double' as never, accessMode: 'ReadWrite' }] }), 'EF_DEVICE_MODEL_INVALID', 'unknown type')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'int', accessMode: 'ReadWrite', minimum: 5, maximum: 1 }] }), 'EF_DEVICE_MODEL_INVALID', 'min > max')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'int', accessMode: 'ReadWrite', maximum: 3, default: 4 }] }), 'EF_DEVICE_MODEL_INVALID', 'default out of range')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'int', accessMode: 'ReadWrite', default: 1.5 }] }), 'EF_DEVICE_MODEL_INVALID', 'default of the wrong type')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'string', accessMode: 'ReadWrite', minimum: 1 }] }), 'EF_DEVICE_MODEL_INVALID', 'min on a string')
    await bad(reg.upsertModel({ namespace: 'default', name: 'm', properties: [{ name: 'a', type: 'int', accessMode: 'ReadWrite' }, { name: 'a', type: 'int', accessMode: 'ReadWrite' }] }), 'EF_DEVICE_MODEL_INVALID', 'duplicate property')
    await bad(reg.upsertModel({ namespace: 'Default', name: 'm', properties: [] }), 'EF_DEVICE_MODEL_INVALID', 'upper-case namespace')
    await reg.upsertModel(thermostat as never)
    await bad(reg.upsertDevice({ ...device('t1'), name: 'T_1' }), 'EF_DEVICE_SPEC_INVALID', 'device name not a DNS label')
    await bad(reg.upsertDevice({ ...device('t1'), labels: { ok: 3 as never } }), 'EF_DEVICE_SPEC_INVALID', 'label value not a string')
    await bad(reg.upsertDevice({ ...device('t1'), nodeId: 'Edge/1' }), 'EF_DEVICE_SPEC_INVALID', 'bad node name')
    await bad(reg.upsertDevice({ ...device('t1'), model: 'default/nope' }), 'EF_DEVICE_MODEL_NOT_FOUND', 'model must exist')
    await reg.upsertDevice(device('t1', 'edge-1'))
    await bad(reg.setDesired('default', 't1', { nope: 1 }), 'EF_DEVICE_UNKNOWN_PROPERTY', 'unknown property')
    await bad(reg.setDesired('default', 't1', { temp: 21 }), 'EF_DEVICE_READ_ONLY', 'ReadOnly property')
    await bad(reg.setDesired('default', 't1', { target: 'hot' }), 'EF_DEVICE_TYPE_MISMATCH', 'wrong type')
    await bad(reg.setDesired('default', 't1', { 'fan.speed': 1.5 }), 'EF_DEVICE_TYPE_MISMATCH', 'float for an int')
    await bad(reg.setDesired('default', 't1', { target: 31 }), 'EF_DEVICE_OUT_OF_RANGE', 'above maximum')
    await bad(reg.setDesired('default', 't1', { target: 25, 'fan.speed': 9 }), 'EF_DEVICE_OUT_OF_RANGE', 'one bad value refuses all')
    t.equal(reg.getDevice('default', 't1')?.desired.target?.value, 20, 'nothing applied from the refused call')
    await bad(reg.setDesired('default', 'nope', { target: 21 }), 'EF_DEVICE_NOT_FOUND', 'unknown device')
    await bad(reg.deleteModel('default', 'thermostat'), 'EF_DEVICE_MODEL_IN_USE', 'model in use')
    t.equal(await metric(metrics, 'edgefabric_hub_device_rejections_total', { code: 'EF_DEVICE_OUT_OF_RANGE' }), 2)
    t.equal(await metric(metrics, 'edgefabric_hub_device_rejections_total', { code: 'EF_DEVICE_MODEL_INVALID' }), 8)
    await reg.deleteDevice('default', 't1')
    await reg.deleteModel('default', 'thermostat')
    t.equal(reg.listModels().length, 0)
  })

  t.test('persistence across reopen; snapshots, revisions, no-op upsert', async t => {
    const dir = 'db'
    const sink = new RecordingSink()
    let reg = await DeviceRegistry.open({ kv: await open(t, dir), sink })
    await reg.upsertModel(thermostat as never)
    const v1 = await reg.upsertDevice(device('t1', 'edge-1', { room: 'a' }))
    t.same(v1.desired.target?.value, 20, 'default becomes the initial desired value')
    t.same(v1.desired.mode?.value, 'auto')
    t.notOk('temp' in v1.desired, 'ReadOnly properties have no desired value')
    const v2 = await reg.upsertDevice(device('t1', 'edge-1', { room: 'a' }))
    t.equal(v2.revision, v1.revision, 'an unchanged spec does not bump the revision')
    const v3 = await reg.setDesired('default', 't1', { target: 22.5, power: true })
    t.ok(v3.revision > v1.revision)
    t.equal(v3.desired.target?.revision, v3.revision)
    t.equal(v3.desired.mode?.revision, v1.revision, 'untouched properties keep their revision')
    await settle()
    const sent = sink.take()
    t.same(sent.map(s => [s.nodeId, s.op, s.resource, s.version]), [
      ['edge-1', 'update', 'device/default/t1', String(v1.revision)],
      ['edge-1', 'update', 'device/default/t1', String(v3.revision)]
    ])
    const snap = sent[1]?.content as DeviceSnapshot
    t.equal(snap.revision, v3.revision)
    t.equal(snap.desired.target?.value, 22.5)
    t.equal(snap.model.name, 'thermostat')
    t.same(snap.device.labels, { room: 'a' })
    await reg.close()

    reg = await DeviceRegistry.open({ kv: await open(t, dir) })
    t.teardown(() => reg.close())
    const again = reg.getDevice('default', 't1')
    t.equal(again?.revision, v3.revision, 'revision persisted')
    t.equal(again?.desired.target?.value, 22.5, 'desired persisted')
    t.equal(reg.getModel('default', 'thermostat')?.properties.length, 5)
    t.same(reg.listDevices({ nodeId: 'edge-1' }).map(d => d.spec.name), ['t1'], 'node index rebuilt')
    t.same(reg.listDevices({ labels: { room: 'a' } }).length, 1)
    t.same(reg.listDevices({ labels: { room: 'b' } }).length, 0)
    const v4 = await reg.setDesired('default', 't1', { target: 23 })
    t.ok(v4.revision > v3.revision, 'the revision counter continues after reopen')
  })

  t.test('re-bind sends a removal to the old node and a snapshot to the new; delete sends a removal', async t => {
    const sink = new RecordingSink()
    const reg = await DeviceRegistry.open({ kv: await open(t, 'db'), sink })
    t.teardown(() => reg.close())
    await reg.upsertModel(thermostat as never)
    await reg.upsertDevice(device('t1', 'edge-1'))
    await settle()
    sink.take()
    const moved = await reg.upsertDevice(device('t1', 'edge-2'))
    await settle()
    const sent = sink.take()
    t.same(sent.map(s => [s.nodeId, s.op, s.version]), [['edge-1', 'delete', String(moved.revision)], ['edge-2', 'update', String(moved.revision)]])
    t.same(sent[0]?.content as DeviceRemoved, { namespace: 'default', name: 't1', revision: moved.revision, reason: 'rebound' })
    t.same(reg.listDevices({ nodeId: 'edge-1' }), [])
    t.equal(reg.listDevices({ nodeId: 'edge-2' }).length, 1)
    t.equal(moved.syncedRevision, 0, 'sync state starts over on the new node')

    const unbound = await reg.upsertDevice(device('t1'))
    await settle()
    t.same(sink.take().map(s => [s.nodeId, s.op]), [['edge-2', 'delete']], 'unbinding removes it from the node, nothing else is sent')
    t.equal(unbound.nodeId, undefined)
    await reg.upsertDevice(device('t1', 'edge-1'))
    await settle()
    const back = sink.take()
    t.ok(Number(back[0]?.version) > moved.revision, 'binding back gets a version above the old removal (global counter)')

    await reg.deleteDevice('default', 't1')
    await settle()
    const del = sink.take()
    t.same(del.map(s => [s.nodeId, s.op]), [['edge-1', 'delete']])
    t.equal((del[0]?.content as DeviceRemoved).reason, 'deleted')
    t.equal(reg.getDevice('default', 't1'), undefined)
    await t.rejects(reg.deleteDevice('default', 't1'), { code: 'EF_DEVICE_NOT_FOUND' })
  })

  t.test('model change re-checks desired values and re-sends snapshots', async t => {
    const sink = new RecordingSink()
    const reg = await DeviceRegistry.open({ kv: await open(t, 'db'), sink })
    t.teardown(() => reg.close())
    await reg.upsertModel(thermostat as never)
    await reg.upsertDevice(device('t1', 'edge-1'))
    await reg.setDesired('default', 't1', { target: 28 })
    await settle()
    sink.take()
    const props = thermostat.properties.filter(p => p.name !== 'mode').map(p => p.name === 'target' ? { ...p, maximum: 25, default: 21 } : p)
    const r = await reg.upsertModel({ ...thermostat, properties: [...props, { name: 'eco', type: 'boolean', accessMode: 'ReadWrite', default: false }] } as never)
    t.equal(r.devices, 1)
    const d = reg.getDevice('default', 't1')
    t.equal(d?.desired.target?.value, 21, '28 no longer fits maximum 25: replaced by the new default')
    t.notOk(d !== undefined && 'mode' in d.desired, 'removed property dropped')
    t.equal(d?.desired.eco?.value, false, 'new default added')
    await settle()
    t.same(sink.take().map(s => [s.nodeId, s.op, s.version]), [['edge-1', 'update', String(r.revision)]])
    const same = await reg.upsertModel({ ...thermostat, properties: [...props, { name: 'eco', type: 'boolean', accessMode: 'ReadWrite', default: false }] } as never)
    t.equal(same.devices, 0, 'an identical model is a no-op')
  })

  t.test('credentials: secret returned once, only the scrypt hash stored and sent; mapper grants', async t => {
    const sink = new RecordingSink()
    const reg = await DeviceRegistry.open({ kv: await open(t, 'db'), sink })
    t.teardown(() => reg.close())
    await reg.upsertModel(thermostat as never)
    await reg.upsertDevice(device('t1', 'edge-1'))
    await reg.upsertDevice(device('t2', 'edge-2'))
    await settle()
    sink.take()
    const cred = await reg.issueCredential('default', 't1')
    t.equal(cred.username, 'default/t1')
    t.ok(cred.password.length >= 40)
    await settle()
    const snap = sink.take()[0]?.content as DeviceSnapshot
    t.equal(snap.credentials.length, 1)
    t.notMatch(JSON.stringify(snap), cred.password, 'the secret never travels')
    t.ok(await verifySecret(cred.password, snap.credentials[0]?.passwordHash ?? ''), 'the hash verifies the secret')
    t.same(reg.getDevice('default', 't1')?.credentials.map(c => c.username), ['default/t1'])
    const rotated = await reg.issueCredential('default', 't1')
    await settle()
    const snap2 = sink.take()[0]?.content as DeviceSnapshot
    t.notOk(await verifySecret(cred.password, snap2.credentials[0]?.passwordHash ?? ''), 'rotation invalidates the old secret')
    t.ok(await verifySecret(rotated.password, snap2.credentials[0]?.passwordHash ?? ''))
    await reg.revokeCredential('default', 't1')
    await settle()
    t.same((sink.take()[0]?.content as DeviceSnapshot).credentials, [], 'revocation sends a snapshot without credentials')

    await t.rejects(reg.grantMapper('edge-1', 'modbus', ['default/t2']), { code: 'EF_DEVICE_SPEC_INVALID' }, 'device bound elsewhere')
    await t.rejects(reg.grantMapper('edge-1', 'modbus', ['default/zz']), { code: 'EF_DEVICE_NOT_FOUND' })
    const m = await reg.grantMapper('edge-1', 'modbus', ['default/t1'])
    t.equal(m.username, 'mapper/edge-1/modbus')
    await settle()
    const g = sink.take()
    t.same(g.map(s => [s.nodeId, s.op, s.resource]), [['edge-1', 'update', 'mapper/edge-1/modbus']])
    const grant = g[0]?.content as MapperGrant
    t.same(grant.devices, ['default/t1'])
    t.ok(await verifySecret(m.password, grant.passwordHash))
    t.same(reg.listMappers('edge-1').map(x => x.name), ['modbus'])
    t.notOk('passwordHash' in (reg.listMappers()[0] ?? {}), 'listing does not expose hashes')
    await reg.revokeMapper('edge-1', 'modbus')
    await settle()
    const rv = sink.take()
    t.same(rv.map(s => [s.nodeId, s.op, s.resource]), [['edge-1', 'delete', 'mapper/edge-1/modbus']])
    t.ok(Number(rv[0]?.version) > Number(g[0]?.version))
    await t.rejects(reg.revokeMapper('edge-1', 'modbus'), { code: 'EF_DEVICE_MAPPER_NOT_FOUND' })
  })

  t.test('transactional outbox: refused or failed hand-offs are retried, and re-sent after reopen', async t => {
    const dir = 'db'
    const sink = new RecordingSink()
    sink.refuse = true
    let reg = await DeviceRegistry.open({ kv: await open(t, dir), sink, retryMs: 30 })
    await reg.upsertModel(thermostat as never)
    await reg.upsertDevice(device('t1', 'edge-1'))
    await settle()
    t.equal(sink.sent.length, 0, 'the lane refused (quota)')
    sink.refuse = false
    await new Promise(resolve => setTimeout(resolve, 120))
    t.same(sink.take().map(s => s.resource), ['device/default/t1'], 'retried after retryMs')

    sink.fail = true
    const v = await reg.setDesired('default', 't1', { target: 26 })
    await settle()
    await reg.close() // "crash" before the hand-off succeeded
    const sink2 = new RecordingSink()
    reg = await DeviceRegistry.open({ kv: await open(t, dir), sink: sink2 })
    t.teardown(() => reg.close())
    await settle()
    const re = sink2.take()
    t.same(re.map(s => [s.nodeId, s.version]), [['edge-1', String(v.revision)]], 'the committed snapshot is handed over after reopen')
    await reg.close()
    const sink3 = new RecordingSink()
    reg = await DeviceRegistry.open({ kv: await open(t, dir), sink: sink3 })
    await settle()
    t.same(sink3.sent, [], 'once handed over, it is not sent again')
  })
}
