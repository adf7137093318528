/**
 * Compaction of the cluster's device registry log with real hub processes
 * (fixtures/registry-kv.mjs, dist/) on a real 3-server NATS cluster:
 *  - a hub process SIGSTOPped while the log is purged past it loads the
 *    snapshot when it runs again (not a silent hole), reaching the same view;
 *  - a hub process SIGKILLed while it writes a snapshot leaves chunks without
 *    a manifest: ignored by a hub that opens next, the other hubs keep
 *    working, and the next snapshot's prune removes them.
 * Needs `npm run build` (dist/) first, as the failover tests.
 */
import t from 'tap'
import type { Test } from 'tap'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { ClusterConnection } from '../../src/cluster/connection.js'
import { JetStreamKv, type JetStreamKvOptions } from '../../src/cluster/registry-store.js'
import type { DbName } from '../../src/device/cloud/registry-store.js'
import { Restartable } from '../reliable/chaos-procs.js'
import { clusterConnections, needNats, startNats, until } from './helpers.js'

t.setTimeout(240_000)

const FIXTURE = fileURLToPath(new URL('./fixtures/registry-kv.mjs', import.meta.url))
const DBS: DbName[] = ['meta', 'models', 'devices', 'mappers', 'dispatch', 'uploads']
const hash = (kv: JetStreamKv): string => createHash('sha256').update(JSON.stringify(DBS.map(db => [db, kv.entries(db)]))).digest('hex')

t.test('registry log compaction with hub processes', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns = clusterConnections(t, nats.urls, { replicas: 3, timeoutMs: 3000 })
  const connect = conns.open
  const open = async (t: Test, name: string, options: JetStreamKvOptions): Promise<JetStreamKv> => {
    const kv = await JetStreamKv.open(await connect(name), () => {}, options)
    t.teardown(() => kv.close())
    return kv
  }
  const child = (t: Test, name: string, cfg: Record<string, unknown>): Restartable => {
    const p = new Restartable(name, FIXTURE, () => [JSON.stringify({ servers: nats.urls, name, ...cfg })])
    t.teardown(async () => { await p.kill() })
    return p
  }

  t.test('regression (reader hung at the purge point: close() awaited inside its own loop): a hub process stopped while the log is purged past it loads the snapshot when it runs again', async t => {
    const name = 'stopped'
    const a = await open(t, name, { snapshotEvery: 50 })
    await a.transaction(tx => { tx.put('devices', 'x', 0) })
    const b = child(t, name, { every: 50 })
    const ready = b.waitFor(m => m.type === 'state' && m.applied === a.applied, 60_000)
    b.start()
    await ready
    b.signal('SIGSTOP')
    // Its reader's pull request (512 messages, expires after 2 s) must lapse first: until then the
    // server would push the next entries into the stopped process's socket, and it would read
    // them all when it runs again without ever meeting the purge.
    await new Promise(resolve => setTimeout(resolve, 3000))
    for (let i = 1; i <= 160; i++) await a.transaction(tx => { tx.put('devices', `d${i % 13}`, { i }); tx.put('meta', 'revision', i) })
    await until('the snapshot at 150', () => a.snapshotSeq === 150)
    const first = (await (conns.all[0] as ClusterConnection).jsm.streams.info(a.stream)).state.first_seq
    t.ok(first > 2, `the log now starts at ${first}, past the stopped hub (at 1)`)
    const same = b.waitFor(m => m.type === 'state' && m.applied === a.applied && m.hash === hash(a), 30_000)
    b.signal('SIGCONT')
    const s = await same.catch(err => {
      t.comment(JSON.stringify(b.notes.filter(m => m.type !== 'state' && m.status !== 'next').slice(-30)), JSON.stringify(b.notes.at(-1)), `A at ${a.applied}, ${b.notes.length} lines`, b.stderr)
      throw err
    })
    t.ok(Number(s.snap) >= 150, `the hub process reached the same view through the snapshot at ${String(s.snap)}`)
    t.ok(b.notes.some(m => m.type === 'error' && /behind the log's purge point/.test(String(m.message))), 'and reported that it fell behind (its watchers missed changes)')
    t.notOk(b.notes.some(m => m.type === 'error' && /expected seq/.test(String(m.message))), 'no unexplained hole')
  })

  t.test('a hub process SIGKILLed while writing a snapshot leaves the others working', async t => {
    const name = 'killed'
    const c = await connect(name)
    const a = await open(t, name, { snapshotEvery: 0 }) // writes no snapshot: the killed process is the only writer of 50
    // 13 keys of 20 KB in 1 KB chunks: the snapshot at 50 takes ≈ 260 publishes; killed 20 ms into it.
    const k = child(t, name, { every: 50, chunkBytes: 1024, pad: 20_000, writes: 60, killOnSnapshotWrite: true, killAfterMs: 20 })
    const writing = k.waitFor(m => m.type === 'writing', 60_000)
    k.start()
    t.equal((await writing).seq, 50, 'the process started writing the snapshot at 50')
    await until('the process is gone', () => k.child?.signalCode === 'SIGKILL')
    const p = `ef.${name}.regsnap`
    const subjects = async (): Promise<string[]> => Object.keys((await c.jsm.streams.info(a.snapshotStream, { subjects_filter: `${p}.>` })).state.subjects ?? {})
    t.equal(await c.jsm.streams.getMessage(a.snapshotStream, { last_by_subj: `${p}.50.m` }), null, `no manifest for 50 (${(await subjects()).length} chunks written before the kill)`)

    const log = (await c.jsm.streams.info(a.stream)).state.last_seq
    await until('hub A applied what the process wrote', () => a.applied >= log)
    for (let i = 0; i < 5; i++) await a.transaction(tx => { tx.put('devices', `a${i}`, i) })
    t.pass('hub A keeps writing')
    const loaded: string[] = []
    const metrics = { snapshots: { inc: (l: { event: string }) => { loaded.push(l.event) } }, purged: { inc: () => {} } }
    const b = await open(t, name, { snapshotEvery: 50, metrics })
    t.notOk(loaded.includes('loaded'), 'a hub opened now ignores the half-written snapshot (replays the log)')
    t.equal(hash(b), hash(a), 'same view')
    while (b.applied < 100) await b.transaction(tx => { tx.put('devices', `b${b.applied % 5}`, b.applied) })
    // Hub B may write 50 itself while it replays (if the process died before its chunk 0 was
    // stored): then 50 is complete and kept. What must not remain is a snapshot without manifest.
    let left: string[] = []
    await until('the snapshot at 100, and no chunks without a manifest', async () => {
      const s = await subjects()
      const bySeq = new Map<string, string[]>()
      for (const x of s) { const q = x.split('.')[3] as string; bySeq.set(q, [...(bySeq.get(q) ?? []), x]) }
      left = s
      return s.includes(`${p}.100.m`) && [...bySeq.values()].every(v => v.some(x => x.endsWith('.m')))
    })
    t.pass(`the next snapshot was written and the chunks of the interrupted one removed (left: ${[...new Set(left.map(x => x.split('.')[3]))].join(', ')})`)
    const d = await open(t, name, { snapshotEvery: 50 })
    t.equal(d.snapshotSeq, 100, 'a hub opened afterwards starts from the snapshot at 100')
    await until('views equal', () => d.applied === a.applied && b.applied === a.applied)
    t.equal(hash(d), hash(a), 'same view')
  })
})
