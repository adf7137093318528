/**
 * CONNECT credential checks for the embedded broker (DESIGN.md §9, issue 13
 * item 8: "failures limited per source and per username, and known-good
 * credentials served first"). scrypt costs tens of ms on the libuv pool, so a
 * wrong-password flood used to delay a real device's first login by seconds.
 *
 *  - Verified credentials are remembered for `knownGoodMs` under an HMAC of
 *    (username, stored hash, password) with a per-process random key: a known
 *    device's correct password is answered without scrypt, the memory holds
 *    no password or unkeyed digest of one, and a rotated or revoked
 *    credential misses at once (the stored hash is in the key). Wrong
 *    passwords are remembered the same way for `ttlMs` (no second scrypt).
 *  - A source address with `maxFailuresPerSource` failures in the window is
 *    refused without a check ('source-blocked'). Once a username has
 *    `maxFailuresPerUsername` failures, a source that already failed for it
 *    is refused without a check ('username-budget'); a source that never
 *    failed for it still gets its turn, so nobody can lock a device out.
 *  - The checks that do run are scheduled by auth-queue.ts (trusted sources,
 *    then clean, then suspect). All state is bounded (`maxCache`,
 *    `maxQueued`, auth-ledger.ts); each outcome is named for the
 *    `edgefabric_edge_device_mqtt_logins_total` counter.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../../util/clock.js'
import { verifySecret } from '../credentials.js'
import type { CredentialIndex, Principal } from './acl.js'
import { LoginLedger, sourceKey } from './auth-ledger.js'
import { CheckQueue, type CheckClass } from './auth-queue.js'

export interface AuthLimits {
  /** scrypt checks running at once. @default 4 */
  maxConcurrent: number
  /** Checks waiting for a slot; beyond: 'queue-full'. @default 256 */
  maxQueued: number
  /** Longest wait for a slot. @default 10000 */
  queueTimeoutMs: number
  /** Window over which failures are counted. @default 60000 */
  failureWindowMs: number
  /** Failures from one source address within the window before it is refused outright. @default 20 */
  maxFailuresPerSource: number
  /** Failures for one username within the window before sources that failed for it get no more checks for it. @default 5 */
  maxFailuresPerUsername: number
  /** How long a verified (username, password) is answered without scrypt, and a source stays trusted after a success. @default 86400000 */
  knownGoodMs: number
}

export const DEFAULT_AUTH_LIMITS: Readonly<AuthLimits> = Object.freeze({
  maxConcurrent: 4, maxQueued: 256, queueTimeoutMs: 10_000, failureWindowMs: 60_000, maxFailuresPerSource: 20, maxFailuresPerUsername: 5, knownGoodMs: 86_400_000
})

/** Every way a login check ends: the `outcome` label of the logins counter. */
export type LoginOutcome = 'ok-local' | 'ok-cached' | 'ok-checked' | 'bad-credentials' | 'source-blocked' | 'username-budget' | 'source-pending' | 'queue-full' | 'queue-timeout'

export interface LoginResult { principal?: Principal, outcome: LoginOutcome }

/** `blocked`: refused for its source's or username's failures; `busy`: no slot in time. */
export type AuthOutcome = Principal | undefined | 'busy' | 'blocked'

export class Authenticator {
  /** Per-process key: the caches hold HMACs an attacker reading memory cannot precompute. */
  readonly #key = randomBytes(32)
  readonly #ok = new Map<string, number>()
  readonly #bad = new Map<string, number>()
  readonly #ledger: LoginLedger
  readonly #queue: CheckQueue
  readonly limits: AuthLimits

  constructor (readonly index: CredentialIndex, readonly clock: Clock, readonly ttlMs = 60_000, readonly maxCache = 10_000, limits: Partial<AuthLimits> = {}, random?: (n: number) => number) {
    this.limits = { ...DEFAULT_AUTH_LIMITS, ...limits }
    this.#ledger = new LoginLedger(clock, this.limits.failureWindowMs, this.limits.knownGoodMs)
    this.#queue = new CheckQueue(clock, this.limits, random)
  }

  /** Recent failures of a source address (status, tests). */
  failures (source: string): number { return this.#ledger.bySource.count(sourceKey(source)) }

  /** The older answer shape (twin sync, tests): refusals folded into 'blocked' and 'busy'. */
  async authenticate (username: string | undefined, password: Buffer | undefined, source = ''): Promise<AuthOutcome> {
    const r = await this.check(username, password, source)
    if (r.principal !== undefined) return r.principal
    switch (r.outcome) {
      case 'bad-credentials': return undefined
      case 'source-blocked': case 'username-budget': return 'blocked'
      default: return 'busy'
    }
  }

  async check (username: string | undefined, password: Buffer | undefined, address = ''): Promise<LoginResult> {
    const source = sourceKey(address)
    if (this.#blocked(source)) return { outcome: 'source-blocked' }
    if (username === undefined || username === '' || password === undefined) return { outcome: 'bad-credentials' }
    const pw = password.toString('utf8')
    for (const e of this.index.lookup(username)) {
      if (e.plain !== undefined) {
        if (e.plain.length > 0 && e.plain.length === pw.length && timingSafeEqual(Buffer.from(e.plain), Buffer.from(pw))) return { principal: e.principal, outcome: 'ok-local' }
        continue
      }
      if (e.hash === undefined) continue
      const stored = e.hash
      const mac = createHmac('sha256', this.#key).update(username).update('\u0000').update(stored).update('\u0000').update(password).digest('base64')
      const now = this.clock.now()
      if ((this.#ok.get(mac) ?? 0) > now) {
        remember(this.#ok, mac, this.#ok.get(mac) as number, this.maxCache) // refreshed as most recently used
        this.#ledger.succeeded(source)
        return { principal: e.principal, outcome: 'ok-cached' }
      }
      if ((this.#bad.get(mac) ?? 0) > now) continue
      if (this.#overBudget(username, source)) { this.#ledger.failed(source, username); return { outcome: 'username-budget' } }
      const classify = (): CheckClass | string => this.#blocked(source)
        ? 'source-blocked'
        : this.#overBudget(username, source)
          ? 'username-budget'
          : this.#ledger.trusted(source)
            ? 0
            : this.#ledger.bySource.count(source) === 0 && this.#ledger.byUser.count(username) < this.limits.maxFailuresPerUsername ? 1 : 2
      const ok = await this.#queue.submit(username, source, this.#ledger.bySource.count(source) > 0, classify, async () => await verifySecret(pw, stored))
      if (typeof ok === 'string') {
        // A budget refusal decided while waiting still counts against the source, as does a failing
        // source's second check in parallel: a flood spends its source's budget whether checked or not.
        if (ok === 'username-budget') this.#ledger.failed(source, username)
        if (ok === 'source-pending') this.#ledger.penalize(source)
        return { outcome: ok as LoginOutcome }
      }
      const at = this.clock.now()
      if (ok) {
        remember(this.#ok, mac, at + this.limits.knownGoodMs, this.maxCache)
        this.#ledger.succeeded(source)
        return { principal: e.principal, outcome: 'ok-checked' }
      }
      remember(this.#bad, mac, at + this.ttlMs, this.maxCache)
    }
    // Counted whether or not a hash was checked (unknown users cost no scrypt but still count).
    this.#ledger.failed(source, username)
    return { outcome: 'bad-credentials' }
  }

  #blocked (source: string): boolean { return this.#ledger.bySource.count(source) >= this.limits.maxFailuresPerSource }

  /** The username spent its failure budget and this source is one of those that failed for it. */
  #overBudget (username: string, source: string): boolean {
    return this.#ledger.byUser.count(username) >= this.limits.maxFailuresPerUsername && this.#ledger.userSourceFailures(username, source) > 0
  }
}

function remember (m: Map<string, number>, key: string, until: number, max: number): void {
  m.delete(key)
  if (m.size >= max) m.delete(m.keys().next().value as string)
  m.set(key, until)
}
