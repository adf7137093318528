/**
 * The device registry's store (DeviceKv, src/device/cloud/registry-store.ts)
 * in NATS JetStream, shared by every hub of a cluster (issue 17: "the device
 * registry, with its revisions and watch, is shared").
 *
 * A replicated transaction log that every hub replays into an in-memory view:
 *  - stream EF_<C>_REGISTRY (file, R = the cluster's replicas), subjects
 *    `ef.<c>.registry.tx` (one transaction) and `ef.<c>.registry.part` (a piece
 *    of a transaction larger than one NATS message);
 *  - transaction(fn): `fn` runs against this hub's view at log position `base`,
 *    its reads recorded; writes, read set and base go out as one message (its
 *    PubAck: stored on a quorum);
 *  - every hub applies the log in order with the same deterministic rule
 *    (registry-verdict.ts): a transaction commits unless a transaction
 *    committed after its base wrote a key it read, it lags more than MAX_LAG
 *    entries, or its operation already committed (a retry whose first attempt
 *    landed after all). The writer waits for its own verdict; an aborted
 *    attempt runs `fn` again on the newer view (no update is lost; after
 *    MAX_ATTEMPTS the caller gets DeviceConflictError).
 *
 * No Nats-Expected-Last-Sequence: nats-server 2.9 re-checks Nats-Expected-*
 * headers on every replica when it applies a message, and a replica that
 * disagrees drops it and diverges (test/cluster/downstream-replica-divergence
 * .test.ts). The verdict here is computed by the readers, identically.
 *
 * Every revision-bumping change reads and writes `meta/revision`, so those are
 * serialised cluster-wide: revisions are unique and grow in log order. Twin
 * reports for different devices touch different keys and do not conflict.
 * Reads outside transactions are this hub's view (a few ms behind a write on
 * another hub: watch, or read again).
 *
 * Compaction (registry-snapshot-writer.ts): every `snapshotEvery` entries a hub
 * stores the view as a snapshot and the log is purged below the older kept
 * snapshot; a hub opens from the newest complete snapshot and replays only the
 * log after it, and one that fell behind the purge point loads it again.
 */
import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { Packr } from 'msgpackr'
import { StoreError, toError } from '../errors.js'
import { DeviceConflictError } from '../device/errors.js'
import type { DbName, DeviceKv, KvTxn, KvWrite, SharedCommit } from '../device/cloud/registry-store.js'
import type { ClusterConnection } from './connection.js'
import { ClusterUnavailableError } from './types.js'
import { MAX_LAG, RecentCommits, keyOf, type TxnBody, type TxnHead } from './registry-verdict.js'
import { DELETED, sortKeys, stagedTxn } from './registry-txn.js'
import { RegistrySnapshotError, captureState, resolveSnapshotOptions, type RegistrySnapshotOptions, type SnapshotState } from './registry-snapshot.js'
import { SnapshotWriter, type RegistryLogMetrics } from './registry-snapshot-writer.js'

export interface JetStreamKvOptions extends RegistrySnapshotOptions {
  /** Counters of snapshots and purged entries (the hub's `edgefabric_hub_registry_*` families). */
  metrics?: RegistryLogMetrics
}

type Key = string | number
const DB_NAMES: DbName[] = ['meta', 'models', 'devices', 'mappers', 'dispatch', 'uploads']
/** Runs of `fn` per transaction before DeviceConflictError. */
export const MAX_ATTEMPTS = 30
const FORMAT = 1
const packr = new Packr({ useRecords: false, moreTypes: false })

interface Waiting { attempt: string, resolve: (v: { committed: boolean, reason?: string }) => void }

export class JetStreamKv implements DeviceKv {
  readonly #c: ClusterConnection
  readonly #stream: string
  readonly #subjectTx: string
  readonly #subjectPart: string
  readonly #dbs = new Map<DbName, Map<Key, unknown>>(DB_NAMES.map(n => [n, new Map()]))
  readonly #recent = new RecentCommits()
  /** Pieces of large transactions, by log seq, until their transaction message (or MAX_LAG). */
  readonly #parts = new Map<number, Uint8Array>()
  /** Local operations waiting for their verdict, by operation id. */
  readonly #pending = new Map<string, Waiting>()
  readonly #reachWaiters = new Set<{ seq: number, resolve: () => void }>()
  readonly #listeners = new Set<(c: SharedCommit) => void>()
  #applied = 0
  #chain: Promise<unknown> = Promise.resolve()
  #messages: ConsumerMessages | undefined
  #closed = false
  readonly #onError: (err: Error) => void
  readonly #snap: SnapshotWriter
  /** A hole in the log (purged below the next unapplied entry): load the newest snapshot before reading on. */
  #gap = false
  /** Seq of a hole no snapshot explains: applied anyway, as before compaction existed (reported). */
  #acceptGap = 0

  private constructor (c: ClusterConnection, onError: (err: Error) => void, options: JetStreamKvOptions) {
    this.#c = c
    const n = c.names
    this.#stream = `EF_${n.cluster.toUpperCase().replace(/-/g, '_')}_REGISTRY`
    this.#subjectTx = `${n.prefix}.registry.tx`
    this.#subjectPart = `${n.prefix}.registry.part`
    this.#onError = onError
    this.#snap = new SnapshotWriter(c, this.#stream, resolveSnapshotOptions(options), onError, options.metrics)
  }

  /**
   * Create the streams if absent, load the newest complete snapshot, replay the log after it
   * to its current end, then follow it. `options` are validated here, once.
   */
  static async open (c: ClusterConnection, onError: (err: Error) => void = () => {}, options: JetStreamKvOptions = {}): Promise<JetStreamKv> {
    const kv = new JetStreamKv(c, onError, options)
    await kv.#ensureStream()
    try {
      const s = await kv.#snap.load(0)
      if (s !== undefined) kv.#install(s)
    } catch (err) {
      await kv.close()
      throw err
    }
    kv.#follow()
    // Back from a NATS disconnect: the ephemeral consumer may be gone with its server; start over.
    c.onAvailability(available => { if (available) void kv.#messages?.close().catch(() => {}) })
    try {
      let { first_seq: first, last_seq: last, messages } = await c.call('reading the registry log', async () => (await c.jsm.streams.info(kv.#stream)).state)
      if (messages > 0 && first > kv.#applied + 1) {
        // Two snapshots written (and the log purged past ours) while we read ours: take the newest again.
        const s = await kv.#snap.load(first - 1)
        if (s !== undefined) kv.#install(s)
        ;({ first_seq: first, last_seq: last, messages } = await c.call('reading the registry log', async () => (await c.jsm.streams.info(kv.#stream)).state))
      }
      // The log after the snapshot must be whole: purges stay below the older kept snapshot
      // (registry-snapshot-writer.ts), so a hole here means no readable snapshot covers it.
      if (messages > 0 && first > kv.#applied + 1) {
        throw new RegistrySnapshotError(`device registry log ${kv.#stream} starts at ${first} but the newest readable snapshot is at ${kv.#applied} (${kv.#applied === 0 ? 'none' : 'too old'}): the view cannot be rebuilt`)
      }
      await kv.#reach(last, Math.max(30_000, c.options.timeoutMs * 6), 'replaying the device registry log')
    } catch (err) {
      await kv.close()
      throw err
    }
    return kv
  }

  get stream (): string { return this.#stream }
  /** The snapshot stream (registry-snapshot-store.ts). */
  get snapshotStream (): string { return this.#snap.store.stream }
  /** Seq of the newest snapshot this hub loaded, wrote or saw complete (0: none). */
  get snapshotSeq (): number { return this.#snap.latest }
  /** Last log seq applied to this view. */
  get applied (): number { return this.#applied }

  get<T> (db: DbName, key: Key): T | undefined {
    const v = this.#db(db).get(key)
    return v === undefined ? undefined : structuredClone(v) as T
  }

  entries<T> (db: DbName, prefix?: string): Array<{ key: Key, value: T }> {
    const m = this.#db(db)
    const keys = [...m.keys()].filter(k => prefix === undefined || (typeof k === 'string' && k.startsWith(prefix)))
    return sortKeys(keys).map(key => ({ key, value: structuredClone(m.get(key)) as T }))
  }

  count (db: DbName): number { return this.#db(db).size }

  onCommit (listener: (c: SharedCommit) => void): void { this.#listeners.add(listener) }

  transaction<T> (fn: (tx: KvTxn) => T): Promise<T> {
    const p = this.#chain.then(async () => await this.#run(fn))
    this.#chain = p.catch(() => {})
    return p
  }

  async close (): Promise<void> {
    if (this.#closed) return
    await this.#chain
    this.#closed = true
    await this.#messages?.close().catch(() => {})
    await this.#snap.close()
    for (const w of this.#pending.values()) w.resolve({ committed: false, reason: 'closed' })
  }

  // ---- writing -----------------------------------------------------------------------

  async #run<T> (fn: (tx: KvTxn) => T): Promise<T> {
    const op = randomBytes(9).toString('base64url')
    let synced = false
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      if (this.#closed) throw new StoreError('the device registry store is closed')
      this.#c.check('device registry write')
      const base = this.#applied
      const staged = new Map<DbName, Map<Key, unknown>>()
      const reads = new Set<string>()
      const prefixes: Array<[DbName, string | null]> = []
      let note: unknown
      let result: T
      try {
        result = fn(stagedTxn(this, staged, reads, prefixes, v => { note = v }))
      } catch (err) {
        // A refusal (say, "model not found") must not come from a view behind a change another hub
        // already acknowledged: catch up with the log's end once and run the checks again.
        if (synced) throw err
        synced = true
        await this.#catchUp()
        attempt--
        continue
      }
      const w: Array<[DbName, Key, 0 | 1, unknown?]> = []
      for (const [db, m] of staged) for (const [k, v] of m) w.push(v === DELETED ? [db, k, 0] : [db, k, 1, v])
      if (w.length === 0) return result
      const id = randomBytes(9).toString('base64url')
      const verdict = new Promise<{ committed: boolean, reason?: string }>(resolve => { this.#pending.set(op, { attempt: id, resolve }) })
      let published = true
      try {
        await this.#publish({ f: FORMAT, i: id, o: op, b: base }, { r: [...reads], p: prefixes, w, n: note })
      } catch (err) {
        this.#c.noteFailure(toError(err))
        published = false
      }
      // Outcome unknown after a failed publish (the message may be stored, or land later): once the
      // log answers again, read it to its end; no verdict by then → run again as a new attempt of the
      // same operation (the 'dup' rule, registry-verdict.ts, lets at most one attempt commit).
      const v = published
        ? await this.#within(verdict, this.#c.options.timeoutMs * 3)
        : await this.#within(verdict, 0) ?? await this.#catchUp().then(async () => await this.#within(verdict, 0) ?? { committed: false, reason: 'unknown' }, () => undefined)
      if (v === undefined) {
        this.#pending.delete(op)
        if (!this.#c.available) throw new ClusterUnavailableError('device registry write: the cluster (NATS JetStream) is unavailable; the write may or may not have been applied')
        throw new StoreError('device registry write: no verdict from the log in time; the write may or may not have been applied')
      }
      this.#pending.delete(op)
      if (v.committed) return result
      if (v.reason === 'closed') throw new StoreError('the device registry store is closed')
      // Lost a race: back off a random moment, so a hub whose writes land later (slower link,
      // reconnecting) is not beaten by the same faster one on every attempt.
      await new Promise(resolve => setTimeout(resolve, Math.random() * Math.min(100, 4 * attempt)))
    }
    throw new DeviceConflictError(MAX_ATTEMPTS)
  }

  /** One message, or pieces then the transaction message naming them (NATS max_payload). */
  async #publish (head: Omit<TxnHead, 'parts'>, body: TxnBody): Promise<void> {
    const bytes = packr.pack(body)
    const max = Math.min(256 * 1024, Math.floor((this.#c.nc.info?.max_payload ?? 1024 * 1024) / 2))
    const h = natsHeaders()
    h.set('Ef-Registry', String(FORMAT))
    const timeout = this.#c.options.timeoutMs
    if (bytes.length <= max) {
      await this.#c.js.publish(this.#subjectTx, packr.pack({ ...head, body: bytes }), { headers: h, timeout })
      return
    }
    const parts: number[] = []
    for (let at = 0; at < bytes.length; at += max) {
      const ack = await this.#c.js.publish(this.#subjectPart, bytes.subarray(at, at + max), { headers: h, timeout })
      parts.push(ack.seq)
    }
    await this.#c.js.publish(this.#subjectTx, packr.pack({ ...head, parts }), { headers: h, timeout })
  }

  // ---- reading the log -----------------------------------------------------------------

  #follow (): void {
    void (async () => {
      while (!this.#closed) {
        try {
          if (this.#gap) await this.#reload()
          await this.#read()
        } catch (err) {
          if (!this.#closed) this.#onError(toError(err))
        }
        if (!this.#closed) await new Promise(resolve => setTimeout(resolve, 250))
      }
    })()
  }

  async #read (): Promise<void> {
    const c = await this.#c.js.consumers.get(this.#stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.#applied + 1 })
    if (this.#closed) return
    // expires 2 s: an idle pull is heartbeated every second, so a consumer lost with a killed
    // server is noticed within ~2 s and recreated from the next unapplied seq: writers wait for
    // their verdict from this reader. One reader per hub, so the idle pulls cost little.
    const msgs = await c.consume({ max_messages: 512, expires: 2000 })
    this.#messages = msgs
    if (this.#closed) { await msgs.close(); return }
    void (async () => {
      for await (const st of msgs.status()) {
        if (st.type === 'heartbeats_missed' || st.type === 'consumer_deleted' || st.type === 'consumer_not_found' || st.type === 'stream_not_found') {
          await msgs.close().catch(() => {})
          break
        }
      }
    })().catch(() => {})
    for await (const m of msgs) {
      if (this.#closed) break
      // Not `await msgs.close()` in here: close() waits for this very iteration to end.
      if (!this.#take(m)) break
    }
    if (this.#gap) await msgs.close().catch(() => {})
  }

  /** Apply one log entry; false on a hole that a snapshot may explain (the reader stops, #reload runs). */
  #take (m: JsMsg): boolean {
    if (m.seq <= this.#applied) return true
    if (m.seq !== this.#applied + 1 && m.seq !== this.#acceptGap) {
      // Only compaction purges this stream: this hub fell behind the purge point (offline,
      // slow). Start again from the newest snapshot rather than apply a view with a hole.
      this.#gap = true
      this.#acceptGap = m.seq
      return false
    }
    const q = m.seq
    this.#applied = q
    try {
      if (m.subject === this.#subjectPart) this.#parts.set(q, m.data.slice())
      else if (m.subject === this.#subjectTx) this.#apply(q, m.data)
    } catch (err) {
      this.#onError(new StoreError(`device registry log entry ${q} not applied: ${toError(err).message}`, { cause: err }))
    }
    if ((q & 1023) === 0) this.#prune(q)
    // The view at q is final here: every hub captures the same one at the same seqs.
    if (this.#snap.due(q)) this.#snap.offer(captureState(q, this.#dbs, this.#recent.records(), this.#parts))
    for (const w of this.#reachWaiters) if (w.seq <= q) { this.#reachWaiters.delete(w); w.resolve() }
    return true
  }

  /** Replace the view with a snapshot's (at open, or after falling behind the log's purge point). */
  #install (s: SnapshotState): void {
    const before = this.#applied
    const changed: KvWrite[] = []
    for (const [name, entries] of s.dbs) {
      const old = this.#db(name)
      const next = new Map(entries)
      if (before > 0) {
        for (const [k, v] of next) if (!isDeepStrictEqual(old.get(k), v) || !old.has(k)) changed.push({ db: name, key: k, value: v })
        for (const k of old.keys()) if (!next.has(k)) changed.push({ db: name, key: k, value: undefined })
      }
      this.#dbs.set(name, next)
    }
    this.#recent.load(s.recent)
    this.#parts.clear()
    for (const [seq, bytes] of s.parts) this.#parts.set(seq, bytes)
    this.#applied = s.seq
    this.#snap.saw(s.seq)
    // A local writer whose attempt committed in the skipped range: its operation is among the
    // snapshot's recent commits. Others keep waiting (a later attempt, or their timeout).
    for (const [op, w] of this.#pending) if (this.#recent.committed(op, before)) w.resolve({ committed: true })
    if (before > 0) {
      // The registries see the skipped range's net effect (node index stays right); their
      // watchers cannot get the skipped changes one by one: say so.
      for (const l of this.#listeners) {
        try { l({ writes: changed, note: undefined, local: false }) } catch (err) { this.#onError(toError(err)) }
      }
      this.#onError(new StoreError(`device registry log: this hub was at ${before}, behind the log's purge point; loaded the snapshot at ${s.seq} (${changed.length} keys changed; watchers missed the changes in between)`))
    }
    for (const w of this.#reachWaiters) if (w.seq <= s.seq) { this.#reachWaiters.delete(w); w.resolve() }
  }

  /** After a hole: the newest snapshot at or after it, or (none) apply on with the hole reported. */
  async #reload (): Promise<void> {
    const hole = this.#acceptGap
    const s = await this.#snap.load(hole - 1)
    this.#gap = false
    if (s !== undefined && s.seq > this.#applied) { this.#install(s); return }
    this.#onError(new StoreError(`device registry log: expected seq ${this.#applied + 1}, got ${hole} (entries removed from ${this.#stream}, and no complete snapshot at or after ${hole - 1})`))
  }

  /** The deterministic verdict and, if it commits, the writes (same on every hub: see header). */
  #apply (q: number, data: Uint8Array): void {
    const head = packr.unpack(data) as TxnHead & { body?: Uint8Array }
    if (head.f !== FORMAT) { this.#settle(head, q, false, `format ${String(head.f)}`); return }
    let bytes = head.body
    if (head.parts !== undefined) {
      const pieces = head.parts.map(s => s > head.b && s < q ? this.#parts.get(s) : undefined)
      for (const s of head.parts) this.#parts.delete(s)
      if (pieces.some(p => p === undefined)) { this.#settle(head, q, false, 'parts'); return }
      bytes = Buffer.concat(pieces as Uint8Array[])
    }
    if (bytes === undefined) { this.#settle(head, q, false, 'empty'); return }
    const body = packr.unpack(bytes) as TxnBody
    const why = this.#recent.refuse(q, head, body)
    if (why !== undefined) { this.#settle(head, q, false, why); return }
    const writes: KvWrite[] = []
    for (const [db, key, put, value] of body.w) {
      const m = this.#db(db)
      if (put === 1) m.set(key, value); else m.delete(key)
      writes.push({ db, key, value: put === 1 ? value : undefined })
    }
    this.#recent.add(q, head.o, body.w.map(([db, key]) => keyOf(db, key)))
    // Listeners first, in log order: a local writer's transaction() resolves after they ran.
    const local = this.#pending.has(head.o)
    for (const l of this.#listeners) {
      try { l({ writes: structuredClone(writes), note: body.n, local }) } catch (err) { this.#onError(toError(err)) }
    }
    this.#settle(head, q, true)
  }

  /** Tell a local writer its verdict; false when the operation is not this hub's (a remote commit). */
  #settle (head: TxnHead, q: number, committed: boolean, reason?: string): boolean {
    const w = this.#pending.get(head.o)
    if (w === undefined) return false
    // 'dup': an earlier attempt of the operation committed (its verdict came while nobody waited).
    if (committed || reason === 'dup') { w.resolve({ committed: true }); return true }
    if (w.attempt === head.i) w.resolve({ committed: false, ...(reason === undefined ? {} : { reason: `${reason} at ${q}` }) })
    return true
  }

  #prune (q: number): void {
    this.#recent.prune(q - MAX_LAG)
    for (const s of this.#parts.keys()) if (s <= q - MAX_LAG) this.#parts.delete(s)
  }

  /** Apply the log up to its current end (one stream info call). */
  async #catchUp (): Promise<void> {
    const last = await this.#c.call('reading the registry log', async () => (await this.#c.jsm.streams.info(this.#stream)).state.last_seq)
    await this.#reach(last, this.#c.options.timeoutMs * 3, 'catching up with the device registry log')
  }

  async #reach (seq: number, timeoutMs: number, what: string): Promise<void> {
    if (this.#applied >= seq) return
    const w = { seq, resolve: () => {} }
    const p = new Promise<void>(resolve => { w.resolve = resolve })
    this.#reachWaiters.add(w)
    if (await this.#within(p.then(() => true), timeoutMs) === undefined) {
      this.#reachWaiters.delete(w)
      throw new ClusterUnavailableError(`${what}: at ${this.#applied} of ${seq} after ${timeoutMs} ms`)
    }
  }

  async #within<V> (p: Promise<V>, ms: number): Promise<V | undefined> {
    let t: NodeJS.Timeout | undefined
    const r = await Promise.race([p, new Promise<undefined>(resolve => { t = setTimeout(() => resolve(undefined), ms) })])
    clearTimeout(t)
    return r
  }

  async #ensureStream (): Promise<void> {
    await this.#snap.store.ensureStream()
    const jsm = this.#c.jsm
    await this.#c.call('creating the registry log', async () => {
      try {
        await jsm.streams.info(this.#stream)
        return
      } catch (err) {
        if (!/not found/i.test((err as Error).message)) throw err
      }
      try {
        await jsm.streams.add({
          name: this.#stream,
          subjects: [`${this.#c.names.prefix}.registry.>`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          num_replicas: this.#c.options.replicas,
          discard: DiscardPolicy.Old
        })
      } catch (err) {
        if (!/already in use|exists/i.test((err as Error).message)) throw err
      }
    })
  }

  #db (db: DbName): Map<Key, unknown> { return this.#dbs.get(db) as Map<Key, unknown> }
}
