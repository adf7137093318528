/**
 * The commit rule of the cluster's device registry log (registry-store.ts):
 * optimistic concurrency validated by every reader, in log order, as a pure
 * function of the log — so every hub reaches the same verdict for every
 * transaction and their views stay identical.
 *
 * A transaction message at log seq `q`, built on the view at seq `b`, is
 * refused when
 *  - 'lag':      q - b > MAX_LAG (its writer's view was too far behind; the
 *                window below only covers MAX_LAG entries),
 *  - 'dup':      its operation id committed within (q - MAX_LAG, q) (a retry
 *                after an unknown outcome whose first attempt landed after all),
 *  - 'conflict': a transaction committed within (b, q) wrote a key it read,
 *                or a key under a prefix it listed.
 * Window checks filter by seq explicitly, so how lazily a hub prunes does not
 * change any verdict.
 */
import type { DbName } from '../device/cloud/registry-store.js'

/** Log entries a transaction may lag behind the log's end and still commit. */
export const MAX_LAG = 4096

type Key = string | number

/** A transaction message's envelope (msgpack). */
export interface TxnHead {
  /** Format. */
  f: number
  /** Attempt id. */
  i: string
  /** Operation id (the same for every attempt of one transaction). */
  o: string
  /** Log seq of the view it was built on. */
  b: number
  /** Log seqs of the pieces of a large body, in order. */
  parts?: number[]
}

/** What the transaction read and wrote (msgpack; in `body` or in pieces). */
export interface TxnBody {
  /** Keys read (keyOf). */
  r: string[]
  /** Prefixes listed: [db, prefix] (null: the whole database). */
  p: Array<[DbName, string | null]>
  /** Writes: [db, key, 1, value] puts, [db, key, 0] removes. */
  w: Array<[DbName, Key, 0 | 1, unknown?]>
  /** The registry's note (its changes), for the other hubs' watchers. */
  n: unknown
}

/** One string per (database, key); number and string keys never collide. */
export function keyOf (db: DbName, key: Key): string {
  return typeof key === 'number' ? `${db}\u0000n${key}` : `${db}\u0000s${key}`
}

function underPrefix (k: string, db: DbName, prefix: string | null): boolean {
  return prefix === null ? k.startsWith(`${db}\u0000`) : k.startsWith(`${db}\u0000s${prefix}`)
}

/** One committed transaction as the verdict remembers it. */
export interface CommitRecord { seq: number, op: string, keys: string[] }

/** Transactions committed lately: seq, operation and keys written (oldest first). */
export class RecentCommits {
  #list: CommitRecord[] = []
  #head = 0

  add (seq: number, op: string, keys: string[]): void { this.#list.push({ seq, op, keys }) }

  /** The commits not pruned yet, oldest first (a snapshot keeps those a later verdict can look at: registry-snapshot.ts). */
  records (): CommitRecord[] { return this.#list.slice(this.#head) }

  /** Start over from a snapshot's commits (oldest first). */
  load (records: CommitRecord[]): void { this.#list = records.slice(); this.#head = 0 }

  /** True when `op` committed at a seq above `after` (a writer waiting across a snapshot reload). */
  committed (op: string, after: number): boolean {
    for (let i = this.#list.length - 1; i >= this.#head; i--) {
      const c = this.#list[i] as CommitRecord
      if (c.seq <= after) break
      if (c.op === op) return true
    }
    return false
  }

  /** Why the transaction at `q` must not commit, or undefined. */
  refuse (q: number, head: TxnHead, body: TxnBody): 'lag' | 'dup' | 'conflict' | undefined {
    if (!(head.b < q) || q - head.b > MAX_LAG) return 'lag'
    const reads = new Set(body.r)
    for (let i = this.#list.length - 1; i >= this.#head; i--) {
      const c = this.#list[i] as CommitRecord
      if (c.seq <= q - MAX_LAG) break
      if (c.seq >= q) continue
      if (c.op === head.o) return 'dup'
      if (c.seq <= head.b) continue
      for (const k of c.keys) {
        if (reads.has(k)) return 'conflict'
        for (const [db, prefix] of body.p) if (underPrefix(k, db, prefix)) return 'conflict'
      }
    }
    return undefined
  }

  /** Forget commits at or below `seq` (no verdict looks there any more). */
  prune (seq: number): void {
    while (this.#head < this.#list.length && (this.#list[this.#head] as { seq: number }).seq <= seq) this.#head++
    if (this.#head > 1024 && this.#head * 2 > this.#list.length) { this.#list.splice(0, this.#head); this.#head = 0 }
  }
}
