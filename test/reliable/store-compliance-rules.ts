/**
 * Compliance, part 2: the outbox rules — supersession, batches with mixed
 * outcomes, quotas (reject / drop-oldest), TTL, rejections, input handling.
 */
import type { Test } from 'tap'
import type { QuotaPolicy, ReliableStore } from '../../src/reliable/store.js'
import { b, BIG, hex, seqs, view, type Harness } from './store-compliance.js'

export function runRulesCompliance (t: Test, h: Harness): void {
  t.test('supersession by resource key and version', async t => {
    const s = await h.open(t)
    const q = (id: string, version?: string, op?: string, key = 'ns/pod/a'): Parameters<ReliableStore['append']>[1][number] =>
      ({ id, bytes: new Uint8Array(id.length), key, ...(version === undefined ? {} : { version }), ...(op === undefined ? {} : { op }) })
    const one = async (item: Parameters<ReliableStore['append']>[1][number], peer = 'p'): Promise<unknown> => (await s.append(peer, [item], BIG, 7))[0]

    t.match(await one(q('u9', '9')), { status: 'queued', seq: 1, superseded: [] })
    t.match(await one(q('u10', '10')), { status: 'queued', seq: 2, superseded: [1] }, "numeric versions: '10' > '9'")
    t.same(await one(q('u9b', '9')), { status: 'stale', pendingVersion: '10' }, 'older version is stale')
    t.same(await one(q('u10b', '10')), { status: 'stale', pendingVersion: '10' }, 'equal version is stale')
    t.match(await one(q('d10', '10', 'delete')), { status: 'queued', seq: 3, superseded: [2] }, 'a delete wins a tie with an update')
    t.same(await one(q('u10c', '10', 'update')), { status: 'stale', pendingVersion: '10' }, 'an update never replaces a delete of the same version')
    t.same(await one(q('u9c', '9', 'update')), { status: 'stale', pendingVersion: '10' }, 'an older update never replaces a delete')
    t.same(await one(q('d10b', '10', 'delete')), { status: 'stale', pendingVersion: '10' }, 'equal delete is stale')
    t.match(await one(q('u11', '11', 'update')), { status: 'queued', seq: 4, superseded: [3] }, 'a newer update replaces the delete (re-created)')
    t.match(await one(q('d12', '12', 'delete')), { status: 'queued', seq: 5, superseded: [4] }, 'a newer delete replaces pending updates')
    t.match(await one(q('other', '1', undefined, 'ns/pod/b')), { status: 'queued', seq: 6, superseded: [] }, 'other keys are independent')
    t.match(await one(q('u1', '1'), 'q'), { status: 'queued', seq: 1, superseded: [] }, 'other peers are independent')
    t.match(await one({ id: 'n1', bytes: b(1) }), { status: 'queued', seq: 7, superseded: [] })
    t.match(await one({ id: 'n2', bytes: b(1) }), { status: 'queued', seq: 8, superseded: [] }, 'no key: never superseded')
    t.match(await one(q('nv', undefined)), { status: 'queued', seq: 9, superseded: [5] }, 'unversioned item with a key: arrival order, it replaces')
    t.match(await one(q('v1', '1')), { status: 'queued', seq: 10, superseded: [9] }, 'versioned after unversioned: arrival order')

    t.same(s.pending('p', 0, 100).map(r => [r.seq, r.id]), [[6, 'other'], [7, 'n1'], [8, 'n2'], [10, 'v1']])
    t.same(s.outboxStats('p'), { count: 4, bytes: 5 + 1 + 1 + 2, firstSeq: 6, lastSeq: 10 }, 'counters follow replacements')
    const dl = s.deadLetters('p')
    t.same(dl.map(d => [d.seq, d.code, d.key]), [
      [9, 'EF_SUPERSEDED', 'ns/pod/a'], [5, 'EF_SUPERSEDED', 'ns/pod/a'], [4, 'EF_SUPERSEDED', 'ns/pod/a'],
      [3, 'EF_SUPERSEDED', 'ns/pod/a'], [2, 'EF_SUPERSEDED', 'ns/pod/a'], [1, 'EF_SUPERSEDED', 'ns/pod/a']
    ], 'every replacement is recorded, newest first')
    t.match(dl[dl.length - 1], { peer: 'p', seq: 1, id: 'u9', code: 'EF_SUPERSEDED', at: 7, size: 2 })
  })

  t.test('one batch, mixed outcomes, in one call', async t => {
    const s = await h.open(t)
    const quota: QuotaPolicy = { maxMessages: 3, maxBytes: 100, overflow: 'reject' }
    const out = await s.append('p', [
      { id: 'a', bytes: b(1), key: 'k', version: '1' },
      { id: 'b', bytes: b(1), key: 'k', version: '2' }, // supersedes 'a' from the same batch
      { id: 'c', bytes: b(1), key: 'k', version: '2' }, // stale against 'b'
      { id: 'd', bytes: new Uint8Array(101) }, // larger than maxBytes
      { id: 'e', bytes: b(1) },
      { id: 'f', bytes: b(1) },
      { id: 'g', bytes: b(1) } // 4th pending: over maxMessages
    ], quota, 1)
    t.match(out, [
      { status: 'queued', seq: 1, superseded: [], dropped: [] },
      { status: 'queued', seq: 2, superseded: [1], dropped: [] },
      { status: 'stale', pendingVersion: '2' },
      { status: 'rejected', code: 'EF_QUOTA_EXCEEDED' },
      { status: 'queued', seq: 3 },
      { status: 'queued', seq: 4 },
      { status: 'rejected', code: 'EF_QUOTA_EXCEEDED' }
    ])
    t.same(seqs(s, 'p'), [2, 3, 4])
    t.same(s.deadLetters('p').map(d => [d.seq, d.code]), [[1, 'EF_SUPERSEDED']], 'rejected and stale items leave no dead letter: the producer got the outcome')
  })

  t.test('quota with overflow reject: count, bytes, oversize; nothing changes', async t => {
    const s = await h.open(t)
    const q: QuotaPolicy = { maxMessages: 2, maxBytes: 10, overflow: 'reject' }
    await s.append('p', [{ id: '1', bytes: new Uint8Array(4), key: 'k', version: '1' }, { id: '2', bytes: new Uint8Array(4) }], q, 1)
    const [byCount] = await s.append('p', [{ id: '3', bytes: b(1) }], q, 1)
    t.match(byCount, { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: /full/ })
    const [replace] = await s.append('p', [{ id: '4', bytes: new Uint8Array(5), key: 'k', version: '2' }], q, 1)
    t.match(replace, { status: 'queued', seq: 3, superseded: [1] }, 'a replacement does not grow the count')
    const [byBytes] = await s.append('p', [{ id: '5', bytes: new Uint8Array(7), key: 'k', version: '3' }], q, 1)
    t.match(byBytes, { status: 'rejected', code: 'EF_QUOTA_EXCEEDED' }, '4 + 7 bytes > 10 even after replacing the 5-byte record')
    t.same(seqs(s, 'p'), [2, 3], 'the record it would have superseded is still pending')
    const [huge] = await s.append('p', [{ id: '6', bytes: new Uint8Array(11) }], { ...q, overflow: 'drop-oldest' }, 1)
    t.match(huge, { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: /larger/ }, 'a single message above maxBytes is rejected even with drop-oldest')
    t.same(s.outboxStats('p'), { count: 2, bytes: 9, firstSeq: 2, lastSeq: 3 })
  })

  t.test('quota with drop-oldest: makes room and dead-letters what it dropped', async t => {
    const s = await h.open(t)
    const q: QuotaPolicy = { maxMessages: 3, maxBytes: 10, overflow: 'drop-oldest' }
    await s.append('p', [1, 2, 3].map(i => ({ id: `m${i}`, bytes: new Uint8Array(3) })), q, 1)
    const [o1] = await s.append('p', [{ id: 'm4', bytes: new Uint8Array(1) }], q, 2)
    t.match(o1, { status: 'queued', seq: 4, dropped: [1] }, 'by count')
    const [o2] = await s.append('p', [{ id: 'm5', bytes: new Uint8Array(8) }], q, 3)
    t.match(o2, { status: 'queued', seq: 5, dropped: [2, 3] }, 'by bytes: as many as needed, oldest first')
    t.same(seqs(s, 'p'), [4, 5])
    t.same(s.deadLetters('p').map(d => [d.seq, d.code, d.id, d.size]), [
      [3, 'EF_QUOTA_DROPPED', 'm3', 3], [2, 'EF_QUOTA_DROPPED', 'm2', 3], [1, 'EF_QUOTA_DROPPED', 'm1', 3]
    ])
    t.same(s.outboxStats('p'), { count: 2, bytes: 9, firstSeq: 4, lastSeq: 5 })
  })

  t.test('TTL: expire dead-letters what is due, in seq order', async t => {
    const s = await h.open(t)
    await s.append('p', [
      { id: 'a', bytes: b(1), expiresAt: 300 },
      { id: 'b', bytes: b(2), expiresAt: 100 },
      { id: 'c', bytes: b(3) },
      { id: 'd', bytes: b(4), expiresAt: 200, key: 'k', version: '5' },
      { id: 'e', bytes: b(5), expiresAt: 100 }
    ], BIG, 1)
    t.same(await s.expire('p', 99), [], 'nothing due')
    const ex = await s.expire('p', 200)
    t.same(view(ex).map(r => [r.seq, r.id, r.expiresAt]), [[2, 'b', 100], [4, 'd', 200], [5, 'e', 100]], 'expiresAt ≤ now, returned in seq order')
    t.same(seqs(s, 'p'), [1, 3])
    t.same(s.deadLetters('p').map(d => d.code), ['EF_TTL_EXPIRED', 'EF_TTL_EXPIRED', 'EF_TTL_EXPIRED'])
    t.same(await s.expire('p', 200), [], 'expire again: nothing')
    const [o] = await s.append('p', [{ id: 'f', bytes: b(6), key: 'k', version: '1' }], BIG, 2)
    t.match(o, { status: 'queued', superseded: [] }, 'the expired record no longer holds its key')
    t.same(s.outboxStats('p'), { count: 3, bytes: 3, firstSeq: 1, lastSeq: 6 })
    t.same((await s.expire('p', 1e15)).map(r => r.seq), [1])
    t.same(await s.expire('nobody', 1e15), [])
  })

  t.test('reject: counts, then dead-letters at maxRejections', async t => {
    let s = await h.open(t)
    await s.append('p', [{ id: 'a', bytes: b(1) }, { id: 'b', bytes: b(2) }], BIG, 1)
    t.equal(await s.reject('p', 1, 3, 'EF_BAD', 'bad content', 5), 1)
    t.equal(await s.reject('p', 1, 3, 'EF_BAD', 'bad content', 6), 2)
    t.equal(s.pending('p', 0, 1)[0]?.rejections, 2, 'visible in pending()')
    s = await h.reopen(t, s)
    t.equal(s.pending('p', 0, 1)[0]?.rejections, 2, 'rejection count is durable')
    t.equal(await s.reject('p', 1, 3, 'EF_BAD', 'bad content', 7), -1, 'third rejection: dead-lettered')
    t.same(seqs(s, 'p'), [2], 'no longer blocks the queue')
    t.match(s.deadLetters('p'), [{ peer: 'p', seq: 1, id: 'a', code: 'EF_REJECTED_BY_PEER', reason: /EF_BAD: bad content/, at: 7, size: 1 }])
    t.equal(await s.reject('p', 1, 3, 'EF_BAD', 'again', 8), -1, 'unknown seq')
    t.equal(await s.reject('p', 99, 3, 'EF_BAD', 'never existed', 8), -1)
    t.equal(await s.reject('p', 2, 1, 'EF_BAD', 'maxRejections 1', 9), -1, 'maxRejections 1: first rejection dead-letters')
    t.same(s.outboxStats('p'), { count: 0, bytes: 0, firstSeq: 0, lastSeq: 2 })
  })

  t.test('the store keeps its own copy of the caller\'s bytes and items', async t => {
    const s = await h.open(t)
    const bytes = b(1, 2, 3)
    const item = { id: 'a', bytes, key: 'k', version: '1' }
    const p = s.append('p', [item], BIG, 1)
    bytes[0] = 9 // reused before the write committed
    item.version = '99'
    await p
    t.same(view(s.pending('p', 0, 1)).map(r => [r.bytes, r.version]), [['010203', '1']])
    const ib = b(4, 5)
    const q = s.commitInbound('hub', [{ seq: 1, id: 'x', key: 'r', version: '1', op: 'update', bytes: ib }], 1)
    ib[0] = 0
    await q
    t.equal(hex(s.getResource('r')?.bytes), '0405')
  })

  t.test('invalid input is refused with a typed error', async t => {
    const s = await h.open(t)
    await t.rejects(s.append('a\u0000b', [{ id: '1', bytes: b(1) }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'NUL in peer')
    await t.rejects(s.append('', [{ id: '1', bytes: b(1) }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'empty peer')
    await t.rejects(s.append('p', [{ id: '', bytes: b(1) }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'empty id')
    await t.rejects(s.append('p', [{ id: '1', bytes: 'x' as unknown as Uint8Array }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'bytes not bytes')
    await t.rejects(s.append('p', [{ id: '1', bytes: b(1), key: 'k'.repeat(2000) }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'key too long')
    await t.rejects(s.append('p', [{ id: '1', bytes: b(1) }], { ...BIG, maxMessages: 0 }, 1), { code: 'EF_INVALID_OPTION' }, 'bad quota')
    await t.rejects(s.append('p', [{ id: '1', bytes: b(1) }, { id: '2', bytes: b(1), expiresAt: NaN }], BIG, 1), { code: 'EF_INVALID_OPTION' }, 'bad expiresAt')
    t.same(s.outboxStats('p').lastSeq, 0, 'a batch with one invalid item changes nothing')
    await t.rejects(s.commitInbound('p', [{ seq: 0, id: 'x' }], 1), { code: 'EF_INVALID_OPTION' }, 'seq 0')
    t.throws(() => s.pending('p\u0000', 0, 1), { code: 'EF_INVALID_OPTION' })
    t.same(await s.append('p', [], BIG, 1), [], 'empty batch')
  })
}
