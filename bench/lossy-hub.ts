/**
 * Hub child of the lossy-link benchmark's reliable scenarios
 * (bench/lib/lossy-reliable.ts), run in namespace B. The same commands as
 * bench/reliable-ef-hub.ts, plus `altNames` at start: the hub's TLS
 * certificate must name the address the edge dials across the emulated link
 * (10.77.0.2), or wss/https (WebTransport) dialers rightly refuse it.
 *
 *   start   {listen, dataDir, durability, altNames}  → {url, token}
 *   produce {n, window, rate?}                       → {firstAt, lastAckAt}
 */
import { Hub } from '../src/hub/hub.js'
import { newMessage } from '../src/codec/envelope.js'
import { makePayload, produce, serveParent } from './lib/reliable-ipc.js'

const NODE = 'edge-1'
let hub: Hub | undefined
let base = 0

serveParent(async req => {
  switch (req.cmd) {
    case 'start': {
      hub = await Hub.start({
        listen: [req.listen as string],
        dataDir: req.dataDir as string,
        durability: req.durability as 'sync' | 'relaxed',
        altNames: req.altNames as string[],
        admin: false
      })
      return { url: hub.urls[0], token: hub.createToken(NODE) }
    }
    case 'produce': {
      const h = hub as Hub
      const from = base
      base += req.n as number
      return await produce(req.n as number, req.window as number, req.rate as number | undefined, i => h.send(NODE, newMessage({
        source: 'cloud', group: 'bench', operation: 'update', resource: `bench/item/${i % 100}`, content: makePayload(from + i)
      }), { delivery: 'reliable' }))
    }
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}, async () => { await hub?.close(500) })
