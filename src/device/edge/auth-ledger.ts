/**
 * What the MQTT login checks remember about sources and usernames (issue 13
 * item 8): failures per source address, per username and per (username,
 * source) within a window, and which sources logged in successfully. Every
 * map is bounded (oldest entry dropped) and entries expire with their window.
 */
import type { Clock } from '../../util/clock.js'

/** Failure windows and trust tracked at most per this many keys (each map). */
export const MAX_TRACKED = 10_000

/**
 * The key a source address is counted under. An IPv4-mapped IPv6 address is
 * its IPv4 address; any other IPv6 address counts as its /64, the block one
 * host or subscriber usually gets (RFC 6177 §2, RFC 7421): counting single
 * IPv6 addresses would hand an attacker 2^64 fresh "first-time" sources.
 */
export function sourceKey (addr: string | undefined): string {
  if (addr === undefined || addr === '') return ''
  if (addr.startsWith('::ffff:') && addr.includes('.')) return addr.slice(7)
  if (!addr.includes(':')) return addr
  if (addr === '::1') return addr
  const [head = '', tail = ''] = addr.split('%')[0]?.split('::') ?? []
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = addr.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left
  return groups.slice(0, 4).map(g => (g === '' ? '0' : g).toLowerCase().replace(/^0+(?=.)/, '')).join(':') + '::/64'
}

interface Window { count: number, since: number }

/** Counts within a fixed window per key; bounded, expired on read. */
export class FailureWindows {
  readonly #m = new Map<string, Window>()
  constructor (readonly clock: Clock, readonly windowMs: number, readonly max = MAX_TRACKED) {}

  count (k: string): number {
    const w = this.#m.get(k)
    if (w === undefined) return 0
    if (this.clock.now() - w.since >= this.windowMs) { this.#m.delete(k); return 0 }
    return w.count
  }

  add (k: string): void {
    const w = this.count(k) > 0 ? this.#m.get(k) as Window : { count: 0, since: this.clock.now() }
    w.count++
    if (this.#m.size >= this.max && !this.#m.has(k)) this.#m.delete(this.#m.keys().next().value as string)
    this.#m.set(k, w)
  }

  get size (): number { return this.#m.size }
}

/** Failure and success memory of the login checks. */
export class LoginLedger {
  readonly bySource: FailureWindows
  readonly byUser: FailureWindows
  /** Failures of one username from one source: the per-username budget refuses these sources first. */
  readonly byUserSource: FailureWindows
  /** Source → until when a recent successful login makes it "trusted" (cleared by any failure). */
  readonly #good = new Map<string, number>()

  constructor (readonly clock: Clock, windowMs: number, readonly trustMs: number) {
    this.bySource = new FailureWindows(clock, windowMs)
    this.byUser = new FailureWindows(clock, windowMs)
    this.byUserSource = new FailureWindows(clock, windowMs)
  }

  failed (source: string, username: string): void {
    this.bySource.add(source)
    this.byUser.add(username)
    this.byUserSource.add(`${username}\u0000${source}`)
    this.#good.delete(source)
  }

  /** A refusal without a check that still counts against the source (a failing source asking again in parallel). */
  penalize (source: string): void {
    this.bySource.add(source)
    this.#good.delete(source)
  }

  succeeded (source: string): void {
    if (this.#good.size >= MAX_TRACKED && !this.#good.has(source)) this.#good.delete(this.#good.keys().next().value as string)
    this.#good.delete(source) // re-inserted last: the bound drops the longest-unseen source
    this.#good.set(source, this.clock.now() + this.trustMs)
  }

  /** A source that logged in successfully within `trustMs` and has failed nothing within the window since. */
  trusted (source: string): boolean {
    const until = this.#good.get(source)
    if (until === undefined) return false
    if (until <= this.clock.now()) { this.#good.delete(source); return false }
    return this.bySource.count(source) === 0
  }

  userSourceFailures (username: string, source: string): number { return this.byUserSource.count(`${username}\u0000${source}`) }
}
