/**
 * Injectable time. Timing logic (liveness, backoff, request timeouts, TTL)
 * takes a Clock so tests drive it without sleeping (ManualClock).
 */

export interface TimerHandle { readonly id: number }

export interface Clock {
  /** ms since the epoch. */
  now (): number
  /**
   * Schedule `fn` after `ms`. The system clock's timers keep the process alive,
   * as a running hub or edge should; close() of every component clears them.
   */
  setTimeout (fn: () => void, ms: number): TimerHandle
  clearTimeout (handle: TimerHandle | undefined): void
}

let nextTimer = 0

/** The real clock: Date.now and Node timers. */
export const systemClock: Clock = (() => {
  const timers = new Map<number, NodeJS.Timeout>()
  return {
    now: () => Date.now(),
    setTimeout (fn, ms) {
      const id = ++nextTimer
      const t = setTimeout(() => { timers.delete(id); fn() }, ms)
      timers.set(id, t)
      return { id }
    },
    clearTimeout (handle) {
      if (handle === undefined) return
      const t = timers.get(handle.id)
      if (t !== undefined) { clearTimeout(t); timers.delete(handle.id) }
    }
  }
})()

/** A clock that only moves when told to (`advance`), for deterministic tests. */
export class ManualClock implements Clock {
  #now: number
  #timers = new Map<number, { at: number, fn: () => void, seq: number }>()
  #seq = 0

  constructor (start = 1_700_000_000_000) { this.#now = start }

  now (): number { return this.#now }

  setTimeout (fn: () => void, ms: number): TimerHandle {
    const id = ++nextTimer
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn, seq: ++this.#seq })
    return { id }
  }

  clearTimeout (handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.delete(handle.id)
  }

  /** Number of pending timers. */
  get pending (): number { return this.#timers.size }

  /** Move time forward, firing due timers in order (timers scheduled by timers fire too). */
  advance (ms: number): void {
    const target = this.#now + ms
    for (;;) {
      let nextId: number | undefined
      let next: { at: number, fn: () => void, seq: number } | undefined
      for (const [id, t] of this.#timers) {
        if (t.at <= target && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t
          nextId = id
        }
      }
      if (next === undefined || nextId === undefined) break
      this.#timers.delete(nextId)
      this.#now = next.at
      next.fn()
    }
    this.#now = target
  }
}
