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
import { IdentityError, InvalidOptionError } from '../errors.js'
import { nodeKeyId } from '../identity/node-key.js'
import { validateNodeName } from '../identity/token.js'
import type { ClusterConnection } from './connection.js'

export interface ClusterNodeBinding {
  nodeId: string
  keyId: string
  publicKey: Uint8Array
  boundAt: number
}

interface Stored { k: string, p: string, t: number }

function decode (nodeId: string, bytes: Uint8Array): ClusterNodeBinding {
  const v = JSON.parse(new TextDecoder().decode(bytes)) as Stored
  return { nodeId, keyId: v.k, publicKey: new Uint8Array(Buffer.from(v.p, 'base64')), boundAt: v.t }
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
    for await (const k of keys) names.push(k)
    for (const k of names.sort()) {
      const b = await this.get(k)
      if (b !== undefined) out.push(b)
    }
    return out
  }

  async remove (nodeId: string): Promise<boolean> {
    if (this.#closed) throw new IdentityError('cluster', 'the binding store is closed')
    const had = await this.get(nodeId)
    if (had === undefined) return false
    await this.#c.call('removing a node binding', async () => { await this.#c.bindings.delete(nodeId) })
    return true
  }

  /** The connection belongs to the Cluster; closing only refuses later writes. */
  async close (): Promise<void> { this.#closed = true }
}
