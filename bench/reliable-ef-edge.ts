/**
 * Edge child of bench/reliable.ts (loopback) and of the lossy-link scenarios
 * (namespace A): one real EdgeNode (LMDB store, durability as asked). Its
 * `onReliable` hook — awaited before the edge commits and acknowledges — is
 * the application: it records arrival time and latency from the send time
 * carried in the payload.
 *
 *   start {hub, token, dataDir, durability, capacity, base} → {}   (returns at once; connects in the background)
 *   wait  {n, timeoutMs}                              → arrivals summary + startAt/connectedAt/reconnects/disconnects
 *   reset {capacity, base}                            → {}   (next run: payload indexes base..base+capacity-1)
 *   rr-start/rr-stop, up-start/up-stop                → ./lib/session-load.ts: requests to the hub
 *       application (bus requestUpstream, answered by reliable-ef-hub.ts) and a bulk upload (each
 *       64 KiB message a request the hub application answers once it has it)
 */
import { EdgeNode } from '../src/edge/edge-node.js'
import { newMessage } from '../src/codec/envelope.js'
import type { ModuleHandle } from '../src/edge/bus-handle.js'
import { serveParent } from './lib/child-ipc.js'
import { answerArrivals, Arrivals, now } from './lib/reliable-ipc.js'
import { answerLoad, RequestLoop, UploadLoop } from './lib/session-load.js'

let edge: EdgeNode | undefined
let bench: ModuleHandle | undefined
const arrivals = new Arrivals(1)
let startAt = 0
let connectedAt = 0
let connects = 0
let disconnects = 0

const request = (group: string, payload: Buffer, timeoutMs: number, priority: 'high' | 'bulk'): Promise<unknown> => {
  if (bench === undefined) return Promise.reject(new Error('edge not started'))
  return bench.requestUpstream(newMessage({ source: 'bench-load', group, operation: 'query', resource: `bench/${group}`, content: payload, priority }), { timeoutMs })
}
const requests = new RequestLoop((payload, timeoutMs) => request('bench-rr', payload, timeoutMs, 'high'))
const upload = new UploadLoop(payload => request('bench-up', payload, 120_000, 'bulk'))

serveParent(async req => {
  switch (req.cmd) {
    case 'start': {
      arrivals.reset(req.capacity as number, req.base as number)
      startAt = now()
      edge = await EdgeNode.start({
        hub: req.hub as string,
        nodeId: 'edge-1',
        token: req.token as string,
        dataDir: req.dataDir as string,
        durability: req.durability as 'sync' | 'relaxed',
        admin: false,
        insecureTransport: true, // the bench measures plain ws:// too, in its own namespaces
        onReliable: env => { arrivals.record(env.content as Uint8Array) }
      })
      // Its own group: the hub's reliable messages (group 'bench') must not land in this module's mailbox.
      bench = edge.register({ name: 'bench-load', group: 'bench-load' })
      edge.on('connected', () => { if (connects++ === 0) connectedAt = now() })
      edge.on('disconnected', () => { disconnects++ })
      return {}
    }
    default:
      return await (answerLoad(req, requests, upload) ?? answerArrivals(arrivals, req, () => ({ startAt, connectedAt, reconnects: Math.max(0, connects - 1), disconnects })))
  }
}, async () => { await edge?.close() })
