// Hub / edge process for test/transport/quic-hub-restart.test.ts. Default heartbeat and backoff.
//   node quic-restart-peer.mjs hub <dataDir> <port> <node>
//     stdout: {type:'listening', at, url, token} once Hub.start resolved (the hub accepts connections)
//   node quic-restart-peer.mjs edge <dataDir> <url> <node> <token>
//     stdout: {type:'connected', at} / {type:'disconnected', at, reason} per session change
import { Hub, EdgeNode } from '../../dist/index.js'

const [role, dataDir, a, node, token] = process.argv.slice(2)
const out = o => process.stdout.write(JSON.stringify(o) + '\n')

if (role === 'hub') {
  const hub = await Hub.start({ listen: [`quic://127.0.0.1:${a}`], dataDir, admin: false })
  out({ type: 'listening', at: Date.now(), url: hub.urls[0], token: hub.createToken(node) })
  process.on('SIGTERM', () => { void hub.close(200).finally(() => process.exit(0)) })
} else {
  const edge = await EdgeNode.start({ hub: a, nodeId: node, token, dataDir, admin: false })
  edge.on('connected', () => out({ type: 'connected', at: Date.now() }))
  edge.on('disconnected', e => out({ type: 'disconnected', at: Date.now(), reason: String(e?.reason ?? '') }))
  edge.on('failed', err => out({ type: 'failed', at: Date.now(), error: String(err?.message ?? err) }))
  process.on('SIGTERM', () => { void edge.close().finally(() => process.exit(0)) })
}
