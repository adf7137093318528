/**
 * LmdbStore runs the store compliance suite in both durability modes on a
 * real data directory, with reopen (close + open the same directory) for the
 * persistence checks. Crash durability: lmdb-crash.test.ts.
 */
import t from 'tap'
import { LmdbStore, type LmdbStoreOptions } from '../../src/reliable/lmdb-store.js'
import type { ReliableStore } from '../../src/reliable/store.js'
import { BIG, runStoreCompliance } from './store-compliance.js'

for (const durability of ['sync', 'relaxed'] as const) {
  t.test(`durability ${durability}`, async t => {
    const options: LmdbStoreOptions = { durability, dedupWindow: 5, maxDeadLetters: 50 }
    runStoreCompliance(t, async t => LmdbStore.open(t.testdir(), options), {
      dedupWindow: 5,
      maxDeadLetters: 50,
      reopen: async (_t, store: ReliableStore) => {
        const s = store as LmdbStore
        await s.close()
        return LmdbStore.open(s.dir, options)
      }
    })
  })
}

t.test('default sizes (sync)', async t => {
  runStoreCompliance(t, async t => LmdbStore.open(t.testdir()), {
    reopen: async (_t, store: ReliableStore) => {
      await store.close()
      return LmdbStore.open((store as LmdbStore).dir)
    }
  })
})

t.test('options and open errors are typed', async t => {
  await t.rejects(LmdbStore.open(t.testdir(), { durability: 'fast' as 'sync' }), { code: 'EF_INVALID_OPTION' })
  await t.rejects(LmdbStore.open(t.testdir(), { dedupWindow: 0 }), { code: 'EF_INVALID_OPTION' })
  await t.rejects(LmdbStore.open(''), { code: 'EF_INVALID_OPTION' })
  const file = `${t.testdir({ 'not-a-dir': 'x' })}/not-a-dir`
  await t.rejects(LmdbStore.open(file), { code: 'EF_STORE' }, 'a file where the directory should be')
  const s = await LmdbStore.open(t.testdir(), { durability: 'relaxed' })
  t.equal(s.durability, 'relaxed')
  await s.close()
  const d = await LmdbStore.open(t.testdir())
  t.equal(d.durability, 'sync', 'sync is the default')
  await d.close()
})

t.test('a directory name with a dot is still a directory; modes can change between opens', async t => {
  const dir = `${t.testdir()}/data.v1`
  let s = await LmdbStore.open(dir, { durability: 'relaxed' })
  await s.append('p', [{ id: 'a', bytes: new Uint8Array([1]) }], BIG, 1)
  await s.close()
  s = await LmdbStore.open(dir, { durability: 'sync' })
  t.same(s.pending('p', 0, 10).map(r => r.id), ['a'])
  await s.close()
})

t.test('relaxed: the background flush runs and close flushes', async t => {
  const s = await LmdbStore.open(t.testdir(), { durability: 'relaxed', syncIntervalMs: 10 })
  for (let i = 0; i < 5; i++) {
    await s.append('p', [{ id: `m${i}`, bytes: new Uint8Array(8) }], BIG, 1)
    await new Promise(resolve => setTimeout(resolve, 15))
  }
  await s.close()
  t.pass('no errors from background syncs')
})

t.test('the in-memory dedup window is rebuilt when the committed counters differ (a commit that failed after its callback ran)', async t => {
  const dir = t.testdir()
  const s = await LmdbStore.open(dir, { dedupWindow: 1000 })
  t.teardown(() => s.close())
  const items = (from: number, n: number): Array<{ seq: number, id: string }> => Array.from({ length: n }, (_, i) => ({ seq: from + i, id: `id${from + i}` }))
  await s.commitInbound('hub', items(1, 200), 1)
  // Put the committed state back to "only ids 1..100 committed", as a failed commit of 101..200 would
  // have left it while the store's in-memory window already held them. A second handle on the same
  // environment writes underneath the store.
  const { open } = await import('lmdb')
  const raw = open({ path: dir, noSubdir: false, maxDbs: 16, overlappingSync: false })
  const inbox = raw.openDB<[number, number, number], string>('inbox', {})
  const blocks = raw.openDB<string, Array<string | number>>('idblocks', {})
  await raw.transaction(() => {
    inbox.putSync('hub', [100, 100, 0])
    blocks.putSync(['hub', 0], items(1, 100).map(x => x.id).join('\u0000')) // slots 0..99 hold id1..id100
    blocks.removeSync(['hub', 1])
  })
  const out = (await s.commitInbound('hub', [{ seq: 101, id: 'id150' }, { seq: 102, id: 'id50' }], 2)).outcome
  t.same(out, ['new', 'duplicate'], 'ids of the lost commit are new again; committed ones are still known')
  t.equal(s.receivedSeq('hub'), 102)
  await raw.close()
})
