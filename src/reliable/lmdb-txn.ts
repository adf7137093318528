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
 *   outbox     [peer, first seq] → block of up to 64 binary records (lmdb-outbox.ts;
 *                                     a record, lmdb-record.ts: id, bytes, key, version, op,
 *                                     expiresAt, enqueuedAt, rejections)
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
import { decodeRecord, encodeRecord, refOfBody } from './lmdb-record.js'
import { encodeBlock, OutboxBlocks } from './lmdb-outbox.js'
import { IdWindows } from './lmdb-id-window.js'
import type { DeadLetterWrite, PeerInState, PeerOutState, RecordRef, StoreTxn } from './store-logic.js'

/**
 * 3: outbox records stored in blocks (lmdb-outbox.ts), one value per append batch.
 * 2: the dedup window moved from two entries per id (id → slot, slot → id) to
 * blocks of ID_BLOCK ids (lmdb-id-window.ts), and outbox records from a msgpack tuple to a binary
 * layout (lmdb-record.ts). A format-2 directory is migrated at open (migrateFormat2);
 * format 1 is refused (pre-release).
 */
export const FORMAT_VERSION = 3

/**
 * Format 2 → 3, run inside one write transaction at open: every format-2 outbox value (one record
 * under [peer, seq]) becomes a block holding just that record, under the same key — which is
 * what lmdb-outbox.ts requires (key = first seq; blocks ordered and disjoint). Nothing else
 * changed between the two formats. Walks the outbox in chunks so memory stays bounded.
 */
export function migrateFormat2 (d: Dbs): number {
  let n = 0
  let from: Key | undefined
  for (;;) {
    const chunk: Array<{ key: [string, number], value: Buffer }> = []
    for (const { key, value } of d.outbox.getRange({ ...(from === undefined ? {} : { start: from, exclusiveStart: true }), limit: 1024 })) {
      chunk.push({ key: key as [string, number], value })
    }
    for (const { key, value } of chunk) d.outbox.putSync(key, encodeBlock([{ seq: key[1], body: value }]))
    n += chunk.length
    const last = chunk[chunk.length - 1]
    if (last === undefined || chunk.length < 1024) break
    from = last.key
  }
  d.meta.putSync('format', FORMAT_VERSION)
  return n
}


type Key = string | number | Array<string | number>
type ResourceValue = [string | null, string | null, Uint8Array | null, boolean, number]
/** The body (9th) is absent in records written before dead-letter requeue existed, and for large messages. */
type DeadValue = [string, number, string, string | null, string, string, number, number, Uint8Array?]

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
  if (v[8] !== undefined && v[8] !== null) d.requeueable = true
  return d
}

function toResource (key: string, v: ResourceValue): ResourceRecord {
  return { key, version: v[0] ?? undefined, op: v[1] ?? undefined, bytes: v[2] ?? undefined, deleted: v[3], updatedAt: v[4] }
}



export class LmdbTxn implements StoreTxn {
  readonly #d: Dbs
  readonly #maxDead: number
  readonly #ids: IdWindows
  readonly #out: OutboxBlocks
  /**
   * True while LmdbStore runs rules inside a write transaction. inState()
   * outside one (receivedSeq()) must not touch the dedup windows: it reads the
   * committed snapshot, which lags them while a commit is in flight.
   */
  writing = false

  constructor (dbs: Dbs, maxDead: number) {
    this.#d = dbs
    this.#maxDead = maxDead
    this.#ids = new IdWindows(dbs.idblocks)
    this.#out = new OutboxBlocks(dbs.outbox)
  }

  /** End of a transaction callback: write the outbox blocks it filled. */
  flush (): void { this.#out.flush() }
  /** A callback threw: drop what it left unwritten (the store fails stop anyway). */
  discard (): void { this.#out.discard() }

  outState (peer: string): PeerOutState {
    const v = this.#d.peers.get(peer)
    return v === undefined ? { lastSeq: 0, count: 0, bytes: 0 } : { lastSeq: v[0], count: v[1], bytes: v[2] }
  }

  setOutState (peer: string, s: PeerOutState): void {
    this.#d.peers.putSync(peer, [s.lastSeq, s.count, s.bytes])
  }

  getRecord (peer: string, seq: number): OutboxRecord | undefined {
    const body = this.#out.get(peer, seq)
    return body === undefined ? undefined : decodeRecord(seq, body)
  }

  putRecord (peer: string, rec: OutboxRecord, isNew: boolean): void {
    this.#out.put(peer, rec.seq, encodeRecord(rec), isNew)
    if (!isNew) return
    if (rec.key !== undefined) this.#d.outkeys.putSync([peer, rec.key], rec.seq)
    if (rec.expiresAt !== undefined) this.#d.outttl.putSync([peer, rec.expiresAt, rec.seq], true)
  }

  removeRecord (peer: string, rec: RecordRef): void {
    this.#out.remove(peer, rec.seq)
    this.#unindex(peer, rec)
  }

  removeUpTo (peer: string, upto: number, limit: number): RecordRef[] {
    if (!(limit >= 1)) return []
    const refs = this.#out.removeUpTo(peer, upto, Math.floor(limit)).map(r => refOfBody(r.seq, r.body))
    for (const ref of refs) this.#unindex(peer, ref)
    return refs
  }

  /** Drop the key and expiry index entries of a removed record. */
  #unindex (peer: string, rec: RecordRef): void {
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
    return this.#out.firstSeq(peer)
  }

  /** Pending records with afterSeq < seq ≤ upto, in seq order. */
  after (peer: string, afterSeq: number, limit: number, upto = TOP): OutboxRecord[] {
    if (!(limit >= 1) || upto <= afterSeq) return []
    return this.#out.range(peer, afterSeq, upto, Math.floor(limit)).map(r => decodeRecord(r.seq, r.body))
  }

  expiredSeqs (peer: string, now: number, limit: number): number[] {
    const out: number[] = []
    for (const k of this.#d.outttl.getKeys({ start: [peer, -TOP], end: [peer, now, TOP], inclusiveEnd: true, limit })) {
      out.push((k as [string, number, number])[2])
    }
    return out
  }

  addDeadLetter (dl: DeadLetterWrite): void {
    const m = this.#d.meta.get('dead') as [number, number] | undefined
    let [next, first] = m ?? [1, 1]
    const v: DeadValue = [dl.peer, dl.seq, dl.id, nn(dl.key), dl.code, dl.reason, dl.at, dl.size]
    if (dl.body !== undefined) v.push(dl.body)
    this.#d.dead.putSync(next++, v)
    while (next - first > this.#maxDead) this.#d.dead.removeSync(first++)
    this.#d.meta.putSync('dead', [next, first])
  }

  inState (peer: string): PeerInState {
    const v = this.#d.inbox.get(peer)
    const st = v === undefined ? { receivedSeq: 0, idNext: 0, idFirst: 0 } : { receivedSeq: v[0], idNext: v[1], idFirst: v[2] }
    if (this.writing) this.#ids.begin(peer, st)
    return st
  }

  setInState (peer: string, s: PeerInState): void {
    this.#d.inbox.putSync(peer, [s.receivedSeq, s.idNext, s.idFirst])
    this.#ids.write(peer)
  }

  /**
   * hasInboundId outside a write transaction: the cached window (committed ids plus those of a
   * commit in flight), built from the committed snapshot when there is none yet — safe, since
   * a window is only absent while no inbound callback has run for the peer since the last reset.
   */
  peekId (peer: string, id: string): boolean {
    // No closure per call: this runs once per received message (issue 16, drain).
    const w = this.#ids.cached(peer) ?? this.#ids.begin(peer, this.inState(peer))
    return w.ids.has(id)
  }

  /** A write transaction failed: drop every cached window (rebuilt from disk on next use). */
  forgetIdWindows (): void { this.#ids.clear() }

  hasId (peer: string, id: string): boolean { return this.#ids.live(peer, this.writing).ids.has(id) }
  addId (peer: string, id: string, slot: number): void { this.#ids.add(this.#ids.live(peer, this.writing), id, slot) }
  evictId (peer: string, slot: number): void { this.#ids.evict(this.#ids.live(peer, this.writing), slot) }

  getResource (key: string): ResourceRecord | undefined {
    const v = this.#d.resources.get(key)
    return v === undefined ? undefined : toResource(key, v)
  }

  putResource (rec: ResourceRecord): void {
    this.#d.resources.putSync(rec.key, [nn(rec.version), nn(rec.op), nn(rec.bytes), rec.deleted, rec.updatedAt])
  }

  // ---- reads used only outside transactions ------------------------------------

  pendingStats (): Array<{ peer: string, count: number, bytes: number }> {
    const out: Array<{ peer: string, count: number, bytes: number }> = []
    for (const { key, value } of this.#d.peers.getRange({})) if (value[1] > 0) out.push({ peer: key, count: value[1], bytes: value[2] })
    return out
  }

  peersWithPending (): string[] {
    const out: string[] = []
    for (const { key, value } of this.#d.peers.getRange({})) if (value[1] > 0) out.push(key)
    return out
  }

  /** The kept body of dead letter peer/seq (newest match). */
  deadBody (peer: string, seq: number): Uint8Array | undefined {
    for (const { value } of this.#d.dead.getRange({ reverse: true })) {
      if (value[0] === peer && value[1] === seq) return value[8] ?? undefined
    }
    return undefined
  }

  /** Remove dead letters of `peer` (all when undefined), only `seqs` when given; inside a write transaction. */
  purgeDead (peer: string | undefined, seqs: number[] | undefined): number {
    const only = seqs === undefined ? undefined : new Set(seqs)
    const keys: number[] = []
    for (const { key, value } of this.#d.dead.getRange({})) {
      if (peer !== undefined && value[0] !== peer) continue
      if (only !== undefined && !only.has(value[1])) continue
      keys.push(key as number)
    }
    for (const k of keys) this.#d.dead.removeSync(k)
    return keys.length
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
