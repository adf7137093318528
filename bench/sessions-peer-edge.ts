/**
 * Child process of bench/sessions.ts's same-run peers (./lib/sessions-peers.ts):
 * holds many idle clients of mosquitto (MQTT.js, clean=false, one QoS 1
 * subscription each, keep-alive = the hub heartbeat) or nats-server (the
 * NATS client, one subscription each, client ping = the hub heartbeat), as
 * an edge node idles: connected, subscribed to its commands, nothing to say.
 *
 *   init    {peer, url, ids, window, keepaliveMs} → {}
 *   connect                                        → ConnectResult (window dials in flight)
 *   stats                                          → {connected, drops, rss, cpuUs}
 */
import mqtt from 'mqtt'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import { serveParent } from './lib/child-ipc.js'
import { now, percentile } from './lib/reliable-ipc.js'
import type { ConnectResult } from './lib/sessions-ipc.js'

interface Init { peer: 'mosquitto' | 'nats', url: string, ids: string[], window: number, keepaliveMs: number }

let init: Init | undefined
const mqttClients: mqtt.MqttClient[] = []
const natsClients: NatsConnection[] = []
let drops = 0

async function openOne (i: Init, id: string): Promise<void> {
  if (i.peer === 'mosquitto') {
    const c = await mqtt.connectAsync(i.url, { clientId: id, clean: false, keepalive: Math.max(1, Math.round(i.keepaliveMs / 1000)), reconnectPeriod: 1000, connectTimeout: 60_000 })
    c.on('error', () => {})
    c.on('close', () => { drops++ })
    await c.subscribeAsync(`nodes/${id}/#`, { qos: 1 })
    mqttClients.push(c)
    return
  }
  const c = await natsConnect({ servers: i.url, name: id, pingInterval: i.keepaliveMs, maxPingOut: 2, maxReconnectAttempts: -1, timeout: 60_000 })
  c.subscribe(`nodes.${id}.>`, { callback: () => {} })
  await c.flush()
  void (async () => { for await (const s of c.status()) if (s.type === 'disconnect') drops++ })()
  natsClients.push(c)
}

async function connectAll (i: Init): Promise<ConnectResult> {
  const firstDialAt = Date.now()
  const lat: number[] = []
  let failed = 0
  let lastError: string | undefined
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < i.ids.length) {
      const id = i.ids[next++] as string
      const t = now()
      try {
        await openOne(i, id)
        lat.push(now() - t)
      } catch (err) {
        failed++
        lastError = err instanceof Error ? err.message : String(err)
      }
    }
  }
  await Promise.all(Array.from({ length: i.window }, worker))
  lat.sort((a, b) => a - b)
  return {
    firstDialAt, lastWelcomeAt: Date.now(), connected: lat.length, retries: 0, failed, missing: 0,
    ...(lastError !== undefined ? { lastError } : {}),
    latencyMs: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: lat[lat.length - 1] ?? 0 }
  }
}

serveParent(async req => {
  switch (req.cmd) {
    case 'init':
      init = req.init as Init
      return {}
    case 'connect':
      if (init === undefined) throw new Error('init first')
      return await connectAll(init)
    case 'stats': {
      const c = process.cpuUsage()
      return { connected: mqttClients.filter(x => x.connected).length + natsClients.filter(x => !x.isClosed()).length, drops, rss: process.memoryUsage().rss, cpuUs: c.user + c.system }
    }
    default:
      throw new Error(`unknown command ${req.cmd}`)
  }
}, async () => {
  await Promise.all([...mqttClients.map(c => c.endAsync(true)), ...natsClients.map(c => c.close())]).catch(() => {})
})
