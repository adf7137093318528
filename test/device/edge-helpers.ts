/**
 * Shared fixtures for the edge device tests: a hub that records upstream
 * `$device` messages, an edge with devices enabled, snapshots and grants sent
 * the way the cloud registry sends them (hub.sendReliable, protocol.ts), and
 * MQTT.js mappers created with their handlers in place before CONNECT.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode, type EdgeOptions } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import type { HubOptions, UpstreamMessage } from '../../src/hub/types.js'
import { DEVICE_GROUP, deviceResource, mapperResource, type DeviceSnapshot, type MapperGrant } from '../../src/device/protocol.js'
import type { DeviceModel } from '../../src/device/model.js'
import { hashSecret } from '../../src/device/credentials.js'

type TapTest = import('tap').Test

export const MODEL: DeviceModel = {
  namespace: 'default',
  name: 'thermostat',
  properties: [
    { name: 'temperature', type: 'float', accessMode: 'ReadOnly', minimum: -40, maximum: 125, unit: 'C' },
    { name: 'target', type: 'float', accessMode: 'ReadWrite', minimum: 5, maximum: 35 },
    { name: 'mode', type: 'string', accessMode: 'ReadWrite' },
    { name: 'power', type: 'boolean', accessMode: 'ReadWrite' },
    { name: 'fan', type: 'int', accessMode: 'ReadWrite', minimum: 0, maximum: 3 }
  ]
}

export class Upstream {
  readonly items: UpstreamMessage[] = []
  #waiters: Array<() => void> = []
  push (m: UpstreamMessage): void { this.items.push(m); for (const w of this.#waiters.splice(0)) w() }
  of (op: string, resource?: string): Envelope[] {
    return this.items.map(m => m.envelope).filter(e => e.router.group === DEVICE_GROUP && e.router.operation === op && (resource === undefined || e.router.resource === resource))
  }
  async waitFor (pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs
    while (!pred()) {
      if (Date.now() > until) throw new Error('timed out waiting for upstream messages')
      await new Promise<void>(resolve => { const timer = setTimeout(resolve, 200); this.#waiters.push(() => { clearTimeout(timer); resolve() }) })
    }
  }
}

export async function startHub (t: TapTest, up: Upstream, extra: Partial<HubOptions> = {}, dataDir = t.testdir({}) + '/hub'): Promise<Hub> {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir, admin: false, ackTimeoutMs: 500, onUpstream: m => up.push(m), ...extra })
  t.teardown(() => hub.close(200))
  return hub
}

export async function startEdge (t: TapTest, hub: Hub | { url: string, token: string }, nodeId: string, dataDir: string, extra: Partial<EdgeOptions> = {}): Promise<EdgeNode> {
  const url = hub instanceof Hub ? hub.urls[0] as string : hub.url
  const token = hub instanceof Hub ? hub.createToken(nodeId) : hub.token
  const edge = await EdgeNode.start({ hub: url, nodeId, token, dataDir, backoff: { baseMs: 20, capMs: 200 }, admin: false, durability: 'relaxed', devices: { mqtt: { port: 0 } }, ...extra })
  t.teardown(() => edge.close())
  return edge
}

export interface SnapOpts { revision: number, desired?: Record<string, { value: string | number | boolean, revision: number }>, attributes?: Record<string, string>, credentials?: Array<{ username: string, passwordHash: string }>, name?: string, nodeId?: string }

export function snapshot (o: SnapOpts): DeviceSnapshot {
  const desired: DeviceSnapshot['desired'] = {}
  for (const [k, v] of Object.entries(o.desired ?? {})) desired[k] = { value: v.value, revision: v.revision, timestamp: 1_700_000_000_000 + v.revision }
  return {
    device: { namespace: 'default', name: o.name ?? 'dev1', model: 'default/thermostat', labels: {}, attributes: o.attributes ?? {}, nodeId: o.nodeId ?? 'edge-1' },
    model: MODEL,
    desired,
    revision: o.revision,
    credentials: o.credentials ?? []
  }
}

export async function sendSnapshot (hub: Hub, nodeId: string, snap: DeviceSnapshot): Promise<void> {
  await hub.sendReliable(nodeId, newMessage({ source: 'devicecontroller', group: DEVICE_GROUP, operation: 'update', resource: deviceResource(snap.device.namespace, snap.device.name), resourceVersion: String(snap.revision), content: snap }))
}

export async function sendRemoval (hub: Hub, nodeId: string, name: string, revision: number): Promise<void> {
  await hub.sendReliable(nodeId, newMessage({ source: 'devicecontroller', group: DEVICE_GROUP, operation: 'delete', resource: deviceResource('default', name), resourceVersion: String(revision), content: { namespace: 'default', name, revision, reason: 'deleted' } }))
}

export async function sendGrant (hub: Hub, nodeId: string, name: string, username: string, secret: string, devices: string[], revision = 1): Promise<void> {
  const g: MapperGrant = { nodeId, name, username, passwordHash: await hashSecret(secret), devices, revision }
  await hub.sendReliable(nodeId, newMessage({ source: 'devicecontroller', group: DEVICE_GROUP, operation: 'update', resource: mapperResource(nodeId, name), resourceVersion: String(revision), content: g }))
}

/** An MQTT.js mapper whose message queue is in place before CONNECT (DESIGN.md §11). */
export class Mapper {
  readonly client: MqttClient
  readonly messages: Array<{ topic: string, json: any }> = []
  #waiters: Array<() => void> = []
  constructor (url: string, opts: mqtt.IClientOptions) {
    this.client = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
    this.client.on('message', (topic, payload) => {
      let json: unknown
      try { json = JSON.parse(payload.toString()) } catch { json = payload.toString() }
      this.messages.push({ topic, json })
      for (const w of this.#waiters.splice(0)) w()
    })
    this.client.on('error', () => {})
  }

  static async connect (t: TapTest, url: string, opts: mqtt.IClientOptions): Promise<Mapper> {
    const m = new Mapper(url, opts)
    t.teardown(() => m.client.endAsync(true))
    await new Promise<void>((resolve, reject) => { m.client.once('connect', () => resolve()); m.client.once('error', reject) })
    return m
  }

  /** Wait for a message on `topic` matching `pred`; returns its JSON. */
  async next (topic: string, pred: (j: any) => boolean = () => true, timeoutMs = 10_000): Promise<any> {
    const until = Date.now() + timeoutMs
    for (;;) {
      const i = this.messages.findIndex(m => m.topic === topic && pred(m.json))
      if (i >= 0) return this.messages.splice(i, 1)[0]!.json
      if (Date.now() > until) throw new Error(`no message on ${topic} within ${timeoutMs} ms (got: ${this.messages.map(m => m.topic).join(', ')})`)
      await new Promise<void>(resolve => { const timer = setTimeout(resolve, 100); this.#waiters.push(() => { clearTimeout(timer); resolve() }) })
    }
  }

  async request (topic: string, body: object, resultTopic = topic + '/result'): Promise<any> {
    const event = Math.random().toString(36).slice(2)
    await this.client.publishAsync(topic, JSON.stringify({ event_id: event, timestamp: Date.now(), ...body }), { qos: 1 })
    return await this.next(resultTopic, j => j?.event_id === event)
  }
}

export async function until (pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

export const T = (s: string): string => `$hw/events/device/default/${s}`
