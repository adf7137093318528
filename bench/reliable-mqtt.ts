/**
 * Child process of bench/reliable.ts: an MQTT.js publisher or subscriber
 * (one role per process) against the mosquitto baseline, QoS 1.
 *
 *   pub-start {url}                        → {}
 *   produce   {n, window, rate?}           → {firstAt, lastAckAt}   (acknowledged = PUBACK received)
 *   sub-start {url, capacity, base}        → {sessionPresent}       (persistent session: clean false)
 *   sub-stop                               → {}                     (DISCONNECT; the broker keeps the session)
 *   reset {capacity, base} / wait {n, timeoutMs} as in reliable-ef-edge.ts
 *
 * The subscriber's handlers are attached before the client connects: a
 * handler attached after `await connectAsync()` misses (and auto-acks) what
 * the broker sends right behind CONNACK on a persistent-session reconnect
 * (DESIGN.md §11).
 */
import mqtt from 'mqtt'
import { serveParent } from './lib/child-ipc.js'
import { answerArrivals, Arrivals, makePayload, now, produce } from './lib/reliable-ipc.js'

const TOPIC = 'bench/q'
let pub: mqtt.MqttClient | undefined
let sub: mqtt.MqttClient | undefined
const arrivals = new Arrivals(1)
let startAt = 0
let connectedAt = 0
let base = 0

serveParent(async req => {
  switch (req.cmd) {
    case 'pub-start':
      pub = await mqtt.connectAsync(req.url as string, { clientId: 'bench-pub', clean: true, reconnectPeriod: 0 })
      return {}
    case 'produce': {
      const p = pub as mqtt.MqttClient
      const from = base
      base += req.n as number
      return await produce(req.n as number, req.window as number, req.rate as number | undefined,
        i => p.publishAsync(TOPIC, makePayload(from + i), { qos: 1 }))
    }
    case 'sub-start': {
      arrivals.reset(req.capacity as number, req.base as number)
      startAt = now()
      connectedAt = 0
      const client = mqtt.connect(req.url as string, { clientId: 'bench-sub', clean: false, reconnectPeriod: 0 })
      sub = client
      client.on('message', (_topic, payload) => { arrivals.record(payload) })
      client.on('error', () => {})
      const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
        // stamped in the listener: queued messages may be handled before an awaiting continuation runs
        client.once('connect', p => { connectedAt = now(); resolve(p) })
        client.once('error', reject)
      })
      if (connack.sessionPresent !== true) await client.subscribeAsync(TOPIC, { qos: 1 })
      return { sessionPresent: connack.sessionPresent === true }
    }
    case 'sub-stop':
      await sub?.endAsync()
      sub = undefined
      return {}
    default:
      return await answerArrivals(arrivals, req, () => ({ startAt, connectedAt }))
  }
}, async () => {
  await pub?.endAsync()
  await sub?.endAsync()
})
