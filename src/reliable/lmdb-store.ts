/**
 * ReliableStore on LMDB (the `lmdb` package, lmdb-js v3), one environment per
 * data directory. The rules are store-logic.ts (shared with MemoryStore);
 * this file maps them onto LMDB sub-databases (layout: lmdb-txn.ts).
 *
 * Group commit. Every writing method runs its rules inside
 * `root.transaction(cb)`. lmdb-js queues such callbacks and runs all that
 * arrive before the writer thread is free in ONE LMDB write transaction, in
 * call order, each seeing the writes of the ones before it. While one
 * transaction is committing (and fsyncing), new calls queue up for the next
 * one, so a busy store commits hundreds of appends per fsync: throughput is
 * not bound by the disk's fsync rate, latency is about one or two commits.
 *
 * Durability point (the promise of a writing method resolves after the
 * commit of the transaction that holds it), by mode — the exact lmdb options:
 *
 *  - `sync`    { overlappingSync: false, noSync: false }. mdb_txn_commit
 *              writes the pages, fdatasync()s the data file and writes the
 *              meta page through an O_DSYNC descriptor before it returns;
 *              lmdb-js resolves only after that. Resolved = on disk, as far
 *              as fsync is honoured by the OS and device (survives process
 *              crash, OS crash and power loss). lmdb-js's default
 *              overlappingSync (on Linux) is deliberately NOT used: with it
 *              a promise resolves at commit, BEFORE the flush.
 *  - `relaxed` { noSync: true } (MDB_NOSYNC): resolved = committed to the
 *              OS page cache, not fsync'd. Survives a process crash
 *              (SIGKILL, OOM), not an OS crash or power loss. A background
 *              mdb_env_sync (root.sync()) every `syncIntervalMs` (default
 *              1000) and one at close() bound what an OS crash can lose; per
 *              LMDB's MDB_NOSYNC notes an OS crash can still corrupt the
 *              environment if the filesystem reorders writes, so `relaxed` is
 *              for data you can afford to lose. Measured here: overlappingSync
 *              with resolve-at-commit was no faster than `sync` (each commit
 *              still waits for the previous flush), so it is not offered.
 *
 * Checked: under strace, `sync` shows one fdatasync per group commit and
 * every acknowledgement printed after it; `relaxed` shows none except the
 * periodic sync. test/reliable/lmdb-crash.test.ts SIGKILLs a writer
 * mid-stream in both modes and finds every acknowledged append (process
 * crash only; power-loss durability of `sync` rests on fsync being honoured).
 *
 * Failure. A commit that fails (disk full, I/O error) rejects every call in
 * that transaction with StoreError and applies none of it; the store stays
 * usable. lmdb-js does NOT roll back a transaction callback that throws
 * half-way, so the rules are written not to throw once they write (inputs
 * are validated first); should one throw anyway, the store fails stop: every
 * later call rejects with StoreError until it is reopened.
 *
 * Reads (pending, outboxStats, …) are synchronous and see committed state
 * (lmdb-js renews its read snapshot after each commit, before resolving
 * writers), so after `await append()` the record is visible to pending().
 * Per-peer counters are updated in the same transaction as the records they
 * count. The one in-memory copy is each peer's inbound dedup window
 * (lmdb-txn.ts IdWindow): checked against the committed counters at the start
 * of every inbound write transaction and rebuilt from disk when they differ
 * (a failed commit, a reopen), so it cannot drift from what is on disk.
 *
 * Format: FORMAT_VERSION in lmdb-txn.ts. A format-2 directory is migrated in
 * place at open, in one transaction (migrateFormat2); any other version is
 * refused at open.
 */
import { mkdirSync } from 'node:fs'
import { open, type RootDatabase } from 'lmdb'
import { InvalidOptionError, StoreClosedError, StoreError, toError } from '../errors.js'
import { enumOption, intOption } from '../util/options.js'
import type { AppendOutcome, DeadLetter, Durability, InboundItem, InboundResult, OutboxInput, OutboxRecord, OutboxStats, QuotaPolicy, ReliableStore, ResourceRecord } from './store.js'
import { ackUpTo, appendItems, commitInboundItems, expireRecords, rejectRecord, type StoreTxn } from './store-logic.js'
import {
  checkInboundItem, checkKeyString, checkNow, checkNumber, checkOutboxInput, checkPeer, checkQuota,
  DEFAULT_DEDUP_WINDOW, DEFAULT_MAX_DEAD_LETTERS, LIMITS
} from './store-rules.js'
import { FORMAT_VERSION, LmdbTxn, migrateFormat2, openDbs, type Dbs } from './lmdb-txn.js'

export interface LmdbStoreOptions {
  /** @default 'sync' */
  durability?: Durability
  /** Message ids remembered per peer for inbound dedup. @default 10000 */
  dedupWindow?: number
  /** Dead letters kept (oldest evicted first). @default 100000 */
  maxDeadLetters?: number
  /** Initial LMDB map size in bytes (lmdb-js grows it as needed). @default lmdb-js default */
  mapSize?: number
  /** `relaxed` only: background fsync period, bounding what an OS crash can lose. 0 disables. @default 1000 */
  syncIntervalMs?: number
  /**
   * Observer of group commits (metrics): how many writes one LMDB transaction
   * carried and seconds from its first callback to its durable commit.
   */
  onCommit?: (writes: number, seconds: number) => void
}

/** Copies of `xs` sharing one buffer. */
function copyAll (xs: Uint8Array[]): Uint8Array[] {
  let total = 0
  for (const x of xs) total += x.byteLength
  const pool = Buffer.allocUnsafe(total)
  const out: Uint8Array[] = []
  let o = 0
  for (const x of xs) {
    pool.set(x, o)
    out.push(pool.subarray(o, o + x.byteLength))
    o += x.byteLength
  }
  return out
}

export class LmdbStore implements ReliableStore {
  readonly durability: Durability
  readonly dir: string
  readonly #root: RootDatabase
  readonly #dbs: Dbs
  readonly #tx: StoreTxn
  readonly #dedupWindow: number
  readonly #inflight = new Set<Promise<unknown>>()
  #closed = false
  #closing: Promise<void> | undefined
  /** Set when a transaction callback threw half-way: its partial writes may be committed, so stop. */
  #failed: Error | undefined
  #dirty = false
  #syncTimer: NodeJS.Timeout | undefined
  #syncing = false
  onCommit: ((writes: number, seconds: number) => void) | undefined
  /** The transaction whose callbacks are running or committing: writes so far and start (hrtime ns). */
  #group: { writes: number, start: bigint } | undefined

  private constructor (dir: string, durability: Durability, root: RootDatabase, dbs: Dbs, dedupWindow: number, maxDead: number, syncIntervalMs: number) {
    this.dir = dir
    this.durability = durability
    this.#root = root
    this.#dbs = dbs
    this.#dedupWindow = dedupWindow
    this.#tx = new LmdbTxn(dbs, maxDead)
    if (durability === 'relaxed' && syncIntervalMs > 0) {
      this.#syncTimer = setInterval(() => { this.#backgroundSync() }, syncIntervalMs)
      this.#syncTimer.unref()
    }
  }

  /** Open (creating if needed) the store in directory `dir`. */
  static async open (dir: string, options: LmdbStoreOptions = {}): Promise<LmdbStore> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidOptionError('dir', 'must be a non-empty path')
    const durability = enumOption<Durability>('durability', options.durability, ['sync', 'relaxed'], 'sync')
    const dedupWindow = intOption('dedupWindow', options.dedupWindow, DEFAULT_DEDUP_WINDOW, 1)
    const maxDead = intOption('maxDeadLetters', options.maxDeadLetters, DEFAULT_MAX_DEAD_LETTERS, 1)
    const syncIntervalMs = intOption('syncIntervalMs', options.syncIntervalMs, 1000, 0)
    const mapSize = options.mapSize === undefined ? undefined : intOption('mapSize', options.mapSize, 0, 1 << 20)
    let root: RootDatabase
    try {
      mkdirSync(dir, { recursive: true })
      root = open({
        path: dir,
        noSubdir: false, // `dir` is a directory even if its name has a dot
        maxDbs: 16,
        ...(mapSize === undefined ? {} : { mapSize }),
        // See the header: these two lines ARE the durability modes.
        overlappingSync: false,
        noSync: durability === 'relaxed'
      })
    } catch (err) {
      throw new StoreError(`cannot open LMDB store in ${dir}: ${toError(err).message}`, { cause: err })
    }
    try {
      const dbs = openDbs(root)
      const format = dbs.meta.get('format')
      if (format === undefined) await root.transaction(() => dbs.meta.putSync('format', FORMAT_VERSION))
      else if (format === 2) await root.transaction(() => migrateFormat2(dbs))
      else if (format !== FORMAT_VERSION) throw new StoreError(`LMDB store in ${dir} has format ${String(format)}, this version reads format ${FORMAT_VERSION}`)
      const store = new LmdbStore(dir, durability, root, dbs, dedupWindow, maxDead, syncIntervalMs)
      store.onCommit = options.onCommit
      return store
    } catch (err) {
      await root.close().catch(() => {})
      if (err instanceof StoreError) throw err
      throw new StoreError(`cannot open LMDB store in ${dir}: ${toError(err).message}`, { cause: err })
    }
  }

  #check (): void {
    if (this.#closed) throw new StoreClosedError()
    if (this.#failed !== undefined) throw new StoreError('store failed earlier; reopen it', { cause: this.#failed })
  }

  /**
   * Validate synchronously, then run `fn` inside the next group-committed
   * write transaction. Resolves after that transaction's commit (see header).
   */
  #write<T> (validate: () => void, fn: (tx: StoreTxn) => T): Promise<T> {
    try {
      this.#check()
      validate()
    } catch (err) {
      return Promise.reject(err)
    }
    const p = this.#root.transaction(() => {
      if (this.onCommit !== undefined) {
        // lmdb-js runs every callback queued before the writer is free in one transaction; a
        // group starts with the first callback and ends when the first of them resolves.
        if (this.#group === undefined) this.#group = { writes: 0, start: process.hrtime.bigint() }
        this.#group.writes++
      }
      if (this.#failed !== undefined) throw this.#failed
      const tx = this.#tx as LmdbTxn
      tx.writing = true
      try {
        const v = fn(tx)
        tx.flush() // the outbox blocks this callback filled (lmdb-outbox.ts)
        return v
      } catch (err) {
        tx.discard()
        this.#failed = toError(err)
        throw err
      } finally {
        tx.writing = false
      }
    }).then(v => {
      this.#dirty = true
      const g = this.#group
      if (g !== undefined) {
        this.#group = undefined
        this.onCommit?.(g.writes, Number(process.hrtime.bigint() - g.start) / 1e9)
      }
      return v
    }, (err: unknown) => {
      this.#group = undefined
      // Nothing of the failed transaction is on disk: the dedup windows must not remember its ids.
      ;(this.#tx as LmdbTxn).forgetIdWindows()
      if (err instanceof StoreError || err instanceof StoreClosedError) throw err
      throw new StoreError(`LMDB write failed: ${toError(err).message}`, { cause: err })
    })
    this.#inflight.add(p)
    const done = (): void => { this.#inflight.delete(p) }
    p.then(done, done)
    return p
  }

  /** A synchronous read; LMDB failures become StoreError. */
  #read<T> (fn: () => T): T {
    this.#check()
    try {
      return fn()
    } catch (err) {
      if (err instanceof InvalidOptionError) throw err
      throw new StoreError(`LMDB read failed: ${toError(err).message}`, { cause: err })
    }
  }

  append (peer: string, items: OutboxInput[], quota: QuotaPolicy, now: number): Promise<AppendOutcome[]> {
    let own: OutboxInput[] = []
    return this.#write(() => {
      checkPeer(peer)
      checkQuota(quota)
      checkNow(now)
      if (!Array.isArray(items)) throw new InvalidOptionError('items', 'must be an array')
      items.forEach(checkOutboxInput)
      // The rules run later, in the transaction: snapshot the items (and copy the bytes) now,
      // so a caller reusing its buffer or objects after the call cannot change what is stored.
      // One allocation for all of them, not one per message.
      const pool = copyAll(items.map(i => i.bytes))
      own = items.map((i, n) => ({ ...i, bytes: pool[n] as Uint8Array }))
    }, tx => appendItems(tx, peer, own, { ...quota }, now))
  }

  pending (peer: string, afterSeq: number, limit: number): OutboxRecord[] {
    checkPeer(peer)
    checkNumber('afterSeq', afterSeq)
    checkNumber('limit', limit)
    return this.#read(() => (this.#tx as LmdbTxn).after(peer, afterSeq, limit))
  }

  ack (peer: string, upto: number): Promise<number> {
    return this.#write(() => {
      checkPeer(peer)
      checkNumber('upto', upto)
    }, tx => ackUpTo(tx, peer, upto))
  }

  reject (peer: string, seq: number, maxRejections: number, code: string, reason: string, now: number): Promise<number> {
    return this.#write(() => {
      checkPeer(peer)
      checkNumber('seq', seq)
      checkNumber('maxRejections', maxRejections)
      checkNow(now)
    }, tx => rejectRecord(tx, peer, seq, maxRejections, String(code), String(reason), now))
  }

  expire (peer: string, now: number): Promise<OutboxRecord[]> {
    // Senders call this periodically for every peer: when no write is in flight (so the
    // committed state is the whole story and call order is kept), answer "nothing due" from
    // the expiry index without queueing a write transaction.
    try {
      checkPeer(peer)
      checkNow(now)
      if (this.#inflight.size === 0 && this.#read(() => (this.#tx as LmdbTxn).expiredSeqs(peer, now, 1)).length === 0) return Promise.resolve([])
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#write(() => {
      checkPeer(peer)
      checkNow(now)
    }, tx => expireRecords(tx, peer, now))
  }

  outboxStats (peer: string): OutboxStats {
    checkPeer(peer)
    return this.#read(() => {
      const tx = this.#tx as LmdbTxn
      const s = tx.outState(peer)
      return { count: s.count, bytes: s.bytes, firstSeq: tx.oldestSeq(peer) ?? 0, lastSeq: s.lastSeq }
    })
  }

  peersWithPending (): string[] {
    return this.#read(() => (this.#tx as LmdbTxn).peersWithPending())
  }

  pendingStats (): Array<{ peer: string, count: number, bytes: number }> {
    return this.#read(() => (this.#tx as LmdbTxn).pendingStats())
  }

  deadLetters (peer?: string, limit = Infinity): DeadLetter[] {
    if (peer !== undefined) checkPeer(peer)
    checkNumber('limit', limit)
    return this.#read(() => (this.#tx as LmdbTxn).deadLetters(peer, limit))
  }

  deadLetterBody (peer: string, seq: number): Uint8Array | undefined {
    checkPeer(peer)
    return this.#read(() => (this.#tx as LmdbTxn).deadBody(peer, seq))
  }

  purgeDeadLetters (peer: string | undefined, seqs?: number[]): Promise<number> {
    return this.#write(() => {
      if (peer !== undefined) checkPeer(peer)
      if (seqs !== undefined && (!Array.isArray(seqs) || !seqs.every(Number.isSafeInteger))) throw new InvalidOptionError('seqs', 'must be an array of integers')
    }, tx => (tx as LmdbTxn).purgeDead(peer, seqs === undefined ? undefined : [...seqs]))
  }

  receivedSeq (peer: string): number {
    checkPeer(peer)
    return this.#read(() => this.#tx.inState(peer).receivedSeq)
  }

  hasInboundId (peer: string, id: string): boolean {
    checkPeer(peer)
    return this.#read(() => (this.#tx as LmdbTxn).peekId(peer, id))
  }

  commitInbound (peer: string, items: InboundItem[], now: number): Promise<InboundResult> {
    let own: InboundItem[] = []
    return this.#write(() => {
      checkPeer(peer)
      checkNow(now)
      if (!Array.isArray(items)) throw new InvalidOptionError('items', 'must be an array')
      // One pass: check, then snapshot each item (its own bytes) for the rules that run later in
      // the transaction. Explicit fields, not a spread: this runs per drained message (issue 16).
      own = new Array<InboundItem>(items.length)
      for (let n = 0; n < items.length; n++) {
        const i = items[n] as InboundItem
        checkInboundItem(i, n)
        const c: InboundItem = { seq: i.seq, id: i.id, op: i.op }
        if (i.key !== undefined) c.key = i.key
        if (i.version !== undefined) c.version = i.version
        if (i.bytes !== undefined) c.bytes = new Uint8Array(i.bytes)
        own[n] = c
      }
    }, tx => commitInboundItems(tx, peer, own, now, this.#dedupWindow))
  }

  getResource (key: string): ResourceRecord | undefined {
    checkKeyString('key', key, LIMITS.keyBytes)
    return this.#read(() => this.#tx.getResource(key))
  }

  listResources (prefix = '', limit = Infinity): ResourceRecord[] {
    if (typeof prefix !== 'string') throw new InvalidOptionError('prefix', 'must be a string')
    checkNumber('limit', limit)
    return this.#read(() => (this.#tx as LmdbTxn).listResources(prefix, limit))
  }

  /** `relaxed`: flush what was committed since the last flush (mdb_env_sync), off the main thread. */
  #backgroundSync (): void {
    if (!this.#dirty || this.#syncing || this.#closed) return
    this.#dirty = false
    this.#syncing = true
    this.#sync().finally(() => { this.#syncing = false }).catch(() => { this.#dirty = true })
  }

  #sync (): Promise<void> {
    // root.sync(cb) runs mdb_env_sync(env, force=1) in a worker (not in lmdb's typings).
    const root = this.#root as unknown as { sync (cb: (err?: unknown) => void): void }
    return new Promise((resolve, reject) => {
      root.sync(err => { if (err === undefined || err === null) resolve(); else reject(toError(err)) })
    })
  }

  /** Wait for in-flight writes, flush (relaxed), close the environment. Idempotent. */
  close (): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#syncTimer)
    await Promise.allSettled([...this.#inflight])
    let error: unknown
    try {
      if (this.durability === 'relaxed' && this.#failed === undefined) await this.#sync()
    } catch (err) {
      error = err
    }
    try {
      await this.#root.close()
    } catch (err) {
      error ??= err
    }
    if (error !== undefined) throw new StoreError(`closing LMDB store in ${this.dir}: ${toError(error).message}`, { cause: error })
  }
}
