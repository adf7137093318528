/**
 * The embedded MQTT broker (internal mode, KubeEdge `mqttMode` 0/2;
 * DESIGN.md §8, §9): aedes with the LMDB persistence, a TCP (or TLS)
 * listener on loopback by default and an optional WebSocket listener.
 * Every connection, TCP or WebSocket, passes the same packet-size guard
 * (issue 13 item 4); devices and mappers authenticate (auth.ts), own their
 * client ids and persistent sessions (client-ids.ts) and are confined to
 * their topics by the ACL (acl.ts), wildcards filtered per message. The twin
 * engine listens through an in-process subscription, so a mapper's PUBACK is
 * sent only after the engine has persisted and queued its update.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import { mayPublish, mayRead, maySubscribe, type AclContext, type CredentialIndex, type Principal } from './acl.js'
import type { Authenticator, LoginResult } from './auth.js'
import { PacketSizeGuard, PacketTooLargeError } from './broker-guard.js'
import { BrokerConn } from './broker-conn.js'
import { SubscriberIndex } from './broker-subscribers.js'
import { DenialLog } from './broker-denials.js'
import { LmdbPersistence } from './broker-persistence.js'
import { BrokerClients } from './broker-clients.js'
import { ClientIds, type SessionLimits } from './client-ids.js'
import type { DeviceMetrics, MqttDenialReason, MqttListener } from './metrics.js'
import { engineFilters } from './topics.js'
import type { Database } from 'lmdb'

export interface InternalBrokerOptions {
  host: string
  port: number
  tls?: { cert: string, key: string, ca?: string }
  /** WebSocket listener; `port` 0 picks a free one. */
  ws?: { host?: string, port: number }
  brokerId: string
  db: Database
  auth: Authenticator
  credentials: CredentialIndex
  acl: AclContext
  sessions: SessionLimits
  /** Accept CONNECT without credentials from loopback peers as the node's mapper (issue 14 item 9). */
  allowAnonymous: boolean
  clock: Clock
  metrics: DeviceMetrics
  logger: Logger
  maxPayloadBytes: number
  onMessage: (topic: string, payload: Buffer) => Promise<void>
  onClientReady: () => void
}

/** Where refused publishes go: nobody may subscribe, authorizeForward drops it for everyone. */
const DENIED_TOPIC = '$edgefabric/denied'

export function isLoopback (addr: string | undefined): boolean {
  if (addr === undefined) return false
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr
  return a === '::1' || /^127\.\d+\.\d+\.\d+$/.test(a)
}

export class InternalBroker {
  readonly url: string
  readonly wsUrl: string | undefined
  readonly persistence: LmdbPersistence
  readonly clientIds: ClientIds
  /** Connected clients (edge console, client/subscription gauges). */
  readonly clients: BrokerClients
  readonly #broker: Aedes
  readonly #servers: Array<Server | HttpServer>
  readonly #wss: WebSocketServer | undefined
  readonly #byUser: Map<string, Set<Client>>

  readonly #metrics: DeviceMetrics
  readonly #subscribers: SubscriberIndex

  private constructor (broker: Aedes, servers: Array<Server | HttpServer>, url: string, persistence: LmdbPersistence, subscribers: SubscriberIndex, clientIds: ClientIds, byUser: Map<string, Set<Client>>, clients: BrokerClients, metrics: DeviceMetrics, wss?: WebSocketServer, wsUrl?: string) {
    this.#byUser = byUser
    this.clients = clients
    this.#metrics = metrics
    metrics.broker = clients
    this.#broker = broker
    this.#servers = servers
    this.url = url
    this.persistence = persistence
    this.#subscribers = subscribers
    this.clientIds = clientIds
    this.#wss = wss
    this.wsUrl = wsUrl
  }

  static async start (o: InternalBrokerOptions): Promise<InternalBroker> {
    const principals = new WeakMap<Client, Principal>()
    const sources = new WeakMap<object, string>()
    const listeners = new WeakMap<object, MqttListener>()
    const clients = new BrokerClients()
    const assigned = new WeakSet<Client>()
    const byUser = new Map<string, Set<Client>>()
    const log = o.logger
    const denials = new DenialLog({ metrics: o.metrics, clock: o.clock, logger: log, sourceOf: conn => sources.get(conn) })
    const deny = (action: string, reason: MqttDenialReason, client: Client | null, detail: object): void => { denials.deny(action, reason, client, detail) }
    const persistence = new LmdbPersistence(o.db)
    const subscribers = new SubscriberIndex()
    persistence.onSubscriptions = filters => { for (const f of filters) subscribers.add(f) }
    persistence.onQueueDrop = () => o.metrics.publishFailures.inc({ broker: 'internal', reason: 'queue-full' })
    const clientIds = new ClientIds(o.credentials, persistence, o.clock, o.sessions, id => log.info({ clientId: id }, 'abandoned persistent session expired'))
    const broker = await Aedes.createBroker({
      id: o.brokerId,
      persistence,
      preConnect: (client, packet, done) => {
        if (packet.clientId === '') assigned.add(client)
        done(null, true)
      },
      authenticate: (client, username, password, done) => {
        const source = sources.get(client.conn as object)
        const refuse = (returnCode: number, action: string, reason: MqttDenialReason, detail: object): void => {
          deny(action, reason, client, { username, source, ...detail })
          done(Object.assign(new Error(returnCode === 3 ? 'server unavailable' : returnCode === 4 ? 'bad username or password' : 'not authorized'), { returnCode }) as never, false)
        }
        const anonymous = (username === undefined || username === '') && password === undefined
        const check: Promise<LoginResult | 'anonymous'> = anonymous && o.allowAnonymous && isLoopback(source)
          ? Promise.resolve('anonymous')
          : o.auth.check(username, password, source)
        check.then(r => {
          o.metrics.logins.inc({ outcome: r === 'anonymous' ? 'anonymous' : r.outcome })
          const p = r === 'anonymous' ? o.credentials.anonymous() : r.principal
          if (p === undefined) {
            const outcome = r === 'anonymous' ? 'bad-credentials' : r.outcome
            // 4 only for a checked wrong password; every other refusal is "server unavailable" (3): the
            // credentials were not judged, and a device that retries later may well get in (MQTT 3.1.1 §3.2.2.3).
            if (outcome === 'bad-credentials') refuse(4, 'connect', anonymous ? 'not_authorized' : 'bad_credentials', {})
            else refuse(3, 'connect', outcome === 'queue-full' || outcome === 'queue-timeout' ? 'server_busy' : 'source_blocked', { reason: outcome })
            return
          }
          const why = clientIds.check(client.id, assigned.has(client), client.clean, p)
          if (why !== undefined) { refuse(why === 'quota' ? 3 : 5, why === 'quota' ? 'session-quota' : 'client-id', why === 'quota' ? 'session_quota' : 'client_id_owned', { reason: why, principal: p.username }); return }
          principals.set(client, p)
          const set = byUser.get(p.username) ?? new Set<Client>()
          set.add(client)
          byUser.set(p.username, set)
          clientIds.connected(client.id, client.clean, p, client).then(() => done(null, true), err => done(Object.assign(err as Error, { returnCode: 3 }) as never, false))
        }, err => { done(Object.assign(err as Error, { returnCode: 3 }) as never, false) })
      },
      authorizePublish: (client, packet, cb) => {
        if (client === null) { cb(null); return }
        const p = principals.get(client)
        if (p === undefined || !mayPublish(p, packet.topic, o.acl)) {
          // Issue 14 item 6: drop, count, log (rate-limited); the connection stays (a QoS 1 still gets its PUBACK:
          // MQTT 3.1.1 has no negative PUBACK, and a client that never gets one would resend forever).
          deny('publish', 'publish_acl', client, { topic: packet.topic, username: p?.username })
          packet.topic = DENIED_TOPIC
          packet.payload = Buffer.alloc(0)
          packet.retain = false
          cb(null)
          return
        }
        // Retained messages are store entries a client can multiply by topic: operators only (issue 13 item 9).
        if (packet.retain && p.kind !== 'operator') packet.retain = false
        clients.countIn(client)
        cb(null)
      },
      authorizeSubscribe: (client, sub, cb) => {
        const p = principals.get(client)
        if (p === undefined || !maySubscribe(p, sub.topic, o.acl)) {
          deny('subscribe', 'subscribe_acl', client, { topic: sub.topic, username: p?.username })
          cb(null, null)
          return
        }
        cb(null, sub)
      },
      // Per message: wildcard subscribers see only topics they may read; refused and oversize payloads go nowhere.
      authorizeForward: (client, packet) => {
        if (packet.topic === DENIED_TOPIC || packet.payload.length > o.maxPayloadBytes) return null
        const p = principals.get(client)
        if (p === undefined || !mayRead(p, packet.topic, o.acl)) return null
        clients.countOut(client)
        return packet
      }
    })
    broker.on('client', client => {
      const p = principals.get(client)
      const conn = client.conn as object
      clients.add(client, { username: p?.username ?? '', kind: p?.kind ?? 'unknown', remoteAddress: sources.get(conn), listener: listeners.get(conn) ?? 'tcp', connectedAt: o.clock.now() })
    })
    broker.on('clientDisconnect', client => {
      clients.remove(client)
      const u = principals.get(client)?.username
      if (u !== undefined) { byUser.get(u)?.delete(client); if (byUser.get(u)?.size === 0) byUser.delete(u) }
      denials.forgetPublish(client.id)
      clientIds.disconnected(client.id, client).catch(err => log.debug({ err }, 'session owner update failed'))
    })
    broker.on('clientReady', () => o.onClientReady())
    // Granted filters only (128 = refused), so refused subscribes cannot fill the index.
    broker.on('subscribe', subs => { for (const s of subs) if ((s.qos as number) !== 128) subscribers.add(s.topic) })
    broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'device client error'))
    broker.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'device connection error'))
    for (const filter of engineFilters(o.acl)) {
      subscribers.add(filter)
      await new Promise<void>(resolve => {
        broker.subscribe(filter, (packet: AedesPublishPacket, cb: () => void) => {
          o.onMessage(packet.topic, packet.payload as Buffer).finally(cb)
        }, resolve)
      })
    }
    // Room for topic, properties and framing on top of the payload bound.
    const maxPacket = o.maxPayloadBytes + 65_536
    /** Same guard for TCP and WebSocket: the stream aedes reads only passes packets within the bound. */
    const guarded = (input: Readable, output: Writable, source: string | undefined, listener: MqttListener, cut: () => void): void => {
      const guard = new PacketSizeGuard(maxPacket)
      guard.on('error', err => {
        // Only a real oversize announcement is a denial; a peer closing mid-stream is a normal disconnect.
        if (err instanceof PacketTooLargeError) {
          o.metrics.denials.inc({ action: 'oversize' })
          o.metrics.mqttDenials.inc({ reason: 'packet_too_large' })
          log.warn({ err: err.message, source }, 'device connection cut')
        }
        cut()
      })
      input.on('error', () => {})
      input.pipe(guard)
      const conn = new BrokerConn(guard, output)
      if (source !== undefined) sources.set(conn, source)
      listeners.set(conn, listener)
      broker.handle(conn)
    }
    const handle = (sock: Socket): void => {
      // Small request/answer packets: without TCP_NODELAY, Nagle + delayed ACK hold an answer ≈40 ms on loopback.
      sock.setNoDelay(true)
      guarded(sock, sock, sock.remoteAddress, o.tls !== undefined ? 'tls' : 'tcp', () => sock.destroy())
    }
    const server = o.tls !== undefined ? createTlsServer({ cert: o.tls.cert, key: o.tls.key, ...(o.tls.ca !== undefined ? { ca: o.tls.ca } : {}) }, handle) : createNetServer(handle)
    try {
      await listen(server, o.port, o.host)
    } catch (err) {
      clientIds.close()
      await new Promise<void>(resolve => broker.close(() => resolve()))
      throw err
    }
    const addr = server.address() as AddressInfo
    const url = `${o.tls !== undefined ? 'mqtts' : 'mqtt'}://${fmtHost(o.host)}:${addr.port}`
    if (o.ws === undefined) return new InternalBroker(broker, [server], url, persistence, subscribers, clientIds, byUser, clients, o.metrics)
    const http = createHttpServer()
    // maxPayload: one WebSocket frame may not exceed the MQTT packet bound either (ws' default is 100 MiB).
    const wss = new WebSocketServer({ server: http, maxPayload: maxPacket })
    wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => {})
      guarded(stream, stream, req.socket.remoteAddress, 'ws', () => ws.terminate())
    })
    wss.on('error', err => log.warn({ err }, 'device websocket listener error'))
    const wsHost = o.ws.host ?? o.host
    await listen(http, o.ws.port, wsHost)
    const wsUrl = `ws://${fmtHost(wsHost)}:${(http.address() as AddressInfo).port}`
    return new InternalBroker(broker, [server, http], url, persistence, subscribers, clientIds, byUser, clients, o.metrics, wss, wsUrl)
  }

  /** Disconnect every session authenticated as one of `usernames` (credential revoked or rotated). Returns how many. */
  disconnect (usernames: string[]): number {
    let n = 0
    for (const u of usernames) {
      for (const c of this.#byUser.get(u) ?? []) { c.close(); n++ }
      this.#byUser.delete(u)
    }
    return n
  }

  /** False when no client could receive `topic` (broker-subscribers.ts): the edge skips encoding and publishing it. */
  wants (topic: string): boolean { return this.#subscribers.mayMatch(topic) }

  /** Publish from the edge (QoS 1, so persistent mapper sessions queue it). */
  publish (topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#broker.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false } as AedesPublishPacket, err => { if (err != null) reject(err); else resolve() })
    })
  }

  async close (): Promise<void> {
    if (this.#metrics.broker === this.clients) this.#metrics.broker = undefined
    this.clientIds.close()
    this.#wss?.close()
    await new Promise<void>(resolve => this.#broker.close(() => resolve()))
    for (const s of this.#servers) await new Promise<void>(resolve => s.close(() => resolve()))
    await this.persistence.destroy().catch(() => {})
  }
}

function fmtHost (h: string): string { return h.includes(':') ? `[${h}]` : h }

async function listen (server: Server | HttpServer, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  server.on('error', () => {})
}
