/**
 * CONNECT credential checks for the embedded broker (DESIGN.md §9, issue 13
 * item 8). scrypt costs tens of ms on the libuv thread pool, so a flood of
 * wrong passwords used to delay a real device's first login by seconds.
 *
 *  - A successful check is cached for `ttlMs` keyed by (username,
 *    sha256(password), stored hash): a rotated or revoked credential misses
 *    the cache at once. Failed checks are cached the same way.
 *  - Checks wait in three queues (round-robin over usernames inside each), served in order: known-good (this
 *    username+password succeeded within `knownGoodMs`), clean (neither the
 *    source address nor the username has recent failures, and the source has
 *    no other check pending), suspect. At most
 *    `maxConcurrent` run at once; a suspect username over its failure limit
 *    and a failing source get one check at a time per username in the suspect
 *    queue, so a targeted flood costs one thread, not all.
 *  - A source address with `maxFailuresPerSource` failures within
 *    `failureWindowMs` is refused without any check until the window ends.
 *    Usernames are never locked out (that would let anyone lock out a real
 *    device): they only drop to the suspect queue.
 *  - The queue is bounded (`maxQueued`) and every wait has a deadline
 *    (`queueTimeoutMs`); beyond either, CONNECT gets "server unavailable".
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Clock, TimerHandle } from '../../util/clock.js'
import { verifySecret } from '../credentials.js'
import type { CredentialIndex, Principal } from './acl.js'

export interface AuthLimits {
  /** scrypt checks running at once. @default 4 */
  maxConcurrent: number
  /** Checks waiting for a slot; beyond: 'busy'. @default 256 */
  maxQueued: number
  /** Longest wait for a slot. @default 10000 */
  queueTimeoutMs: number
  /** Window over which failures are counted. @default 60000 */
  failureWindowMs: number
  /** Failures from one source address within the window before it is refused outright. @default 20 */
  maxFailuresPerSource: number
  /** Failures for one username within the window before its checks are serialised in the suspect queue. @default 5 */
  maxFailuresPerUsername: number
  /** How long a successful (username, password) stays "known good" for priority. @default 86400000 */
  knownGoodMs: number
}

export const DEFAULT_AUTH_LIMITS: Readonly<AuthLimits> = Object.freeze({
  maxConcurrent: 4, maxQueued: 256, queueTimeoutMs: 10_000, failureWindowMs: 60_000, maxFailuresPerSource: 20, maxFailuresPerUsername: 5, knownGoodMs: 86_400_000
})

/** `blocked`: the source is over its failure limit; `busy`: no slot in time. */
export type AuthOutcome = Principal | undefined | 'busy' | 'blocked'

interface Job { cls: 0 | 1 | 2, username: string, run: () => Promise<void>, timer?: TimerHandle, done: boolean }
interface Window { count: number, since: number }

const MAX_TRACKED = 10_000

export class Authenticator {
  readonly #ok = new Map<string, number>()
  readonly #bad = new Map<string, number>()
  readonly #knownGood = new Map<string, number>()
  readonly #bySource = new Map<string, Window>()
  readonly #byUser = new Map<string, Window>()
  /** Per class, per username FIFO; usernames are served round-robin, so a flood on one username cannot starve the others. */
  readonly #queues: [Map<string, Job[]>, Map<string, Job[]>, Map<string, Job[]>] = [new Map(), new Map(), new Map()]
  readonly #suspectRunning = new Set<string>()
  /** Checks queued or running per source address: a source with one pending is not "clean" for the next. */
  readonly #pendingBySource = new Map<string, number>()
  readonly limits: AuthLimits
  #running = 0
  #queued = 0

  constructor (readonly index: CredentialIndex, readonly clock: Clock, readonly ttlMs = 60_000, readonly maxCache = 10_000, limits: Partial<AuthLimits> = {}) {
    this.limits = { ...DEFAULT_AUTH_LIMITS, ...limits }
  }

  /** Recent failures of a source address (status, tests). */
  failures (source: string): number { return this.#window(this.#bySource, source)?.count ?? 0 }

  async authenticate (username: string | undefined, password: Buffer | undefined, source = ''): Promise<AuthOutcome> {
    const now = this.clock.now()
    if (this.#blocked(source)) return 'blocked'
    if (username === undefined || username === '' || password === undefined) return undefined
    const pw = password.toString('utf8')
    const digest = createHash('sha256').update(password).digest('base64')
    for (const e of this.index.lookup(username)) {
      if (e.plain !== undefined) {
        if (e.plain.length > 0 && e.plain.length === pw.length && timingSafeEqual(Buffer.from(e.plain), Buffer.from(pw))) return e.principal
        continue
      }
      if (e.hash === undefined) continue
      const key = `${username}\u0000${digest}\u0000${e.hash}`
      if ((this.#ok.get(key) ?? 0) > now) return e.principal
      if ((this.#bad.get(key) ?? 0) > now) continue
      const cls = (this.#knownGood.get(key) ?? 0) > now
        ? 0
        : ((this.#window(this.#bySource, source)?.count ?? 0) === 0 && (this.#pendingBySource.get(source) ?? 0) === 0 && (this.#window(this.#byUser, username)?.count ?? 0) < this.limits.maxFailuresPerUsername ? 1 : 2)
      this.#pendingBySource.set(source, (this.#pendingBySource.get(source) ?? 0) + 1)
      let ok: boolean | 'busy' | 'blocked'
      try {
        // Re-checked when the job gets its slot: failures counted while it waited may have blocked its source.
        ok = await this.#check(cls, username, async () => this.#blocked(source) ? 'blocked' : await verifySecret(pw, e.hash as string))
      } finally {
        const n = (this.#pendingBySource.get(source) ?? 1) - 1
        if (n <= 0) this.#pendingBySource.delete(source); else this.#pendingBySource.set(source, n)
      }
      if (ok === 'busy' || ok === 'blocked') return ok
      const at = this.clock.now()
      remember(ok ? this.#ok : this.#bad, key, at + this.ttlMs, this.maxCache)
      if (ok) {
        remember(this.#knownGood, key, at + this.limits.knownGoodMs, this.maxCache)
        return e.principal
      }
    }
    // Counted whether or not a hash was checked (unknown users cost no scrypt but still count).
    this.#fail(source, username)
    return undefined
  }

  #blocked (source: string): boolean { return (this.#window(this.#bySource, source)?.count ?? 0) >= this.limits.maxFailuresPerSource }

  #fail (source: string, username: string): void {
    for (const [m, k] of [[this.#bySource, source], [this.#byUser, username]] as const) {
      const w = this.#window(m, k) ?? { count: 0, since: this.clock.now() }
      w.count++
      if (m.size >= MAX_TRACKED && !m.has(k)) m.delete(m.keys().next().value as string)
      m.set(k, w)
    }
  }

  #window (m: Map<string, Window>, k: string): Window | undefined {
    const w = m.get(k)
    if (w === undefined) return undefined
    if (this.clock.now() - w.since >= this.limits.failureWindowMs) { m.delete(k); return undefined }
    return w
  }

  #check (cls: 0 | 1 | 2, username: string, fn: () => Promise<boolean | 'blocked'>): Promise<boolean | 'busy' | 'blocked'> {
    if (this.#queued >= this.limits.maxQueued) return Promise.resolve('busy')
    return new Promise(resolve => {
      const job: Job = {
        cls,
        username,
        done: false,
        run: async () => {
          try { resolve(await fn()) } catch { resolve(false) }
        }
      }
      job.timer = this.clock.setTimeout(() => {
        if (job.done) return
        job.done = true
        const q = this.#queues[cls].get(username)
        const i = q?.indexOf(job) ?? -1
        if (q !== undefined && i >= 0) {
          q.splice(i, 1)
          if (q.length === 0) this.#queues[cls].delete(username)
          this.#queued--
        }
        resolve('busy')
      }, this.limits.queueTimeoutMs)
      const q = this.#queues[cls].get(username)
      if (q === undefined) this.#queues[cls].set(username, [job]); else q.push(job)
      this.#queued++
      this.#pump()
    })
  }

  #pump (): void {
    while (this.#running < this.limits.maxConcurrent) {
      const job = this.#next()
      if (job === undefined) return
      job.done = true
      this.clock.clearTimeout(job.timer)
      this.#queued--
      this.#running++
      const serial = job.cls === 2
      if (serial) this.#suspectRunning.add(job.username)
      void job.run().finally(() => {
        this.#running--
        if (serial) this.#suspectRunning.delete(job.username)
        this.#pump()
      })
    }
  }

  #next (): Job | undefined {
    for (let cls = 0; cls < 3; cls++) {
      const m = this.#queues[cls] as Map<string, Job[]>
      for (const [username, q] of m) {
        if (cls === 2 && this.#suspectRunning.has(username)) continue
        const job = q.shift() as Job
        m.delete(username) // re-inserted at the end: round-robin over usernames
        if (q.length > 0) m.set(username, q)
        return job
      }
    }
    return undefined
  }
}

function remember (m: Map<string, number>, key: string, until: number, max: number): void {
  if (m.size >= max && !m.has(key)) m.delete(m.keys().next().value as string)
  m.set(key, until)
}
