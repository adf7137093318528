/**
 * The DeviceKv contract (src/device/cloud/registry-store.ts) every backend
 * keeps, aedes-persistence style: each backend's test calls runDeviceKvSuite
 * with an opener (LmdbKv and MemoryKv in cloud-registry.test.ts, the cluster's
 * JetStream store in test/cluster/registry-store.test.ts).
 */
import type { Test } from 'tap'
import type { DeviceKv } from '../../src/device/cloud/registry-store.js'
import { DeviceModelNotFoundError } from '../../src/device/errors.js'
import type { KvOpener } from './registry-compliance.js'

export interface KvSuiteOptions {
  open: KvOpener
  /** The same name reopened after close() holds what was committed. */
  persistent: boolean
}

export function runDeviceKvSuite (t: Test, o: KvSuiteOptions): void {
  const fresh = async (t: Test, name = 'kv'): Promise<DeviceKv> => {
    const kv = await o.open(t, name)
    t.teardown(async () => { await kv.close() })
    return kv
  }

  t.test('an empty store', async t => {
    const kv = await fresh(t)
    t.equal(kv.get('devices', 'default/t1'), undefined)
    t.same(kv.entries('devices'), [])
    t.equal(kv.count('models'), 0)
  })

  t.test('put, remove and the result of a transaction; reads see the commit', async t => {
    const kv = await fresh(t)
    const r = await kv.transaction(tx => {
      tx.put('devices', 'default/a', { n: 1 })
      tx.put('devices', 'default/b', { n: 2 })
      tx.put('models', 'default/m', { p: [1, 2] })
      return 'done'
    })
    t.equal(r, 'done')
    t.same(kv.get('devices', 'default/a'), { n: 1 })
    t.equal(kv.count('devices'), 2)
    await kv.transaction(tx => { tx.remove('devices', 'default/a'); tx.put('devices', 'default/b', { n: 3 }) })
    t.equal(kv.get('devices', 'default/a'), undefined)
    t.same(kv.get('devices', 'default/b'), { n: 3 })
    t.equal(kv.count('devices'), 1)
    t.equal(await kv.transaction(tx => tx.get<{ n: number }>('devices', 'default/b')?.n), 3, 'a read-only transaction')
  })

  t.test('inside a transaction reads see its own writes (get and entries)', async t => {
    const kv = await fresh(t)
    await kv.transaction(tx => { tx.put('devices', 'x/1', 1); tx.put('devices', 'x/2', 2); tx.put('devices', 'y/1', 3) })
    const seen = await kv.transaction(tx => {
      tx.put('devices', 'x/3', 30)
      tx.remove('devices', 'x/1')
      tx.put('devices', 'x/2', 20)
      return { got: tx.get('devices', 'x/3'), gone: tx.get('devices', 'x/1'), list: tx.entries('devices', 'x/').map(e => [e.key, e.value]) }
    })
    t.same(seen, { got: 30, gone: undefined, list: [['x/2', 20], ['x/3', 30]] })
    t.same(kv.entries('devices').map(e => e.key), ['x/2', 'x/3', 'y/1'])
  })

  t.test('key order: strings lexicographic, numbers numeric; prefix filter', async t => {
    const kv = await fresh(t)
    await kv.transaction(tx => {
      for (const n of [10, 2, 1, 33]) tx.put('uploads', n, { n })
      for (const k of ['b/2', 'a/1', 'b/10', 'c/1']) tx.put('models', k, k)
    })
    t.same(kv.entries('uploads').map(e => e.key), [1, 2, 10, 33])
    t.same(kv.entries('models').map(e => e.key), ['a/1', 'b/10', 'b/2', 'c/1'])
    t.same(kv.entries('models', 'b/').map(e => e.value), ['b/10', 'b/2'])
    t.same(kv.entries('models', 'zz'), [])
  })

  t.test('values round-trip (nested, null, bytes) and a returned value is a copy', async t => {
    const kv = await fresh(t)
    const v = { a: { b: [1, 'two', null, true] }, at: null, payload: new Uint8Array([1, 2, 3]), f: 21.5 }
    await kv.transaction(tx => { tx.put('uploads', 1, v) })
    const got = kv.get<typeof v>('uploads', 1)
    t.same(got, v)
    t.ok(got?.payload instanceof Uint8Array, 'bytes stay bytes')
    if (got !== undefined) got.a.b.push('mutated')
    t.same(kv.get<typeof v>('uploads', 1)?.a.b, [1, 'two', null, true], 'mutating a read value does not change the store')
  })

  t.test('a callback that throws before its first write applies nothing and rethrows as is', async t => {
    const kv = await fresh(t)
    await kv.transaction(tx => { tx.put('meta', 'revision', 1) })
    await t.rejects(kv.transaction(tx => {
      if (tx.get('models', 'default/m') === undefined) throw new DeviceModelNotFoundError('default/m')
      tx.put('meta', 'revision', 2)
    }), { code: 'EF_DEVICE_MODEL_NOT_FOUND' })
    t.equal(kv.get('meta', 'revision'), 1)
    await kv.transaction(tx => { tx.put('meta', 'revision', 3) })
    t.equal(kv.get('meta', 'revision'), 3, 'the store works after a refused transaction')
  })

  t.test('concurrent read-modify-write transactions lose no update', async t => {
    const kv = await fresh(t)
    const n = 40
    await Promise.all(Array.from({ length: n }, async () => await kv.transaction(tx => {
      tx.put('meta', 'revision', (tx.get<number>('meta', 'revision') ?? 0) + 1)
    })))
    t.equal(kv.get('meta', 'revision'), n)
  })

  if (o.persistent) {
    t.test('what was committed is there after close and reopen', async t => {
      const kv = await o.open(t, 'p')
      await kv.transaction(tx => { tx.put('devices', 'default/a', { n: 1 }); tx.put('uploads', 7, { u: 7 }) })
      await kv.transaction(tx => { tx.remove('devices', 'default/a'); tx.put('devices', 'default/b', { n: 2 }) })
      await kv.close()
      const again = await fresh(t, 'p')
      t.same(again.entries('devices'), [{ key: 'default/b', value: { n: 2 } }])
      t.same(again.get('uploads', 7), { u: 7 })
    })
  }
}
