/**
 * The state behind a node binding store: node name → node key bindings and
 * join-token records (issued, used, revoked), with every rule of issue 12/13
 * applied in one synchronous step so a store can make it atomic:
 *
 * - a single-use token binds one node key, once: a second key presenting it
 *   is refused EF_TOKEN_USED; the same key presenting it again is fine (a
 *   crash right after binding must not strand the edge);
 * - a revoked token binds nothing (EF_TOKEN_REVOKED);
 * - removing a node revokes the single-use tokens it joined with, so the
 *   removed edge cannot rejoin by replaying its old token.
 *
 * Token records are kept until a day after the token expires (an expired
 * token is refused on expiry anyway), so the table is bounded by the tokens
 * alive at once, plus MAX_TOKEN_RECORDS as a hard cap.
 */
import { IdentityError, InvalidOptionError, JoinRefusedError } from '../errors.js'
import { nodeKeyId } from '../identity/node-key.js'
import { ANY_NODE, isValidNodeName, validateNodeName } from '../identity/token.js'

export interface NodeBinding {
  nodeId: string
  keyId: string
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  /** ms since the epoch of the first join (kept across key rotations). */
  boundAt: number
  /** ms since the epoch of the last key rotation, if any. */
  rotatedAt?: number
}

export interface TokenUse { nodeId: string, keyId: string, at: number }

export interface TokenRecord {
  jti: string
  /** The node the token admits (`*`: any name, reusable tokens). */
  node: string
  reusable: boolean
  /** Expiry, seconds since the epoch. */
  exp: number
  /** ms since the epoch when the hub or CLI recorded its creation (absent: first seen at a join or revoke). */
  issuedAt?: number
  /** Joins that bound a key with it (the newest MAX_USES_KEPT). */
  uses: TokenUse[]
  /** All joins that used it, including those no longer listed. */
  useCount: number
  /** ms since the epoch. */
  revokedAt?: number
}

/** What a first join presents about its token (from the verified payload). */
export interface TokenPresented { jti: string, node: string, exp: number, reusable: boolean }

export const MAX_TOKEN_RECORDS = 100_000
const MAX_USES_KEPT = 20
/** Records outlive their token by this much (clock steps must not re-admit a used token). */
const KEEP_AFTER_EXPIRY_MS = 86_400_000
/** Revoking an id the hub never saw: keep the record this long (longest token life). */
const UNKNOWN_REVOKE_KEEP_S = 366 * 86_400
const JTI = /^[A-Za-z0-9_-]{1,64}$/

export function copyBinding (b: NodeBinding): NodeBinding {
  const out: NodeBinding = { nodeId: b.nodeId, keyId: b.keyId, publicKey: new Uint8Array(b.publicKey), boundAt: b.boundAt }
  if (b.rotatedAt !== undefined) out.rotatedAt = b.rotatedAt
  return out
}

export function copyToken (r: TokenRecord): TokenRecord {
  const out: TokenRecord = { jti: r.jti, node: r.node, reusable: r.reusable, exp: r.exp, uses: r.uses.map(u => ({ ...u })), useCount: r.useCount }
  if (r.issuedAt !== undefined) out.issuedAt = r.issuedAt
  if (r.revokedAt !== undefined) out.revokedAt = r.revokedAt
  return out
}

/**
 * Stores validate too (not only checkOrBind): whatever is persisted must
 * pass load()'s consistency checks, or the next start would fail on it.
 */
export function newBinding (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): NodeBinding {
  validateNodeName(nodeId)
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) throw new InvalidOptionError('publicKeyRaw', 'must be 32 raw Ed25519 bytes')
  if (nodeKeyId(publicKeyRaw) !== keyId) throw new InvalidOptionError('keyId', 'does not match publicKeyRaw')
  if (!Number.isFinite(now)) throw new InvalidOptionError('now', 'must be a finite number of ms')
  return { nodeId, keyId, publicKey: new Uint8Array(publicKeyRaw), boundAt: now }
}

export function validJti (jti: unknown): string {
  if (typeof jti !== 'string' || !JTI.test(jti)) throw new InvalidOptionError('jti', 'must be a token id (1-64 base64url characters, as shown by "token list")')
  return jti
}

/** Mutable maps plus the rules. Each method reports whether it changed anything. */
export class BindingState {
  bindings: Map<string, NodeBinding>
  tokens: Map<string, TokenRecord>

  constructor (bindings = new Map<string, NodeBinding>(), tokens = new Map<string, TokenRecord>()) {
    this.bindings = bindings
    this.tokens = tokens
  }

  /** Shallow copy of the maps (records are replaced, never mutated in place, once durable). */
  clone (): BindingState {
    return new BindingState(new Map(this.bindings), new Map(this.tokens))
  }

  bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): { binding: NodeBinding, changed: boolean } {
    const have = this.bindings.get(nodeId)
    if (have !== undefined) return { binding: have, changed: false }
    const b = newBinding(nodeId, keyId, publicKeyRaw, now)
    this.bindings.set(nodeId, b)
    return { binding: b, changed: true }
  }

  /**
   * First join with a token: revocation and single use checked, the use
   * recorded and the name bound, all in one step. An existing binding of the
   * name is returned unchanged (the caller compares keys) and records
   * nothing; another key presenting a used single-use token learns
   * EF_TOKEN_USED rather than a bare key mismatch.
   */
  bindWithToken (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number, token: TokenPresented): { binding: NodeBinding, changed: boolean } {
    validJti(token.jti)
    const rec = this.tokens.get(token.jti)
    if (rec?.revokedAt !== undefined) {
      throw new JoinRefusedError('EF_TOKEN_REVOKED', `the join token ${token.jti} was revoked on ${new Date(rec.revokedAt).toISOString()}; create a new one`)
    }
    const have = this.bindings.get(nodeId)
    if (have !== undefined && have.keyId === keyId) return { binding: have, changed: false }
    if (rec !== undefined && !rec.reusable && rec.uses.some(u => u.keyId !== keyId || u.nodeId !== nodeId)) {
      throw new JoinRefusedError('EF_TOKEN_USED', `the join token ${token.jti} was already used by another node key; a token binds one key (create one per node, or a --reusable one)`)
    }
    if (have !== undefined) return { binding: have, changed: false }
    const b = newBinding(nodeId, keyId, publicKeyRaw, now)
    this.#prune(now)
    const base: TokenRecord = rec ?? { jti: token.jti, node: token.node, reusable: token.reusable, exp: token.exp, uses: [], useCount: 0 }
    if (rec === undefined) this.#checkRoom()
    const next = copyToken(base)
    next.uses = [...next.uses, { nodeId, keyId, at: now }].slice(-MAX_USES_KEPT)
    next.useCount++
    this.tokens.set(token.jti, next)
    this.bindings.set(nodeId, b)
    return { binding: b, changed: true }
  }

  /** Record a token at creation, so `token list` shows it before it is used. */
  recordIssued (token: TokenPresented, now: number): boolean {
    validJti(token.jti)
    if (token.node !== ANY_NODE) validateNodeName(token.node)
    if (this.tokens.has(token.jti)) return false
    this.#prune(now)
    this.#checkRoom()
    this.tokens.set(token.jti, { jti: token.jti, node: token.node, reusable: token.reusable, exp: token.exp, issuedAt: now, uses: [], useCount: 0 })
    return true
  }

  /** Revoke a token id (known or not). False when it was already revoked. */
  revoke (jti: string, now: number): boolean {
    validJti(jti)
    const rec = this.tokens.get(jti)
    if (rec?.revokedAt !== undefined) return false
    if (rec === undefined) {
      this.#prune(now)
      this.#checkRoom()
    }
    const next = rec === undefined
      ? { jti, node: ANY_NODE, reusable: false, exp: Math.floor(now / 1000) + UNKNOWN_REVOKE_KEEP_S, uses: [], useCount: 0 }
      : copyToken(rec)
    next.revokedAt = now
    this.tokens.set(jti, next)
    return true
  }

  /** Delete the binding; single-use tokens it joined with are revoked. */
  remove (nodeId: string, now: number): boolean {
    const had = this.bindings.delete(nodeId)
    if (!had) return false
    for (const rec of this.tokens.values()) {
      if (!rec.reusable && rec.revokedAt === undefined && rec.uses.some(u => u.nodeId === nodeId)) {
        this.tokens.set(rec.jti, { ...copyToken(rec), revokedAt: now })
      }
    }
    return true
  }

  /** Key rotation: the bound name moves to a new key (the caller verified both keys). */
  rotate (nodeId: string, oldKeyId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): NodeBinding {
    const have = this.bindings.get(nodeId)
    if (have === undefined || have.keyId !== oldKeyId) {
      throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} is not bound to key ${oldKeyId} (removed or rotated meanwhile)`)
    }
    const b = newBinding(nodeId, keyId, publicKeyRaw, have.boundAt)
    b.rotatedAt = now
    this.bindings.set(nodeId, b)
    return b
  }

  #prune (now: number): void {
    for (const [jti, rec] of this.tokens) {
      if (rec.exp * 1000 + KEEP_AFTER_EXPIRY_MS < now) this.tokens.delete(jti)
    }
  }

  #checkRoom (): void {
    if (this.tokens.size >= MAX_TOKEN_RECORDS) {
      throw new IdentityError('token records', `holds ${MAX_TOKEN_RECORDS} live tokens, the most it keeps; revoke or let some expire first`)
    }
  }
}

// ---- file format -------------------------------------------------------------------

interface FileBindingV { keyId: string, publicKey: string, boundAt: number, rotatedAt?: number }
interface FileFormat {
  v: 2
  bindings: Record<string, FileBindingV>
  tokens: Record<string, Omit<TokenRecord, 'jti'>>
}

function sorted<T> (map: Map<string, T>): Array<[string, T]> {
  return [...map].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
}

export function serializeState (s: BindingState): string {
  // Null prototype: a key named "__proto__" must stay a plain property.
  const out: FileFormat = { v: 2, bindings: Object.create(null) as FileFormat['bindings'], tokens: Object.create(null) as FileFormat['tokens'] }
  for (const [id, b] of sorted(s.bindings)) {
    const e: FileBindingV = { keyId: b.keyId, publicKey: Buffer.from(b.publicKey).toString('base64url'), boundAt: b.boundAt }
    if (b.rotatedAt !== undefined) e.rotatedAt = b.rotatedAt
    out.bindings[id] = e
  }
  for (const [jti, r] of sorted(s.tokens)) {
    const { jti: _, ...rest } = r
    out.tokens[jti] = rest
  }
  return JSON.stringify(out, null, 1) + '\n'
}

/** Parse a store file (format 1: bindings only; format 2: plus tokens). `bad` builds the error. */
export function parseState (text: string, bad: (why: string, cause?: unknown) => Error): BindingState {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw bad('not JSON', err)
  }
  const o = raw as (Omit<Partial<FileFormat>, 'v'> & { v?: unknown }) | null
  const isMap = (m: unknown): m is Record<string, unknown> => typeof m === 'object' && m !== null && !Array.isArray(m)
  if (!isMap(o) || (o.v !== 1 && o.v !== 2) || !isMap(o.bindings) || (o.v === 2 && !isMap(o.tokens))) {
    throw bad('expected {"v":2,"bindings":{...},"tokens":{...}}')
  }
  const state = new BindingState()
  for (const [nodeId, e] of Object.entries(o.bindings)) {
    const entry = e as Partial<FileBindingV> | null
    if (typeof entry !== 'object' || entry === null || typeof entry.publicKey !== 'string' || typeof entry.keyId !== 'string' ||
      typeof entry.boundAt !== 'number' || !Number.isFinite(entry.boundAt) || (entry.rotatedAt !== undefined && typeof entry.rotatedAt !== 'number')) {
      throw bad(`entry ${JSON.stringify(nodeId)} is malformed`)
    }
    if (!isValidNodeName(nodeId)) throw bad(`node name ${JSON.stringify((nodeId as string).slice(0, 70))} is invalid`)
    const publicKey = new Uint8Array(Buffer.from(entry.publicKey, 'base64url'))
    if (publicKey.length !== 32 || nodeKeyId(publicKey) !== entry.keyId) throw bad(`entry ${JSON.stringify(nodeId)} has an inconsistent key`)
    const b: NodeBinding = { nodeId, keyId: entry.keyId, publicKey, boundAt: entry.boundAt }
    if (entry.rotatedAt !== undefined) b.rotatedAt = entry.rotatedAt
    state.bindings.set(nodeId, b)
  }
  for (const [jti, e] of Object.entries(o.v === 2 ? o.tokens as Record<string, unknown> : {})) {
    const r = e as Partial<TokenRecord> | null
    if (!JTI.test(jti) || typeof r !== 'object' || r === null || typeof r.node !== 'string' || typeof r.reusable !== 'boolean' ||
      typeof r.exp !== 'number' || !Array.isArray(r.uses) || typeof r.useCount !== 'number' ||
      !r.uses.every(u => typeof u === 'object' && u !== null && typeof u.nodeId === 'string' && typeof u.keyId === 'string' && typeof u.at === 'number') ||
      (r.revokedAt !== undefined && typeof r.revokedAt !== 'number') || (r.issuedAt !== undefined && typeof r.issuedAt !== 'number')) {
      throw bad(`token record ${JSON.stringify(jti.slice(0, 70))} is malformed`)
    }
    state.tokens.set(jti, copyToken({ ...(r as TokenRecord), jti }))
  }
  return state
}
