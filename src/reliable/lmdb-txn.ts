/**
 * LMDB layout of LmdbStore and the StoreTxn backend the shared rules run on.
 * Inside `root.transaction(cb)` every get/getRange below reads the write
 * transaction (including its own earlier writes); outside one they read the
 * latest committed snapshot.
 *
 * Sub-databases (keys use lmdb's ordered-binary encoding, so [peer, seq]
 * sorts by peer, then numerically by seq; values are msgpack tuples, smaller
 * and faster than objects; null stands for "absent"):
 *
 *   meta       'format' → FORMAT_VERSION; 'dead' → [nextN, firstN]
 *   peers      peer → [lastSeq, count, bytes]            outbox counters, kept in the
 *                                                       same transaction as the records
 *   outbox     [peer, seq] → binary record (lmdb-record.ts): id, bytes, key, version, op,
 *                                     expiresAt, enqueuedAt, rejections
 *   outkeys    [peer, key] → seq                         supersession index
 *   outttl     [peer, expiresAt, seq] → true             expiry index
 *   inbox      peer → [receivedSeq, idNext, idFirst]
 *   idblocks   [peer, block] → string                    the dedup window: the ids of slots
 *                                                       block·ID_BLOCK… joined by NUL (ids never
 *                                                       hold NUL, store-rules.ts); slot s (idFirst
 *                                                       ≤ s < idNext) is item s % ID_BLOCK of
 *                                                       block ⌊s / ID_BLOCK⌋, '' when evicted
 *   resources  key → [version, op, bytes, deleted, updatedAt]
 *   dead       n → [peer, seq, id, key, code, reason, at, size]   bounded FIFO
 */
import type { Database, RootDatabase } from 'lmdb'
import type { DeadLetter, OutboxRecord, ResourceRecord } from './store.js'
import { decodeRecord, encodeRecord } from './lmdb-record.js'
import type { PeerInState, PeerOutState, RecordRef, StoreTxn } from './store-logic.js'

/**
 * 2: the dedup window moved from two entries per id (id → slot, slot → id) to
 * blocks of ID_BLOCK ids, and outbox records from a msgpack tuple to a binary
 * layout (lmdb-record.ts). Pre-release: no migration, a format-1 directory is
 * refused at open (LmdbStore.open).
 */
export const FORMAT_VERSION = 2

/**
 * Ids per dedup block. One commit rewrites the block it continues and writes
 * the ones it fills; eviction removes whole blocks. Per message that is a
 * share of one value write instead of ~6 LMDB operations (put id → slot, put
 * slot → id, and at eviction get + remove of both) — the receiver's
 * commitInbound was ≈10 µs/msg of the drain with the per-id layout.
 */
export const ID_BLOCK = 128

type Key = string | number | Array<string | number>
type ResourceValue = [string | null, string | null, Uint8Array | null, boolean, number]
type DeadValue = [string, number, string, string | null, string, string, number, number]

export interface Dbs {
  meta: Database<unknown, string>
  peers: Database<[number, number, number], string>
  outbox: Database<Buffer, Key>
  outkeys: Database<number, Key>
  outttl: Database<true, Key>
  inbox: Database<[number, number, number], string>
  idblocks: Database<string, Key>
  resources: Database<ResourceValue, string>
  dead: Database<DeadValue, number>
}

export function openDbs (root: RootDatabase): Dbs {
  const o = <V, K extends Key>(name: string): Database<V, K> => root.openDB<V, K>(name, {})
  return {
    meta: o('meta'),
    peers: o('peers'),
    outbox: root.openDB<Buffer, Key>('outbox', { encoding: 'binary' }),
    outkeys: o('outkeys'),
    outttl: o('outttl'),
    inbox: o('inbox'),
    idblocks: o('idblocks'),
    resources: o('resources'),
    dead: o('dead')
  }
}

/** Above every seq (safe integers) and every finite expiresAt, as a range end. */
const TOP = Infinity
const nn = <T>(v: T | undefined): T | null => v === undefined ? null : v

function toDead (v: DeadValue): DeadLetter {
  const d: DeadLetter = { peer: v[0], seq: v[1], id: v[2], code: v[4], reason: v[5], at: v[6], size: v[7] }
  if (v[3] !== null) d.key = v[3]
  return d
}

function toResource (key: string, v: ResourceValue): ResourceRecord {
  return { key, version: v[0] ?? undefined, op: v[1] ?? undefined, bytes: v[2] ?? undefined, deleted: v[3], updatedAt: v[4] }
}

/**
 * A peer's dedup window in memory: what `idblocks` holds for slots
 * first..next-1, plus the writes of the current transaction. Trusted only
 * while `first`/`next` equal the committed inbox counters read at the start of
 * each write transaction; otherwise (a commit failed after the callback ran,
 * or the store was reopened) it is rebuilt from disk. Ids are only added with
 * `next` growing and evicted with `first` growing, in the same transaction
 * that writes the counters, so equal counters mean equal windows.
 */
interface IdWindow {
  first: number
  next: number
  /** id → slot, for hasId. */
  ids: Map<string, number>
  /** slot → id, for eviction and block writes. */
  slots: Map<number, string>
  /** first / next as committed (or as of the last setInState in this transaction). */
  diskFirst: number
  diskNext: number
}

const blockOf = (slot: number): number => Math.floor(slot / ID_BLOCK)

/**
 * Records whose RecordRef (size, key, expiry) is kept in memory at most, over
 * all peers. The cumulative ack then removes them by key without reading
 * their values back (that read was ≈4 µs/msg of the hub in the drain
 * profile); records beyond this are read as before.
 */
const MAX_REFS = 1 << 16

export class LmdbTxn implements StoreTxn {
  readonly #d: Dbs
  readonly #maxDead: number
  readonly #windows = new Map<string, IdWindow>()
  /**
   * True while LmdbStore runs rules inside a write transaction. inState()
   * outside one (receivedSeq()) must not touch the windows: it reads the
   * committed snapshot, which lags the windows while a commit is in flight.
   */
  writing = false
  /**
   * RecordRef by peer and seq, filled by putRecord. Invariant: for a record
   * in the database, an entry here equals its stored size/key/expiry. A
   * record's seq, size, key and expiry never change, and seqs are never
   * reused once committed; an entry from a transaction whose commit failed
   * names a seq that is not in the database (lastSeq was not raised), which
   * upTo() never looks up, and is overwritten when that seq is assigned again.
   */
  readonly #refs = new Map<string, Map<number, RecordRef>>()
  #refCount = 0

  constructor (dbs: Dbs, maxDead: number) {
    this.#d = dbs
    this.#maxDead = maxDead
  }

  outState (peer: string): PeerOutState {
    const v = this.#d.peers.get(peer)
    return v === undefined ? { lastSeq: 0, count: 0, bytes: 0 } : { lastSeq: v[0], count: v[1], bytes: v[2] }
  }

  setOutState (peer: string, s: PeerOutState): void {
    this.#d.peers.putSync(peer, [s.lastSeq, s.count, s.bytes])
  }

  getRecord (peer: string, seq: number): OutboxRecord | undefined {
    const v = this.#d.outbox.get([peer, seq])
    return v === undefined ? undefined : decodeRecord(seq, v)
  }

  putRecord (peer: string, rec: OutboxRecord, isNew: boolean): void {
    this.#d.outbox.putSync([peer, rec.seq], encodeRecord(rec))
    if (!isNew) return
    let refs = this.#refs.get(peer)
    if (refs === undefined) { refs = new Map(); this.#refs.set(peer, refs) }
    const had = refs.has(rec.seq)
    if (had || this.#refCount < MAX_REFS) {
      refs.set(rec.seq, { seq: rec.seq, size: rec.bytes.byteLength, key: rec.key, expiresAt: rec.expiresAt })
      if (!had) this.#refCount++
    }
    if (rec.key !== undefined) this.#d.outkeys.putSync([peer, rec.key], rec.seq)
    if (rec.expiresAt !== undefined) this.#d.outttl.putSync([peer, rec.expiresAt, rec.seq], true)
  }

  removeRecord (peer: string, rec: RecordRef): void {
    this.#d.outbox.removeSync([peer, rec.seq])
    const refs = this.#refs.get(peer)
    if (refs?.delete(rec.seq) === true) this.#refCount--
    if (rec.key !== undefined && this.#d.outkeys.get([peer, rec.key]) === rec.seq) this.#d.outkeys.removeSync([peer, rec.key])
    if (rec.expiresAt !== undefined) this.#d.outttl.removeSync([peer, rec.expiresAt, rec.seq])
  }

  keySeq (peer: string, key: string): number | undefined {
    return this.#d.outkeys.get([peer, key])
  }

  oldest (peer: string): OutboxRecord | undefined {
    return this.after(peer, -Infinity, 1)[0]
  }

  oldestSeq (peer: string): number | undefined {
    for (const k of this.#d.outbox.getKeys({ start: [peer, -TOP], end: [peer, TOP], limit: 1 })) return (k as [string, number])[1]
    return undefined
  }

  /** Pending records with afterSeq < seq ≤ upto, in seq order. */
  after (peer: string, afterSeq: number, limit: number, upto = TOP): OutboxRecord[] {
    if (!(limit >= 1) || upto <= afterSeq) return []
    const out: OutboxRecord[] = []
    const range = this.#d.outbox.getRange({
      start: [peer, afterSeq],
      exclusiveStart: true,
      end: [peer, upto],
      inclusiveEnd: true,
      ...(Number.isFinite(limit) ? { limit: Math.floor(limit) } : {})
    })
    for (const { key, value } of range) out.push(decodeRecord((key as [string, number])[1], value))
    return out
  }

  upTo (peer: string, upto: number, limit: number): RecordRef[] {
    if (!(limit >= 1)) return []
    const refs = this.#refs.get(peer)
    const out: RecordRef[] = []
    const keys = this.#d.outbox.getKeys({ start: [peer, -TOP], end: [peer, upto], inclusiveEnd: true, ...(Number.isFinite(limit) ? { limit: Math.floor(limit) } : {}) })
    for (const k of keys) {
      const seq = (k as [string, number])[1]
      let ref = refs?.get(seq)
      if (ref === undefined) {
        const rec = this.getRecord(peer, seq)
        if (rec === undefined) continue // unreachable: the key was just listed
        ref = { seq, size: rec.bytes.byteLength, key: rec.key, expiresAt: rec.expiresAt }
      }
      out.push(ref)
    }
    return out
  }

  expiredSeqs (peer: string, now: number, limit: number): number[] {
    const out: number[] = []
    for (const k of this.#d.outttl.getKeys({ start: [peer, -TOP], end: [peer, now, TOP], inclusiveEnd: true, limit })) {
      out.push((k as [string, number, number])[2])
    }
    return out
  }

  addDeadLetter (dl: DeadLetter): void {
    const m = this.#d.meta.get('dead') as [number, number] | undefined
    let [next, first] = m ?? [1, 1]
    this.#d.dead.putSync(next++, [dl.peer, dl.seq, dl.id, nn(dl.key), dl.code, dl.reason, dl.at, dl.size])
    while (next - first > this.#maxDead) this.#d.dead.removeSync(first++)
    this.#d.meta.putSync('dead', [next, first])
  }

  inState (peer: string): PeerInState {
    const v = this.#d.inbox.get(peer)
    const st = v === undefined ? { receivedSeq: 0, idNext: 0, idFirst: 0 } : { receivedSeq: v[0], idNext: v[1], idFirst: v[2] }
    if (this.writing) this.#window(peer, st)
    return st
  }

  setInState (peer: string, s: PeerInState): void {
    this.#d.inbox.putSync(peer, [s.receivedSeq, s.idNext, s.idFirst])
    const w = this.#windows.get(peer)
    if (w === undefined) return
    // Blocks wholly below the window go; blocks holding slots added since the last write are rewritten.
    for (let b = blockOf(w.diskFirst); b < blockOf(w.first); b++) this.#d.idblocks.removeSync([peer, b])
    if (w.next > w.diskNext) {
      for (let b = Math.max(blockOf(w.diskNext), blockOf(w.first)); b <= blockOf(w.next - 1); b++) {
        // One string, not an array of strings: msgpack packs it in one go (an array of 128 was
        // most of the commit's CPU in the live profile, which rewrites a partial block each time).
        let ids = ''
        const end = Math.min(w.next, (b + 1) * ID_BLOCK)
        for (let slot = b * ID_BLOCK; slot < end; slot++) ids += (slot === b * ID_BLOCK ? '' : '\u0000') + (w.slots.get(slot) ?? '')
        this.#d.idblocks.putSync([peer, b], ids)
      }
    }
    w.diskFirst = w.first
    w.diskNext = w.next
  }

  /** The peer's window, checked against (or rebuilt from) the counters `st` read in this transaction. */
  #window (peer: string, st: PeerInState): IdWindow {
    let w = this.#windows.get(peer)
    if (w !== undefined && w.first === st.idFirst && w.next === st.idNext && w.diskFirst === w.first && w.diskNext === w.next) return w
    w = { first: st.idFirst, next: st.idNext, ids: new Map(), slots: new Map(), diskFirst: st.idFirst, diskNext: st.idNext }
    if (st.idNext > st.idFirst) {
      const range = this.#d.idblocks.getRange({ start: [peer, blockOf(st.idFirst)], end: [peer, blockOf(st.idNext - 1)], inclusiveEnd: true })
      for (const { key, value } of range) {
        const base = (key as [string, number])[1] * ID_BLOCK
        const ids = value.split('\u0000')
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i] as string
          const slot = base + i
          if (id === '' || slot < st.idFirst || slot >= st.idNext) continue
          w.ids.set(id, slot)
          w.slots.set(slot, id)
        }
      }
    }
    this.#windows.set(peer, w)
    return w
  }

  #live (peer: string): IdWindow {
    const w = this.#windows.get(peer)
    // inState() runs first in every inbound transaction (store-logic commitInboundItems).
    if (w === undefined || !this.writing) throw new Error('dedup window used outside an inbound write transaction')
    return w
  }

  hasId (peer: string, id: string): boolean {
    return this.#live(peer).ids.has(id)
  }

  addId (peer: string, id: string, slot: number): void {
    const w = this.#live(peer)
    w.ids.set(id, slot)
    w.slots.set(slot, id)
    if (slot >= w.next) w.next = slot + 1
  }

  evictId (peer: string, slot: number): void {
    const w = this.#live(peer)
    const id = w.slots.get(slot)
    w.slots.delete(slot)
    if (id !== undefined && w.ids.get(id) === slot) w.ids.delete(id)
    if (slot >= w.first) w.first = slot + 1
  }

  getResource (key: string): ResourceRecord | undefined {
    const v = this.#d.resources.get(key)
    return v === undefined ? undefined : toResource(key, v)
  }

  putResource (rec: ResourceRecord): void {
    this.#d.resources.putSync(rec.key, [nn(rec.version), nn(rec.op), nn(rec.bytes), rec.deleted, rec.updatedAt])
  }

  // ---- reads used only outside transactions ------------------------------------

  peersWithPending (): string[] {
    const out: string[] = []
    for (const { key, value } of this.#d.peers.getRange({})) if (value[1] > 0) out.push(key)
    return out
  }

  deadLetters (peer: string | undefined, limit: number): DeadLetter[] {
    const out: DeadLetter[] = []
    if (!(limit >= 1)) return out
    // Newest first. Filtering by peer scans the (bounded) log; it is an inspection API.
    for (const { value } of this.#d.dead.getRange({ reverse: true })) {
      if (peer !== undefined && value[0] !== peer) continue
      out.push(toDead(value))
      if (out.length >= limit) break
    }
    return out
  }

  listResources (prefix: string, limit: number): ResourceRecord[] {
    const out: ResourceRecord[] = []
    if (!(limit >= 1)) return out
    for (const { key, value } of this.#d.resources.getRange(prefix === '' ? {} : { start: prefix })) {
      if (!key.startsWith(prefix)) break
      out.push(toResource(key, value))
      if (out.length >= limit) break
    }
    return out
  }
}
