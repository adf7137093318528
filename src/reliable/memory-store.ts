/**
 * In-memory ReliableStore: the reference implementation of the contract in
 * store.ts (the rules live in store-logic.ts and are shared with LmdbStore).
 * Nothing survives the process; `durability` is accepted and reported only so
 * code can swap stores without changes.
 *
 * Per peer the outbox is a Map seq → record plus an ascending array of seqs
 * (seqs are assigned in increasing order, so appends are pushes). Removals
 * leave holes in the array that are skipped, trimmed at both ends, and
 * compacted away once they outnumber half the live records, so pending() is
 * a binary search plus a short walk and every operation is amortised
 * O(log n + k). Expiry uses the same idea with an array sorted by expiresAt.
 */
import { InvalidOptionError, StoreClosedError } from '../errors.js'
import { intOption } from '../util/options.js'
import type { AppendOutcome, DeadLetter, Durability, InboundItem, InboundResult, OutboxInput, OutboxRecord, OutboxStats, QuotaPolicy, ReliableStore, ResourceRecord } from './store.js'
import { ackUpTo, appendItems, commitInboundItems, expireRecords, refOf, rejectRecord, type DeadLetterWrite, type PeerInState, type PeerOutState, type RecordRef, type StoreTxn } from './store-logic.js'
import {
  checkInboundItem, checkKeyString, checkNow, checkNumber, checkOutboxInput, checkPeer, checkQuota, compareKeys,
  DEFAULT_DEDUP_WINDOW, DEFAULT_MAX_DEAD_LETTERS, LIMITS
} from './store-rules.js'

export interface MemoryStoreOptions {
  /** Reported as `durability`; has no effect (memory is never durable). @default 'sync' */
  durability?: Durability
  /** Message ids remembered per peer for inbound dedup. @default 10000 */
  dedupWindow?: number
  /** Dead letters kept (oldest evicted first). @default 100000 */
  maxDeadLetters?: number
}

/** First index in the ascending `arr[from..]` whose value is > x. */
function upperBound (arr: number[], from: number, x: number): number {
  let lo = from
  let hi = arr.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((arr[mid] as number) <= x) lo = mid + 1
    else hi = mid
  }
  return lo
}

interface TtlEntry { at: number, seq: number }

class PeerOutbox {
  state: PeerOutState = { lastSeq: 0, count: 0, bytes: 0 }
  readonly recs = new Map<number, OutboxRecord>()
  /** Ascending seqs; entries whose record is gone are holes. */
  order: number[] = []
  head = 0
  readonly keys = new Map<string, number>()
  /** Sorted by (at, seq); entries of removed records are holes. */
  ttl: TtlEntry[] = []
  ttlHead = 0
  ttlLive = 0

  add (rec: OutboxRecord): void {
    this.recs.set(rec.seq, rec)
    this.order.push(rec.seq)
    if (rec.key !== undefined) this.keys.set(rec.key, rec.seq)
    if (rec.expiresAt !== undefined) {
      const e: TtlEntry = { at: rec.expiresAt, seq: rec.seq }
      const t = this.ttl
      // Usually expiries grow with seq, and this is a push.
      if (t.length === this.ttlHead || (t[t.length - 1] as TtlEntry).at <= e.at) t.push(e)
      else {
        let lo = this.ttlHead
        let hi = t.length
        while (lo < hi) {
          const mid = (lo + hi) >>> 1
          if ((t[mid] as TtlEntry).at <= e.at) lo = mid + 1
          else hi = mid
        }
        t.splice(lo, 0, e)
      }
      this.ttlLive++
    }
  }

  remove (rec: RecordRef): void {
    if (!this.recs.delete(rec.seq)) return
    if (rec.key !== undefined && this.keys.get(rec.key) === rec.seq) this.keys.delete(rec.key)
    if (rec.expiresAt !== undefined) this.ttlLive--
    this.#trim()
  }

  #trim (): void {
    const o = this.order
    while (this.head < o.length && !this.recs.has(o[this.head] as number)) this.head++
    while (o.length > this.head && !this.recs.has(o[o.length - 1] as number)) o.pop()
    if (this.head === o.length) { this.order = []; this.head = 0 } else if (o.length - this.head > this.recs.size * 1.5 + 32) {
      this.order = o.slice(this.head).filter(s => this.recs.has(s))
      this.head = 0
    }
    const t = this.ttl
    while (this.ttlHead < t.length && !this.#ttlLive(t[this.ttlHead] as TtlEntry)) this.ttlHead++
    if (this.ttlLive === 0) { this.ttl = []; this.ttlHead = 0 } else if (t.length - this.ttlHead > this.ttlLive * 1.5 + 32) {
      this.ttl = t.slice(this.ttlHead).filter(e => this.#ttlLive(e))
      this.ttlHead = 0
    }
  }

  #ttlLive (e: TtlEntry): boolean {
    return this.recs.get(e.seq)?.expiresAt === e.at
  }

  /** Live records with seq > after, ascending, at most limit. */
  from (after: number, limit: number, upto = Infinity): OutboxRecord[] {
    const out: OutboxRecord[] = []
    const o = this.order
    for (let i = upperBound(o, this.head, after); i < o.length && out.length < limit; i++) {
      const seq = o[i] as number
      if (seq > upto) break
      const r = this.recs.get(seq)
      if (r !== undefined) out.push(r)
    }
    return out
  }

  expired (now: number, limit: number): number[] {
    const out: number[] = []
    for (let i = this.ttlHead; i < this.ttl.length && out.length < limit; i++) {
      const e = this.ttl[i] as TtlEntry
      if (e.at > now) break
      if (this.#ttlLive(e)) out.push(e.seq)
    }
    return out
  }
}

interface PeerInbox { state: PeerInState, ids: Map<string, number>, slots: Map<number, string> }

function copyRecord (r: OutboxRecord): OutboxRecord {
  return { ...r }
}

export class MemoryStore implements ReliableStore {
  readonly durability: Durability
  readonly #dedupWindow: number
  readonly #maxDead: number
  #closed = false
  readonly #out = new Map<string, PeerOutbox>()
  readonly #in = new Map<string, PeerInbox>()
  readonly #resources = new Map<string, ResourceRecord>()
  /** Resource keys in listResources() order (binary insertion; keys are never removed, deletes are tombstones). */
  readonly #resourceKeys: string[] = []
  /** Dead-letter log, oldest first from #deadHead. */
  #dead: DeadLetterWrite[] = []
  #deadHead = 0
  readonly #tx: StoreTxn

  constructor (options: MemoryStoreOptions = {}) {
    const d = options.durability ?? 'sync'
    if (d !== 'sync' && d !== 'relaxed') throw new InvalidOptionError('durability', 'must be "sync" or "relaxed"')
    this.durability = d
    this.#dedupWindow = intOption('dedupWindow', options.dedupWindow, DEFAULT_DEDUP_WINDOW, 1)
    this.#maxDead = intOption('maxDeadLetters', options.maxDeadLetters, DEFAULT_MAX_DEAD_LETTERS, 1)
    this.#tx = this.#makeTxn()
  }

  #outbox (peer: string): PeerOutbox {
    let p = this.#out.get(peer)
    if (p === undefined) { p = new PeerOutbox(); this.#out.set(peer, p) }
    return p
  }

  #inbox (peer: string): PeerInbox {
    let p = this.#in.get(peer)
    if (p === undefined) { p = { state: { receivedSeq: 0, idNext: 0, idFirst: 0 }, ids: new Map(), slots: new Map() }; this.#in.set(peer, p) }
    return p
  }

  #makeTxn (): StoreTxn {
    return {
      outState: peer => ({ ...this.#outbox(peer).state }),
      setOutState: (peer, s) => { this.#outbox(peer).state = { ...s } },
      getRecord: (peer, seq) => this.#out.get(peer)?.recs.get(seq),
      putRecord: (peer, rec, isNew) => {
        const p = this.#outbox(peer)
        if (isNew) p.add(rec)
        else p.recs.set(rec.seq, rec)
      },
      removeRecord: (peer, rec) => this.#out.get(peer)?.remove(rec),
      keySeq: (peer, key) => this.#out.get(peer)?.keys.get(key),
      oldest: peer => this.#out.get(peer)?.from(-Infinity, 1)[0],
      removeUpTo: (peer, upto, limit) => {
        const p = this.#out.get(peer)
        if (p === undefined) return []
        const refs = p.from(-Infinity, limit, upto).map(refOf)
        for (const r of refs) p.remove(r)
        return refs
      },
      expiredSeqs: (peer, now, limit) => this.#out.get(peer)?.expired(now, limit) ?? [],
      addDeadLetter: dl => {
        this.#dead.push(dl)
        if (this.#dead.length - this.#deadHead > this.#maxDead) this.#deadHead++
        if (this.#deadHead > 1024 && this.#deadHead * 2 > this.#dead.length) {
          this.#dead = this.#dead.slice(this.#deadHead)
          this.#deadHead = 0
        }
      },
      inState: peer => ({ ...this.#inbox(peer).state }),
      setInState: (peer, s) => { this.#inbox(peer).state = { ...s } },
      hasId: (peer, id) => this.#in.get(peer)?.ids.has(id) ?? false,
      addId: (peer, id, slot) => {
        const p = this.#inbox(peer)
        p.ids.set(id, slot)
        p.slots.set(slot, id)
      },
      evictId: (peer, slot) => {
        const p = this.#inbox(peer)
        const id = p.slots.get(slot)
        p.slots.delete(slot)
        if (id !== undefined && p.ids.get(id) === slot) p.ids.delete(id)
      },
      getResource: key => this.#resources.get(key),
      putResource: rec => {
        if (!this.#resources.has(rec.key)) {
          const ks = this.#resourceKeys
          let lo = 0
          let hi = ks.length
          while (lo < hi) {
            const mid = (lo + hi) >>> 1
            if (compareKeys(ks[mid] as string, rec.key) < 0) lo = mid + 1
            else hi = mid
          }
          ks.splice(lo, 0, rec.key)
        }
        this.#resources.set(rec.key, rec)
      }
    }
  }

  #open (): void {
    if (this.#closed) throw new StoreClosedError()
  }

  /** Run synchronously, report through a promise (the contract is async). */
  #run<T> (fn: () => T): Promise<T> {
    try {
      this.#open()
      return Promise.resolve(fn())
    } catch (err) {
      return Promise.reject(err)
    }
  }

  append (peer: string, items: OutboxInput[], quota: QuotaPolicy, now: number): Promise<AppendOutcome[]> {
    return this.#run(() => {
      checkPeer(peer)
      checkQuota(quota)
      checkNow(now)
      if (!Array.isArray(items)) throw new InvalidOptionError('items', 'must be an array')
      items.forEach(checkOutboxInput)
      // Copy the bytes: the caller may reuse its buffer, and LMDB copies too.
      const own = items.map(i => ({ ...i, bytes: new Uint8Array(i.bytes) }))
      return appendItems(this.#tx, peer, own, quota, now)
    })
  }

  pending (peer: string, afterSeq: number, limit: number): OutboxRecord[] {
    this.#open()
    checkPeer(peer)
    checkNumber('afterSeq', afterSeq)
    checkNumber('limit', limit)
    if (limit < 1) return []
    return (this.#out.get(peer)?.from(afterSeq, limit) ?? []).map(copyRecord)
  }

  ack (peer: string, upto: number): Promise<number> {
    return this.#run(() => {
      checkPeer(peer)
      checkNumber('upto', upto)
      return this.#out.has(peer) ? ackUpTo(this.#tx, peer, upto) : 0
    })
  }

  reject (peer: string, seq: number, maxRejections: number, code: string, reason: string, now: number): Promise<number> {
    return this.#run(() => {
      checkPeer(peer)
      checkNumber('seq', seq)
      checkNumber('maxRejections', maxRejections)
      checkNow(now)
      return rejectRecord(this.#tx, peer, seq, maxRejections, String(code), String(reason), now)
    })
  }

  expire (peer: string, now: number): Promise<OutboxRecord[]> {
    return this.#run(() => {
      checkPeer(peer)
      checkNow(now)
      return this.#out.has(peer) ? expireRecords(this.#tx, peer, now).map(copyRecord) : []
    })
  }

  outboxStats (peer: string): OutboxStats {
    this.#open()
    checkPeer(peer)
    const p = this.#out.get(peer)
    if (p === undefined) return { count: 0, bytes: 0, firstSeq: 0, lastSeq: 0 }
    return { count: p.state.count, bytes: p.state.bytes, firstSeq: p.from(-Infinity, 1)[0]?.seq ?? 0, lastSeq: p.state.lastSeq }
  }

  peersWithPending (): string[] {
    this.#open()
    const out: string[] = []
    for (const [peer, p] of this.#out) if (p.state.count > 0) out.push(peer)
    return out.sort(compareKeys)
  }

  pendingStats (): Array<{ peer: string, count: number, bytes: number }> {
    this.#open()
    return this.peersWithPending().map(peer => { const p = this.#out.get(peer); return { peer, count: p?.state.count ?? 0, bytes: p?.state.bytes ?? 0 } })
  }

  deadLetters (peer?: string, limit = Infinity): DeadLetter[] {
    this.#open()
    if (peer !== undefined) checkPeer(peer)
    checkNumber('limit', limit)
    const out: DeadLetter[] = []
    for (let i = this.#dead.length - 1; i >= this.#deadHead && out.length < limit; i--) {
      const d = this.#dead[i] as DeadLetter
      if (peer === undefined || d.peer === peer) {
        const { body: _body, ...copy } = d as DeadLetterWrite
        out.push(copy)
      }
    }
    return out
  }

  deadLetterBody (peer: string, seq: number): Uint8Array | undefined {
    this.#open()
    checkPeer(peer)
    for (let i = this.#dead.length - 1; i >= this.#deadHead; i--) {
      const d = this.#dead[i] as DeadLetterWrite
      if (d.peer === peer && d.seq === seq) return d.body
    }
    return undefined
  }

  async purgeDeadLetters (peer: string | undefined, seqs?: number[]): Promise<number> {
    this.#open()
    if (peer !== undefined) checkPeer(peer)
    const only = seqs === undefined ? undefined : new Set(seqs)
    const live = this.#dead.slice(this.#deadHead)
    const keep = live.filter(d => !((peer === undefined || d.peer === peer) && (only === undefined || only.has(d.seq))))
    this.#dead = keep
    this.#deadHead = 0
    return live.length - keep.length
  }

  receivedSeq (peer: string): number {
    this.#open()
    checkPeer(peer)
    return this.#in.get(peer)?.state.receivedSeq ?? 0
  }

  hasInboundId (peer: string, id: string): boolean {
    checkPeer(peer)
    return this.#in.get(peer)?.ids.has(id) ?? false
  }

  commitInbound (peer: string, items: InboundItem[], now: number): Promise<InboundResult> {
    return this.#run(() => {
      checkPeer(peer)
      checkNow(now)
      if (!Array.isArray(items)) throw new InvalidOptionError('items', 'must be an array')
      items.forEach(checkInboundItem)
      const own = items.map(i => i.bytes === undefined ? i : { ...i, bytes: new Uint8Array(i.bytes) })
      return commitInboundItems(this.#tx, peer, own, now, this.#dedupWindow)
    })
  }

  getResource (key: string): ResourceRecord | undefined {
    this.#open()
    checkKeyString('key', key, LIMITS.keyBytes)
    const r = this.#resources.get(key)
    return r === undefined ? undefined : { ...r }
  }

  listResources (prefix = '', limit = Infinity): ResourceRecord[] {
    this.#open()
    if (typeof prefix !== 'string') throw new InvalidOptionError('prefix', 'must be a string')
    checkNumber('limit', limit)
    const ks = this.#resourceKeys
    let lo = 0
    let hi = ks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareKeys(ks[mid] as string, prefix) < 0) lo = mid + 1
      else hi = mid
    }
    const out: ResourceRecord[] = []
    for (let i = lo; i < ks.length && out.length < limit; i++) {
      const k = ks[i] as string
      if (!k.startsWith(prefix)) break
      out.push({ ...(this.#resources.get(k) as ResourceRecord) })
    }
    return out
  }

  close (): Promise<void> {
    this.#closed = true
    return Promise.resolve()
  }
}
