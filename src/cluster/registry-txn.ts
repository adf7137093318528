/**
 * One transaction of the cluster's registry store (registry-store.ts) while
 * its callback runs: writes are staged (nothing reaches the view before the
 * log's verdict), reads see the staged writes first, and every key read and
 * prefix listed is recorded for the commit rule (registry-verdict.ts).
 */
import type { DbName, KvTxn } from '../device/cloud/registry-store.js'
import { keyOf } from './registry-verdict.js'

type Key = string | number

/** A staged remove. */
export const DELETED = Symbol('deleted')

/** The committed view the transaction reads (JetStreamKv). */
export interface KvView {
  get: <T>(db: DbName, key: Key) => T | undefined
  entries: <T>(db: DbName, prefix?: string) => Array<{ key: Key, value: T }>
}

export function stagedTxn (view: KvView, staged: Map<DbName, Map<Key, unknown>>, reads: Set<string>, prefixes: Array<[DbName, string | null]>, note: (v: unknown) => void): KvTxn {
  const stage = (db: DbName): Map<Key, unknown> => { let m = staged.get(db); if (m === undefined) { m = new Map(); staged.set(db, m) } return m }
  return {
    get: <V>(db: DbName, key: Key) => {
      const s = staged.get(db)
      if (s?.has(key) === true) { const v = s.get(key); return v === DELETED ? undefined : structuredClone(v) as V }
      reads.add(keyOf(db, key))
      return view.get<V>(db, key)
    },
    put: (db, key, value) => { stage(db).set(key, structuredClone(value)) },
    remove: (db, key) => { stage(db).set(key, DELETED) },
    entries: <V>(db: DbName, prefix?: string) => {
      prefixes.push([db, prefix ?? null])
      const merged = new Map(view.entries<V>(db, prefix).map(e => [e.key, e.value]))
      for (const [k, v] of staged.get(db) ?? []) {
        if (prefix !== undefined && !(typeof k === 'string' && k.startsWith(prefix))) continue
        if (v === DELETED) merged.delete(k); else merged.set(k, structuredClone(v) as V)
      }
      return sortKeys([...merged.keys()]).map(key => ({ key, value: merged.get(key) as V }))
    },
    note
  }
}

/** Key order of every DeviceKv: numbers numeric, strings lexicographic (as LMDB). */
export function sortKeys (keys: Key[]): Key[] {
  return keys.sort((a, b) => {
    if (typeof a === 'number' && typeof b === 'number') return a - b
    return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0
  })
}
