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
