/**
 * Node name → node key bindings (trust on first join, src/hub/bindings.ts)
 * shared by every hub: one KV entry per node in `ef_<c>_bindings` (R3).
 * bind-if-absent is KV `create` (fails when the key exists), so two first
 * joins of one name racing on two hubs end with exactly one binding — the
 * same guarantee FileBindingStore gives inside one process.
 *
 * Structurally a NodeBindingStore (src/hub/bindings.ts); the cluster layer
 * does not import src/hub, and test/cluster/bindings.test.ts runs the hub's
 * binding-store compliance suite against it.
 */
import { IdentityError, InvalidOptionError, JoinRefusedError } from '../errors.js'
import { nodeKeyId } from '../identity/node-key.js'
import { validateNodeName } from '../identity/token.js'
import type { ClusterConnection } from './connection.js'

export interface ClusterNodeBinding {
  nodeId: string
  keyId: string
  publicKey: Uint8Array
  boundAt: number
  rotatedAt?: number
}

/** Token records (issue 12: single use, revocation) as the hub's binding store keeps them (src/hub/binding-state.ts). */
export interface ClusterTokenRecord {
  jti: string
  node: string
  reusable: boolean
  exp: number
  issuedAt?: number
  uses: Array<{ nodeId: string, keyId: string, at: number }>
  useCount: number
  revokedAt?: number
}
export interface ClusterTokenPresented { jti: string, node: string, exp: number, reusable: boolean }

interface Stored { k: string, p: string, t: number, r?: number }

/** Token records share the bindings bucket under this prefix: node names cannot start with '_'. */
const TOKEN_PREFIX = '_t.'
const MAX_USES_KEPT = 20
/** Records outlive their token by this much (clock steps must not re-admit a used token). */
const KEEP_AFTER_EXPIRY_MS = 86_400_000
const JTI = /^[A-Za-z0-9_-]{1,64}$/

function decode (nodeId: string, bytes: Uint8Array): ClusterNodeBinding {
  const v = JSON.parse(new TextDecoder().decode(bytes)) as Stored
  const b: ClusterNodeBinding = { nodeId, keyId: v.k, publicKey: new Uint8Array(Buffer.from(v.p, 'base64')), boundAt: v.t }
  if (v.r !== undefined) b.rotatedAt = v.r
  return b
}

function validJti (jti: string): void {
  if (typeof jti !== 'string' || !JTI.test(jti)) throw new InvalidOptionError('jti', 'must be 1-64 characters of [A-Za-z0-9_-]')
}

export class KvBindingStore {
  readonly #c: ClusterConnection
  #closed = false

  constructor (c: ClusterConnection) { this.#c = c }

  async get (nodeId: string): Promise<ClusterNodeBinding | undefined> {
    const e = await this.#c.call('reading a node binding', async () => await this.#c.bindings.get(nodeId))
    if (e === null || e.operation !== 'PUT' || e.value.length === 0) return undefined
    return decode(nodeId, e.value)
  }

  async bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<ClusterNodeBinding> {
    if (this.#closed) throw new IdentityError('cluster', 'the binding store is closed')
    validateNodeName(nodeId)
    if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) throw new InvalidOptionError('publicKeyRaw', 'must be 32 raw Ed25519 bytes')
    if (nodeKeyId(publicKeyRaw) !== keyId) throw new InvalidOptionError('keyId', 'does not match publicKeyRaw')
    if (!Number.isFinite(now)) throw new InvalidOptionError('now', 'must be a finite number of ms')
    const existing = await this.get(nodeId)
    if (existing !== undefined) return existing
    const value: Stored = { k: keyId, p: Buffer.from(publicKeyRaw).toString('base64'), t: now }
    try {
      await this.#c.call('binding a node', async () => await this.#c.bindings.create(nodeId, JSON.stringify(value)))
      return { nodeId, keyId, publicKey: new Uint8Array(publicKeyRaw), boundAt: now }
    } catch (err) {
      // Lost a race with another hub (wrong last sequence): the winner's binding is in effect.
      const won = await this.get(nodeId)
      if (won !== undefined) return won
      throw err
    }
  }

  async list (): Promise<ClusterNodeBinding[]> {
    const out: ClusterNodeBinding[] = []
    const keys = await this.#c.call('listing node bindings', async () => await this.#c.bindings.keys())
    const names: string[] = []
    for await (const k of keys) if (!k.startsWith(TOKEN_PREFIX)) names.push(k)
    for (const k of names.sort()) {
      const b = await this.get(k)
      if (b !== undefined) out.push(b)
    }
    return out
  }

  async remove (nodeId: string, now = Date.now()): Promise<boolean> {
    if (this.#closed) throw new IdentityError('cluster', 'the binding store is closed')
    const had = await this.get(nodeId)
    if (had === undefined) return false
    await this.#c.call('removing a node binding', async () => { await this.#c.bindings.delete(nodeId) })
    // As the single hub's store: the single-use tokens the node joined with cannot be replayed.
    for (const rec of await this.tokens()) {
      if (!rec.reusable && rec.revokedAt === undefined && rec.uses.some(u => u.nodeId === nodeId)) await this.revoke(rec.jti, now)
    }
    return true
  }

  /**
   * bind() for a first join with a token, with the same rules as the single hub's store: a
   * revoked token is refused (EF_TOKEN_REVOKED), a single-use token already used by another
   * key is refused (EF_TOKEN_USED), the use is recorded. Token records are KV entries updated
   * with revision checks, so two hubs admitting one token for two keys at once end with one.
   */
  async bindWithToken (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number, token: ClusterTokenPresented): Promise<ClusterNodeBinding> {
    validJti(token.jti)
    for (let attempt = 0; ; attempt++) {
      const cur = await this.#token(token.jti)
      const rec = cur?.rec
      if (rec?.revokedAt !== undefined) throw new JoinRefusedError('EF_TOKEN_REVOKED', `the join token ${token.jti} was revoked on ${new Date(rec.revokedAt).toISOString()}; create a new one`)
      const have = await this.get(nodeId)
      if (have !== undefined && have.keyId === keyId) return have
      if (rec !== undefined && !rec.reusable && rec.uses.some(u => u.keyId !== keyId || u.nodeId !== nodeId)) {
        throw new JoinRefusedError('EF_TOKEN_USED', `the join token ${token.jti} was already used by another node key; a token binds one key (create one per node, or a --reusable one)`)
      }
      if (have !== undefined) return have
      const next: ClusterTokenRecord = rec === undefined ? { jti: token.jti, node: token.node, reusable: token.reusable, exp: token.exp, uses: [], useCount: 0 } : { ...rec, uses: [...rec.uses] }
      next.uses = [...next.uses, { nodeId, keyId, at: now }].slice(-MAX_USES_KEPT)
      next.useCount++
      // Record the use first (revision-checked), then bind: a lost race retries and sees the winner.
      if (!await this.#putToken(next, cur?.rev)) { if (attempt < 5) continue; throw new IdentityError('cluster', 'token record kept changing') }
      return await this.bind(nodeId, keyId, publicKeyRaw, now)
    }
  }

  /** Replace the bound key (in-session rotation); refused when the node is no longer bound to `oldKeyId`. */
  async rotate (nodeId: string, oldKeyId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<ClusterNodeBinding> {
    if (this.#closed) throw new IdentityError('cluster', 'the binding store is closed')
    if (nodeKeyId(publicKeyRaw) !== keyId) throw new InvalidOptionError('keyId', 'does not match publicKeyRaw')
    const e = await this.#c.call('reading a node binding', async () => await this.#c.bindings.get(nodeId))
    const have = e === null || e.operation !== 'PUT' || e.value.length === 0 ? undefined : decode(nodeId, e.value)
    if (e === null || have === undefined || have.keyId !== oldKeyId) throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} is not bound to key ${oldKeyId} (removed or rotated meanwhile)`)
    const value: Stored = { k: keyId, p: Buffer.from(publicKeyRaw).toString('base64'), t: have.boundAt, r: now }
    await this.#c.call('rotating a node key', async () => await this.#c.bindings.update(nodeId, JSON.stringify(value), e.revision))
    return { nodeId, keyId, publicKey: new Uint8Array(publicKeyRaw), boundAt: have.boundAt, rotatedAt: now }
  }

  /** Record a token at creation (false if already known). Records a day past their expiry are pruned then. */
  async recordIssued (token: ClusterTokenPresented, now: number): Promise<boolean> {
    validJti(token.jti)
    if (token.node !== '*') validateNodeName(token.node)
    if (await this.#token(token.jti) !== undefined) return false
    for (const rec of await this.tokens()) {
      if (rec.exp * 1000 + KEEP_AFTER_EXPIRY_MS < now) await this.#c.call('pruning a token record', async () => { await this.#c.bindings.delete(TOKEN_PREFIX + rec.jti) })
    }
    return await this.#putToken({ jti: token.jti, node: token.node, reusable: token.reusable, exp: token.exp, issuedAt: now, uses: [], useCount: 0 }, undefined)
  }

  /** Revoke a token id (false if already revoked); an unknown id is recorded as revoked. */
  async revoke (jti: string, now: number): Promise<boolean> {
    validJti(jti)
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.#token(jti)
      if (cur?.rec.revokedAt !== undefined) return false
      const rec: ClusterTokenRecord = cur?.rec ?? { jti, node: '*', reusable: false, exp: Math.floor(now / 1000) + 366 * 86_400, uses: [], useCount: 0 }
      if (await this.#putToken({ ...rec, revokedAt: now }, cur?.rev)) return true
    }
    throw new IdentityError('cluster', 'token record kept changing')
  }

  async tokens (): Promise<ClusterTokenRecord[]> {
    const keys = await this.#c.call('listing tokens', async () => await this.#c.bindings.keys(`${TOKEN_PREFIX}>`))
    const names: string[] = []
    for await (const k of keys) if (k.startsWith(TOKEN_PREFIX)) names.push(k.slice(TOKEN_PREFIX.length))
    const out: ClusterTokenRecord[] = []
    for (const jti of names.sort()) { const t = await this.#token(jti); if (t !== undefined) out.push(t.rec) }
    return out
  }

  async #token (jti: string): Promise<{ rec: ClusterTokenRecord, rev: number } | undefined> {
    const e = await this.#c.call('reading a token record', async () => await this.#c.bindings.get(TOKEN_PREFIX + jti))
    if (e === null || e.operation !== 'PUT' || e.value.length === 0) return undefined
    return { rec: JSON.parse(new TextDecoder().decode(e.value)) as ClusterTokenRecord, rev: e.revision }
  }

  /** Write a token record: create when `rev` is undefined, else update at `rev`. False on a lost race. */
  async #putToken (rec: ClusterTokenRecord, rev: number | undefined): Promise<boolean> {
    if (this.#closed) throw new IdentityError('cluster', 'the binding store is closed')
    const key = TOKEN_PREFIX + rec.jti
    try {
      await this.#c.call('writing a token record', async () => rev === undefined
        ? await this.#c.bindings.create(key, JSON.stringify(rec))
        : await this.#c.bindings.update(key, JSON.stringify(rec), rev))
      return true
    } catch (err) {
      if (await this.#token(rec.jti) !== undefined) return false
      throw err
    }
  }

  /** The connection belongs to the Cluster; closing only refuses later writes. */
  async close (): Promise<void> { this.#closed = true }
}
