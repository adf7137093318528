/**
 * Liveness judged on INBOUND traffic only (DESIGN.md §4): any message from the
 * peer proves it alive. When a side hears nothing for `pingAfterMs` it sends a
 * ping; the peer answers with a pong. When it hears nothing for `deadAfterMs`
 * the link is declared dead, which catches half-open links (frozen peer,
 * dropped packets) that the transport itself may not notice for minutes.
 *
 * Defaults per role keep idle traffic to one ping/pong per heartbeat: the
 * dialer pings after 1×heartbeat of silence, the acceptor only after 1.5×
 * (it normally hears the dialer's pings first), and both declare death after
 * 2.5× — detection within 3× heartbeat as required (KubeEdge: 10–20 min).
 *
 * One timer per session, re-armed lazily: touch() only stores a timestamp, so
 * a busy session costs nothing per message.
 *
 * The same ping/pong is the session's RTT sample (issue 16: one mechanism per
 * connection, not a transport ping beside it). An idle session samples once
 * per heartbeat; a busy one, which never falls silent, still pings once per
 * `rttSampleMs` so its RTT does not go stale.
 */
import type { Clock, TimerHandle } from '../util/clock.js'

export interface LivenessOptions {
  clock: Clock
  heartbeatMs: number
  role: 'dialer' | 'acceptor'
  /** Send a ping now. */
  ping: () => void
  /** Nothing heard for deadAfterMs. Called once. */
  dead: (silentMs: number) => void
  /**
   * A busy session (never silent) still pings this often, for its RTT; 0 = never.
   * @default 4 × heartbeatMs for the dialer, 0 for the acceptor (it learns the RTT from the dialer's pings)
   */
  rttSampleMs?: number
  /**
   * Fast failure detection for a BUSY link (issue 17, failover): when inbound traffic that came at
   * least once per `afterMs` stops for `afterMs`, ping at once, and declare the link dead if nothing
   * answers within `answerMs`. A SIGKILLed QUIC hub sends nothing (UDP has no RST), so without this
   * only the heartbeat deadline (2.5 × heartbeat) notices. An idle link is unaffected (no extra
   * traffic); a busy link that pauses costs one ping. `false` disables.
   * @default { afterMs: 1000, answerMs: 2000 } for the dialer, false for the acceptor
   */
  quickProbe?: { afterMs: number, answerMs: number } | false
}

export class Liveness {
  readonly pingAfterMs: number
  readonly deadAfterMs: number
  readonly rttSampleMs: number
  readonly quickProbe: { afterMs: number, answerMs: number } | false
  readonly #o: LivenessOptions
  #lastInbound: number
  /** The last inbound that followed another within quickProbe.afterMs (the link was busy). */
  #lastBusy = -Infinity
  /** A quick probe sent at this time is waiting for an answer. */
  #probeAt: number | undefined
  #lastPing = 0
  #timer: TimerHandle | undefined
  #stopped = false

  constructor (o: LivenessOptions) {
    this.#o = o
    this.pingAfterMs = Math.round(o.heartbeatMs * (o.role === 'dialer' ? 1 : 1.5))
    this.deadAfterMs = Math.round(o.heartbeatMs * 2.5)
    this.rttSampleMs = Math.max(0, Math.round(o.rttSampleMs ?? (o.role === 'dialer' ? o.heartbeatMs * 4 : 0)))
    const q = o.quickProbe ?? (o.role === 'dialer' ? { afterMs: 1000, answerMs: 2000 } : false)
    // Only where it can be faster than the heartbeat deadline.
    this.quickProbe = q !== false && q.afterMs + q.answerMs < this.deadAfterMs ? { afterMs: Math.max(1, q.afterMs), answerMs: Math.max(1, q.answerMs) } : false
    this.#lastInbound = o.clock.now()
    this.#lastPing = this.#lastInbound
    this.#arm(this.quickProbe === false ? this.pingAfterMs : Math.min(this.pingAfterMs, this.quickProbe.afterMs))
  }

  /** Inbound traffic of any kind arrived. */
  touch (): void {
    const now = this.#o.clock.now()
    if (this.quickProbe !== false && now - this.#lastInbound < this.quickProbe.afterMs) this.#lastBusy = now
    this.#lastInbound = now
    this.#probeAt = undefined
  }

  get lastInbound (): number { return this.#lastInbound }

  stop (): void {
    this.#stopped = true
    this.#o.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #arm (ms: number): void {
    if (this.#stopped) return
    this.#timer = this.#o.clock.setTimeout(() => this.#check(), Math.max(1, ms))
  }

  #check (): void {
    if (this.#stopped) return
    const now = this.#o.clock.now()
    const silent = now - this.#lastInbound
    const q = this.quickProbe
    if (silent >= this.deadAfterMs || (q !== false && this.#probeAt !== undefined && now - this.#probeAt >= q.answerMs)) {
      this.#stopped = true
      this.#o.dead(silent)
      return
    }
    if (q !== false && this.#probeAt === undefined && this.#lastBusy === this.#lastInbound && silent >= q.afterMs) {
      // A busy link fell silent: ask now (the answer, or anything else, clears the probe in touch()).
      this.#probeAt = now
      this.#lastPing = now
      this.#o.ping()
      this.#arm(q.answerMs)
      return
    }
    const answered = this.#lastPing <= this.#lastInbound
    const rttDue = this.rttSampleMs > 0 && now - this.#lastPing >= this.rttSampleMs
    if (answered && (silent >= this.pingAfterMs || rttDue)) {
      // one ping per silence: do not ping again until something was heard
      this.#lastPing = now
      this.#o.ping()
    }
    // While a ping is unanswered, look again one ping period later: touch() does
    // not re-arm the timer, so this is when the answer's silence can next run out.
    const nextPing = this.#lastPing <= this.#lastInbound ? this.#lastInbound + this.pingAfterMs : now + this.pingAfterMs
    const nextDead = this.#lastInbound + this.deadAfterMs
    // touch() does not re-arm the timer: with quick probes, look every afterMs so that a link which
    // turned busy is watched, and exactly when a busy link's silence first calls for a probe.
    const nextQuick = q === false ? Infinity : (this.#lastBusy === this.#lastInbound ? this.#lastInbound : now) + q.afterMs
    this.#arm(Math.min(nextPing, nextDead, nextQuick) - now)
  }
}

/**
 * Exponential backoff with full jitter (AWS architecture blog): the delay is
 * uniform in [0, min(cap, base·2^attempt)], so a storm of edges reconnecting
 * after a hub restart spreads out instead of synchronizing.
 */
export class Backoff {
  readonly baseMs: number
  readonly capMs: number
  #attempt = 0
  readonly #random: () => number

  constructor (baseMs = 500, capMs = 30_000, random: () => number = Math.random) {
    this.baseMs = baseMs
    this.capMs = capMs
    this.#random = random
  }

  get attempt (): number { return this.#attempt }

  next (): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    return Math.floor(this.#random() * ceiling)
  }

  reset (): void { this.#attempt = 0 }
}
