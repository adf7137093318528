/**
 * Shared setup of the KubeEdge compat-mode tests: a hub, an edge in
 * `compat: 'kubeedge'` with two devices (dev1 with attributes and a desired
 * target) and an operator credential, and mappers connected the way
 * mappers-go's MqttClient.Connect does.
 */
import { hashSecret } from '../../src/device/credentials.js'
import type { EdgeNode, EdgeOptions } from '../../src/edge/edge-node.js'
import type { DeviceOptions } from '../../src/device/edge/options.js'
import { Mapper, sendSnapshot, snapshot, startEdge, startHub, until, Upstream } from './edge-helpers.js'

export const D = '$hw/events/device/default/dev1'
export const RFC3339_S = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/

export async function setup (t: import('tap').Test, devices: Partial<DeviceOptions> = {}, extra: Partial<EdgeOptions> = {}): Promise<{ edge: EdgeNode, up: Upstream, hub: Awaited<ReturnType<typeof startHub>>, url: string }> {
  const up = new Upstream()
  const hub = await startHub(t, up)
  const edge = await startEdge(t, hub, 'edge-1', t.testdir({}) + '/edge', {
    devices: { mqtt: { port: 0 }, compat: 'kubeedge', credentials: [{ username: 'ops', password: 'ops-pw', devices: '*' }], ...devices },
    ...extra
  })
  await edge.waitConnected(10_000)
  const cred = [{ username: 'default/dev1', passwordHash: await hashSecret('s1') }]
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, attributes: { serial: 'A1', vendor: 'acme' }, desired: { target: { value: 22.5, revision: 1 } }, credentials: cred }))
  await sendSnapshot(hub, 'edge-1', snapshot({ revision: 1, name: 'dev2', credentials: [{ username: 'default/dev2', passwordHash: await hashSecret('s2') }] }))
  await until(() => edge.devices?.listDevices().length === 2)
  return { edge, up, hub, url: edge.devices?.brokerUrl as string }
}

/** Connect the way mappers-go's MqttClient.Connect does: empty client id, clean session, username/password. */
export async function goMapper (t: import('tap').Test, url: string, username?: string, password?: string): Promise<Mapper> {
  return await Mapper.connect(t, url, { clientId: '', clean: true, protocolVersion: 4, ...(username !== undefined ? { username, password } : {}) })
}

export async function metric (edge: EdgeNode, name: string): Promise<string> {
  return (await edge.registry.metrics()).split('\n').filter(l => l.startsWith(name)).join('\n')
}

