/**
 * Compaction of the cluster's device registry log (src/cluster/registry-snapshot*.ts)
 * on a real 3-server NATS cluster (R3), with a low `snapshotEvery`:
 *  - many writes: the log's message count stays bounded; a hub opened after
 *    compaction (from the snapshot) has the same view, and commits reach its
 *    listeners in the same order as on the writing hub;
 *  - transactions based before the snapshot (conflict, clean, dup, pieces
 *    before S) get the same verdicts on a hub started from the snapshot as on
 *    the hub that replayed the whole log;
 *  - a snapshot whose manifest is missing, one that fails its checksum, and
 *    chunks of an interrupted write are ignored; the hubs keep working and the
 *    next snapshot's prune removes the leftovers;
 *  - a hub cut off (its only NATS server killed) while the log is purged past
 *    it loads the snapshot when it is back, reaching the same view.
 */
import t from 'tap'
import type { Test } from 'tap'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { Packr } from 'msgpackr'
import type { ClusterConnection } from '../../src/cluster/connection.js'
import { JetStreamKv, type JetStreamKvOptions } from '../../src/cluster/registry-store.js'
import { keyOf } from '../../src/cluster/registry-verdict.js'
import type { RegistryLogMetrics } from '../../src/cluster/registry-snapshot-writer.js'
import type { DbName, SharedCommit } from '../../src/device/cloud/registry-store.js'
import { clusterConnections, needNats, startNats, until } from './helpers.js'

t.setTimeout(300_000)

const DBS: DbName[] = ['meta', 'models', 'devices', 'mappers', 'dispatch', 'uploads']
const packr = new Packr({ useRecords: false, moreTypes: false })

/** Counters as plain numbers (the real ones are prom-client counters on the hub's registry). */
function counters (): RegistryLogMetrics & { events: Record<string, number>, purgedTotal: number } {
  const m = {
    events: {} as Record<string, number>,
    purgedTotal: 0,
    snapshots: { inc: (l: { event: string }) => { m.events[l.event] = (m.events[l.event] ?? 0) + 1 } },
    purged: { inc: (n: number) => { m.purgedTotal += n } }
  }
  return m
}

function view (kv: JetStreamKv): unknown {
  return DBS.map(db => [db, kv.entries(db)])
}

t.test('registry log compaction', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns = clusterConnections(t, nats.urls, { replicas: 3, timeoutMs: 3000 })
  const connect = conns.open
  const open = async (t: Test, name: string, options: JetStreamKvOptions = {}, errors: Error[] = []): Promise<JetStreamKv> => {
    const kv = await JetStreamKv.open(await connect(name), err => { errors.push(err) }, options)
    t.teardown(() => kv.close())
    return kv
  }
  const logState = async (kv: JetStreamKv): Promise<{ messages: number, first_seq: number, last_seq: number }> =>
    (await (conns.all[0] as ClusterConnection).jsm.streams.info(kv.stream)).state
  const caughtUp = async (kvs: JetStreamKv[], seq: number): Promise<void> => { await until(`views at ${seq}`, () => kvs.every(k => k.applied >= seq)) }

  t.test('many writes: the log stays bounded; a new hub opens from the snapshot with the same view; commits in log order', async t => {
    const ma = counters()
    const a = await open(t, 'bounded', { snapshotEvery: 50, metrics: ma })
    for (let i = 1; i <= 400; i++) await a.transaction(tx => { tx.put('devices', `d${i % 37}`, { i }); tx.put('meta', 'revision', i) })
    await until('the snapshot at 400', () => a.snapshotSeq === 400)
    const log = await logState(a)
    // A capture offered while the previous write still runs is dropped (bounded memory), so the
    // older kept snapshot is 350 unless that one was skipped.
    t.ok(log.messages <= 3 * 50, `the log holds ${log.messages} entries after 400 writes (snapshotEvery 50)`)
    t.ok(log.first_seq >= 301, `purged below the older kept snapshot (log from ${log.first_seq})`)
    t.ok((ma.events.written ?? 0) >= 4, `snapshots written: ${ma.events.written ?? 0}`)
    t.equal(ma.purgedTotal, log.first_seq - 1, 'purged entries counted')

    const mb = counters()
    const b = await open(t, 'bounded', { snapshotEvery: 50, metrics: mb })
    t.equal(b.snapshotSeq, 400, 'the new hub started from the newest snapshot')
    t.equal(mb.events.loaded, 1, 'one snapshot loaded')
    t.same(view(b), view(a), 'same view as the hub that wrote everything')
    t.equal(b.get('meta', 'revision'), 400)

    const seen = { a: [] as unknown[], b: [] as unknown[] }
    a.onCommit((c: SharedCommit) => seen.a.push(c.writes))
    b.onCommit((c: SharedCommit) => seen.b.push(c.writes))
    await Promise.all([
      (async () => { for (let i = 0; i < 40; i++) await a.transaction(tx => { tx.put('devices', `a${i % 7}`, { i }) }) })(),
      (async () => { for (let i = 0; i < 40; i++) await b.transaction(tx => { tx.put('devices', `b${i % 7}`, { i }) }) })()
    ])
    await caughtUp([a, b], Math.max(a.applied, b.applied))
    t.equal(seen.a.length, 80, 'every commit reached hub A\'s listener')
    t.same(seen.b, seen.a, 'hub B\'s listener got the same commits in the same (log) order')
    t.same(view(b), view(a), 'and the views are still equal')
  })

  t.test('a transaction based before the snapshot: same verdict from the snapshot as from the whole log', async t => {
    const name = 'verdicts'
    const c = await connect(name)
    const a = await open(t, name, { snapshotEvery: 50 }) // opens on the empty log: replays everything
    const tx = `ef.${name}.registry.tx`
    const h = natsHeaders()
    h.set('Ef-Registry', '1')
    const pub = async (subject: string, data: Uint8Array): Promise<number> => (await c.js.publish(subject, data, { headers: h })).seq
    const txn = async (o: string, b: number, body: { r?: string[], p?: Array<[DbName, string | null]>, w: Array<[DbName, string, 0 | 1, unknown?]>, n?: unknown }, parts?: number[]): Promise<number> => {
      const full = { r: body.r ?? [], p: body.p ?? [], w: body.w, n: body.n ?? o }
      return await pub(tx, packr.pack({ f: 1, i: `${o}-attempt`, o, b, ...(parts === undefined ? { body: packr.pack(full) } : { parts }) }))
    }
    const k = (n: number): string => `k${n}`
    for (let n = 1; n <= 96; n++) {
      t.equal(await txn(`op-${n}`, n - 1, { w: [['devices', k(n), 1, n]] }), n)
      if (n === 50) await until('the snapshot at 50', () => a.snapshotSeq === 50)
    }
    // A large transaction's pieces before the snapshot, its transaction message after it.
    const big = packr.pack({ r: [], p: [], w: [['devices', 'big', 1, 'x'.repeat(2000)]], n: 'big' })
    t.equal(await pub(`ef.${name}.registry.part`, big.subarray(0, 1000)), 97)
    t.equal(await pub(`ef.${name}.registry.part`, big.subarray(1000)), 98)
    t.equal(await txn('op-99', 98, { w: [['devices', k(99), 1, 99]] }), 99)
    t.equal(await txn('op-100', 99, { w: [['devices', k(100), 1, 100]] }), 100)
    await until('the snapshot at 100', () => a.snapshotSeq === 100)
    t.equal((await logState(a)).first_seq, 51, 'the log below the older snapshot is purged')

    const b = await open(t, name, { snapshotEvery: 50 })
    t.equal(b.snapshotSeq, 100, 'hub B starts from the snapshot at 100')
    t.equal(b.applied, 100)
    const notes = { a: [] as unknown[], b: [] as unknown[] }
    a.onCommit(x => notes.a.push(x.note))
    b.onCommit(x => notes.b.push(x.note))
    // All based before 100 (the snapshot), all at seqs after it.
    await txn('conflict', 95, { r: [keyOf('devices', k(96))], w: [['devices', 'c1', 1, 1]] }) // k96 written at 96 > base 95
    await txn('clean', 95, { r: [keyOf('devices', k(10))], w: [['devices', 'clean', 1, 1]] })
    await txn('op-99', 100, { w: [['devices', 'again', 1, 1]] }) // its operation committed at 99: 'dup'
    await txn('big', 96, { w: [] }, [97, 98]) // pieces from before the snapshot
    await txn('prefix', 99, { p: [['devices', 'k10']], w: [['devices', 'c2', 1, 1]] }) // k100 (at 100) is under 'k10'
    const last = await txn('after', 104, { r: [keyOf('devices', 'clean')], w: [['devices', 'after', 1, 1]] })
    await caughtUp([a, b], last)
    t.same(notes.a, ['clean', 'big', 'after'], 'the hub that replayed the whole log: conflict, dup and prefix conflict refused')
    t.same(notes.b, notes.a, 'the hub started from the snapshot: the same verdicts')
    t.same(view(b), view(a), 'and the same view')
    t.equal(b.get('devices', 'big'), 'x'.repeat(2000), 'the large transaction was assembled from pieces kept in the snapshot')
    const c2 = await open(t, name, { snapshotEvery: 50 })
    t.same(view(c2), view(a), 'a third hub opened afterwards agrees')
  })

  t.test('missing manifest, bad checksum, interrupted write: ignored; the hubs keep working', async t => {
    const name = 'broken'
    const c = await connect(name)
    const ma = counters()
    const a = await open(t, name, { snapshotEvery: 50, metrics: ma })
    for (let i = 1; i <= 100; i++) await a.transaction(tx => { tx.put('devices', `d${i % 11}`, { i }) })
    await until('the snapshot at 100', () => a.snapshotSeq === 100)
    const snap = a.snapshotStream
    const p = `ef.${name}.regsnap`
    // The newest snapshot loses its manifest.
    const m100 = await c.jsm.streams.getMessage(snap, { last_by_subj: `${p}.100.m` })
    t.ok(m100 !== null, 'snapshot 100 has a manifest')
    await c.jsm.streams.deleteMessage(snap, (m100 as { seq: number }).seq)
    // A snapshot at 99 whose chunk does not match its manifest's checksum.
    await c.js.publish(`${p}.99.c.0`, packr.pack({ junk: true }))
    await c.js.publish(`${p}.99.m`, packr.pack({ f: 1, seq: 99, chunks: 1, bytes: 12, sha256: '00', at: 0 }))
    // A writer killed after its first chunk of the snapshot at 150 (same Msg-Id as a real writer).
    await c.js.publish(`${p}.150.c.0`, new Uint8Array(64), { msgID: 'ef-regsnap-150-0' })

    const errors: Error[] = []
    const mb = counters()
    const b = await open(t, name, { snapshotEvery: 50, metrics: mb }, errors)
    t.equal(b.snapshotSeq, 50, 'hub B fell back to the older complete snapshot')
    t.equal(mb.events.invalid, 1, 'the snapshot failing its checksum was counted invalid')
    t.ok(errors.some(e => (e as { code?: string }).code === 'EF_REGISTRY_SNAPSHOT' && /99/.test(e.message)), 'and reported with its code')
    t.same(view(b), view(a), 'same view (snapshot 50 + the log after it)')

    for (let i = 0; i < 60; i++) await (i % 2 === 0 ? a : b).transaction(tx => { tx.put('devices', `e${i % 5}`, { i }) })
    await caughtUp([a, b], 160)
    t.same(view(b), view(a), 'both hubs keep writing and agree')
    for (let i = 0; i < 45; i++) await a.transaction(tx => { tx.put('devices', `f${i % 5}`, { i }) })
    let subjects: string[] = []
    const seqs = (): number[] => [...new Set(subjects.map(s => Number(s.split('.')[3])))].sort((x, y) => x - y)
    await until('the snapshot at 200, pruned', async () => {
      subjects = Object.keys((await c.jsm.streams.info(snap, { subjects_filter: `${p}.>` })).state.subjects ?? {})
      return subjects.includes(`${p}.200.m`) && !seqs().includes(50)
    })
    // The writer knows only that 99 has a manifest (checking it means reading it): it is kept
    // as the fallback, and the log is kept from 100.
    t.same(seqs(), [99, 200], `kept: the two newest with a manifest; the interrupted 150 and the older ones pruned (subjects: ${subjects.join(' ')})`)
    t.equal((ma.events.written ?? 0) + (mb.events.written ?? 0), 3, 'snapshots written: 50, 100, then 200 (150 was left to the "killed" writer)')
    const d = await open(t, name, { snapshotEvery: 50 })
    t.equal(d.snapshotSeq, 200)
    await caughtUp([d], a.applied)
    t.same(view(d), view(a), 'a hub opened now agrees')
  })


})
