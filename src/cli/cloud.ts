/**
 * `edgefabric cloud`: run the hub.
 */
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { Hub } from '../hub/hub.js'
import { createLogger, LOG_LEVELS } from '../ops/logger.js'
import type { Command } from './run.js'
import { checkAdminExposure, checkUrls, onShutdown, parseHostPort } from './shutdown.js'

export const cloudSchema = defineConfig({
  listen: { type: 'string[]', default: ['quic://0.0.0.0:10001', 'wss://0.0.0.0:10000'], env: 'EDGEFABRIC_LISTEN', description: 'URL to listen on (repeatable): quic://, wss://, ws://, https:// (WebTransport)' },
  insecureTransport: { type: 'boolean', default: false, env: 'EDGEFABRIC_INSECURE_TRANSPORT', description: 'allow a plain ws:// listener on a non-loopback address: NOT encrypted, edges cannot authenticate the hub' },
  dataDir: { type: 'string', default: './edgefabric-hub', env: 'EDGEFABRIC_DATA_DIR', description: 'directory for the hub identity (keys, CA) and node bindings' },
  admin: { type: 'string', default: '127.0.0.1:9100', env: 'EDGEFABRIC_ADMIN', description: 'admin HTTP address (metrics, health, status, operator and message API) as host:port or http://host:port; loopback unless an admin token is set; "off" disables' },
  heartbeat: { type: 'duration', default: '5s', min: '50ms', max: '1h', env: 'EDGEFABRIC_HEARTBEAT', description: 'heartbeat period; a silent edge is dropped after 2.5x' },
  maxNodes: { type: 'int', default: 100000, min: 1, env: 'EDGEFABRIC_MAX_NODES', description: 'maximum connected nodes' },
  edgeToEdge: { type: 'string[]', default: [], env: 'EDGEFABRIC_EDGE_TO_EDGE', placeholder: 'FROM->TO:MODULE', description: 'allow edge FROM to reach MODULE (module or group, e.g. servicebus) on edge TO through the hub (repeatable; "*" matches any part); denied by default' },
  altName: { type: 'string[]', default: [], env: 'EDGEFABRIC_ALT_NAMES', description: 'extra DNS name or IP for the hub TLS certificate (repeatable)' },
  durability: { type: 'enum', values: ['sync', 'relaxed'], default: 'sync', env: 'EDGEFABRIC_DURABILITY', description: 'reliable lane: sync = on disk before acknowledged; relaxed = committed, flushed later' },
  quotaMessages: { type: 'int', default: 1000000, min: 1, env: 'EDGEFABRIC_QUOTA_MESSAGES', description: 'per-node outbox quota (messages)' },
  quotaBytes: { type: 'int', default: 1073741824, min: 1, env: 'EDGEFABRIC_QUOTA_BYTES', description: 'per-node outbox quota (bytes)' },
  quotaOverflow: { type: 'enum', values: ['reject', 'drop-oldest'], default: 'reject', env: 'EDGEFABRIC_QUOTA_OVERFLOW', description: 'when a node\'s outbox is full: reject the producer, or drop the oldest (recorded)' },
  maxFrameSize: { type: 'int', default: 16 * 1024 * 1024, min: 1024, env: 'EDGEFABRIC_MAX_FRAME_SIZE', description: 'largest envelope in bytes' },
  logLevel: { type: 'enum', values: LOG_LEVELS, default: 'warn', env: 'EDGEFABRIC_LOG_LEVEL', description: 'log level (logs go to stderr as JSON)' },
  devices: { type: 'boolean', default: false, env: 'EDGEFABRIC_DEVICES', description: 'enable the device registry (LMDB in <data-dir>/devices; with --cluster, shared by every hub in JetStream) and the device API under /v1 on the admin server' },
  adminToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_TOKEN', placeholder: 'token', description: 'admin bearer token (overrides <data-dir>/admin-token, which is generated at first start and printed once; prefer the env var: flags show in ps)' },
  adminReadToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_READ_TOKEN', placeholder: 'token', description: 'read-only bearer token (metrics, status, console without actions) for non-loopback readers; loopback reads need no token' },
  adminAllowedHost: { type: 'string[]', default: [], env: 'EDGEFABRIC_ADMIN_ALLOWED_HOSTS', description: 'host name accepted in Host/Origin by the admin server besides IP literals and localhost (repeatable; DNS-rebinding guard)' },
  processMetrics: { type: 'boolean', default: false, env: 'EDGEFABRIC_PROCESS_METRICS', description: 'also export Node process and GC metrics (edgefabric_process_*)' },
  metricsTopNodes: { type: 'int', default: 20, min: 0, max: 10000, env: 'EDGEFABRIC_METRICS_TOP_NODES', description: 'per-node metric series only for this many nodes with the deepest queues' },
  metricsNode: { type: 'string[]', default: [], env: 'EDGEFABRIC_METRICS_NODES', description: 'node that always gets per-node metric series (repeatable)' },
  cluster: { type: 'string', env: 'EDGEFABRIC_CLUSTER', placeholder: 'nats://a:4222,nats://b:4222', description: 'cluster mode: NATS JetStream servers (comma-separated); shared state and outboxes live there, any hub serves any node (README "Cluster mode")' },
  clusterName: { type: 'string', default: 'default', env: 'EDGEFABRIC_CLUSTER_NAME', description: 'cluster name: prefixes NATS subjects, streams and buckets' },
  clusterCreds: { type: 'string', env: 'EDGEFABRIC_CLUSTER_CREDS', placeholder: 'file', description: 'NATS credentials file for cluster mode' },
})

export const cloudCommand: Command = {
  summary: 'Run the cloud hub.',
  usage: configHelp(cloudSchema, { usage: 'Usage: edgefabric cloud [options]' }),
  async run (argv) {
    const cfg = loadConfig(cloudSchema, { argv, env: process.env })
    checkUrls(cfg.listen, '--listen', { insecure: cfg.insecureTransport, listen: true })
    if (cfg.insecureTransport) process.stderr.write('edgefabric cloud: WARNING --insecure-transport: plain ws:// listeners are not encrypted and edges cannot authenticate this hub\n')
    const logger = createLogger({ level: cfg.logLevel, name: 'edgefabric-cloud' })
    const admin = cfg.admin === 'off'
      ? false
      : {
          ...parseHostPort(cfg.admin, '--admin'),
          ...(cfg.adminToken === undefined || cfg.adminToken === '' ? {} : { token: cfg.adminToken }),
          ...(cfg.adminReadToken === undefined || cfg.adminReadToken === '' ? {} : { readToken: cfg.adminReadToken }),
          allowedHosts: [...cfg.adminAllowedHost]
        }
    // A non-loopback admin needs a token the operator chose (the generated one is printed once, on
    // loopback setups): refused at start otherwise (issue 12).
    checkAdminExposure(admin, admin !== false && admin.token !== undefined, '--admin')
    const hub = await Hub.start({
      listen: [...cfg.listen],
      insecureTransport: cfg.insecureTransport,
      dataDir: cfg.dataDir,
      admin,
      heartbeatMs: cfg.heartbeat,
      maxNodes: cfg.maxNodes,
      edgeToEdge: [...cfg.edgeToEdge],
      altNames: [...cfg.altName],
      maxFrameSize: cfg.maxFrameSize,
      durability: cfg.durability as 'sync' | 'relaxed',
      quota: { maxMessages: cfg.quotaMessages, maxBytes: cfg.quotaBytes, overflow: cfg.quotaOverflow as 'reject' | 'drop-oldest' },
      devices: cfg.devices,
      metrics: { processMetrics: cfg.processMetrics, perNode: { top: cfg.metricsTopNodes, nodes: [...cfg.metricsNode] } },
      ...(cfg.cluster === undefined || cfg.cluster === ''
        ? {}
        : {
            cluster: {
              servers: cfg.cluster.split(',').map(u => u.trim()).filter(u => u !== ''),
              name: cfg.clusterName,
              ...(cfg.clusterCreds === undefined || cfg.clusterCreds === '' ? {} : { credsFile: cfg.clusterCreds })
            }
          }),
      logger
    })
    hub.on('event', e => {
      if (e.type === 'node-connected') process.stdout.write(`node ${e.nodeId} connected over ${e.transport} from ${e.remoteAddress}\n`)
      if (e.type === 'node-disconnected') process.stdout.write(`node ${e.nodeId} disconnected: ${e.reason}\n`)
      if (e.type === 'handshake-refused') process.stdout.write(`refused ${e.nodeId ?? e.remoteAddress}: ${e.code} ${e.reason}\n`)
    })
    for (const url of hub.urls) process.stdout.write(`listening ${url}\n`)
    if (hub.adminUrl !== undefined) {
      process.stdout.write(`admin ${hub.adminUrl}\n`)
      process.stdout.write(`console ${hub.adminUrl}/console/\n`)
      // Printed once, when generated; afterwards it is in <data-dir>/admin-token (mode 0600).
      if (hub.adminTokenCreated) process.stdout.write(`admin token (generated, saved in ${cfg.dataDir}/admin-token): ${hub.adminToken as string}\n`)
    }
    if (hub.devices !== undefined) process.stdout.write(`devices ${hub.adminUrl === undefined ? 'library only (admin off)' : hub.adminUrl + '/v1/devices'}\n`)
    process.stdout.write(`identity quic=${hub.identity.quicPeerId} tls-ca=${hub.identity.caFingerprint}\n`)
    process.stdout.write('ready\n')
    return await onShutdown(() => hub.close(5000))
  }
}
