/**
 * Snapshots of the cluster's device registry log (registry-store.ts, DESIGN.md
 * §10b): what a snapshot holds, its options, its error, and its encoding.
 *
 * A snapshot is the deterministic view at log seq S — a pure function of the
 * log's first S entries, the same on every hub — so a hub that loads it and
 * applies S+1.. reaches exactly the view and the verdicts of a hub that
 * replayed from seq 1. That needs, besides every database:
 *  - the commits the verdict may still look at (registry-verdict.ts): a
 *    transaction at q > S is judged against commits in (q - MAX_LAG, q), so
 *    the commits with seq > S - MAX_LAG (their keys and operation ids: the
 *    'conflict' and 'dup' rules for a transaction whose base is before S);
 *  - the pieces of large transactions in progress: a piece is used only by a
 *    transaction whose base b < piece seq, and b ≥ q - MAX_LAG > S - MAX_LAG,
 *    so the pieces with seq > S - MAX_LAG.
 * Exactly those (not "whatever a hub had not pruned yet", which depends on how
 * lazily it prunes), so every hub writes byte-identical snapshots for one S
 * and a race between two writers is harmless.
 */
import { createHash } from 'node:crypto'
import { Packr } from 'msgpackr'
import { EdgeFabricError, InvalidOptionError } from '../errors.js'
import type { DbName } from '../device/cloud/registry-store.js'
import { MAX_LAG, type CommitRecord } from './registry-verdict.js'

type Key = string | number

/** Format of the encoded snapshot (in its manifest and its body). */
export const SNAPSHOT_FORMAT = 1

export interface RegistrySnapshotOptions {
  /**
   * Write a snapshot of the registry log every this many log entries (at the
   * seqs that are multiples of it), then purge the log below the older of the
   * two kept snapshots. Start-up replays at most about this many entries after
   * the newest snapshot; the log keeps between 1× and 2× this many entries.
   * 0 turns snapshots off (the log then grows without bound).
   * @default 10000
   */
  snapshotEvery?: number
  /** Bytes per snapshot chunk message (capped at half the server's max_payload). @default 262144 */
  chunkBytes?: number
}

export interface ResolvedSnapshotOptions { snapshotEvery: number, chunkBytes: number }

/** Validated once, then frozen (named by their option path in errors). */
export function resolveSnapshotOptions (o: RegistrySnapshotOptions = {}): Readonly<ResolvedSnapshotOptions> {
  const every = o.snapshotEvery ?? 10_000
  if (!Number.isSafeInteger(every) || every < 0 || (every > 0 && every < 2)) {
    throw new InvalidOptionError('registry.snapshotEvery', `must be 0 (off) or an integer ≥ 2, got ${String(every)}`)
  }
  const chunk = o.chunkBytes ?? 256 * 1024
  if (!Number.isSafeInteger(chunk) || chunk < 1024) throw new InvalidOptionError('registry.chunkBytes', `must be an integer ≥ 1024, got ${String(chunk)}`)
  return Object.freeze({ snapshotEvery: every, chunkBytes: chunk })
}

/** A registry snapshot could not be written, read or used (see `message`; `cause` when there is one). */
export class RegistrySnapshotError extends EdgeFabricError {
  static readonly code = 'EF_REGISTRY_SNAPSHOT'
  constructor (message: string, options?: { cause?: unknown }) {
    super(RegistrySnapshotError.code, message, options)
  }
}

/** The view at log seq `seq`, captured synchronously between two log entries. */
export interface SnapshotState {
  seq: number
  dbs: Array<[DbName, Array<[Key, unknown]>]>
  recent: CommitRecord[]
  parts: Array<[number, Uint8Array]>
}

/**
 * Capture the view right after entry `seq` was applied. Shallow: the view
 * never mutates a stored value in place (it replaces it), so copying the
 * entries (O(keys), no value copy) is enough to freeze the state at `seq`.
 */
export function captureState (seq: number, dbs: Map<DbName, Map<Key, unknown>>, recent: CommitRecord[], parts: Map<number, Uint8Array>): SnapshotState {
  return {
    seq,
    dbs: [...dbs].map(([name, m]) => [name, [...m]]),
    recent: recent.filter(c => c.seq > seq - MAX_LAG),
    parts: [...parts].filter(([s]) => s > seq - MAX_LAG).sort((a, b) => a[0] - b[0])
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false })

export interface Manifest {
  f: number
  /** Log seq of the view. */
  seq: number
  chunks: number
  bytes: number
  /** sha256 (hex) of the concatenated chunks. */
  sha256: string
  /** ms since epoch when written (information only). */
  at: number
}

export function encodeState (s: SnapshotState): Uint8Array {
  // Keys sorted per database: the bytes depend on the view only, never on the insertion
  // order a hub's history left in its Map (replayed vs loaded from an older snapshot).
  const dbs = s.dbs.map(([name, entries]) => [name, [...entries].sort((a, b) => cmpKey(a[0], b[0]))])
  return packr.pack({ f: SNAPSHOT_FORMAT, seq: s.seq, dbs, recent: s.recent.map(c => [c.seq, c.op, c.keys]), parts: s.parts })
}

export function decodeState (bytes: Uint8Array, seq: number): SnapshotState {
  const o = packr.unpack(bytes) as { f: number, seq: number, dbs: SnapshotState['dbs'], recent: Array<[number, string, string[]]>, parts: Array<[number, Uint8Array]> }
  if (o.f !== SNAPSHOT_FORMAT) throw new RegistrySnapshotError(`registry snapshot at ${seq} has format ${String(o.f)}, this version reads ${SNAPSHOT_FORMAT}`)
  if (o.seq !== seq) throw new RegistrySnapshotError(`registry snapshot body says seq ${o.seq}, its manifest ${seq}`)
  return { seq, dbs: o.dbs, recent: o.recent.map(([s, op, keys]) => ({ seq: s, op, keys })), parts: o.parts.map(([s, b]) => [s, Uint8Array.from(b)]) }
}

export function sha256 (chunks: Uint8Array[]): string {
  const h = createHash('sha256')
  for (const c of chunks) h.update(c)
  return h.digest('hex')
}

export function packManifest (m: Manifest): Uint8Array { return packr.pack(m) }
export function unpackManifest (b: Uint8Array): Manifest { return packr.unpack(b) as Manifest }

function cmpKey (a: Key, b: Key): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a !== typeof b) return typeof a === 'number' ? -1 : 1
  return a < b ? -1 : a > b ? 1 : 0
}
