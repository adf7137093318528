/**
 * ReliableStore (src/reliable/store.ts) over NATS JetStream: the hub's lanes
 * run unchanged, but nothing durable lives in the hub process (issue 17).
 *
 * Downstream outbox = stream EF_<C>_DOWN (R3, file):
 *  - append publishes each record (payload: the envelope, stateless wire
 *    form; headers Ef-*, subjects.ts) and resolves with JetStream's PubAck:
 *    the record is on a quorum of servers. The record's seq is the stream
 *    sequence: increasing per node, with gaps (other nodes' messages), which
 *    the lane protocol allows (cumulative acks compare, never count).
 *  - supersession: a versioned record goes to `…down.<node>.r.<hash(key)>`;
 *    the subject retains a few messages (RESOURCE_HISTORY) and the publisher
 *    deletes all but the newest right after its PubAck (see #publishOne). Before publishing, the pending version
 *    is read (last message on the subject) and compared (same isNewer rule as
 *    LMDB: 'stale' if not newer). No Nats-Expected-* header (it made replicas
 *    diverge in nats-server 2.9); two hubs racing on one resource both land,
 *    and the newest survives the cleanup (an older one's publisher gets 'stale').
 *    After delivery + ack the edge's own store compares versions (receiver).
 *  - ack(u): remove the acknowledged messages BY MESSAGE, never by seq range, then publish
 *    again whatever the leader still holds at or below u (outbox-purge.ts: replicas diverge).
 *  - TTL: 2.9 has no per-message TTL; Ef-Expires-At is checked at delivery
 *    (the sender skips and expires) and the stream's max_age bounds the rest.
 *  - quotas: counted per node from the stream (subjects_filter), cached ≤ 1 s
 *    per hub; maxBytes is enforced per message only (see README).
 *  - dead letters: JSON records on `ef.<c>.dead.<node>` (stream EF_<C>_DEAD),
 *    plus the most recent ones in memory for deadLetters().
 * Reads (`pending`, `outboxStats`) come from the OutboxMirror of nodes whose
 * session this hub holds (openPeer/closePeer).
 *
 * Upstream inbox = KV `ef_<c>_inbox`, one entry per node: the highest seq
 * durably handed on plus the latest version per upstream resource, updated
 * with compare-and-set. The messages themselves are published to
 * EF_<C>_UP by the hub's onUpstream before commitInbound (trackUpstream):
 * commitInbound first waits for those PubAcks, so an edge is acknowledged only
 * for what is in JetStream.
 */
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node'
import type { Consumer, DeliverPolicy, JsMsg, StoredMsg } from '@nats-io/jetstream'
import type { EnvelopeCodec } from '../codec/codec.js'
import { newMessage } from '../codec/envelope.js'
import { toError } from '../errors.js'
import type { AppendOutcome, DeadLetter, InboundItem, InboundResult, OutboxInput, OutboxRecord, OutboxStats, QuotaPolicy, ReliableStore, ResourceRecord } from '../reliable/store.js'
import { isNewer } from '../reliable/store-rules.js'
import type { ClusterConnection } from './connection.js'
import { OutboxMirror, type MirrorRecord, type TakenEntry } from './outbox-mirror.js'
import { deleteIfSame, nextOnLeader, outboxPrefixes, planSettle, readRetained, removeVersions, rescueBelow, settleAll, type SettleItem } from './outbox-purge.js'
import { H } from './subjects.js'
import { trace, tracing } from './trace.js'
import { settleRange } from './outbox-range-settle.js'
import { ClusterUnavailableError } from './types.js'

/** What the sender treats as "the last seq queued": unknown here (other hubs append too), so always look. */
const UNKNOWN_LAST_SEQ = Number.MAX_SAFE_INTEGER
const MAX_DEAD_LETTERS_IN_MEMORY = 1000
const MAX_RESOURCES_PER_NODE = 10_000
const DEDUP_IDS = 10_000
/** After a settling run, the leader is compared with the node's reader this much later (#check). */
const CHECK_AFTER_MS = 3000
/** Messages one check reads from the leader at most (then checks again). */
const LEADER_READ_BATCH = 1000
/** Nodes remembered with a failed inbound commit (#broken) at most. */
const MAX_BROKEN = 200_000

interface InboxState { rev: number, r: number, res: Record<string, [string | undefined, string | undefined]>, ids: Set<string>, idOrder: string[] }

export interface ClusterStoreOptions {
  codec: EnvelopeCodec
  /** Records read ahead per connected node. @default 8192 */
  mirrorRecords?: number
  /** Bytes read ahead per connected node. @default 16 MiB */
  mirrorBytes?: number
  onPending?: (node: string) => void
  onError?: (err: Error) => void
  /**
   * Where a node's outbox reader gets its consumer (tests stand in a server that delivers nothing).
   * @default an ordered consumer on the stream (js.consumers.get)
   */
  consumerFor?: (opts: { filter_subjects: string, deliver_policy: DeliverPolicy, opt_start_seq?: number }) => Promise<Consumer>
}

export class ClusterStore implements ReliableStore {
  readonly durability = 'sync' as const
  /** Records are sent only as the outbox reader hands them out: the ack removes those by id (outbox-purge.ts). */
  readonly directSend = false
  readonly #c: ClusterConnection
  readonly #o: ClusterStoreOptions
  readonly #mirrors = new Map<string, OutboxMirror>()
  readonly #inbox = new Map<string, InboxState>()
  readonly #upstream = new Map<string, Array<Promise<unknown>>>()
  readonly #rejections = new Map<string, number>()
  readonly #dead: DeadLetter[] = []
  readonly #counts = new Map<string, { count: number, at: number }>()
  readonly #purging = new Map<string, { target: number, planned: number, done: number, running: boolean, todo: SettleItem[] }>()
  /**
   * Per node: the resume point its current session on this hub began with. Nothing at or below
   * it was sent by this hub in this session (the sender resends only above it), so this hub
   * cannot vouch for any message there that is still stored (#verify).
   */
  readonly #resumeFloor = new Map<string, number>()
  #closed = false

  constructor (c: ClusterConnection, o: ClusterStoreOptions) {
    this.#c = c
    this.#o = o
  }

  // ---- per-node lifecycle (the cluster wiring calls these) ------------------

  /** Load the node's inbox state and start reading its outbox. Throws ClusterUnavailableError. */
  async openPeer (node: string): Promise<void> {
    this.#c.check('accepting a session')
    this.#clean.delete(node) // another hub may have served the node meanwhile
    const e = await this.#c.call('loading the node inbox', async () => await this.#c.inbox.get(node))
    const st: InboxState = { rev: 0, r: 0, res: {}, ids: new Set(), idOrder: [] }
    if (e !== null && e.operation === 'PUT' && e.value.length > 0) {
      const v = JSON.parse(new TextDecoder().decode(e.value)) as { r: number, res?: InboxState['res'] }
      st.rev = e.revision
      st.r = v.r
      st.res = v.res ?? {}
    } else if (e !== null) st.rev = e.revision
    this.#inbox.set(node, st)
    if (!this.#mirrors.has(node)) {
      const m = new OutboxMirror(node, {
        maxRecords: this.#o.mirrorRecords ?? 8192,
        maxBytes: this.#o.mirrorBytes ?? 16 * 1024 * 1024,
        toRecord: msg => this.#toRecord(node, msg),
        onRecords: () => this.#o.onPending?.(node),
        onMalformed: (seq, subject, reason) => { void this.#deadLetter(node, { seq, id: `seq-${seq}`, code: 'EF_MALFORMED', reason, size: 0 }, subject) },
        onError: err => this.#o.onError?.(err)
      })
      this.#mirrors.set(node, m)
      this.#scheduleCheck(node)
      m.start(this.#o.consumerFor ?? (async opts => await this.#c.js.consumers.get(this.#c.names.streamDown, opts)), this.#c.names.down(node))
    }
  }

  /** The node's session left this hub: stop reading its outbox, forget its cached state. */
  async closePeer (node: string): Promise<void> {
    this.#clean.delete(node)
    const m = this.#mirrors.get(node)
    this.#mirrors.delete(node)
    this.#resumeFloor.delete(node)
    this.#inbox.delete(node)
    clearTimeout(this.#checks.get(node))
    this.#checks.delete(node)
    await m?.close()
  }

  /**
   * Register the PubAck of an upstream message of `node` (published by the
   * hub's onUpstream hook); the next commitInbound for the node waits for it.
   */
  trackUpstream (node: string, ack: Promise<unknown>): void {
    let list = this.#upstream.get(node)
    if (list === undefined) { list = []; this.#upstream.set(node, list) }
    ack.catch(() => {}) // observed by commitInbound
    list.push(ack)
  }

  // ---- outbox ---------------------------------------------------------------

  async append (peer: string, items: OutboxInput[], quota: QuotaPolicy, now: number): Promise<AppendOutcome[]> {
    this.#c.check('queueing a reliable message')
    const out: AppendOutcome[] = new Array(items.length)
    let count = await this.#pendingCount(peer, now)
    // Rounds of distinct resource keys: a key repeated in one call waits for its predecessor's PubAck.
    let rest = items.map((item, i) => ({ item, i }))
    while (rest.length > 0) {
      const keys = new Set<string>()
      const round: typeof rest = []
      const later: typeof rest = []
      for (const x of rest) {
        if (x.item.key !== undefined && keys.has(x.item.key)) { later.push(x); continue }
        if (x.item.key !== undefined) keys.add(x.item.key)
        round.push(x)
      }
      rest = later
      const work: Array<Promise<void>> = []
      for (const { item, i } of round) {
        if (item.bytes.byteLength > quota.maxBytes) {
          out[i] = { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: `message of ${item.bytes.byteLength} bytes exceeds the node quota of ${quota.maxBytes} bytes` }
          continue
        }
        if (count >= quota.maxMessages && item.key === undefined) {
          if (quota.overflow === 'reject') {
            out[i] = { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: `node ${peer} has ${count} pending messages (quota ${quota.maxMessages})` }
            continue
          }
          await this.#dropOldest(peer, quota.maxMessages - 1, now)
          count = quota.maxMessages - 1
        }
        count++
        work.push(this.#publishOne(peer, item).then(o => { out[i] = o }))
      }
      await Promise.all(work)
    }
    const c = this.#counts.get(peer)
    if (c !== undefined) c.count = count
    return out
  }

  async #publishOne (peer: string, item: OutboxInput): Promise<AppendOutcome> {
    const n = this.#c.names
    // append, not set: set() first searches for and deletes the key, and the client's header
    // calls allocate a key array each (bench/cluster profile); these headers are new and distinct.
    const h = natsHeaders()
    h.append(H.id, item.id)
    h.append(H.envelope, '1')
    if (item.op !== undefined) h.append(H.operation, item.op)
    if (item.expiresAt !== undefined) h.append(H.expiresAt, String(item.expiresAt))
    if (item.key === undefined) {
      const ack = await this.#c.call('queueing a reliable message', async () => await this.#c.publishStored(n.downMessage(peer, item.id), item.bytes, { msgID: `${peer}:${item.id}`, headers: h }))
      if (tracing) trace({ k: 'down-puback', peer, id: item.id, seq: ack.seq, dup: ack.duplicate })
      return { status: 'queued', seq: ack.seq, superseded: [], dropped: [] }
    }
    h.append(H.resource, item.key)
    if (item.version !== undefined) h.append(H.version, item.version)
    const subject = n.downResource(peer, item.key)
    // Reads go to the stream leader (STREAM.MSG.GET, not the direct get any replica answers).
    const readLast = async (): Promise<{ seq: number, version: string | undefined, op: string | undefined } | null> => {
      const m = await this.#c.call('reading the pending version', async () => await this.#c.jsm.streams.getMessage(n.streamDown, { last_by_subj: subject }).catch((err: Error) => {
        if (/no message found|not found/i.test(err.message)) return null
        throw err
      }))
      return m === null || m === undefined ? null : { seq: m.seq, version: m.header?.get(H.version) || undefined, op: m.header?.get(H.operation) || undefined }
    }
    const last = await readLast()
    if (last !== null && !isNewer(item.version, item.op, last.version, last.op)) return { status: 'stale', pendingVersion: last.version }
    // No Nats-Expected-Last-Subject-Sequence: nats-server 2.9 checks it again on every replica
    // when the message is applied, against that replica's own store; a replica that caught up
    // from a snapshot (or got expected seq 0) answers "last sequence by subject mismatch",
    // does not store the message and falls out of step with the leader (nats-server #5644,
    // #5794, #6194). An outbox reader (an R1 consumer) on that replica then skipped the
    // message, the edge's cumulative ack went past it, and the purge removed it: the downstream
    // loss of the chaos runs. Two hubs racing on one resource are handled after the fact
    // instead (below).
    const ack = await this.#c.call('queueing a reliable message', async () => await this.#c.publishStored(subject, item.bytes, { msgID: `${peer}:${item.id}`, headers: h }))
    if (tracing) trace({ k: 'res-puback', peer, id: item.id, v: item.version, seq: ack.seq, dup: ack.duplicate })
    // A resource's subject keeps up to RESOURCE_HISTORY messages (connection.ts), so an older version
    // that lands after ours (another hub read the subject before ours arrived) no longer REPLACES ours:
    // with one message per subject it did, and the newer version was lost (test/cluster/
    // downstream-replica-divergence.test.ts). After each publish the retained messages are resolved:
    // all but the newest are deleted (by whichever racing hub looks first; the others find them gone).
    // A reader that already took an older one delivers it, and the edge drops it as stale.
    const kept = await readRetained(this.#c, subject)
    let newest: typeof kept[number] | undefined
    for (const m of kept) if (newest === undefined || isNewer(m.version, m.op, newest.version, newest.op) || (m.version === newest.version && m.op === newest.op)) newest = m
    // Id-checked deletes (outbox-purge.ts removeVersions): a bare delete by seq could name another
    // node's message on a leader whose numbering diverged; a purge by subject makes 2.9.10's
    // consumers skip.
    const removed = await removeVersions(this.#c, subject, kept, m => m !== newest)
    // Ours is stale when another message survives and ours is not newer than it (the LMDB rule, as in
    // the check before publishing) — whether this hub deleted ours above or a racing hub already had
    // (then ours is not among `kept`; absence alone proves nothing: an online edge may have been
    // handed ours and acked it, and the purge removed it).
    if (newest !== undefined && newest.seq !== ack.seq && !isNewer(item.version, item.op, newest.version, newest.op)) return { status: 'stale', pendingVersion: newest.version }
    return { status: 'queued', seq: ack.seq, superseded: ack.duplicate ? [] : removed, dropped: [] }
  }

  /** Pending messages for the node: exact from the stream, at most 1 s old (plus this hub's own appends since). */
  async #pendingCount (peer: string, now: number): Promise<number> {
    const c = this.#counts.get(peer)
    if (c !== undefined && now - c.at < 1000) return c.count
    const info = await this.#c.call('counting pending messages', async () => await this.#c.jsm.streams.info(this.#c.names.streamDown, { subjects_filter: this.#c.names.down(peer) }))
    const count = info.state.subjects === undefined ? 0 : Object.values(info.state.subjects).reduce((a, b) => a + b, 0)
    this.#counts.set(peer, { count, at: now })
    if (this.#counts.size > 10_000) this.#counts.delete(this.#counts.keys().next().value as string)
    return count
  }

  async #dropOldest (peer: string, keep: number, now: number): Promise<void> {
    const r = await this.#c.call('dropping the oldest message', async () => await this.#c.jsm.streams.purge(this.#c.names.streamDown, { filter: this.#c.names.down(peer), keep }))
    if (r.purged > 0) await this.#deadLetter(peer, { seq: 0, id: `quota-${now}`, code: 'EF_QUOTA_DROPPED', reason: `${r.purged} oldest message(s) dropped to make room (drop-oldest quota)`, size: 0 })
  }

  /** After NATS came back: recreate every outbox reader (their ephemeral consumers may be gone). */
  restartReaders (): void {
    for (const m of this.#mirrors.values()) m.restart()
  }

  /** Nodes with records read ahead (the cluster pokes their lanes now and then: a lost wake-up must not stall a node). */
  nodesWithRecords (): string[] {
    return [...this.#mirrors].filter(([, m]) => m.count > 0).map(([n]) => n)
  }

  pending (peer: string, afterSeq: number, limit: number): OutboxRecord[] {
    return this.#mirrors.get(peer)?.pending(afterSeq, limit) ?? []
  }

  /**
   * The node's new session on this hub resumed from `r` (ReliableStore.resumed). The edge's `r`
   * may cover a message no hub ever sent it: a previous hub's reader skipped it (a replica behind
   * the leader), the edge's cumulative ack went past it, and that hub died before its pre-purge
   * check. This hub's reader does take it — but its sender never sends anything ≤ r, and the
   * check used to count "taken" as "sent": the purge removed it (the full-size chaos run's loss of
   * acknowledged messages, test/cluster/resume-over-unsent.test.ts). Now everything still stored
   * at or below `r` is published again (same Ef-Id: the edge drops what it had) by the scan that
   * follows every ack (outbox-purge.ts rescueBelow), and nothing there is removed by id.
   */
  resumed (peer: string, r: number): void {
    this.#resumeFloor.set(peer, r)
    this.#clean.delete(peer)
    this.ack(peer, r).catch(err => this.#o.onError?.(toError(err)))
  }

  async ack (peer: string, upto: number): Promise<number> {
    const n = this.#mirrors.get(peer)?.ackUpTo(upto) ?? 0
    // One settling run in flight per node; later acks raise its target.
    let p = this.#purging.get(peer)
    if (p === undefined) { p = { target: 0, planned: 0, done: 0, running: false, todo: [] }; this.#purging.set(peer, p) }
    if (upto > p.target) p.target = upto
    if (!p.running && p.target > p.done) {
      p.running = true
      const state = p
      try {
        while (state.target > state.done) {
          const t = state.target
          // What to remove is decided when the ack arrives, from what this session's reader
          // took; a retry (NATS away, the session gone) carries on with the same list.
          if (state.planned < t) {
            // Read synchronously, before any await: a message the reader takes after this ack
            // arrived was never sent, whatever its seq (take-below-ack), and must not be removed.
            const taken = this.#takenFor(peer, state.planned, t)
            if (state.todo.length === 0 && taken.length > 0 && await this.#settleByRange(peer, taken, t)) {
              state.planned = t
              state.done = t
              this.#mirrors.get(peer)?.forgetTaken(t)
              continue
            }
            state.todo.push(...planSettle(taken, outboxPrefixes(this.#c.names.prefix, peer)))
            state.planned = t
          }
          const items = state.todo.length
          await settleAll(this.#c, state.todo)
          const rescued = await rescueBelow(this.#c, peer, t)
          if (tracing) trace({ k: 'purge', peer, upto: t, items, rescued, mirror: this.#mirrors.get(peer)?.lastSeen })
          if (rescued > 0) {
            this.#c.logger.warn({ node: peer, rescued, upto: t, resumedFrom: this.#resumeFloor.get(peer) ?? 0 }, 'messages no session of this hub sent (a reader skipped them, a diverged leader numbered them below the ack, or the edge resumed past them): published again')
            this.#mirrors.get(peer)?.restart()
          }
          state.done = t
          this.#mirrors.get(peer)?.forgetTaken(t)
        }
      } catch (err) {
        // The edge has these messages; left in the stream they would only be resent (and
        // dropped as duplicates) on its next session, and keep the outbox from reading empty.
        // The last ack of a burst has no successor to retry it: retry here.
        this.#retryPurge(peer)
        throw err
      } finally {
        state.running = false
      }
    }
    this.#scheduleCheck(peer)
    const c = this.#counts.get(peer)
    if (c !== undefined) c.count = Math.max(0, c.count - n)
    return n
  }

  readonly #purgeRetries = new Map<string, NodeJS.Timeout>()
  readonly #checks = new Map<string, NodeJS.Timeout>()

  /** Compare the leader with the reader CHECK_AFTER_MS after a session opened or an ack (one timer per node). */
  #scheduleCheck (peer: string): void {
    if (this.#closed || this.#checks.has(peer) || !this.#mirrors.has(peer)) return
    const timer = setTimeout(() => {
      this.#checks.delete(peer)
      this.#check(peer).catch(err => this.#o.onError?.(toError(err)))
    }, CHECK_AFTER_MS)
    timer.unref()
    this.#checks.set(peer, timer)
  }

  /**
   * What the leader holds for the node that nothing will deliver (chaos runs, outbox-purge.ts):
   *  - a message at or below the settled ack point (numbered there by a diverged leader, or taken
   *    by no reader before the ack went past it): published again above it (rescueBelow);
   *  - messages above what the reader has seen while the reader has taken nothing for
   *    CHECK_AFTER_MS: its consumer sits on a server that does not have them (a diverged replica
   *    stalled a reader at the end of a full-size chaos run: 320 messages never delivered). They are
   *    read from the leader, one request each, up to the read-ahead bounds; the consumer goes on
   *    (it drops what was already taken).
   * One or two leader reads per check when all is well; checks follow a session's start and its acks
   * (at most one per node per CHECK_AFTER_MS), so idle nodes cost nothing.
   */
  async #check (peer: string): Promise<void> {
    const m = this.#mirrors.get(peer)
    const p = this.#purging.get(peer)
    if (m === undefined || this.#closed || (p !== undefined && (p.running || p.target > p.done))) return
    const filter = this.#c.names.down(peer)
    const next = async (seq: number): Promise<StoredMsg | null> => await nextOnLeader(this.#c, 'checking the outbox', filter, seq)
    const done = p?.done ?? 0
    const first = await next(1)
    if (first === null) return
    if (first.seq <= done) {
      const rescued = await rescueBelow(this.#c, peer, done)
      if (tracing) trace({ k: 'check-rescue', peer, done, rescued })
      if (rescued > 0) this.#c.logger.warn({ node: peer, rescued, upto: done }, 'messages stored at or below the acknowledged point: published again')
      this.#scheduleCheck(peer)
      return
    }
    if (Date.now() - m.lastTakeAt < CHECK_AFTER_MS || m !== this.#mirrors.get(peer)) return
    let read = 0
    for (let seq = m.lastSeen + 1; !m.full && read < LEADER_READ_BATCH;) {
      const msg = await next(seq)
      if (msg === null || m !== this.#mirrors.get(peer)) break
      m.takeFromLeader(msg)
      read++
      seq = msg.seq + 1
    }
    if (read > 0) {
      if (tracing) trace({ k: 'check-leader-read', peer, read, lastSeen: m.lastSeen })
      this.#c.logger.warn({ node: peer, read }, 'the outbox reader did not deliver what the stream leader holds: read from the leader')
      m.restart()
      this.#scheduleCheck(peer)
    }
  }

  /**
   * What an ack of (from, to] removes (outbox-purge.ts): the messages this hub's reader took
   * there, above the session's resume point — below it this hub sent nothing in this session, so
   * nothing there is removed by id; the scan after the removals publishes whatever is still stored
   * there again (resumed()). Beyond what the reader remembers: nothing by id either (the scan
   * publishes it again: duplicates, never a loss).
   */
  #takenFor (peer: string, from: number, to: number): TakenEntry[] {
    const m = this.#mirrors.get(peer)
    if (m === undefined) return []
    const floor = Math.min(to, this.#resumeFloor.get(peer) ?? 0)
    const lo = Math.max(from, floor)
    if (lo >= to) return []
    return m.takenIn(lo, to) ?? []
  }

  /**
   * The fast path for an ack up to `to` (outbox-range-settle.ts): when the stream leader shows
   * exactly what this reader took (`taken`, from #takenFor), one purge per chunk instead of a delete per message.
   * false (nothing removed) sends the ack down the per-message path (planSettle, settleAll, rescueBelow).
   */
  async #settleByRange (peer: string, taken: readonly TakenEntry[], to: number): Promise<boolean> {
    const epoch = this.#c.leaderEpoch
    const known = this.#clean.get(peer)
    const clean = known !== undefined && known.epoch === epoch ? known.seq : 0
    this.#clean.delete(peer)
    const r = await settleRange(this.#c, peer, taken, to, clean)
    if (!r.ok) {
      this.#c.logger.debug({ node: peer, upto: to, reason: r.reason }, 'acknowledged range removed message by message')
      return false
    }
    // Only if no leader change may have happened since the proof began (the purge emptied ≤ last).
    if (this.#c.leaderEpoch === epoch) this.#clean.set(peer, { seq: r.last, epoch })
    return true
  }

  /** Per node: the leader held nothing for it at or below seq, as of leaderEpoch epoch (#settleByRange). */
  readonly #clean = new Map<string, { seq: number, epoch: number }>()

  /** Purge the node's acknowledged messages again in 1 s (one timer per node at most). */
  #retryPurge (peer: string): void {
    if (this.#closed || this.#purgeRetries.has(peer)) return
    const timer = setTimeout(() => {
      this.#purgeRetries.delete(peer)
      this.ack(peer, 0).catch(err => this.#o.onError?.(toError(err)))
    }, 1000)
    timer.unref()
    this.#purgeRetries.set(peer, timer)
  }

  async reject (peer: string, seq: number, maxRejections: number, code: string, reason: string, now: number): Promise<number> {
    const k = `${peer}\u0000${seq}`
    const count = (this.#rejections.get(k) ?? 0) + 1
    const m = this.#mirrors.get(peer)
    const rec = m?.get(seq)
    if (rec === undefined) return -1
    if (count < maxRejections) { this.#rejections.set(k, count); return count }
    this.#rejections.delete(k)
    m?.remove(seq) // tombstones the record in place (seq negated): use the copy
    await this.#removeMessage({ ...rec, seq })
    await this.#deadLetter(peer, { seq, id: rec.id, ...(rec.key === undefined ? {} : { key: rec.key }), code: 'EF_REJECTED_BY_PEER', reason: `${code}: ${reason}`, size: rec.bytes.byteLength }, undefined, now)
    return -1
  }

  async expire (peer: string, now: number): Promise<OutboxRecord[]> {
    const m = this.#mirrors.get(peer)
    if (m === undefined) return []
    // Copies: the reader tombstones a removed record in place (seq negated), and the sender
    // reads the seqs of what expired.
    const gone = m.live().filter(r => r.expiresAt !== undefined && r.expiresAt <= now).map(r => ({ ...r }))
    for (const r of gone) {
      m.remove(r.seq)
      await this.#removeMessage(r)
      await this.#deadLetter(peer, { seq: r.seq, id: r.id, ...(r.key === undefined ? {} : { key: r.key }), code: 'EF_TTL_EXPIRED', reason: 'expired before delivery', size: r.bytes.byteLength }, undefined, now)
    }
    return gone
  }

  /** Remove one record the reader holds: by seq, once the leader shows the same message there (outbox-purge.ts). */
  async #removeMessage (r: MirrorRecord): Promise<void> {
    await deleteIfSame(this.#c, r.seq, r.id, r.subject)
  }

  async #deadLetter (peer: string, d: Omit<DeadLetter, 'peer' | 'at'>, _subject?: string, now = Date.now()): Promise<void> {
    const dl: DeadLetter = { peer, at: now, ...d }
    this.#dead.unshift(dl)
    if (this.#dead.length > MAX_DEAD_LETTERS_IN_MEMORY) this.#dead.pop()
    await this.#c.call('recording a dead letter', async () => await this.#c.js.publish(this.#c.names.dead(peer), JSON.stringify(dl))).catch(err => this.#o.onError?.(toError(err)))
  }

  outboxStats (peer: string): OutboxStats {
    const m = this.#mirrors.get(peer)
    return { count: m?.count ?? 0, bytes: m?.bytes ?? 0, firstSeq: m?.firstSeq ?? 0, lastSeq: UNKNOWN_LAST_SEQ }
  }

  /** Exact pending count for any node, from the stream (what outboxDepth cannot give synchronously). */
  async depth (peer: string): Promise<number> {
    this.#counts.delete(peer)
    return await this.#pendingCount(peer, Date.now())
  }

  /** Lanes are opened per session in cluster mode; offline nodes' TTLs are checked at delivery. */
  peersWithPending (): string[] { return [] }

  deadLetters (peer?: string, limit = 100): DeadLetter[] {
    return this.#dead.filter(d => peer === undefined || d.peer === peer).slice(0, limit)
  }

  #toRecord (node: string, m: JsMsg): MirrorRecord | { malformed: string, seq: number, subject: string } {
    const h = m.headers
    let bytes = m.data
    const f = ourHeaders(h)
    const id = f.id || `nats-${m.seq}`
    const version = f.version || undefined
    const op = f.op || undefined
    const key = f.key || undefined
    const exp = f.exp || undefined
    if (f.envelope !== '1') {
      // A plain NATS publisher (README "Cluster mode"): the payload is the content, headers say the rest.
      try {
        bytes = this.#o.codec.encode(plainEnvelope(m, h, id, version, op, key, exp))
      } catch (err) {
        return { malformed: `cannot build an envelope from the message: ${toError(err).message}`, seq: m.seq, subject: m.subject }
      }
    }
    const rec: MirrorRecord = { seq: m.seq, subject: m.subject, id, bytes, enqueuedAt: m.info.timestampNanos === undefined ? Date.now() : Math.floor(Number(m.info.timestampNanos) / 1e6), rejections: 0 }
    if (key !== undefined) rec.key = key
    if (version !== undefined) rec.version = version
    if (op !== undefined) rec.op = op
    if (exp !== undefined && /^\d+$/.test(exp)) rec.expiresAt = Number(exp)
    void node
    return rec
  }

  // ---- inbox -----------------------------------------------------------------

  receivedSeq (peer: string): number { return this.#inbox.get(peer)?.r ?? 0 }

  /** The peer's id window as this hub holds it (kept in memory, not in JetStream). */
  hasInboundId (peer: string, id: string): boolean { return this.#inbox.get(peer)?.ids.has(id) ?? false }

  /**
   * Nodes whose last inbound commit here failed → the highest seq refused since. The lane's
   * receiver acknowledges cumulatively (ack u = "everything up to u is stored") and keeps
   * taking the data its peer sends after a failed commit; so once a commit failed, no newer
   * one may succeed until the edge went back to its acknowledged point and sent the gap again
   * (go-back-N after its ack timeout, or `resume` on a new session): a commit whose lowest
   * seq is at or below the highest refused one. Otherwise a later commit's ack covers the
   * failed messages, and the edge drops what JetStream never stored (the upstream loss of the
   * chaos run; test/cluster/upstream-failed-commit.test.ts). Kept across closePeer: data of a
   * session already gone may still be committing. Bounded by MAX_BROKEN (oldest first).
   */
  readonly #broken = new Map<string, number>()

  async commitInbound (peer: string, items: InboundItem[], _now: number): Promise<InboundResult> {
    let lo = Number.MAX_SAFE_INTEGER
    let hi = 0
    for (const it of items) { if (it.seq < lo) lo = it.seq; if (it.seq > hi) hi = it.seq }
    const broken = this.#broken.get(peer)
    if (broken !== undefined) {
      if (lo > broken) {
        this.#broken.set(peer, Math.max(broken, hi))
        // Resent after the gap anyway: what they published is awaited again then (same Msg-Id).
        this.#upstream.delete(peer)
        throw new ClusterUnavailableError(`node ${peer}: an earlier inbound commit failed; nothing newer is acknowledged until the edge resends from its acknowledged point`)
      }
      this.#broken.delete(peer) // the edge went back: this commit covers the gap
    }
    try {
      return await this.#commitInbound(peer, items)
    } catch (err) {
      this.#broken.delete(peer)
      this.#broken.set(peer, Math.max(broken ?? 0, hi))
      if (this.#broken.size > MAX_BROKEN) this.#broken.delete(this.#broken.keys().next().value as string)
      throw err
    }
  }

  async #commitInbound (peer: string, items: InboundItem[]): Promise<InboundResult> {
    const ups = this.#upstream.get(peer)
    if (ups !== undefined) {
      this.#upstream.delete(peer)
      const settled = await Promise.allSettled(ups)
      const bad = settled.find(s => s.status === 'rejected')
      if (bad !== undefined) throw new ClusterUnavailableError(`an upstream message did not reach JetStream: ${toError((bad as PromiseRejectedResult).reason).message}`)
    }
    let st = this.#inbox.get(peer)
    if (st === undefined) { st = { rev: 0, r: 0, res: {}, ids: new Set(), idOrder: [] }; this.#inbox.set(peer, st) }
    // Worked out on copies and applied only once the inbox is saved: a failed save must not
    // leave this hub believing (receivedSeq, hasInboundId) it holds what it could not record.
    const outcome: InboundResult['outcome'] = []
    let r = st.r
    const res = { ...st.res }
    const fresh = new Set<string>()
    for (const it of items) {
      if (it.seq <= st.r || st.ids.has(it.id) || fresh.has(it.id)) { outcome.push('duplicate'); continue }
      if (it.key !== undefined) {
        const cur = res[it.key]
        if (cur !== undefined && !isNewer(it.version, it.op, cur[0], cur[1])) { outcome.push('stale'); r = Math.max(r, it.seq); continue }
        res[it.key] = [it.version, it.op]
      }
      fresh.add(it.id)
      outcome.push('new')
      r = Math.max(r, it.seq)
    }
    const keys = Object.keys(res)
    if (keys.length > MAX_RESOURCES_PER_NODE) for (const k of keys.slice(0, keys.length - MAX_RESOURCES_PER_NODE)) delete res[k]
    await this.#saveInbox(peer, st, r, res)
    for (const id of fresh) {
      st.ids.add(id)
      st.idOrder.push(id)
      if (st.idOrder.length > DEDUP_IDS) st.ids.delete(st.idOrder.shift() as string)
    }
    return { outcome }
  }

  /** Save the node's inbox point (r, res) with compare-and-set, merging another hub's write; st takes the saved state. */
  async #saveInbox (peer: string, st: InboxState, r: number, res: InboxState['res']): Promise<void> {
    let rev = st.rev
    for (let attempt = 0; ; attempt++) {
      const value = JSON.stringify({ r, res })
      try {
        const from = rev
        rev = await this.#c.call('committing received messages', async () => from === 0
          ? await this.#c.inbox.create(peer, value)
          : await this.#c.inbox.update(peer, value, from))
        st.rev = rev
        st.r = r
        st.res = res
        return
      } catch (err) {
        if (attempt >= 3 || !/wrong last sequence|key exists/i.test(toError(err).message)) throw err
        // Another hub wrote the node's inbox (the node moved): merge, never go backwards.
        const e = await this.#c.call('loading the node inbox', async () => await this.#c.inbox.get(peer))
        if (e === null) { rev = 0; continue }
        const v = e.value.length === 0 ? { r: 0, res: {} } : JSON.parse(new TextDecoder().decode(e.value)) as { r: number, res: InboxState['res'] }
        rev = e.revision
        r = Math.max(r, v.r)
        for (const [k, cur] of Object.entries(v.res ?? {})) {
          const mine = res[k]
          if (mine === undefined || isNewer(cur[0], cur[1], mine[0], mine[1])) res[k] = cur
        }
      }
    }
  }

  getResource (key: string): ResourceRecord | undefined {
    // Upstream resource keys are `<node>/<resource>` (hub-core resourceKey).
    const slash = key.indexOf('/')
    const st = slash < 0 ? undefined : this.#inbox.get(key.slice(0, slash))
    const cur = st?.res[key]
    if (cur === undefined) return undefined
    return { key, version: cur[0], op: cur[1], bytes: undefined, deleted: cur[1] === 'delete', updatedAt: 0 }
  }

  listResources (): ResourceRecord[] { return [] }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const timer of this.#purgeRetries.values()) clearTimeout(timer)
    this.#purgeRetries.clear()
    for (const timer of this.#checks.values()) clearTimeout(timer)
    this.#checks.clear()
    await Promise.all([...this.#mirrors.keys()].map(async n => { await this.closePeer(n) }))
  }
}

interface OurHeaders { id: string, version: string, op: string, key: string, exp: string, envelope: string }

/**
 * The headers a record needs, in one pass over the message's headers: each MsgHdrs.get() copies
 * and filters the whole key list (6 per record, GC in the bench/cluster profile). Exact names, as
 * get() matches by default; the first value of each, as get() returns.
 */
function ourHeaders (h: MsgHdrs | undefined): OurHeaders {
  const f: OurHeaders = { id: '', version: '', op: '', key: '', exp: '', envelope: '' }
  if (h === undefined) return f
  for (const [k, v] of h) {
    const first = v[0] ?? ''
    switch (k) {
      case H.id: f.id = first; break
      case H.version: f.version = first; break
      case H.operation: f.op = first; break
      case H.resource: f.key = first; break
      case H.expiresAt: f.exp = first; break
      case H.envelope: f.envelope = first; break
    }
  }
  return f
}

function plainEnvelope (m: JsMsg, h: MsgHdrs | undefined, id: string, version: string | undefined, op: string | undefined, key: string | undefined, exp: string | undefined): ReturnType<typeof newMessage> {
  const kind = h?.get(H.content) || (h?.get('Content-Type') === 'application/json' ? 'json' : 'bytes')
  const content: unknown = kind === 'json' ? JSON.parse(new TextDecoder().decode(m.data)) : new Uint8Array(m.data)
  const env = newMessage({
    id,
    source: 'nats',
    group: h?.get(H.group) || 'nats',
    operation: op ?? 'publish',
    resource: key ?? (h?.get(H.resource) || 'nats/message'),
    content,
    ...(version === undefined ? {} : { resourceVersion: version })
  })
  if (exp !== undefined && /^\d+$/.test(exp)) env.header.ttl = Math.max(1, Number(exp) - env.header.timestamp)
  return env
}
