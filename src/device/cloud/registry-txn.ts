/**
 * A registry transaction's working copy of devices and models (issue 16,
 * bench/RESULTS.md "Device twins: registry transaction working copy").
 *
 * Upstream reports are group-committed (registry-inbound.ts): one
 * transaction applies every report that queued while the previous one
 * committed — in the twin bench ≈ 100 reports of 10 devices. Each report
 * read its device and model from the store (a msgpack decode of the whole
 * record) and wrote the device back (an encode and a put), so a device was
 * decoded and encoded ≈ 10 times per commit: 9–11 % of the process in the
 * bench profile. Here the first read of a device or model in a transaction
 * decodes it once; later reads in the same transaction get that object;
 * writes are kept and reach the store once per key, when the callback
 * ends (`flush`). The store's contract (registry-store.ts) is unchanged:
 * its transaction sees one put per key with the final value, i.e. the same
 * committed state; a backend's own read tracking (the cluster store's
 * optimistic concurrency) still sees every key's first read.
 *
 * Why no cache across transactions: the working copy lives and dies with
 * one transaction callback, so nothing can go stale (no invalidation by
 * revision or by other registries' commits on a shared store), and the
 * callback may be run again by a shared backend on a fresh copy.
 *
 * Values read here are shared by later reads of the same key in the same
 * transaction, and a value put is encoded only at `flush`: registry code
 * treats values from `tx.get` as read-only and builds a new object for each
 * change (`{ ...d, reported }`, registry-upstream.ts), and never changes an
 * object after `tx.put` — the same rule the memory backend's copies and
 * lmdb-js' encode-at-put made harmless before.
 *
 * Bounded by the transaction itself: one slot per device or model key it
 * touched, dropped when the callback ends. The largest ones (a model change
 * or a resync over every device of a node) already hold all those devices
 * decoded (`entries`), so the kept puts add the new records beside them.
 */
import type { DbName, KvTxn } from './registry-store.js'

type Key = string | number

/** The sub-databases kept in the working copy (the hot ones of a twin report); the others go straight to the store. */
const CACHED: ReadonlySet<DbName> = new Set<DbName>(['devices', 'models'])

interface Slot {
  /** undefined: absent (never stored, or removed in this transaction). */
  value: unknown
  /** Put in this transaction and not yet written to the store. */
  dirty: boolean
}

export interface WorkingTxn extends KvTxn {
  /** Write every kept put to the store (once per key, the last value). Call when the callback ends, also when it throws. */
  flush: () => void
}

/** A working copy over the store transaction `tx` (one per callback run). */
export function workingTxn (tx: KvTxn): WorkingTxn {
  const slots = new Map<DbName, Map<Key, Slot>>()
  const slotsOf = (db: DbName): Map<Key, Slot> => {
    let m = slots.get(db)
    if (m === undefined) { m = new Map(); slots.set(db, m) }
    return m
  }
  const flushDb = (db: DbName, m: Map<Key, Slot>): void => {
    for (const [key, s] of m) {
      if (!s.dirty) continue
      tx.put(db, key, s.value)
      s.dirty = false
    }
  }
  const w: WorkingTxn = {
    get: <T>(db: DbName, key: Key): T | undefined => {
      if (!CACHED.has(db)) return tx.get<T>(db, key)
      const m = slotsOf(db)
      const s = m.get(key)
      if (s !== undefined) return s.value as T | undefined
      const value = tx.get<T>(db, key)
      m.set(key, { value, dirty: false })
      return value
    },
    put: (db, key, value) => {
      if (!CACHED.has(db)) { tx.put(db, key, value); return }
      if (value === undefined) { slotsOf(db).delete(key); tx.put(db, key, value); return } // undefined means absent in a slot: not kept
      slotsOf(db).set(key, { value, dirty: true })
    },
    remove: (db, key) => {
      if (!CACHED.has(db)) { tx.remove(db, key); return }
      slotsOf(db).set(key, { value: undefined, dirty: false }) // a kept put of this key is moot
      tx.remove(db, key)
    },
    entries: <T>(db: DbName, prefix?: string) => {
      const m = slots.get(db)
      if (m !== undefined) flushDb(db, m) // the store's range read then sees this transaction's writes
      return tx.entries<T>(db, prefix)
    },
    flush: () => { for (const [db, m] of slots) flushDb(db, m) }
  }
  if (tx.note !== undefined) w.note = tx.note.bind(tx)
  return w
}
