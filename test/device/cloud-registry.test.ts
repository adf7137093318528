/**
 * DeviceRegistry against real LMDB directories: the registry suite
 * (registry-compliance.ts: validation, persistence across reopen, revisions,
 * re-bind, delete, credentials, mapper grants, the transactional outbox) and
 * the store contract (registry-store-compliance.ts) over LmdbKv and MemoryKv;
 * the cluster backend runs the same suites in test/cluster/registry-store.test.ts.
 */
import t from 'tap'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import { LmdbKv, MemoryKv } from '../../src/device/cloud/registry-store.js'
import { device, thermostat } from './cloud-helpers.js'
import { runRegistrySuite } from './registry-compliance.js'
import { runDeviceKvSuite } from './registry-store-compliance.js'

const dirs = new WeakMap<Test, string>()
/** One LMDB directory per (test, name): t.testdir() wipes the test's dir when called again. */
function lmdbDir (t: Test, name: string): string {
  let base = dirs.get(t)
  if (base === undefined) { base = t.testdir({}); dirs.set(t, base) }
  const d = join(base, name)
  mkdirSync(d, { recursive: true })
  return d
}
const lmdb = async (t: Test, name: string): Promise<LmdbKv> => await LmdbKv.open(lmdbDir(t, name))

t.test('registry over LmdbKv', async t => { runRegistrySuite(t, lmdb) })
t.test('store contract: LmdbKv', async t => { runDeviceKvSuite(t, { open: lmdb, persistent: true }) })
t.test('store contract: MemoryKv', async t => { runDeviceKvSuite(t, { open: async () => new MemoryKv(), persistent: false }) })

t.test('memory backend and option validation', async t => {
  await t.rejects(DeviceRegistry.open({ watchBuffer: 0 }), { code: 'EF_INVALID_OPTION', message: /devices\.watchBuffer/ })
  await t.rejects(DeviceRegistry.open({ durability: 'fast' as never }), { code: 'EF_INVALID_OPTION' })
  await t.rejects(DeviceRegistry.open({ sink: {} as never }), { code: 'EF_INVALID_OPTION', message: /devices\.sink/ })
  const reg = await DeviceRegistry.open()
  await reg.upsertModel(thermostat as never)
  await reg.upsertDevice(device('t1'))
  await t.rejects(reg.setDesired('default', 't1', { target: 99 }), { code: 'EF_DEVICE_OUT_OF_RANGE' })
  t.equal(reg.getDevice('default', 't1')?.desired.target?.value, 20, 'memory transactions leave nothing behind on a refusal')
  await reg.close()
  t.throws(() => reg.getDevice('default', 't1'), { code: 'EF_DEVICE_REGISTRY_CLOSED' })
  await t.rejects(reg.upsertDevice(device('t2')), { code: 'EF_DEVICE_REGISTRY_CLOSED' })
})
