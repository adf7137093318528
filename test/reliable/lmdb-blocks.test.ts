/**
 * LmdbStore keeps its outbox in blocks of up to BLOCK_RECORDS records
 * (lmdb-outbox.ts). The compliance suite and the model test append a few
 * records at a time, so their blocks never fill; here appends are large
 * enough to fill and split blocks (by count and by bytes), and every
 * operation that cuts into a block — partial cumulative acks, supersession,
 * dead-lettered rejections, TTL expiry, drop-oldest — runs against a block's
 * middle, first and last record. After every step LmdbStore must agree with
 * MemoryStore on every observable, and the raw LMDB outbox must keep the
 * block invariants (non-empty, key = first seq, ordered, disjoint, bounded).
 */
import t, { type Test } from 'tap'
import { open } from 'lmdb'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { BLOCK_BYTES, BLOCK_RECORDS, decodeBlock } from '../../src/reliable/lmdb-outbox.js'
import { encodeRecord } from '../../src/reliable/lmdb-record.js'
import type { OutboxInput, QuotaPolicy, ReliableStore } from '../../src/reliable/store.js'

const BIG: QuotaPolicy = { maxMessages: 1e9, maxBytes: 1e12, overflow: 'reject' }

function items (from: number, n: number, opts: { key?: (i: number) => string | undefined, ttl?: (i: number) => number | undefined, size?: (i: number) => number } = {}): OutboxInput[] {
  const out: OutboxInput[] = []
  for (let i = from; i < from + n; i++) {
    const bytes = new Uint8Array(opts.size?.(i) ?? 100 + (i % 50)).fill(i % 251)
    const it: OutboxInput = { id: `m${i}`, bytes, op: 'update' }
    const key = opts.key?.(i)
    if (key !== undefined) { it.key = key; it.version = String(i) }
    const exp = opts.ttl?.(i)
    if (exp !== undefined) it.expiresAt = exp
    out.push(it)
  }
  return out
}

const view = (s: ReliableStore, peer: string): unknown => ({
  pending: s.pending(peer, 0, Infinity).map(r => ({ ...r, bytes: Buffer.from(r.bytes).toString('base64') })),
  from7: s.pending(peer, 7, 5).map(r => r.seq),
  stats: s.outboxStats(peer),
  dead: s.deadLetters(peer).map(d => ({ ...d, reason: '' })),
  peers: s.peersWithPending()
})

/** Open the store's directory read-only-ish with lmdb directly and check the block invariants. */
async function checkBlocks (t: Test, dir: string): Promise<number> {
  const root = open({ path: dir, noSubdir: false, maxDbs: 16, readOnly: true })
  try {
    const db = root.openDB<Buffer, Array<string | number>>('outbox', { encoding: 'binary' })
    let blocks = 0
    const last = new Map<string, number>()
    for (const { key, value } of db.getRange({})) {
      const [peer, k] = key as [string, number]
      const recs = decodeBlock(value)
      blocks++
      if (recs.length === 0 || recs.length > BLOCK_RECORDS) t.fail(`block ${peer}/${k} holds ${recs.length} records`)
      if (recs[0]?.seq !== k) t.fail(`block ${peer}/${k} starts at ${recs[0]?.seq}`)
      let prev = last.get(peer) ?? -Infinity
      for (const r of recs) {
        if (!(r.seq > prev)) t.fail(`block ${peer}/${k}: seq ${r.seq} after ${prev}`)
        prev = r.seq
      }
      const bytes = recs.reduce((a, r) => a + r.body.byteLength, 0)
      if (recs.length > 1 && bytes > BLOCK_BYTES) t.fail(`block ${peer}/${k} holds ${bytes} bytes`)
      last.set(peer, prev)
    }
    return blocks
  } finally {
    await root.close()
  }
}

t.test('large appends split into blocks; every cut into a block agrees with MemoryStore', async t => {
  const dir = t.testdir()
  let lm = await LmdbStore.open(dir)
  const mem = new MemoryStore()
  t.teardown(async () => { await lm.close(); await mem.close() })
  const both = async <T>(fn: (s: ReliableStore) => Promise<T>): Promise<T> => {
    const [a, b] = await Promise.all([fn(lm), fn(mem)])
    t.same(a, b)
    return a
  }
  const agree = async (what: string): Promise<void> => {
    for (const p of ['p', 'q']) t.same(view(lm, p), view(mem, p), `${what}: peer ${p}`)
  }

  // 300 records in one append (5 blocks by count), keys on every 7th, TTL on every 11th.
  await both(s => s.append('p', items(0, 300, { key: i => i % 7 === 0 ? `k${i % 21}` : undefined, ttl: i => i % 11 === 0 ? 1000 + i : undefined }), BIG, 10))
  // Interleave another peer so blocks of two peers sit side by side.
  await both(s => s.append('q', items(0, 70), BIG, 10))
  // Big records: split by bytes, and one record larger than a block alone.
  await both(s => s.append('p', items(300, 6, { size: i => i === 303 ? BLOCK_BYTES + 10 : 20_000 }), BIG, 10))
  await agree('appended')
  t.ok(await checkBlocks(t, dir) >= 8, 'several blocks')

  // Partial cumulative acks: inside a block, exactly at a block end, then across several blocks.
  for (const upto of [30, 64, 65, 200]) {
    await both(s => s.ack('p', upto))
    await agree(`ack ${upto}`)
  }
  // Supersession hits records in the middle, first and last position of blocks (keys k0..k20 recur).
  await both(s => s.append('p', items(306, 50, { key: i => `k${i % 21}` }), BIG, 20))
  await agree('superseded')
  // Rejections: rewrite a record in place, then dead-letter one in a block's middle.
  await both(s => s.reject('p', 230, 2, 'EF_X', 'bad', 30))
  await both(s => s.reject('p', 230, 2, 'EF_X', 'bad', 31))
  await both(s => s.reject('p', 256, 5, 'EF_X', 'once', 32))
  await agree('rejected')
  // TTL expiry of scattered records.
  await both(s => s.expire('p', 1200))
  await agree('expired')

  // Reopen: what is on disk is the whole story.
  await lm.close()
  t.ok(await checkBlocks(t, dir) > 0)
  lm = await LmdbStore.open(dir)
  await agree('reopened')

  // Drop-oldest under a full quota eats into the first block one record at a time.
  const tight: QuotaPolicy = { maxMessages: (mem.outboxStats('p').count), maxBytes: 1e12, overflow: 'drop-oldest' }
  for (let i = 0; i < 3; i++) await both(s => s.append('p', items(400 + i * 10, 10), tight, 40))
  await agree('drop-oldest')
  // Ack everything: no block may be left behind.
  await both(s => s.ack('p', Infinity))
  await both(s => s.ack('q', 69))
  await agree('acked')
  await lm.close()
  t.equal(await checkBlocks(t, dir), 1, 'only q\'s last record is left')
  lm = await LmdbStore.open(dir)
  await agree('final reopen')
})

t.test('appends in one group commit do not share a block with each other\'s removals', async t => {
  // Many concurrent append() calls land in one LMDB transaction (group commit); each ends with
  // its own blocks, and an ack racing them sees a consistent outbox.
  const lm = await LmdbStore.open(t.testdir())
  const mem = new MemoryStore()
  t.teardown(async () => { await lm.close(); await mem.close() })
  for (const s of [lm, mem] as ReliableStore[]) {
    const ps: Array<Promise<unknown>> = []
    for (let b = 0; b < 20; b++) {
      ps.push(s.append('p', items(b * 30, 30, { key: i => i % 5 === 0 ? `k${i % 15}` : undefined }), BIG, 1))
      if (b % 4 === 3) ps.push(s.ack('p', b * 25))
    }
    await Promise.all(ps)
  }
  t.same(view(lm, 'p'), view(mem, 'p'))
})

t.test('a format-2 directory (one value per record) is migrated to blocks at open; format 1 is refused', async t => {
  const dir = t.testdir()
  // Write a format-2 layout by hand: the sub-databases as lmdb-txn.ts names them, records as
  // lmdb-record.ts encodes them, one value per [peer, seq].
  const root = open({ path: dir, noSubdir: false, maxDbs: 16 })
  const recs = items(0, 1500, { key: i => i % 10 === 0 ? `k${i}` : undefined }).map((it, i) => ({ ...it, seq: i + 1, enqueuedAt: 5, rejections: i % 3 }))
  await root.transaction(() => {
    root.openDB('meta', {}).putSync('format', 2)
    const outbox = root.openDB<Buffer, Array<string | number>>('outbox', { encoding: 'binary' })
    const outkeys = root.openDB<number, Array<string | number>>('outkeys', {})
    let bytes = 0
    for (const r of recs) {
      outbox.putSync(['p', r.seq], encodeRecord(r))
      if (r.key !== undefined) outkeys.putSync(['p', r.key], r.seq)
      bytes += r.bytes.byteLength
    }
    root.openDB('peers', {}).putSync('p', [recs.length, recs.length, bytes])
  })
  await root.close()

  const s = await LmdbStore.open(dir)
  t.teardown(async () => { await s.close() })
  const pending = s.pending('p', 0, Infinity)
  t.equal(pending.length, 1500, 'every record survives the migration')
  t.same(pending.map(r => [r.seq, r.id, r.key, r.version, r.rejections, Buffer.from(r.bytes).equals(Buffer.from(recs[r.seq - 1]?.bytes ?? []))]),
    recs.map(r => [r.seq, r.id, r.key, r.version, r.rejections, true]))
  t.same(s.outboxStats('p').firstSeq, 1)
  // The migrated outbox works like any other: supersession, ack, new appends.
  const [o] = await s.append('p', [{ id: 'new', bytes: new Uint8Array(3), key: 'k10', version: '999' }], BIG, 6)
  t.same(o, { status: 'queued', seq: 1501, superseded: [11], dropped: [] })
  t.equal(await s.ack('p', 700), 699)
  t.equal(s.pending('p', 0, 1)[0]?.seq, 701)
  await s.close()
  t.ok(await checkBlocks(t, dir) > 0)

  const old = t.testdir()
  const r1 = open({ path: old, noSubdir: false, maxDbs: 16 })
  await r1.transaction(() => r1.openDB('meta', {}).putSync('format', 1))
  await r1.close()
  await t.rejects(LmdbStore.open(old), { code: 'EF_STORE', message: /format 1/ })
})
