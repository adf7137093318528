/**
 * The embedded MQTT broker (internal mode, KubeEdge `mqttMode` 0/2;
 * DESIGN.md §8, §9): aedes with the LMDB persistence, a TCP (or TLS)
 * listener on loopback by default and an optional WebSocket listener.
 * Every connection passes a packet-size guard; devices and mappers
 * authenticate with cloud-issued credentials and are confined to their own
 * topics by the ACL (acl.ts). The twin engine listens through an in-process
 * subscription, so a mapper's PUBACK is sent only after the engine has
 * persisted and queued its update.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Logger } from '../../ops/logger.js'
import { mayPublish, maySubscribe, type Authenticator, type Principal } from './acl.js'
import { PacketSizeGuard } from './broker-guard.js'
import { LmdbPersistence } from './broker-persistence.js'
import type { DeviceMetrics } from './metrics.js'
import { ENGINE_FILTERS } from './topics.js'
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
  metrics: DeviceMetrics
  logger: Logger
  maxPayloadBytes: number
  onMessage: (topic: string, payload: Buffer) => Promise<void>
  onClientReady: () => void
}

export class InternalBroker {
  readonly url: string
  readonly wsUrl: string | undefined
  readonly #broker: Aedes
  readonly #server: Server
  readonly #http: HttpServer | undefined
  readonly #wss: WebSocketServer | undefined
  readonly #persistence: LmdbPersistence
  readonly #byUser: Map<string, Set<Client>>

  private constructor (broker: Aedes, server: Server, url: string, persistence: LmdbPersistence, byUser: Map<string, Set<Client>>, http?: HttpServer, wss?: WebSocketServer, wsUrl?: string) {
    this.#byUser = byUser
    this.#broker = broker
    this.#server = server
    this.url = url
    this.#persistence = persistence
    this.#http = http
    this.#wss = wss
    this.wsUrl = wsUrl
  }

  static async start (o: InternalBrokerOptions): Promise<InternalBroker> {
    const principals = new WeakMap<Client, Principal>()
    const byUser = new Map<string, Set<Client>>()
    const log = o.logger
    const deny = (action: 'connect' | 'publish' | 'subscribe', client: Client | null, detail: object): void => {
      o.metrics.denials.inc({ action })
      log.warn({ action, clientId: client?.id, ...detail }, 'device broker denied')
    }
    const persistence = new LmdbPersistence(o.db)
    const broker = await Aedes.createBroker({
      id: o.brokerId,
      persistence,
      authenticate: (client, username, password, done) => {
        o.auth.authenticate(username, password).then(p => {
          if (p === 'busy') {
            deny('connect', client, { username, reason: 'too many credential checks in progress' })
            done(Object.assign(new Error('server busy'), { returnCode: 3 }) as never, false)
            return
          }
          if (p === undefined) {
            deny('connect', client, { username })
            const err = Object.assign(new Error('bad username or password'), { returnCode: 4 })
            done(err as never, false)
            return
          }
          principals.set(client, p)
          const set = byUser.get(p.username) ?? new Set<Client>()
          set.add(client)
          byUser.set(p.username, set)
          done(null, true)
        }, err => { done(Object.assign(err as Error, { returnCode: 3 }) as never, false) })
      },
      authorizePublish: (client, packet, cb) => {
        if (client === null) { cb(null); return }
        const p = principals.get(client)
        if (p === undefined || !mayPublish(p, packet.topic)) {
          deny('publish', client, { topic: packet.topic, username: p?.username })
          cb(new Error('not authorized'))
          return
        }
        cb(null)
      },
      authorizeSubscribe: (client, sub, cb) => {
        const p = principals.get(client)
        if (p === undefined || !maySubscribe(p, sub.topic)) {
          deny('subscribe', client, { topic: sub.topic, username: p?.username })
          cb(null, null)
          return
        }
        cb(null, sub)
      },
      // A refused oversize payload is answered by the engine; it is not fanned out to other clients.
      authorizeForward: (_client, packet) => packet.payload.length > o.maxPayloadBytes ? null : packet
    })
    broker.on('client', () => o.metrics.clients.inc())
    broker.on('clientDisconnect', client => {
      o.metrics.clients.dec()
      const u = principals.get(client)?.username
      if (u !== undefined) { byUser.get(u)?.delete(client); if (byUser.get(u)?.size === 0) byUser.delete(u) }
    })
    broker.on('clientReady', () => o.onClientReady())
    broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'device client error'))
    broker.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'device connection error'))
    for (const filter of ENGINE_FILTERS) {
      await new Promise<void>(resolve => {
        broker.subscribe(filter, (packet: AedesPublishPacket, cb: () => void) => {
          o.onMessage(packet.topic, packet.payload as Buffer).finally(cb)
        }, resolve)
      })
    }
    // Room for topic, properties and framing on top of the payload bound.
    const maxPacket = o.maxPayloadBytes + 65_536
    const handle = (sock: Socket): void => {
      // Small request/answer packets: without TCP_NODELAY, Nagle + delayed ACK hold an answer ≈40 ms on loopback.
      sock.setNoDelay(true)
      const guard = new PacketSizeGuard(maxPacket)
      guard.on('error', err => { o.metrics.denials.inc({ action: 'oversize' }); log.warn({ err: err.message }, 'device connection cut'); sock.destroy() })
      sock.pipe(guard)
      broker.handle(Duplex.from({ readable: guard, writable: sock }))
    }
    const server = o.tls !== undefined ? createTlsServer({ cert: o.tls.cert, key: o.tls.key, ...(o.tls.ca !== undefined ? { ca: o.tls.ca } : {}) }, handle) : createNetServer(handle)
    try {
      await listen(server, o.port, o.host)
    } catch (err) {
      await new Promise<void>(resolve => broker.close(() => resolve()))
      throw err
    }
    const addr = server.address() as AddressInfo
    const url = `${o.tls !== undefined ? 'mqtts' : 'mqtt'}://${fmtHost(o.host)}:${addr.port}`
    if (o.ws === undefined) return new InternalBroker(broker, server, url, persistence, byUser)
    const http = createHttpServer()
    const wss = new WebSocketServer({ server: http })
    wss.on('connection', ws => { broker.handle(createWebSocketStream(ws)) })
    wss.on('error', err => log.warn({ err }, 'device websocket listener error'))
    const wsHost = o.ws.host ?? o.host
    await listen(http, o.ws.port, wsHost)
    const wsUrl = `ws://${fmtHost(wsHost)}:${(http.address() as AddressInfo).port}`
    return new InternalBroker(broker, server, url, persistence, byUser, http, wss, wsUrl)
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

  /** Publish from the edge (QoS 1, so persistent mapper sessions queue it). */
  publish (topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#broker.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false } as AedesPublishPacket, err => { if (err != null) reject(err); else resolve() })
    })
  }

  async close (): Promise<void> {
    this.#wss?.close()
    await new Promise<void>(resolve => this.#broker.close(() => resolve()))
    await new Promise<void>(resolve => this.#server.close(() => resolve()))
    if (this.#http !== undefined) { const h = this.#http; await new Promise<void>(resolve => h.close(() => resolve())) }
    await this.#persistence.destroy().catch(() => {})
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
