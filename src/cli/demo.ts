/**
 * `edgefabric demo`: the embedded default. One process starts a hub on
 * loopback (QUIC and WebSocket-over-TLS), two edges on different transports
 * and a simulated device workload, then prints a live summary of messages
 * flowing and round-trip times.
 *
 *   edge-1 (quic): module "thermometer" uploads readings; answers "read" requests
 *   edge-2 (wss):  module "fan" takes set-point commands from the cloud
 *   edge-1 → edge-2 alerts are routed through the hub (edge-to-edge)
 *   device twin: the cloud registry (hub.devices) sets thermostat-1's desired
 *     `target-temp`; an MQTT.js device on edge-1's embedded broker gets the delta
 *     and reports back (demo-twin.ts)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineConfig, loadConfig, configHelp } from '../config/index.js'
import { EdgeNode } from '../edge/edge-node.js'
import { newMessage, type Envelope } from '../codec/envelope.js'
import { isEdgeFabricError } from '../errors.js'
import { Hub } from '../hub/hub.js'
import { transportFor } from '../transport/index.js'
import { Stats } from './demo-stats.js'
import { TwinDemo } from './demo-twin.js'
import type { Command } from './run.js'
import { onShutdown } from './shutdown.js'

export const demoSchema = defineConfig({
  duration: { type: 'duration', default: '6s', min: '1s', description: 'how long to run (0 with --forever)' },
  forever: { type: 'boolean', default: false, description: 'run until Ctrl-C' },
  rate: { type: 'int', default: 200, min: 1, max: 100000, description: 'device readings per second' }
})

async function available (url: string): Promise<boolean> {
  try { await transportFor(url); return true } catch (err) {
    if (isEdgeFabricError(err, 'EF_TRANSPORT_UNAVAILABLE')) {
      process.stdout.write(`note: ${err.message}\n`)
      return false
    }
    throw err
  }
}

export const demoCommand: Command = {
  summary: 'Run a cloud hub, two edges and a simulated device on loopback, and show messages flowing.',
  usage: configHelp(demoSchema, { usage: 'Usage: edgefabric demo [--duration 6s | --forever] [--rate N]' }),
  async run (argv) {
    const cfg = loadConfig(demoSchema, { argv, env: {} })
    const dir = await mkdtemp(join(tmpdir(), 'edgefabric-demo-'))
    const quic = await available('quic://127.0.0.1:0')
    const listen = [quic ? 'quic://127.0.0.1:0' : 'ws://127.0.0.1:0', 'wss://127.0.0.1:0']
    const hub = await Hub.start({ listen, dataDir: join(dir, 'hub'), edgeToEdge: ['edge-1->edge-2:fan', 'edge-1->edge-2:actuators'], heartbeatMs: 2000, devices: true })
    const edges: EdgeNode[] = []
    let timer: NodeJS.Timeout | undefined
    let twin: TwinDemo | undefined
    const cleanup = async (): Promise<void> => {
      clearInterval(timer)
      await twin?.close() // the device disconnects before its broker (edge-1) closes
      await Promise.all(edges.map(e => e.close()))
      await hub.close(1000)
      await rm(dir, { recursive: true, force: true })
    }
    try {
      process.stdout.write(`hub listening on ${hub.urls.join(' and ')} (admin ${hub.adminUrl ?? 'off'})\n`)
      if (hub.adminUrl !== undefined) {
        // The operator's console (issue 15): fleet, queues per node (also for a disconnected edge), drops by reason, twins.
        // Read-only from this machine as is; the link with the token (kept in the browser tab only) also allows actions.
        process.stdout.write(`console: ${hub.adminUrl}/console/  (read-only on this machine; with actions: ${hub.adminUrl}/console/#token=${hub.adminToken ?? ''})\n`)
      }
      const [url1, url2] = hub.urls as [string, string]
      const start = async (nodeId: string, url: string, zone: string, devices = false): Promise<EdgeNode> => {
        const edge = await EdgeNode.start({
          hub: url, nodeId, token: hub.createToken(nodeId), dataDir: join(dir, nodeId), labels: { zone }, admin: false,
          // edge-1 runs the embedded MQTT broker (aedes) for device twins, on a free loopback port
          ...(devices ? { devices: { mode: 'internal' as const, mqtt: { host: '127.0.0.1', port: 0 } } } : {})
        })
        edges.push(edge)
        return edge
      }
      const edge1 = await start('edge-1', url1, 'north', true)
      const edge2 = await start('edge-2', url2, 'south')
      await Promise.all([edge1.waitConnected(10_000), edge2.waitConnected(10_000)])
      for (const n of hub.nodes()) process.stdout.write(`${n.nodeId} joined over ${n.transport} (labels ${JSON.stringify(n.labels)})\n`)

      // simulated device on edge-1
      const thermo = edge1.register({ name: 'thermometer', group: 'devices' })
      let temp = 21
      thermo.onMessage(async env => { await thermo.respond(env, { celsius: temp, at: Date.now() }) })
      // actuator on edge-2 that also receives edge-to-edge alerts
      const fan = edge2.register({ name: 'fan', group: 'actuators' })
      let setPoint = 0
      let alerts = 0
      fan.onMessage(async env => {
        if (env.router.operation === 'alert') { alerts++; return }
        setPoint = (env.content as { speed: number }).speed
        await fan.respond(env, { ok: true, speed: setPoint })
      })

      const uploads = new Stats()
      const readRtt = new Stats()
      const setRtt = new Stats()
      hub.on('message', ({ envelope }) => {
        if (envelope.router.operation === 'upload') uploads.add(Date.now() - (envelope.content as { at: number }).at)
      })
      let stop = false
      const ticker = async (): Promise<void> => {
        const every = 1000 / cfg.rate
        let next = Date.now()
        while (!stop) {
          temp += (Math.random() - 0.5) * 0.2
          await thermo.sendUpstream(newMessage({ source: 'thermometer', group: 'telemetry', operation: 'upload', resource: 'default/device/thermo-1', content: { celsius: temp, at: Date.now() } })).catch(() => {})
          if (temp > 21.3 && Math.random() < 0.05) {
            await thermo.sendUpstream(newMessage({ source: 'thermometer', destination: 'node:edge-2/fan', group: 'actuators', operation: 'alert', resource: 'default/device/thermo-1', content: { temp } })).catch(() => {})
          }
          next += every
          const wait = next - Date.now()
          if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
        }
      }
      const controller = async (): Promise<void> => {
        while (!stop) {
          let t0 = performance.now()
          await hub.request('edge-1', newMessage({ source: 'cloud', group: 'devices', operation: 'query', resource: 'default/device/thermo-1' }), { timeoutMs: 5000 })
            .then(() => readRtt.add(performance.now() - t0), () => {})
          t0 = performance.now()
          await hub.request('edge-2', newMessage({ source: 'cloud', group: 'actuators', operation: 'update', resource: 'default/device/fan-1', content: { speed: Math.round(temp * 10) % 100 } }), { timeoutMs: 5000 })
            .then(() => setRtt.add(performance.now() - t0), () => {})
          await new Promise(resolve => setTimeout(resolve, 20))
        }
      }
      const line = (): void => {
        const t = (name: string): string => hub.node(name)?.transport ?? '?'
        process.stdout.write(
          `uploads ${String(uploads.count).padStart(6)} (latency p50 ${uploads.pct(0.5)} ms)  ` +
          `read edge-1/${t('edge-1')} ${String(readRtt.count).padStart(5)} rtt p50 ${readRtt.pct(0.5)} p99 ${readRtt.pct(0.99)} ms  ` +
          `set edge-2/${t('edge-2')} ${String(setRtt.count).padStart(5)} rtt p50 ${setRtt.pct(0.5)} p99 ${setRtt.pct(0.99)} ms  ` +
          `fan ${setPoint}  alerts ${alerts}\n`)
      }
      timer = setInterval(line, 1000)
      twin = new TwinDemo(hub.devices as NonNullable<typeof hub.devices>, edge1, s => process.stdout.write(s))
      const loops = Promise.all([ticker(), controller(), twin.run(() => stop)])
      if (cfg.forever) {
        const code = await onShutdown(async () => { stop = true; await loops; line(); twin?.summary(); await cleanup() })
        return code
      }
      // Ctrl-C before the duration ends: stop early, same summary and teardown
      let interrupted = (): void => {}
      const signalled = new Promise<void>(resolve => { interrupted = resolve })
      process.once('SIGINT', interrupted).once('SIGTERM', interrupted)
      let sleeper: NodeJS.Timeout | undefined
      await Promise.race([signalled, new Promise(resolve => { sleeper = setTimeout(resolve, cfg.duration) })])
      clearTimeout(sleeper)
      process.off('SIGINT', interrupted).off('SIGTERM', interrupted)
      stop = true
      clearInterval(timer) // one final status line below
      await loops
      line()
      twin.summary()
      const flowed = uploads.count > 0 && readRtt.count > 0 && setRtt.count > 0
      const ok = flowed && twin.ok
      process.stdout.write(ok
        ? 'demo finished: messages flowed both ways on both transports; device twin round trips completed\n'
        : `demo finished WITH PROBLEMS: ${flowed ? '' : 'no message traffic; '}${twin.ok ? '' : 'device twin round trip failed'}\n`)
      await cleanup()
      return ok ? 0 : 1
    } catch (err) {
      await cleanup().catch(() => {})
      throw err
    }
  }
}
