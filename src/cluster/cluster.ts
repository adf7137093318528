/**
 * Cluster mode in one object (issue 17, DESIGN.md §10b): the NATS connection,
 * the shared state (bindings, identity, presence), the JetStream-backed
 * reliable store, cross-hub routing and the upstream stream. Hub.start
 * creates it when `options.cluster` is given and hands it a ClusterHubPort;
 * with no `cluster` option none of this is loaded and the hub is the
 * embedded single-process default (LMDB, no external service).
 */
import { headers as natsHeaders } from '@nats-io/transport-node'
import type { EnvelopeCodec } from '../codec/codec.js'
import type { Envelope } from '../codec/envelope.js'
import { JoinRefusedError, toError } from '../errors.js'
import type { Logger } from '../ops/logger.js'
import { KvBindingStore } from './bindings.js'
import { ClusterConnection, resolveClusterOptions } from './connection.js'
import { ClusterIdentity } from './identity.js'
import { Presence } from './presence.js'
import { JetStreamKv } from './registry-store.js'
import type { RegistryLogMetrics } from './registry-snapshot-writer.js'
import { Router } from './router.js'
import { ClusterStore } from './store.js'
import { trace, tracing } from './trace.js'
import { H } from './subjects.js'
import { ClusterUnavailableError, type ClusterHubPort, type ClusterOptions } from './types.js'

/** How a hub reaches nodes held by other hubs (HubCore.remote). */
export interface RemoteNodes {
  /** false: no hub holds the node. */
  send (nodeId: string, env: Envelope): Promise<boolean>
  /** undefined: no hub holds the node. */
  request (nodeId: string, env: Envelope, timeoutMs: number): Promise<Envelope | undefined>
  broadcast (selector: Record<string, string>, env: Envelope): Promise<{ sent: string[], failed: string[] }>
}

interface Authenticator { authenticate: (...args: any[]) => Promise<{ nodeId: string, keyId: string }> }

export class Cluster {
  readonly connection: ClusterConnection
  readonly bindings: KvBindingStore
  readonly identity: ClusterIdentity
  readonly store: ClusterStore
  readonly hubName: string
  readonly #codec: EnvelopeCodec
  #presence: Presence | undefined
  #router: Router | undefined
  #port: ClusterHubPort | undefined
  #closed = false
  #poke: NodeJS.Timeout | undefined
  /** Joins of a node between authentication and admission (its cluster state must stay loaded). */
  readonly #joining = new Map<string, number>()

  private constructor (c: ClusterConnection, codec: EnvelopeCodec) {
    this.connection = c
    this.#codec = codec
    this.hubName = c.options.hubName
    this.bindings = new KvBindingStore(c)
    this.identity = new ClusterIdentity(c)
    this.store = new ClusterStore(c, {
      codec,
      onPending: node => this.#port?.pumpLane(node),
      onError: err => c.logger.warn({ err: err.message }, 'cluster store')
    })
    c.onAvailability(available => { if (available) this.store.restartReaders() })
  }

  /** Connect and create the cluster's streams and buckets. Throws ClusterUnavailableError. */
  static async start (options: ClusterOptions, deps: { codec: EnvelopeCodec, logger: Logger }): Promise<Cluster> {
    const resolved = resolveClusterOptions(options)
    const c = await ClusterConnection.open(resolved, deps.logger.child({ component: 'cluster' }))
    return new Cluster(c, deps.codec)
  }

  /** Wire the cluster to the hub it serves: presence watch, node subjects, broadcast. */
  async attach (port: ClusterHubPort): Promise<RemoteNodes> {
    this.#port = port
    this.#presence = new Presence(this.connection, this.hubName, port)
    await this.#presence.start()
    this.#router = new Router(this.connection, this.#codec, port, this.hubName)
    this.#router.start()
    // Safety net under the event-driven wake-ups: a lane with read-ahead records is poked every second.
    this.#poke = setInterval(() => { for (const n of this.store.nodesWithRecords()) port.pumpLane(n) }, 1000)
    this.#poke.unref()
    const router = this.#router
    return {
      send: async (nodeId, env) => await router.send(nodeId, env, this.connection.options.timeoutMs),
      request: async (nodeId, env, timeoutMs) => await router.request(nodeId, env, timeoutMs),
      broadcast: async (selector, env) => await router.broadcast(selector, env)
    }
  }

  /**
   * The hub's authenticator, plus: before a node is admitted, its cluster
   * state (inbox point, outbox reader) is loaded; without the cluster the join
   * is refused with the retryable EF_CLUSTER_UNAVAILABLE, so the edge tries
   * another hub.
   */
  wrapAuthenticator<A extends Authenticator> (auth: A): A {
    const store = this.store
    const wrapped = Object.create(auth) as A
    wrapped.authenticate = async (...args: unknown[]) => {
      // Refuse at once when NATS is known to be gone: the binding lookup would wait for its
      // timeout, the handshake deadline would close the connection first, and the edge would
      // learn nothing but "closed during the handshake".
      if (!this.connection.available) throw new JoinRefusedError('EF_CLUSTER_UNAVAILABLE', 'this hub cannot reach the cluster (NATS JetStream); try another hub')
      let r: { nodeId: string, keyId: string }
      try {
        r = await auth.authenticate(...args)
      } catch (err) {
        if (err instanceof ClusterUnavailableError) throw new JoinRefusedError('EF_CLUSTER_UNAVAILABLE', `this hub cannot reach the cluster: ${err.message}`, { cause: err })
        throw err
      }
      const joining = this.#joining
      joining.set(r.nodeId, (joining.get(r.nodeId) ?? 0) + 1)
      try {
        await store.openPeer(r.nodeId)
      } catch (err) {
        throw new JoinRefusedError('EF_CLUSTER_UNAVAILABLE', `this hub cannot reach the cluster: ${toError(err).message}`, { cause: err })
      } finally {
        // Admission follows synchronously once this resolves (src/hub/session.ts).
        const left = (joining.get(r.nodeId) ?? 1) - 1
        if (left > 0) joining.set(r.nodeId, left)
        else joining.delete(r.nodeId)
      }
      return r
    }
    return wrapped
  }

  /** A session for the node is active on this hub. */
  nodeConnected (nodeId: string, sessionId: string, since: number): void {
    this.#router?.serve(nodeId)
    this.#presence?.claim(nodeId, sessionId, since).catch(err => this.connection.logger.warn({ nodeId, err: toError(err).message }, 'presence claim failed'))
  }

  /** The node's session on this hub ended. */
  nodeDisconnected (nodeId: string, sessionId: string): void {
    this.#router?.unserve(nodeId)
    void this.#presence?.release(nodeId, sessionId).catch(() => {})
    // Not while a newer session of the node is joining here: it uses the same outbox reader.
    setImmediate(() => {
      if (this.#port?.holds(nodeId) !== true && !this.#joining.has(nodeId)) void this.store.closePeer(nodeId)
    })
  }

  /**
   * A reliable upstream message from `nodeId`, about to be acknowledged: publish it to
   * `ef.<c>.up.<node>` (stream EF_<C>_UP). The edge's ack waits for the PubAck
   * (ClusterStore.commitInbound), so it resolves at once.
   */
  publishUp (nodeId: string, env: Envelope, seq?: number): void {
    if (this.connection.available === false) {
      this.store.trackUpstream(nodeId, Promise.reject(new ClusterUnavailableError('upstream message not stored: the cluster is unavailable')))
      return
    }
    const h = upstreamHeaders(nodeId, env, seq)
    const ack = this.connection.publishStored(this.connection.names.up(nodeId), contentPayload(env, h), { msgID: `${nodeId}:${env.header.id}`, headers: h })
    this.store.trackUpstream(nodeId, !tracing ? ack : ack.then(a => { trace({ k: 'up-puback', nodeId, id: env.header.id, c: (env.content as { i?: number })?.i, seq: a.seq, dup: a.duplicate }); return a }, err => { trace({ k: 'up-fail', nodeId, c: (env.content as { i?: number })?.i, err: String(err) }); throw err }))
  }

  /** Best-effort upstream messages, as they arrive, on `ef.<c>.live.up.<node>` (core NATS, not stored). */
  publishLive (nodeId: string, env: Envelope): void {
    if (!this.connection.available) return
    try {
      const h = upstreamHeaders(nodeId, env)
      this.connection.nc.publish(this.connection.names.liveUp(nodeId), contentPayload(env, h), { headers: h })
    } catch { /* best effort */ }
  }

  /**
   * The device registry's store, shared by every hub (registry-store.ts): replays the
   * registry log, then follows it. The registry that is given it closes it.
   */
  /** The device registry's store in JetStream, compacted every `registrySnapshotEvery` entries; `metrics`: the hub's registry-log counters. */
  async openRegistryStore (metrics?: RegistryLogMetrics): Promise<JetStreamKv> {
    return await JetStreamKv.open(this.connection, err => this.connection.logger.warn({ err: err.message }, 'device registry log'), {
      snapshotEvery: this.connection.options.registrySnapshotEvery,
      ...(metrics === undefined ? {} : { metrics })
    })
  }

  /** Pending reliable messages for any node (from the stream). */
  async outboxDepth (nodeId: string): Promise<number> { return await this.store.depth(nodeId) }

  async presenceOf (nodeId: string): Promise<{ hub: string, session: string, since: number } | undefined> {
    return await this.#presence?.lookup(nodeId)
  }

  get available (): boolean { return this.connection.available }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#poke)
    this.#presence?.stop()
    this.#router?.stop()
    await this.store.close()
    await this.connection.close()
  }
}

/**
 * What a plain NATS consumer reads: the content itself — raw bytes (Ef-Content: bytes) or
 * JSON (Ef-Content: json) — with the envelope's fields in Ef-* headers.
 */
function contentPayload (env: Envelope, h: ReturnType<typeof natsHeaders>): Uint8Array {
  const c = env.content
  if (c instanceof Uint8Array) { h.set(H.content, 'bytes'); return c }
  h.set(H.content, 'json')
  return new TextEncoder().encode(JSON.stringify(c ?? null))
}

function upstreamHeaders (nodeId: string, env: Envelope, seq?: number): ReturnType<typeof natsHeaders> {
  const h = natsHeaders()
  h.set('Ef-Timestamp', String(env.header.timestamp))
  h.set(H.node, nodeId)
  h.set(H.id, env.header.id)
  h.set(H.resource, env.router.resource)
  h.set(H.operation, String(env.router.operation))
  h.set(H.group, env.router.group)
  if (env.header.resourceVersion !== undefined) h.set(H.version, env.header.resourceVersion)
  if (seq !== undefined) h.set(H.seq, String(seq))
  return h
}
