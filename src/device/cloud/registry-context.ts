/**
 * The internal boundary between DeviceRegistry (./registry.ts) and the
 * modules that implement its operations (registry-models.ts,
 * registry-devices.ts, registry-credentials.ts, registry-edges.ts). Not part
 * of the public API: the class hands its context to those functions so the
 * store, the clock and the post-commit steps stay in one place.
 */
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import type { DeviceMetrics } from './registry-metrics.js'
import type { DeviceKv, KvTxn } from './registry-store.js'
import type { DeviceChange } from './registry-types.js'

/**
 * What one transaction leaves for after its commit. Collected inside the
 * transaction callback and used only once it committed, so a refused or
 * failed change publishes, re-indexes and dispatches nothing.
 */
export interface Mutation {
  /** Clock reading taken once for the whole mutation (ms). */
  readonly now: number
  /** Dispatch records written (Dispatcher.put keys), handed to the lane after the commit. */
  readonly keys: string[]
  /** Changes to emit ('change' event and watch()), in order, after the commit. */
  readonly changes: DeviceChange[]
  /** Move device `id` to `nodeId` in the node index (undefined = unbound or deleted) after the commit. */
  index: (id: string, nodeId: string | undefined) => void
}

export interface MutateOptions {
  /** Resolve only after the committed dispatch records were handed to the lane. @default false */
  awaitDispatch?: boolean
  /** Clock reading to use as `Mutation.now`. @default clock.now() at the start */
  now?: number
  /** Called after the commit with the hand-off of its dispatch records (not called when there are none). */
  onDispatch?: (handedOff: Promise<void>) => void
}

export interface RegistryContext {
  /** Committed state, for reads outside a transaction. */
  readonly kv: DeviceKv
  readonly clock: Clock
  readonly logger: Logger
  readonly metrics: DeviceMetrics
  /** Upload log bounds (DeviceRegistryOptions.maxUploads / maxUploadBytes). */
  readonly maxUploads: number
  readonly maxUploadBytes: number
  /** Ids of the devices bound to `nodeId` (committed state). */
  devicesOf: (nodeId: string) => ReadonlySet<string> | undefined
  /**
   * One registry transaction (store.ts: checks before the first write), then,
   * once committed: node index updates, changes emitted, dispatch records
   * handed to the reliable lane (registry-dispatch.ts).
   */
  mutate: <T>(fn: (tx: KvTxn, m: Mutation) => T, options?: MutateOptions) => Promise<T>
  /** Emit committed changes (used where the commit is not a `mutate`). */
  publish: (changes: DeviceChange[]) => void
  /** Emit 'error' for observers (see registry.ts header: never fatal, never throws). */
  emitError: (err: Error) => void
}

/** Which devices are bound to which node (committed state; rebuilt on open). */
export class NodeIndex {
  readonly #byNode = new Map<string, Set<string>>()
  readonly #nodeOf = new Map<string, string>()

  devicesOf (nodeId: string): ReadonlySet<string> | undefined { return this.#byNode.get(nodeId) }

  /** Device `id` is now bound to `nodeId` (undefined: unbound or deleted). O(1). */
  set (id: string, nodeId: string | undefined): void {
    const prev = this.#nodeOf.get(id)
    if (prev !== undefined && prev !== nodeId) {
      const set = this.#byNode.get(prev)
      if (set?.delete(id) === true && set.size === 0) this.#byNode.delete(prev)
    }
    if (nodeId === undefined) { this.#nodeOf.delete(id); return }
    this.#nodeOf.set(id, nodeId)
    let set = this.#byNode.get(nodeId)
    if (set === undefined) { set = new Set(); this.#byNode.set(nodeId, set) }
    set.add(id)
  }
}
