/**
 * The cloud hub (CloudHub role): listeners on one or more transports, one
 * session per edge node, routing by node, request/response, broadcast by
 * labels, edge-to-edge forwarding, and a typed event stream.
 */
import { EventEmitter } from 'node:events'
import { systemClock, type Clock } from '../util/clock.js'
import { newErrorResponse, newMessage, newResponse, type Envelope } from '../codec/envelope.js'
import { ConnectionClosedError, EdgeFabricError, InvalidOptionError, JoinRefusedError, QuotaExceededError } from '../errors.js'
import { intOption } from '../util/options.js'
import { nullLogger, type Logger } from '../ops/logger.js'
import type { HubMetrics } from '../ops/metrics.js'
import type { ReliableMetrics } from '../ops/reliable-metrics.js'
import { ReliableEndpoint } from '../reliable/endpoint.js'
import { HOLD_CODE, isReliableMessage } from '../reliable/protocol.js'
import type { EnqueueOutcome, LaneEvent } from '../reliable/sender.js'
import type { QuotaPolicy, ReliableStore } from '../reliable/store.js'
import { PendingRequests } from '../session/pending.js'
import { KeyedRateLimiter } from '../session/rate-limit.js'
import { PreAuthGate, sourceKey, type PreAuthRefusalEvent } from '../transport/pre-auth.js'
import type { HelloContent, RefusedContent } from '../session/protocol.js'
import { listen, transportFor } from '../transport/index.js'
import { quicEngineLine } from '../transport/quic-engine.js'
import { resolveConnectionOptions } from '../transport/options.js'
import type { CloseInfo, Listener } from '../transport/types.js'
import { withInboundBarrier, type DeviceUpstreamHandler } from './device-upstream.js'
import { HubSession, type SessionHost } from './session.js'
import type { HubAuthenticator, HubEvent, HubOptions, NodeInfo, NodeSelector, RequestOptions, HubSendOptions, UpstreamMessage } from './types.js'
import { UpstreamQueue } from './upstream-queue.js'
import { ForwardedRequests, resolveEdgeToEdge, type EdgeToEdgeCheck } from './edge-to-edge.js'

/** The node has no open session. */
export class NodeOfflineError extends EdgeFabricError {
  static readonly code = 'EF_NODE_OFFLINE'
  readonly nodeId: string
  constructor (nodeId: string, message = `node ${nodeId} is not connected`) {
    super(NodeOfflineError.code, message)
    this.nodeId = nodeId
  }
}

function closeReasonLabel (info: CloseInfo): string {
  const r = info.reason ?? ''
  if (r.startsWith('no traffic')) return 'liveness_timeout'
  if (r.startsWith('replaced')) return 'replaced'
  if (r.includes('goodbye') || r.includes('shutting down')) return 'peer_closed'
  return info.clean ? 'closed' : 'error'
}

/** Parse `node:<id>[/<module>]` destinations used for edge-to-edge routing. */
export function parseNodeDestination (destination: string | undefined): { nodeId: string, module: string | undefined } | undefined {
  if (destination === undefined || !destination.startsWith('node:')) return undefined
  const rest = destination.slice(5)
  const slash = rest.indexOf('/')
  const nodeId = slash < 0 ? rest : rest.slice(0, slash)
  if (nodeId === '') return undefined
  return { nodeId, module: slash < 0 ? undefined : rest.slice(slash + 1) || undefined }
}

interface NodeRecord {
  info: NodeInfo
  operatorLabels: Record<string, string>
  session: HubSession | undefined
}

interface HubCoreEvents {
  event: [HubEvent]
  lane: [LaneEvent]
  message: [UpstreamMessage]
  error: [Error]
}

/**
 * Session routing core of the hub, independent of identity storage and the
 * admin server (those are composed in ./cloud-hub.ts).
 */
export class HubCore extends EventEmitter<HubCoreEvents> implements SessionHost {
  readonly clock: Clock
  readonly authenticator: HubAuthenticator
  readonly heartbeatMs: number
  readonly handshakeTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly maxNodes: number
  readonly logger: Logger
  /** Bounds on unauthenticated connections, shared by every listener (issue 13 item 1). */
  readonly preAuth: PreAuthGate
  /** Refusal logs per source / node: counted always, logged a few lines at a time (issue 13 item 12). */
  readonly #logLimit: KeyedRateLimiter
  readonly transportListeners: Listener[] = []
  readonly #nodes = new Map<string, NodeRecord>()
  readonly #sessions = new Set<HubSession>()
  /** Records with a session, kept in step with rec.session by admit()/ended(): admission stays O(1) at 10k+ nodes. */
  #connected = 0
  readonly #pending: PendingRequests
  readonly #upstream: UpstreamQueue
  /** Edge-to-edge allow-list (issue 13 item 5, ./edge-to-edge.ts): deny by default. */
  readonly #edgeToEdge: EdgeToEdgeCheck
  readonly #forwardedRequests: ForwardedRequests
  readonly metrics: HubMetrics | undefined
  readonly store: ReliableStore | undefined
  readonly #lanes = new Map<string, ReliableEndpoint>()
  readonly #quota: QuotaPolicy
  readonly #laneOptions: { maxRejections: number, ackTimeoutMs: number }
  readonly #onUpstream: HubOptions['onUpstream']
  readonly #connectionOptions: HubOptions
  /** Consumer of reliable upstream `$device` messages (the device registry, DESIGN.md §8); set by Hub.start. */
  #deviceHandler: DeviceUpstreamHandler | undefined
  /** `store` as the lanes see it: inbound commits wait for the device handler (device-upstream.ts). */
  #laneStore: ReliableStore | undefined
  #closed = false
  /** Reliable-delivery metrics (src/ops/reliable-metrics.ts); set by Hub.start. */
  reliableMetrics: ReliableMetrics | undefined
  /** Cluster mode: reaches nodes whose session another hub holds (set by Hub.start; src/cluster). */
  remote: import('../cluster/cluster.js').RemoteNodes | undefined

  constructor (options: HubOptions, authenticator: HubAuthenticator, metrics?: HubMetrics, store?: ReliableStore) {
    super()
    this.metrics = metrics
    this.store = store
    this.#quota = {
      maxMessages: intOption('quota.maxMessages', options.quota?.maxMessages, 1_000_000, 1),
      maxBytes: intOption('quota.maxBytes', options.quota?.maxBytes, 1024 ** 3, 1),
      overflow: options.quota?.overflow ?? 'reject'
    }
    if (this.#quota.overflow !== 'reject' && this.#quota.overflow !== 'drop-oldest') throw new InvalidOptionError('quota.overflow', 'must be "reject" or "drop-oldest"')
    this.#laneOptions = {
      maxRejections: intOption('maxRejections', options.maxRejections, 5, 1),
      ackTimeoutMs: intOption('ackTimeoutMs', options.ackTimeoutMs, 5000, 10)
    }
    this.#onUpstream = options.onUpstream
    this.#connectionOptions = options
    this.on('error', () => {}) // events never crash the process; failures are typed events
    this.clock = options.clock ?? systemClock
    this.authenticator = authenticator
    this.heartbeatMs = intOption('heartbeatMs', options.heartbeatMs, 5000, 50, 3_600_000)
    const handshakeMs = options.handshakeTimeoutMs === undefined ? undefined : intOption('handshakeTimeoutMs', options.handshakeTimeoutMs, 5000, 10, 600_000)
    this.preAuth = new PreAuthGate({
      ...options.preAuth,
      // One deadline from accept to welcome on every transport; the session's own
      // timer (from the connection's hand-over) defaults to the same figure.
      deadlineMs: options.preAuth?.deadlineMs ?? handshakeMs ?? 5000,
      clock: this.clock,
      onRefused: e => { this.#preAuthRefused(e) }
    })
    this.handshakeTimeoutMs = handshakeMs ?? this.preAuth.deadlineMs
    this.requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1)
    this.maxNodes = intOption('maxNodes', options.maxNodes, 100_000, 1)
    const hwm = intOption('upstreamHighWaterMark', options.upstreamHighWaterMark, 10_000, 1)
    this.#edgeToEdge = resolveEdgeToEdge(options.edgeToEdge).check
    // Answers to forwarded requests may flow back for twice the request timeout.
    this.#forwardedRequests = new ForwardedRequests(100_000, 2 * this.requestTimeoutMs)
    this.logger = (options.logger ?? nullLogger).child({ component: 'hub' })
    this.#logLimit = new KeyedRateLimiter(this.clock)
    this.#pending = new PendingRequests(this.clock)
    this.#upstream = new UpstreamQueue(hwm, paused => {
      for (const s of this.#sessions) { if (paused) s.connection.pause(); else s.connection.resume() }
    }, () => this.#consumerAttached())
    // A 'message' listener added later is a consumer too (the typed event map has no 'newListener').
    EventEmitter.prototype.on.call(this, 'newListener', (event: string | symbol) => {
      if (event === 'message') queueMicrotask(() => this.#consumerAttached())
    })
  }

  /** Start listening on every URL (listen options per URL come from `optionsFor`). */
  async listenAll (urls: string[], optionsFor: (url: URL) => object, connection: HubOptions): Promise<void> {
    const resolved = resolveConnectionOptions(connection)
    for (const url of urls) {
      const listener = await listen(url, {
        ...resolved,
        ...optionsFor(new URL(url)),
        preAuth: this.preAuth,
        onConnection: conn => {
          if (this.#closed) { conn.abort(new ConnectionClosedError('hub is closing')); return }
          const s = new HubSession(this, conn)
          this.#sessions.add(s)
          if (this.#upstream.paused) conn.pause()
          conn.once('close', () => this.#sessions.delete(s))
        }
      })
      this.transportListeners.push(listener)
      // Say which QUIC engine carries quic:// (issue 18: edgefabric, or the libp2p fallback and why).
      if (url.startsWith('quic:')) {
        const line = await quicEngineLine(await transportFor(url))
        if (line !== undefined) this.logger.info({ url: listener.url }, line)
      }
    }
  }

  get urls (): string[] { return this.transportListeners.map(l => l.url) }

  // ---- SessionHost ---------------------------------------------------------------

  admit (session: HubSession, hello: HelloContent): void {
    const nodeId = session.nodeId as string
    if (this.#nodes.get(nodeId)?.session === undefined && this.#connectedCount() >= this.maxNodes) {
      throw new JoinRefusedError('EF_NODE_LIMIT', `the hub is at its node limit (${this.maxNodes}); retrying later may succeed`)
    }
    const rec = this.#record(nodeId)
    const old = rec.session
    rec.session = session
    if (old === undefined) this.#connected++
    Object.assign(rec.info, {
      status: 'connected',
      labels: { ...hello.labels, ...rec.operatorLabels },
      transport: session.connection.transport,
      remoteAddress: session.connection.remoteAddress,
      keyId: session.keyId,
      connectedAt: this.clock.now(),
      sessionId: session.id,
      capabilities: [...session.capabilities]
    })
    if (old !== undefined) {
      // Last connection wins (DESIGN.md §4); the older one learns why it was closed.
      this.#emitEvent({ type: 'session-replaced', nodeId, oldSessionId: old.id, newSessionId: session.id })
      void old.goodbye('replaced by a newer connection for the same node')
    }
    this.metrics?.sessionsOpened.inc({ transport: session.connection.transport })
    this.metrics?.connectedNodes.set(this.#connectedCount())
    this.#emitEvent({ type: 'node-connected', nodeId, transport: session.connection.transport, remoteAddress: session.connection.remoteAddress, sessionId: session.id })
    this.logger.info({ nodeId, transport: session.connection.transport, session: session.id }, 'node connected')
  }

  activated (session: HubSession): void {
    const nodeId = session.nodeId as string
    if (this.#nodes.get(nodeId)?.session !== session) return
    this.#lane(nodeId)?.attach(session.connection)
  }

  refused (session: HubSession, refusal: RefusedContent, nodeId: string | undefined): void {
    const e: HubEvent = { type: 'handshake-refused', code: refusal.code, reason: refusal.reason, remoteAddress: session.connection.remoteAddress }
    if (nodeId !== undefined) e.nodeId = nodeId
    this.metrics?.handshakeRefusals.inc({ code: refusal.code })
    this.metrics?.connectionRefusals.inc({ stage: 'auth', reason: refusal.code, transport: session.connection.transport })
    this.#limitedWarn(sourceKey(session.connection.remoteAddress), { code: refusal.code, remoteAddress: session.connection.remoteAddress, nodeId }, 'handshake refused')
    this.#emitEvent(e)
  }

  ended (session: HubSession, info: CloseInfo): void {
    const nodeId = session.nodeId as string
    const rec = this.#nodes.get(nodeId)
    this.#account(session)
    if (rec === undefined || rec.session !== session) {
      this.metrics?.sessionsClosed.inc({ reason: 'replaced' })
      return // an older, replaced session
    }
    rec.session = undefined
    this.#connected--
    this.#lanes.get(nodeId)?.detach(session.connection)
    this.metrics?.sessionsClosed.inc({ reason: closeReasonLabel(info) })
    this.metrics?.connectedNodes.set(this.#connectedCount())
    this.metrics?.rtt.remove({ node: nodeId })
    Object.assign(rec.info, { status: 'disconnected', disconnectedAt: this.clock.now(), rttMs: undefined, lastSeen: session.lastSeen })
    this.#pending.rejectAll(new NodeOfflineError(nodeId, `node ${nodeId} disconnected before answering`), nodeId)
    this.#emitEvent({ type: 'node-disconnected', nodeId, sessionId: session.id, reason: info.reason ?? 'closed', clean: info.clean })
    this.logger.info({ nodeId, reason: info.reason, clean: info.clean }, 'node disconnected')
  }

  upstream (session: HubSession, env: Envelope): void {
    const nodeId = session.nodeId as string
    this.metrics?.messages.add({ direction: 'up', transport: session.connection.transport })
    if (isReliableMessage(env)) {
      const lane = this.#nodes.get(nodeId)?.session === session ? this.#lane(nodeId) : undefined
      try {
        lane?.handle(env)
      } catch (err) {
        session.abort(err as Error)
      }
      return
    }
    const settled = this.#pending.settle(env, nodeId)
    if (settled === 'settled') return
    if (settled === 'wrong-peer') {
      this.#refuseForeignResponse(nodeId, env)
      return
    }
    const dest = parseNodeDestination(env.router.destination)
    if (dest !== undefined && dest.nodeId !== nodeId) {
      this.#forward(nodeId, dest, env)
      return
    }
    const m: UpstreamMessage = { nodeId, envelope: env }
    this.emit('message', m)
    this.#upstream.push(m)
  }

  // ---- public API ------------------------------------------------------------------

  /**
   * Send to a node. Best-effort (default): the node must be connected; waits
   * for drain when the connection is congested. Reliable: resolves once the
   * message is durable in the node's outbox (connected or not); throws
   * QuotaExceededError when the quota refuses it.
   */
  async send (nodeId: string, env: Envelope, options: HubSendOptions = {}): Promise<void> {
    if (options.delivery === 'reliable') {
      const outcome = await this.sendReliable(nodeId, env)
      if (outcome.status === 'rejected') throw new QuotaExceededError(nodeId, outcome.reason)
      return
    }
    if (this.remote !== undefined && this.#nodes.get(nodeId)?.session === undefined) {
      if (await this.remote.send(nodeId, env)) return
      throw new NodeOfflineError(nodeId)
    }
    await this.sendLocal(nodeId, env)
  }

  /** Best-effort send on this hub's own session for the node (cluster mode: never routed elsewhere). */
  async sendLocal (nodeId: string, env: Envelope): Promise<void> {
    const session = this.#nodes.get(nodeId)?.session
    if (session === undefined || session.state !== 'active') throw new NodeOfflineError(nodeId)
    const ok = session.send(env)
    this.metrics?.messages.add({ direction: 'down', transport: session.connection.transport })
    if (!ok) await session.connection.onDrain()
  }

  /**
   * Reliable send with the store's outcome (queued with seq, stale, or rejected by quota), or
   * `duplicate` when the same envelope id was queued for the node within the producer window
   * (reliable/producer-window.ts): a producer may retry with the same id after a hub crash.
   */
  async sendReliable (nodeId: string, env: Envelope): Promise<EnqueueOutcome> {
    const lane = this.#lane(nodeId)
    if (lane === undefined) throw new InvalidOptionError('delivery', 'reliable delivery needs a store (Hub.start creates one in dataDir)')
    return await lane.sender.enqueue(env)
  }

  /** Pending reliable messages for a node. */
  outboxDepth (nodeId: string): number {
    return this.store?.outboxStats(nodeId).count ?? 0
  }

  /** Send a request and wait for the response matched by parentId. */
  async request (nodeId: string, env: Envelope, options: RequestOptions = {}): Promise<Envelope> {
    const timeoutMs = intOption('timeoutMs', options.timeoutMs, this.requestTimeoutMs, 1)
    if (this.remote !== undefined && this.#nodes.get(nodeId)?.session === undefined) {
      env.header.sync = true
      const res = await this.remote.request(nodeId, env, timeoutMs)
      if (res === undefined) throw new NodeOfflineError(nodeId)
      return res
    }
    return await this.requestLocal(nodeId, env, timeoutMs)
  }

  /** request() on this hub's own session for the node (cluster mode: never routed elsewhere). */
  async requestLocal (nodeId: string, env: Envelope, timeoutMs: number): Promise<Envelope> {
    env.header.sync = true
    const m = this.metrics
    const waiting = this.#pending.wait(env.header.id, nodeId, timeoutMs, (ms, ok) => {
      if (m === undefined) return
      m.requests.inc({ result: ok ? 'ok' : 'error' })
      if (ok) m.requestLatency.observe(ms / 1000)
    })
    try {
      await this.sendLocal(nodeId, env)
    } catch (err) {
      this.#pending.fail(env.header.id, err as Error)
    }
    return await waiting
  }

  /**
   * ServiceBus (DESIGN.md §7): call an HTTP endpoint of an app on the edge's
   * loopback and get its response. The edge must allow the port
   * (`serviceBus.allowedPorts`); refusals arrive as RemoteError with the code.
   */
  async callEdgeHttp (nodeId: string, req: { method?: string, path: string, port: number, headers?: Record<string, string | string[]>, body?: string | Uint8Array },
    options: RequestOptions = {}): Promise<{ status: number, headers: Record<string, string | string[]>, body: Uint8Array }> {
    const env = newMessage({ source: 'cloud', group: 'servicebus', operation: 'http', resource: `servicebus/http/${req.port}`, content: req })
    const res = await this.request(nodeId, env, options)
    return res.content as { status: number, headers: Record<string, string | string[]>, body: Uint8Array }
  }

  /** Answer an upstream request. */
  async respond (nodeId: string, request: Envelope, content: unknown): Promise<void> {
    await this.send(nodeId, newResponse(request, content, 'cloud'))
  }

  async respondError (nodeId: string, request: Envelope, code: string, message: string): Promise<void> {
    await this.send(nodeId, newErrorResponse(request, code, message, 'cloud'))
  }

  /** Send to every connected node matching the selector (labels or predicate). */
  async broadcast (selector: NodeSelector, env: Envelope): Promise<{ sent: string[], failed: string[] }> {
    const local = await this.broadcastLocal(selector, env)
    // Cluster mode: other hubs' nodes too (label selectors only: a predicate cannot travel).
    if (this.remote === undefined || typeof selector === 'function') return local
    const other = await this.remote.broadcast(selector, env)
    return { sent: [...local.sent, ...other.sent], failed: [...local.failed, ...other.failed] }
  }

  /** broadcast() to the nodes held by this hub only. */
  async broadcastLocal (selector: NodeSelector, env: Envelope): Promise<{ sent: string[], failed: string[] }> {
    const match = typeof selector === 'function'
      ? selector
      : (n: NodeInfo) => Object.entries(selector).every(([k, v]) => n.labels[k] === v)
    const sent: string[] = []
    const failed: string[] = []
    this.metrics?.broadcasts.inc()
    await Promise.all([...this.#nodes.values()].filter(r => r.session !== undefined && match(r.info)).map(async r => {
      try {
        await this.sendLocal(r.info.nodeId, env)
        sent.push(r.info.nodeId)
      } catch {
        failed.push(r.info.nodeId)
      }
    }))
    this.metrics?.broadcastFanout.inc(sent.length)
    return { sent, failed }
  }

  /** Upstream messages as an async iterable (bounded; a slow consumer pauses the sessions). */
  messages (): AsyncIterable<UpstreamMessage> {
    return this.#upstream
  }

  nodes (): NodeInfo[] {
    return [...this.#nodes.values()].map(r => this.#snapshot(r))
  }

  node (nodeId: string): NodeInfo | undefined {
    const r = this.#nodes.get(nodeId)
    return r === undefined ? undefined : this.#snapshot(r)
  }

  /** Operator labels, merged over the labels the edge reports. */
  setLabels (nodeId: string, labels: Record<string, string>): void {
    const rec = this.#record(nodeId)
    rec.operatorLabels = { ...labels }
    rec.info.labels = { ...(rec.session?.labels ?? {}), ...labels }
  }

  /** Disconnect a node (it will reconnect unless its credentials are revoked). */
  async disconnect (nodeId: string, reason = 'disconnected by operator'): Promise<void> {
    await this.#nodes.get(nodeId)?.session?.goodbye(reason)
  }

  /**
   * Operator removal (issue 12 `node remove`; the binding itself is the
   * caller's): end the live session with a goodbye and forget the node's
   * record. With `purge`, its pending reliable messages are deleted (counted
   * as drops{reason="purged"}); without, they stay and are delivered if the
   * node joins again. Returns how many messages were purged.
   */
  async forgetNode (nodeId: string, options: { purge?: boolean, reason?: string } = {}): Promise<number> {
    const rec = this.#nodes.get(nodeId)
    await rec?.session?.goodbye(options.reason ?? 'node removed by an operator').catch(() => {})
    let purged = 0
    if (options.purge === true && this.store !== undefined) {
      const lane = this.#lanes.get(nodeId)
      lane?.close()
      this.#lanes.delete(nodeId)
      const stats = this.store.outboxStats(nodeId)
      if (stats.count > 0) purged = await this.store.ack(nodeId, stats.lastSeq)
      if (purged > 0) this.metrics?.drops.inc({ reason: 'purged' }, purged)
    }
    if (rec !== undefined && rec.session === undefined) this.#nodes.delete(nodeId)
    return purged
  }

  get pendingRequests (): number { return this.#pending.size }

  /** True when this hub holds an active session for the node. */
  holds (nodeId: string): boolean {
    return this.#nodes.get(nodeId)?.session?.state === 'active'
  }

  /** Cluster mode: records for the node's outbox arrived from elsewhere; let its lane send them. */
  pumpLane (nodeId: string): void {
    this.#lanes.get(nodeId)?.sender.pump()
  }

  async close (graceMs = 5000): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#pending.rejectAll(new ConnectionClosedError('hub closed'))
    this.#upstream.end()
    for (const lane of this.#lanes.values()) lane.close()
    await Promise.all([...this.#sessions].map(s => s.goodbye('hub shutting down').catch(() => {})))
    await Promise.all(this.transportListeners.map(l => l.close(graceMs)))
  }

  // ---- internals ---------------------------------------------------------------------

  #snapshot (r: NodeRecord): NodeInfo {
    const info = { ...r.info, labels: { ...r.info.labels } }
    if (r.session !== undefined) {
      info.lastSeen = r.session.lastSeen
      info.rttMs = r.session.rttMs ?? r.session.connection.stats.rttMs
    }
    return info
  }

  #forward (from: string, dest: { nodeId: string, module: string | undefined }, env: Envelope, reliable = false): void {
    const fromRec = this.#nodes.get(from)
    const toRec = this.#nodes.get(dest.nodeId)
    const isAnswer = env.router.operation === 'response' || env.router.operation === 'error'
    // What the message can reach on the destination: the named module, and the
    // group it falls back to when no module has that name (./edge-to-edge.ts).
    const reached = dest.module === undefined || dest.module === env.router.group ? [env.router.group] : [dest.module, env.router.group]
    let allowed = false
    if (toRec !== undefined && fromRec !== undefined) {
      if (isAnswer && this.#forwardedRequests.takeAnswer(env.header.parentId, from, dest.nodeId, this.clock.now())) {
        allowed = true
      } else {
        const a = this.#snapshot(fromRec)
        const b = this.#snapshot(toRec)
        allowed = reached.every(m => this.#edgeToEdge(a, b, m))
      }
    }
    const answer = (code: string, message: string): void => {
      if (isAnswer) return
      void this.send(from, newErrorResponse(env, code, message, 'cloud')).catch(() => {})
    }
    if (!allowed) {
      this.metrics?.forwards.inc({ result: 'denied' })
      this.#emitEvent({ type: 'forward-denied', from, to: dest.nodeId, module: reached.join(',') })
      this.#limitedWarn(`node:${from}`, { from, to: dest.nodeId, module: reached.join(',') }, 'edge-to-edge message denied')
      answer('EF_FORBIDDEN', `node ${from} may not send to ${reached.join('/')} on node ${dest.nodeId}`)
      return
    }
    if (!isAnswer) this.#forwardedRequests.remember(env.header.id, from, dest.nodeId, this.clock.now())
    // The receiver learns the sender from the hub, never from the sender's own claim.
    const forwarded: Envelope = {
      header: env.header,
      router: { ...env.router, source: `node:${from}/${env.router.source.replace(/^node:[^/]*\/?/, '')}` },
      content: env.content
    }
    if (dest.module !== undefined) forwarded.router.destination = dest.module
    else delete forwarded.router.destination
    this.send(dest.nodeId, forwarded, reliable ? { delivery: 'reliable' } : {}).then(() => this.metrics?.forwards.inc({ result: 'delivered' }), () => {
      this.metrics?.forwards.inc({ result: 'offline' })
      answer('EF_NODE_OFFLINE', `node ${dest.nodeId} is not connected`)
    })
  }

  /**
   * Issue 13 item 3: an answer to a request that was sent to another node.
   * Request ids are not secrets, so matching by id alone let any edge answer
   * for any other; the answer is dropped (the request keeps waiting for its
   * own node), counted and reported, and never reaches messages().
   */
  #refuseForeignResponse (from: string, env: Envelope): void {
    this.metrics?.drops.inc({ reason: 'response_from_wrong_node' })
    this.#emitEvent({ type: 'response-refused', from, requestId: env.header.parentId ?? '' })
    this.#limitedWarn(`node:${from}`, { nodeId: from, requestId: env.header.parentId }, 'refused a response to a request sent to another node')
  }

  /** A connection refused or cut off before authentication (./transport/pre-auth.ts): counted, logged per source at a bounded rate. */
  #preAuthRefused (e: PreAuthRefusalEvent): void {
    this.metrics?.connectionRefusals.inc({ stage: 'preauth', reason: e.reason, transport: e.transport })
    this.#limitedWarn(e.source, { reason: e.reason, transport: e.transport, source: e.source, detail: e.detail }, 'unauthenticated connection refused')
  }

  /** warn, at most a few lines per key (source address or node) and then one per 5 s, saying how many were left out. */
  #limitedWarn (key: string, fields: Record<string, unknown>, message: string): void {
    const r = this.#logLimit.take(key)
    if (!r.ok) return
    this.logger.warn(r.suppressed > 0 ? { ...fields, suppressed: r.suppressed } : fields, message)
  }

  /** The node's ACK lane (created on first use), or undefined without a store. */
  #lane (nodeId: string): ReliableEndpoint | undefined {
    if (this.store === undefined) return undefined
    let lane = this.#lanes.get(nodeId)
    if (lane === undefined) {
      lane = new ReliableEndpoint(nodeId, {
        source: 'cloud',
        store: this.#laneStore ??= withInboundBarrier(this.store, peer => this.#deviceHandler?.durable(peer)),
        clock: this.clock,
        codec: resolveConnectionOptions(this.#connectionOptions).codec,
        quota: this.#quota,
        ...this.#laneOptions,
        onEvent: e => this.#laneEvent(e),
        onCount: (what, n) => this.reliableMetrics?.onCount(what, n),
        // Upstream versions are per node: node b's "x" v3 is not stale because node a sent "x" v5.
        // (Node names cannot contain '/', so the prefix is unambiguous.)
        resourceKey: env => `${nodeId}/${env.router.resource}`,
        deliver: async (env, seq) => {
          await this.#deliverReliable(nodeId, env, seq)
          return 'ok' as const
        }
      })
      this.#lanes.set(nodeId, lane)
      const session = this.#nodes.get(nodeId)?.session
      if (session !== undefined && session.state === 'active') lane.attach(session.connection)
    }
    return lane
  }

  /** Create lanes for nodes with pending messages (TTL and quotas apply while they are offline). */
  openLanes (): void {
    for (const peer of this.store?.peersWithPending() ?? []) this.#lane(peer)
  }

  /**
   * Route reliable upstream messages of router group `$device` to `handler`
   * instead of the application (messages()/onUpstream). The edge is acked
   * only after `handler.durable(node)` resolved for the group (the registry
   * applied the messages durably, group-committed: device-upstream.ts); a
   * rejection makes the edge resend. `undefined` restores normal delivery.
   */
  setDeviceHandler (handler: DeviceUpstreamHandler | undefined): void {
    this.#deviceHandler = handler
  }

  async #deliverReliable (nodeId: string, env: Envelope, seq: number): Promise<void> {
    if (this.#deviceHandler !== undefined && env.router.group === '$device') {
      await this.#deviceHandler.accept(nodeId, env, seq)
      return
    }
    const dest = parseNodeDestination(env.router.destination)
    if (dest !== undefined && dest.nodeId !== nodeId) {
      this.#forward(nodeId, dest, env, true)
      return
    }
    if (!this.#hasConsumer()) this.#hold(nodeId)
    const m: UpstreamMessage = { nodeId, envelope: env }
    this.emit('message', m)
    this.#upstream.push(m)
    await this.#onUpstream?.(m)
  }

  /** Nodes whose reliable upstream is held for want of a consumer (resumed when one attaches). */
  readonly #held = new Set<string>()

  /** Someone takes upstream messages: onUpstream, a 'message' listener, or a messages() iterator. */
  #hasConsumer (): boolean {
    return this.#onUpstream !== undefined || this.listenerCount('message') > 0 || this.#upstream.iterators > 0
  }

  /**
   * Reliable upstream with nobody to take it (issue 12: a CLI hub acked it and it vanished):
   * refuse it with HOLD_CODE so the edge KEEPS it in its durable outbox (bounded by its quota)
   * and probes again with backoff; when a consumer attaches, every held lane gets a `resume`
   * and the edge resends at once. Logged once per node and hold, counted as held.
   */
  #hold (nodeId: string): never {
    if (!this.#held.has(nodeId)) {
      this.#held.add(nodeId)
      this.logger.warn({ nodeId }, 'reliable upstream held at the edge: this hub has no consumer (hub.messages(), on("message") or onUpstream)')
    }
    throw new EdgeFabricError(HOLD_CODE, 'the hub has no consumer for upstream messages yet; kept at the edge')
  }

  #consumerAttached (): void {
    if (this.#held.size === 0 || !this.#hasConsumer()) return
    for (const nodeId of this.#held) {
      const lane = this.#lanes.get(nodeId)
      if (lane?.attached === true) lane.receiver.sendResume()
    }
    this.#held.clear()
  }

  /** The ACK lanes (one per node that ever had reliable traffic): metrics and the admin API read them. */
  reliableLanes (): IterableIterator<ReliableEndpoint> {
    return this.#lanes.values()
  }

  /** Transport counters of a node's current session (bytes, messages, RTT), if connected. */
  nodeStats (nodeId: string): import('../transport/types.js').ConnectionStats | undefined {
    return this.#nodes.get(nodeId)?.session?.connection.stats
  }

  /** The ACK lane of one node, if it exists. */
  reliableLane (nodeId: string): ReliableEndpoint | undefined {
    return this.#lanes.get(nodeId)
  }

  #laneEvent (e: LaneEvent): void {
    this.reliableMetrics?.onLaneEvent(e)
    const m = this.metrics
    if (m !== undefined) {
      if (e.type === 'dead-letter') m.drops.inc({ reason: e.code === 'EF_TTL_EXPIRED' ? 'ttl_expired' : e.code === 'EF_QUOTA_DROPPED' ? 'quota_dropped' : 'rejected_by_peer' })
      if (e.type === 'expired') m.drops.inc({ reason: 'ttl_expired' }, e.count)
      if (e.type === 'superseded') m.drops.inc({ reason: 'superseded' }, e.count)
      if (e.type === 'stale') m.drops.inc({ reason: 'stale' })
      if (e.type === 'duplicate') m.drops.inc({ reason: 'duplicate' })
    }
    if (e.type === 'store-error' || e.type === 'gap' || e.type === 'dead-letter') this.logger.warn(e, 'reliable lane')
    this.emit('lane', e)
  }

  /** The registry record of a node, created (disconnected) on first use. */
  #record (nodeId: string): NodeRecord {
    let rec = this.#nodes.get(nodeId)
    if (rec === undefined) {
      rec = {
        operatorLabels: {},
        session: undefined,
        info: {
          nodeId, status: 'disconnected', labels: {}, transport: undefined, remoteAddress: undefined, keyId: undefined,
          connectedAt: undefined, disconnectedAt: undefined, lastSeen: undefined, rttMs: undefined, sessionId: undefined, capabilities: undefined
        }
      }
      this.#nodes.set(nodeId, rec)
    }
    return rec
  }

  #connectedCount (): number {
    return this.#connected
  }

  readonly #accounted = new WeakMap<HubSession, { sent: number, received: number }>()

  /** Add the bytes a session moved since the last call to the byte counters. */
  #account (session: HubSession): void {
    const m = this.metrics
    if (m === undefined) return
    const st = session.connection.stats
    const prev = this.#accounted.get(session) ?? { sent: 0, received: 0 }
    const transport = session.connection.transport
    if (st.bytesSent > prev.sent) m.bytes.inc({ direction: 'down', transport }, st.bytesSent - prev.sent)
    if (st.bytesReceived > prev.received) m.bytes.inc({ direction: 'up', transport }, st.bytesReceived - prev.received)
    this.#accounted.set(session, { sent: st.bytesSent, received: st.bytesReceived })
  }

  /** Refresh scrape-time metrics (bytes, RTT). Called by the admin server before /metrics. */
  refreshMetrics (): void {
    for (const r of this.#nodes.values()) {
      if (r.session === undefined) continue
      this.#account(r.session)
      const rtt = r.session.rttMs ?? r.session.connection.stats.rttMs
      if (rtt !== undefined) this.metrics?.rtt.set({ node: r.info.nodeId }, rtt / 1000)
    }
  }

  #emitEvent (e: HubEvent): void {
    this.emit('event', e)
  }
}
