/**
 * Key-value persistence of the device registry: LMDB (its own environment in
 * `{hub dataDir}/devices`, sub-databases below) or memory. The registry runs
 * every mutation as ONE synchronous callback inside `transaction()`, so a
 * change, its revision bump and the dispatch record of the snapshot it
 * causes commit together (transactional outbox: a crash between the commit
 * and the hand-off to the hub's reliable lane is healed on reopen).
 *
 * Sub-databases (string keys, msgpack values):
 *   meta      'format' → 1; 'revision' → global revision counter; 'log' → [next, first]
 *   models    '{ns}/{name}' → DeviceModel
 *   devices   '{ns}/{name}' → StoredDevice
 *   mappers   '{node}/{name}' → StoredMapper
 *   dispatch  '{node}\u0000{resource}' → Dispatch (messages not yet handed to the lane)
 *   uploads   n (number) → UploadEntry (bounded FIFO log)
 *
 * lmdb-js does not roll a transaction callback back when it throws half-way,
 * so registry callbacks do every check before their first write.
 */
import { mkdirSync } from 'node:fs'
import { open, type Database, type RootDatabase } from 'lmdb'
import { StoreError, toError } from '../../errors.js'

export type DbName = 'meta' | 'models' | 'devices' | 'mappers' | 'dispatch' | 'uploads'
const DB_NAMES: DbName[] = ['meta', 'models', 'devices', 'mappers', 'dispatch', 'uploads']
type Key = string | number

/** Reads and writes inside one transaction (reads see the transaction's own writes). */
export interface KvTxn {
  get<T> (db: DbName, key: Key): T | undefined
  put (db: DbName, key: Key, value: unknown): void
  remove (db: DbName, key: Key): void
  /** Entries in key order as this transaction sees them. */
  entries<T> (db: DbName, prefix?: string): Array<{ key: Key, value: T }>
  /**
   * Shared backends only (cluster mode, src/cluster/registry-store.ts): what the
   * transaction means to other registries on the same store (the registry's
   * changes), handed to the `onCommit` listeners of every registry. Local backends omit it.
   */
  note?: (value: unknown) => void
}

/** One write of a transaction: a put (value) or a remove (value undefined). */
export interface KvWrite { db: DbName, key: Key, value: unknown }

/** A transaction committed on a shared store, as applied to this registry's view. */
export interface SharedCommit {
  writes: KvWrite[]
  /** What the writing registry passed to `KvTxn.note`. */
  note: unknown
  /** Written by this registry (its own transaction() call is about to resolve). */
  local: boolean
}

export interface DeviceKv {
  /** Committed state (outside transactions). */
  get<T> (db: DbName, key: Key): T | undefined
  /** Entries in key order, optionally only keys starting with `prefix` (string keys). */
  entries<T> (db: DbName, prefix?: string): Array<{ key: Key, value: T }>
  /** Number of entries (committed state). */
  count (db: DbName): number
  /**
   * Run `fn` in one write transaction; resolves after the commit (durable per `durability`).
   * A shared backend may run `fn` more than once (optimistic concurrency: a
   * transaction whose reads another writer changed meanwhile runs again on the
   * newer state), so `fn` must not act outside `tx` beyond what it can redo.
   */
  transaction<T> (fn: (tx: KvTxn) => T): Promise<T>
  close (): Promise<void>
  /**
   * Shared backends only (cluster mode): every committed transaction, this
   * registry's own included, in commit order, as it is applied to the view
   * (before the writer's transaction() resolves).
   */
  onCommit?: (listener: (c: SharedCommit) => void) => void
}

export const FORMAT = 1

export class LmdbKv implements DeviceKv {
  readonly #root: RootDatabase
  readonly #dbs: Record<DbName, Database<unknown, Key>>

  private constructor (root: RootDatabase) {
    this.#root = root
    this.#dbs = Object.fromEntries(DB_NAMES.map(n => [n, root.openDB<unknown, Key>(n, {})])) as Record<DbName, Database<unknown, Key>>
  }

  /**
   * Open (creating) the environment in `dir`. `sync`: fsync before a
   * transaction resolves, as the reliable store's `sync` mode
   * (src/reliable/lmdb-store.ts); `relaxed`: committed to the page cache.
   */
  static async open (dir: string, durability: 'sync' | 'relaxed' = 'sync'): Promise<LmdbKv> {
    let root: RootDatabase
    try {
      mkdirSync(dir, { recursive: true })
      root = open({ path: dir, noSubdir: false, maxDbs: 8, overlappingSync: false, noSync: durability === 'relaxed' })
    } catch (err) {
      throw new StoreError(`cannot open the device registry in ${dir}: ${toError(err).message}`, { cause: err })
    }
    const kv = new LmdbKv(root)
    try {
      const f = kv.get<number>('meta', 'format')
      if (f === undefined) await kv.transaction(tx => { tx.put('meta', 'format', FORMAT) })
      else if (f !== FORMAT) throw new StoreError(`device registry in ${dir} has format ${String(f)}, this version reads format ${FORMAT}`)
    } catch (err) {
      await root.close().catch(() => {})
      throw err instanceof StoreError ? err : new StoreError(`cannot open the device registry in ${dir}: ${toError(err).message}`, { cause: err })
    }
    return kv
  }

  get<T> (db: DbName, key: Key): T | undefined {
    return this.#dbs[db].get(key) as T | undefined
  }

  entries<T> (db: DbName, prefix?: string): Array<{ key: Key, value: T }> {
    const range = prefix === undefined ? {} : { start: prefix, end: prefix + '\uffff' }
    const out: Array<{ key: Key, value: T }> = []
    for (const { key, value } of this.#dbs[db].getRange(range)) out.push({ key, value: value as T })
    return out
  }

  count (db: DbName): number {
    return this.#dbs[db].getKeysCount()
  }

  async transaction<T> (fn: (tx: KvTxn) => T): Promise<T> {
    const dbs = this.#dbs
    const tx: KvTxn = {
      get: <V>(db: DbName, key: Key) => dbs[db].get(key) as V | undefined,
      put: (db, key, value) => { dbs[db].putSync(key, value) },
      remove: (db, key) => { dbs[db].removeSync(key) },
      // Inside root.transaction() lmdb-js reads through the write transaction, so this sees earlier writes.
      entries: <V>(db: DbName, prefix?: string) => this.entries<V>(db, prefix)
    }
    try {
      return await this.#root.transaction(() => fn(tx))
    } catch (err) {
      if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('EF_')) throw err
      throw new StoreError(`device registry write failed: ${toError(err).message}`, { cause: err })
    }
  }

  async close (): Promise<void> { await this.#root.close() }
}

/**
 * In-memory backend (no data directory): same semantics, and a callback that
 * throws leaves nothing behind (writes are staged and applied on success).
 */
export class MemoryKv implements DeviceKv {
  readonly #dbs = new Map<DbName, Map<Key, unknown>>(DB_NAMES.map(n => [n, new Map()]))
  #chain: Promise<unknown> = Promise.resolve()

  get<T> (db: DbName, key: Key): T | undefined {
    const v = this.#db(db).get(key)
    return v === undefined ? undefined : structuredClone(v) as T
  }

  entries<T> (db: DbName, prefix?: string): Array<{ key: Key, value: T }> {
    const keys = [...this.#db(db).keys()].filter(k => prefix === undefined || (typeof k === 'string' && k.startsWith(prefix)))
    return sortEntries(keys.map(key => ({ key, value: structuredClone(this.#db(db).get(key)) as T })))
  }

  count (db: DbName): number { return this.#db(db).size }

  transaction<T> (fn: (tx: KvTxn) => T): Promise<T> {
    const run = (): T => {
      const staged = new Map<DbName, Map<Key, unknown>>()
      const stage = (db: DbName): Map<Key, unknown> => { let m = staged.get(db); if (m === undefined) { m = new Map(); staged.set(db, m) } return m }
      const DELETED = Symbol('deleted')
      const tx: KvTxn = {
        get: <V>(db: DbName, key: Key) => {
          const s = staged.get(db)
          if (s?.has(key) === true) { const v = s.get(key); return v === DELETED ? undefined : structuredClone(v) as V }
          return this.get<V>(db, key)
        },
        put: (db, key, value) => { stage(db).set(key, structuredClone(value)) },
        remove: (db, key) => { stage(db).set(key, DELETED) },
        entries: <V>(db: DbName, prefix?: string) => {
          const merged = new Map(this.entries<V>(db, prefix).map(e => [e.key, e.value]))
          for (const [k, v] of staged.get(db) ?? []) {
            if (prefix !== undefined && !(typeof k === 'string' && k.startsWith(prefix))) continue
            if (v === DELETED) merged.delete(k); else merged.set(k, structuredClone(v) as V)
          }
          return sortEntries([...merged].map(([key, value]) => ({ key, value })))
        }
      }
      const result = fn(tx)
      for (const [db, m] of staged) for (const [k, v] of m) { if (v === DELETED) this.#db(db).delete(k); else this.#db(db).set(k, v) }
      return result
    }
    const p = this.#chain.then(run)
    this.#chain = p.catch(() => {})
    return p
  }

  async close (): Promise<void> { await this.#chain }

  #db (db: DbName): Map<Key, unknown> { return this.#dbs.get(db) as Map<Key, unknown> }
}

function sortEntries<T> (list: Array<{ key: Key, value: T }>): Array<{ key: Key, value: T }> {
  return list.sort((x, y) => {
    const a = x.key
    const b = y.key
    if (typeof a === 'number' && typeof b === 'number') return a - b
    return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0
  })
}
