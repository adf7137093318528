/**
 * Shared pieces of the MQTT attack tests (issue 13 items 2, 4, 8, 9): an edge
 * with the embedded broker and devices whose credentials come from snapshots,
 * and hand-built MQTT 3.1.1 packets (§3.1 CONNECT) for clients that are not
 * MQTT.js.
 */
import { connect as netConnect } from 'node:net'
import mqtt from 'mqtt'
import { hashSecret } from '../../src/device/credentials.js'
import type { EdgeNode, EdgeOptions } from '../../src/edge/edge-node.js'
import type { DeviceOptions } from '../../src/device/edge/options.js'
import { sendSnapshot, snapshot, startEdge, startHub, until, Upstream } from '../device/edge-helpers.js'

export async function edgeWithDevices (t: import('tap').Test, names: string[], devices: Partial<DeviceOptions> = {}, edgeExtra: Partial<EdgeOptions> = {}): Promise<{ edge: EdgeNode, hub: Awaited<ReturnType<typeof startHub>>, url: string, secrets: Record<string, string>, dir: string }> {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const dir = t.testdir({})
  const edge = await startEdge(t, hub, 'edge-1', dir + '/edge', { devices: { mqtt: { port: 0 }, ...devices }, ...edgeExtra })
  await edge.waitConnected(10_000)
  const secrets: Record<string, string> = {}
  for (const name of names) {
    secrets[name] = `secret-${name}`
    await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, name, credentials: [{ username: `default/${name}`, passwordHash: await hashSecret(secrets[name]) }] }))
  }
  await until(() => edge.devices?.listDevices().length === names.length)
  return { edge, hub, url: edge.devices?.brokerUrl as string, secrets, dir }
}

function str (s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

export function remainingLength (n: number): Buffer {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return Buffer.from(out)
}

/** MQTT 3.1.1 CONNECT (clean session). */
export function connectPacket (clientId: string, username?: string, password?: string): Buffer {
  let flags = 0x02
  if (username !== undefined) flags |= 0x80
  if (password !== undefined) flags |= 0x40
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, flags, 0, 60]), str(clientId), ...(username !== undefined ? [str(username)] : []), ...(password !== undefined ? [str(password)] : [])])
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body])
}

/** The fixed header and topic of a QoS 0 PUBLISH announcing `payloadBytes` of payload (the payload itself is streamed by the caller). */
export function publishHeader (topic: string, payloadBytes: number): Buffer {
  const t = str(topic)
  return Buffer.concat([Buffer.from([0x30]), remainingLength(t.length + payloadBytes), t])
}

export const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`

/** One MQTT.js login (from `localAddress` when given: a socket bound there); CONNACK code 0 = in, -1 = no CONNACK. */
export async function mqttLogin (url: string, opts: mqtt.IClientOptions, localAddress?: string): Promise<{ ms: number, code: number }> {
  const u = new URL(url)
  const start = performance.now()
  const c = localAddress === undefined
    ? mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 30_000, ...opts })
    : new mqtt.MqttClient(() => netConnect({ host: u.hostname, port: Number(u.port), localAddress }), { reconnectPeriod: 0, connectTimeout: 30_000, protocolVersion: 4, ...opts })
  const code = await new Promise<number>(resolve => {
    c.once('connect', () => resolve(0))
    c.once('error', (err: Error & { code?: number }) => resolve(typeof err.code === 'number' ? err.code : -1))
  })
  const ms = performance.now() - start
  await c.endAsync(true)
  return { ms, code }
}
