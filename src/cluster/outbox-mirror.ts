/**
 * The part of one node's JetStream outbox that the hub holding the node's
 * session has read, in memory, for the lane's synchronous `pending()` reads
 * (src/reliable/store.ts). Filled by an ordered consumer — cheap, ephemeral,
 * R1 in memory, no Raft group (DESIGN.md §10b: one durable R3 consumer per
 * node does not scale) — filtered on `ef.<c>.down.<node>.>` from the start of
 * what is stored. The acknowledged point is not kept in a consumer: it is the
 * edge's own `resume`, and everything at or below it is purged from the stream
 * (ClusterStore.ack), so "what is stored for the node" IS its outbox.
 *
 * Bounded: reading pauses while `maxRecords`/`maxBytes` are held and resumes
 * as the edge acknowledges.
 */
import type { Consumer, ConsumerMessages, JsMsg, StoredMsg } from '@nats-io/jetstream'
import { DeliverPolicy } from '@nats-io/jetstream'
import type { OutboxRecord } from '../reliable/store.js'
import { isNewer } from '../reliable/store-rules.js'
import { trace, tracing } from './trace.js'

/** Seqs remembered for the pre-purge check (ClusterStore.#verify) at most. */
const MAX_TAKEN = 65_536

export interface MirrorRecord extends OutboxRecord {
  subject: string
}

/**
 * One stream message the reader took, as the acknowledgement path needs it (src/cluster/
 * outbox-purge.ts): which message (id) on which subject, and for a resource its version. Kept
 * even when the record was dropped at once (an older version, a malformed message).
 */
export interface TakenEntry {
  seq: number
  /** Envelope id; '' for a malformed message. */
  id: string
  subject: string
  key?: string
  version?: string
  op?: string
}

export interface MirrorOptions {
  maxRecords: number
  maxBytes: number
  /** Turn one stream message into a record (envelope bytes, key, version, expiry); undefined = malformed (dead-lettered). */
  toRecord: (m: JsMsg) => MirrorRecord | { malformed: string, seq: number, subject: string }
  /** New records are available. */
  onRecords: () => void
  onMalformed: (seq: number, subject: string, reason: string) => void
  onError: (err: Error) => void
}

export class OutboxMirror {
  readonly node: string
  /** Records by seq, ascending (appended in stream order). */
  #records: MirrorRecord[] = []
  #head = 0
  readonly #bySubject = new Map<string, MirrorRecord>()
  #bytes = 0
  #messages: ConsumerMessages | undefined
  #room: (() => void) | undefined
  #closed = false
  readonly #o: MirrorOptions
  /** Highest stream seq seen for the node. */
  lastSeen = 0
  /** When the reader last took a message (ms since the epoch; 0: never). */
  lastTakeAt = 0

  constructor (node: string, o: MirrorOptions) {
    this.node = node
    this.#o = o
  }

  /**
   * Start reading from the beginning of the node's stored outbox. The reader
   * restarts by itself (from the next seq it has not seen) when NATS or
   * JetStream goes away and comes back: an ordered consumer is ephemeral.
   */
  start (getConsumer: (opts: { filter_subjects: string, deliver_policy: DeliverPolicy, opt_start_seq?: number }) => Promise<Consumer>, filter: string): void {
    void (async () => {
      while (!this.#closed) {
        try {
          await this.#read(getConsumer, filter)
        } catch (err) {
          if (tracing) trace({ k: 'mirror-error', node: this.node, err: String(err) })
          if (!this.#closed) this.#o.onError(err as Error)
        }
        if (!this.#closed) await new Promise(resolve => setTimeout(resolve, 500))
      }
    })()
  }

  async #read (getConsumer: (opts: { filter_subjects: string, deliver_policy: DeliverPolicy, opt_start_seq?: number }) => Promise<Consumer>, filter: string): Promise<void> {
    if (tracing) trace({ k: 'mirror-read', node: this.node, from: this.lastSeen + 1 })
    const c = await getConsumer(this.lastSeen === 0
      ? { filter_subjects: filter, deliver_policy: DeliverPolicy.All }
      : { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.lastSeen + 1 })
    if (this.#closed) return
    // expires 10 s: the server heartbeats an idle pull every 5 s, so a reader whose consumer
    // vanished with a killed server is noticed within ~10 s (2 missed), then recreated from
    // the next unseen seq. Shorter would cost every connected node more pulls.
    const msgs = await c.consume({ max_messages: 256, expires: 10_000 })
    if (tracing) trace({ k: 'mirror-consume', node: this.node, on: await c.info(true).then(i => i.cluster?.leader, () => '?') })
    this.#messages = msgs
    if (this.#closed) { await msgs.close(); return }
    void (async () => {
      for await (const st of msgs.status()) {
        if (tracing) trace({ k: 'mirror-status', node: this.node, st: st.type })
        if (st.type === 'heartbeats_missed' || st.type === 'consumer_deleted' || st.type === 'consumer_not_found' || st.type === 'stream_not_found') {
          await msgs.close().catch(() => {})
          break
        }
      }
    })().catch(() => {})
    for await (const m of msgs) {
      this.#take(m)
      this.#notify()
      while (!this.#closed && (this.count >= this.#o.maxRecords || this.#bytes >= this.#o.maxBytes)) {
        this.#o.onRecords()
        await new Promise<void>(resolve => { this.#room = resolve })
      }
      if (this.#closed) break
    }
    if (tracing) trace({ k: 'mirror-end', node: this.node, lastSeen: this.lastSeen })
  }

  #notifyScheduled = false

  /**
   * Tell the lane once per turn of the event loop, after the messages the client had
   * buffered were taken (not by the consumer's pending count: purges and supersession make it
   * stale, and a batch left waiting for a count that never comes would stall the node).
   */
  #notify (): void {
    if (this.#notifyScheduled) return
    this.#notifyScheduled = true
    setImmediate(() => { this.#notifyScheduled = false; if (!this.#closed) this.#o.onRecords() })
  }

  #take (m: JsMsg): void {
    if (tracing) trace({ k: 'take', node: this.node, seq: m.seq, last: this.lastSeen })
    if (m.seq <= this.lastSeen) return
    this.lastSeen = m.seq
    this.lastTakeAt = Date.now()
    const r = this.#o.toRecord(m)
    const e: TakenEntry = { seq: m.seq, id: 'malformed' in r ? '' : r.id, subject: m.subject }
    if (!('malformed' in r)) {
      if (r.key !== undefined) e.key = r.key
      if (r.version !== undefined) e.version = r.version
      if (r.op !== undefined) e.op = r.op
    }
    // At or below the acknowledged point (the reader lags behind a resume, or took a message the
    // ack went past): the lane never sends it, and as a pending record it would hide the copy
    // that the ack's scan publishes again (a version not newer than itself is dropped below).
    // Nor is it a taken entry: an ack settled later (ClusterStore.ack's loop plans the next ack
    // after awaiting the previous one) would remove it by id, and the edge never had it.
    if (m.seq <= this.#acked && !('malformed' in r)) {
      if (tracing) trace({ k: 'take-below-ack', node: this.node, seq: m.seq, acked: this.#acked })
      return
    }
    this.#taken.push(e)
    if (this.#taken.length - this.#takenHead > MAX_TAKEN) this.#takenFloor = (this.#taken[this.#takenHead++] as TakenEntry).seq
    if ('malformed' in r) { this.#o.onMalformed(r.seq, r.subject, r.malformed); return }
    // One pending record per resource subject, the newest VERSION — not the latest seq. The stream
    // retains a few messages per resource subject (RESOURCE_HISTORY, connection.ts): a hub racing
    // with another can land an older version after a newer one, and the publishers delete the older
    // one only after their PubAck. Taking "later seq wins" here dropped the newer version and handed
    // the edge the older one: the newest was never delivered (regression: test/cluster/
    // downstream-replica-divergence.test.ts, "the newest version reached the edge", failed in CI).
    const old = this.#bySubject.get(r.subject)
    if (old !== undefined) {
      if (!isNewer(r.version, r.op, old.version, old.op)) {
        if (tracing) trace({ k: 'take-older', node: this.node, seq: m.seq, v: r.version, pending: old.version })
        return
      }
      this.#drop(old)
    }
    this.#bySubject.set(r.subject, r)
    this.#records.push(r)
    this.#bytes += r.bytes.byteLength
  }

  #drop (r: MirrorRecord): void {
    if (this.#bySubject.get(r.subject) === r) this.#bySubject.delete(r.subject)
    if (r.seq < 0) return
    this.#bytes -= r.bytes.byteLength
    r.seq = -r.seq // tombstone in place; compacted lazily
  }

  /**
   * What this reader took (ascending seq) and is not yet settled: the acknowledgement path
   * removes exactly these messages once the edge acknowledged them (outbox-purge.ts). Bounded
   * by MAX_TAKEN; below #takenFloor nothing is remembered.
   */
  #taken: TakenEntry[] = []
  #takenHead = 0
  #takenFloor = 0

  /** Entries taken with seq in (from, to], or undefined when that range is no longer fully remembered. */
  takenIn (from: number, to: number): TakenEntry[] | undefined {
    if (from < this.#takenFloor) return undefined
    const out: TakenEntry[] = []
    for (let i = this.#takenHead; i < this.#taken.length; i++) {
      const e = this.#taken[i] as TakenEntry
      if (e.seq > to) break
      if (e.seq > from) out.push(e)
    }
    return out
  }

  /** Everything ≤ upto is settled (removed from the stream, or published again). */
  forgetTaken (upto: number): void {
    while (this.#takenHead < this.#taken.length && (this.#taken[this.#takenHead] as TakenEntry).seq <= upto) this.#takenHead++
    if (this.#takenHead > 1024 && this.#takenHead * 2 > this.#taken.length) {
      this.#taken = this.#taken.slice(this.#takenHead)
      this.#takenHead = 0
    }
  }

  /**
   * Take a message read from the stream LEADER (ClusterStore's check, when this reader's consumer
   * sits on a server that does not deliver what the leader holds). Same rules as the consumer's.
   */
  takeFromLeader (m: StoredMsg): void {
    const js = { seq: m.seq, subject: m.subject, headers: m.header, data: m.data, info: { timestampNanos: BigInt(m.time.getTime()) * 1_000_000n } }
    if (tracing) trace({ k: 'take-leader', node: this.node, seq: m.seq })
    this.#take(js as unknown as JsMsg)
    this.#notify()
  }

  /** Reading ahead is paused (the bounds are held). */
  get full (): boolean { return this.count >= this.#o.maxRecords || this.#bytes >= this.#o.maxBytes }

  get count (): number { return this.#bySubject.size }
  get bytes (): number { return this.#bytes }

  /** Live records with seq > after, ascending, at most limit. */
  pending (after: number, limit: number): OutboxRecord[] {
    this.#compact()
    const out: OutboxRecord[] = []
    const rs = this.#records
    // binary search for the first live record > after
    let lo = this.#head
    let hi = rs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (Math.abs((rs[mid] as MirrorRecord).seq) <= after) lo = mid + 1
      else hi = mid
    }
    for (let i = lo; i < rs.length && out.length < limit; i++) {
      const r = rs[i] as MirrorRecord
      if (r.seq > 0) out.push(r)
    }
    return out
  }

  get (seq: number): MirrorRecord | undefined {
    for (let i = this.#head; i < this.#records.length; i++) {
      const r = this.#records[i] as MirrorRecord
      if (r.seq === seq) return r
      if (Math.abs(r.seq) > seq) break
    }
    return undefined
  }

  /** The lane's acknowledged point: records at or below it are never handed out. */
  #acked = 0

  /** Remove every record ≤ upto; returns how many live ones went. */
  ackUpTo (upto: number): number {
    if (upto > this.#acked) this.#acked = upto
    let n = 0
    const rs = this.#records
    while (this.#head < rs.length && Math.abs((rs[this.#head] as MirrorRecord).seq) <= upto) {
      const r = rs[this.#head++] as MirrorRecord
      if (r.seq > 0) { n++; this.#drop(r) }
    }
    this.#compact()
    this.#wake()
    return n
  }

  remove (seq: number): MirrorRecord | undefined {
    const r = this.get(seq)
    if (r !== undefined) { this.#drop(r); this.#wake() }
    return r
  }

  /** Live records, for expiry scans. */
  live (): MirrorRecord[] { return this.#records.slice(this.#head).filter(r => r.seq > 0) }

  get firstSeq (): number {
    for (let i = this.#head; i < this.#records.length; i++) { const r = this.#records[i] as MirrorRecord; if (r.seq > 0) return r.seq }
    return 0
  }

  #compact (): void {
    if (this.#head > 1024 && this.#head * 2 > this.#records.length) {
      this.#records = this.#records.slice(this.#head)
      this.#head = 0
    }
  }

  #wake (): void {
    const w = this.#room
    if (w !== undefined && this.count < this.#o.maxRecords && this.#bytes < this.#o.maxBytes) { this.#room = undefined; w() }
  }

  /** Drop the current consumer; the read loop recreates it from the next unseen seq (after a NATS reconnect). */
  restart (): void {
    if (tracing) trace({ k: 'mirror-restart', node: this.node, has: this.#messages !== undefined })
    void this.#messages?.close().catch(() => {})
  }

  async close (): Promise<void> {
    this.#closed = true
    const w = this.#room
    this.#room = undefined
    w?.()
    await this.#messages?.close().catch(() => {})
  }
}
