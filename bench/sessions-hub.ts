/**
 * Child process of bench/sessions.ts: one real Hub (Hub.start, token
 * authenticator, file binding store, metrics registry, admin server), alone
 * in its process so its RSS and CPU are the hub's and nothing else's.
 *
 *   node --expose-gc dist-bench/bench/sessions-hub.js <listen-url> <data-dir> <heartbeat-ms> [quic-keepalive-ms]
 *
 * Answers the orchestrator over IPC (see ./lib/sessions-ipc.ts): `stats`
 * (optionally after a forced full GC), `quit`. The first reply carries the
 * listening URL and the admin URL.
 */
import { Hub } from '../src/hub/cloud-hub.js'
import { registerTransport } from '../src/transport/index.js'
import { createQuicTransport } from '../src/transport/quic.js'
import { forceGc, procStats, serveParent, type HubStats } from './lib/sessions-ipc.js'

const [listenUrl, dataDir, heartbeatArg, quicKeepAliveArg] = process.argv.slice(2)
if (listenUrl === undefined || dataDir === undefined) {
  console.error('usage: sessions-hub.js <listen-url> <data-dir> [heartbeat-ms] [quic-keepalive-ms]')
  process.exit(2)
}
const heartbeatMs = Number(heartbeatArg ?? 5000)
if (quicKeepAliveArg !== undefined && quicKeepAliveArg !== '') {
  // A what-if run: a QUIC keep-alive that is not more frequent than the session heartbeat.
  const keepAliveIntervalMs = Number(quicKeepAliveArg)
  registerTransport(createQuicTransport({ keepAliveIntervalMs, maxIdleTimeoutMs: Math.max(10_000, keepAliveIntervalMs * 3) }))
}

let connected = 0
let refusals = 0
let disconnects = 0

const hub = await Hub.start({
  listen: [listenUrl],
  dataDir,
  heartbeatMs,
  admin: { host: '127.0.0.1', port: 0 }
})
hub.on('event', e => {
  if (e.type === 'node-connected') connected++
  else if (e.type === 'node-disconnected') { connected--; disconnects++ } else if (e.type === 'handshake-refused') refusals++
})

function stats (): HubStats {
  return { ...procStats(), connected, refusals, disconnects }
}

serveParent(async req => {
  switch (req.cmd) {
    case 'stats':
      if (req.gc === true) await forceGc()
      return { ...stats(), url: hub.urls[0], adminUrl: hub.adminUrl }
    case 'quit':
      setImmediate(() => {
        hub.close(2000).finally(() => process.exit(0))
      })
      return true
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
})
