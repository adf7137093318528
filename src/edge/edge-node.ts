/**
 * `EdgeNode`: the edge role as a library object (EdgeHub + Beehive +
 * ServiceBus). Composes the hub connector, the module bus, the ServiceBus
 * module and local upstream endpoint, metrics and the admin server.
 *
 *   const edge = await EdgeNode.start({ hub: 'quic://hub:10001', nodeId: 'edge-1', token, dataDir: './edge-data' })
 *   const mod = edge.register({ name: 'app', group: 'app' })
 */
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { Gauge } from 'prom-client'
import { systemClock, type Clock } from '../util/clock.js'
import { newErrorResponse, type Envelope } from '../codec/envelope.js'
import { ConnectionClosedError, EdgeFabricError, InvalidOptionError, QuotaExceededError } from '../errors.js'
import { adminAuthFrom, startAdminServer, type AdminServer } from '../ops/admin-server.js'
import { createReliableMetrics, type ReliableMetrics } from '../ops/reliable-metrics.js'
import { registerBuildInfo } from '../ops/build-info.js'
import { createEdgeApi } from '../ops/admin-edge.js'
import { edgeAdminSource } from './edge-admin-source.js'
import { nativeBinding } from '../transport/quic-native.js'
import { nullLogger, type Logger } from '../ops/logger.js'
import { PairTally } from './pair-tally.js'
import { Registry, createEdgeMetrics, type EdgeMetrics } from '../ops/metrics.js'
import { intOption } from '../util/options.js'
import { Backoff } from '../session/liveness.js'
import { CAPABILITIES } from '../session/protocol.js'
import { ModuleBus, type ModuleHandle, type RegisterOptions } from './bus.js'
import { checkEdgeOptions, pickConnectionOptions, type EdgeOptions } from './edge-options.js'
import type { DispatchResult } from './bus-types.js'
import { EdgeConnector, type ConnectorState, type HubRefusedError } from './connector.js'
import { createNextEdgeKey, discardNextEdgeKey, loadNextEdgeKey, loadOrCreateEdgeIdentity, promoteNextEdgeKey, signChallenge, type EdgeIdentity } from '../identity/node-key.js'
import { registerServiceBus, startUpstreamEndpoint, type ServiceBus, type UpstreamEndpoint } from './servicebus.js'
import { resolveJoin, writeJoinState, type JoinSetup } from './join-state.js'
import { checkHubUrl } from './hub-url.js'
import { lockDataDir, type DataDirLock } from '../util/data-dir-lock.js'
import { defaultCodec } from '../codec/codec.js'
import { ReliableEndpoint } from '../reliable/endpoint.js'
import { isReliableMessage } from '../reliable/protocol.js'
import type { DeliveryVerdict } from '../reliable/receiver.js'
import type { EnqueueOutcome, LaneEvent } from '../reliable/sender.js'
import type { ReliableStore, ResourceRecord } from '../reliable/store.js'
import { startLocalApi, type LocalApi, type ResourceView } from './local-api.js'
import { join } from 'node:path'
import { DEVICE_GROUP } from '../device/protocol.js'
import type { EdgeDevices, DeviceOptions } from '../device/edge/devices.js'
import type { DmiOptions } from '../device/edge/dmi/options.js'
import type { EdgeDmi } from '../device/edge/dmi/dmi.js'

/** The hub cannot be reached right now (best-effort lane: the message was not sent). */
export class HubUnreachableError extends EdgeFabricError {
  static readonly code = 'EF_HUB_UNREACHABLE'
  constructor (message = 'not connected to the hub') {
    super(HubUnreachableError.code, message)
  }
}

export type { EdgeOptions } from './edge-options.js'

/** Deliveries from the hub awaiting mailbox space before the hub link is paused. */
const MAX_DISPATCH_IN_FLIGHT = 1024

interface EdgeEvents {
  lane: [LaneEvent]
  connected: [{ url: string }]
  disconnected: [{ reason: string }]
  failed: [HubRefusedError]
  error: [Error]
}

export class EdgeNode extends EventEmitter<EdgeEvents> {
  readonly nodeId: string
  readonly bus: ModuleBus
  readonly registry: Registry
  readonly metrics: EdgeMetrics
  #identity: EdgeIdentity
  readonly #dataDir: string
  readonly store: ReliableStore
  readonly #lane: ReliableEndpoint
  /** Reliable-delivery metrics (src/ops/reliable-metrics.ts); set by start(). */
  reliableMetrics: ReliableMetrics | undefined
  readonly #connector: EdgeConnector
  readonly #logger: Logger
  readonly #clock: Clock
  #admin: AdminServer | undefined
  #edgeApi: { close (): void } | undefined
  #serviceBus: ServiceBus | undefined
  #upstreamEndpoint: UpstreamEndpoint | undefined
  #localApi: LocalApi | undefined
  #devices: EdgeDevices | undefined
  #dmi: EdgeDmi | undefined
  #ownsStore = false
  #lock: DataDirLock | undefined
  #closed = false
  #inFlight = 0
  readonly #onReliable: EdgeOptions['onReliable']
  /** Per-message counts, summed until the labels change or a scrape (pair-tally.ts). */
  readonly #down = new PairTally((direction, transport, n) => { this.metrics.messages.add({ direction: direction as 'down', transport }, n) })
  readonly #drops = new PairTally((module, reason, n) => { this.metrics.mailboxDrops.add({ module, reason }, n) })

  private constructor (o: EdgeOptions, identity: EdgeIdentity, registry: Registry, metrics: EdgeMetrics, store: ReliableStore, join: JoinSetup, nextKey: EdgeIdentity | undefined) {
    super()
    this.store = store
    this.on('error', () => {})
    this.nodeId = o.nodeId
    if (o.onReliable !== undefined && typeof o.onReliable !== 'function') throw new InvalidOptionError('onReliable', 'must be a function')
    this.#onReliable = o.onReliable
    this.#identity = identity
    this.#dataDir = o.dataDir
    this.registry = registry
    this.metrics = metrics
    this.#clock = o.clock ?? systemClock
    this.#logger = (o.logger ?? nullLogger).child({ component: 'edge', nodeId: o.nodeId })
    const hubUrls = Array.isArray(o.hub) ? o.hub : [o.hub]
    if (hubUrls.length === 0 || !hubUrls.every(u => typeof u === 'string' && u.length > 0)) {
      throw new InvalidOptionError('hub', 'must be a hub URL or a non-empty list of them')
    }
    for (const u of hubUrls) {
      if (checkHubUrl(u, o.insecureTransport === true) === 'insecure-loopback') {
        this.#logger.warn({ url: u }, 'plain ws:// hub URL on loopback: not encrypted, hub not authenticated')
      }
    }
    this.bus = new ModuleBus({
      clock: this.#clock,
      logger: this.#logger.child({ component: 'bus' }),
      defaultRequestTimeoutMs: intOption('requestTimeoutMs', o.requestTimeoutMs, 30_000, 1),
      ...(o.defaultMailbox !== undefined ? { defaultMailbox: o.defaultMailbox } : {}),
      onDrop: (module, reason) => { this.#drops.count(module, reason) },
      upstream: env => this.#sendUpstream(env)
    })
    const connOpts = pickConnectionOptions(o)
    this.#connector = new EdgeConnector({
      hubUrls,
      nodeId: o.nodeId,
      ...(join.join !== undefined ? { join: join.join } : {}),
      joined: join.joined,
      onJoined: async welcome => {
        // Best effort: if this write fails the next start presents the token
        // again, which the hub accepts from the same key.
        await writeJoinState(o.dataDir, { v: 1, node: o.nodeId, hub: welcome.hub, pins: join.pins, joinedAt: this.#clock.now() })
          .catch((err: unknown) => this.#logger.warn({ err, file: join.file }, 'could not record the join; the next start needs the token again'))
      },
      key: { publicKey: identity.publicKeyRaw, sign: (nonce, ctx) => signChallenge(identity, nonce, ctx) },
      ...(nextKey !== undefined
        ? {
            nextKey: { publicKey: nextKey.publicKeyRaw, sign: (nonce: Uint8Array, ctx: string) => signChallenge(nextKey, nonce, ctx) },
            onNextKeyUsed: async () => {
              await promoteNextEdgeKey(o.dataDir)
              this.#identity = { ...nextKey, file: identity.file }
              this.#logger.warn({ keyId: nextKey.keyId }, 'an interrupted key rotation had reached the hub: now using the new key')
            }
          }
        : {}),
      pins: join.pins,
      ...(o.labels !== undefined ? { labels: o.labels } : {}),
      // Without a device broker the hub is told so, and its registry says why devices do not sync.
      capabilities: CAPABILITIES.filter(c => c !== 'devices' || (o.devices !== undefined && o.devices !== false)),
      clock: this.#clock,
      logger: this.#logger,
      handshakeTimeoutMs: intOption('handshakeTimeoutMs', o.handshakeTimeoutMs, 10_000, 10),
      dialTimeoutMs: intOption('dialTimeoutMs', o.dialTimeoutMs, 10_000, 10),
      backoff: new Backoff(intOption('backoff.baseMs', o.backoff?.baseMs, 500, 1), intOption('backoff.capMs', o.backoff?.capMs, 30_000, 1)),
      connection: connOpts
    })
    this.#lane = new ReliableEndpoint('cloud', {
      source: o.nodeId,
      store,
      clock: this.#clock,
      codec: o.codec ?? defaultCodec,
      quota: {
        maxMessages: intOption('quota.maxMessages', o.quota?.maxMessages, 1_000_000, 1),
        maxBytes: intOption('quota.maxBytes', o.quota?.maxBytes, 1024 ** 3, 1),
        overflow: o.quota?.overflow ?? 'reject'
      },
      onEvent: e => {
        this.reliableMetrics?.onLaneEvent(e)
        if (e.type === 'store-error' || e.type === 'gap' || e.type === 'dead-letter' || e.type === 'held') this.#logger.warn(e, 'reliable lane')
        this.emit('lane', e)
      },
      onCount: (what, n) => this.reliableMetrics?.onCount(what, n),
      deliver: env => this.#deliverReliable(env)
    })
    this.#connector.on('message', env => {
      if (isReliableMessage(env)) {
        try {
          this.#lane.handle(env)
        } catch (err) {
          this.#connector.connection?.abort(err as Error)
        }
        return
      }
      // Bounded dispatch: while many deliveries wait on full mailboxes ('block'
      // policy), stop reading from the hub so transport flow control pushes back.
      this.#inFlight++
      if (this.#inFlight === MAX_DISPATCH_IN_FLIGHT) this.#connector.connection?.pause()
      void this.#fromHub(env).finally(() => {
        this.#inFlight--
        if (this.#inFlight === MAX_DISPATCH_IN_FLIGHT / 2) this.#connector.connection?.resume()
      })
    })
    this.#connector.on('connected', ({ url, connection }) => {
      metrics.setConnected(true)
      this.#lane.attach(connection)
      this.bus.broadcastState('connected')
      this.#logger.info({ url, transport: connection.transport }, 'edge connected')
      this.emit('connected', { url })
    })
    this.#connector.on('disconnected', ({ reason }) => {
      metrics.setConnected(false)
      this.#lane.detach()
      this.bus.broadcastState('disconnected')
      this.emit('disconnected', { reason })
    })
    this.#connector.on('failed', err => {
      this.emit('failed', err)
    })
  }

  static async start (o: EdgeOptions): Promise<EdgeNode> {
    const { deviceOptions, dmiOptions } = checkEdgeOptions(o)
    await mkdir(o.dataDir, { recursive: true })
    // One process per data dir (issue 12): before any file in it is opened.
    const lock = await lockDataDir(o.dataDir, `edge ${o.nodeId}`)
    let identity: EdgeIdentity
    let joinSetup: JoinSetup
    let nextKey: EdgeIdentity | undefined
    try {
      identity = await loadOrCreateEdgeIdentity(o.dataDir)
      joinSetup = await resolveJoin(o.dataDir, o.nodeId, o.token)
      nextKey = await loadNextEdgeKey(o.dataDir)
    } catch (err) {
      await lock.release()
      throw err
    }
    const registry = new Registry()
    let edgeRef: EdgeNode | undefined
    // First in the registry so it refreshes scrape-time values before the rest are read.
    new Gauge({
      name: 'edgefabric_edge_hub_link_state',
      help: 'Hub link state: 1 connected, 0 otherwise.',
      registers: [registry],
      collect () { edgeRef?.refreshMetrics(); this.set(edgeRef?.state === 'connected' ? 1 : 0) }
    })
    const owns = o.store === undefined
    let store: ReliableStore
    let edge: EdgeNode
    try {
      store = o.store ?? await (await import('../reliable/lmdb-store.js')).LmdbStore.open(join(o.dataDir, 'reliable'), { durability: o.durability ?? 'sync' })
    } catch (err) {
      await lock.release()
      throw err
    }
    try {
      edge = new EdgeNode(o, identity, registry, createEdgeMetrics(registry, { processMetrics: o.metrics?.processMetrics === true }), store, joinSetup, nextKey)
    } catch (err) {
      if (owns) await store.close()
      await lock.release()
      throw err
    }
    edge.#lock = lock
    edge.#ownsStore = owns
    edgeRef = edge
    registerBuildInfo(registry, 'edge', await nativeBinding().then(() => true, () => false))
    const lane = edge.#lane
    edge.reliableMetrics = createReliableMetrics(registry, { role: 'edge', store: () => edge.store, lanes: () => [lane.sender], now: () => edge.#clock.now() })
    if ('onCommit' in store) (store as { onCommit: unknown }).onCommit = edge.reliableMetrics.onCommit
    try {
      if (o.localApi !== undefined && o.localApi !== false) {
        edge.#localApi = await startLocalApi({
          ...o.localApi,
          get: key => edge.#view(edge.store.getResource(key)),
          list: (prefix, limit) => edge.store.listResources(prefix, limit).map(r => edge.#view(r) as ResourceView)
        })
      }
      if (o.serviceBus !== undefined && o.serviceBus !== false) {
        edge.#serviceBus = registerServiceBus(edge.bus, { ...o.serviceBus, logger: edge.#logger.child({ component: 'servicebus' }) })
      }
      if (o.upstreamEndpoint !== undefined && o.upstreamEndpoint !== false) {
        edge.#upstreamEndpoint = await startUpstreamEndpoint({ bus: edge.bus, ...o.upstreamEndpoint, logger: edge.#logger })
      }
      if (deviceOptions !== undefined) {
        const { EdgeDevices } = await import('../device/edge/devices.js')
        edge.#devices = await EdgeDevices.start({
          options: o.devices as DeviceOptions,
          nodeId: o.nodeId,
          dataDir: o.dataDir,
          durability: o.durability ?? 'sync',
          clock: edge.#clock,
          logger: edge.#logger,
          registry,
          upstream: env => edge.#sendReliable(env).then(() => {})
        })
        if (dmiOptions !== undefined) {
          const { EdgeDmi } = await import('../device/edge/dmi/dmi.js')
          edge.#dmi = await EdgeDmi.start({ options: o.dmi as DmiOptions, devices: edge.#devices, dataDir: o.dataDir, durability: o.durability ?? 'sync', clock: edge.#clock, logger: edge.#logger, registry })
        }
      }
      if (o.admin !== false) {
        edge.#admin = await startAdminServer({
          host: o.admin?.host ?? '127.0.0.1',
          port: o.admin?.port ?? 0,
          registry,
          title: `edgefabric edge ${o.nodeId}`,
          logger: o.logger ?? nullLogger,
          ready: () => ({ ok: edge.state === 'connected', detail: { state: edge.state } }),
          status: () => edge.status(),
          api: (edge.#edgeApi = createEdgeApi(edgeAdminSource(edge, { dataDir: o.dataDir, token: o.token, adminTokenConfigured: () => edge.adminToken !== undefined }), { now: () => edge.#clock.now(), logger: edge.#logger })).routes,
          auth: adminAuthFrom(o.admin, o.dataDir),
          console: 'edge'
        })
      }
    } catch (err) {
      await edge.close()
      throw err
    }
    edge.#connector.start()
    return edge
  }

  get state (): ConnectorState { return this.#connector.state }
  /** This node's key (changes after rotateKey()). */
  get identity (): EdgeIdentity { return this.#identity }

  /**
   * Rotate the node key while connected (issue 12): a new key is created in
   * `dataDir/identity/edge.key.next`, proven to the hub (and co-signed by the
   * current key), and once the hub has moved the binding it replaces
   * `edge.key`; the old key no longer authenticates. Resolves with the new
   * key id; rejects (old key kept) when not connected or the hub refuses.
   */
  async rotateKey (timeoutMs = 10_000): Promise<string> {
    const next = await createNextEdgeKey(this.#dataDir)
    let keyId: string
    try {
      keyId = await this.#connector.rotateKey({ publicKey: next.publicKeyRaw, sign: (nonce, ctx) => signChallenge(next, nonce, ctx) }, timeoutMs)
    } catch (err) {
      // Not confirmed: keep the file only if the hub may have applied it (link lost mid-way).
      if (!(err instanceof ConnectionClosedError) && (err as { code?: string }).code !== 'EF_TIMEOUT') await discardNextEdgeKey(this.#dataDir)
      throw err
    }
    await promoteNextEdgeKey(this.#dataDir)
    this.#identity = { ...next, file: this.#identity.file }
    this.#logger.info({ keyId }, 'node key rotated')
    return keyId
  }
  get adminUrl (): string | undefined { return this.#admin?.url }
  /** The admin bearer token (given, or from `<dataDir>/admin-token`), if the admin server runs. */
  get adminToken (): string | undefined { return this.#admin?.token }
  get adminTokenCreated (): boolean { return this.#admin?.tokenCreated ?? false }
  get upstreamUrl (): string | undefined { return this.#upstreamEndpoint?.url }
  get localApiUrl (): string | undefined { return this.#localApi?.url }
  /** KubeEdge DMI (option `dmi`); undefined when disabled. */
  get dmi (): EdgeDmi | undefined { return this.#dmi }
  /** Device twins (option `devices`); undefined when disabled. */
  get devices (): EdgeDevices | undefined { return this.#devices }
  /** Reliable messages waiting in the outbox to the cloud. */
  get outboxDepth (): number { return this.store.outboxStats('cloud').count }
  /** The reliable lane's sending state (console): messages in flight and the acked point. */
  laneStats (): { inflight: number, acked: number } { return { inflight: this.#lane.sender.inflight, acked: this.#lane.sender.acked } }
  /** Transport counters of the current hub connection, if connected. */
  connectionStats (): import('../transport/types.js').ConnectionStats | undefined { return this.#connector.connection?.stats }
  /** Why the last connection attempt or session failed. */
  get lastError (): Error | undefined { return this.#connector.lastError }
  get rttMs (): number | undefined { return this.#connector.rttMs ?? this.#connector.connection?.stats.rttMs }

  /**
   * Abort the current hub connection without a goodbye, as a broken link
   * would (tests, operators forcing a reconnect); the connector reconnects
   * with its backoff. Returns false when there was no connection.
   */
  dropConnection (reason = 'connection dropped by the application'): boolean {
    const conn = this.#connector.connection
    if (conn === undefined) return false
    conn.abort(new ConnectionClosedError(reason))
    return true
  }

  /** Register a module on the bus (Beehive). */
  register (options: RegisterOptions): ModuleHandle {
    return this.bus.register(options)
  }

  /**
   * Send to the cloud. `reliable` (default): durable in the edge outbox when
   * this resolves, delivered after reconnects and restarts, works offline;
   * throws QuotaExceededError when the outbox quota refuses it.
   * `best-effort`: only while connected (HubUnreachableError otherwise).
   */
  async sendUpstream (env: Envelope, options: { delivery?: 'reliable' | 'best-effort' } = {}): Promise<void> {
    if (options.delivery === 'best-effort') await this.#sendBestEffort(env)
    else await this.#sendReliable(env)
  }

  /** The last known version of a resource (MetaManager), also offline. */
  getResource (key: string): ResourceView | undefined {
    return this.#view(this.store.getResource(key))
  }

  listResources (prefix = '', limit = 1000): ResourceView[] {
    return this.store.listResources(prefix, limit).map(r => this.#view(r) as ResourceView)
  }

  /** Resolve once connected (rejects after timeoutMs, or when the hub refused the join for good). */
  waitConnected (timeoutMs = 30_000): Promise<void> {
    if (this.state === 'connected') return Promise.resolve()
    if (this.state === 'failed') return Promise.reject(this.#connector.lastError)
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => { cleanup(); reject(new HubUnreachableError(`not connected within ${timeoutMs} ms${this.lastError !== undefined ? `: ${this.lastError.message}` : ''}`)) }, timeoutMs)
      const ok = (): void => { cleanup(); resolve() }
      const failed = (err: Error): void => { cleanup(); reject(err) }
      const cleanup = (): void => { this.#clock.clearTimeout(timer); this.off('connected', ok); this.off('failed', failed) }
      this.on('connected', ok)
      this.on('failed', failed)
    })
  }

  status (): object {
    return {
      role: 'edge',
      nodeId: this.nodeId,
      state: this.state,
      rttMs: this.rttMs,
      lastError: this.lastError?.message,
      // Security trade-offs the operator switched on (e.g. --mqtt-allow-anonymous), shown on the status page.
      ...((this.#devices?.warnings.length ?? 0) > 0 ? { warnings: this.#devices?.warnings.join(' | ') } : {}),
      bus: this.bus.stats(),
      ...(this.#dmi === undefined ? {} : { dmi: { socket: this.#dmi.socket, mappers: this.#dmi.mappers().map(m => ({ name: m.name, protocol: m.protocol, devices: m.acknowledged.length, lastError: m.lastError })) } })
    }
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#dmi?.close() // DMI reports in progress finish (through the engine) before MQTT input stops
    await this.#devices?.stopInput() // accepted MQTT updates reach the outbox before the lane stops
    this.#lane.close()
    await this.#connector.close()
    await this.#localApi?.close()
    await this.#serviceBus?.stop()
    await this.#upstreamEndpoint?.close()
    this.bus.close()
    await this.#lane.receiver.idle().catch(() => {})
    await this.#devices?.close()
    this.#edgeApi?.close()
    await this.#admin?.close()
    await this.#lane.receiver.idle().catch(() => {})
    if (this.#ownsStore) await this.store.close()
    await this.#lock?.release()
  }

  #view (r: ResourceRecord | undefined): ResourceView | undefined {
    if (r === undefined) return undefined
    let envelope: Envelope | undefined
    if (r.bytes !== undefined) {
      try { envelope = defaultCodec.decode(r.bytes) } catch { envelope = undefined }
    }
    return { key: r.key, version: r.version, deleted: r.deleted, updatedAt: r.updatedAt, envelope }
  }

  /** Bus upstream: answers go best-effort (a cloud request is waiting now or never); everything else is durable. */
  async #sendUpstream (env: Envelope): Promise<void> {
    const op = env.router.operation
    if (op === 'response' || op === 'error') await this.#sendBestEffort(env)
    else await this.#sendReliable(env)
  }

  async #sendReliable (env: Envelope): Promise<EnqueueOutcome> {
    const outcome = await this.#lane.sender.enqueue(env)
    if (outcome.status === 'rejected') throw new QuotaExceededError('cloud', outcome.reason)
    return outcome
  }

  /**
   * One reliable message to the application. Synchronous where nothing waits (a sync
   * onReliable hook, a drop, no module): the receiver awaits only real promises (issue 16,
   * drain). A throw becomes a rejection (receiver).
   */
  #deliverReliable (env: Envelope): DeliveryVerdict | Promise<DeliveryVerdict> {
    this.#down.count('down', this.#connector.connection?.transport ?? 'unknown')
    const hooked = this.#onReliable?.(env)
    if (hooked !== undefined && typeof (hooked as PromiseLike<void>).then === 'function') return Promise.resolve(hooked).then(() => this.#deliverToModules(env))
    return this.#deliverToModules(env)
  }

  #deliverToModules (env: Envelope): DeliveryVerdict | Promise<DeliveryVerdict> {
    // Device sync (snapshots, grants, resyncs) is persisted in the twin store before the ack; a throw rejects.
    if (env.router.group === DEVICE_GROUP && this.#devices !== undefined) return this.#devices.deliver(env).then(() => 'ok' as const)
    const result = this.bus.route(env, 'cloud')
    return result instanceof Promise ? result.then(verdictOf) : verdictOf(result)
  }

  async #sendBestEffort (env: Envelope): Promise<void> {
    const conn = this.#connector.connection
    if (conn === undefined) throw new HubUnreachableError()
    const ok = conn.send(env)
    this.metrics.messages.add({ direction: 'up', transport: conn.transport })
    if (!ok) await conn.onDrain()
  }

  async #fromHub (env: Envelope): Promise<void> {
    const transport = this.#connector.connection?.transport ?? 'unknown'
    this.metrics.messages.add({ direction: 'down', transport })
    const result = await this.bus.dispatch(env, 'cloud')
    if (result.status === 'delivered' || result.status === 'response' || result.status === 'late-response') return
    // A request nobody could take is answered at once, so the cloud does not wait for its timeout.
    if (env.header.sync === true && env.router.operation !== 'response' && env.router.operation !== 'error') {
      const code = result.status === 'no-module' ? 'EF_NO_MODULE' : result.status === 'expired' ? 'EF_EXPIRED' : 'EF_MAILBOX_FULL'
      const msg = result.status === 'no-module'
        ? `no module for ${env.router.destination ?? `group ${env.router.group}`} on node ${this.nodeId}`
        : `message not accepted on node ${this.nodeId}: ${result.status}`
      await this.#sendUpstream(newErrorResponse(env, code, msg, 'edgehub')).catch(() => {})
    }
  }

  /** Refresh scrape-time metrics (RTT, mailbox depths). */
  refreshMetrics (): void {
    this.#down.flush()
    this.#drops.flush()
    const rtt = this.rttMs
    if (rtt !== undefined) this.metrics.rtt.set(rtt / 1000)
    const stats = this.bus.stats() as { modules?: Array<{ name: string, depth: number }> }
    for (const m of stats.modules ?? []) this.metrics.mailboxDepth.set({ module: m.name }, m.depth)
  }
}

function verdictOf (result: DispatchResult): DeliveryVerdict {
  if (result.status === 'rejected') return { reject: 'EF_MAILBOX_FULL', reason: result.failed.map(f => f.error.message).join('; ') }
  if (result.status === 'closed') return { reject: 'EF_CLOSED', reason: 'edge is shutting down' }
  // delivered, or no module: either way the resource is stored (MetaManager) once committed
  return 'ok'
}
