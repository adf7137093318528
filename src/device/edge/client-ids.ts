/**
 * MQTT client ids and persistent sessions belong to principals (issue 13
 * items 2 and 9). Before, any authenticated device could CONNECT with
 * another device's client id: aedes closed the victim's connection ("session
 * takeover", MQTT 3.1.1 §3.1.4) and, with clean=false, handed the attacker
 * the victim's queued messages.
 *
 * Rules, checked after the credential check and before aedes takes over:
 *  1. A client id equal to a known username or device id, or prefixed by one
 *     followed by `/` or `:` (`default/t1`, `default/t1:probe`), is reserved
 *     for that principal. Device names are DNS-1123 labels, so neither
 *     separator can be part of another device's id.
 *  2. An id a live connection holds is refused to any other principal (no
 *     kick-off), and a persistent session's id to any principal but its
 *     owner (recorded in the broker store, survives restarts).
 *  3. An empty client id (the broker assigns one) is always fine.
 *  4. Quota: at most `maxSessionsPerPrincipal` persistent sessions per
 *     principal; sessions offline for `sessionExpiryMs` are wiped.
 */
import type { Clock, TimerHandle } from '../../util/clock.js'
import type { CredentialIndex, Principal } from './acl.js'
import type { LmdbPersistence } from './broker-persistence.js'

export interface SessionLimits {
  /** Persistent (clean=false) sessions one principal may hold. @default 4 */
  maxSessionsPerPrincipal: number
  /** Packets queued for one offline client id; newer ones are dropped. @default 1000 */
  maxQueuedPerClient: number
  /** A persistent session offline this long is wiped. @default 604800000 (7 days) */
  sessionExpiryMs: number
}

export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({ maxSessionsPerPrincipal: 4, maxQueuedPerClient: 1000, sessionExpiryMs: 7 * 86_400_000 })

export type ClientIdRefusal = 'reserved' | 'in-use' | 'owned' | 'quota'

function keysOf (p: Principal): string[] {
  return p.kind === 'device' ? [p.device, p.username] : [p.username]
}

export class ClientIds {
  /** client id → the live connection holding it (`conn` tells a same-principal takeover's old connection from the new one). */
  readonly #live = new Map<string, { username: string, conn: object }>()
  #sweep: TimerHandle | undefined
  #closed = false

  constructor (readonly index: CredentialIndex, readonly persistence: LmdbPersistence, readonly clock: Clock, readonly limits: SessionLimits, readonly onExpired: (clientId: string) => void = () => {}) {
    persistence.maxQueuedPerClient = limits.maxQueuedPerClient
    this.#schedule()
  }

  /** Why `p` may not use `clientId` (undefined: it may). `assigned`: the broker made the id up. */
  check (clientId: string, assigned: boolean, clean: boolean, p: Principal): ClientIdRefusal | undefined {
    if (assigned) return undefined
    const mine = keysOf(p)
    const live = this.#live.get(clientId)
    if (live !== undefined && live.username !== p.username) return 'in-use'
    const owner = this.persistence.sessionOwners.get(clientId)
    if (owner !== undefined && owner.owner !== p.username) return 'owned'
    for (const key of reservedKeys(clientId)) {
      if (mine.includes(key)) break
      if (this.index.owns(key)) return 'reserved'
    }
    if (!clean && owner === undefined) {
      let n = 0
      for (const o of this.persistence.sessionOwners.values()) if (o.owner === p.username) n++
      if (n >= this.limits.maxSessionsPerPrincipal) return 'quota'
    }
    return undefined
  }

  /** A client completed CONNECT with `clientId`. */
  async connected (clientId: string, clean: boolean, p: Principal, conn: object): Promise<void> {
    this.#live.set(clientId, { username: p.username, conn })
    if (clean) {
      if (this.persistence.sessionOwners.has(clientId)) await this.persistence.removeSessionOwner(clientId)
    } else {
      await this.persistence.putSessionOwner(clientId, { owner: p.username, lastSeen: this.clock.now() })
    }
  }

  async disconnected (clientId: string, conn: object): Promise<void> {
    // Only the holder's own disconnect counts: a refused connection with the same id must not extend the session.
    if (this.#live.get(clientId)?.conn !== conn) return
    this.#live.delete(clientId)
    const o = this.persistence.sessionOwners.get(clientId)
    if (o !== undefined && !this.#closed) await this.persistence.putSessionOwner(clientId, { ...o, lastSeen: this.clock.now() })
  }

  /** Wipe persistent sessions offline for longer than `sessionExpiryMs`. Returns how many. */
  async expire (): Promise<number> {
    const cutoff = this.clock.now() - this.limits.sessionExpiryMs
    let n = 0
    for (const [id, o] of [...this.persistence.sessionOwners]) {
      if (o.lastSeen > cutoff || this.#live.has(id)) continue
      await this.persistence.removeSession(id)
      this.onExpired(id)
      n++
    }
    return n
  }

  close (): void {
    this.#closed = true
    this.clock.clearTimeout(this.#sweep)
  }

  #schedule (): void {
    if (this.#closed) return
    const every = Math.max(1000, Math.min(3_600_000, Math.floor(this.limits.sessionExpiryMs / 10)))
    this.#sweep = this.clock.setTimeout(() => {
      this.expire().catch(() => {}).finally(() => this.#schedule())
    }, every)
  }
}

/** `a/b:c/d` → `a`, `a/b`, `a/b:c`, `a/b:c/d`: every prefix ending before a `/` or `:`, and the id itself. */
function * reservedKeys (clientId: string): Generator<string> {
  for (let i = 0; i < clientId.length; i++) {
    const ch = clientId[i]
    if (ch === '/' || ch === ':') yield clientId.slice(0, i)
  }
  yield clientId
}
