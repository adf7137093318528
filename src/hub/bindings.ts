/**
 * Node name → node key bindings, and the join-token records that go with
 * them (issue 12: the token is for the first join only). The first
 * successful join of a name binds it to the edge's key; later joins must
 * present the same key and no token, so a leaked token cannot be used to
 * impersonate an existing node, and an expired token never strands a bound
 * edge. The rules live in ./binding-state.ts; this file is the store
 * contract and its two implementations.
 *
 * Every change is atomic within a store: two racing first joins of one name
 * with different keys end with exactly one binding, and a single-use token
 * is recorded as used in the same write that makes its binding. Rebinding a
 * name is an explicit admin act: remove() then let the node join again with
 * a new token.
 *
 * One writer per data dir: FileBindingStore is only opened by the process
 * that holds the data-dir lock (src/util/data-dir-lock.ts): the running hub,
 * or an offline CLI verb when the hub is stopped.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { IdentityError, JoinRefusedError, toError } from '../errors.js'
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js'
import { nodeKeyId } from '../identity/node-key.js'
import { validateNodeName } from '../identity/token.js'
import { BindingState, copyBinding, copyToken, parseState, serializeState, type NodeBinding, type TokenPresented, type TokenRecord } from './binding-state.js'

export type { NodeBinding, TokenPresented, TokenRecord, TokenUse } from './binding-state.js'

export interface NodeBindingStore {
  get (nodeId: string): Promise<NodeBinding | undefined>
  /**
   * Bind `nodeId` to the key unless it is already bound; resolves with the
   * binding in effect (the existing one if there was one) once it is durable.
   */
  bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding>
  /**
   * bind() for a first join with a token: refuses a revoked token
   * (EF_TOKEN_REVOKED) and a single-use token already used by another key
   * (EF_TOKEN_USED), and records the use in the same durable write.
   */
  bindWithToken (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number, token: TokenPresented): Promise<NodeBinding>
  list (): Promise<NodeBinding[]>
  /** Resolves true if a binding was removed; single-use tokens it joined with are revoked. */
  remove (nodeId: string, now?: number): Promise<boolean>
  /** Replace the bound key of `nodeId` (in-session key rotation; both keys verified by the caller). */
  rotate (nodeId: string, oldKeyId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding>
  /** Record a token at creation (false if already known). */
  recordIssued (token: TokenPresented, now: number): Promise<boolean>
  /** Revoke a token id (false if already revoked). Unknown ids are recorded as revoked too. */
  revoke (jti: string, now: number): Promise<boolean>
  tokens (): Promise<TokenRecord[]>
  /** Wait for pending writes; later calls reject. */
  close (): Promise<void>
}

export interface CheckOrBindResult {
  binding: NodeBinding
  /** This call created the binding (first join). */
  created: boolean
}

function checkKey (nodeId: string, keyId: string, publicKeyRaw: Uint8Array): void {
  validateNodeName(nodeId)
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} presented a malformed key (expected 32 raw Ed25519 bytes)`)
  }
  if (nodeKeyId(publicKeyRaw) !== keyId) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} presented key id ${String(keyId).slice(0, 40)} that does not match its public key`)
  }
}

function checkSame (binding: NodeBinding, nodeId: string, keyId: string, publicKeyRaw: Uint8Array): void {
  if (binding.keyId !== keyId || !Buffer.from(binding.publicKey).equals(publicKeyRaw)) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node name ${nodeId} is already bound to another key`)
  }
}

/**
 * The join-time check: first join binds, the same key passes, another key is
 * refused with EF_NODE_KEY_MISMATCH. With `token`, the first join also
 * applies the token rules (single use, revocation).
 */
export async function checkOrBind (store: NodeBindingStore, nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now = Date.now(), token?: TokenPresented): Promise<CheckOrBindResult> {
  checkKey(nodeId, keyId, publicKeyRaw)
  const binding = token === undefined
    ? await store.bind(nodeId, keyId, publicKeyRaw, now)
    : await store.bindWithToken(nodeId, keyId, publicKeyRaw, now, token)
  checkSame(binding, nodeId, keyId, publicKeyRaw)
  // Stores return an existing binding unchanged, so boundAt === now means this
  // call made it (advisory, for logs: a rejoin in the same ms also reads true).
  return { binding, created: binding.boundAt === now }
}

function closedError (what: string): IdentityError {
  return new IdentityError(what, 'the binding store is closed')
}

/** In-memory store for tests and ephemeral hubs. */
export class MemoryBindingStore implements NodeBindingStore {
  #s = new BindingState()
  #closed = false

  #open (): BindingState {
    if (this.#closed) throw closedError('memory')
    return this.#s
  }

  async get (nodeId: string): Promise<NodeBinding | undefined> {
    const b = this.#s.bindings.get(nodeId)
    return b === undefined ? undefined : copyBinding(b)
  }

  async bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    return copyBinding(this.#open().bind(nodeId, keyId, publicKeyRaw, now).binding)
  }

  async bindWithToken (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number, token: TokenPresented): Promise<NodeBinding> {
    return copyBinding(this.#open().bindWithToken(nodeId, keyId, publicKeyRaw, now, token).binding)
  }

  async list (): Promise<NodeBinding[]> { return [...this.#s.bindings.values()].map(copyBinding) }
  async remove (nodeId: string, now = Date.now()): Promise<boolean> { return this.#open().remove(nodeId, now) }
  async rotate (nodeId: string, oldKeyId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    return copyBinding(this.#open().rotate(nodeId, oldKeyId, keyId, publicKeyRaw, now))
  }

  async recordIssued (token: TokenPresented, now: number): Promise<boolean> { return this.#open().recordIssued(token, now) }
  async revoke (jti: string, now: number): Promise<boolean> { return this.#open().revoke(jti, now) }
  async tokens (): Promise<TokenRecord[]> { return [...this.#s.tokens.values()].map(copyToken) }
  async close (): Promise<void> { this.#closed = true }
}

interface Waiter { resolve: () => void, reject: (err: Error) => void }

export const BINDINGS_FILE = 'node-bindings.json'

/**
 * JSON file store, `${dataDir}/node-bindings.json` (0600). Loaded at open;
 * every change rewrites the file atomically (temp + fsync + rename). Writes
 * are group-committed: changes made while a write is in flight go out
 * together in the next one, so a connect storm of N first joins costs far
 * fewer than N rewrites. If a write fails, memory reverts to the last
 * durable state and every change not yet durable is rejected.
 */
export class FileBindingStore implements NodeBindingStore {
  readonly file: string
  readonly #dataDir: string
  #s: BindingState
  #durable: BindingState
  /** Bumped by every change; equal to #durableVersion when memory matches the file. */
  #version = 0
  #durableVersion = 0
  #queued: Waiter[] = []
  #flushing: Promise<void> | undefined
  #closed = false

  /** Opens synchronously (startup only); a corrupt file throws IdentityError. See also FileBindingStore.open(). */
  constructor (dataDir: string) {
    this.#dataDir = dataDir
    this.file = join(dataDir, BINDINGS_FILE)
    this.#s = load(this.file)
    this.#durable = this.#s.clone()
  }

  static async open (dataDir: string): Promise<FileBindingStore> {
    await ensurePrivateDir(dataDir)
    return new FileBindingStore(dataDir)
  }

  async get (nodeId: string): Promise<NodeBinding | undefined> {
    const b = this.#s.bindings.get(nodeId)
    return b === undefined ? undefined : copyBinding(b)
  }

  /** Apply a change; resolve with its result once it (or a later state) is durable. */
  async #change<T> (fn: (s: BindingState) => { result: T, changed: boolean }): Promise<T> {
    if (this.#closed) throw closedError(this.file)
    const { result, changed } = fn(this.#s)
    if (changed) this.#version++
    // Also wait when nothing changed: the state we report may still be in
    // flight, and a join must not be answered on non-durable state.
    await this.#commit()
    return result
  }

  async bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    const have = this.#s.bindings.get(nodeId)
    // Fast path for rejoins: this exact binding is already on disk.
    if (!this.#closed && have !== undefined && this.#durable.bindings.get(nodeId) === have) return copyBinding(have)
    return await this.#change(s => {
      const r = s.bind(nodeId, keyId, publicKeyRaw, now)
      return { result: copyBinding(r.binding), changed: r.changed }
    })
  }

  async bindWithToken (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number, token: TokenPresented): Promise<NodeBinding> {
    return await this.#change(s => {
      const r = s.bindWithToken(nodeId, keyId, publicKeyRaw, now, token)
      return { result: copyBinding(r.binding), changed: r.changed }
    })
  }

  async list (): Promise<NodeBinding[]> { return [...this.#s.bindings.values()].map(copyBinding) }

  async remove (nodeId: string, now = Date.now()): Promise<boolean> {
    return await this.#change(s => { const had = s.remove(nodeId, now); return { result: had, changed: had } })
  }

  async rotate (nodeId: string, oldKeyId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    return await this.#change(s => ({ result: copyBinding(s.rotate(nodeId, oldKeyId, keyId, publicKeyRaw, now)), changed: true }))
  }

  async recordIssued (token: TokenPresented, now: number): Promise<boolean> {
    return await this.#change(s => { const r = s.recordIssued(token, now); return { result: r, changed: r } })
  }

  async revoke (jti: string, now: number): Promise<boolean> {
    return await this.#change(s => { const r = s.revoke(jti, now); return { result: r, changed: r } })
  }

  async tokens (): Promise<TokenRecord[]> { return [...this.#s.tokens.values()].map(copyToken) }

  async close (): Promise<void> {
    this.#closed = true
    while (this.#flushing !== undefined) await this.#flushing.catch(() => {})
  }

  /** Resolve once the current in-memory state (or a later one) is on disk. */
  #commit (): Promise<void> {
    const dirty = this.#queued.length > 0 || this.#flushing !== undefined || this.#version !== this.#durableVersion
    if (!dirty) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.#queued.push({ resolve, reject })
      this.#flushing ??= this.#flushLoop()
    })
  }

  async #flushLoop (): Promise<void> {
    try {
      await ensurePrivateDir(this.#dataDir).catch(() => {})
      while (this.#queued.length > 0) {
        const batch = this.#queued
        this.#queued = []
        const snapshot = this.#s.clone()
        const version = this.#version
        try {
          await writeFileAtomic(this.file, serializeState(snapshot))
          this.#durable = snapshot
          this.#durableVersion = version
          for (const w of batch) w.resolve()
        } catch (err) {
          // Revert to what is on disk; every change since is lost, so all
          // their callers learn it (also those queued behind this write).
          this.#s = this.#durable.clone()
          this.#version = this.#durableVersion
          const failed = [...batch, ...this.#queued]
          this.#queued = []
          const e = err instanceof IdentityError ? err : new IdentityError(this.file, toError(err).message, { cause: err })
          for (const w of failed) w.reject(e)
        }
      }
    } finally {
      this.#flushing = undefined
    }
  }
}

function load (file: string): BindingState {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new BindingState()
    throw new IdentityError(file, `cannot be read: ${toError(err).message}`, { cause: err })
  }
  return parseState(text, (why, cause) =>
    new IdentityError(file, `is corrupt (${why}); restore it from a backup or remove it (every node then needs a new token to join again)`, { cause }))
}
