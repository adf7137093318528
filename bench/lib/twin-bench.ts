/**
 * Pieces shared by the twin benchmarks (bench/twins.ts, bench/dmi-twins.ts):
 * the hub + edge set-up with the devices bound, a QoS 1 publish pump with a
 * bounded window, and the bare-aedes reference (publisher → aedes with
 * in-memory persistence → subscriber, one process).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { EdgeNode, type EdgeOptions } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { DeviceModel } from '../../src/device/model.js'
import type { DeviceRegistry } from '../../src/device/cloud/registry.js'

export interface TwinSetup { dir: string, hub: Hub, reg: DeviceRegistry, edge: EdgeNode, close: () => Promise<void> }

/**
 * A hub with the device registry (ws on loopback, a fresh temp dir), `model` and devices
 * bench/d0…d{n-1} bound to node edge-b, and that edge (embedded broker, a `bench` credential for
 * every device), resolved once the edge holds every device.
 */
export async function startTwinSetup (o: { prefix: string, model: DeviceModel, devices: number, durability: 'sync' | 'relaxed', device?: Record<string, unknown>, edge?: (dir: string) => Partial<EdgeOptions> }): Promise<TwinSetup> {
  const dir = mkdtempSync(join(tmpdir(), o.prefix))
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: join(dir, 'hub'), admin: false, devices: true, durability: o.durability })
  const reg = hub.devices as DeviceRegistry
  await reg.upsertModel(o.model)
  for (let d = 0; d < o.devices; d++) {
    await reg.upsertDevice({ namespace: 'bench', name: `d${d}`, model: `${o.model.namespace}/${o.model.name}`, labels: {}, attributes: {}, nodeId: 'edge-b', ...o.device })
  }
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string, nodeId: 'edge-b', token: hub.createToken('edge-b'), dataDir: join(dir, 'edge'), admin: false, durability: o.durability,
    devices: { mqtt: { port: 0 }, credentials: [{ username: 'bench', password: 'bench', devices: '*' }] },
    ...o.edge?.(dir)
  })
  const close = async (): Promise<void> => {
    await edge.close()
    await hub.close(200)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    while ((edge.devices?.listDevices().length ?? 0) < o.devices) await new Promise(resolve => setTimeout(resolve, 20))
  } catch (err) {
    await close()
    throw err
  }
  return { dir, hub, reg, edge, close }
}

export const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN }
export const median = (xs: number[]): number => pct(xs, 0.5)

/** Publish n QoS 1 messages with at most `window` unacknowledged. */
export async function pump (client: MqttClient, n: number, window: number, make: (i: number) => [string, string]): Promise<void> {
  let next = 0
  let inflight = 0
  await new Promise<void>((resolve, reject) => {
    const more = (): void => {
      while (inflight < window && next < n) {
        const [t, p] = make(next++)
        inflight++
        client.publish(t, p, { qos: 1 }, err => {
          inflight--
          if (err != null) { reject(err); return }
          if (next === n && inflight === 0) resolve(); else more()
        })
      }
    }
    more()
  })
}

/** Messages per second through a bare aedes at QoS 1 (the same-run baseline). */
export async function aedesReference (n: number, devices: number, window: number): Promise<number> {
  const broker = await Aedes.createBroker()
  const server = createServer(broker.handle)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  const sub = await mqtt.connectAsync(url, { clientId: 'ref-sub' })
  await sub.subscribeAsync('ref/#', { qos: 1 })
  const pub = await mqtt.connectAsync(url, { clientId: 'ref-pub' })
  let got = 0
  const done = new Promise<void>(resolve => sub.on('message', () => { if (++got === n) resolve() }))
  const payload = JSON.stringify({ twin: { temperature: { actual: { value: '21.5' } } } })
  const t0 = performance.now()
  await pump(pub, n, window, i => [`ref/d${i % devices}`, payload])
  await done
  const ms = performance.now() - t0
  await pub.endAsync(); await sub.endAsync()
  await new Promise<void>(resolve => broker.close(() => resolve()))
  await new Promise<void>(resolve => server.close(() => resolve()))
  return n / (ms / 1000)
}
