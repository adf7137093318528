/**
 * The ReliableStore compliance suite (as aedes-persistence's abstract.js):
 * every store implementation runs exactly this from its own test file.
 * Outbox basics here; supersession, quotas, TTL, rejections and input
 * handling in store-compliance-rules.ts; inbox, resources, dead letters and
 * lifecycle in store-compliance-inbox.ts. With `reopen`, persistence is checked too.
 */
import type { Test } from 'tap'
import type { OutboxRecord, QuotaPolicy, ReliableStore } from '../../src/reliable/store.js'
import { runInboxCompliance } from './store-compliance-inbox.js'
import { runRulesCompliance } from './store-compliance-rules.js'

export interface StoreComplianceOptions {
  /** Close `store` and open the same data again (persistent stores only). */
  reopen?: (t: Test, store: ReliableStore) => Promise<ReliableStore>
  /** The dedupWindow the factory configures (small, so eviction is testable). @default 10000 */
  dedupWindow?: number
  /** The maxDeadLetters the factory configures. @default 100000 */
  maxDeadLetters?: number
}

export type StoreFactory = (t: Test) => Promise<ReliableStore>

export interface Harness {
  open: (t: Test) => Promise<ReliableStore>
  /** Reopen if the store is persistent, else keep using it (the assertions hold either way). */
  reopen: (t: Test, s: ReliableStore) => Promise<ReliableStore>
  persistent: boolean
  opts: StoreComplianceOptions
}

export const BIG: QuotaPolicy = { maxMessages: 1_000_000, maxBytes: 1 << 30, overflow: 'reject' }
export const CODE = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code
export const b = (...xs: number[]): Uint8Array => new Uint8Array(xs)
export const hex = (u: Uint8Array | undefined): string | undefined => u === undefined ? undefined : Buffer.from(u).toString('hex')
/** Records with bytes as hex, so stores returning Buffer vs Uint8Array compare equal. */
export const view = (rs: OutboxRecord[]): Array<Omit<OutboxRecord, 'bytes'> & { bytes: string | undefined }> => rs.map(r => ({ ...r, bytes: hex(r.bytes) }))
export const seqs = (s: ReliableStore, peer: string): number[] => s.pending(peer, 0, Infinity).map(r => r.seq)

export function runStoreCompliance (t: Test, factory: StoreFactory, opts: StoreComplianceOptions = {}): void {
  const h: Harness = {
    persistent: opts.reopen !== undefined,
    opts,
    async open (t) {
      const s = await factory(t)
      t.teardown(() => s.close())
      return s
    },
    async reopen (t, s) {
      if (opts.reopen === undefined) return s
      const n = await opts.reopen(t, s)
      t.teardown(() => n.close())
      return n
    }
  }
  runOutboxCompliance(t, h)
  runRulesCompliance(t, h)
  runInboxCompliance(t, h)
}

function runOutboxCompliance (t: Test, h: Harness): void {
  t.test('seqs are per peer, monotonic, and survive ack and reopen', async t => {
    let s = await h.open(t)
    const a = await s.append('a', [{ id: '1', bytes: b(1) }, { id: '2', bytes: b(2) }], BIG, 1)
    const bb = await s.append('b', [{ id: '3', bytes: b(3) }], BIG, 1)
    t.same(a.map(o => o.status === 'queued' && o.seq), [1, 2])
    t.same(bb.map(o => o.status === 'queued' && o.seq), [1], 'peers number independently')
    t.equal(await s.ack('a', 2), 2)
    t.same(s.outboxStats('a'), { count: 0, bytes: 0, firstSeq: 0, lastSeq: 2 }, 'lastSeq kept when empty')
    s = await h.reopen(t, s)
    const [c] = await s.append('a', [{ id: '4', bytes: b(4) }], BIG, 2)
    t.match(c, { status: 'queued', seq: 3 }, 'never reuses a seq, even after everything was acked (and a reopen)')
    t.same(s.outboxStats('b'), { count: 1, bytes: 1, firstSeq: 1, lastSeq: 1 })
    t.same(s.peersWithPending(), ['a', 'b'])
  })

  t.test('concurrent appends get distinct increasing seqs', async t => {
    const s = await h.open(t)
    const outs = await Promise.all(Array.from({ length: 200 }, (_, i) => s.append('p', [{ id: `m${i}`, bytes: b(i & 255) }], BIG, 1)))
    t.same(outs.map(o => o[0]?.status === 'queued' ? o[0].seq : -1), Array.from({ length: 200 }, (_, i) => i + 1), 'seqs follow call order')
    t.equal(s.outboxStats('p').count, 200)
  })

  t.test('calls apply in call order, even when not awaited', async t => {
    const s = await h.open(t)
    const [a, e, k, r, c, i] = await Promise.all([
      s.append('p', [{ id: 'a', bytes: b(1), expiresAt: 5 }, { id: 'b', bytes: b(2) }, { id: 'c', bytes: b(3) }], BIG, 1),
      s.expire('p', 10), // sees 'a'
      s.ack('p', 2), // 'a' is gone already: removes 'b' only
      s.reject('p', 3, 1, 'E', 'no', 11), // dead-letters 'c'
      s.append('p', [{ id: 'd', bytes: b(4) }], BIG, 12),
      s.commitInbound('p', [{ seq: 1, id: 'x' }], 13)
    ])
    t.match(a, [{ seq: 1 }, { seq: 2 }, { seq: 3 }])
    t.same(e.map(x => x.id), ['a'])
    t.equal(k, 1)
    t.equal(r, -1)
    t.match(c, [{ status: 'queued', seq: 4 }])
    t.same(i, { outcome: ['new'] })
    t.same(s.deadLetters('p').map(d => [d.id, d.code]), [['c', 'EF_REJECTED_BY_PEER'], ['a', 'EF_TTL_EXPIRED']])
    t.same(seqs(s, 'p'), [4])
  })

  t.test('pending: seq order, afterSeq, limit; records are complete', async t => {
    const s = await h.open(t)
    await s.append('p', [
      { id: 'x1', bytes: b(1, 2), key: 'k1', version: '3', op: 'update', expiresAt: 10_000 },
      { id: 'x2', bytes: b(3) },
      { id: 'x3', bytes: b(4) }
    ], BIG, 5)
    t.same(view(s.pending('p', 0, 10)), [
      { id: 'x1', bytes: '0102', key: 'k1', version: '3', op: 'update', expiresAt: 10_000, seq: 1, enqueuedAt: 5, rejections: 0 },
      { id: 'x2', bytes: '03', seq: 2, enqueuedAt: 5, rejections: 0 },
      { id: 'x3', bytes: '04', seq: 3, enqueuedAt: 5, rejections: 0 }
    ], 'absent optional fields are absent, not undefined')
    t.same(s.pending('p', 1, 10).map(r => r.seq), [2, 3])
    t.same(s.pending('p', 1.5, 10).map(r => r.seq), [2, 3], 'non-integer afterSeq')
    t.same(s.pending('p', -5, 2).map(r => r.seq), [1, 2])
    t.same(s.pending('p', 3, 10), [])
    t.same(s.pending('p', 0, 0), [], 'limit 0')
    t.same(s.pending('nobody', 0, 10), [])
    t.same(s.outboxStats('nobody'), { count: 0, bytes: 0, firstSeq: 0, lastSeq: 0 })
  })

  t.test('ack is cumulative, counts removals, tolerates gaps and repeats', async t => {
    const s = await h.open(t)
    await s.append('p', [
      { id: '1', bytes: b(1), key: 'k', version: '1' },
      { id: '2', bytes: b(2) },
      { id: '3', bytes: b(3), key: 'k', version: '2' }, // supersedes seq 1: a gap at 1
      { id: '4', bytes: b(4) },
      { id: '5', bytes: b(5) }
    ], BIG, 1)
    t.same(seqs(s, 'p'), [2, 3, 4, 5])
    t.equal(await s.ack('p', 3), 2, 'seqs 2 and 3 removed; 1 was already gone')
    t.equal(await s.ack('p', 3), 0, 'repeat ack is a no-op')
    t.equal(await s.ack('p', 1), 0, 'older ack is a no-op')
    t.same(s.outboxStats('p'), { count: 2, bytes: 2, firstSeq: 4, lastSeq: 5 })
    t.equal(await s.ack('p', 1000), 2, 'ack beyond lastSeq removes the rest')
    t.equal(await s.ack('nobody', 10), 0)
    const [o] = await s.append('p', [{ id: '6', bytes: b(6), key: 'k', version: '1' }], BIG, 1)
    t.match(o, { status: 'queued', seq: 6 }, 'an acked key no longer supersedes: older version is queued (the receiver judges staleness)')
  })
}
