/**
 * The rules of the reliable store (supersession, quotas, TTL, rejections,
 * dead letters, inbound dedup and resource versions), written once against a
 * small synchronous backend interface. MemoryStore runs them on Maps;
 * LmdbStore runs them inside one LMDB write transaction per call, where reads
 * see the transaction's own earlier writes. Keeping one copy of the rules is
 * what makes the two stores agree; the compliance suite also checks them
 * against an independent naive model.
 *
 * Every function here must not throw once it has started writing: LMDB's
 * batched transactions do not roll back a callback that throws half-way.
 * Inputs are validated before (store-rules.ts), and the functions only read,
 * compute and write.
 */
import { isDeleteOp, isNewer } from './store-rules.js'
import { DEAD_BODY_MAX, type AppendOutcome, type DeadLetter, type InboundItem, type InboundResult, type OutboxInput, type OutboxRecord, type QuotaPolicy, type ResourceRecord } from './store.js'

/** Per-peer outbox counters, persisted so seqs stay monotonic after everything was acked. */
export interface PeerOutState { lastSeq: number, count: number, bytes: number }

/** Per-peer inbox state: highest processed seq and the dedup ring's slot counters. */
export interface PeerInState {
  receivedSeq: number
  /** Slot the next remembered id gets. */
  idNext: number
  /** Oldest slot still remembered (slots idFirst..idNext-1 are live). */
  idFirst: number
}

/** What removing a record needs to know of it (the cumulative ack reads only this much). */
export interface RecordRef {
  seq: number
  /** bytes.byteLength */
  size: number
  key?: string | undefined
  expiresAt?: number | undefined
}

export function refOf (rec: OutboxRecord): RecordRef {
  return { seq: rec.seq, size: rec.bytes.byteLength, key: rec.key, expiresAt: rec.expiresAt }
}

/** What the rules need from a backend. Synchronous; one call = one transaction. */
export interface StoreTxn {
  outState (peer: string): PeerOutState
  setOutState (peer: string, s: PeerOutState): void
  getRecord (peer: string, seq: number): OutboxRecord | undefined
  /** isNew: index the record's key and expiry too; otherwise only rewrite it (key and expiry unchanged). */
  putRecord (peer: string, rec: OutboxRecord, isNew: boolean): void
  /** Remove the record and its key/expiry index entries. */
  removeRecord (peer: string, rec: RecordRef): void
  /** Seq of the pending record holding supersession key `key`. */
  keySeq (peer: string, key: string): number | undefined
  /** Lowest pending record. */
  oldest (peer: string): OutboxRecord | undefined
  /**
   * Remove the pending records with seq ≤ upto, lowest first, at most `limit`, with their
   * key/expiry index entries; returns what was removed. One call, not upTo + removeRecord per
   * record: a backend can remove whole runs at once (LmdbStore drops whole blocks).
   */
  removeUpTo (peer: string, upto: number, limit: number): RecordRef[]
  /** Seqs of pending records with expiresAt ≤ now, at most `limit`. */
  expiredSeqs (peer: string, now: number, limit: number): number[]
  /** Append to the bounded dead-letter log (the backend evicts the oldest). */
  addDeadLetter (dl: DeadLetterWrite): void

  inState (peer: string): PeerInState
  setInState (peer: string, s: PeerInState): void
  hasId (peer: string, id: string): boolean
  addId (peer: string, id: string, slot: number): void
  /** Forget the id remembered in `slot`. */
  evictId (peer: string, slot: number): void
  getResource (key: string): ResourceRecord | undefined
  putResource (rec: ResourceRecord): void
}

const CHUNK = 1024

/** The canonical record shape: optional fields are absent, never `undefined`, so stores compare equal. */
export function makeRecord (input: OutboxInput, seq: number, enqueuedAt: number, rejections: number): OutboxRecord {
  const r: OutboxRecord = { id: input.id, bytes: input.bytes, seq, enqueuedAt, rejections }
  if (input.key !== undefined) r.key = input.key
  if (input.version !== undefined) r.version = input.version
  if (input.op !== undefined) r.op = input.op
  if (input.expiresAt !== undefined) r.expiresAt = input.expiresAt
  return r
}

/** A dead letter as written: the record plus, when small enough, the message body (for requeue). */
export type DeadLetterWrite = DeadLetter & { body?: Uint8Array }

export function makeDeadLetter (peer: string, rec: OutboxRecord, code: string, reason: string, at: number): DeadLetterWrite {
  const d: DeadLetterWrite = { peer, seq: rec.seq, id: rec.id, code, reason, at, size: rec.bytes.byteLength }
  if (rec.key !== undefined) d.key = rec.key
  if (rec.bytes.byteLength <= DEAD_BODY_MAX) { d.requeueable = true; d.body = rec.bytes.slice() }
  return d
}

function drop (tx: StoreTxn, peer: string, st: PeerOutState, rec: OutboxRecord | RecordRef): void {
  const ref = 'bytes' in rec ? refOf(rec) : rec
  tx.removeRecord(peer, ref)
  st.count--
  st.bytes -= ref.size
}

function rejected (reason: string): AppendOutcome {
  return { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason }
}

function appendOne (tx: StoreTxn, peer: string, st: PeerOutState, item: OutboxInput, q: QuotaPolicy, now: number): AppendOutcome {
  const size = item.bytes.byteLength
  if (size > q.maxBytes) return rejected(`message of ${size} bytes is larger than the quota of ${q.maxBytes} bytes for peer ${peer}`)

  let old: OutboxRecord | undefined
  if (item.key !== undefined) {
    const s = tx.keySeq(peer, item.key)
    old = s === undefined ? undefined : tx.getRecord(peer, s)
    if (old !== undefined && !isNewer(item.version, item.op, old.version, old.op)) {
      return { status: 'stale', pendingVersion: old.version }
    }
  }

  // Decide the quota before changing anything: a rejected message leaves the outbox as it was
  // (including the pending record it would have superseded).
  const count = st.count - (old === undefined ? 0 : 1) + 1
  const bytes = st.bytes - (old === undefined ? 0 : old.bytes.byteLength) + size
  if ((count > q.maxMessages || bytes > q.maxBytes) && q.overflow === 'reject') {
    return rejected(`outbox for peer ${peer} is full: ${st.count} messages / ${st.bytes} bytes pending, quota ${q.maxMessages} messages / ${q.maxBytes} bytes`)
  }

  const superseded: number[] = []
  if (old !== undefined) {
    // A normal replacement, still recorded so that nothing leaves the outbox without a trace.
    drop(tx, peer, st, old)
    tx.addDeadLetter(makeDeadLetter(peer, old, 'EF_SUPERSEDED', `superseded by ${item.id} (version ${item.version ?? 'none'}${item.op === undefined ? '' : ', ' + item.op})`, now))
    superseded.push(old.seq)
  }
  const dropped: number[] = []
  while (st.count + 1 > q.maxMessages || st.bytes + size > q.maxBytes) {
    const o = tx.oldest(peer)
    if (o === undefined) break // unreachable: size ≤ maxBytes and maxMessages ≥ 1
    drop(tx, peer, st, o)
    tx.addDeadLetter(makeDeadLetter(peer, o, 'EF_QUOTA_DROPPED', `dropped to make room for ${item.id} (drop-oldest quota: ${q.maxMessages} messages / ${q.maxBytes} bytes)`, now))
    dropped.push(o.seq)
  }

  const seq = ++st.lastSeq
  tx.putRecord(peer, makeRecord(item, seq, now, 0), true)
  st.count++
  st.bytes += size
  return { status: 'queued', seq, superseded, dropped }
}

export function appendItems (tx: StoreTxn, peer: string, items: OutboxInput[], q: QuotaPolicy, now: number): AppendOutcome[] {
  const st = tx.outState(peer)
  const out = items.map(item => appendOne(tx, peer, st, item, q, now))
  tx.setOutState(peer, st)
  return out
}

export function ackUpTo (tx: StoreTxn, peer: string, upto: number): number {
  const st = tx.outState(peer)
  let n = 0
  for (;;) {
    const recs = tx.removeUpTo(peer, upto, CHUNK)
    for (const r of recs) {
      st.count--
      st.bytes -= r.size
    }
    n += recs.length
    if (recs.length < CHUNK) break
  }
  if (n > 0) tx.setOutState(peer, st)
  return n
}

export function rejectRecord (tx: StoreTxn, peer: string, seq: number, maxRejections: number, code: string, reason: string, now: number): number {
  const rec = tx.getRecord(peer, seq)
  if (rec === undefined) return -1
  const rejections = rec.rejections + 1
  if (rejections >= maxRejections) {
    const st = tx.outState(peer)
    drop(tx, peer, st, rec)
    tx.setOutState(peer, st)
    tx.addDeadLetter(makeDeadLetter(peer, { ...rec, rejections }, 'EF_REJECTED_BY_PEER', `${code}: ${reason} (rejected ${rejections} times)`, now))
    return -1
  }
  tx.putRecord(peer, { ...rec, rejections }, false)
  return rejections
}

export function expireRecords (tx: StoreTxn, peer: string, now: number): OutboxRecord[] {
  const out: OutboxRecord[] = []
  const st = tx.outState(peer)
  for (;;) {
    const seqs = tx.expiredSeqs(peer, now, CHUNK)
    for (const seq of seqs) {
      const rec = tx.getRecord(peer, seq)
      if (rec === undefined) continue
      drop(tx, peer, st, rec)
      tx.addDeadLetter(makeDeadLetter(peer, rec, 'EF_TTL_EXPIRED', `expired at ${rec.expiresAt ?? '?'} (now ${now})`, now))
      out.push(rec)
    }
    if (seqs.length < CHUNK) break
  }
  if (out.length > 0) tx.setOutState(peer, st)
  return out.sort((a, b) => a.seq - b.seq)
}

export function makeResource (item: InboundItem, now: number): ResourceRecord {
  const deleted = isDeleteOp(item.op)
  return {
    key: item.key as string,
    version: item.version,
    op: item.op,
    bytes: deleted ? undefined : item.bytes,
    deleted,
    updatedAt: now
  }
}

export function commitInboundItems (tx: StoreTxn, peer: string, items: InboundItem[], now: number, dedupWindow: number): InboundResult {
  const st = tx.inState(peer)
  const base = st.receivedSeq
  let max = base
  const outcome: InboundResult['outcome'] = []
  for (const item of items) {
    if (item.seq > max) max = item.seq
    if (item.seq <= base || tx.hasId(peer, item.id)) {
      outcome.push('duplicate')
      continue
    }
    if (item.key !== undefined) {
      const cur = tx.getResource(item.key)
      if (cur !== undefined && !isNewer(item.version, item.op, cur.version, cur.deleted ? 'delete' : cur.op)) {
        outcome.push('stale')
        continue
      }
      tx.putResource(makeResource(item, now))
    }
    tx.addId(peer, item.id, st.idNext++)
    while (st.idNext - st.idFirst > dedupWindow) tx.evictId(peer, st.idFirst++)
    outcome.push('new')
  }
  st.receivedSeq = max
  tx.setInState(peer, st)
  return { outcome }
}
