/**
 * LmdbStore's inbound dedup window keeps slot → id in a ring (lmdb-id-window.ts)
 * whose places are reused as slots are evicted, and which grows when the
 * window outgrows it. The compliance suite commits a few ids at a time, so
 * its rings never wrap nor grow; here thousands of ids pass through windows
 * smaller and larger than the initial ring, in commits of varying size, and
 * after every commit LmdbStore must answer hasInboundId exactly as MemoryStore
 * does — for ids inside the window, just evicted, and long gone — also after
 * a reopen (which rebuilds the window from the blocks the ring wrote) and a
 * reopen with a different window size.
 */
import t, { type Test } from 'tap'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import type { InboundItem, ReliableStore } from '../../src/reliable/store.js'

const PEER = 'cloud'

function batch (from: number, n: number): InboundItem[] {
  const out: InboundItem[] = []
  for (let i = from; i < from + n; i++) out.push({ seq: i, id: `id-${i}`, op: 'update' })
  return out
}

/** Every id ever committed, and a few never seen: what each store says. */
function answers (s: ReliableStore, upto: number): string {
  let out = ''
  for (let i = 1; i <= upto + 3; i++) out += s.hasInboundId(PEER, `id-${i}`) ? '1' : '0'
  return out
}

async function agree (t: Test, lmdb: ReliableStore, mem: ReliableStore, upto: number, what: string): Promise<void> {
  const a = answers(lmdb, upto)
  const b = answers(mem, upto)
  if (a !== b) t.fail(`${what}: LmdbStore and MemoryStore disagree on the dedup window`, { found: a, wanted: b })
  t.equal(lmdb.receivedSeq(PEER), mem.receivedSeq(PEER), `${what}: receivedSeq`)
}

for (const window of [700, 3000]) {
  t.test(`a ${window}-id window, ids passing through in commits of 1 to 900, wrapping and growing the ring`, async t => {
    const dir = t.testdir()
    let lmdb = await LmdbStore.open(dir, { durability: 'relaxed', dedupWindow: window })
    const mem = new MemoryStore({ dedupWindow: window })
    const sizes = [1, 63, 900, 2, 511, 128, 700, 1, 300, 899, 64, 5]
    let next = 1
    let mismatches = 0
    const added: string[] = [] // ids the stores took as new, in order
    for (let round = 0; round < 3; round++) {
      for (const n of sizes) {
        const items = batch(next, n)
        // A producer's retry among them: an id of the window again, under a new seq.
        if (next > 10) items.push({ seq: next + n, id: `id-${next - 5}`, op: 'update' })
        const [x, y] = await Promise.all([lmdb.commitInbound(PEER, items, 1), mem.commitInbound(PEER, items, 1)])
        if (JSON.stringify(x) !== JSON.stringify(y)) mismatches++
        y.outcome.forEach((o, i) => { if (o === 'new') added.push((items[i] as InboundItem).id) })
        next += items.length
      }
      await agree(t, lmdb, mem, next, `round ${round}`)
      await lmdb.close()
      lmdb = await LmdbStore.open(dir, { durability: 'relaxed', dedupWindow: window })
      await agree(t, lmdb, mem, next, `round ${round}, reopened`)
    }
    t.equal(mismatches, 0, 'every commit classified the same (new / duplicate)')
    t.ok(added.length > 3 * window, 'more ids passed through than the window holds')
    // Reopened with a smaller window: more ids on disk than it keeps; the next commit trims them
    // to the newest 250.
    await lmdb.close()
    lmdb = await LmdbStore.open(dir, { durability: 'relaxed', dedupWindow: 250 })
    await lmdb.commitInbound(PEER, batch(next, 40), 1)
    for (const it of batch(next, 40)) added.push(it.id)
    const keep = new Set(added.slice(-250))
    let wrong = 0
    for (let i = 1; i < next + 40; i++) if (lmdb.hasInboundId(PEER, `id-${i}`) !== keep.has(`id-${i}`)) wrong++
    t.equal(wrong, 0, 'after the trim the window holds exactly the newest 250 ids')
    await lmdb.close()
  })
}
