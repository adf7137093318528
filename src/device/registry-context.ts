/**
 * The internal boundary between DeviceRegistry (./registry.ts) and the
 * modules that implement its operations (registry-models.ts,
 * registry-devices.ts, registry-credentials.ts, registry-edges.ts). Not part
 * of the public API: the class hands its context to those functions so the
 * store, the clock and the post-commit steps stay in one place.
 */
import type { Clock } from '../clock.js'
import type { Logger } from '../ops/logger.js'
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
