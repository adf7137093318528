/**
 * Child process of bench/cluster.ts `--sessions`: one real Hub, single-hub
 * (LMDB) or in cluster mode, alone in its process so its RSS and CPU are the
 * hub's. Same IPC as bench/sessions-hub.ts (`stats` [gc], `quit`), so the
 * simulated edges of bench/sessions-edge.ts join it unchanged.
 *
 *   node --expose-gc dist-bench/bench/lib/cluster-sessions-hub.js <listen-url> <data-dir> <pre-auth-json> <cluster-json|none>
 */
import { Hub } from '../../src/hub/hub.js'
import type { ClusterOptions } from '../../src/cluster/types.js'
import { serveParent } from './child-ipc.js'
import { forceGc, procStats, smapsRollup, threadCpu, type HubStats, type ParentRequest } from './sessions-ipc.js'

const [listenUrl, dataDir, preAuthArg, clusterArg] = process.argv.slice(2)
if (listenUrl === undefined || dataDir === undefined || preAuthArg === undefined || clusterArg === undefined) {
  console.error('usage: cluster-sessions-hub.js <listen-url> <data-dir> <pre-auth-json> <cluster-json|none>')
  process.exit(2)
}
let connected = 0
let refusals = 0
let disconnects = 0
const hub = await Hub.start({
  listen: [listenUrl],
  dataDir,
  heartbeatMs: 5000,
  preAuth: JSON.parse(preAuthArg) as { maxPendingPerSource: number, maxPending: number },
  admin: false,
  ...(clusterArg === 'none' ? {} : { cluster: JSON.parse(clusterArg) as ClusterOptions })
})
hub.on('event', e => {
  if (e.type === 'node-connected') connected++
  else if (e.type === 'node-disconnected') { connected--; disconnects++ } else if (e.type === 'handshake-refused') refusals++
})

serveParent<ParentRequest>(async req => {
  switch (req.cmd) {
    case 'stats': {
      if (req.gc === true) await forceGc()
      const s: HubStats = { ...procStats(), connected, refusals, disconnects, threads: threadCpu(), smaps: smapsRollup() }
      return { ...s, url: hub.urls[0] }
    }
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}, async () => { await hub.close(2000) })
