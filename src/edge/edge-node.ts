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
import { systemClock, type Clock } from '../clock.js'
import { newErrorResponse, type Envelope } from '../envelope.js'
import { EdgeFabricError, InvalidOptionError } from '../errors.js'
import { startAdminServer, type AdminServer } from '../ops/admin-server.js'
import { nullLogger, type Logger } from '../ops/logger.js'
import { Registry, createEdgeMetrics, type EdgeMetrics } from '../ops/metrics.js'
import { intOption } from '../options.js'
import { Backoff } from '../session/liveness.js'
import type { ConnectionOptions } from '../transport/types.js'
import { ModuleBus, type MailboxOptions, type ModuleHandle, type RegisterOptions } from './bus.js'
import { EdgeConnector, type ConnectorState, type HubRefusedError } from './connector.js'
import { loadOrCreateEdgeIdentity, signChallenge, type EdgeIdentity } from './identity.js'
import { registerServiceBus, startUpstreamEndpoint, type ServiceBus, type UpstreamEndpoint } from './servicebus.js'
import { decodeJoinToken } from '../hub/token.js'

/** The hub cannot be reached right now (best-effort lane: the message was not sent). */
export class HubUnreachableError extends EdgeFabricError {
  static readonly code = 'EF_HUB_UNREACHABLE'
  constructor (message = 'not connected to the hub') {
    super(HubUnreachableError.code, message)
  }
}

/** Deliveries from the hub awaiting mailbox space before the hub link is paused. */
const MAX_DISPATCH_IN_FLIGHT = 1024

export interface EdgeOptions extends ConnectionOptions {
  /** Hub URL(s); tried in order after failed dials. Required. */
  hub: string | string[]
  /** This node's name (must match the join token). Required. */
  nodeId: string
  /** Join token from `edgefabric token create`. Required. */
  token: string
  /** Directory for the node key and local state. Required. */
  dataDir: string
  labels?: Record<string, string>
  /** @default 10000 */
  handshakeTimeoutMs?: number
  /** @default 10000 */
  dialTimeoutMs?: number
  /** Reconnect backoff: full jitter in [0, min(cap, base·2^n)]. @default { baseMs: 500, capMs: 30000 } */
  backoff?: { baseMs?: number, capMs?: number }
  /** Default request timeout. @default 30000 */
  requestTimeoutMs?: number
  defaultMailbox?: MailboxOptions
  /** ServiceBus: let the hub call HTTP apps on these loopback ports. `false` disables. @default false */
  serviceBus?: { allowedPorts: number[], timeoutMs?: number, maxBodyBytes?: number } | false
  /** Local HTTP endpoint for apps to post upstream. `false` disables. @default false */
  upstreamEndpoint?: { host?: string, port?: number, token?: string } | false
  /** Admin HTTP server. `false` disables. @default { host: '127.0.0.1', port: 0 } */
  admin?: { host?: string, port?: number } | false
  clock?: Clock
  logger?: Logger
}

interface EdgeEvents {
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
  readonly identity: EdgeIdentity
  readonly #connector: EdgeConnector
  readonly #logger: Logger
  readonly #clock: Clock
  #admin: AdminServer | undefined
  #serviceBus: ServiceBus | undefined
  #upstreamEndpoint: UpstreamEndpoint | undefined
  #closed = false
  #inFlight = 0

  private constructor (o: EdgeOptions, identity: EdgeIdentity, registry: Registry, metrics: EdgeMetrics) {
    super()
    this.on('error', () => {})
    this.nodeId = o.nodeId
    this.identity = identity
    this.registry = registry
    this.metrics = metrics
    this.#clock = o.clock ?? systemClock
    this.#logger = (o.logger ?? nullLogger).child({ component: 'edge', nodeId: o.nodeId })
    const hubUrls = Array.isArray(o.hub) ? o.hub : [o.hub]
    if (hubUrls.length === 0 || !hubUrls.every(u => typeof u === 'string' && u.length > 0)) {
      throw new InvalidOptionError('hub', 'must be a hub URL or a non-empty list of them')
    }
    const payload = decodeJoinToken(o.token)
    if (payload.node !== o.nodeId) {
      throw new InvalidOptionError('token', `the join token is for node "${payload.node}", not "${o.nodeId}"`)
    }
    this.bus = new ModuleBus({
      clock: this.#clock,
      logger: this.#logger.child({ component: 'bus' }),
      defaultRequestTimeoutMs: intOption('requestTimeoutMs', o.requestTimeoutMs, 30_000, 1),
      ...(o.defaultMailbox !== undefined ? { defaultMailbox: o.defaultMailbox } : {}),
      onDrop: (module, reason) => metrics.mailboxDrops.inc({ module, reason }),
      upstream: env => this.#sendUpstream(env)
    })
    const connOpts = pickConnectionOptions(o)
    this.#connector = new EdgeConnector({
      hubUrls,
      nodeId: o.nodeId,
      token: o.token,
      key: { publicKey: identity.publicKeyRaw, sign: (nonce, ctx) => signChallenge(identity, nonce, ctx) },
      pins: payload.pins,
      ...(o.labels !== undefined ? { labels: o.labels } : {}),
      clock: this.#clock,
      logger: this.#logger,
      handshakeTimeoutMs: intOption('handshakeTimeoutMs', o.handshakeTimeoutMs, 10_000, 10),
      dialTimeoutMs: intOption('dialTimeoutMs', o.dialTimeoutMs, 10_000, 10),
      backoff: new Backoff(intOption('backoff.baseMs', o.backoff?.baseMs, 500, 1), intOption('backoff.capMs', o.backoff?.capMs, 30_000, 1)),
      connection: connOpts
    })
    this.#connector.on('message', env => {
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
      this.bus.broadcastState('connected')
      this.#logger.info({ url, transport: connection.transport }, 'edge connected')
      this.emit('connected', { url })
    })
    this.#connector.on('disconnected', ({ reason }) => {
      metrics.setConnected(false)
      this.bus.broadcastState('disconnected')
      this.emit('disconnected', { reason })
    })
    this.#connector.on('failed', err => {
      this.emit('failed', err)
    })
  }

  static async start (o: EdgeOptions): Promise<EdgeNode> {
    if (typeof o.nodeId !== 'string' || o.nodeId === '') throw new InvalidOptionError('nodeId', 'is required')
    if (typeof o.token !== 'string' || o.token === '') throw new InvalidOptionError('token', 'is required')
    if (typeof o.dataDir !== 'string' || o.dataDir === '') throw new InvalidOptionError('dataDir', 'is required')
    await mkdir(o.dataDir, { recursive: true })
    const identity = await loadOrCreateEdgeIdentity(o.dataDir)
    const registry = new Registry()
    let edgeRef: EdgeNode | undefined
    // First in the registry so it refreshes scrape-time values before the rest are read.
    new Gauge({
      name: 'edgefabric_edge_hub_link_state',
      help: 'Hub link state: 1 connected, 0 otherwise.',
      registers: [registry],
      collect () { edgeRef?.refreshMetrics(); this.set(edgeRef?.state === 'connected' ? 1 : 0) }
    })
    const edge = new EdgeNode(o, identity, registry, createEdgeMetrics(registry))
    edgeRef = edge
    try {
      if (o.serviceBus !== undefined && o.serviceBus !== false) {
        edge.#serviceBus = registerServiceBus(edge.bus, { ...o.serviceBus, logger: edge.#logger.child({ component: 'servicebus' }) })
      }
      if (o.upstreamEndpoint !== undefined && o.upstreamEndpoint !== false) {
        edge.#upstreamEndpoint = await startUpstreamEndpoint({ bus: edge.bus, ...o.upstreamEndpoint, logger: edge.#logger })
      }
      if (o.admin !== false) {
        edge.#admin = await startAdminServer({
          host: o.admin?.host ?? '127.0.0.1',
          port: o.admin?.port ?? 0,
          registry,
          title: `edgefabric edge ${o.nodeId}`,
          logger: o.logger ?? nullLogger,
          ready: () => ({ ok: edge.state === 'connected', detail: { state: edge.state } }),
          status: () => edge.status()
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
  get adminUrl (): string | undefined { return this.#admin?.url }
  get upstreamUrl (): string | undefined { return this.#upstreamEndpoint?.url }
  /** Why the last connection attempt or session failed. */
  get lastError (): Error | undefined { return this.#connector.lastError }
  get rttMs (): number | undefined { return this.#connector.rttMs ?? this.#connector.connection?.stats.rttMs }

  /** Register a module on the bus (Beehive). */
  register (options: RegisterOptions): ModuleHandle {
    return this.bus.register(options)
  }

  /** Send to the cloud (best-effort lane: throws HubUnreachableError when not connected). */
  async sendUpstream (env: Envelope): Promise<void> {
    await this.bus.sendUpstream(env)
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
      bus: this.bus.stats()
    }
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#connector.close()
    await this.#serviceBus?.stop()
    await this.#upstreamEndpoint?.close()
    this.bus.close()
    await this.#admin?.close()
  }

  async #sendUpstream (env: Envelope): Promise<void> {
    const conn = this.#connector.connection
    if (conn === undefined) throw new HubUnreachableError()
    const ok = conn.send(env)
    this.metrics.messages.inc({ direction: 'up', transport: conn.transport })
    if (!ok) await conn.onDrain()
  }

  async #fromHub (env: Envelope): Promise<void> {
    const transport = this.#connector.connection?.transport ?? 'unknown'
    this.metrics.messages.inc({ direction: 'down', transport })
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
    const rtt = this.rttMs
    if (rtt !== undefined) this.metrics.rtt.set(rtt / 1000)
    const stats = this.bus.stats() as { modules?: Array<{ name: string, depth: number }> }
    for (const m of stats.modules ?? []) this.metrics.mailboxDepth.set({ module: m.name }, m.depth)
  }
}

function pickConnectionOptions (o: EdgeOptions): ConnectionOptions {
  const c: ConnectionOptions = {}
  if (o.maxFrameSize !== undefined) c.maxFrameSize = o.maxFrameSize
  if (o.highWaterMark !== undefined) c.highWaterMark = o.highWaterMark
  if (o.maxSendBuffer !== undefined) c.maxSendBuffer = o.maxSendBuffer
  if (o.maxInboundBuffer !== undefined) c.maxInboundBuffer = o.maxInboundBuffer
  if (o.closeTimeoutMs !== undefined) c.closeTimeoutMs = o.closeTimeoutMs
  return c
}
