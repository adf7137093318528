/**
 * Idempotent producers (issue 12, "Nothing is lost without a trace"): a
 * producer that retries `send(…, {delivery:'reliable'})` with the SAME
 * envelope id — typically because the hub crashed between making the message
 * durable and answering — must not queue it twice. Like JetStream's
 * `Nats-Msg-Id` duplicate window: an id seen within `windowMs` and among the
 * peer's last `maxIds` appends answers `{status:'duplicate', seq}` with the
 * seq of the first append, and nothing is queued.
 *
 * Where the ids come from after a crash: the outbox itself. The first lookup
 * for a peer seeds the window from the ids of its newest pending records
 * (their enqueue time included), so a retry of a message that is still
 * pending is caught across a restart without writing anything extra per
 * message. A message the peer already acknowledged before the crash is gone
 * from the outbox; its retry is queued again and the receiver's persisted id
 * window drops it before the application sees it (receiver.ts). Both windows
 * together: delivered once while the retry comes within the receiver's
 * dedup window (LmdbStore `dedupWindow` ids).
 *
 * Memory: at most `maxIds` entries per peer; entries older than `windowMs`
 * are evicted from the head on every lookup (insertion order is time order).
 */
import type { OutboxRecord } from './store.js'

export interface ProducerWindowOptions {
  /** Ids remembered per peer; 0 turns producer dedup off. @default 256 */
  maxIds?: number
  /** How long an id is remembered, ms. @default 120000 (JetStream's default duplicate window) */
  windowMs?: number
}

export const DEFAULT_PRODUCER_WINDOW: Required<ProducerWindowOptions> = Object.freeze({ maxIds: 256, windowMs: 120_000 })

interface Entry { seq: number, at: number }

export class ProducerWindow {
  readonly #maxIds: number
  readonly #windowMs: number
  readonly #ids = new Map<string, Entry>()
  #seeded = false

  constructor (o: Required<ProducerWindowOptions>) {
    this.#maxIds = o.maxIds
    this.#windowMs = o.windowMs
  }

  get enabled (): boolean { return this.#maxIds > 0 }
  get size (): number { return this.#ids.size }

  /**
   * Seed from the peer's newest pending records (call once, before the first
   * lookup; `read` is only called when the window is enabled).
   */
  seed (read: (count: number) => Array<Pick<OutboxRecord, 'id' | 'seq' | 'enqueuedAt'>>): void {
    if (this.#seeded || !this.enabled) return
    this.#seeded = true
    const recs = read(this.#maxIds)
    for (const r of recs) this.#put(r.id, r.seq, r.enqueuedAt)
  }

  get seeded (): boolean { return this.#seeded }

  /** The first append's seq if `id` was appended within the window, else undefined. */
  lookup (id: string, now: number): number | undefined {
    if (!this.enabled) return undefined
    this.#evict(now)
    return this.#ids.get(id)?.seq
  }

  /** Forget an id (its first copy left the outbox without being delivered). */
  forget (id: string): void { this.#ids.delete(id) }

  /** Remember a queued append. */
  record (id: string, seq: number, now: number): void {
    if (!this.enabled) return
    this.#put(id, seq, now)
    this.#evict(now)
  }

  #put (id: string, seq: number, at: number): void {
    this.#ids.delete(id) // re-insert at the tail: insertion order stays time order
    this.#ids.set(id, { seq, at })
    while (this.#ids.size > this.#maxIds) {
      const first = this.#ids.keys().next()
      if (first.done === true) break
      this.#ids.delete(first.value)
    }
  }

  #evict (now: number): void {
    const cutoff = now - this.#windowMs
    for (const [id, e] of this.#ids) {
      if (e.at > cutoff) break
      this.#ids.delete(id)
    }
  }
}
