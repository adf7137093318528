/**
 * Node name → node key bindings (trust on first join). The first successful
 * join of a name binds it to the edge's key; later joins must present the
 * same key, so a leaked token cannot be used to impersonate an existing node.
 *
 * `bind` is bind-if-absent and atomic within a store: two racing first joins
 * of one name with different keys end with exactly one binding, and the
 * loser is refused. Rebinding a name is an explicit admin act: remove() then
 * let the node join again.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { IdentityError, InvalidOptionError, JoinRefusedError, toError } from '../errors.js'
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-file.js'
import { nodeKeyId } from '../identity/node-key.js'
import { isValidNodeName, validateNodeName } from '../identity/token.js'

export interface NodeBinding {
  nodeId: string
  keyId: string
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  /** ms since the epoch. */
  boundAt: number
}

export interface NodeBindingStore {
  get (nodeId: string): Promise<NodeBinding | undefined>
  /**
   * Bind `nodeId` to the key unless it is already bound; resolves with the
   * binding in effect (the existing one if there was one) once it is durable.
   */
  bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding>
  list (): Promise<NodeBinding[]>
  /** Resolves true if a binding was removed. */
  remove (nodeId: string): Promise<boolean>
  /** Wait for pending writes; later calls reject. */
  close (): Promise<void>
}

export interface CheckOrBindResult {
  binding: NodeBinding
  /** This call created the binding (first join). */
  created: boolean
}

/**
 * The join-time check: first join binds, the same key passes, another key is
 * refused with EF_NODE_KEY_MISMATCH.
 */
export async function checkOrBind (store: NodeBindingStore, nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now = Date.now()): Promise<CheckOrBindResult> {
  validateNodeName(nodeId)
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} presented a malformed key (expected 32 raw Ed25519 bytes)`)
  }
  if (nodeKeyId(publicKeyRaw) !== keyId) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node ${nodeId} presented key id ${String(keyId).slice(0, 40)} that does not match its public key`)
  }
  const binding = await store.bind(nodeId, keyId, publicKeyRaw, now)
  if (binding.keyId !== keyId || !Buffer.from(binding.publicKey).equals(publicKeyRaw)) {
    throw new JoinRefusedError('EF_NODE_KEY_MISMATCH', `node name ${nodeId} is already bound to another key`)
  }
  // Stores return an existing binding unchanged, so boundAt === now means this
  // call made it (advisory, for logs: a rejoin in the same ms also reads true).
  return { binding, created: binding.boundAt === now }
}

function copy (b: NodeBinding): NodeBinding {
  return { nodeId: b.nodeId, keyId: b.keyId, publicKey: new Uint8Array(b.publicKey), boundAt: b.boundAt }
}

/**
 * Stores validate too (not only checkOrBind): whatever is persisted must
 * pass load()'s consistency checks, or the next start would fail on it.
 */
function newBinding (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): NodeBinding {
  validateNodeName(nodeId)
  if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) throw new InvalidOptionError('publicKeyRaw', 'must be 32 raw Ed25519 bytes')
  if (nodeKeyId(publicKeyRaw) !== keyId) throw new InvalidOptionError('keyId', 'does not match publicKeyRaw')
  if (!Number.isFinite(now)) throw new InvalidOptionError('now', 'must be a finite number of ms')
  return { nodeId, keyId, publicKey: new Uint8Array(publicKeyRaw), boundAt: now }
}

function closedError (what: string): IdentityError {
  return new IdentityError(what, 'the binding store is closed')
}

/** In-memory store for tests and ephemeral hubs. */
export class MemoryBindingStore implements NodeBindingStore {
  #map = new Map<string, NodeBinding>()
  #closed = false

  async get (nodeId: string): Promise<NodeBinding | undefined> {
    const b = this.#map.get(nodeId)
    return b === undefined ? undefined : copy(b)
  }

  async bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    if (this.#closed) throw closedError('memory')
    let b = this.#map.get(nodeId)
    if (b === undefined) {
      b = newBinding(nodeId, keyId, publicKeyRaw, now)
      this.#map.set(nodeId, b)
    }
    return copy(b)
  }

  async list (): Promise<NodeBinding[]> {
    return [...this.#map.values()].map(copy)
  }

  async remove (nodeId: string): Promise<boolean> {
    if (this.#closed) throw closedError('memory')
    return this.#map.delete(nodeId)
  }

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
  #map: Map<string, NodeBinding>
  #durable: Map<string, NodeBinding>
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
    this.#map = load(this.file)
    this.#durable = new Map(this.#map)
  }

  static async open (dataDir: string): Promise<FileBindingStore> {
    await ensurePrivateDir(dataDir)
    return new FileBindingStore(dataDir)
  }

  async get (nodeId: string): Promise<NodeBinding | undefined> {
    const b = this.#map.get(nodeId)
    return b === undefined ? undefined : copy(b)
  }

  async bind (nodeId: string, keyId: string, publicKeyRaw: Uint8Array, now: number): Promise<NodeBinding> {
    if (this.#closed) throw closedError(this.file)
    let effective = this.#map.get(nodeId)
    // Fast path for rejoins: this exact binding is already on disk.
    if (effective !== undefined && this.#durable.get(nodeId) === effective) return copy(effective)
    if (effective === undefined) {
      effective = newBinding(nodeId, keyId, publicKeyRaw, now)
      this.#map.set(nodeId, effective)
      this.#version++
    }
    // Also wait when nothing changed: the binding we report may still be in
    // flight, and a join must not be answered on non-durable state.
    await this.#commit()
    return copy(effective)
  }

  async list (): Promise<NodeBinding[]> {
    return [...this.#map.values()].map(copy)
  }

  async remove (nodeId: string): Promise<boolean> {
    if (this.#closed) throw closedError(this.file)
    const had = this.#map.delete(nodeId)
    if (had) this.#version++
    await this.#commit()
    return had
  }

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
        const snapshot = new Map(this.#map)
        const version = this.#version
        try {
          await writeFileAtomic(this.file, serialize(snapshot))
          this.#durable = snapshot
          this.#durableVersion = version
          for (const w of batch) w.resolve()
        } catch (err) {
          // Revert to what is on disk; every change since is lost, so all
          // their callers learn it (also those queued behind this write).
          this.#map = new Map(this.#durable)
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

interface FileFormat {
  v: 1
  bindings: Record<string, { keyId: string, publicKey: string, boundAt: number }>
}

function serialize (map: Map<string, NodeBinding>): string {
  // Null prototype: a key named "__proto__" must stay a plain property.
  const out: FileFormat = { v: 1, bindings: Object.create(null) as FileFormat['bindings'] }
  for (const [id, b] of [...map].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    out.bindings[id] = { keyId: b.keyId, publicKey: Buffer.from(b.publicKey).toString('base64url'), boundAt: b.boundAt }
  }
  return JSON.stringify(out, null, 1) + '\n'
}

function load (file: string): Map<string, NodeBinding> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw new IdentityError(file, `cannot be read: ${toError(err).message}`, { cause: err })
  }
  const bad = (why: string, cause?: unknown): IdentityError =>
    new IdentityError(file, `is corrupt (${why}); restore it from a backup or remove it (every node then re-binds on its next join)`, { cause })
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw bad('not JSON', err)
  }
  const o = raw as Partial<FileFormat> | null
  if (typeof o !== 'object' || o === null || o.v !== 1 || typeof o.bindings !== 'object' || o.bindings === null || Array.isArray(o.bindings)) {
    throw bad('expected {"v":1,"bindings":{...}}')
  }
  const map = new Map<string, NodeBinding>()
  for (const [nodeId, e] of Object.entries(o.bindings)) {
    const entry = e as Partial<FileFormat['bindings'][string]> | null
    if (typeof entry !== 'object' || entry === null || typeof entry.publicKey !== 'string' || typeof entry.keyId !== 'string' ||
      typeof entry.boundAt !== 'number' || !Number.isFinite(entry.boundAt)) {
      throw bad(`entry ${JSON.stringify(nodeId)} is malformed`)
    }
    if (!isValidNodeName(nodeId)) throw bad(`node name ${JSON.stringify((nodeId as string).slice(0, 70))} is invalid`)
    const publicKey = new Uint8Array(Buffer.from(entry.publicKey, 'base64url'))
    if (publicKey.length !== 32 || nodeKeyId(publicKey) !== entry.keyId) throw bad(`entry ${JSON.stringify(nodeId)} has an inconsistent key`)
    map.set(nodeId, { nodeId, keyId: entry.keyId, publicKey, boundAt: entry.boundAt })
  }
  return map
}
