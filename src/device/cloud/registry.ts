/**
 * Cloud device registry (DESIGN.md §8): device models, devices bound to
 * nodes, desired values, reported values and state from edges, per-device
 * and mapper credentials, persisted in LMDB (or memory) and synchronised to
 * the bound node over the hub's reliable lane (protocol.ts).
 *
 *   const reg = await DeviceRegistry.open({ path: './hub-data/devices', sink: hub })
 *   await reg.upsertModel({ namespace: 'default', name: 'thermostat', properties: [...] })
 *   await reg.upsertDevice({ namespace: 'default', name: 't1', model: 'default/thermostat', labels: {}, attributes: {}, nodeId: 'edge-1' })
 *   await reg.setDesired('default', 't1', { target: 21.5 })
 *
 * Every mutation is one transaction (`#mutate`): checks first, then the
 * revision bump, the record and the cloud → edge message
 * (registry-dispatch.ts), committed together; the promise resolves after the
 * commit (fsync in `sync` mode). Then the change is emitted ('change' event
 * and watch()). The operations live in registry-models.ts,
 * registry-devices.ts, registry-credentials.ts and registry-edges.ts; this
 * class owns the state they share (registry-context.ts).
 *
 * 'error' listener policy: the registry installs its own no-op 'error'
 * listener (as HubCore does), so failures that belong to nobody's call (a bad
 * report from an edge, a lane refusal) are logged, counted and emitted as
 * 'error' for observers but never crash the process.
 */
import { EventEmitter } from 'node:events'
import { systemClock, type Clock } from '../../util/clock.js'
import type { Envelope } from '../../codec/envelope.js'
import { StoreError, toError } from '../../errors.js'
import { nullLogger, type Logger } from '../../ops/logger.js'
import { Registry } from '../../ops/metrics.js'
import { DeviceError, DeviceRegistryClosedError } from '../errors.js'
import { deviceId, type DeviceModel, type DeviceSpec, type TwinValue } from '../model.js'
import { NodeIndex, type MutateOptions, type Mutation, type RegistryContext } from './registry-context.js'
import * as credentials from './registry-credentials.js'
import * as devices from './registry-devices.js'
import { Dispatcher } from './registry-dispatch.js'
import * as edges from './registry-edges.js'
import { UpstreamBatcher } from './registry-inbound.js'
import { createDeviceMetrics, type DeviceMetrics } from './registry-metrics.js'
import { NodeSyncBlocks } from './registry-sync-block.js'
import { resolveRegistryOptions, type RegistryLimits } from './registry-options.js'
import * as models from './registry-models.js'
import { viewOf } from './registry-records.js'
import { LmdbKv, MemoryKv, type DeviceKv, type KvTxn, type SharedCommit } from './registry-store.js'
import { workingTxn } from './registry-txn.js'
import type {
  DeviceChange, DeviceRegistryOptions, DeviceSink, DeviceView, ListDevicesFilter, StoredDevice, StoredMapper, UploadEntry, WatchFilter
} from './registry-types.js'
import { WatchSet } from './registry-watch.js'

interface RegistryEvents {
  change: [DeviceChange]
  error: [Error]
}

export class DeviceRegistry extends EventEmitter<RegistryEvents> {
  readonly metrics: DeviceMetrics
  readonly #kv: DeviceKv
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #dispatcher: Dispatcher
  readonly #watch: WatchSet
  readonly #ctx: RegistryContext
  readonly #inbound: UpstreamBatcher
  /** nodeId → device ids, for listDevices({nodeId}) and resync; rebuilt on open, updated after each commit. */
  readonly #byNode = new NodeIndex()
  readonly #syncBlocks: NodeSyncBlocks
  #closed = false
  readonly #shared: boolean

  private constructor (kv: DeviceKv, o: DeviceRegistryOptions, limits: RegistryLimits) {
    super()
    this.on('error', () => {}) // see header: failures are logged, counted and observable, never fatal
    this.#kv = kv
    this.#clock = o.clock ?? systemClock
    this.#logger = (o.logger ?? nullLogger).child({ component: 'devices' })
    this.metrics = createDeviceMetrics(o.metricsRegistry ?? new Registry(), () => ({
      devices: this.#closed ? 0 : this.#kv.count('devices'),
      models: this.#closed ? 0 : this.#kv.count('models'),
      dispatch: this.#closed ? 0 : this.#dispatcher.pendingCount(),
      watchers: this.#watch.size
    }))
    this.#syncBlocks = new NodeSyncBlocks(this.#clock, this.#logger, this.metrics)
    this.#watch = new WatchSet(limits.watchBuffer, limits.maxWatchers, () => this.metrics.watchOverflows.inc())
    this.#dispatcher = new Dispatcher(kv, this.metrics, this.#clock, this.#logger, limits.retryMs, err => this.#fail(err))
    this.#ctx = {
      kv,
      clock: this.#clock,
      logger: this.#logger,
      metrics: this.metrics,
      maxUploads: limits.maxUploads,
      maxUploadBytes: limits.maxUploadBytes,
      devicesOf: nodeId => this.#byNode.devicesOf(nodeId),
      mutate: async (fn, options) => await this.#mutate(fn, options),
      publish: changes => this.#publish(changes),
      emitError: err => { this.#emitError(err) }
    }
    this.#inbound = new UpstreamBatcher(this.#ctx)
    for (const { value } of kv.entries<StoredDevice>('devices')) this.#byNode.set(deviceId(value.spec), value.spec.nodeId)
    // A store shared with other registries (cluster mode): every commit, ours and theirs,
    // reaches the node index and the watchers from the store, in commit order; a dispatch
    // record whose writer died before handing it to the lane is handed over by whichever
    // registry sees it linger.
    this.#shared = kv.onCommit !== undefined
    if (kv.onCommit !== undefined) {
      kv.onCommit(c => { this.#sharedCommit(c) })
      this.#sweepOrphans(limits.retryMs)
    }
  }

  /** Open (creating) the registry; options are validated here, once. */
  static async open (options: DeviceRegistryOptions = {}): Promise<DeviceRegistry> {
    const limits = resolveRegistryOptions(options)
    const kv = options.kv ?? (options.path === undefined ? new MemoryKv() : await LmdbKv.open(options.path, options.durability ?? 'sync'))
    const reg = new DeviceRegistry(kv, options, limits)
    if (options.sink !== undefined) reg.attach(options.sink)
    return reg
  }

  /** Set the delivery sink and hand over everything committed but not yet delivered (e.g. after a crash). */
  attach (sink: DeviceSink): void {
    this.#dispatcher.sink = sink
    void this.#dispatcher.flush()
  }

  // ---- models (registry-models.ts) ------------------------------------------------

  /** Create or replace a model; its devices get desired values re-checked, a new revision and a snapshot. */
  async upsertModel (input: DeviceModel): Promise<{ model: DeviceModel, revision: number, devices: number }> {
    return await this.#api(async () => await models.upsertModel(this.#ctx, input))
  }

  getModel (namespace: string, name: string): DeviceModel | undefined {
    this.#open()
    return this.#kv.get<DeviceModel>('models', `${namespace}/${name}`)
  }

  listModels (namespace?: string): DeviceModel[] {
    this.#open()
    return this.#kv.entries<DeviceModel>('models', namespace === undefined ? undefined : `${namespace}/`).map(e => e.value)
  }

  /** Delete a model; refused (DeviceModelInUseError) while devices use it. */
  async deleteModel (namespace: string, name: string): Promise<void> {
    await this.#api(async () => { await models.deleteModel(this.#ctx, namespace, name) })
  }

  // ---- devices (registry-devices.ts) ----------------------------------------------

  /** Create or update a device (unchanged spec: no-op); re-binding sends the old node a removal ('rebound'). */
  async upsertDevice (input: DeviceSpec): Promise<DeviceView> {
    return await this.#api(async () => await devices.upsertDevice(this.#ctx, input))
  }

  getDevice (namespace: string, name: string): DeviceView | undefined {
    this.#open()
    const d = this.#kv.get<StoredDevice>('devices', `${namespace}/${name}`)
    return d === undefined ? undefined : this.#withSync(viewOf(d))
  }

  listDevices (filter: ListDevicesFilter = {}): DeviceView[] {
    this.#open()
    return devices.listDevices(this.#ctx, filter).map(v => this.#withSync(v))
  }

  /** A node's session started; `enabled`: its edge runs a device broker (registry-sync-block.ts). */
  noteEdgeDevices (nodeId: string, enabled: boolean): void {
    const only = this.#syncBlocks.resyncAfterNote(nodeId, enabled, this.#byNode.devicesOf(nodeId), id => this.#kv.get<StoredDevice>('devices', id)?.syncedRevision)
    if (only === false) return
    this.#api(async () => await edges.resync(this.#ctx, nodeId, only, true))
      .catch(err => this.#logger.warn({ nodeId, err }, 'device resync after the edge enabled devices failed'))
  }

  #withSync (v: DeviceView): DeviceView { return this.#syncBlocks.apply(v) }

  /** Delete a device; a bound node gets a removal (reason 'deleted'). */
  async deleteDevice (namespace: string, name: string): Promise<void> {
    await this.#api(async () => { await devices.deleteDevice(this.#ctx, namespace, name) })
  }

  /** Set desired values (KubeEdge "expected"), all or nothing; invalid ones are refused with typed errors. */
  async setDesired (namespace: string, name: string, values: Record<string, TwinValue>): Promise<DeviceView> {
    return await this.#api(async () => await devices.setDesired(this.#ctx, namespace, name, values))
  }

  // ---- credentials (registry-credentials.ts) --------------------------------------

  /** Issue (or rotate) the device's MQTT credential `{namespace}/{name}`; the password is returned once, only its hash kept. */
  async issueCredential (namespace: string, name: string): Promise<{ username: string, password: string }> {
    return await this.#api(async () => await credentials.issueCredential(this.#ctx, namespace, name))
  }

  /** Remove the device's credentials (its MQTT clients are refused once the edge has the snapshot). */
  async revokeCredential (namespace: string, name: string): Promise<DeviceView> {
    return await this.#api(async () => await credentials.setCredentials(this.#ctx, namespace, name, [], 'revoked'))
  }

  /** Grant mapper `mapper/{nodeId}/{name}` the devices `deviceIds` (bound to that node); the password is returned once. */
  async grantMapper (nodeId: string, name: string, deviceIds: string[]): Promise<{ username: string, password: string }> {
    return await this.#api(async () => await credentials.grantMapper(this.#ctx, nodeId, name, deviceIds))
  }

  async revokeMapper (nodeId: string, name: string): Promise<void> {
    await this.#api(async () => { await credentials.revokeMapper(this.#ctx, nodeId, name) })
  }

  /** Mapper grants (without password hashes). */
  listMappers (nodeId?: string): Array<Omit<StoredMapper, 'passwordHash'>> {
    this.#open()
    return credentials.listMappers(this.#ctx, nodeId)
  }

  // ---- edges (registry-edges.ts) ----------------------------------------------------

  /**
   * Full two-way resync of a node (operator action, POST /v1/nodes/{node}/resync):
   * fresh snapshots and mapper grants down (as `resendSnapshots`) AND a
   * ResyncRequest asking the edge for `full` reports of every device bound to
   * it (each marked `resyncPending` until its full report arrives).
   */
  async resyncNode (nodeId: string): Promise<number> {
    return await this.#api(async () => await edges.resync(this.#ctx, nodeId, undefined, true))
  }

  /**
   * Re-send snapshots of every device bound to `nodeId` (or the listed ones)
   * and its mapper grants, each at a new revision (registry-edges.ts): the
   * answer to an edge's ResyncRequest.
   */
  async resendSnapshots (nodeId: string, only?: Array<{ namespace: string, name: string }>): Promise<number> {
    return await this.#api(async () => await edges.resync(this.#ctx, nodeId, only, false))
  }

  /**
   * Apply one upstream `$device` message from `nodeId` (the authenticated
   * sender). Resolves once applied durably. Malformed or misdirected
   * messages are counted, logged and emitted as 'error' (DeviceReportError)
   * and resolve (a poison message must not block the lane); a store failure
   * rejects. Concurrent calls share transactions (registry-inbound.ts).
   */
  async handleUpstream (nodeId: string, env: Envelope): Promise<void> {
    this.#open()
    await this.#inbound.apply(nodeId, env)
  }

  /**
   * The hub's reliable lane (hub.ts setDeviceHandler): queue message `seq`
   * from `nodeId` for the next group commit. The lane acknowledges only
   * after `upstreamDurable(nodeId)` resolved.
   */
  async acceptUpstream (nodeId: string, env: Envelope, seq: number): Promise<void> {
    this.#open()
    await this.#inbound.accept(nodeId, env, seq)
  }

  /** Resolves when every message accepted from `nodeId` since the last call is durable; rejects if one is not (undefined: nothing outstanding). */
  upstreamDurable (nodeId: string): Promise<void> | undefined {
    return this.#inbound.durable(nodeId)
  }

  /** Newest upload records first (bounded log, `maxUploads`). */
  listUploads (filter: { nodeId?: string, limit?: number } = {}): UploadEntry[] {
    this.#open()
    return edges.listUploads(this.#ctx, filter)
  }

  // ---- watch / lifecycle --------------------------------------------------------------

  /** Changes from now on, filtered; bounded (see registry-watch.ts: a watcher that falls behind is closed with WatchOverflowError). */
  watch (filter: WatchFilter = {}): AsyncIterableIterator<DeviceChange> {
    this.#open()
    return this.#watch.open(filter)
  }

  get closed (): boolean { return this.#closed }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#orphanTimer)
    await this.#inbound.drain() // accepted messages are applied before the store closes
    this.#watch.close()
    await this.#dispatcher.close()
    await this.#kv.close()
  }

  // ---- internals ---------------------------------------------------------------------

  #open (): void {
    if (this.#closed) throw new DeviceRegistryClosedError()
  }

  /** Run a public operation: closed check, and every typed refusal counted by code. */
  async #api<T> (fn: () => Promise<T>): Promise<T> {
    try {
      this.#open()
      return await fn()
    } catch (err) {
      if (err instanceof DeviceError) this.metrics.rejections.inc({ code: err.code })
      throw err
    }
  }

  /**
   * The one shape of every change (registry-context.ts): `fn` runs in one
   * transaction and records what follows the commit; only after the commit
   * the node index is updated, the changes are emitted and the dispatch
   * records handed to the lane (a crash before that re-sends them on open).
   */
  async #mutate<T> (fn: (tx: KvTxn, m: Mutation) => T, options: MutateOptions = {}): Promise<T> {
    const reindex: Array<[string, string | undefined]> = []
    const now = options.now ?? this.#clock.now()
    let m: Mutation = { now, keys: [], changes: [], index: () => {} }
    let result: T
    try {
      result = await this.#kv.transaction(store => {
        // A fresh record and working copy per run: a shared store may run the callback again (registry-store.ts).
        reindex.length = 0
        m = { now, keys: [], changes: [], index: (id, nodeId) => { reindex.push([id, nodeId]) } }
        const tx = workingTxn(store) // devices and models decoded and written once per transaction (registry-txn.ts)
        let r: T
        try {
          r = fn(tx, m)
        } catch (err) {
          // As before the working copy: what the callback wrote before it threw reaches the store (lmdb-js commits it; see below).
          try { tx.flush() } catch { /* the callback's error is the one to report */ }
          throw err
        }
        tx.flush()
        tx.note?.(m.changes)
        return r
      })
    } catch (err) {
      // lmdb-js commits what a callback wrote before it threw (registry-store.ts): hand over any dispatch record it left.
      if (err instanceof StoreError) void this.#dispatcher.flush()
      throw err
    }
    if (!this.#shared) {
      for (const [id, nodeId] of reindex) this.#byNode.set(id, nodeId)
      this.#publish(m.changes)
    }
    if (m.keys.length > 0) {
      const flushed = this.#dispatcher.flush(m.keys)
      options.onDispatch?.(flushed)
      if (options.awaitDispatch === true) await flushed
    }
    return result
  }

  /** A commit on the shared store (ours or another registry's): re-index its devices, emit its changes. */
  #sharedCommit (c: SharedCommit): void {
    if (this.#closed && !c.local) return
    for (const w of c.writes) {
      if (w.db === 'devices') this.#byNode.set(String(w.key), (w.value as StoredDevice | undefined)?.spec.nodeId)
    }
    if (Array.isArray(c.note)) this.#publish(c.note as DeviceChange[])
  }

  #orphanTimer: ReturnType<Clock['setTimeout']> | undefined

  /**
   * Shared store: every `4 × retryMs`, hand over dispatch records that were already pending
   * at the previous look (same key, same record). Their writer normally does it right after
   * its commit; one that died in between leaves them, and the lane's supersession and the
   * edge's stale check make a second hand-off harmless.
   */
  #sweepOrphans (retryMs: number): void {
    let seen = new Map<string, number>()
    const tick = (): void => {
      if (this.#closed) return
      const now = new Map(this.#kv.entries<{ n: number }>('dispatch').map(e => [String(e.key), e.value.n]))
      const lingering = [...now].filter(([k, n]) => seen.get(k) === n).map(([k]) => k)
      seen = now
      if (lingering.length > 0) void this.#dispatcher.flush(lingering)
      this.#orphanTimer = this.#clock.setTimeout(tick, 4 * retryMs)
    }
    this.#orphanTimer = this.#clock.setTimeout(tick, 4 * retryMs)
  }

  #publish (changes: DeviceChange[]): void {
    for (const c of changes) {
      this.#watch.publish(c)
      try {
        this.emit('change', c)
      } catch (err) {
        this.#fail(toError(err)) // a throwing listener must not undo a committed change
      }
    }
  }

  #fail (err: Error): void {
    this.#logger.warn({ err }, 'device registry')
    this.#emitError(err)
  }

  #emitError (err: Error): void {
    try {
      this.emit('error', err)
    } catch (e) {
      this.#logger.warn({ err: e }, 'device registry error listener threw') // must not break a batch or a lane
    }
  }
}
