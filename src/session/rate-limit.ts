/**
 * Per-key token buckets with a bounded key map, for logging what hostile
 * peers make us log (issue 13 item 12): every refusal is COUNTED (metrics),
 * but a flood from one source must not flood the logs, and a flood from many
 * sources must not grow the map without bound.
 *
 * Each key gets `burst` tokens, refilled at `perSecond`. `take(key)` says
 * whether to log now and how many events of that key were suppressed since its
 * last logged one (so the next line can say "… and 41 more"). When the map is
 * full, the least recently used key is evicted (Map insertion order, refreshed
 * on use); an evicted key starts again with a full bucket, which at worst lets
 * a few more lines through — the bound on memory is what matters.
 */
import type { Clock } from '../util/clock.js'
import { intOption, numberOption } from '../util/options.js'

export interface RateLimiterOptions {
  /** Events logged back to back per key. @default 5 */
  burst?: number
  /** Refill rate per key, tokens per second. @default 0.2 (one line per 5 s after the burst) */
  perSecond?: number
  /** Keys remembered at most. @default 1024 */
  maxKeys?: number
}

interface Bucket { tokens: number, at: number, suppressed: number }

export interface TakeResult {
  /** Log this event. */
  ok: boolean
  /** Events of this key dropped since the last one that was logged (reported with the next ok). */
  suppressed: number
}

export class KeyedRateLimiter {
  readonly #clock: Pick<Clock, 'now'>
  readonly #burst: number
  readonly #perMs: number
  readonly #maxKeys: number
  readonly #buckets = new Map<string, Bucket>()

  constructor (clock: Pick<Clock, 'now'>, options: RateLimiterOptions = {}) {
    this.#clock = clock
    this.#burst = intOption('burst', options.burst, 5, 1)
    this.#perMs = numberOption('perSecond', options.perSecond, 0.2, 0.000001) / 1000
    this.#maxKeys = intOption('maxKeys', options.maxKeys, 1024, 1)
  }

  /** Keys held now (≤ maxKeys). */
  get size (): number { return this.#buckets.size }

  take (key: string): TakeResult {
    const now = this.#clock.now()
    let b = this.#buckets.get(key)
    if (b === undefined) {
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next()
        if (oldest.done !== true) this.#buckets.delete(oldest.value)
      }
      b = { tokens: this.#burst, at: now, suppressed: 0 }
    } else {
      this.#buckets.delete(key) // re-inserted below: most recently used last
      b.tokens = Math.min(this.#burst, b.tokens + Math.max(0, now - b.at) * this.#perMs)
      b.at = now
    }
    this.#buckets.set(key, b)
    if (b.tokens >= 1) {
      b.tokens -= 1
      const suppressed = b.suppressed
      b.suppressed = 0
      return { ok: true, suppressed }
    }
    b.suppressed++
    return { ok: false, suppressed: b.suppressed }
  }
}
