/**
 * External broker connection (external mode, KubeEdge `mqttMode` 1/2;
 * DESIGN.md §8, §11) with MQTT.js.
 *
 * The trap (DESIGN.md §11): on a reconnect with a persistent session the
 * broker sends the queued messages right behind CONNACK, and MQTT.js
 * acknowledges every message that arrives while no handler is attached —
 * a handler attached after `await connectAsync()` silently loses them.
 * So the client is created with `mqtt.connect()` (synchronous; no bytes are
 * read before the next tick) and `handleMessage` is replaced in the same
 * tick. `handleMessage` (not the 'message' event) is used because MQTT.js
 * sends the PUBACK only when its callback runs: the engine has persisted
 * and queued the update first, so a crash before that means redelivery,
 * never loss.
 */
import mqtt, { type MqttClient } from 'mqtt'
import type { Logger } from '../../ops/logger.js'
import type { DeviceMetrics } from './metrics.js'
import { engineFilters } from './topics.js'

export interface ExternalBrokerOptions {
  url: string
  username?: string
  password?: string
  clientId: string
  /** Reconnect period, ms. @default 1000 */
  reconnectPeriodMs?: number
  /** Publishes waiting while the broker is unreachable before new ones are dropped (counted). @default 10000 */
  maxQueued?: number
  metrics: DeviceMetrics
  logger: Logger
  onMessage: (topic: string, payload: Buffer) => Promise<void>
  /** Namespace of single-level device topics to subscribe too (legacy topics on). */
  legacyNamespace?: string | undefined
}

export class ExternalBroker {
  readonly url: string
  readonly client: MqttClient
  readonly #o: ExternalBrokerOptions
  #queued = 0
  /** True once the engine's subscriptions are in place on the broker (subscribed, or the session already had them). */
  subscribed = false

  constructor (o: ExternalBrokerOptions) {
    this.#o = o
    this.url = o.url
    const client = mqtt.connect(o.url, {
      clientId: o.clientId,
      clean: false, // persistent session: updates published while the edge is down wait at the broker
      reconnectPeriod: o.reconnectPeriodMs ?? 1000,
      connectTimeout: 10_000,
      resubscribe: true,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {})
    })
    // Same tick as connect(): in place before CONNACK and the queued messages behind it.
    client.handleMessage = (packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
      o.onMessage(packet.topic, payload).then(() => callback(), err => { o.logger.warn({ err }, 'external broker message failed'); callback() })
    }
    client.on('connect', connack => {
      o.logger.info({ url: o.url, sessionPresent: connack.sessionPresent }, 'external broker connected')
      if (connack.sessionPresent) this.subscribed = true
      // Also with a session present: SUBSCRIBE is idempotent, and filters added since (the data topic,
      // legacy topics) must reach a session created by an older version.
      client.subscribe(engineFilters({ legacyNamespace: o.legacyNamespace }), { qos: 1 }, err => {
        if (err != null) o.logger.warn({ err }, 'external broker subscribe failed')
        else this.subscribed = true
      })
    })
    client.on('error', err => o.logger.warn({ err: err.message }, 'external broker error'))
    client.on('offline', () => o.logger.info({ url: o.url }, 'external broker offline'))
    this.client = client
  }

  get connected (): boolean { return this.client.connected }

  /** Resolves once connected the first time (or rejects after timeoutMs). */
  async waitConnected (timeoutMs = 10_000): Promise<void> {
    if (this.client.connected) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { this.client.off('connect', ok); reject(new Error(`external broker ${this.url} not connected within ${timeoutMs} ms`)) }, timeoutMs)
      const ok = (): void => { clearTimeout(timer); resolve() }
      this.client.once('connect', ok)
    })
  }

  publish (topic: string, payload: Buffer): Promise<void> {
    const max = this.#o.maxQueued ?? 10_000
    if (this.#queued >= max) {
      this.#o.metrics.publishFailures.inc({ broker: 'external', reason: 'queue_full' })
      return Promise.reject(new Error(`more than ${max} publishes waiting for the external broker`))
    }
    this.#queued++
    return this.client.publishAsync(topic, payload, { qos: 1 }).then(() => { this.#queued-- }, err => { this.#queued--; throw err })
  }

  async close (): Promise<void> {
    await this.client.endAsync(true).catch(() => {})
  }
}
