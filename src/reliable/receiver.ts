/**
 * Receiving half of the ACK lane for one peer (DESIGN.md §5–6). For each data
 * batch, in order: drop what was already processed (seq ≤ received) or is
 * older than the stored resource version, hand the new messages to the
 * application (awaited), then commit — resource state, dedup window and the
 * received seq in ONE transaction — and only then acknowledge. A crash before
 * the commit means redelivery (at-least-once), never loss.
 */
import type { Clock } from '../util/clock.js'
import type { EnvelopeCodec } from '../codec/codec.js'
import { isExpired, type Envelope } from '../codec/envelope.js'
import { EdgeFabricError, ProtocolError, toError } from '../errors.js'
import { reliableMessage, type DataContent } from './protocol.js'
import type { InboundItem, ReliableStore } from './store.js'
import { isNewer } from './store-rules.js'

/**
 * Queued data batches merged into one commit at most (64 records each by
 * default: ≤ 4096 messages, half the sender's default window of 8192, so one
 * group commits while the next fills). Bounds one commit's size, and so what
 * a crash between hand-off and commit redelivers: one group committing plus
 * one being handed over (never more than the sender's window anyway). With
 * one commit in flight at a time, a drain is bounded by this size per commit
 * latency: at 16 batches (1024) a commit slowed to 20 ms by other disk load
 * caps it at ≈51k msg/s whatever the CPU (issue 16: a drain at load 10 ran at
 * 29k msg/s with the edge ≈30 % busy). 32 → 64 with the sender's window
 * 4096 → 8192 (2026-12-07): half the commits, acks and hub ack transactions
 * per drained message (drain trace: 72 → 38 commits per 100k).
 */
const MAX_MERGED_BATCHES = 64

/** One turn of the event loop (its I/O and check phases). */
const yieldTurn = (): Promise<void> => new Promise(resolve => { setImmediate(resolve) })

/** What the application says about one delivered message. */
export type DeliveryVerdict = 'ok' | { reject: string, reason: string }

export interface ReceiverOptions {
  peer: string
  source: string
  store: ReliableStore
  clock: Clock
  codec: EnvelopeCodec
  /** Hand one new message to the application; awaited before the commit. */
  deliver: (env: Envelope, seq: number) => Promise<DeliveryVerdict> | DeliveryVerdict
  /** Send a lane control message (ack/nack/resume) on the current session. */
  sendControl: (env: Envelope) => void
  /**
   * Store key of a versioned message's resource (dedup of stale versions and
   * the resource store). @default env.router.resource — right for the edge,
   * which has one peer; the hub prefixes the node id so that equal resource
   * names from different nodes do not make each other stale.
   */
  resourceKey?: (env: Envelope) => string
  /** Data batches queued for processing before the session is considered abusive. @default 4096 */
  maxQueuedBatches?: number
  onCount?: (what: 'delivered' | 'duplicate' | 'stale' | 'expired' | 'rejected', n: number) => void
  /**
   * A commit failed: the receiver drops everything until the next sendResume() (a new session);
   * end the current session here so that it comes. @default nothing (the session stays until it ends by itself)
   */
  onBroken?: (err: Error) => void
}

export class ReliableReceiver {
  readonly peer: string
  readonly #o: ReceiverOptions
  #chain: Promise<void> = Promise.resolve()
  #queued = 0
  #closed = false
  /**
   * Data batches of the last queued job that has not started yet. Batches
   * arriving while an earlier job runs join it, so under load one commit (one
   * fsync in `sync` mode) and one ack cover everything that queued up:
   * group commit on the receiving side, instead of one commit per batch.
   */
  #open: DataContent[] | undefined
  /**
   * Pipelining: the commit of the previous group, still in flight while the
   * next group is handed to the application (the fsync wait overlaps useful
   * work). At most one commit is in flight; the next one is issued only after
   * it succeeded, so commits and acks stay in order and a failed commit is
   * never skipped over. Resolves false when it failed.
   */
  #commit: Promise<boolean> | undefined
  /** Highest seq in the in-flight commit (not yet visible through store.receivedSeq). */
  #committingSeq = 0
  /** Resource versions in the in-flight commit (not yet visible through store.getResource). */
  #committing = new Map<string, { version: string | undefined, op: string | undefined }>()
  /** Message ids in the in-flight commit (the store's window may not show them yet). */
  #committingIds = new Set<string>()
  /** After a nack: data sent before the sender's rewind marker is ignored. */
  #rejectedAt: number | undefined
  /**
   * A commit failed. Data after it must not be committed: seqs may legitimately skip (superseded,
   * expired), so a later commit's cumulative ack would cover the records that were never stored —
   * acknowledged and lost (found by the cluster chaos test, issue 17, with a store whose commit failed
   * once; LMDB has the same contract). Everything is dropped, unacknowledged, until a new session
   * resumes from the store's durable point.
   */
  #broken = false

  constructor (o: ReceiverOptions) {
    this.peer = o.peer
    this.#o = o
  }

  /** Tell the peer where to resume (call when a session comes up). */
  sendResume (): void {
    // A new session starts a new stream: nothing from before it is in flight any more.
    this.#enqueue(async () => {
      this.#rejectedAt = undefined
      await this.#settle()
      this.#broken = false // the resume below restates the durable point: the peer resends from there
      this.#o.sendControl(reliableMessage('resume', { r: this.#o.store.receivedSeq(this.peer) }, this.#o.source))
    })
  }

  /** The sender rewound after our nack: data after this marker is processed again. */
  onRewind (): void {
    this.#enqueue(async () => { this.#rejectedAt = undefined })
  }

  #enqueue (fn: () => Promise<void>): void {
    this.#open = undefined // a marker orders against data: later batches go after it
    this.#chain = this.#chain.then(fn).catch(() => {})
  }

  /** Queue a data batch; batches are processed strictly in arrival order. */
  onData (d: DataContent): void {
    if (this.#closed) return
    if (++this.#queued > (this.#o.maxQueuedBatches ?? 4096)) {
      throw new ProtocolError('peer sent more data batches than the window allows')
    }
    if (this.#open !== undefined && this.#open.length < MAX_MERGED_BATCHES) {
      this.#open.push(d)
      return
    }
    const group = [d]
    this.#open = group
    this.#chain = this.#chain.then(() => {
      if (this.#open === group) this.#open = undefined // started: later batches start a new group
      return this.#process(group)
    }).catch(err => {
      // A failed commit must not be acknowledged; the sender resends on timeout or reconnect.
      this.#o.onCount?.('rejected', 0)
      void err
    }).finally(() => { this.#queued -= group.length })
  }

  /** Resolves when every queued batch has been processed and committed. */
  async idle (): Promise<void> {
    await this.#chain
    await this.#settle()
  }

  /** Wait for the in-flight commit (and its ack). False when it failed. */
  async #settle (): Promise<boolean> {
    const c = this.#commit
    if (c === undefined) return true
    const ok = await c
    if (this.#commit === c) {
      this.#commit = undefined
      this.#committingSeq = 0
      this.#committing = new Map()
      this.#committingIds = new Set()
    }
    return ok
  }

  close (): void { this.#closed = true }

  /** Stop accepting data after a failed commit (see #broken). */
  #break (err: unknown): void {
    if (this.#broken) return
    this.#broken = true
    this.#o.onBroken?.(toError(err))
  }

  /** Batches in arrival order; seqs may go back between batches (a resend), so dedup is against lastOk. */
  async #process (group: DataContent[]): Promise<void> {
    if (this.#broken) return // after a failed commit: nothing is committed or acked until a new session resumes
    if (this.#rejectedAt !== undefined) return // pipelined behind a rejected record; resent after the rewind
    const o = this.#o
    const codec = o.codec
    const received = Math.max(o.store.receivedSeq(this.peer), this.#committingSeq)
    const items: InboundItem[] = []
    let lastOk = received
    let dup = 0
    let stale = 0
    let expired = 0
    let delivered = 0
    // Versions accepted earlier in this group, not yet committed: the store cannot see them yet.
    const accepted = new Map<string, { version: string | undefined, op: string | undefined }>()
    // Ids taken earlier in this group (the group still committing has its own set).
    const groupIds = new Set<string>()
    for (const d of group) {
      // Let the commit in flight make progress between data messages: lmdb-js starts its
      // transaction from a setImmediate and runs its callback on this thread, so a group handed
      // over in one synchronous run (≈2048 records, several ms) held the previous commit back
      // for as long, every cycle (issue 16: ≈5–20 ms of each drain commit cycle was that wait).
      if (this.#commit !== undefined) {
        await yieldTurn()
        if (this.#broken) return // that commit failed meanwhile: nothing more is handed over before the resume
      }
      for (let i = 0; i < d.s.length; i++) {
        if (this.#closed) break
        const seq = d.s[i] as number
        if (seq <= lastOk) { dup++; continue }
        const bytes = d.m[i] as Uint8Array
        let env: Envelope
        try {
          // The record is ours (parseData's caller decoded it out of the frame as a copy):
          // its binary content may stay a view of it.
          env = codec.decodeOwned !== undefined ? codec.decodeOwned(bytes) : codec.decode(bytes)
        } catch (err) {
          await this.#reject(items, lastOk, seq, toError(err))
          return
        }
        const item: InboundItem = { seq, id: env.header.id, op: env.router.operation }
        // A producer's retry of an id already taken (a new seq, same id): drop it BEFORE the
        // application sees it. The commit records it as a duplicate (and counts it) with the seq.
        if (groupIds.has(item.id) || this.#committingIds.has(item.id) || o.store.hasInboundId(this.peer, item.id)) {
          items.push(item)
          lastOk = seq
          continue
        }
        groupIds.add(item.id)
        const version = env.header.resourceVersion
        if (version !== undefined) {
          // item.bytes is stored with the resource at the commit, after the hand-off: content the
          // application may change must not be a view of it.
          if (codec.decodeOwned !== undefined && env.content instanceof Uint8Array) env.content = Buffer.from(env.content)
          item.key = o.resourceKey?.(env) ?? env.router.resource
          item.version = version
          item.bytes = bytes
          const stored = o.store.getResource(item.key)
          const cur = accepted.get(item.key) ?? this.#committing.get(item.key) ?? (stored === undefined ? undefined : { version: stored.version, op: stored.deleted ? 'delete' : stored.op })
          if (cur !== undefined && !isNewer(version, item.op, cur.version, cur.op)) {
            stale++
            items.push(item)
            lastOk = seq
            continue
          }
          accepted.set(item.key, { version, op: item.op })
        }
        // The clock only for messages with a TTL: a clock read per message showed in the drain profile.
        if (env.header.ttl !== undefined && isExpired(env, o.clock.now())) {
          expired++
        } else {
          let verdict: DeliveryVerdict
          try {
            // Await only a real promise: a microtask turn per record was a measurable share of a drain.
            const v = o.deliver(env, seq)
            verdict = typeof (v as PromiseLike<DeliveryVerdict>).then === 'function' ? await v : v as DeliveryVerdict
          } catch (err) {
            verdict = { reject: err instanceof EdgeFabricError ? err.code : 'EF_DELIVERY_FAILED', reason: toError(err).message }
          }
          if (verdict !== 'ok') {
            await this.#reject(items, lastOk, seq, new EdgeFabricError(verdict.reject, verdict.reason))
            return
          }
          delivered++
        }
        items.push(item)
        lastOk = seq
      }
    }
    if (stale > 0) o.onCount?.('stale', stale)
    if (expired > 0) o.onCount?.('expired', expired)
    if (delivered > 0) o.onCount?.('delivered', delivered)
    // This group was handed over while the previous one committed; commit it only after that one
    // succeeded (a failed commit is not acked: the sender resends, and the application sees it again).
    if (!await this.#settle()) return // that commit's failure broke the receiver (#break)
    if (items.length === 0) {
      if (dup > 0) o.onCount?.('duplicate', dup)
      if (lastOk > received || dup > 0) o.sendControl(reliableMessage('ack', { u: Math.max(lastOk, received) }, o.source))
      return
    }
    const u = Math.max(lastOk, received)
    this.#committingSeq = u
    this.#committing = accepted
    this.#committingIds = groupIds
    this.#commit = o.store.commitInbound(this.peer, items, o.clock.now()).then(result => {
      // The store's id window may still find duplicates (a producer that re-sent an id).
      dup += result.outcome.filter(x => x === 'duplicate').length
      if (dup > 0) o.onCount?.('duplicate', dup)
      o.sendControl(reliableMessage('ack', { u }, o.source))
      return true
    }, (err: unknown) => {
      o.onCount?.('rejected', 0)
      this.#break(err)
      return false
    })
  }

  async #reject (items: InboundItem[], lastOk: number, seq: number, err: Error): Promise<void> {
    const o = this.#o
    if (!await this.#settle()) return // that commit's failure broke the receiver (#break)
    if (items.length > 0) {
      try {
        await o.store.commitInbound(this.peer, items, o.clock.now())
      } catch (err) {
        this.#break(err)
        return
      }
    }
    if (lastOk > 0) o.sendControl(reliableMessage('ack', { u: lastOk }, o.source))
    this.#rejectedAt = seq
    const code = err instanceof EdgeFabricError ? err.code : 'EF_REJECTED'
    o.sendControl(reliableMessage('nack', { s: seq, c: code, r: err.message }, o.source))
    o.onCount?.('rejected', 1)
  }
}
