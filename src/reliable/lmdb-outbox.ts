/**
 * The outbox of LmdbStore stored in blocks: one LMDB value holds up to
 * BLOCK_RECORDS records that were appended together, keyed [peer, seq of its
 * first record]. Why: the drain profile of format 2 (one value per record)
 * spent ≈4.3 µs of the hub's ≈7.5 µs per message in LMDB cursor steps —
 * ≈2.2 µs reading records back to send them and ≈2.1 µs listing and removing
 * them at the cumulative ack. With blocks, an append batch is a few puts, a
 * read of 64 records is one or two gets, and an ack removes whole blocks.
 *
 * Invariants (every method keeps them; lmdb-blocks.test.ts checks them):
 *  - a block is never empty and its key is the seq of its first record;
 *  - records in a block are in seq order, and blocks do not overlap: every
 *    record of a block is below the key of the next block of the peer.
 * So "the block holding seq s" is the last block with key ≤ s.
 *
 * Value layout: u16 n · n × f64 seq · n × u32 length · the n record bodies
 * (lmdb-record.ts), concatenated.
 *
 * Within one write-transaction callback, new records of a peer first gather
 * in an open block, written by flush() (LmdbStore calls it at the end of
 * every callback) or when full. get/remove look at the open block; every
 * other read writes it first, so reads always see the callback's own writes.
 * Removing one record from the middle of a block (supersession, TTL, a
 * dead-lettered rejection, drop-oldest) rewrites that block: those paths cost
 * one block write instead of one record delete.
 */
import type { Database } from 'lmdb'

type Key = string | number | Array<string | number>

/** Records per block at most. Matches the sender's default batch (64 per data message). */
export const BLOCK_RECORDS = 64
/** Bytes of record bodies per block at most; a larger record is a block of its own. */
export const BLOCK_BYTES = 64 * 1024

/** Above every seq, as a range bound. */
const TOP = Infinity

/** One record of a block: its seq and its body (a view into the block value or a fresh buffer). */
export interface BlockRecord { seq: number, body: Buffer }

interface Open { recs: BlockRecord[], bytes: number }

export function encodeBlock (recs: BlockRecord[]): Buffer {
  const n = recs.length
  let size = 2 + 12 * n
  for (const r of recs) size += r.body.byteLength
  const b = Buffer.allocUnsafe(size)
  b.writeUInt16LE(n, 0)
  let o = 2 + 12 * n
  for (let i = 0; i < n; i++) {
    const r = recs[i] as BlockRecord
    b.writeDoubleLE(r.seq, 2 + 8 * i)
    b.writeUInt32LE(r.body.byteLength, 2 + 8 * n + 4 * i)
    b.set(r.body, o)
    o += r.body.byteLength
  }
  return b
}

/** The records of a block value, as views into `v` (which the caller must own: lmdb-js copies `binary` values). */
export function decodeBlock (v: Buffer): BlockRecord[] {
  const n = v.readUInt16LE(0)
  const out: BlockRecord[] = new Array(n)
  let o = 2 + 12 * n
  for (let i = 0; i < n; i++) {
    const len = v.readUInt32LE(2 + 8 * n + 4 * i)
    out[i] = { seq: v.readDoubleLE(2 + 8 * i), body: v.subarray(o, o + len) }
    o += len
  }
  return out
}

export class OutboxBlocks {
  readonly #db: Database<Buffer, Key>
  readonly #open = new Map<string, Open>()

  constructor (db: Database<Buffer, Key>) {
    this.#db = db
  }

  /** Add a new record (its seq above every record of the peer) or replace an existing one. */
  put (peer: string, seq: number, body: Buffer, isNew: boolean): void {
    if (isNew) {
      let o = this.#open.get(peer)
      if (o !== undefined && (o.recs.length >= BLOCK_RECORDS || o.bytes + body.byteLength > BLOCK_BYTES)) {
        this.#writeOpen(peer, o)
        o = undefined
      }
      if (o === undefined) { o = { recs: [], bytes: 0 }; this.#open.set(peer, o) }
      o.recs.push({ seq, body })
      o.bytes += body.byteLength
      return
    }
    const o = this.#open.get(peer)
    const i = o === undefined ? -1 : indexOf(o.recs, seq)
    if (o !== undefined && i >= 0) {
      const old = o.recs[i] as BlockRecord
      o.bytes += body.byteLength - old.body.byteLength
      o.recs[i] = { seq, body }
      return
    }
    const b = this.#locate(peer, seq)
    if (b === undefined) return
    b.recs[b.index] = { seq, body }
    this.#db.putSync([peer, b.key], encodeBlock(b.recs))
  }

  /** The body of record `seq`, or undefined. */
  get (peer: string, seq: number): Buffer | undefined {
    const o = this.#open.get(peer)
    if (o !== undefined) {
      const i = indexOf(o.recs, seq)
      if (i >= 0) return (o.recs[i] as BlockRecord).body
    }
    const b = this.#locate(peer, seq)
    return b === undefined ? undefined : (b.recs[b.index] as BlockRecord).body
  }

  /** Remove record `seq`; false if it is not there. */
  remove (peer: string, seq: number): boolean {
    const o = this.#open.get(peer)
    if (o !== undefined) {
      const i = indexOf(o.recs, seq)
      if (i >= 0) {
        o.bytes -= (o.recs[i] as BlockRecord).body.byteLength
        o.recs.splice(i, 1)
        if (o.recs.length === 0) this.#open.delete(peer)
        return true
      }
    }
    const b = this.#locate(peer, seq)
    if (b === undefined) return false
    b.recs.splice(b.index, 1)
    this.#rewrite(peer, b.key, b.recs)
    return true
  }

  /** Seq of the peer's oldest record. */
  firstSeq (peer: string): number | undefined {
    this.#flushPeer(peer)
    for (const k of this.#db.getKeys({ start: [peer, -TOP], end: [peer, TOP], limit: 1 })) return (k as [string, number])[1]
    return undefined
  }

  /** Records with afterSeq < seq ≤ upto, in seq order, at most `limit` (≥ 1). */
  range (peer: string, afterSeq: number, upto: number, limit: number): BlockRecord[] {
    this.#flushPeer(peer)
    const out: BlockRecord[] = []
    if (upto <= afterSeq) return out
    // Start at the block holding afterSeq (it may hold later records too), else at the first block.
    let start = -TOP
    if (afterSeq > -TOP) {
      for (const k of this.#db.getKeys({ start: [peer, afterSeq], end: [peer, -TOP], reverse: true, limit: 1 })) start = (k as [string, number])[1]
    }
    const blocks = this.#db.getRange({ start: [peer, start], end: [peer, upto], inclusiveEnd: true })
    for (const { value } of blocks) {
      for (const r of decodeBlock(value)) {
        if (r.seq <= afterSeq) continue
        if (r.seq > upto || out.length >= limit) return out
        out.push(r)
      }
    }
    return out
  }

  /** Remove the peer's records with seq ≤ upto, oldest first, at most `limit` (≥ 1); returns them. */
  removeUpTo (peer: string, upto: number, limit: number): BlockRecord[] {
    this.#flushPeer(peer)
    const out: BlockRecord[] = []
    // Collect first, write after: the range is read lazily and must not see its own deletes.
    // Every block holds ≥ 1 record, so `limit` blocks are enough.
    const blocks: Array<{ key: number, recs: BlockRecord[] }> = []
    for (const { key, value } of this.#db.getRange({ start: [peer, -TOP], end: [peer, upto], inclusiveEnd: true, limit })) {
      blocks.push({ key: (key as [string, number])[1], recs: decodeBlock(value) })
    }
    for (const b of blocks) {
      let i = 0
      while (i < b.recs.length && out.length < limit && (b.recs[i] as BlockRecord).seq <= upto) out.push(b.recs[i++] as BlockRecord)
      if (i === 0) break
      this.#rewrite(peer, b.key, b.recs.slice(i))
      if (i < b.recs.length) break
    }
    return out
  }

  /** Write every open block (end of a transaction callback). */
  flush (): void {
    for (const [peer, o] of this.#open) this.#writeOpen(peer, o)
  }

  /** Forget open blocks without writing them (the callback failed; the store stops). */
  discard (): void {
    this.#open.clear()
  }

  #flushPeer (peer: string): void {
    const o = this.#open.get(peer)
    if (o !== undefined) this.#writeOpen(peer, o)
  }

  #writeOpen (peer: string, o: Open): void {
    this.#open.delete(peer)
    const first = o.recs[0]
    if (first !== undefined) this.#db.putSync([peer, first.seq], encodeBlock(o.recs))
  }

  /** Store what is left of block `key`: re-keyed by its new first record, or gone when empty. */
  #rewrite (peer: string, key: number, recs: BlockRecord[]): void {
    const first = recs[0]
    if (first === undefined || first.seq !== key) this.#db.removeSync([peer, key])
    if (first !== undefined) this.#db.putSync([peer, first.seq], encodeBlock(recs))
  }

  /** The committed block holding `seq`, decoded, with the record's index; undefined if no record has that seq. */
  #locate (peer: string, seq: number): { key: number, recs: BlockRecord[], index: number } | undefined {
    let key: number | undefined
    for (const k of this.#db.getKeys({ start: [peer, seq], end: [peer, -TOP], reverse: true, limit: 1 })) key = (k as [string, number])[1]
    if (key === undefined) return undefined
    const v = this.#db.get([peer, key])
    if (v === undefined) return undefined
    const recs = decodeBlock(v)
    const index = indexOf(recs, seq)
    return index < 0 ? undefined : { key, recs, index }
  }
}

function indexOf (recs: BlockRecord[], seq: number): number {
  let lo = 0
  let hi = recs.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const s = (recs[mid] as BlockRecord).seq
    if (s === seq) return mid
    if (s < seq) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}
