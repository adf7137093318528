/**
 * Who may connect to the embedded broker and which topics they may touch
 * (DESIGN.md §8, §9). Credentials arrive from the cloud as scrypt hashes only
 * (device credentials inside snapshots, mapper grants), plus an optional
 * locally configured list for offline bootstrap / demos.
 *
 *  - device principal: only its own `$hw/events/device/{ns}/{name}/…` topics
 *    (publish and subscribe) and publishing upload records;
 *  - mapper principal: the topics of every granted device, its node's
 *    `$hw/events/node/{node}/membership/…` topics, upload records;
 *  - local principal: the devices listed, or everything with `'*'`.
 * A subscription filter is allowed only when its literal prefix is an
 * allowed prefix, so wildcards cannot reach other devices.
 */
import { createHash } from 'node:crypto'
import type { Clock } from '../../util/clock.js'
import { verifySecret } from '../credentials.js'
import { devicePrefix, NODE_PREFIX, UPLOAD_PREFIX, UPLOAD_RECORDS } from './topics.js'

export type Principal =
  | { kind: 'device', username: string, device: string }
  | { kind: 'mapper', username: string, nodeId: string, devices: ReadonlySet<string> }
  | { kind: 'local', username: string, devices: ReadonlySet<string> | '*' }

/** A locally configured credential (edge option `devices.credentials`). */
export interface LocalCredential {
  username: string
  /** Plain secret (demo) or `passwordHash` (scrypt, as the cloud issues). One is required. */
  password?: string
  passwordHash?: string
  /** Device ids `{ns}/{name}` this credential may act for, or '*' for all topics. */
  devices: string[] | '*'
}

interface Entry { hash?: string, plain?: string, principal: Principal }

/** username → credential entries, kept current from snapshots, grants and local config. */
export class CredentialIndex {
  readonly #byDevice = new Map<string, Array<{ username: string, passwordHash: string }>>()
  readonly #grants = new Map<string, { username: string, passwordHash: string, nodeId: string, devices: string[] }>()
  readonly #local: LocalCredential[]
  #index: Map<string, Entry[]> | undefined

  constructor (local: LocalCredential[] = []) { this.#local = local }

  setDevice (id: string, creds: Array<{ username: string, passwordHash: string }>): void { this.#byDevice.set(id, creds); this.#index = undefined }
  removeDevice (id: string): void { this.#byDevice.delete(id); this.#index = undefined }
  setGrant (name: string, g: { username: string, passwordHash: string, nodeId: string, devices: string[] }): void { this.#grants.set(name, g); this.#index = undefined }
  removeGrant (name: string): void { this.#grants.delete(name); this.#index = undefined }

  lookup (username: string): Entry[] {
    if (this.#index === undefined) this.#index = this.#build()
    return this.#index.get(username) ?? []
  }

  #build (): Map<string, Entry[]> {
    const m = new Map<string, Entry[]>()
    const add = (u: string, e: Entry): void => { const l = m.get(u) ?? []; l.push(e); m.set(u, l) }
    for (const [device, creds] of this.#byDevice) for (const c of creds) add(c.username, { hash: c.passwordHash, principal: { kind: 'device', username: c.username, device } })
    for (const g of this.#grants.values()) add(g.username, { hash: g.passwordHash, principal: { kind: 'mapper', username: g.username, nodeId: g.nodeId, devices: new Set(g.devices) } })
    for (const l of this.#local) {
      const principal: Principal = { kind: 'local', username: l.username, devices: l.devices === '*' ? '*' : new Set(l.devices) }
      add(l.username, l.passwordHash !== undefined ? { hash: l.passwordHash, principal } : { plain: l.password ?? '', principal })
    }
    return m
  }
}

/**
 * Verifies CONNECT credentials. scrypt costs tens of ms, so a successful
 * verification is cached for `ttlMs` keyed by (username, sha256(password),
 * stored hash): a changed or revoked credential misses the cache at once.
 * Failed checks are cached the same way (a client retrying a wrong password
 * costs nothing), and at most `maxConcurrent` scrypt checks run at once —
 * beyond that a CONNECT is answered "server unavailable" ('busy') instead of
 * queueing unbounded work on the thread pool.
 */
export class Authenticator {
  readonly #ok = new Map<string, number>()
  readonly #bad = new Map<string, number>()
  #running = 0
  constructor (readonly index: CredentialIndex, readonly clock: Clock, readonly ttlMs = 60_000, readonly maxCache = 10_000, readonly maxConcurrent = 8) {}

  async authenticate (username: string | undefined, password: Buffer | undefined): Promise<Principal | undefined | 'busy'> {
    if (username === undefined || username === '' || password === undefined) return undefined
    const pw = password.toString('utf8')
    const digest = createHash('sha256').update(password).digest('base64')
    const now = this.clock.now()
    for (const e of this.index.lookup(username)) {
      if (e.plain !== undefined) {
        if (e.plain.length > 0 && e.plain === pw) return e.principal
        continue
      }
      if (e.hash === undefined) continue
      const key = `${username}\u0000${digest}\u0000${e.hash}`
      if ((this.#ok.get(key) ?? 0) > now) return e.principal
      if ((this.#bad.get(key) ?? 0) > now) continue
      if (this.#running >= this.maxConcurrent) return 'busy'
      this.#running++
      let ok: boolean
      try { ok = await verifySecret(pw, e.hash) } finally { this.#running-- }
      remember(ok ? this.#ok : this.#bad, key, now + this.ttlMs, this.maxCache)
      if (ok) return e.principal
    }
    return undefined
  }
}

function remember (m: Map<string, number>, key: string, until: number, max: number): void {
  if (m.size >= max) m.delete(m.keys().next().value as string)
  m.set(key, until)
}

function allowedPrefixes (p: Principal): string[] | '*' {
  if (p.kind === 'device') {
    const [ns, name] = p.device.split('/') as [string, string]
    return [devicePrefix(ns, name)]
  }
  if (p.kind === 'local' && p.devices === '*') return '*'
  const out: string[] = []
  for (const id of p.devices as ReadonlySet<string>) {
    const [ns, name] = id.split('/') as [string, string]
    out.push(devicePrefix(ns, name))
  }
  if (p.kind === 'mapper') out.push(`${NODE_PREFIX}${p.nodeId}/membership/`)
  return out
}

export function mayPublish (p: Principal, topic: string): boolean {
  if (topic.startsWith(UPLOAD_PREFIX) || topic === UPLOAD_RECORDS) return true
  const allowed = allowedPrefixes(p)
  return allowed === '*' || allowed.some(prefix => topic.startsWith(prefix))
}

export function maySubscribe (p: Principal, filter: string): boolean {
  const allowed = allowedPrefixes(p)
  return allowed === '*' || allowed.some(prefix => filter.startsWith(prefix))
}
