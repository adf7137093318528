/**
 * Compliance, part 3: inbox dedup, resources (MetaManager), dead-letter log,
 * persistence of everything across reopen, close semantics.
 */
import type { Test } from 'tap'
import type { InboundItem, ReliableStore } from '../../src/reliable/store.js'
import { b, BIG, CODE, hex, seqs, view, type Harness } from './store-compliance.js'

export function runInboxCompliance (t: Test, h: Harness): void {
  t.test('commitInbound: dedup by seq and by id, receivedSeq raised', async t => {
    let s = await h.open(t)
    t.equal(s.receivedSeq('hub'), 0)
    t.same(await s.commitInbound('hub', [{ seq: 1, id: 'a' }, { seq: 2, id: 'b' }, { seq: 3, id: 'a' }], 1), { outcome: ['new', 'new', 'duplicate'] }, 'same id in one batch')
    t.equal(s.receivedSeq('hub'), 3, 'raised to the highest seq given, duplicates included')
    t.same(await s.commitInbound('hub', [{ seq: 2, id: 'zz' }, { seq: 3, id: 'yy' }, { seq: 4, id: 'b' }, { seq: 5, id: 'c' }], 2), { outcome: ['duplicate', 'duplicate', 'duplicate', 'new'] },
      'seq ≤ receivedSeq is a duplicate whatever its id; a new seq with a seen id is a duplicate')
    t.equal(s.receivedSeq('other'), 0, 'per peer')
    t.same(await s.commitInbound('other', [{ seq: 1, id: 'a' }], 2), { outcome: ['new'] }, 'ids are remembered per peer')
    s = await h.reopen(t, s)
    t.equal(s.receivedSeq('hub'), 5)
    t.same(await s.commitInbound('hub', [{ seq: 9, id: 'c' }, { seq: 8, id: 'd' }], 3), { outcome: ['duplicate', 'new'] }, 'the id window survives reopen; out-of-order seqs above receivedSeq are accepted')
    t.equal(s.receivedSeq('hub'), 9)
    t.same(await s.commitInbound('hub', [], 3), { outcome: [] })
    t.equal(s.receivedSeq('hub'), 9, 'never lowered')
  })

  t.test('hasInboundId: what the id window holds, per peer, across reopen', async t => {
    let s = await h.open(t)
    t.equal(s.hasInboundId('hub', 'a'), false, 'empty store')
    await s.commitInbound('hub', [{ seq: 1, id: 'a' }, { seq: 2, id: 'b' }], 1)
    t.equal(s.hasInboundId('hub', 'a'), true)
    t.equal(s.hasInboundId('hub', 'b'), true)
    t.equal(s.hasInboundId('other', 'a'), false, 'per peer')
    t.equal(s.hasInboundId('hub', 'c'), false)
    s = await h.reopen(t, s)
    t.equal(s.hasInboundId('hub', 'b'), true, 'after reopen, before any inbound commit')
    await s.commitInbound('hub', [{ seq: 3, id: 'c' }], 2)
    t.equal(s.hasInboundId('hub', 'c'), true)
    t.throws(() => s.hasInboundId('', 'a'), { code: 'EF_INVALID_OPTION' }, 'the peer is validated')
  })

  t.test('commitInbound: the id window is bounded per peer', async t => {
    const w = h.opts.dedupWindow ?? 10_000
    const s = await h.open(t)
    const items = (from: number, n: number, prefix = 'id'): InboundItem[] => Array.from({ length: n }, (_, i) => ({ seq: from + i, id: `${prefix}${from + i}` }))
    await s.commitInbound('p', items(1, w + 3), 1)
    // New seqs carrying old ids: the newest w ids are remembered, the oldest 3 fell out of the window.
    const ids = [w + 1, w + 2, w + 3, 1, 2, 3]
    const again = (await s.commitInbound('p', ids.map((n, i) => ({ seq: w + 10 + i, id: `id${n}` })), 2)).outcome
    t.same(again, ['duplicate', 'duplicate', 'duplicate', 'new', 'new', 'new'], `window of ${w} ids`)
  })

  t.test('commitInbound: the id window stays exact across many commits and reopens', async t => {
    // Enough ids to cross several of LmdbStore's id blocks (128 ids each), committed in uneven groups,
    // with reopens in between: the window must be exactly the newest w ids whatever the layout.
    const w = h.opts.dedupWindow ?? 10_000
    let s = await h.open(t)
    const total = w + 300
    const sizes = [1, 7, 127, 128, 129, 3, 250]
    let next = 1
    let k = 0
    while (next <= total) {
      const n = Math.min(sizes[k++ % sizes.length] as number, total - next + 1)
      const out = (await s.commitInbound('p', Array.from({ length: n }, (_, i) => ({ seq: next + i, id: `id${next + i}` })), 1)).outcome
      if (out.some(x => x !== 'new')) t.fail(`ids ${next}..${next + n - 1} are all new`)
      next += n
      if (k % 3 === 0) s = await h.reopen(t, s)
    }
    s = await h.reopen(t, s)
    const probe = [total, total - w + 1, total - w, 1]
    const got = (await s.commitInbound('p', probe.map((n, i) => ({ seq: total + 10 + i, id: `id${n}` })), 2)).outcome
    t.same(got, ['duplicate', 'duplicate', 'new', 'new'], `the newest ${w} ids are remembered, older ones are not`)
    s = await h.reopen(t, s)
    const after = (await s.commitInbound('p', [{ seq: total + 20, id: `id${total - w}` }, { seq: total + 21, id: `id${total - w + 1}` }], 3)).outcome
    // The probe added id(total-w) and id1, pushing out the two oldest: id(total-w+1) and id(total-w+2).
    t.same(after, ['duplicate', 'new'], 'ids accepted as new enter the window and push the oldest out, across a reopen')
  })

  t.test('commitInbound: resources, versions, tombstones', async t => {
    let s = await h.open(t)
    const up = (seq: number, key: string, version: string | undefined, op = 'update', bytes = b(seq)): InboundItem =>
      ({ seq, id: `i${seq}`, key, ...(version === undefined ? {} : { version }), op, ...(op === 'delete' ? {} : { bytes }) })
    let seq = 0
    const one = async (key: string, version: string | undefined, op?: string): Promise<string | undefined> =>
      (await s.commitInbound('hub', [up(++seq, key, version, op)], 100 + seq)).outcome[0]

    t.equal(await one('ns/a', '9'), 'new')
    t.same({ ...s.getResource('ns/a'), bytes: hex(s.getResource('ns/a')?.bytes) }, { key: 'ns/a', version: '9', op: 'update', bytes: '01', deleted: false, updatedAt: 101 })
    t.equal(await one('ns/a', '10'), 'new', "'10' > '9'")
    t.equal(await one('ns/a', '9'), 'stale', 'older')
    t.equal(await one('ns/a', '10'), 'stale', 'equal')
    t.equal(s.getResource('ns/a')?.version, '10', 'stale items do not touch the resource')
    t.equal(await one('ns/a', '10', 'delete'), 'new', 'a delete wins a tie')
    t.same(s.getResource('ns/a'), { key: 'ns/a', version: '10', op: 'delete', bytes: undefined, deleted: true, updatedAt: 105 }, 'tombstone')
    t.equal(await one('ns/a', '10'), 'stale', 'an update cannot resurrect a tombstone of the same version')
    t.equal(await one('ns/a', '3'), 'stale', 'nor an older one')
    s = await h.reopen(t, s)
    t.equal(await one('ns/a', '8'), 'stale', 'tombstones survive reopen')
    t.equal(await one('ns/a', '11'), 'new', 'a newer update re-creates it')
    t.match(s.getResource('ns/a'), { version: '11', deleted: false })
    t.equal(await one('ns/b', undefined), 'new', 'unversioned: arrival order')
    t.equal(await one('ns/b', undefined), 'new')
    t.same(await s.commitInbound('hub', [{ seq: ++seq, id: 'nokey' }], 1), { outcome: ['new'] }, 'no key: no resource')

    // Mixed batch: stale and new in one call, later items see earlier ones.
    const r = await s.commitInbound('hub', [up(100, 'ns/c', '2'), up(101, 'ns/c', '1'), up(102, 'ns/c', '3', 'delete'), up(103, 'ns/d', '1')], 9)
    t.same(r.outcome, ['new', 'stale', 'new', 'new'])
    t.equal(s.receivedSeq('hub'), 103)
    t.equal(s.getResource('missing'), undefined)
  })

  t.test('resources: get and list by prefix, in key order', async t => {
    let s = await h.open(t)
    const keys = ['b/2', 'a/1', 'b/1', 'b/10', 'b', 'bb/1', 'b/\u{1F600}', 'b/\uFFFF', 'c']
    await s.commitInbound('hub', keys.map((key, i) => ({ seq: i + 1, id: `i${i}`, key, version: '1', op: 'update', bytes: b(i) })), 1)
    s = await h.reopen(t, s)
    t.same(s.listResources().map(r => r.key), ['a/1', 'b', 'b/1', 'b/10', 'b/2', 'b/\uFFFF', 'b/\u{1F600}', 'bb/1', 'c'], 'code-point (UTF-8 byte) order')
    t.same(s.listResources('b/').map(r => r.key), ['b/1', 'b/10', 'b/2', 'b/\uFFFF', 'b/\u{1F600}'])
    t.same(s.listResources('b/', 2).map(r => r.key), ['b/1', 'b/10'])
    t.same(s.listResources('zz'), [])
    t.same(s.listResources('', 0), [])
    t.same(hex(s.getResource('b/10')?.bytes), '03')
  })

  t.test('dead letters: newest first, per peer, limit, bounded', async t => {
    const max = h.opts.maxDeadLetters ?? 100_000
    let s = await h.open(t)
    const n = Math.min(max + 5, 2000)
    await s.append('p', Array.from({ length: n }, (_, i) => ({ id: `m${i}`, bytes: b(1), expiresAt: i })), BIG, 1)
    await s.append('q', [{ id: 'q1', bytes: b(1), expiresAt: 0 }], BIG, 1)
    await s.expire('p', 1e9)
    await s.expire('q', 1e9)
    s = await h.reopen(t, s)
    const all = s.deadLetters()
    t.equal(all.length, Math.min(n + 1, max), `at most maxDeadLetters (${max}) are kept`)
    t.match(all[0], { peer: 'q', seq: 1, id: 'q1', code: 'EF_TTL_EXPIRED', reason: /expired/, at: 1e9, size: 1 }, 'newest first')
    t.equal(all[1]?.seq, n, 'then the newest of p')
    t.equal(all[all.length - 1]?.seq, n + 1 - Math.min(n + 1, max) + 1, 'the oldest were evicted')
    t.same(s.deadLetters('q').map(d => d.id), ['q1'])
    t.same(s.deadLetters('p', 2).map(d => d.seq), [n, n - 1])
    t.same(s.deadLetters('nobody'), [])
    t.same(s.deadLetters(undefined, 0), [])
  })

  t.test('everything persists across reopen', { skip: h.persistent ? false : 'store is not persistent' }, async t => {
    let s = await h.open(t)
    await s.append('p', [
      { id: 'a', bytes: b(1, 2, 3), key: 'k', version: '7', op: 'update', expiresAt: 5000 },
      { id: 'b', bytes: b(4) },
      { id: 'c', bytes: b(5), key: 'k2', version: '1' }
    ], BIG, 3)
    await s.ack('p', 2)
    await s.reject('p', 3, 9, 'E', 'r', 4)
    await s.commitInbound('hub', [{ seq: 4, id: 'x', key: 'res', version: '2', op: 'update', bytes: b(9) }], 5)
    const before = { pending: view(s.pending('p', 0, 10)), stats: s.outboxStats('p'), dead: s.deadLetters(), peers: s.peersWithPending(), rs: s.receivedSeq('hub'), res: s.listResources().map(r => ({ ...r, bytes: hex(r.bytes) })) }
    s = await h.reopen(t, s)
    const after = { pending: view(s.pending('p', 0, 10)), stats: s.outboxStats('p'), dead: s.deadLetters(), peers: s.peersWithPending(), rs: s.receivedSeq('hub'), res: s.listResources().map(r => ({ ...r, bytes: hex(r.bytes) })) }
    t.same(after, before)
    t.match((await s.append('p', [{ id: 'd', bytes: b(1), key: 'k2', version: '1' }], BIG, 6))[0], { status: 'stale' }, 'the supersession index persists')
    t.same((await s.expire('p', 1e9)).map(r => r.id), [], 'a was acked')
    t.same(seqs(s, 'p'), [3])
  })

  t.test('close is idempotent; use after close is a typed error', async t => {
    const s: ReliableStore = await h.open(t)
    await s.append('p', [{ id: 'a', bytes: b(1) }], BIG, 1)
    const pending = s.append('p', [{ id: 'b', bytes: b(1) }], BIG, 1) // in flight while closing
    await Promise.all([s.close(), s.close()])
    t.match((await pending)[0], { status: 'queued', seq: 2 }, 'a write issued before close completes')
    await s.close()
    const closed = { code: 'EF_STORE_CLOSED' }
    await t.rejects(s.append('p', [{ id: 'c', bytes: b(1) }], BIG, 1), closed)
    await t.rejects(s.ack('p', 1), closed)
    await t.rejects(s.reject('p', 1, 1, 'E', 'r', 1), closed)
    await t.rejects(s.expire('p', 1), closed)
    await t.rejects(s.commitInbound('p', [{ seq: 1, id: 'x' }], 1), closed)
    for (const f of [() => s.pending('p', 0, 1), () => s.outboxStats('p'), () => s.peersWithPending(), () => s.deadLetters(), () => s.receivedSeq('p'), () => s.getResource('k'), () => s.listResources()]) {
      let code: string | undefined
      try { f() } catch (err) { code = CODE(err) }
      t.equal(code, 'EF_STORE_CLOSED')
    }
  })
}
