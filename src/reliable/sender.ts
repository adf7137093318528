/**
 * Sending half of the ACK lane for one peer (DESIGN.md §5): persist BEFORE
 * sending, per-peer sequence numbers, a sliding window of many messages in
 * flight (KubeEdge: one), cumulative acks, go-back-N redelivery on ack timeout
 * and on reconnect (from the seq the peer says it has), bounded rejections →
 * dead letter, TTL expiry. Memory is bounded by the window: records are read
 * back from the store as the window opens, never held all in memory.
 *
 * Two shortcuts keep the per-message cost down without changing what
 * enqueue() promises (resolved = durable in the store):
 *  - enqueue() calls made close together (same turn of the event loop) share
 *    ONE store.append() — one transaction callback, one validation pass, one
 *    counter update — instead of one each;
 *  - while the peer is connected, just-appended records are sent from memory
 *    (sender-fresh.ts) instead of being read back from the store.
 */
import type { Clock, TimerHandle } from '../util/clock.js'
import type { EnvelopeCodec } from '../codec/codec.js'
import type { Envelope } from '../codec/envelope.js'
import { HOLD_CODE, reliableMessage } from './protocol.js'
import { FreshRecords } from './sender-fresh.js'
import { DEFAULT_PRODUCER_WINDOW, ProducerWindow, type ProducerWindowOptions } from './producer-window.js'
import { InvalidOptionError, toError as toError } from '../errors.js'
import type { AppendOutcome, OutboxInput, OutboxRecord, QuotaPolicy, ReliableStore } from './store.js'

/** enqueue() calls merged into one store.append() at most. */
const MAX_APPEND_BATCH = 1024
/** Records read from the store at once by pump() at most (they are sent in batchMessages-sized data messages). */
const READ_AHEAD = 512

/** What pump() needs of a record, from the fresh cache or the store. */
type SendableRecord = Pick<OutboxRecord, 'seq' | 'bytes' | 'expiresAt'>

interface Waiting { input: OutboxInput, resolve: (o: AppendOutcome) => void, reject: (e: Error) => void }

/**
 * What enqueue() answers: the store's outcome, or `duplicate` when the same envelope id was
 * queued for this peer within the producer window (producer-window.ts): nothing new was
 * queued, `seq` is the first append's.
 */
export type EnqueueOutcome = AppendOutcome | { status: 'duplicate', seq: number }

export interface LaneLink {
  /** Send on the current session; false = wait for drain. Throws when the session is gone. */
  send (env: Envelope): boolean
  onDrain (): Promise<void>
  /** End the session (the inbound store failed a commit: the peer must resume from the durable point). */
  abort? (err: Error): void
}

export type LaneEvent =
  | { type: 'dead-letter', peer: string, seq: number, code: string, reason: string }
  | { type: 'expired', peer: string, count: number }
  | { type: 'superseded', peer: string, count: number }
  | { type: 'stale', peer: string, id: string }
  | { type: 'duplicate', peer: string, id: string, seq: number }
  | { type: 'held', peer: string, seq: number, reason: string, retryInMs: number }
  | { type: 'redelivery', peer: string, fromSeq: number, reason: 'ack-timeout' | 'reconnect' | 'rejected' }
  | { type: 'store-error', peer: string, error: Error }
  | { type: 'gap', peer: string, peerReceived: number, acked: number }
  /** The peer stated its resume point after a (re)connect; `pending` records are resent from there (metrics: resumes by outcome). */
  | { type: 'resumed', peer: string, pending: number }

export interface SenderOptions {
  peer: string
  /** router.source of lane messages. */
  source: string
  store: ReliableStore
  clock: Clock
  codec: EnvelopeCodec
  quota: QuotaPolicy
  /**
   * Messages in flight (sent, not acked). The receiver commits whatever queued
   * up while its previous commit ran, so a larger window means fewer, larger
   * commits (measured on loopback, sync: drain +25–60 % over 1024; 8192
   * over 4096: half the commits and acks per message, drain median +30 %,
   * issue 16). It is also what one receiver crash can redeliver to its
   * application. Memory stays bounded by windowBytes.
   * @default 8192
   */
  windowMessages?: number
  /** Bytes in flight. @default 4 MiB */
  windowBytes?: number
  /** Records per data message. @default 64 */
  batchMessages?: number
  /** Bytes per data message. @default 256 KiB */
  batchBytes?: number
  /** No ack progress for this long with data in flight → resend from the last ack. @default 5000 */
  ackTimeoutMs?: number
  /** Rejections of one record before it is dead-lettered. @default 5 */
  maxRejections?: number
  /** Producer dedup by envelope id (producer-window.ts). @default { maxIds: 256, windowMs: 120000 } */
  producerWindow?: ProducerWindowOptions
  onEvent?: (e: LaneEvent) => void
}

export class ReliableSender {
  readonly peer: string
  readonly #o: Required<Omit<SenderOptions, 'onEvent' | 'producerWindow'>> & { onEvent: (e: LaneEvent) => void }
  #link: LaneLink | undefined
  #resumed = false
  /** Highest seq the peer acknowledged (or said it had). */
  #acked = 0
  /** Highest seq sent on the current link. */
  #next = 0
  /**
   * Seqs and sizes sent and not acked: entries #inflightHead… of two parallel arrays. A
   * head index instead of shift(): shifting a 4096-entry array per acked record was 1.7 µs/msg
   * of the hub in the drain profile.
   */
  #inflightSeq: number[] = []
  #inflightSize: number[] = []
  #inflightHead = 0
  #inflightBytes = 0
  #pumping = false
  #waitingDrain = false
  #ackTimer: TimerHandle | undefined
  #ttlTimer: TimerHandle | undefined
  #retryTimer: TimerHandle | undefined
  #lastProgress = 0
  #closed = false
  /** Consecutive HOLD_CODE nacks: while > 0 only one data message is in flight (a probe). */
  #holds = 0
  /** enqueue() calls waiting for the next store.append(). */
  #batch: Waiting[] = []
  #flushScheduled = false
  /** Records appended while connected, by seq, not yet acknowledged (see the header). */
  readonly #fresh: FreshRecords
  readonly #window: ProducerWindow
  /** Ids of enqueue() calls not yet answered by the store: a retry in the meantime waits for the first. */
  readonly #appending = new Map<string, Promise<AppendOutcome>>()
  /**
   * Highest seq queued in the store for the peer, as far as this sender knows
   * (the store's lastSeq at start, then every append goes through enqueue()).
   * Nothing is read from the store while everything up to it was sent.
   */
  #lastSeq = Infinity

  constructor (o: SenderOptions) {
    this.peer = o.peer
    this.#o = {
      windowMessages: 8192, windowBytes: 4 * 1024 * 1024, batchMessages: 64, batchBytes: 256 * 1024,
      ackTimeoutMs: 5000, maxRejections: 5, onEvent: () => {}, ...o
    }
    this.#fresh = new FreshRecords(2 * this.#o.windowMessages, 2 * this.#o.windowBytes)
    this.#window = new ProducerWindow({ ...DEFAULT_PRODUCER_WINDOW, ...o.producerWindow })
    try { this.#lastSeq = o.store.outboxStats(o.peer).lastSeq } catch { /* unknown: always look */ }
    this.#scheduleTtl()
  }

  get acked (): number { return this.#acked }
  get inflight (): number { return this.#inflightSeq.length - this.#inflightHead }
  get connected (): boolean { return this.#link !== undefined && this.#resumed }

  /** Persist `env` for the peer (resolves once durable), then send when the window allows. */
  async enqueue (env: Envelope): Promise<EnqueueOutcome> {
    const first = this.#duplicateOf(env.header.id)
    if (first !== undefined) return await first
    const bytes = this.#o.codec.encode(env)
    const input: OutboxInput = { id: env.header.id, bytes, op: env.router.operation }
    // Supersession applies to versioned resources only (DESIGN.md §5).
    if (env.header.resourceVersion !== undefined) {
      input.key = env.router.resource
      input.version = env.header.resourceVersion
    }
    if (env.header.ttl !== undefined && env.header.ttl > 0) input.expiresAt = env.header.timestamp + env.header.ttl
    const appended = new Promise<AppendOutcome>((resolve, reject) => {
      this.#batch.push({ input, resolve, reject })
      if (this.#batch.length >= MAX_APPEND_BATCH) this.#flush()
      else if (!this.#flushScheduled) {
        // setImmediate, not a microtask: a producer awaiting earlier sends between its calls
        // still lands in the same batch.
        this.#flushScheduled = true
        setImmediate(() => { this.#flushScheduled = false; this.#flush() })
      }
    })
    if (!this.#window.enabled) return await appended
    this.#appending.set(input.id, appended)
    try {
      return await appended
    } finally {
      this.#appending.delete(input.id)
    }
  }

  /**
   * A retry of an id queued within the producer window (or still being appended): its
   * `duplicate` outcome; undefined for a new id. The window is seeded from the outbox at the
   * first call, so a retry after a restart finds a still-pending first copy.
   */
  #duplicateOf (id: string): Promise<EnqueueOutcome> | undefined {
    const w = this.#window
    if (!w.enabled) return undefined
    if (!w.seeded) {
      const { store } = this.#o
      try {
        w.seed(n => {
          const st = store.outboxStats(this.peer)
          return st.count === 0 ? [] : store.pending(this.peer, Math.max(0, st.lastSeq - n), n)
        })
      } catch { /* store unreadable: append will report it */ }
    }
    let seq = w.lookup(id, this.#o.clock.now())
    // A first copy that was dead-lettered is not "queued" any more: sending the id again (an
    // operator's requeue, a producer's deliberate retry) queues it anew.
    if (seq !== undefined && this.#o.store.deadLetterBody?.(this.peer, seq) !== undefined) {
      w.forget(id)
      seq = undefined
    }
    if (seq !== undefined) {
      this.#o.onEvent({ type: 'duplicate', peer: this.peer, id, seq })
      return Promise.resolve({ status: 'duplicate', seq })
    }
    const inflight = this.#appending.get(id)
    if (inflight === undefined) return undefined
    return inflight.then(o => {
      if (o.status !== 'queued') return o
      this.#o.onEvent({ type: 'duplicate', peer: this.peer, id, seq: o.seq })
      return { status: 'duplicate', seq: o.seq }
    })
  }

  #flush (): void {
    const batch = this.#batch
    if (batch.length === 0) return
    this.#batch = []
    this.#o.store.append(this.peer, batch.map(w => w.input), this.#o.quota, this.#o.clock.now()).then(outcomes => {
      if (outcomes.length !== batch.length) throw new Error('store returned the wrong number of outcomes')
      this.#applied(batch, outcomes)
    }).catch((err: unknown) => {
      // One bad input refuses the whole append: retry one by one so it only fails its own caller.
      if (err instanceof InvalidOptionError && batch.length > 1) {
        for (const w of batch) {
          this.#o.store.append(this.peer, [w.input], this.#o.quota, this.#o.clock.now()).then(o => {
            if (o[0] === undefined) throw new Error('store returned no outcome')
            this.#applied([w], [o[0]])
          }).catch((e: unknown) => w.reject(toError(e)))
        }
        return
      }
      for (const w of batch) w.reject(toError(err))
    })
  }

  /** Outcomes of one append, in order: events, the fresh-record cache, then the callers and the pump. */
  #applied (batch: Waiting[], outcomes: AppendOutcome[]): void {
    const o = this.#o
    let queued = false
    let superseded = 0
    for (let i = 0; i < batch.length; i++) {
      const w = batch[i] as Waiting
      const outcome = outcomes[i] as AppendOutcome
      if (outcome.status === 'queued') {
        queued = true
        superseded += outcome.superseded.length
        for (const seq of outcome.superseded) this.#forget(seq)
        for (const seq of outcome.dropped) {
          this.#forget(seq)
          o.onEvent({ type: 'dead-letter', peer: this.peer, seq, code: 'EF_QUOTA_DROPPED', reason: 'dropped to make room (drop-oldest quota)' })
        }
        if (outcome.seq > this.#lastSeq) this.#lastSeq = outcome.seq
        this.#window.record(w.input.id, outcome.seq, o.clock.now())
        if (this.#link !== undefined && o.store.directSend !== false) this.#fresh.offer({ seq: outcome.seq, bytes: w.input.bytes, expiresAt: w.input.expiresAt })
      } else if (outcome.status === 'stale') {
        o.onEvent({ type: 'stale', peer: this.peer, id: w.input.id })
      }
    }
    if (superseded > 0) o.onEvent({ type: 'superseded', peer: this.peer, count: superseded })
    for (let i = 0; i < batch.length; i++) (batch[i] as Waiting).resolve(outcomes[i] as AppendOutcome)
    if (queued) this.pump()
  }

  #forget (seq: number): void { this.#fresh.forget(seq) }

  /** A session to the peer is up; sending starts when the peer's resume arrives. */
  attach (link: LaneLink): void {
    this.#link = link
    this.#resumed = false
    this.#resetInflight()
  }

  detach (): void {
    this.#link = undefined
    this.#resumed = false
    this.#resetInflight()
    // Offline, the outbox may grow without bound: memory must not.
    this.#fresh.clear()
    this.#o.clock.clearTimeout(this.#ackTimer)
    this.#ackTimer = undefined
  }

  /** The peer says it has durably received everything up to `r`: resend only the gap. */
  onResume (r: number): void {
    if (r < this.#acked) {
      // The peer lost state it had acknowledged (e.g. its data dir was wiped): those records are gone here.
      this.#o.onEvent({ type: 'gap', peer: this.peer, peerReceived: r, acked: this.#acked })
    }
    this.#o.store.resumed?.(this.peer, r)
    this.#advanceAck(r)
    // The peer restates its position (a new session, or a consumer attached): probe at once.
    if (this.#holds > 0) {
      this.#holds = 0
      this.#o.clock.clearTimeout(this.#retryTimer)
      this.#retryTimer = undefined
    }
    this.#resumed = true
    this.#resetInflight()
    const pending = this.#o.store.outboxStats(this.peer).count
    this.#o.onEvent({ type: 'resumed', peer: this.peer, pending })
    if (pending > 0) this.#o.onEvent({ type: 'redelivery', peer: this.peer, fromSeq: this.#acked + 1, reason: 'reconnect' })
    this.pump()
  }

  onAck (u: number): void {
    if (u <= this.#acked) return
    this.#advanceAck(u)
    this.pump()
  }

  onNack (seq: number, code: string, reason: string): void {
    if (code === HOLD_CODE) { this.#hold(seq, reason); return }
    this.#o.store.reject(this.peer, seq, this.#o.maxRejections, code, reason, this.#o.clock.now()).then(count => {
      if (count < 0) {
        this.#forget(seq)
        this.#o.onEvent({ type: 'dead-letter', peer: this.peer, seq, code: 'EF_REJECTED_BY_PEER', reason: `${code}: ${reason}` })
      }
      // Go back to the rejected record after a pause that grows with its rejections.
      // The rewind marker tells the receiver where the data sent before it ends.
      this.#resetInflight(seq - 1)
      try { this.#link?.send(reliableMessage('rewind', { f: seq }, this.#o.source)) } catch { /* session gone */ }
      this.#o.onEvent({ type: 'redelivery', peer: this.peer, fromSeq: seq, reason: 'rejected' })
      this.#o.clock.clearTimeout(this.#retryTimer)
      this.#retryTimer = this.#o.clock.setTimeout(() => this.pump(), count < 0 ? 0 : Math.min(30_000, 200 * 2 ** count))
    }, err => this.#storeError(err))
  }

  /**
   * The receiver cannot take `seq` yet (HOLD_CODE): keep it, probe again after a pause that
   * doubles up to 30 s (or at once on the peer's next `resume`), one data message at a time.
   */
  #hold (seq: number, reason: string): void {
    const retryInMs = Math.min(30_000, 200 * 2 ** Math.min(this.#holds, 8))
    this.#holds++
    this.#resetInflight(seq - 1)
    try { this.#link?.send(reliableMessage('rewind', { f: seq }, this.#o.source)) } catch { /* session gone */ }
    this.#o.onEvent({ type: 'held', peer: this.peer, seq, reason, retryInMs })
    this.#o.clock.clearTimeout(this.#retryTimer)
    this.#retryTimer = this.#o.clock.setTimeout(() => { this.#retryTimer = undefined; this.pump() }, retryInMs)
  }

  close (): void {
    // Hand what enqueue() accepted to the store now: the owner closes the store next, and
    // waits for writes in flight, not for ones still waiting for setImmediate.
    this.#flush()
    this.#closed = true
    this.detach()
    this.#o.clock.clearTimeout(this.#ttlTimer)
    this.#o.clock.clearTimeout(this.#retryTimer)
  }

  /** Send as much as the window allows. */
  pump (): void {
    if (this.#pumping || this.#waitingDrain || this.#closed) return
    const link = this.#link
    if (link === undefined || !this.#resumed) return
    // Held: nothing before the retry timer, then one data message as a probe.
    if (this.#holds > 0 && (this.#retryTimer !== undefined || this.inflight > 0)) return
    this.#pumping = true
    try {
      const o = this.#o
      const now = o.clock.now()
      // Records are read ahead in runs of up to READ_AHEAD (bounded by the open window) and cut
      // into data messages of batchMessages: one store read per run, not per data message.
      let ahead: SendableRecord[] = []
      let at = 0
      const window = this.#holds > 0 ? Math.min(o.batchMessages, o.windowMessages) : o.windowMessages
      while (this.inflight < window && this.#inflightBytes < o.windowBytes) {
        if (at >= ahead.length) {
          ahead = this.#nextRecords(Math.max(o.batchMessages, Math.min(READ_AHEAD, o.windowMessages - this.inflight)))
          at = 0
          if (ahead.length === 0) break
        }
        const s: number[] = []
        const m: Uint8Array[] = []
        let bytes = 0
        let expired = false
        while (at < ahead.length && s.length < o.batchMessages) {
          const r = ahead[at] as SendableRecord
          if (r.expiresAt !== undefined && r.expiresAt <= now) { expired = true; this.#next = r.seq; at++; continue }
          if (s.length > 0 && bytes + r.bytes.byteLength > o.batchBytes) break
          at++
          s.push(r.seq)
          m.push(r.bytes)
          bytes += r.bytes.byteLength
          this.#next = r.seq
          this.#inflightSeq.push(r.seq)
          this.#inflightSize.push(r.bytes.byteLength)
          this.#inflightBytes += r.bytes.byteLength
        }
        if (expired) this.#runExpiry()
        if (s.length === 0) continue
        let ok: boolean
        try {
          ok = link.send(reliableMessage('data', { s, m }, o.source))
        } catch {
          return // session went away; detach() follows
        }
        this.#armAckTimer()
        if (!ok) {
          this.#waitingDrain = true
          link.onDrain().then(() => { this.#waitingDrain = false; this.pump() }, () => { this.#waitingDrain = false })
          return
        }
      }
    } finally {
      this.#pumping = false
    }
  }

  /** The next records after #next: from the fresh cache when it holds the very next seq, else from the store. */
  #nextRecords (limit: number): SendableRecord[] {
    if (this.#next >= this.#lastSeq) return []
    const fresh = this.#fresh.run(this.#next + 1, limit)
    return fresh.length > 0 ? fresh : this.#o.store.pending(this.peer, this.#next, limit)
  }

  #advanceAck (u: number): void {
    if (u <= this.#acked) return
    this.#holds = 0
    this.#acked = u
    this.#lastProgress = this.#o.clock.now()
    const seqs = this.#inflightSeq
    let h = this.#inflightHead
    while (h < seqs.length && (seqs[h] as number) <= u) this.#inflightBytes -= this.#inflightSize[h++] as number
    if (h === seqs.length) {
      this.#clearInflight()
    } else if (h > 1024 && h * 2 > seqs.length) {
      this.#inflightSeq = seqs.slice(h)
      this.#inflightSize = this.#inflightSize.slice(h)
      this.#inflightHead = 0
    } else {
      this.#inflightHead = h
    }
    if (this.#next < u) this.#next = u
    this.#fresh.ackUpTo(u)
    this.#o.store.ack(this.peer, u).catch(err => this.#storeError(err))
  }

  #resetInflight (from = this.#acked): void {
    this.#clearInflight()
    this.#next = Math.max(from, 0)
    this.#lastProgress = this.#o.clock.now()
  }

  /** Nothing in flight (everything acked, or a resend from #next starts over). */
  #clearInflight (): void {
    this.#inflightSeq = []
    this.#inflightSize = []
    this.#inflightHead = 0
    this.#inflightBytes = 0
  }

  #armAckTimer (): void {
    if (this.#ackTimer !== undefined) return
    this.#ackTimer = this.#o.clock.setTimeout(() => {
      this.#ackTimer = undefined
      if (this.inflight === 0 || this.#link === undefined) return
      const idle = this.#o.clock.now() - this.#lastProgress
      if (idle >= this.#o.ackTimeoutMs) {
        this.#o.onEvent({ type: 'redelivery', peer: this.peer, fromSeq: this.#acked + 1, reason: 'ack-timeout' })
        this.#resetInflight()
        this.pump()
      }
      this.#armAckTimer()
    }, this.#o.ackTimeoutMs)
  }

  #scheduleTtl (): void {
    if (this.#closed) return
    this.#ttlTimer = this.#o.clock.setTimeout(() => { this.#runExpiry(); this.#scheduleTtl() }, 5000)
  }

  #runExpiry (): void {
    if (this.#o.store.outboxStats(this.peer).count === 0) return
    this.#o.store.expire(this.peer, this.#o.clock.now()).then(recs => {
      for (const r of recs) this.#forget(r.seq)
      if (recs.length > 0) this.#o.onEvent({ type: 'expired', peer: this.peer, count: recs.length })
    }, err => this.#storeError(err))
  }

  #storeError (err: unknown): void {
    this.#o.onEvent({ type: 'store-error', peer: this.peer, error: toError(err) })
  }
}
