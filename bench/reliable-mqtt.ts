/**
 * Child process of bench/reliable.ts and of the lossy-link peers
 * (bench/lib/lossy-peers.ts): an MQTT.js publisher or subscriber (one role
 * per process) against mosquitto, QoS 1.
 *
 *   pub-start {url, responder?}            → {}   (responder: answer bench/rr/req/+ on bench/rr/res/<id>, QoS 1)
 *   produce   {n, window, rate?}           → {firstAt, lastAckAt}   (acknowledged = PUBACK received)
 *   sub-start {url, capacity, base, keepaliveS?, reconnectMs?} → {sessionPresent}   (persistent session: clean false)
 *   sub-stop                               → {}                     (DISCONNECT; the broker keeps the session)
 *   reset {capacity, base} / wait {n, timeoutMs} as in reliable-ef-edge.ts (wait adds `reconnects`)
 *   rr-start/rr-stop, up-start/up-stop     → ./lib/session-load.ts, subscriber side: QoS 1 requests
 *       answered by the responder; QoS 1 uploads acknowledged by PUBACK
 *
 * The subscriber's handlers are attached before the client connects: a
 * handler attached after `await connectAsync()` misses (and auto-acks) what
 * the broker sends right behind CONNACK on a persistent-session reconnect
 * (DESIGN.md §11).
 */
import mqtt from 'mqtt'
import { serveParent } from './lib/child-ipc.js'
import { answerArrivals, Arrivals, makePayload, now, produce } from './lib/reliable-ipc.js'
import { answerLoad, RequestLoop, UploadLoop } from './lib/session-load.js'

const TOPIC = 'bench/q'
const EDGE = 'edge-1'
const RR_REQ = 'bench/rr/req'
const RR_RES = `bench/rr/res/${EDGE}`
let pub: mqtt.MqttClient | undefined
let sub: mqtt.MqttClient | undefined
const arrivals = new Arrivals(1)
let startAt = 0
let connectedAt = 0
let connects = 0
let disconnects = 0
let base = 0
let rrSeq = 0
const rrWaiting = new Map<number, () => void>()

const requests = new RequestLoop(async (payload, timeoutMs) => {
  const client = sub
  if (client === undefined) throw new Error('subscriber not started')
  const id = ++rrSeq
  const body = Buffer.from(payload)
  body.writeUInt32BE(id, 0)
  const answered = new Promise<void>(resolve => rrWaiting.set(id, resolve))
  const timer = setTimeout(() => rrWaiting.delete(id), timeoutMs + 1000)
  try {
    await client.publishAsync(`${RR_REQ}/${EDGE}`, body, { qos: 1 })
    await answered
  } finally {
    clearTimeout(timer)
    rrWaiting.delete(id)
  }
})
const upload = new UploadLoop(async payload => {
  if (sub === undefined) throw new Error('subscriber not started')
  await sub.publishAsync(`bench/up/${EDGE}`, payload, { qos: 1 })
})

serveParent(async req => {
  switch (req.cmd) {
    case 'pub-start': {
      const client = await mqtt.connectAsync(req.url as string, { clientId: 'bench-pub', clean: true, reconnectPeriod: 0 })
      pub = client
      client.on('error', () => {})
      if (req.responder === true) {
        client.on('message', (topic, payload) => {
          if (!topic.startsWith(`${RR_REQ}/`)) return
          const answer = Buffer.alloc(256, 0x72)
          payload.copy(answer, 0, 0, 4)
          client.publish(`bench/rr/res/${topic.slice(RR_REQ.length + 1)}`, answer, { qos: 1 }, () => {})
        })
        await client.subscribeAsync(`${RR_REQ}/+`, { qos: 1 })
      }
      return {}
    }
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
      connects = 0
      disconnects = 0
      const client = mqtt.connect(req.url as string, {
        clientId: 'bench-sub',
        clean: false,
        reconnectPeriod: (req.reconnectMs as number | undefined) ?? 0,
        ...(req.keepaliveS !== undefined ? { keepalive: req.keepaliveS as number } : {})
      })
      sub = client
      client.on('message', (topic, payload) => {
        if (topic === TOPIC) arrivals.record(payload)
        else if (topic === RR_RES) rrWaiting.get(payload.readUInt32BE(0))?.()
      })
      client.on('error', () => {})
      client.on('connect', () => { connects++ })
      client.on('offline', () => { disconnects++ })
      const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
        // stamped in the listener: queued messages may be handled before an awaiting continuation runs
        client.once('connect', p => { connectedAt = now(); resolve(p) })
        client.once('error', reject)
      })
      if (connack.sessionPresent !== true) await client.subscribeAsync([TOPIC, RR_RES], { qos: 1 })
      return { sessionPresent: connack.sessionPresent === true }
    }
    case 'sub-stop':
      await sub?.endAsync()
      sub = undefined
      return {}
    default:
      return await (answerLoad(req, requests, upload) ?? answerArrivals(arrivals, req, () => ({ startAt, connectedAt, reconnects: Math.max(0, connects - 1), disconnects })))
  }
}, async () => {
  await pub?.endAsync()
  await sub?.endAsync(true)
})
