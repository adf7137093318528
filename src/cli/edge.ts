/**
 * `edgefabric edge`: run an edge node.
 */
import { readFileSync } from 'node:fs'
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { EdgeNode } from '../edge/edge-node.js'
import { ConfigError } from '../errors.js'
import { createLogger, LOG_LEVELS } from '../ops/logger.js'
import type { LocalCredential } from '../device/edge/acl.js'
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
  admin: { type: 'string', default: '127.0.0.1:9101', env: 'EDGEFABRIC_ADMIN', description: 'admin HTTP address as host:port or http://host:port (reads without a token from loopback only; see --admin-token); "off" disables. If the default port is taken (another edge on this host), any free port is used and printed' },
  adminToken: { type: 'string', env: 'EDGEFABRIC_ADMIN_TOKEN', placeholder: 'token', description: 'admin bearer token (overrides <data-dir>/admin-token, generated at first start and printed once)' },
  processMetrics: { type: 'boolean', default: false, env: 'EDGEFABRIC_PROCESS_METRICS', description: 'also export Node process and GC metrics (edgefabric_process_*)' },
  label: { type: 'string[]', default: [], env: 'EDGEFABRIC_LABELS', description: 'node label key=value (repeatable)' },
  servicebusPort: { type: 'string[]', default: [], env: 'EDGEFABRIC_SERVICEBUS_PORTS', description: 'loopback port the hub may call through the ServiceBus (repeatable)' },
  upstreamPort: { type: 'int', default: -1, min: -1, max: 65535, env: 'EDGEFABRIC_UPSTREAM_PORT', description: 'loopback port for apps to POST upstream messages (-1 = off, 0 = any)' },
  localApiPort: { type: 'int', default: -1, min: -1, max: 65535, env: 'EDGEFABRIC_LOCAL_API_PORT', description: 'loopback port of the local resource query API (-1 = off, 0 = any)' },
  mqttMode: { type: 'enum', values: ['off', 'internal', 'external', 'both'], default: 'off', env: 'EDGEFABRIC_MQTT_MODE', description: 'device twins over MQTT: off, internal (embedded broker), external (connect to --mqtt-external-url), both' },
  mqttHost: { type: 'string', default: '127.0.0.1', env: 'EDGEFABRIC_MQTT_HOST', description: 'embedded MQTT broker listen address' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, env: 'EDGEFABRIC_MQTT_PORT', description: 'embedded MQTT broker port (0 = any)' },
  mqttCompat: { type: 'enum', values: ['strict', 'kubeedge'], default: 'strict', env: 'EDGEFABRIC_MQTT_COMPAT', description: 'twin payloads: kubeedge (stock KubeEdge mappers work unchanged) or strict (typed, refuses what KubeEdge tolerates)' },
  mqttLegacyTopics: { type: 'boolean', default: false, env: 'EDGEFABRIC_MQTT_LEGACY_TOPICS', description: 'read $hw/events/device/{name}/... (KubeEdge <= 1.16 single-level ids) as default/{name}' },
  mqttAllowAnonymous: { type: 'boolean', default: false, env: 'EDGEFABRIC_MQTT_ALLOW_ANONYMOUS', description: 'accept MQTT clients without credentials from loopback only, as this node\'s mapper (all its devices); a warning is logged and shown' },
  mqttCredential: { type: 'string[]', default: [], env: 'EDGEFABRIC_MQTT_CREDENTIALS', description: 'local MQTT credential ROLE:USERNAME:SECRET[:DEVICES] (repeatable); ROLE operator (sees everything) or mapper (DEVICES ns/name,... or * = all of this node); SECRET a scrypt$ hash or @file holding the secret' },
  mqttExternalUrl: { type: 'string', env: 'EDGEFABRIC_MQTT_EXTERNAL_URL', description: 'external MQTT broker URL (modes external, both), e.g. mqtt://127.0.0.1:1883' },
  dmi: { type: 'enum', values: ['auto', 'on', 'off'], default: 'auto', env: 'EDGEFABRIC_DMI', description: 'KubeEdge DMI gRPC for mappers: auto (on when --mqtt-mode is not off), on (also with --mqtt-mode off: twins for DMI mappers only, no MQTT broker), off' },
  dmiSocket: { type: 'string', default: '/etc/kubeedge/dmi.sock', env: 'EDGEFABRIC_DMI_SOCKET', description: 'unix socket of the DMI DeviceManagerService (as edgecore)' },
  durability: { type: 'enum', values: ['sync', 'relaxed'], default: 'sync', env: 'EDGEFABRIC_DURABILITY', description: 'edge store: sync = on disk before acknowledged; relaxed = committed, flushed later' },
  backoffBase: { type: 'duration', default: '500ms', min: '1ms', description: 'reconnect backoff base' },
  backoffCap: { type: 'duration', default: '30s', min: '1ms', description: 'reconnect backoff cap' },
  logLevel: { type: 'enum', values: LOG_LEVELS, default: 'warn', env: 'EDGEFABRIC_LOG_LEVEL', description: 'log level (logs go to stderr as JSON)' }
})

/** `--mqtt-credential ROLE:USERNAME:SECRET[:DEVICES]` → a local credential (issue 14 item 5). */
export function parseMqttCredential (item: string): LocalCredential {
  const bad = (why: string): never => { throw new ConfigError('--mqtt-credential', 'mqttCredential', `${why} (expected ROLE:USERNAME:SECRET[:DEVICES], got "${item.split(':').slice(0, 2).join(':')}:***")`) }
  // SECRET may itself contain ':' only as @file path; split role and username first, devices last.
  const [role, username, ...rest] = item.split(':')
  if (role !== 'operator' && role !== 'mapper') return bad('ROLE must be operator or mapper')
  if (username === undefined || username === '') return bad('USERNAME is empty')
  let devicesPart: string | undefined
  if (rest.length > 1 && /^(\*|[^/,]+\/[^/,]+(,[^/,]+\/[^/,]+)*)$/.test(rest[rest.length - 1] as string)) devicesPart = rest.pop()
  const secret = rest.join(':')
  if (secret === '') return bad('SECRET is empty')
  let value = secret
  if (secret.startsWith('@')) {
    try { value = readFileSync(secret.slice(1), 'utf8').trim() } catch (err) { return bad(`cannot read ${secret.slice(1)}: ${(err as Error).message}`) }
  } else if (!secret.startsWith('scrypt$')) {
    return bad('SECRET must be a scrypt$ hash or @file (a plain secret on the command line would show in ps)')
  }
  if (role === 'operator' && devicesPart !== undefined && devicesPart !== '*') return bad('an operator sees every device; leave DEVICES out')
  const devices: string[] | '*' = devicesPart === undefined || devicesPart === '*' ? '*' : devicesPart.split(',')
  return { username, role, devices, ...(value.startsWith('scrypt$') ? { passwordHash: value } : { password: value }) }
}

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
    checkAdminExposure(admin, cfg.adminToken !== undefined && cfg.adminToken !== '', '--admin')
    // The default admin port is taken by another edge on this host: use any free port (printed below).
    const explicitAdmin = argv.some(a => a === '--admin' || a.startsWith('--admin=')) || process.env.EDGEFABRIC_ADMIN !== undefined
    if (admin !== false && !explicitAdmin) admin = { ...admin, port: await freeOrAny(admin.host, admin.port) }
    // Twins exist when MQTT serves them or DMI does; with --dmi on and --mqtt-mode off there is no broker (mode 'none').
    const mqttTwins = cfg.mqttMode !== 'off'
    const dmiOn = cfg.dmi === 'on' || (cfg.dmi === 'auto' && mqttTwins)
    const edge = await EdgeNode.start({
      hub: [...cfg.hub],
      insecureTransport: cfg.insecureTransport,
      nodeId: cfg.node,
      ...(token !== undefined ? { token } : {}),
      dataDir: cfg.dataDir,
      labels: parseLabels(cfg.label),
      admin: admin === false ? false : { ...admin, ...(cfg.adminToken === undefined || cfg.adminToken === '' ? {} : { token: cfg.adminToken }) },
      metrics: { processMetrics: cfg.processMetrics },
      serviceBus: ports.length > 0 ? { allowedPorts: ports } : false,
      upstreamEndpoint: cfg.upstreamPort < 0 ? false : { port: cfg.upstreamPort },
      localApi: cfg.localApiPort < 0 ? false : { port: cfg.localApiPort },
      durability: cfg.durability as 'sync' | 'relaxed',
      devices: !mqttTwins && !dmiOn
        ? false
        : {
            mode: mqttTwins ? cfg.mqttMode as 'internal' | 'external' | 'both' : 'none',
            mqtt: { host: cfg.mqttHost, port: cfg.mqttPort },
            compat: cfg.mqttCompat as 'strict' | 'kubeedge',
            legacyTopics: cfg.mqttLegacyTopics,
            allowAnonymous: cfg.mqttAllowAnonymous,
            credentials: cfg.mqttCredential.map(parseMqttCredential),
            ...(cfg.mqttExternalUrl !== undefined ? { external: { url: cfg.mqttExternalUrl } } : {})
          },
      // DMI rides on the device twins: on by default whenever they are (edgecore always serves it).
      dmi: dmiOn ? { socket: cfg.dmiSocket } : false,
      backoff: { baseMs: cfg.backoffBase, capMs: cfg.backoffCap },
      logger
    })
    if (edge.adminUrl !== undefined) {
      process.stdout.write(`admin ${edge.adminUrl}\n`)
      process.stdout.write(`console ${edge.adminUrl}/console/\n`)
      if (edge.adminTokenCreated) process.stdout.write(`admin token (generated, saved in ${cfg.dataDir}/admin-token): ${edge.adminToken as string}\n`)
    }
    if (edge.upstreamUrl !== undefined) process.stdout.write(`upstream ${edge.upstreamUrl}\n`)
    if (edge.localApiUrl !== undefined) process.stdout.write(`local-api ${edge.localApiUrl}\n`)
    if (edge.devices?.brokerUrl !== undefined) process.stdout.write(`mqtt ${edge.devices.brokerUrl}\n`)
    if (edge.dmi !== undefined) process.stdout.write(`dmi unix:${edge.dmi.socket}\n`)
    for (const w of edge.devices?.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`)
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
