/**
 * The systems the lossy-link bench puts on the emulated wire, and how each is
 * started: edgefabric (Hub in namespace B, EdgeNode in A, one per transport)
 * and the two peers an edge deployment runs today, each started from its
 * Debian package in namespace B with the clients on both sides:
 *
 * - mosquitto (QoS 1): persistence on (snapshot every second), TCP_NODELAY
 *   (its default leaves Nagle on: ~200 ms per request/response here), unlimited
 *   queue for the offline persistent session (max_queued_messages 0 = no
 *   limit; the default 1000 drops the rest), MQTT.js at the edge with
 *   clean=false, keep-alive = edgefabric's heartbeat (5 s), reconnect every
 *   1 s; the publisher and the request responder are MQTT.js clients beside
 *   the broker in B.
 * - nats-server with JetStream file storage: streams BENCH (cloud→edge) and
 *   UP (uploads) on disk; the edge consumes BENCH through the durable pull
 *   consumer `edge-1` (explicit acks, ack_wait 5 s), publishes uploads with
 *   a JetStream ack, sends requests with core request/reply; client pings
 *   every 5 s (2 missed = dead), reconnect wait 1 s. The publisher and the
 *   responder are NATS clients beside the server in B.
 *
 * Every configuration line is kept in PEER_CONFIG for bench/RESULTS.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { IpcChild } from './child-ipc.js'
import { ADDR_B, type LinkLab } from './lossy-netns.js'

export type PeerKey = 'mosquitto' | 'nats'
export const PEERS: ReadonlyArray<{ key: PeerKey, label: string }> = [
  { key: 'mosquitto', label: 'mosquitto QoS 1' },
  { key: 'nats', label: 'NATS JetStream' }
]

/** Liveness and reconnect settings shared by both peers' edge clients (edgefabric's heartbeat is 5 s). */
export const PEER_KEEPALIVE_S = 5
export const PEER_RECONNECT_MS = 1000
export const NATS_ACK_WAIT_MS = 5000

const MQTT_PORT = 1883
const NATS_PORT = 4222

export function mosquittoConfig (dir: string): string {
  return [
    `listener ${MQTT_PORT} ${ADDR_B}`,
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1',
    'max_queued_messages 0',
    'max_queued_bytes 0',
    'set_tcp_nodelay true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    'user root'
  ].join('\n') + '\n'
}

export function natsConfig (dir: string): string {
  return [
    `listen: "${ADDR_B}:${NATS_PORT}"`,
    'jetstream {',
    `  store_dir: "${dir}"`,
    '  max_file_store: 4G',
    '}'
  ].join('\n') + '\n'
}

/** The configuration text of each peer (paths as placeholders), for the report. */
export function peerConfigText (): Record<PeerKey, string> {
  return {
    mosquitto: mosquittoConfig('<tmp>') + `# clients: MQTT.js, clean=false, QoS 1, keepalive ${PEER_KEEPALIVE_S} s, reconnectPeriod ${PEER_RECONNECT_MS} ms\n`,
    nats: natsConfig('<tmp>') + `# streams BENCH + UP: storage file; consumer edge-1: durable pull, ack explicit, ack_wait ${NATS_ACK_WAIT_MS / 1000} s\n` +
      `# clients: @nats-io/transport-node 3, pingInterval ${PEER_KEEPALIVE_S * 1000} ms, maxPingOut 2, reconnectTimeWait ${PEER_RECONNECT_MS} ms\n`
  }
}

/** Start the peer's server in namespace B; resolves once it says it is ready. */
export async function startPeerServer (lab: LinkLab, key: PeerKey, dir: string): Promise<{ url: string, stop: () => Promise<void> }> {
  mkdirSync(dir, { recursive: true })
  const conf = join(dir, key === 'mosquitto' ? 'mosquitto.conf' : 'nats.conf')
  writeFileSync(conf, key === 'mosquitto' ? mosquittoConfig(join(dir, 'data')) : natsConfig(join(dir, 'js')))
  if (key === 'mosquitto') mkdirSync(join(dir, 'data'), { recursive: true })
  const proc = key === 'mosquitto'
    ? lab.spawnIn('b', 'mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
    : lab.spawnIn('b', 'nats-server', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  const ready = key === 'mosquitto' ? / running$/m : /Server is ready/
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${key} did not start within 15 s: ${log.slice(-400)}`)), 15_000)
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (log.length < 20_000) log += d
      if (ready.test(log)) { clearTimeout(timer); resolve() }
    })
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`${key} exited (${String(code)}): ${log.slice(-400)}`)) })
  })
  proc.stderr?.resume()
  const url = key === 'mosquitto' ? `mqtt://${ADDR_B}:${MQTT_PORT}` : `nats://${ADDR_B}:${NATS_PORT}`
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const gone = new Promise(resolve => proc.once('exit', resolve))
    proc.kill('SIGTERM')
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
    await gone
    clearTimeout(t)
  }
  return { url, stop }
}

/** A child of bench/ in namespace `side`, on the request/reply channel of ./child-ipc.ts. */
export function nsChild (name: string, lab: LinkLab, side: 'a' | 'b', script: string, env?: Record<string, string>): IpcChild {
  const proc = lab.spawnIn(side, process.execPath, [fileURLToPath(new URL(`../${script}.js`, import.meta.url))], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced', env: { ...process.env, ...env }
  })
  proc.stderr?.resume()
  return new IpcChild(name, proc)
}
