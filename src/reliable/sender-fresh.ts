/**
 * Records a ReliableSender appended while its peer was connected, kept so the
 * first send does not read back from the store what the sender had in hand a
 * moment ago (the read-back was ≈7 µs/msg of the hub in the live profile).
 * Bounded (messages and bytes); anything not here is read from the store.
 * Every way a record leaves the outbox goes through the sender (ack,
 * supersession, quota drop, TTL, rejection), which drops it here at the same
 * time, so an entry is always a record still pending in the store.
 */
export interface FreshRecord { seq: number, bytes: Uint8Array, expiresAt: number | undefined }

export class FreshRecords {
  readonly #maxMessages: number
  readonly #maxBytes: number
  readonly #bySeq = new Map<number, FreshRecord>()
  #bytes = 0
  /** Every seq held is within low..high. */
  #low = 0
  #high = 0

  constructor (maxMessages: number, maxBytes: number) {
    this.#maxMessages = maxMessages
    this.#maxBytes = maxBytes
  }

  get size (): number { return this.#bySeq.size }

  /** Keep `r` if there is room. */
  offer (r: FreshRecord): void {
    if (this.#bySeq.size >= this.#maxMessages || this.#bytes >= this.#maxBytes) return
    if (this.#bySeq.size === 0) { this.#low = r.seq; this.#high = r.seq }
    this.#bySeq.set(r.seq, r)
    this.#bytes += r.bytes.byteLength
    if (r.seq < this.#low) this.#low = r.seq
    if (r.seq > this.#high) this.#high = r.seq
  }

  forget (seq: number): void {
    const r = this.#bySeq.get(seq)
    if (r === undefined) return
    this.#bySeq.delete(seq)
    this.#bytes -= r.bytes.byteLength
  }

  /** Cumulative ack: drop every seq ≤ u. */
  ackUpTo (u: number): void {
    if (this.#bySeq.size === 0) return
    // By seq, not by iterating the Map: entries deleted from the front of a Map stay as holes
    // that every later iteration walks past until it is compacted.
    const to = Math.min(u, this.#high)
    for (let seq = this.#low; seq <= to; seq++) this.forget(seq)
    this.#low = Math.max(this.#low, to + 1)
  }

  clear (): void {
    this.#bySeq.clear()
    this.#bytes = 0
  }

  /** Records from seq `from` on while they are here without a gap, at most `limit`; [] when `from` is not here. */
  run (from: number, limit: number): FreshRecord[] {
    const out: FreshRecord[] = []
    for (let r = this.#bySeq.get(from); r !== undefined && out.length < limit; r = this.#bySeq.get(++from)) out.push(r)
    return out
  }
}
