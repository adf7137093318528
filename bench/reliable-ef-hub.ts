/**
 * Hub child of bench/reliable.ts (loopback) and of the lossy-link reliable
 * scenarios (bench/lib/lossy-reliable.ts, run in namespace B): one real Hub
 * (LMDB store in its data directory, durability as asked) producing reliable
 * cloud→edge messages.
 *
 *   start   {listen, dataDir, durability, altNames?}  → {url, token}
 *   produce {n, window, rate?}                        → {firstAt, lastAckAt}  (acknowledged = durable in the outbox)
 *   depth                                             → pending messages for the edge
 *
 * The hub application also answers the edge's requests (bench/lib/session-load.ts
 * load: `bench-rr` requests get a 256-byte answer, `bench-up` uploads a
 * 16-byte receipt), as the responder on the broker side does for the peers.
 *
 * `altNames`: across the emulated link the hub's TLS certificate must name
 * the address the edge dials (10.77.0.2), or wss/https (WebTransport)
 * dialers rightly refuse it.
 */
import { Hub } from '../src/hub/hub.js'
import { newMessage } from '../src/codec/envelope.js'
import { serveParent } from './lib/child-ipc.js'
import { makePayload, produce } from './lib/reliable-ipc.js'

const NODE = 'edge-1'
const ANSWER = Buffer.alloc(256, 0x72)
const RECEIPT = Buffer.alloc(16, 0x72)

async function answerRequests (h: Hub): Promise<void> {
  for await (const m of h.messages()) {
    const env = m.envelope
    if (env.header.sync !== true) continue
    h.respond(m.nodeId, env, env.router.group === 'bench-up' ? RECEIPT : ANSWER).catch(() => {}) // not connected: the request times out at the edge
  }
}
let hub: Hub | undefined
let base = 0

serveParent(async req => {
  switch (req.cmd) {
    case 'start': {
      hub = await Hub.start({
        listen: [req.listen as string],
        dataDir: req.dataDir as string,
        durability: req.durability as 'sync' | 'relaxed',
        ...(req.altNames === undefined ? {} : { altNames: req.altNames as string[] }),
        admin: false,
        // A lab on loopback and the bench's own namespaces: plain ws:// is one of the systems measured.
        insecureTransport: true
      })
      void answerRequests(hub)
      return { url: hub.urls[0], token: hub.createToken(NODE) }
    }
    case 'produce': {
      const h = hub as Hub
      const from = base
      base += req.n as number
      // Payload indexes continue across runs so the edge can tell runs apart.
      return await produce(req.n as number, req.window as number, req.rate as number | undefined, i => h.send(NODE, newMessage({
        source: 'cloud', group: 'bench', operation: 'update', resource: `bench/item/${i % 100}`, content: makePayload(from + i)
      }), { delivery: 'reliable' }))
    }
    case 'depth':
      return hub?.outboxDepth(NODE) ?? 0
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}, async () => { await hub?.close(500) })
