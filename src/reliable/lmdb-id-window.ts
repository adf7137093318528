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
  /** slot → id, for eviction and block writes. */
  slots: Map<number, string>
  /** first / next as committed (or as of the last setInState in this transaction). */
  diskFirst: number
  diskNext: number
}

const blockOf = (slot: number): number => Math.floor(slot / ID_BLOCK)

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
    w = { first: st.idFirst, next: st.idNext, ids: new Map(), slots: new Map(), diskFirst: st.idFirst, diskNext: st.idNext }
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
          w.slots.set(slot, id)
        }
      }
    }
    this.#windows.set(peer, w)
    return w
  }

  /** The cached window, or one built from the committed counters `committed()` reads (cached too). */
  peek (peer: string, committed: () => PeerInState): IdWindow {
    return this.#windows.get(peer) ?? this.begin(peer, committed())
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
    w.ids.set(id, slot)
    w.slots.set(slot, id)
    if (slot >= w.next) w.next = slot + 1
  }

  evict (w: IdWindow, slot: number): void {
    const id = w.slots.get(slot)
    w.slots.delete(slot)
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
        for (let slot = b * ID_BLOCK; slot < end; slot++) ids += (slot === b * ID_BLOCK ? '' : '\u0000') + (w.slots.get(slot) ?? '')
        this.#db.putSync([peer, b], ids)
      }
    }
    w.diskFirst = w.first
    w.diskNext = w.next
  }
}
