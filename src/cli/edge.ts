/**
 * `edgefabric edge`: run an edge node.
 */
import { readFileSync } from 'node:fs'
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { EdgeNode } from '../edge/edge-node.js'
import { ConfigError } from '../errors.js'
import { createLogger, LOG_LEVELS } from '../ops/logger.js'
import type { Command } from './run.js'
import { checkAdminExposure, checkUrls, freeOrAny, onShutdown, parseHostPort } from './shutdown.js'
import { readJoinState } from '../edge/join-state.js'

async function hasJoinState (dataDir: string, node: string): Promise<boolean> {
  return (await readJoinState(dataDir).catch(() => undefined))?.node === node
}

export const edgeSchema = defineConfig({
  hub: { type: 'string[]', required: true, env: 'EDGEFABRIC_HUB', description: 'hub URL (repeatable; tried in order), e.g. quic://hub.example:10001' },
  insecureTransport: { type: 'boolean', default: false, env: 'EDGEFABRIC_INSECURE_TRANSPORT', description: 'allow a plain ws:// hub URL to a non-loopback host: NOT encrypted, the hub is NOT authenticated (anyone on the path can read and inject messages)' },
  node: { type: 'string', required: true, env: 'EDGEFABRIC_NODE', description: 'this node\'s name (as in its join token)' },
  token: { type: 'string', env: 'EDGEFABRIC_TOKEN', description: 'join token from "edgefabric token create", needed for the FIRST join only (it binds this node\'s key; never sent over the wire); later starts need none' },
  tokenFile: { type: 'string', env: 'EDGEFABRIC_TOKEN_FILE', description: 'file holding the join token (instead of --token)' },
  dataDir: { type: 'string', default: './edgefabric-edge', env: 'EDGEFABRIC_DATA_DIR', description: 'directory for the node key and local state' },
  admin: { type: 'string', default: '127.0.0.1:9101', env: 'EDGEFABRIC_ADMIN', description: 'admin HTTP address as host:port or http://host:port (loopback only: it has no token); "off" disables. If the default port is taken (another edge on this host), any free port is used and printed' },
  label: { type: 'string[]', default: [], env: 'EDGEFABRIC_LABELS', description: 'node label key=value (repeatable)' },
  servicebusPort: { type: 'string[]', default: [], env: 'EDGEFABRIC_SERVICEBUS_PORTS', description: 'loopback port the hub may call through the ServiceBus (repeatable)' },
  upstreamPort: { type: 'int', default: -1, min: -1, max: 65535, env: 'EDGEFABRIC_UPSTREAM_PORT', description: 'loopback port for apps to POST upstream messages (-1 = off, 0 = any)' },
  localApiPort: { type: 'int', default: -1, min: -1, max: 65535, env: 'EDGEFABRIC_LOCAL_API_PORT', description: 'loopback port of the local resource query API (-1 = off, 0 = any)' },
  mqttMode: { type: 'enum', values: ['off', 'internal', 'external', 'both'], default: 'off', env: 'EDGEFABRIC_MQTT_MODE', description: 'device twins over MQTT: off, internal (embedded broker), external (connect to --mqtt-external-url), both' },
  mqttHost: { type: 'string', default: '127.0.0.1', env: 'EDGEFABRIC_MQTT_HOST', description: 'embedded MQTT broker listen address' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, env: 'EDGEFABRIC_MQTT_PORT', description: 'embedded MQTT broker port (0 = any)' },
  mqttExternalUrl: { type: 'string', env: 'EDGEFABRIC_MQTT_EXTERNAL_URL', description: 'external MQTT broker URL (modes external, both), e.g. mqtt://127.0.0.1:1883' },
  durability: { type: 'enum', values: ['sync', 'relaxed'], default: 'sync', env: 'EDGEFABRIC_DURABILITY', description: 'edge store: sync = on disk before acknowledged; relaxed = committed, flushed later' },
  backoffBase: { type: 'duration', default: '500ms', min: '1ms', description: 'reconnect backoff base' },
  backoffCap: { type: 'duration', default: '30s', min: '1ms', description: 'reconnect backoff cap' },
  logLevel: { type: 'enum', values: LOG_LEVELS, default: 'warn', env: 'EDGEFABRIC_LOG_LEVEL', description: 'log level (logs go to stderr as JSON)' }
})

function parseLabels (items: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const item of items) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw new ConfigError('--label', 'label', `expected key=value, got "${item}"`)
    out[item.slice(0, eq)] = item.slice(eq + 1)
  }
  return out
}

export const edgeCommand: Command = {
  summary: 'Run an edge node connected to a hub.',
  usage: configHelp(edgeSchema, { usage: 'Usage: edgefabric edge --hub URL --node NAME --token TOKEN [options]' }),
  async run (argv) {
    const cfg = loadConfig(edgeSchema, { argv, env: process.env })
    checkUrls(cfg.hub, '--hub', { insecure: cfg.insecureTransport })
    if (cfg.insecureTransport) process.stderr.write('edgefabric edge: WARNING --insecure-transport: plain ws:// is not encrypted and does not authenticate the hub\n')
    let token = cfg.token
    if (token === undefined && cfg.tokenFile !== undefined) token = readFileSync(cfg.tokenFile, 'utf8').trim()
    if (token === undefined && !(await hasJoinState(cfg.dataDir, cfg.node))) {
      throw new ConfigError('--token', 'token', `required for the first join of node "${cfg.node}" (or --token-file, or EDGEFABRIC_TOKEN); create one with "edgefabric token create --node ${cfg.node}"`)
    }
    const ports = cfg.servicebusPort.map(p => {
      const n = Number(p)
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError('--servicebus-port', 'servicebusPort', `expected a port number, got "${p}"`)
      return n
    })
    const logger = createLogger({ level: cfg.logLevel, name: 'edgefabric-edge' })
    let admin: { host: string, port: number } | false = cfg.admin === 'off' ? false : parseHostPort(cfg.admin, '--admin')
    checkAdminExposure(admin, false, '--admin')
    // The default admin port is taken by another edge on this host: use any free port (printed below).
    const explicitAdmin = argv.some(a => a === '--admin' || a.startsWith('--admin=')) || process.env.EDGEFABRIC_ADMIN !== undefined
    if (admin !== false && !explicitAdmin) admin = { ...admin, port: await freeOrAny(admin.host, admin.port) }
    const edge = await EdgeNode.start({
      hub: [...cfg.hub],
      insecureTransport: cfg.insecureTransport,
      nodeId: cfg.node,
      ...(token !== undefined ? { token } : {}),
      dataDir: cfg.dataDir,
      labels: parseLabels(cfg.label),
      admin,
      serviceBus: ports.length > 0 ? { allowedPorts: ports } : false,
      upstreamEndpoint: cfg.upstreamPort < 0 ? false : { port: cfg.upstreamPort },
      localApi: cfg.localApiPort < 0 ? false : { port: cfg.localApiPort },
      durability: cfg.durability as 'sync' | 'relaxed',
      devices: cfg.mqttMode === 'off'
        ? false
        : {
            mode: cfg.mqttMode as 'internal' | 'external' | 'both',
            mqtt: { host: cfg.mqttHost, port: cfg.mqttPort },
            ...(cfg.mqttExternalUrl !== undefined ? { external: { url: cfg.mqttExternalUrl } } : {})
          },
      backoff: { baseMs: cfg.backoffBase, capMs: cfg.backoffCap },
      logger
    })
    if (edge.adminUrl !== undefined) process.stdout.write(`admin ${edge.adminUrl}\n`)
    if (edge.upstreamUrl !== undefined) process.stdout.write(`upstream ${edge.upstreamUrl}\n`)
    if (edge.localApiUrl !== undefined) process.stdout.write(`local-api ${edge.localApiUrl}\n`)
    if (edge.devices?.brokerUrl !== undefined) process.stdout.write(`mqtt ${edge.devices.brokerUrl}\n`)
    edge.on('connected', ({ url }) => process.stdout.write(`connected ${url}\n`))
    edge.on('disconnected', ({ reason }) => process.stdout.write(`disconnected: ${reason}\n`))
    const failed = new Promise<number>(resolve => {
      edge.on('failed', err => {
        // One line a human can act on; retrying cannot fix this, so exit non-zero.
        process.stderr.write(`edgefabric edge: ${err.message}\n`)
        void edge.close().then(() => resolve(3))
      })
    })
    return await Promise.race([onShutdown(() => edge.close(), 10_000), failed])
  }
}
