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
 * Every mutation is one transaction: checks first, then the revision bump,
 * the record and the cloud → edge message (registry-dispatch.ts), committed
 * together; the promise resolves after the commit (fsync in `sync` mode).
 * Then the change is emitted ('change' event and watch()).
 *
 * 'error' listener policy: the registry installs its own no-op 'error'
 * listener (as HubCore does), so failures that belong to nobody's call (a bad
 * report from an edge, a lane refusal) are logged, counted and emitted as
 * 'error' for observers but never crash the process.
 */
import { EventEmitter } from 'node:events'
import { systemClock, type Clock } from '../clock.js'
import type { Envelope } from '../envelope.js'
import { InvalidOptionError, toError } from '../errors.js'
import { intOption } from '../options.js'
import { nullLogger, type Logger } from '../ops/logger.js'
import { Registry } from '../ops/metrics.js'
import { hashSecret, newSecret } from './credentials.js'
import {
  DeviceError, DeviceModelInUseError, DeviceModelNotFoundError, DeviceNotFoundError, DeviceRegistryClosedError, DeviceReportError,
  InvalidDeviceSpecError, MapperNotFoundError
} from './errors.js'
import { deviceId, type DeviceModel, type DeviceSpec, type TwinValue } from './model.js'
import { DEVICE_GROUP, type UploadRecord } from './protocol.js'
import { Dispatcher } from './registry-dispatch.js'
import { createDeviceMetrics, type DeviceMetrics } from './registry-metrics.js'
import {
  dispatchGrant, dispatchRemoval, dispatchResyncRequest, dispatchSnapshot, nextRevision, reconcileDesired, viewOf
} from './registry-records.js'
import { LmdbKv, MemoryKv, type DeviceKv } from './registry-store.js'
import type {
  DeviceChange, DeviceRegistryOptions, DeviceSink, DeviceView, ListDevicesFilter, StoredDevice, StoredMapper, UploadEntry, WatchFilter
} from './registry-types.js'
import { applyStateReport, applyTwinReport, parseStateReport, parseTwinReport, parseUpload } from './registry-upstream.js'
import { checkDeviceName, checkDesired, checkLabels, isDnsLabel, isNodeName, validateDeviceSpec, validateModel } from './registry-validate.js'
import { WatchSet } from './registry-watch.js'

interface RegistryEvents {
  change: [DeviceChange]
  error: [Error]
}

const MAX_MAPPER_DEVICES = 10_000

export class DeviceRegistry extends EventEmitter<RegistryEvents> {
  readonly metrics: DeviceMetrics
  readonly #kv: DeviceKv
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #dispatcher: Dispatcher
  readonly #watch: WatchSet
  readonly #maxUploads: number
  readonly #maxUploadBytes: number
  /** nodeId → device ids, for listDevices({nodeId}) and resync; rebuilt on open, updated after each commit. */
  readonly #byNode = new Map<string, Set<string>>()
  readonly #nodeOf = new Map<string, string>()
  #closed = false

  private constructor (kv: DeviceKv, o: DeviceRegistryOptions, watchBuffer: number, maxWatchers: number, maxUploads: number, maxUploadBytes: number, retryMs: number) {
    super()
    this.on('error', () => {}) // see header: failures are logged, counted and observable, never fatal
    this.#kv = kv
    this.#clock = o.clock ?? systemClock
    this.#logger = (o.logger ?? nullLogger).child({ component: 'devices' })
    this.#maxUploads = maxUploads
    this.#maxUploadBytes = maxUploadBytes
    this.metrics = createDeviceMetrics(o.metricsRegistry ?? new Registry(), () => ({
      devices: this.#closed ? 0 : this.#kv.count('devices'),
      models: this.#closed ? 0 : this.#kv.count('models'),
      dispatch: this.#closed ? 0 : this.#dispatcher.pendingCount(),
      watchers: this.#watch.size
    }))
    this.#watch = new WatchSet(watchBuffer, maxWatchers, () => this.metrics.watchOverflows.inc())
    this.#dispatcher = new Dispatcher(kv, this.metrics, this.#clock, this.#logger, retryMs, err => this.#fail(err))
    for (const { value } of kv.entries<StoredDevice>('devices')) this.#index(deviceId(value.spec), value.spec.nodeId)
  }

  /** Open (creating) the registry; options are validated here, once. */
  static async open (options: DeviceRegistryOptions = {}): Promise<DeviceRegistry> {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('devices', 'must be an object')
    if (options.path !== undefined && (typeof options.path !== 'string' || options.path === '')) throw new InvalidOptionError('devices.path', 'must be a directory path')
    if (options.durability !== undefined && options.durability !== 'sync' && options.durability !== 'relaxed') throw new InvalidOptionError('devices.durability', 'must be "sync" or "relaxed"')
    if (options.sink !== undefined && typeof options.sink?.sendReliable !== 'function') throw new InvalidOptionError('devices.sink', 'must have sendReliable(nodeId, envelope)')
    const watchBuffer = intOption('devices.watchBuffer', options.watchBuffer, 1024, 1, 1_000_000)
    const maxWatchers = intOption('devices.maxWatchers', options.maxWatchers, 1024, 1, 100_000)
    const maxUploads = intOption('devices.maxUploads', options.maxUploads, 10_000, 1, 10_000_000)
    const maxUploadBytes = intOption('devices.maxUploadBytes', options.maxUploadBytes, 65_536, 1, 16 * 1024 * 1024)
    const retryMs = intOption('devices.retryMs', options.retryMs, 5000, 10, 3_600_000)
    const kv = options.path === undefined ? new MemoryKv() : await LmdbKv.open(options.path, options.durability ?? 'sync')
    const reg = new DeviceRegistry(kv, options, watchBuffer, maxWatchers, maxUploads, maxUploadBytes, retryMs)
    if (options.sink !== undefined) reg.attach(options.sink)
    return reg
  }

  /** Set the delivery sink and hand over everything committed but not yet delivered (e.g. after a crash). */
  attach (sink: DeviceSink): void {
    this.#dispatcher.sink = sink
    void this.#dispatcher.flush()
  }

  // ---- models --------------------------------------------------------------------

  /**
   * Create or replace a model. Devices using it get desired values re-checked
   * against it (values that no longer fit are dropped, new defaults added), a
   * new revision and a snapshot.
   */
  async upsertModel (input: DeviceModel): Promise<{ model: DeviceModel, revision: number, devices: number }> {
    return await this.#api(async () => {
      const model = validateModel(input)
      const id = `${model.namespace}/${model.name}`
      const now = this.#clock.now()
      const changes: DeviceChange[] = []
      const keys: string[] = []
      const r = await this.#kv.transaction(tx => {
        const cur = tx.get<DeviceModel>('models', id)
        if (cur !== undefined && JSON.stringify(cur) === JSON.stringify(model)) return { rev: tx.get<number>('meta', 'revision') ?? 0, devices: 0, same: true }
        const rev = nextRevision(tx)
        const users = tx.entries<StoredDevice>('devices').filter(e => e.value.spec.model === id)
        tx.put('models', id, model)
        for (const { value: d } of users) {
          const next: StoredDevice = { ...d, desired: reconcileDesired(d.desired, model, rev, now).desired, revision: rev, updatedAt: now }
          tx.put('devices', deviceId(d.spec), next)
          dispatchSnapshot(tx, next, model, keys)
          changes.push({ type: 'device-upserted', namespace: d.spec.namespace, name: d.spec.name, revision: rev, at: now, ...nodeOf(d.spec), detail: { reason: 'model-changed' } })
        }
        return { rev, devices: users.length, same: false }
      })
      if (r.same) return { model, revision: r.rev, devices: 0 }
      this.#publish([{ type: 'model-upserted', namespace: model.namespace, name: model.name, revision: r.rev, at: now }, ...changes])
      void this.#dispatcher.flush(keys)
      return { model, revision: r.rev, devices: r.devices }
    })
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
    await this.#api(async () => {
      const id = `${namespace}/${name}`
      const now = this.#clock.now()
      const rev = await this.#kv.transaction(tx => {
        if (tx.get('models', id) === undefined) throw new DeviceModelNotFoundError(id)
        const users = tx.entries<StoredDevice>('devices').filter(e => e.value.spec.model === id).map(e => String(e.key))
        if (users.length > 0) throw new DeviceModelInUseError(id, users)
        const r = nextRevision(tx)
        tx.remove('models', id)
        return r
      })
      this.#publish([{ type: 'model-deleted', namespace, name, revision: rev, at: now }])
    })
  }

  // ---- devices -------------------------------------------------------------------

  /**
   * Create or update a device. Unchanged specs are a no-op (same revision).
   * A changed node binding sends a removal (reason 'rebound') to the old node
   * and a snapshot to the new one; the edge sequence and synced revision
   * start over for the new node.
   */
  async upsertDevice (input: DeviceSpec): Promise<DeviceView> {
    return await this.#api(async () => {
      const spec = validateDeviceSpec(input)
      const id = deviceId(spec)
      const now = this.#clock.now()
      const keys: string[] = []
      const r = await this.#kv.transaction(tx => {
        const model = tx.get<DeviceModel>('models', spec.model)
        if (model === undefined) throw new DeviceModelNotFoundError(spec.model)
        const old = tx.get<StoredDevice>('devices', id)
        if (old !== undefined && sameSpec(old.spec, spec)) return { d: old, changed: false, rebound: undefined }
        const rev = nextRevision(tx)
        const rebound = old?.spec.nodeId !== undefined && old.spec.nodeId !== spec.nodeId ? old.spec.nodeId : undefined
        const sameNode = old !== undefined && old.spec.nodeId === spec.nodeId
        const d: StoredDevice = {
          spec,
          revision: rev,
          desired: reconcileDesired(old?.desired ?? {}, model, rev, now).desired,
          reported: old?.reported ?? {},
          state: old?.state ?? 'unknown',
          stateAt: old?.stateAt ?? null,
          lastSeen: old?.lastSeen ?? null,
          lastEdgeSeq: sameNode ? old.lastEdgeSeq : 0,
          syncedRevision: sameNode ? old.syncedRevision : 0,
          resyncPending: sameNode ? old.resyncPending : false,
          credentials: old?.credentials ?? [],
          createdAt: old?.createdAt ?? now,
          updatedAt: now
        }
        if (rebound !== undefined) dispatchRemoval(tx, rebound, spec, rev, 'rebound', keys)
        tx.put('devices', id, d)
        dispatchSnapshot(tx, d, model, keys)
        return { d, changed: true, rebound }
      })
      if (r.changed) {
        this.#index(id, spec.nodeId)
        this.#publish([{ type: 'device-upserted', namespace: spec.namespace, name: spec.name, revision: r.d.revision, at: now, ...nodeOf(spec), detail: r.rebound === undefined ? {} : { reboundFrom: r.rebound } }])
        void this.#dispatcher.flush(keys)
      }
      return viewOf(r.d)
    })
  }

  getDevice (namespace: string, name: string): DeviceView | undefined {
    this.#open()
    const d = this.#kv.get<StoredDevice>('devices', `${namespace}/${name}`)
    return d === undefined ? undefined : viewOf(d)
  }

  listDevices (filter: ListDevicesFilter = {}): DeviceView[] {
    this.#open()
    const labels = filter.labels === undefined ? undefined : checkLabels(filter.labels, 'labels selector')
    let list: StoredDevice[]
    if (filter.nodeId !== undefined) {
      list = [...this.#byNode.get(filter.nodeId) ?? []].sort().flatMap(id => { const d = this.#kv.get<StoredDevice>('devices', id); return d === undefined ? [] : [d] })
    } else {
      list = this.#kv.entries<StoredDevice>('devices', filter.namespace === undefined ? undefined : `${filter.namespace}/`).map(e => e.value)
    }
    const limit = filter.limit === undefined ? Infinity : Math.max(1, Math.floor(filter.limit))
    const out: DeviceView[] = []
    for (const d of list) {
      if (out.length >= limit) break
      if (filter.after !== undefined && deviceId(d.spec) <= filter.after) continue
      if (match(d)) out.push(viewOf(d))
    }
    return out
    function match (d: StoredDevice): boolean {
      return (filter.namespace === undefined || d.spec.namespace === filter.namespace) &&
        (filter.nodeId === undefined || d.spec.nodeId === filter.nodeId) &&
        (filter.model === undefined || d.spec.model === filter.model) &&
        (labels === undefined || Object.entries(labels).every(([k, v]) => d.spec.labels[k] === v))
    }
  }

  /** Delete a device; a bound node gets a removal (reason 'deleted'). */
  async deleteDevice (namespace: string, name: string): Promise<void> {
    await this.#api(async () => {
      const id = `${namespace}/${name}`
      const now = this.#clock.now()
      const keys: string[] = []
      const r = await this.#kv.transaction(tx => {
        const d = tx.get<StoredDevice>('devices', id)
        if (d === undefined) throw new DeviceNotFoundError(id)
        const rev = nextRevision(tx)
        if (d.spec.nodeId !== undefined) dispatchRemoval(tx, d.spec.nodeId, d.spec, rev, 'deleted', keys)
        tx.remove('devices', id)
        return { rev, nodeId: d.spec.nodeId }
      })
      this.#index(id, undefined)
      this.#publish([{ type: 'device-deleted', namespace, name, revision: r.rev, at: now, ...(r.nodeId === undefined ? {} : { nodeId: r.nodeId }) }])
      void this.#dispatcher.flush(keys)
    })
  }

  /**
   * Set desired values (KubeEdge "expected"). Unknown properties, ReadOnly
   * properties, wrong types and out-of-range values are refused with typed
   * errors; nothing is applied unless every value is valid.
   */
  async setDesired (namespace: string, name: string, values: Record<string, TwinValue>): Promise<DeviceView> {
    return await this.#api(async () => {
      const id = `${namespace}/${name}`
      const now = this.#clock.now()
      const keys: string[] = []
      const r = await this.#kv.transaction(tx => {
        const d = tx.get<StoredDevice>('devices', id)
        if (d === undefined) throw new DeviceNotFoundError(id)
        const model = tx.get<DeviceModel>('models', d.spec.model)
        if (model === undefined) throw new DeviceModelNotFoundError(d.spec.model)
        const checked = checkDesired(model, values)
        const rev = nextRevision(tx)
        const desired = { ...d.desired }
        for (const [k, v] of Object.entries(checked)) desired[k] = { value: v, revision: rev, timestamp: now }
        const next: StoredDevice = { ...d, desired, revision: rev, updatedAt: now }
        tx.put('devices', id, next)
        dispatchSnapshot(tx, next, model, keys)
        return { next, checked }
      })
      const changed = Object.fromEntries(Object.keys(r.checked).map(k => [k, r.next.desired[k]]))
      this.#publish([{ type: 'desired', namespace, name, revision: r.next.revision, at: now, ...nodeOf(r.next.spec), detail: { desired: changed, source: 'cloud' } }])
      void this.#dispatcher.flush(keys)
      return viewOf(r.next)
    })
  }

  // ---- credentials -----------------------------------------------------------------

  /**
   * Issue (or rotate) the device's MQTT credential. The password is returned
   * once; only its scrypt hash is stored and sent to the edge in the snapshot.
   * Username = device id `{namespace}/{name}`. Rotation replaces the old one.
   */
  async issueCredential (namespace: string, name: string): Promise<{ username: string, password: string }> {
    return await this.#api(async () => {
      checkDeviceName(namespace, name)
      const password = newSecret()
      const passwordHash = await hashSecret(password)
      const username = `${namespace}/${name}`
      await this.#credentials(namespace, name, [{ username, passwordHash, issuedAt: this.#clock.now() }], 'issued')
      return { username, password }
    })
  }

  /** Remove the device's credentials (its MQTT clients are refused once the edge has the snapshot). */
  async revokeCredential (namespace: string, name: string): Promise<DeviceView> {
    return await this.#api(async () => await this.#credentials(namespace, name, [], 'revoked'))
  }

  async #credentials (namespace: string, name: string, credentials: StoredDevice['credentials'], action: string): Promise<DeviceView> {
    const id = `${namespace}/${name}`
    const now = this.#clock.now()
    const keys: string[] = []
    const next = await this.#kv.transaction(tx => {
      const d = tx.get<StoredDevice>('devices', id)
      if (d === undefined) throw new DeviceNotFoundError(id)
      const model = tx.get<DeviceModel>('models', d.spec.model)
      if (model === undefined) throw new DeviceModelNotFoundError(d.spec.model)
      const n: StoredDevice = { ...d, credentials, revision: nextRevision(tx), updatedAt: now }
      tx.put('devices', id, n)
      dispatchSnapshot(tx, n, model, keys)
      return n
    })
    this.#publish([{ type: 'credentials', namespace, name, revision: next.revision, at: now, ...nodeOf(next.spec), detail: { action } }])
    void this.#dispatcher.flush(keys)
    return viewOf(next)
  }

  /**
   * Grant a mapper on `nodeId` the right to act for `deviceIds` (each bound to
   * that node). Returns the password once; re-granting rotates it. Username =
   * `mapper/{nodeId}/{name}`.
   */
  async grantMapper (nodeId: string, name: string, deviceIds: string[]): Promise<{ username: string, password: string }> {
    return await this.#api(async () => {
      if (!isNodeName(nodeId)) throw new InvalidDeviceSpecError('nodeId', 'must be a node name')
      if (!isDnsLabel(name)) throw new InvalidDeviceSpecError('name', 'mapper names must be DNS-1123 labels')
      if (!Array.isArray(deviceIds) || deviceIds.length > MAX_MAPPER_DEVICES) throw new InvalidDeviceSpecError('devices', `must be an array of at most ${MAX_MAPPER_DEVICES} device ids`)
      const devices = [...new Set(deviceIds)].sort()
      for (const id of devices) if (typeof id !== 'string' || !/^[^/]+\/[^/]+$/.test(id)) throw new InvalidDeviceSpecError('devices', `${JSON.stringify(id)} is not a device id "{namespace}/{name}"`)
      const password = newSecret()
      const passwordHash = await hashSecret(password)
      const username = `mapper/${nodeId}/${name}`
      const now = this.#clock.now()
      const keys: string[] = []
      const m = await this.#kv.transaction(tx => {
        for (const id of devices) {
          const d = tx.get<StoredDevice>('devices', id)
          if (d === undefined) throw new DeviceNotFoundError(id)
          if (d.spec.nodeId !== nodeId) throw new InvalidDeviceSpecError('devices', `device ${id} is not bound to node ${nodeId}`)
        }
        const grant: StoredMapper = { nodeId, name, username, passwordHash, devices, revision: nextRevision(tx), issuedAt: now }
        tx.put('mappers', `${nodeId}/${name}`, grant)
        dispatchGrant(tx, grant, 'update', keys)
        return grant
      })
      this.#publish([{ type: 'mapper', namespace: nodeId, name, nodeId, revision: m.revision, at: now, detail: { action: 'granted', devices } }])
      void this.#dispatcher.flush(keys)
      return { username, password }
    })
  }

  async revokeMapper (nodeId: string, name: string): Promise<void> {
    await this.#api(async () => {
      const id = `${nodeId}/${name}`
      const now = this.#clock.now()
      const keys: string[] = []
      const rev = await this.#kv.transaction(tx => {
        const m = tx.get<StoredMapper>('mappers', id)
        if (m === undefined) throw new MapperNotFoundError(id)
        const r = nextRevision(tx)
        tx.remove('mappers', id)
        dispatchGrant(tx, { ...m, revision: r }, 'delete', keys)
        return r
      })
      this.#publish([{ type: 'mapper', namespace: nodeId, name, nodeId, revision: rev, at: now, detail: { action: 'revoked' } }])
      void this.#dispatcher.flush(keys)
    })
  }

  /** Mapper grants (without password hashes). */
  listMappers (nodeId?: string): Array<Omit<StoredMapper, 'passwordHash'>> {
    this.#open()
    return this.#kv.entries<StoredMapper>('mappers', nodeId === undefined ? undefined : `${nodeId}/`).map(({ value: { passwordHash: _, ...rest } }) => rest)
  }

  // ---- edges -------------------------------------------------------------------------

  /**
   * Full two-way resync of a node (operator action, POST /v1/nodes/{node}/resync):
   * fresh snapshots and mapper grants down (as `resendSnapshots`) AND a
   * ResyncRequest asking the edge for `full` reports of every device bound to
   * it (each marked `resyncPending` until its full report arrives).
   */
  async resyncNode (nodeId: string): Promise<number> {
    return await this.#api(async () => await this.#resync(nodeId, undefined, true))
  }

  /**
   * Re-send snapshots of every device bound to `nodeId` (or the listed ones)
   * and its mapper grants: the answer to an edge's ResyncRequest. Each gets a
   * new revision, because the edge drops a message whose version it already
   * stored (DESIGN.md §5) — a re-send at the same revision would not heal an
   * edge that lost or distrusts its copy.
   */
  async resendSnapshots (nodeId: string, only?: Array<{ namespace: string, name: string }>): Promise<number> {
    return await this.#api(async () => await this.#resync(nodeId, only, false))
  }

  async #resync (nodeId: string, only: Array<{ namespace: string, name: string }> | undefined, requestReports: boolean): Promise<number> {
    if (!isNodeName(nodeId)) throw new InvalidDeviceSpecError('nodeId', 'must be a node name')
    const now = this.#clock.now()
    const keys: string[] = []
    const ids = only === undefined ? [...this.#byNode.get(nodeId) ?? []] : only.slice(0, MAX_MAPPER_DEVICES).map(d => `${d.namespace}/${d.name}`)
    const changes: DeviceChange[] = []
    let requested = 0
    await this.#kv.transaction(tx => {
      const rev = nextRevision(tx)
      for (const id of ids) {
        const d = tx.get<StoredDevice>('devices', id)
        if (d === undefined || d.spec.nodeId !== nodeId) continue
        const model = tx.get<DeviceModel>('models', d.spec.model)
        if (model === undefined) continue
        const next: StoredDevice = { ...d, revision: rev, resyncPending: d.resyncPending || requestReports }
        tx.put('devices', id, next)
        dispatchSnapshot(tx, next, model, keys)
        changes.push({ type: 'resync', namespace: d.spec.namespace, name: d.spec.name, nodeId, revision: rev, at: now, detail: { direction: requestReports ? 'both' : 'answered' } })
      }
      if (only === undefined) {
        for (const { key, value } of tx.entries<StoredMapper>('mappers', `${nodeId}/`)) {
          const m: StoredMapper = { ...value, revision: rev }
          tx.put('mappers', key, m)
          dispatchGrant(tx, m, 'update', keys)
        }
      }
      if (requestReports) requested = dispatchResyncRequest(tx, nodeId, ids, keys)
    })
    this.metrics.resyncs.inc({ direction: 'answered' })
    if (requested > 0) this.metrics.resyncs.inc({ direction: 'requested' })
    this.#publish(changes)
    await this.#dispatcher.flush(keys)
    return changes.length
  }

  /**
   * Apply one upstream `$device` message from `nodeId` (the authenticated
   * sender). Resolves once applied durably — the hub acks the edge only
   * then. Malformed or misdirected messages are counted, logged and emitted
   * as 'error' (DeviceReportError) and resolve (a poison message must not
   * block the lane); a store failure rejects, so the edge resends.
   */
  async handleUpstream (nodeId: string, env: Envelope): Promise<void> {
    this.#open()
    const op = env.router.operation
    const res = env.router.resource
    const kind = res.startsWith('twin/') ? 'twin' : res.startsWith('state/') ? 'state' : res.startsWith('upload/') ? 'upload' : res.startsWith('device-resync/') ? 'resync' : 'unknown'
    const now = this.#clock.now()
    try {
      if (env.router.group !== DEVICE_GROUP) throw new DeviceReportError('invalid', `not a ${DEVICE_GROUP} message`)
      switch (kind) {
        case 'twin': {
          if (op !== 'report') throw new DeviceReportError('invalid', `twin messages use operation "report", not ${JSON.stringify(op)}`)
          const report = parseTwinReport(env.content)
          const r = await this.#kv.transaction(tx => applyTwinReport(tx, nodeId, report, now, this.#byNode.get(nodeId) ?? []))
          this.metrics.upstream.inc({ kind, result: r.result })
          if (r.accepted.length > 0) this.metrics.merges.inc({ result: 'accepted' }, r.accepted.length)
          if (r.rejected.length > 0) this.metrics.merges.inc({ result: 'rejected' }, r.rejected.length)
          if (r.resyncRequested) this.metrics.resyncs.inc({ direction: 'requested' })
          this.#publish(r.changes)
          await this.#dispatcher.flush(r.keys)
          return
        }
        case 'state': {
          const s = parseStateReport(env.content)
          const c = await this.#kv.transaction(tx => applyStateReport(tx, nodeId, s, now))
          this.metrics.upstream.inc({ kind, result: c === undefined ? 'stale' : 'applied' })
          if (c !== undefined) this.#publish([c])
          return
        }
        case 'upload': {
          await this.#upload(nodeId, parseUpload(env.content), now)
          this.metrics.upstream.inc({ kind, result: 'applied' })
          return
        }
        case 'resync': {
          const c = env.content as { devices?: unknown } | undefined
          const only = Array.isArray(c?.devices) ? (c.devices as Array<{ namespace: string, name: string }>).filter(d => typeof d?.namespace === 'string' && typeof d?.name === 'string') : undefined
          await this.#resync(nodeId, only, false)
          this.metrics.upstream.inc({ kind, result: 'applied' })
          return
        }
        default:
          throw new DeviceReportError('invalid', `unknown device resource ${JSON.stringify(res.slice(0, 100))}`)
      }
    } catch (err) {
      if (!(err instanceof DeviceReportError)) throw err
      this.metrics.upstream.inc({ kind, result: err.reason })
      this.#logger.warn({ nodeId, resource: res.slice(0, 200), reason: err.reason, err: err.message }, 'device message from edge not applied')
      this.emit('error', err)
    }
  }

  async #upload (nodeId: string, u: UploadRecord, now: number): Promise<void> {
    const truncated = u.payload.byteLength > this.#maxUploadBytes
    if (truncated) this.metrics.uploadDrops.inc({ reason: 'truncated' })
    const payload = truncated ? u.payload.slice(0, this.#maxUploadBytes) : u.payload
    let evicted = 0
    const n = await this.#kv.transaction(tx => {
      const [next, first] = tx.get<[number, number]>('meta', 'log') ?? [1, 1]
      const entry: UploadEntry = { n: next, nodeId, topic: u.topic, payload, timestamp: u.timestamp, receivedAt: now, truncated }
      tx.put('uploads', next, entry)
      let f = first
      while (next + 1 - f > this.#maxUploads) { tx.remove('uploads', f); f++; evicted++ }
      tx.put('meta', 'log', [next + 1, f])
      return next
    })
    if (evicted > 0) this.metrics.uploadDrops.inc({ reason: 'evicted' }, evicted)
    const m = /^\$hw\/events\/(?:upload|device)\/([^/]+)\/([^/]+)/.exec(u.topic)
    this.#publish([{ type: 'upload', namespace: m?.[1] ?? '', name: m?.[2] ?? '', nodeId, revision: 0, at: now, detail: { n, topic: u.topic, bytes: payload.byteLength, timestamp: u.timestamp } }])
  }

  /** Newest upload records first (bounded log, `maxUploads`). */
  listUploads (filter: { nodeId?: string, limit?: number } = {}): UploadEntry[] {
    this.#open()
    const limit = Math.max(1, Math.min(filter.limit ?? 100, 10_000))
    const out: UploadEntry[] = []
    const all = this.#kv.entries<UploadEntry>('uploads')
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const e = all[i]?.value
      if (e !== undefined && (filter.nodeId === undefined || e.nodeId === filter.nodeId)) out.push(e)
    }
    return out
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
    this.#watch.close()
    await this.#dispatcher.close()
    await this.#kv.close()
  }

  // ---- internals ---------------------------------------------------------------------

  #open (): void {
    if (this.#closed) throw new DeviceRegistryClosedError()
  }

  /** Run a public mutation: closed check, and every typed refusal counted by code. */
  async #api<T> (fn: () => Promise<T>): Promise<T> {
    try {
      this.#open()
      return await fn()
    } catch (err) {
      if (err instanceof DeviceError) this.metrics.rejections.inc({ code: err.code })
      throw err
    }
  }

  #index (id: string, nodeId: string | undefined): void {
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
    this.emit('error', err)
  }
}

function sameSpec (a: DeviceSpec, b: DeviceSpec): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b))
}

function canonical (s: DeviceSpec): unknown {
  const sortObj = (o: Record<string, string>): Array<[string, string]> => Object.entries(o).sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0)
  return [s.namespace, s.name, s.model, sortObj(s.labels), sortObj(s.attributes), s.nodeId ?? null]
}

function nodeOf (spec: DeviceSpec): { nodeId?: string } {
  return spec.nodeId === undefined ? {} : { nodeId: spec.nodeId }
}

