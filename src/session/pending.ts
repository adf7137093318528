/**
 * Pending request table: responses are matched by `header.parentId`
 * (DESIGN.md §2) AND by the peer the request was sent to: a request id is no
 * secret (it travels in the clear to the node, and other nodes may learn it),
 * so an answer from any other peer is refused, never taken (issue 13, item 3).
 * Bounded; every entry ends by response, timeout or rejectAll — nothing lingers.
 */
import type { Clock, TimerHandle } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import { EdgeFabricError, RequestTimeoutError } from '../errors.js'

export class TooManyRequestsError extends EdgeFabricError {
  static readonly code = 'EF_TOO_MANY_REQUESTS'
  constructor (limit: number) {
    super(TooManyRequestsError.code, `too many requests in flight (limit ${limit})`)
  }
}

/** The responder answered with operation `error`; `remoteCode` is its code. */
export class RemoteError extends EdgeFabricError {
  static readonly code = 'EF_REMOTE_ERROR'
  readonly remoteCode: string
  readonly response: Envelope
  constructor (remoteCode: string, message: string, response: Envelope) {
    super(RemoteError.code, `remote error ${remoteCode}: ${message}`)
    this.remoteCode = remoteCode
    this.response = response
  }
}

/** What `settle` did with a possible response. */
export type SettleOutcome = 'settled' | 'wrong-peer' | 'none'

interface Entry {
  resolve: (env: Envelope) => void
  reject: (err: Error) => void
  timer: TimerHandle
  started: number
  /** Key of the peer the request went to, so its requests can fail fast when it goes away. */
  peer: string
}

export class PendingRequests {
  readonly #clock: Clock
  readonly #max: number
  readonly #entries = new Map<string, Entry>()

  constructor (clock: Clock, max = 100_000) {
    this.#clock = clock
    this.#max = max
  }

  get size (): number { return this.#entries.size }

  /**
   * Register request `id`; resolves with the response envelope, rejects with
   * RequestTimeoutError, RemoteError (error response) or the rejectAll error.
   * `onSettle` receives the latency in ms (for histograms).
   */
  wait (id: string, peer: string, timeoutMs: number, onSettle?: (ms: number, ok: boolean) => void): Promise<Envelope> {
    if (this.#entries.size >= this.#max) return Promise.reject(new TooManyRequestsError(this.#max))
    return new Promise<Envelope>((resolve, reject) => {
      const started = this.#clock.now()
      const done = (ok: boolean): void => { onSettle?.(this.#clock.now() - started, ok) }
      const timer = this.#clock.setTimeout(() => {
        this.#entries.delete(id)
        done(false)
        reject(new RequestTimeoutError(id, timeoutMs))
      }, timeoutMs)
      this.#entries.set(id, {
        resolve: env => { done(true); resolve(env) },
        reject: err => { done(false); reject(err) },
        timer,
        started,
        peer
      })
    })
  }

  /**
   * Offer a possible response from `peer` (the authenticated sender, never a
   * claim in the envelope). `settled`: it answered a request sent to `peer`;
   * `wrong-peer`: a request with that id is pending for ANOTHER peer — the
   * answer is refused and the request keeps waiting for its own node;
   * `none`: no pending request has that id.
   */
  settle (env: Envelope, peer: string): SettleOutcome {
    const id = env.header.parentId
    if (id === undefined) return 'none'
    const entry = this.#entries.get(id)
    if (entry === undefined) return 'none'
    if (entry.peer !== peer) return 'wrong-peer'
    this.#entries.delete(id)
    this.#clock.clearTimeout(entry.timer)
    if (env.router.operation === 'error') {
      const c = env.content as { code?: unknown, message?: unknown } | undefined
      entry.reject(new RemoteError(typeof c?.code === 'string' ? c.code : 'EF_UNKNOWN',
        typeof c?.message === 'string' ? c.message : 'error response', env))
    } else {
      entry.resolve(env)
    }
    return 'settled'
  }

  /** Fail a request that could not be sent. */
  fail (id: string, err: Error): void {
    const entry = this.#entries.get(id)
    if (entry === undefined) return
    this.#entries.delete(id)
    this.#clock.clearTimeout(entry.timer)
    entry.reject(err)
  }

  /** Reject every pending request (of one peer, or all). */
  rejectAll (err: Error, peer?: string): void {
    for (const [id, entry] of this.#entries) {
      if (peer !== undefined && entry.peer !== peer) continue
      this.#entries.delete(id)
      this.#clock.clearTimeout(entry.timer)
      entry.reject(err)
    }
  }
}
