/**
 * The registry transaction's working copy (src/device/cloud/registry-txn.ts,
 * issue 16): a group commit of many reports reads and writes each device
 * once, with the same committed outcome as one report per transaction.
 * Real LmdbKv and MemoryKv; the counting wrapper only observes the calls the
 * registry makes on the store (the collaborator not under test).
 */
import t from 'tap'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import { LmdbKv, MemoryKv, type DbName, type DeviceKv, type KvTxn } from '../../src/device/cloud/registry-store.js'
import { workingTxn } from '../../src/device/cloud/registry-txn.js'
import type { StoredDevice } from '../../src/device/cloud/registry-types.js'
import { DEVICE_GROUP, twinResource } from '../../src/device/protocol.js'
import { ManualClock } from '../../src/util/clock.js'
import { Registry } from '../../src/ops/metrics.js'
import { RecordingSink, device, metric, settle, thermostat } from './cloud-helpers.js'

interface TxnCalls { gets: Map<string, number>, puts: Map<string, number> }

/** A real store whose transactions record how often each `db/key` was read and written. */
function counting (kv: DeviceKv): { kv: DeviceKv, txns: TxnCalls[] } {
  const txns: TxnCalls[] = []
  const bump = (m: Map<string, number>, db: DbName, key: string | number): void => { m.set(`${db}/${String(key)}`, (m.get(`${db}/${String(key)}`) ?? 0) + 1) }
  const wrapped: DeviceKv = {
    get: (db, key) => kv.get(db, key),
    entries: (db, prefix) => kv.entries(db, prefix),
    count: db => kv.count(db),
    close: async () => { await kv.close() },
    transaction: async fn => await kv.transaction(tx => {
      const calls: TxnCalls = { gets: new Map(), puts: new Map() }
      txns.push(calls)
      const spy: KvTxn = {
        get: (db, key) => { bump(calls.gets, db, key); return tx.get(db, key) },
        put: (db, key, value) => { bump(calls.puts, db, key); tx.put(db, key, value) },
        remove: (db, key) => { tx.remove(db, key) },
        entries: (db, prefix) => tx.entries(db, prefix)
      }
      return fn(spy)
    })
  }
  return { kv: wrapped, txns }
}

const NAMES = ['t1', 't2', 't3']

/** 300 reports, 3 devices interleaved; every 10th also sets an expected `target` (a merge: revision bump + snapshot). */
function reports (): Array<[string, Envelope]> {
  const out: Array<[string, Envelope]> = []
  for (let i = 0; i < 300; i++) {
    const name = NAMES[i % 3] as string
    const edgeSeq = Math.floor(i / 3) + 1
    const content = {
      namespace: 'default',
      name,
      edgeSeq,
      baseRevision: 0,
      reported: { temp: { value: i / 10, timestamp: 1000 + i } },
      ...(i % 10 === 0 ? { expected: { target: { value: 5 + (i % 20), timestamp: 2000 + i } } } : {})
    }
    out.push([name, newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation: 'report', resource: twinResource('default', name), content })])
  }
  return out
}

async function openRegistry (kv: DeviceKv, clock: ManualClock, metricsRegistry = new Registry()): Promise<{ reg: DeviceRegistry, sink: RecordingSink }> {
  const sink = new RecordingSink()
  const reg = await DeviceRegistry.open({ kv, sink, clock, metricsRegistry })
  await reg.upsertModel(thermostat as never)
  for (const n of NAMES) await reg.upsertDevice(device(n, 'edge-1'))
  await settle()
  sink.take()
  return { reg, sink }
}

const stored = (kv: DeviceKv): StoredDevice[] => NAMES.map(n => kv.get<StoredDevice>('devices', `default/${n}`) as StoredDevice)

t.test('a group commit of many reports decodes and writes each device once per transaction (was once per report)', async t => {
  const clock = new ManualClock(1_000_000)
  const dir = t.testdir()
  const lmdb = await LmdbKv.open(dir + '/batched', 'sync')
  const { kv, txns } = counting(lmdb)
  const metrics = new Registry()
  const { reg, sink } = await openRegistry(kv, clock, metrics)
  t.teardown(() => reg.close())
  txns.length = 0

  for (const [i, [, env]] of reports().entries()) await reg.acceptUpstream('edge-1', env, i + 1)
  await reg.upstreamDurable('edge-1')
  const commits = await metric(metrics, 'edgefabric_hub_device_upstream_commits_total')
  t.ok(commits >= 1 && commits <= 3, `300 reports in ${commits} transaction(s)`)
  const batches = txns.filter(c => [...c.gets.keys()].some(k => k.startsWith('devices/')))
  t.equal(batches.length, commits, 'one store transaction per group commit')
  for (const c of batches) {
    for (const n of NAMES) {
      t.ok((c.gets.get(`devices/default/${n}`) ?? 0) <= 1, `${n} read from the store at most once per transaction (${c.gets.get(`devices/default/${n}`) ?? 0})`)
      t.ok((c.puts.get(`devices/default/${n}`) ?? 0) <= 1, `${n} written at most once per transaction (${c.puts.get(`devices/default/${n}`) ?? 0})`)
    }
    t.ok((c.gets.get('models/default/thermostat') ?? 0) <= 1, 'the model read once per transaction')
  }

  // the same reports one per transaction (each its own commit: the outcome before the working copy)
  const one = await openRegistry(new MemoryKv(), new ManualClock(1_000_000))
  t.teardown(() => one.reg.close())
  for (const [, env] of reports()) await one.reg.handleUpstream('edge-1', env)
  t.same(NAMES.map(n => reg.getDevice('default', n)), NAMES.map(n => one.reg.getDevice('default', n)), 'same devices (reported, desired and their revisions, edgeSeq, revision) as one report per transaction')
  await settle()
  const lastSnapshots = (s: RecordingSink): Map<string, unknown> => new Map(s.take().filter(x => x.op === 'update').map(x => [x.resource, [x.version, x.content]]))
  const batched = lastSnapshots(sink)
  t.equal(batched.size, 3, 'the merges sent snapshots of every device')
  t.same(batched, lastSnapshots(one.sink), 'the last snapshot of each device is the same')

  // what the working copy wrote is what was committed: a reopen reads the same devices
  const before = stored(lmdb)
  await reg.close()
  const again = await LmdbKv.open(dir + '/batched', 'sync')
  t.teardown(() => again.close())
  t.same(stored(again), before, 'durable: the committed devices after a reopen')
  t.equal(before.find(d => d.spec.name === 't1')?.lastEdgeSeq, 100)
})

t.test('the working copy: reads see the transaction\'s writes; one put per key reaches the store; removals and range reads', async t => {
  for (const [name, open] of [['lmdb', async () => await LmdbKv.open(t.testdir() + '/wc', 'sync')], ['memory', async () => new MemoryKv()]] as const) {
    const { kv, txns } = counting(await open())
    t.teardown(() => kv.close())
    await kv.transaction(tx => { tx.put('devices', 'a/1', { n: 0 }); tx.put('meta', 'revision', 1) })
    txns.length = 0
    const out = await kv.transaction(store => {
      const tx = workingTxn(store)
      const first = tx.get<{ n: number }>('devices', 'a/1')
      const second = tx.get<{ n: number }>('devices', 'a/1')
      tx.put('devices', 'a/1', { n: 1 })
      tx.put('devices', 'a/1', { n: 2 })
      tx.put('devices', 'a/2', { n: 20 })
      const read = tx.get<{ n: number }>('devices', 'a/1')?.n
      tx.put('devices', 'a/3', { n: 30 })
      tx.remove('devices', 'a/3')
      const gone = tx.get('devices', 'a/3')
      const range = tx.entries<{ n: number }>('devices', 'a/').map(e => [e.key, e.value.n])
      tx.put('devices', 'a/2', { n: 21 })
      tx.put('meta', 'revision', 2) // not kept: straight to the store
      tx.flush()
      return { same: first === second, read, gone, range }
    })
    t.same(out, { same: true, read: 2, gone: undefined, range: [['a/1', 2], ['a/2', 20]] }, `${name}: read-your-writes, a removal, a range read`)
    t.same(kv.entries<{ n: number }>('devices').map(e => [e.key, e.value.n]), [['a/1', 2], ['a/2', 21]], `${name}: the last value of each key committed`)
    t.equal(kv.get('meta', 'revision'), 2)
    const c = txns[0] as TxnCalls
    t.equal(c.gets.get('devices/a/1'), 1, `${name}: one store read of a key read twice`)
    t.equal(c.puts.get('devices/a/1'), 1, `${name}: a key put twice is written once before the range read`)
    t.equal(c.puts.get('devices/a/2'), 2, `${name}: written at the range read, and again for the later put`)
    t.equal(c.puts.get('devices/a/3'), undefined, `${name}: a removed key's put never reaches the store`)
  }
})

t.test('a store write failing mid-transaction: what was written before it is committed, as without the working copy', async t => {
  const lmdb = await LmdbKv.open(t.testdir() + '/throw', 'sync')
  let failDispatch = false
  // the real store; only its dispatch write can be made to fail (as a putSync error would)
  const kv: DeviceKv = {
    get: (db, key) => lmdb.get(db, key),
    entries: (db, prefix) => lmdb.entries(db, prefix),
    count: db => lmdb.count(db),
    close: async () => { await lmdb.close() },
    transaction: async fn => await lmdb.transaction(tx => fn({
      ...tx,
      put: (db, key, value) => {
        if (db === 'dispatch' && failDispatch) throw new Error('injected: dispatch write failed')
        tx.put(db, key, value)
      }
    }))
  }
  const reg = await DeviceRegistry.open({ kv, clock: new ManualClock(5000) })
  t.teardown(() => reg.close())
  await reg.upsertModel(thermostat as never)
  await reg.upsertDevice(device('t1', 'edge-1'))
  const before = lmdb.get<StoredDevice>('devices', 'default/t1')?.revision as number
  failDispatch = true
  // saveDevice puts the device, then queues its snapshot: the dispatch write throws after the device write
  await t.rejects(reg.upsertDevice({ ...device('t1', 'edge-1'), labels: { a: 'b' } }), { code: 'EF_STORE' })
  failDispatch = false
  const after = lmdb.get<StoredDevice>('devices', 'default/t1')
  t.ok(after !== undefined && after.revision > before, 'the device record written before the failing write was committed (lmdb-js commits a throwing callback\'s writes)')
  t.same(after?.spec.labels, { a: 'b' })
})
