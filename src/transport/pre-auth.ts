/**
 * Bounds on what an UNAUTHENTICATED peer can make a listener hold (issue 13
 * item 1, DESIGN.md §2 and §9): a cap on concurrent unauthenticated
 * connections, overall and per source address; one deadline from accept to
 * authentication, the same on every transport; and the pre-auth frame limit
 * (a hello of a few KB) that connections apply at their framing layer until
 * the session layer calls `Connection.markAuthenticated()`.
 *
 * One gate is shared by every listener of a hub, because what it protects is
 * shared too: file descriptors, memory and the accept loop. A transport takes
 * a ticket at the earliest point it sees a peer (TCP accept for ws/wss and the
 * WebTransport HTTP/2 fallback, the QUIC handshake for quic:// and HTTP/3),
 * hands it to the connection it builds, and the connection gives it back when
 * it authenticates or closes. Transports are not required to take part: a
 * listener without `preAuth` behaves as before (the plain transport API has no
 * notion of authentication).
 */
import { EdgeFabricError } from '../errors.js'
import { systemClock, type Clock, type TimerHandle } from '../util/clock.js'
import { intOption } from '../util/options.js'
import type { TransportName } from './types.js'

/** Why a pre-auth connection was refused or ended. A closed set: these are metric label values. */
export type PreAuthRefusal =
  /** The listener holds `maxPending` unauthenticated connections. */
  | 'unauth_limit'
  /** This source holds `maxPendingPerSource` unauthenticated connections. */
  | 'unauth_source_limit'
  /** No authentication within `deadlineMs` of accept (idle socket, slow TLS, no hello). */
  | 'hello_deadline'
  /** A frame above `maxFrameSize` before authentication, cut from its header. */
  | 'hello_too_large'
  /** Undecodable or out-of-protocol bytes before authentication. */
  | 'hello_malformed'

export interface PreAuthOptions {
  /** Concurrent unauthenticated connections, all listeners and sources together. @default 512 */
  maxPending?: number
  /** Concurrent unauthenticated connections from one source (an IPv4 address, an IPv6 /64). @default 64 */
  maxPendingPerSource?: number
  /** From accept (TCP accept, or the QUIC handshake) to authentication. @default 5000 */
  deadlineMs?: number
  /** Largest frame accepted before authentication (the hello), checked from the frame header. @default 8192 */
  maxFrameSize?: number
}

export interface PreAuthRefusalEvent {
  reason: PreAuthRefusal
  transport: TransportName
  /** The source key the caps count by (address without port; an IPv6 /64). */
  source: string
  detail?: string
}

/** The deadline from accept to authentication passed. */
export class PreAuthTimeoutError extends EdgeFabricError {
  static readonly code = 'EF_PREAUTH_TIMEOUT'
  constructor (ms: number) {
    super(PreAuthTimeoutError.code, `not authenticated within ${ms} ms of accept`)
  }
}

export interface PreAuthGateInit extends PreAuthOptions {
  clock?: Clock
  /** Every refusal, once per connection. Must not throw (it is called from socket callbacks). */
  onRefused?: (event: PreAuthRefusalEvent) => void
}

/**
 * The key a source is counted by: the address without port; IPv4-mapped IPv6
 * as IPv4; other IPv6 addresses by their /64, which is what one host or site
 * usually gets (counting single v6 addresses would let one host take all slots).
 */
export function sourceKey (remoteAddress: string): string {
  let a = remoteAddress.trim()
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(a)
  if (bracket !== null) a = bracket[1] as string
  else if (/^[^:]+:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(':')) // v4:port
  a = a.replace(/%.*$/, '').toLowerCase() // zone id
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7)
  if (!a.includes(':')) return a
  const [head = '', tail = ''] = a.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  const groups = a.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h
  return groups.slice(0, 4).map(g => g.replace(/^0+(?=.)/, '')).join(':') + '::/64'
}

/** One unauthenticated connection's slot. Every method is idempotent. */
export class PreAuthTicket {
  readonly source: string
  readonly transport: TransportName
  readonly #gate: PreAuthGate
  #timer: TimerHandle | undefined
  readonly #kill: (err: Error) => void
  #onExpire: ((err: Error) => void) | undefined
  #open = true

  /** @internal created by PreAuthGate.admit */
  constructor (gate: PreAuthGate, transport: TransportName, source: string, kill: (err: Error) => void, timer: (t: PreAuthTicket) => TimerHandle) {
    this.#gate = gate
    this.transport = transport
    this.source = source
    this.#kill = kill
    this.#timer = timer(this)
  }

  /** Still holding a slot (neither authenticated nor closed). */
  get open (): boolean { return this.#open }

  /**
   * Also run `fn` when the deadline passes, after the transport's `kill` given
   * to admit() (e.g. the connection built on the socket aborts itself, so it
   * reports why). The kill always runs: a layer on top (TLS, an HTTP/2
   * session) may not let go of the socket when asked to close.
   */
  onExpire (fn: (err: Error) => void): void { this.#onExpire = fn }

  /** The peer authenticated: leave the unauthenticated count, no more deadline. */
  authenticated (): void { this.release() }

  /** The connection ended (or authenticated): free the slot. */
  release (): void {
    if (!this.#open) return
    this.#open = false
    this.#gate.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#gate.released(this)
  }

  /** The connection is being refused for `reason`: report it once, free the slot. */
  fail (reason: PreAuthRefusal, detail?: string): void {
    if (!this.#open) return
    this.#gate.report(reason, this.transport, this.source, detail)
    this.release()
  }

  /** @internal the deadline timer fired. */
  expire (): void {
    if (!this.#open) return
    const err = new PreAuthTimeoutError(this.#gate.deadlineMs)
    this.fail('hello_deadline')
    // The kill first: ending an HTTP/2 session before resetting its socket leaves
    // the socket open (probed, node 20); after the reset, the connection's own
    // handler records why it ended.
    try { this.#kill(err) } catch { /* already gone */ }
    try { this.#onExpire?.(err) } catch { /* the connection is being torn down anyway */ }
  }
}

export class PreAuthGate {
  readonly maxPending: number
  readonly maxPendingPerSource: number
  readonly deadlineMs: number
  readonly maxFrameSize: number
  readonly clock: Clock
  readonly #onRefused: ((e: PreAuthRefusalEvent) => void) | undefined
  readonly #perSource = new Map<string, number>()
  #pending = 0

  constructor (init: PreAuthGateInit = {}) {
    this.maxPending = intOption('preAuth.maxPending', init.maxPending, 512, 1)
    this.maxPendingPerSource = intOption('preAuth.maxPendingPerSource', init.maxPendingPerSource, 64, 1)
    this.deadlineMs = intOption('preAuth.deadlineMs', init.deadlineMs, 5000, 10, 600_000)
    // 64 B is below any real hello; 1 MiB is far above "a few KB".
    this.maxFrameSize = intOption('preAuth.maxFrameSize', init.maxFrameSize, 8192, 64, 1024 * 1024)
    this.clock = init.clock ?? systemClock
    this.#onRefused = init.onRefused
  }

  /** Unauthenticated connections held now. */
  get pending (): number { return this.#pending }

  /** Unauthenticated connections held now from the source of `remoteAddress`. */
  pendingFrom (remoteAddress: string): number { return this.#perSource.get(sourceKey(remoteAddress)) ?? 0 }

  /**
   * Take a slot for a new peer, or refuse it (reported, returns undefined: the
   * caller closes the socket at once). `kill` runs if the deadline passes
   * first; it must end the connection for sure (e.g. a TCP reset).
   */
  admit (transport: TransportName, remoteAddress: string, kill: (err: Error) => void): PreAuthTicket | undefined {
    const source = sourceKey(remoteAddress)
    if (this.#pending >= this.maxPending) {
      this.report('unauth_limit', transport, source)
      return undefined
    }
    const n = this.#perSource.get(source) ?? 0
    if (n >= this.maxPendingPerSource) {
      this.report('unauth_source_limit', transport, source)
      return undefined
    }
    this.#pending++
    this.#perSource.set(source, n + 1)
    return new PreAuthTicket(this, transport, source, kill, t => this.clock.setTimeout(() => t.expire(), this.deadlineMs))
  }

  /** Report a refusal that happened outside a ticket (e.g. before a source was known). */
  report (reason: PreAuthRefusal, transport: TransportName, source: string, detail?: string): void {
    if (this.#onRefused === undefined) return
    const e: PreAuthRefusalEvent = { reason, transport, source }
    if (detail !== undefined) e.detail = detail
    try { this.#onRefused(e) } catch { /* observers must not break the accept path */ }
  }

  /** @internal a ticket gave its slot back. */
  released (t: PreAuthTicket): void {
    this.#pending--
    const n = (this.#perSource.get(t.source) ?? 1) - 1
    if (n <= 0) this.#perSource.delete(t.source)
    else this.#perSource.set(t.source, n)
  }
}

/** End a TCP socket for sure: a reset (RST) where Node offers it, else destroy(). */
export function resetSocket (socket: { destroy: () => void, resetAndDestroy?: () => void, destroyed?: boolean }): void {
  try {
    if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy()
    else socket.destroy()
  } catch {
    socket.destroy()
  }
}
