/**
 * `edge.devices`: device twins on an edge node (issue 5, DESIGN.md §8).
 * Composes the twin store, the engine (mapper side), the sync (cloud side),
 * the embedded broker and/or the external broker connection.
 */
import { join } from 'node:path'
import type { Clock } from '../../util/clock.js'
import type { Envelope } from '../../codec/envelope.js'
import type { Logger } from '../../ops/logger.js'
import type { Registry } from 'prom-client'
import { CredentialIndex, type AclContext, type LocalCredential } from './acl.js'
import { Authenticator } from './auth.js'
import { ExternalBroker } from './broker-external.js'
import { InternalBroker } from './broker-internal.js'
import { createDeviceMetrics, type DeviceMetrics } from './metrics.js'
import { resolveDeviceOptions, type DeviceOptions, type ResolvedDeviceOptions } from './options.js'
import type { TwinValue } from '../model.js'
import { TwinEngine, type BrokerName } from './twin-engine.js'
import { effectiveExpected } from './twin-state.js'
import { TwinStore } from './twin-store.js'
import { TwinSync } from './twin-sync.js'

export { resolveDeviceOptions, type DeviceOptions }

export interface TwinView {
  namespace: string
  name: string
  /** Snapshot revision the edge holds. */
  revision: number
  /** Cloud desired values. */
  desired: Record<string, TwinValue>
  /** Expected values in force (pending local ones win until the cloud settles them). */
  expected: Record<string, TwinValue>
  /** Expected values set at the edge and not yet settled by the cloud. */
  pendingExpected: Record<string, TwinValue>
  /** `raw`: as the mapper sent it (compat); `outOfRange`: outside the model's min/max, stored and flagged. */
  reported: Record<string, { value: TwinValue, timestamp: number, raw?: string, outOfRange?: boolean }>
  /** Optional twins added by mappers (compat mode, `extraProperties: 'optional'`), values as strings. */
  extras: Record<string, { type: string, actual?: string, expected?: string }>
  /** As the mapper sent it ("OK" in compat mode). */
  state: string | undefined
  lastOnline: string | undefined
  edgeSeq: number
  attributes: Record<string, string>
}

export interface EdgeDevicesInit {
  options: DeviceOptions
  nodeId: string
  dataDir: string
  durability: 'sync' | 'relaxed'
  clock: Clock
  logger: Logger
  registry: Registry
  upstream: (env: Envelope) => Promise<void>
}

export class EdgeDevices {
  readonly options: ResolvedDeviceOptions
  readonly metrics: DeviceMetrics
  readonly store: TwinStore
  readonly #engine: TwinEngine
  readonly #sync: TwinSync
  readonly #credentials: CredentialIndex
  readonly #acl: AclContext
  /** Security trade-offs in force (shown at start and on the status page). */
  readonly warnings: readonly string[]
  #internal: InternalBroker | undefined
  #external: ExternalBroker | undefined
  #closed = false

  private constructor (init: EdgeDevicesInit, options: ResolvedDeviceOptions, store: TwinStore) {
    this.options = options
    this.store = store
    this.metrics = createDeviceMetrics(init.registry)
    const logger = init.logger.child({ component: 'devices' })
    this.#engine = new TwinEngine({
      store,
      nodeId: init.nodeId,
      clock: init.clock,
      logger,
      metrics: this.metrics,
      maxPayloadBytes: options.maxPayloadBytes,
      maxPending: options.maxPending,
      compat: options.compat,
      extraProperties: options.extraProperties,
      legacyNamespace: options.legacyNamespace,
      publish: (topic, payload, origin) => this.#publish(topic, payload, origin),
      wants: (topic, origin) => this.#wants(topic, origin),
      upstream: init.upstream
    })
    const credentials = new CredentialIndex(options.credentials as LocalCredential[], init.nodeId)
    this.#credentials = credentials
    this.#acl = { nodeDevices: credentials.nodeDevices, legacyNamespace: options.legacyNamespace }
    this.#sync = new TwinSync(this.#engine, credentials, new Authenticator(credentials, init.clock, options.authCacheMs, 10_000, options.auth))
    this.#sync.restore()
    const warnings: string[] = []
    if (options.allowAnonymous && (options.mode === 'internal' || options.mode === 'both')) {
      warnings.push('MQTT anonymous access is on (--mqtt-allow-anonymous): any local process can act as this node\'s mapper for all its devices')
    }
    this.warnings = Object.freeze(warnings)
    for (const w of warnings) logger.warn({ warning: w }, 'device broker security warning')
  }

  /** Validate options (InvalidOptionError naming the option) before anything starts. */
  static validate (options: DeviceOptions): ResolvedDeviceOptions { return resolveDeviceOptions(options) }

  static async start (init: EdgeDevicesInit): Promise<EdgeDevices> {
    const options = resolveDeviceOptions(init.options)
    const store = TwinStore.open(join(init.dataDir, 'devices'), init.durability)
    const d = new EdgeDevices(init, options, store)
    const logger = init.logger.child({ component: 'devices' })
    d.#sync.onRevoked = usernames => {
      const n = d.#internal?.disconnect(usernames) ?? 0
      if (n > 0) logger.info({ usernames, sessions: n }, 'sessions of revoked credentials closed')
    }
    try {
      if (options.mode === 'internal' || options.mode === 'both') {
        d.#internal = await InternalBroker.start({
          host: options.mqtt.host,
          port: options.mqtt.port,
          ...(options.mqtt.tls !== undefined ? { tls: options.mqtt.tls } : {}),
          ...(options.mqtt.ws !== undefined ? { ws: options.mqtt.ws } : {}),
          brokerId: `edgefabric-${init.nodeId}`,
          db: store.mqttDb,
          auth: d.#sync.auth,
          credentials: d.#credentials,
          acl: d.#acl,
          sessions: options.sessions,
          allowAnonymous: options.allowAnonymous,
          clock: init.clock,
          metrics: d.metrics,
          logger: logger.child({ component: 'mqtt' }),
          maxPayloadBytes: options.maxPayloadBytes,
          onMessage: async (topic, payload) => { await d.#engine.handleMqtt(topic, payload, 'internal') },
          onClientReady: () => d.#engine.maybeAskResync()
        })
      }
      if (options.external !== undefined) {
        const e = options.external
        d.#external = new ExternalBroker({
          url: e.url,
          clientId: e.clientId ?? `edgefabric-${init.nodeId}`,
          ...(e.username !== undefined ? { username: e.username } : {}),
          ...(e.password !== undefined ? { password: e.password } : {}),
          ...(e.reconnectPeriodMs !== undefined ? { reconnectPeriodMs: e.reconnectPeriodMs } : {}),
          metrics: d.metrics,
          logger: logger.child({ component: 'mqtt-external' }),
          legacyNamespace: options.legacyNamespace,
          onMessage: async (topic, payload) => { await d.#engine.handleMqtt(topic, payload, 'external') }
        })
      }
    } catch (err) {
      await d.close()
      throw err
    }
    return d
  }

  /** The twin engine: other front ends (DMI, src/device/edge/dmi/) hand it requests so they share validation, durability and the path to the cloud. */
  get engine (): TwinEngine { return this.#engine }

  /** URL of the embedded broker (undefined in external mode). */
  get brokerUrl (): string | undefined { return this.#internal?.url }
  get wsUrl (): string | undefined { return this.#internal?.wsUrl }
  /** The embedded broker (sessions, persistence) — tests and the status page. */
  get broker (): InternalBroker | undefined { return this.#internal }
  /** The external broker connection (modes external/both). */
  get external (): ExternalBroker | undefined { return this.#external }

  /** A `$device` reliable delivery from the cloud; awaited before the edge acks it. */
  async deliver (env: Envelope): Promise<void> { await this.#sync.deliver(env) }

  getTwin (namespace: string, name: string): TwinView | undefined {
    const r = this.store.get(`${namespace}/${name}`)
    if (r === undefined) return undefined
    const expected: Record<string, TwinValue> = {}
    for (const p of r.snapshot.model.properties) {
      const e = effectiveExpected(r, p.name)
      if (e !== undefined) expected[p.name] = e.value
    }
    return {
      namespace,
      name,
      revision: r.snapshot.revision,
      desired: Object.fromEntries(Object.entries(r.snapshot.desired).map(([k, v]) => [k, v.value])),
      expected,
      pendingExpected: Object.fromEntries(Object.entries(r.localExpected).map(([k, v]) => [k, v.value])),
      reported: { ...r.reported },
      extras: Object.fromEntries(Object.entries(r.extras ?? {}).map(([k, x]) => [k, { type: x.type, ...(x.actual !== undefined ? { actual: x.actual.value } : {}), ...(x.expected !== undefined ? { expected: x.expected.value } : {}) }])),
      state: r.state?.state,
      lastOnline: r.state?.lastOnline,
      edgeSeq: r.edgeSeq,
      attributes: { ...r.snapshot.device.attributes }
    }
  }

  listDevices (): Array<{ namespace: string, name: string, revision: number, state: string | undefined }> {
    return this.store.list().map(r => ({ namespace: r.namespace, name: r.name, revision: r.snapshot.revision, state: r.state?.state }))
  }

  /** Could a publish on `topic` reach anyone: the embedded broker knows its subscribers, an external one is assumed to have some. */
  #wants (topic: string, origin?: BrokerName): boolean {
    if (this.#external !== undefined && (origin === undefined || origin === 'external')) return true
    return this.#internal !== undefined && (origin === undefined || origin === 'internal') && this.#internal.wants(topic)
  }

  #publish (topic: string, payload: object, origin?: BrokerName): void {
    // Internal: only when some client could receive it (broker-subscribers.ts); an external broker's subscribers are unknown.
    const internal = this.#internal !== undefined && (origin === undefined || origin === 'internal') && this.#internal.wants(topic) ? this.#internal : undefined
    const external = origin === undefined || origin === 'external' ? this.#external : undefined
    if (internal === undefined && external === undefined) return // nobody to tell, or mode 'none' (DMI mappers only)
    const bytes = Buffer.from(JSON.stringify(payload))
    internal?.publish(topic, bytes).catch(() => { this.metrics.publishFailures.inc({ broker: 'internal', reason: 'error' }) })
    external?.publish(topic, bytes).catch(() => { this.metrics.publishFailures.inc({ broker: 'external', reason: 'error' }) })
  }

  /**
   * Stop taking MQTT input and wait until requests in progress have been
   * persisted and queued upstream. The edge calls this before it closes its
   * lane, so no accepted update fails half-way at shutdown.
   */
  async stopInput (): Promise<void> {
    const ext = this.#external
    const int = this.#internal
    this.#external = undefined
    this.#internal = undefined
    await ext?.close()
    await int?.close()
    await this.#engine.idle()
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.stopInput()
    await this.store.close()
  }
}
