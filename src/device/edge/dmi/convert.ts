/**
 * Edge twin records → DMI messages (issue 14), the counterpart of edgecore's
 * dtcommon.ConvertDevice / ConvertDeviceModel. Every nested message a stock
 * mapper dereferences without a nil check (mapper-framework
 * pkg/util/parse/grpc.go: spec.protocol, each property's visitors.configData
 * and desired) is always present, possibly empty.
 */
import { createHash } from 'node:crypto'
import type { DeviceModel, PropertySpec } from '../../model.js'
import { effectiveExpected, type TwinRecord } from '../twin-state.js'
import { encodeAnyMap } from './any-value.js'
import type { PbDevice, PbDeviceModel, PbDeviceProperty } from './proto.js'

/** Protocol name a device is served by over DMI, or undefined (not a DMI device). */
export function protocolOf (rec: TwinRecord): string | undefined {
  return rec.snapshot.device.protocol?.protocolName
}

/** A mapper finds a device's model as {device namespace}/{model name}, so the model is sent in the device's namespace. */
export function modelKey (rec: TwinRecord): string {
  return `${rec.namespace}/${rec.snapshot.model.name}`
}

function pushMethod (raw: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (raw === undefined) return null
  const out: Record<string, unknown> = { ...raw }
  const ad = raw.anomalyDetection as { data?: Record<string, string | number | boolean> } | undefined
  if (ad !== undefined) out.anomalyDetection = { data: encodeAnyMap(ad.data) }
  return out
}

function property (rec: TwinRecord, p: PropertySpec, cfg: NonNullable<TwinRecord['snapshot']['device']['properties']>[number] | undefined): PbDeviceProperty {
  const exp = effectiveExpected(rec, p.name)
  const visitors = cfg?.visitors
  return {
    name: p.name,
    // Desired values reach the mapper here (mapper-framework buildTwinsFromGrpc reads value and metadata.timestamp/type).
    desired: { value: exp === undefined ? '' : String(exp.value), metadata: { type: p.type, timestamp: String(exp?.timestamp ?? 0) } },
    visitors: { protocolName: visitors?.protocolName ?? protocolOf(rec) ?? '', configData: { data: encodeAnyMap(visitors?.configData) } },
    reportCycle: cfg?.reportCycle ?? 0,
    collectCycle: cfg?.collectCycle ?? 0,
    reportToCloud: cfg?.reportToCloud ?? false,
    pushMethod: pushMethod(cfg?.pushMethod)
  }
}

export function toPbDevice (rec: TwinRecord): PbDevice {
  const dev = rec.snapshot.device
  const model = rec.snapshot.model
  const props = new Map(model.properties.map(p => [p.name, p]))
  // The device's own property list when it has one (KubeEdge spec.properties), else every model property.
  const list = dev.properties !== undefined && dev.properties.length > 0
    ? dev.properties.flatMap(c => { const p = props.get(c.name); return p === undefined ? [] : [property(rec, p, c)] })
    : model.properties.map(p => property(rec, p, undefined))
  return {
    name: rec.name,
    namespace: rec.namespace,
    spec: {
      deviceModelReference: model.name,
      protocol: { protocolName: dev.protocol?.protocolName ?? '', configData: { data: encodeAnyMap(dev.protocol?.configData) } },
      properties: list,
      methods: (dev.methods ?? []).map(m => ({ name: m.name, description: m.description ?? '', propertyNames: [...m.propertyNames] }))
    },
    // Reported twins are left out on purpose: they change with every reading and the mapper is their source.
    status: { twins: [], reportToCloud: dev.stateReport?.reportToCloud ?? false, reportCycle: dev.stateReport?.reportCycle ?? 0 }
  }
}

export function toPbModel (model: DeviceModel, namespace: string): PbDeviceModel {
  return {
    name: model.name,
    namespace,
    spec: {
      properties: model.properties.map(p => ({
        name: p.name,
        description: p.description ?? '',
        type: p.type,
        accessMode: p.accessMode,
        minimum: p.minimum === undefined ? '' : String(p.minimum),
        maximum: p.maximum === undefined ? '' : String(p.maximum),
        unit: p.unit ?? ''
      })),
      commands: []
    }
  }
}

/** Short digest of what would be sent: equal digests mean the mapper already has it. */
export function fingerprint (msg: unknown): string {
  return createHash('sha256').update(JSON.stringify(msg)).digest('base64url').slice(0, 22)
}
