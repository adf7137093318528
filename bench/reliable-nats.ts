/**
 * Child process of the lossy-link NATS peer (bench/lib/lossy-peers.ts): a
 * NATS client (@nats-io/transport-node + @nats-io/jetstream) against
 * nats-server with JetStream file storage. One role per process.
 *
 *   pub-start {url, responder?, ackWaitMs}  → {}  (cloud side: creates the file-backed streams BENCH
 *       (bench.q) and UP (bench.up.>), the durable pull consumer `edge-1` on BENCH with explicit
 *       acks; responder: answers core requests on bench.rr.>)
 *   produce   {n, window, rate?}            → {firstAt, lastAckAt}   (acknowledged = JetStream PubAck: stored)
 *   sub-start {url, capacity, base, pingMs, reconnectMs} → {}  (edge side: consumes `edge-1`, acks each
 *       message after recording it)
 *   reset / wait as in reliable-ef-edge.ts (wait adds `reconnects`)
 *   rr-start/rr-stop, up-start/up-stop      → ./lib/session-load.ts: core request/reply answered by the
 *       responder; uploads published to JetStream (UP) with ack
 */
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node'
import { AckPolicy, jetstream, jetstreamManager, StorageType, type JetStreamClient } from '@nats-io/jetstream'
import { serveParent } from './lib/child-ipc.js'
import { answerArrivals, Arrivals, makePayload, now, produce } from './lib/reliable-ipc.js'
import { answerLoad, RequestLoop, UploadLoop } from './lib/session-load.js'

const EDGE = 'edge-1'
let nc: NatsConnection | undefined
let js: JetStreamClient | undefined
const arrivals = new Arrivals(1)
let startAt = 0
let connectedAt = 0
let reconnects = 0
let disconnects = 0
let base = 0

const requests = new RequestLoop(async (payload, timeoutMs) => {
  if (nc === undefined) throw new Error('not started')
  await nc.request(`bench.rr.${EDGE}`, payload, { timeout: timeoutMs })
})
const upload = new UploadLoop(async payload => {
  if (js === undefined) throw new Error('not started')
  await js.publish(`bench.up.${EDGE}`, payload, { timeout: 60_000 })
})

async function watchStatus (c: NatsConnection): Promise<void> {
  for await (const s of c.status()) {
    if (s.type === 'reconnect') reconnects++
    else if (s.type === 'disconnect') disconnects++
  }
}

serveParent(async req => {
  switch (req.cmd) {
    case 'pub-start': {
      nc = await connect({ servers: req.url as string, name: 'bench-cloud', maxReconnectAttempts: -1 })
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({ name: 'BENCH', subjects: ['bench.q'], storage: StorageType.File })
      await jsm.streams.add({ name: 'UP', subjects: ['bench.up.>'], storage: StorageType.File })
      await jsm.consumers.add('BENCH', { durable_name: EDGE, ack_policy: AckPolicy.Explicit, ack_wait: nanos(req.ackWaitMs as number) })
      js = jetstream(nc)
      if (req.responder === true) {
        const answer = Buffer.alloc(256, 0x72)
        nc.subscribe('bench.rr.>', { callback: (err, m) => { if (err === null) m.respond(answer) } })
      }
      return {}
    }
    case 'produce': {
      const j = js as JetStreamClient
      const from = base
      base += req.n as number
      return await produce(req.n as number, req.window as number, req.rate as number | undefined,
        i => j.publish('bench.q', makePayload(from + i)))
    }
    case 'sub-start': {
      arrivals.reset(req.capacity as number, req.base as number)
      startAt = now()
      const c = await connect({
        servers: req.url as string,
        name: EDGE,
        maxReconnectAttempts: -1,
        reconnectTimeWait: req.reconnectMs as number,
        pingInterval: req.pingMs as number,
        maxPingOut: 2
      })
      connectedAt = now()
      nc = c
      void watchStatus(c)
      js = jetstream(c)
      const consumer = await js.consumers.get('BENCH', EDGE)
      const messages = await consumer.consume({ max_messages: 512 })
      void (async () => {
        for await (const m of messages) {
          arrivals.record(m.data)
          m.ack()
        }
      })().catch(() => {})
      return {}
    }
    default:
      return await (answerLoad(req, requests, upload) ?? answerArrivals(arrivals, req, () => ({ startAt, connectedAt, reconnects, disconnects })))
  }
}, async () => {
  await nc?.close().catch(() => {})
})
