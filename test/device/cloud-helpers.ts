/**
 * Shared fixtures of the cloud device tests (not a test file itself).
 */
import type { Envelope } from '../../src/codec/envelope.js'
import type { DeviceRegistry } from '../../src/device/cloud/registry.js'
import type { DeviceSink } from '../../src/device/cloud/registry-types.js'
import type { Registry } from '../../src/ops/metrics.js'
import type { AppendOutcome } from '../../src/reliable/store.js'

/** Records what the registry hands to the reliable lane (the collaborator not under test). */
export class RecordingSink implements DeviceSink {
  readonly sent: Array<{ nodeId: string, env: Envelope }> = []
  refuse = false
  fail = false
  #seq = 0
  async sendReliable (nodeId: string, env: Envelope): Promise<AppendOutcome> {
    if (this.fail) throw new Error('lane down')
    if (this.refuse) return { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: 'full' }
    this.sent.push({ nodeId, env })
    return { status: 'queued', seq: ++this.#seq, superseded: [], dropped: [] }
  }

  take (): Array<{ nodeId: string, op: string, resource: string, version: string | undefined, content: unknown }> {
    const out = this.sent.splice(0).map(({ nodeId, env }) => ({ nodeId, op: env.router.operation, resource: env.router.resource, version: env.header.resourceVersion, content: env.content }))
    return out
  }
}

export const thermostat = {
  namespace: 'default',
  name: 'thermostat',
  properties: [
    { name: 'target', type: 'float', accessMode: 'ReadWrite', minimum: 5, maximum: 30, unit: 'C', default: 20 },
    { name: 'temp', type: 'float', accessMode: 'ReadOnly', unit: 'C' },
    { name: 'mode', type: 'string', accessMode: 'ReadWrite', default: 'auto' },
    { name: 'power', type: 'boolean', accessMode: 'ReadWrite' },
    { name: 'fan.speed', type: 'int', accessMode: 'ReadWrite', minimum: 0, maximum: 3 }
  ]
} as const

export function device (name: string, nodeId?: string, labels: Record<string, string> = {}): Parameters<DeviceRegistry['upsertDevice']>[0] {
  return { namespace: 'default', name, model: 'default/thermostat', labels, attributes: { serial: 'x' + name }, ...(nodeId === undefined ? {} : { nodeId }) }
}

/** Resolves once the registry's post-commit hand-off to the sink has run. */
export async function settle (): Promise<void> { await new Promise(resolve => setTimeout(resolve, 20)) }

export async function metric (reg: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find(x => x.name === name)
  const v = (m?.values as Array<{ labels: Record<string, string>, value: number }> | undefined)?.find(x => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
  return v?.value ?? 0
}
