/**
 * Child process of bench/sessions.ts: one real Hub (Hub.start, token
 * authenticator, file binding store, metrics registry, admin server), alone
 * in its process so its RSS and CPU are the hub's and nothing else's.
 *
 *   node --expose-gc dist-bench/bench/sessions-hub.js <listen-url> <data-dir> <heartbeat-ms> [tuning-json] [pre-auth-json]
 *
 * Answers the orchestrator over IPC (./lib/child-ipc.ts; messages in ./lib/sessions-ipc.ts): `stats`
 * (optionally after a forced full GC), `quit`. The first reply carries the
 * listening URL and the admin URL.
 */
import { writeHeapSnapshot } from 'node:v8'
import { Hub } from '../src/hub/hub.js'
import { serveParent } from './lib/child-ipc.js'
import { applyTuning, forceGc, procStats, smapsRollup, threadCpu, type HubStats, type ParentRequest, type TransportTuning } from './lib/sessions-ipc.js'

const [listenUrl, dataDir, heartbeatArg, tuningArg, preAuthArg] = process.argv.slice(2)
if (listenUrl === undefined || dataDir === undefined) {
  console.error('usage: sessions-hub.js <listen-url> <data-dir> [heartbeat-ms] [tuning-json]')
  process.exit(2)
}
const heartbeatMs = Number(heartbeatArg ?? 5000)
applyTuning(JSON.parse(tuningArg ?? '{}') as TransportTuning)

let connected = 0
let refusals = 0
let disconnects = 0

const hub = await Hub.start({
  listen: [listenUrl],
  dataDir,
  heartbeatMs,
  ...(preAuthArg !== undefined ? { preAuth: JSON.parse(preAuthArg) as { maxPendingPerSource: number, maxPending: number } } : {}),
  admin: { host: '127.0.0.1', port: 0 }
})
hub.on('event', e => {
  if (e.type === 'node-connected') connected++
  else if (e.type === 'node-disconnected') { connected--; disconnects++ } else if (e.type === 'handshake-refused') refusals++
})

function stats (): HubStats {
  return { ...procStats(), connected, refusals, disconnects, threads: threadCpu(), smaps: smapsRollup() }
}

serveParent<ParentRequest>(async req => {
  switch (req.cmd) {
    case 'stats':
      if (req.gc === true) await forceGc()
      return { ...stats(), url: hub.urls[0], adminUrl: hub.adminUrl }
    case 'snapshot':
      await forceGc()
      return writeHeapSnapshot(req.file)
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}, async () => { await hub.close(2000) })
