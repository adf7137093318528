/**
 * The inbound dedup windows of LmdbStore (DESIGN.md §5: "dedup by message id,
 * window persisted"): per peer, the ids of slots idFirst..idNext-1 (the
 * counters live in the `inbox` sub-database), stored in `idblocks` as blocks
 * of ID_BLOCK ids joined by NUL, and mirrored in memory for lookups.
 *
 * Used only inside write transactions: begin() at the start of each inbound
 * transaction (it validates or rebuilds the copy), then has/add/evict, then
 * write() with the counters.
 */
import type { Database } from 'lmdb'
import type { PeerInState } from './store-logic.js'

/**
 * Ids per dedup block. One commit rewrites the block it continues and writes
 * the ones it fills; eviction removes whole blocks. Per message that is a
 * share of one value write instead of ~6 LMDB operations (put id → slot, put
 * slot → id, and at eviction get + remove of both) — the receiver's
 * commitInbound was ≈10 µs/msg of the drain with the per-id layout.
 */
export const ID_BLOCK = 128

/**
 * A peer's dedup window in memory: what `idblocks` holds for slots
 * first..next-1, plus the writes of the current transaction. Trusted only
 * while `first`/`next` equal the committed inbox counters read at the start of
 * each write transaction; otherwise (a commit failed after the callback ran,
 * or the store was reopened) it is rebuilt from disk. Ids are only added with
 * `next` growing and evicted with `first` growing, in the same transaction
 * that writes the counters, so equal counters mean equal windows.
 */
export interface IdWindow {
  first: number
  next: number
  /** id → slot, for hasId. */
  ids: Map<string, number>
  /**
   * slot → id for slots first..next-1: a ring indexed by `slot & mask`
   * (capacity a power of two ≥ next - first, grown when the window outgrows
   * it). A Map here cost a set, a get and a delete per message (issue 16:
   * the id window was ≈1.5 µs/msg of the drain); slots are consecutive, so
   * an array does the same with index arithmetic.
   */
  ring: Array<string | undefined>
  mask: number
  /** first / next as committed (or as of the last setInState in this transaction). */
  diskFirst: number
  diskNext: number
}

const blockOf = (slot: number): number => Math.floor(slot / ID_BLOCK)

const MIN_RING = 1024

/** A power of two ≥ n, at least MIN_RING. */
function ringSize (n: number): number {
  let c = MIN_RING
  while (c < n) c *= 2
  return c
}

function newWindow (first: number, next: number): IdWindow {
  const size = ringSize(next - first + 1)
  return { first, next, ids: new Map(), ring: new Array<string | undefined>(size).fill(undefined), mask: size - 1, diskFirst: first, diskNext: next }
}

/** The id at `slot`, if the slot is inside the window (the ring reuses places of evicted slots). */
export function slotId (w: IdWindow, slot: number): string | undefined {
  return slot >= w.first && slot < w.next ? w.ring[slot & w.mask] : undefined
}

/** Make room for slot `upto` in the ring (copies the live slots into a larger one). */
function fit (w: IdWindow, upto: number): void {
  if (upto - w.first < w.ring.length) return
  const size = ringSize(upto - w.first + 1)
  const ring = new Array<string | undefined>(size).fill(undefined)
  const mask = size - 1
  for (let slot = w.first; slot < w.next; slot++) ring[slot & mask] = w.ring[slot & w.mask]
  w.ring = ring
  w.mask = mask
}

type Key = string | number | Array<string | number>

export class IdWindows {
  readonly #db: Database<string, Key>
  readonly #windows = new Map<string, IdWindow>()

  constructor (db: Database<string, Key>) {
    this.#db = db
  }

  /** Start of an inbound transaction: `st` holds the counters read in it. */
  begin (peer: string, st: PeerInState): IdWindow {
    let w = this.#windows.get(peer)
    if (w !== undefined && w.first === st.idFirst && w.next === st.idNext && w.diskFirst === w.first && w.diskNext === w.next) return w
    w = newWindow(st.idFirst, st.idNext)
    if (st.idNext > st.idFirst) {
      const range = this.#db.getRange({ start: [peer, blockOf(st.idFirst)], end: [peer, blockOf(st.idNext - 1)], inclusiveEnd: true })
      for (const { key, value } of range) {
        const base = (key as [string, number])[1] * ID_BLOCK
        const ids = value.split('\u0000')
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i] as string
          const slot = base + i
          if (id === '' || slot < st.idFirst || slot >= st.idNext) continue
          w.ids.set(id, slot)
          w.ring[slot & w.mask] = id
        }
      }
    }
    this.#windows.set(peer, w)
    return w
  }

  /** The cached window of `peer`, if there is one (else begin() it from the committed counters). */
  cached (peer: string): IdWindow | undefined {
    return this.#windows.get(peer)
  }

  clear (): void { this.#windows.clear() }

  /** The window begin() prepared in this transaction. */
  live (peer: string, writing: boolean): IdWindow {
    const w = this.#windows.get(peer)
    // inState() runs first in every inbound transaction (store-logic commitInboundItems).
    if (w === undefined || !writing) throw new Error('dedup window used outside an inbound write transaction')
    return w
  }

  add (w: IdWindow, id: string, slot: number): void {
    if (slot < w.first) return // below the window: already evicted (never happens: slots are handed out at next)
    fit(w, slot)
    // Slots skipped over (none in practice) must not show ids of older laps of the ring.
    for (let s = w.next; s < slot; s++) w.ring[s & w.mask] = undefined
    w.ids.set(id, slot)
    w.ring[slot & w.mask] = id
    if (slot >= w.next) w.next = slot + 1
  }

  evict (w: IdWindow, slot: number): void {
    const id = slotId(w, slot)
    if (slot >= w.first && slot < w.next) w.ring[slot & w.mask] = undefined
    if (id !== undefined && w.ids.get(id) === slot) w.ids.delete(id)
    if (slot >= w.first) w.first = slot + 1
  }

  /** With the counters: write what changed since the last write. */
  write (peer: string): void {
    const w = this.#windows.get(peer)
    if (w === undefined) return
    // Blocks wholly below the window go; blocks holding slots added since the last write are rewritten.
    for (let b = blockOf(w.diskFirst); b < blockOf(w.first); b++) this.#db.removeSync([peer, b])
    if (w.next > w.diskNext) {
      for (let b = Math.max(blockOf(w.diskNext), blockOf(w.first)); b <= blockOf(w.next - 1); b++) {
        // One string, not an array of strings: msgpack packs it in one go (an array of 128 was
        // most of the commit's CPU in the live profile, which rewrites a partial block each time).
        let ids = ''
        const end = Math.min(w.next, (b + 1) * ID_BLOCK)
        for (let slot = b * ID_BLOCK; slot < end; slot++) ids += (slot === b * ID_BLOCK ? '' : '\u0000') + (slotId(w, slot) ?? '')
        this.#db.putSync([peer, b], ids)
      }
    }
    w.diskFirst = w.first
    w.diskNext = w.next
  }
}
