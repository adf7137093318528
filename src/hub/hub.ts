/**
 * `Hub`: the cloud role as a library object. Composes the session core
 * (./hub.ts) with the persistent identity and node-key bindings in the data
 * directory, Prometheus metrics and the admin HTTP server.
 *
 *   const hub = await Hub.start({ listen: ['quic://0.0.0.0:10001'], dataDir: './hub-data' })
 *   const token = hub.createToken('edge-1')
 */
import { mkdir } from 'node:fs/promises'
import { checkTransportUrl } from '../config/address.js'
import { lockDataDir, type DataDirLock } from '../util/data-dir-lock.js'
import { systemClock, type TimerHandle } from '../util/clock.js'
import { InvalidOptionError } from '../errors.js'
import { adminAuthFrom, startAdminServer, type AdminServer } from '../ops/admin-server.js'
import { nullLogger } from '../ops/logger.js'
import { Gauge } from 'prom-client'
import { Registry, createHubMetrics, type HubMetrics } from '../ops/metrics.js'
import { createReliableMetrics, registerTwinGauges } from '../ops/reliable-metrics.js'
import { createFleetApi, type FleetApi } from '../ops/admin-fleet.js'
import { hubFleetSource } from './fleet-source.js'
import { registerBuildInfo } from '../ops/build-info.js'
import { nativeBinding } from '../transport/quic-native.js'
import { TokenAuthenticator } from './authenticator.js'
import { FileBindingStore, type NodeBindingStore } from './bindings.js'
import { HubCore } from './hub-core.js'
import { loadOrCreateHubIdentity, type HubIdentity } from './identity.js'
import { createJoinToken, decodeJoinToken } from '../identity/token.js'
import { certificateFingerprint } from '../identity/pki.js'
import { WebTransportListener } from '../transport/webtransport-listener.js'
import type { HubOptions } from './types.js'
import { join } from 'node:path'
import { LmdbStore } from '../reliable/lmdb-store.js'
import type { ReliableStore } from '../reliable/store.js'
import { DeviceRegistry } from '../device/cloud/registry.js'
import { deviceRoutes } from '../device/cloud/http-api.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { adminMessageRoutes } from './admin-messages.js'
import { Cluster } from '../cluster/cluster.js'
import { resolveConnectionOptions } from '../transport/options.js'

/** Reissue the WebTransport leaf this long before it expires (half of its 14 days). */
const WT_ROTATE_BEFORE_EXPIRY_MS = 7 * 86_400_000

export class Hub extends HubCore {
  readonly identity: HubIdentity
  readonly registry: Registry
  readonly bindings: NodeBindingStore
  #admin: AdminServer | undefined
  #fleet: FleetApi | undefined
  #devices: DeviceRegistry | undefined
  readonly #startedAt: number

  readonly #ownsStore: boolean
  /** Short-lived CA-issued leaf for https:// (WebTransport) listeners (see #listenIdentity). */
  #wtTls: { certPem: string, keyPem: string, notAfter: number } | undefined
  #wtRotation: TimerHandle | undefined
  #stopping = false
  #lock: DataDirLock | undefined
  /** Cluster mode (options.cluster, src/cluster); undefined for the embedded single hub. */
  readonly cluster: Cluster | undefined

  private constructor (options: HubOptions, identity: HubIdentity, bindings: NodeBindingStore, registry: Registry, metrics: HubMetrics, store: ReliableStore, ownsStore: boolean, cluster?: Cluster) {
    const clock = options.clock ?? systemClock
    const auth = options.authenticator ?? new TokenAuthenticator(identity, bindings, clock)
    super(options, cluster === undefined ? auth : cluster.wrapAuthenticator(auth), metrics, store)
    this.cluster = cluster
    this.#ownsStore = ownsStore
    this.identity = identity
    this.bindings = bindings
    this.registry = registry
    this.#startedAt = clock.now()
  }

  static async start (options: HubOptions): Promise<Hub> {
    if (!Array.isArray(options.listen) || options.listen.length === 0 || !options.listen.every(u => typeof u === 'string')) {
      throw new InvalidOptionError('listen', 'must be a non-empty array of URLs')
    }
    for (const u of options.listen) checkTransportUrl(u, m => new InvalidOptionError('listen', m), { insecure: options.insecureTransport === true, insecureFlag: 'insecureTransport: true (CLI: --insecure-transport)', listen: true })
    if (typeof options.dataDir !== 'string' || options.dataDir === '') throw new InvalidOptionError('dataDir', 'must be a directory path')
    await mkdir(options.dataDir, { recursive: true })
    // Cluster mode (issue 17): shared identity, bindings and reliable store in NATS JetStream.
    const cluster = options.cluster === undefined
      ? undefined
      : await Cluster.start(options.cluster, { codec: resolveConnectionOptions(options).codec, logger: options.logger ?? nullLogger })
    try {
      return await Hub.#start(options, cluster)
    } catch (err) {
      await cluster?.close().catch(() => {})
      throw err
    }
  }

  static async #start (options: HubOptions, cluster: Cluster | undefined): Promise<Hub> {
    // One process per data dir (issue 12), before any file in it is opened:
    // the binding store and LMDB have exactly one writer.
    const lock = await lockDataDir(options.dataDir, 'hub')
    let identity: HubIdentity
    let bindings: NodeBindingStore
    try {
      if (cluster !== undefined) {
        await cluster.identity.adopt(options.dataDir)
        const c = cluster
        const onUpstream = options.onUpstream
        // Reliable upstream goes to JetStream before the edge is acked (ClusterStore.commitInbound waits).
        options = { ...options, onUpstream: async m => { c.publishUp(m.nodeId, m.envelope); await onUpstream?.(m) } }
      }
      identity = await loadOrCreateHubIdentity(options.dataDir, options.altNames !== undefined ? { altNames: options.altNames } : {})
      if (cluster !== undefined) await cluster.identity.publish(options.dataDir)
      bindings = cluster?.bindings ?? await FileBindingStore.open(options.dataDir)
    } catch (err) {
      await lock.release()
      throw err
    }
    const registry = new Registry()
    let hubRef: Hub | undefined
    // Registered first so its collect() runs before the other metrics are
    // serialized: it folds live session byte counts and RTTs in at scrape time.
    const clock = options.clock ?? systemClock
    const started = clock.now()
    new Gauge({
      name: 'edgefabric_hub_uptime_seconds',
      help: 'Seconds since the hub started.',
      registers: [registry],
      collect () {
        hubRef?.refreshMetrics()
        this.set((clock.now() - started) / 1000)
      }
    })
    const ownsStore = options.store === undefined
    let store: ReliableStore
    try {
      store = options.store ?? cluster?.store ?? await LmdbStore.open(join(options.dataDir, 'reliable'), { durability: options.durability ?? 'sync' })
    } catch (err) {
      await lock.release()
      throw err
    }
    let hub: Hub
    try {
      hub = new Hub(options, identity, bindings, registry, createHubMetrics(registry, { processMetrics: options.metrics?.processMetrics === true }), store, ownsStore, cluster)
    } catch (err) {
      // Options refused by the constructor: nothing started, so free what was opened for it.
      if (ownsStore) await store.close().catch(() => {})
      await bindings.close().catch(() => {})
      await lock.release()
      throw err
    }
    hub.#lock = lock
    hubRef = hub
    registerBuildInfo(registry, 'hub', await nativeBinding().then(() => true, () => false))
    hub.reliableMetrics = createReliableMetrics(registry, {
      role: 'hub',
      store: () => hub.store,
      lanes: () => [...hub.reliableLanes()].map(l => l.sender),
      now: () => clock.now(),
      ...(options.metrics?.perNode === undefined ? {} : { perNode: options.metrics.perNode })
    })
    if (store instanceof LmdbStore) store.onCommit = hub.reliableMetrics.onCommit
    registerTwinGauges(registry, () => hub.#devices?.listDevices({ limit: 100_000 }))
    hub.openLanes()
    if (cluster !== undefined) {
      hub.remote = await cluster.attach(hub)
      hub.on('event', e => {
        if (e.type === 'node-connected') cluster.nodeConnected(e.nodeId, e.sessionId, hub.clock.now())
        else if (e.type === 'node-disconnected') cluster.nodeDisconnected(e.nodeId, e.sessionId)
      })
      hub.on('message', m => cluster.publishLive(m.nodeId, m.envelope))
    }
    try {
      hub.#devices = await openDevices(hub, options, registry)
      if (options.listen.some(u => /^(https|webtransport):/i.test(u))) hub.#wtTls = await identity.issueWebTransportTls()
      await hub.listenAll(options.listen, url => hub.#listenIdentity(url), options)
      hub.#scheduleWebTransportRotation()
      if (options.admin !== false) {
        const adminHost = options.admin?.host ?? '127.0.0.1'
        hub.#fleet = createFleetApi({
          source: hubFleetSource(hub, { dataDir: options.dataDir, adminHost, adminTokenConfigured: () => hub.adminToken !== undefined }),
          logger: options.logger ?? nullLogger,
          now: () => clock.now()
        })
        hub.#admin = await startAdminServer({
          api: hub.#fleet.routes,
          host: options.admin?.host ?? '127.0.0.1',
          port: options.admin?.port ?? 0,
          registry,
          title: 'edgefabric hub',
          logger: options.logger ?? nullLogger,
          health: () => ({ ok: true }),
          ready: () => ({ ok: hub.urls.length > 0, detail: { listening: hub.urls } }),
          status: () => { hub.refreshMetrics(); return hub.status() },
          auth: adminAuthFrom(options.admin, options.dataDir),
          console: 'hub',
          routes: hubRoutes(hub, options.admin?.token)
        })
        await hub.#lock?.update({ admin: hub.#admin.url })
      }
    } catch (err) {
      await hub.close(0).catch(() => {})
      throw err
    }
    hub.logger.info({ urls: hub.urls, admin: hub.adminUrl, quicPeerId: identity.quicPeerId, caFingerprint: identity.caFingerprint }, 'hub started')
    return hub
  }

  /** The cloud device registry (DESIGN.md §8) when started with `devices`; else undefined. */
  get devices (): DeviceRegistry | undefined { return this.#devices }

  /** The first listen URL, as an edge dials it (`hub.urls` lists all). */
  get url (): string { return this.urls[0] as string }

  /** Admin HTTP base URL (metrics, health, status), if enabled. */
  get adminUrl (): string | undefined { return this.#admin?.url }

  /** The admin bearer token (given, or from `<dataDir>/admin-token`), if the admin server runs. */
  get adminToken (): string | undefined { return this.#admin?.token }

  /** True when this start generated the admin token file: print the token once. */
  get adminTokenCreated (): boolean { return this.#admin?.tokenCreated ?? false }

  /**
   * A join token for `nodeId` that pins this hub's identity. Single use: the
   * first node key that joins with it owns it. Not recorded until used; use
   * issueToken() to have `token list` show it at once.
   */
  createToken (nodeId: string, ttlSeconds?: number): string {
    return createJoinToken(this.identity, ttlSeconds === undefined ? { nodeId } : { nodeId, ttlSeconds })
  }

  /** Create a token and record it in the token store (`token list` shows it). `reusable` without `nodeId` admits any name. */
  async issueToken (opts: { nodeId?: string, ttlSeconds?: number, reusable?: boolean }): Promise<{ token: string, jti: string, node: string, exp: number, reusable: boolean }> {
    const token = createJoinToken(this.identity, opts)
    const p = decodeJoinToken(token)
    await this.bindings.recordIssued({ jti: p.jti, node: p.node, exp: p.exp, reusable: p.reuse === true }, this.clock.now())
    return { token, jti: p.jti, node: p.node, exp: p.exp, reusable: p.reuse === true }
  }

  /** Revoke a token id: it binds nothing from now on (bound nodes stay bound). False if already revoked. */
  async revokeToken (jti: string): Promise<boolean> {
    return await this.bindings.revoke(jti, this.clock.now())
  }

  /**
   * Remove a node (issue 12 `node remove`): its binding is deleted (and the
   * single-use token it joined with revoked), its live session cut, and with
   * `purge` its pending reliable messages deleted. It can join again only
   * with a new token.
   */
  async removeNode (nodeId: string, opts: { purge?: boolean } = {}): Promise<{ removed: boolean, purged: number }> {
    const removed = await this.bindings.remove(nodeId, this.clock.now())
    const purged = await this.forgetNode(nodeId, { purge: opts.purge === true, reason: 'node removed by an operator' })
    if (removed) this.logger.warn({ nodeId, purged }, 'node removed')
    return { removed, purged }
  }

  /** Bound nodes with their live state (`node list`). */
  async listNodes (): Promise<Array<{ nodeId: string, keyId: string, boundAt: number, rotatedAt?: number, status: string, transport?: string, outbox: number }>> {
    return (await this.bindings.list()).map(b => {
      const n = this.node(b.nodeId)
      return {
        nodeId: b.nodeId,
        keyId: b.keyId,
        boundAt: b.boundAt,
        ...(b.rotatedAt !== undefined ? { rotatedAt: b.rotatedAt } : {}),
        status: n?.status ?? 'disconnected',
        ...(n?.transport !== undefined ? { transport: n.transport } : {}),
        outbox: this.outboxDepth(b.nodeId)
      }
    }).sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
  }

  /** JSON status for the admin API and the status page. */
  status (): object {
    return {
      role: 'hub',
      uptimeSeconds: Math.round((this.clock.now() - this.#startedAt) / 1000),
      listening: this.urls,
      identity: { quicPeerId: this.identity.quicPeerId, caFingerprint: this.identity.caFingerprint },
      pendingRequests: this.pendingRequests,
      nodes: this.nodes().map(n => ({
        nodeId: n.nodeId,
        status: n.status,
        transport: n.transport,
        remoteAddress: n.remoteAddress,
        labels: n.labels,
        rttMs: n.rttMs,
        lastSeen: n.lastSeen === undefined ? undefined : new Date(n.lastSeen).toISOString(),
        connectedAt: n.connectedAt === undefined ? undefined : new Date(n.connectedAt).toISOString()
      }))
    }
  }

  /**
   * Reissue the https:// (WebTransport) leaf under the same CA — join tokens
   * pin the CA, so they stay valid — and serve it to new sessions; open
   * sessions keep theirs. Runs by itself half-way through the leaf's 14 days.
   * Returns the new leaf's fingerprint (undefined without https:// listeners).
   */
  async rotateWebTransportCertificate (): Promise<string | undefined> {
    const previous = this.#wtTls
    if (previous === undefined || this.#stopping) return undefined
    const next = await this.identity.issueWebTransportTls()
    this.#wtTls = next
    for (const l of this.transportListeners) {
      if (!(l instanceof WebTransportListener)) continue
      if (!l.updateIdentity({ cert: next.certPem, key: next.keyPem })) {
        this.logger.warn({ url: l.url, notAfter: new Date(previous.notAfter).toISOString() },
          'this https:// listener (HTTP/3) cannot swap its certificate while running; restart the hub before the certificate expires')
      }
    }
    this.#scheduleWebTransportRotation()
    const fp = certificateFingerprint(next.certPem)
    this.logger.info({ fingerprint: fp, notAfter: new Date(next.notAfter).toISOString() }, 'https:// certificate reissued')
    return fp
  }

  #scheduleWebTransportRotation (retryMs?: number): void {
    this.clock.clearTimeout(this.#wtRotation)
    this.#wtRotation = undefined
    const tls = this.#wtTls
    if (tls === undefined || this.#stopping) return
    // Half the lifetime before expiry (7 of 14 days): leaves room for retries and
    // clock skew between hub and edges. Certificates live in wall-clock time.
    const delay = retryMs ?? Math.max(60_000, tls.notAfter - WT_ROTATE_BEFORE_EXPIRY_MS - Date.now())
    this.#wtRotation = this.clock.setTimeout(() => {
      this.#wtRotation = undefined
      this.rotateWebTransportCertificate().catch((err: unknown) => {
        this.logger.error({ err }, 'reissuing the https:// certificate failed; retrying in a minute')
        this.#scheduleWebTransportRotation(60_000)
      })
    }, delay)
  }

  override async close (graceMs = 5000): Promise<void> {
    this.#stopping = true
    this.clock.clearTimeout(this.#wtRotation)
    // The registry first: its in-flight hand-offs to the lanes finish while the store is open.
    // The handler stays installed: a `$device` message arriving now is refused
    // (EF_DEVICE_REGISTRY_CLOSED, not acked, resent by the edge later), never
    // handed to the application stream instead.
    await this.#devices?.close()
    await super.close(graceMs)
    this.#fleet?.close()
    await this.#admin?.close()
    await this.bindings.close()
    if (this.#ownsStore) await this.store?.close()
    await this.cluster?.close()
    await this.#lock?.release()
  }

  #listenIdentity (url: URL): object {
    switch (url.protocol) {
      case 'quic:':
      case 'memory:':
        // memory:// carries the QUIC peer id as its identity, so tokens pin it the same way
        return { identity: url.protocol === 'quic:' ? this.identity.quicPrivateKey : this.identity.quicPeerId }
      case 'wss:':
        return { identity: { cert: this.identity.tls.certPem, key: this.identity.tls.keyPem } }
      case 'https:':
      case 'webtransport:': {
        // Not server.pem (365 days): WebTransport pins only leaves valid for
        // at most 14 days (W3C serverCertificateHashes), so https:// serves a
        // short-lived leaf from the same CA. Edges pin the CA from their token
        // and the dialer verifies that this leaf chains to it
        // (src/transport/webtransport-pin.ts).
        const tls = this.#wtTls as { certPem: string, keyPem: string }
        return { identity: { cert: tls.certPem, key: tls.keyPem } }
      }
      default:
        return {}
    }
  }
}

/** Admin routes: operator verbs and messages (./admin-messages.ts), then the device API when enabled. */
function hubRoutes (hub: Hub, token: string | undefined): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean> {
  const ops = adminMessageRoutes(hub, token === undefined ? {} : { token })
  const devices = hub.devices === undefined ? undefined : deviceRoutes(hub.devices, token === undefined ? {} : { token })
  return async (req, res, path) => await ops(req, res, path) || (devices !== undefined && await devices(req, res, path))
}

/** Open the device registry for `options.devices` and wire it to the hub (upstream `$device` messages, reliable lane). */
async function openDevices (hub: Hub, options: HubOptions, registry: Registry): Promise<DeviceRegistry | undefined> {
  const o = options.devices
  if (o === undefined || o === false) return undefined
  if (o !== true && (typeof o !== 'object' || o === null)) throw new InvalidOptionError('devices', 'must be a boolean or an options object')
  const { inMemory, ...rest } = o === true ? {} : o
  if (inMemory !== undefined && typeof inMemory !== 'boolean') throw new InvalidOptionError('devices.inMemory', 'must be a boolean')
  // Cluster mode: the registry lives in JetStream, shared by every hub (src/cluster/registry-store.ts).
  const kv = await hub.cluster?.openRegistryStore(hub.metrics?.registryLog)
  const reg = await DeviceRegistry.open({
    ...rest,
    ...(kv !== undefined ? { kv } : inMemory === true ? {} : { path: join(options.dataDir, 'devices') }),
    durability: rest.durability ?? options.durability ?? 'sync',
    sink: hub,
    clock: hub.clock,
    logger: hub.logger,
    metricsRegistry: registry
  }).catch(async err => { await kv?.close(); throw err })
  hub.setDeviceHandler({ accept: async (nodeId, env, seq) => { await reg.acceptUpstream(nodeId, env, seq) }, durable: nodeId => reg.upstreamDurable(nodeId) })
  // Never silent (issue 12): a node whose edge runs without a device broker is recorded as such.
  hub.on('event', e => {
    if (e.type === 'node-connected') reg.noteEdgeDevices(e.nodeId, hub.node(e.nodeId)?.capabilities?.includes('devices') === true)
  })
  return reg
}
