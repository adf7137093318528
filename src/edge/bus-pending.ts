/**
 * The bus's pending-request map: request id → waiting requester, each with a
 * timeout on the injected clock. Bounded (maxPending) and cleaned on every
 * exit path (response, timeout, delivery failure, module/bus close), so a
 * lost response costs one entry for at most its timeout.
 *
 * Recently finished ids (answered or timed out) are remembered in a small
 * bounded set so a late or duplicate response is recognised and dropped
 * instead of being routed to a module as if it were a new message.
 */
import type { Clock, TimerHandle } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import { ModuleBusError, RequestTimeoutError } from '../errors.js'

interface Pending {
  module: string
  resolve: (env: Envelope) => void
  reject: (err: Error) => void
  timer: TimerHandle | undefined
  /** Only a request to a single module fails when that module drops it; a group may still answer. */
  single: boolean
}

/** How many finished ids to remember for late-response detection. */
const FINISHED_IDS = 4096

export class PendingRequests {
  readonly #clock: Clock
  readonly #max: number
  readonly #map = new Map<string, Pending>()
  readonly #finished = new Set<string>()

  constructor (clock: Clock, max: number) {
    this.#clock = clock
    this.#max = max
  }

  get size (): number { return this.#map.size }

  has (id: string): boolean { return this.#map.has(id) }

  /** True if `id` was answered or timed out recently. */
  finished (id: string): boolean { return this.#finished.has(id) }

  /**
   * Register request `id` from `module`. Throws ModuleBusError for a
   * duplicate id or a full map (before anything is sent). `fail` rejects this
   * very entry (delivery failed) and is a no-op once it has settled, even if
   * the id was reused since.
   */
  add (id: string, module: string, single: boolean, timeoutMs: number): { promise: Promise<Envelope>, fail: (err: unknown) => void } {
    if (this.#map.has(id)) throw new ModuleBusError('duplicate-request', `request ${id} is already pending`)
    if (this.#map.size >= this.#max) throw new ModuleBusError('too-many-pending', `${this.#map.size} requests pending (maxPendingRequests)`)
    let p!: Pending
    const promise = new Promise<Envelope>((resolve, reject) => {
      p = { module, resolve, reject, timer: undefined, single }
    })
    p.timer = this.#clock.setTimeout(() => {
      if (this.#map.get(id) !== p) return
      this.#map.delete(id)
      this.#finish(id)
      p.reject(new RequestTimeoutError(id, timeoutMs))
    }, timeoutMs)
    this.#map.set(id, p)
    const fail = (err: unknown): void => {
      if (this.#map.get(id) !== p) return
      this.#take(id)
      p.reject(err as Error)
    }
    return { promise, fail }
  }

  /** Resolve request `id` with `resp`; false if it is not pending. */
  resolve (id: string, resp: Envelope): boolean {
    const p = this.#take(id)
    if (p === undefined) return false
    this.#finish(id)
    p.resolve(resp)
    return true
  }

  /** Reject request `id`; with `singleOnly`, only a request addressed to one module. False if not rejected. */
  reject (id: string, err: Error, singleOnly = false): boolean {
    const p = this.#map.get(id)
    if (p === undefined || (singleOnly && !p.single)) return false
    this.#take(id)
    p.reject(err)
    return true
  }

  /** Reject every request issued by `module`. */
  rejectModule (module: string, makeError: (id: string) => Error): void {
    for (const [id, p] of this.#map) {
      if (p.module === module) { this.#take(id); p.reject(makeError(id)) }
    }
  }

  /** Reject everything (bus close). */
  rejectAll (makeError: (id: string) => Error): void {
    for (const [id, p] of [...this.#map]) { this.#take(id); p.reject(makeError(id)) }
  }

  #take (id: string): Pending | undefined {
    const p = this.#map.get(id)
    if (p === undefined) return undefined
    this.#map.delete(id)
    this.#clock.clearTimeout(p.timer)
    return p
  }

  #finish (id: string): void {
    this.#finished.add(id)
    if (this.#finished.size > FINISHED_IDS) {
      const oldest = this.#finished.values().next().value
      if (oldest !== undefined) this.#finished.delete(oldest)
    }
  }
}
