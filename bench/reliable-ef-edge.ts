/**
 * Child process of bench/reliable.ts: one real EdgeNode (LMDB store,
 * durability as asked). Its `onReliable` hook — awaited before the edge
 * commits and acknowledges — is the application: it records arrival time
 * and latency from the send time carried in the payload.
 *
 *   start {hub, token, dataDir, durability, capacity, base} → {}   (returns at once; connects in the background)
 *   wait  {n, timeoutMs, reset?}                      → arrivals summary + startAt/connectedAt
 *   reset {capacity, base}                            → {}   (next run: payload indexes base..base+capacity-1)
 */
import { EdgeNode } from '../src/edge/edge-node.js'
import { serveParent } from './lib/child-ipc.js'
import { answerArrivals, Arrivals, now } from './lib/reliable-ipc.js'

let edge: EdgeNode | undefined
const arrivals = new Arrivals(1)
let startAt = 0
let connectedAt = 0

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
        onReliable: env => { arrivals.record(env.content as Uint8Array) }
      })
      edge.once('connected', () => { connectedAt = now() })
      return {}
    }
    default:
      return await answerArrivals(arrivals, req, () => ({ startAt, connectedAt }))
  }
}, async () => { await edge?.close() })
