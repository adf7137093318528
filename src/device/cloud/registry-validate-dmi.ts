/**
 * Validation of the device fields KubeEdge mappers need over DMI (issue 14
 * part 2): `protocol`, `properties` (visitors, cycles, push method),
 * `methods`, `stateReport`. edgefabric stores and forwards them without
 * interpreting them, so the checks are about shape and size (every
 * collection bounded, DESIGN.md §9) and about what the DMI wire can carry:
 * `configData` values travel as protobuf wrappers in an Any (edgecore's
 * dtcommon.dataToAny), so they must be scalars.
 */
import { InvalidDeviceSpecError } from '../errors.js'
import type { DeviceMethodSpec, DeviceModel, DevicePropertyConfig, DeviceSpec, ProtocolConfig } from '../model.js'

export const DMI_LIMITS = Object.freeze({
  configEntries: 64,
  configKeyChars: 128,
  configValueChars: 4096,
  protocolNameChars: 128,
  methods: 64,
  /** JSON size of one property's pushMethod. */
  pushMethodBytes: 16 * 1024,
  pushMethodDepth: 8,
  descriptionChars: 1024
})

/** Top-level PushMethod fields of the DMI proto; anything else would be dropped on the wire, so it is refused. */
const PUSH_METHODS = ['http', 'mqtt', 'otel', 'dbMethod', 'anomalyDetection']
const PROTOCOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/
const PROPERTY_NAME = /^[A-Za-z0-9_.-]{1,128}$/

function bad (field: string, message: string): never { throw new InvalidDeviceSpecError(field, message) }
function isRecord (v: unknown): v is Record<string, unknown> { return typeof v === 'object' && v !== null && !Array.isArray(v) }

function cycle (v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(field, 'must be a non-negative integer (ms)')
  return v as number
}

function bool (v: unknown, field: string): boolean | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'boolean') bad(field, 'must be a boolean')
  return v as boolean
}

/** Map of scalars (DMI CustomizedValue / AnomalyDetection.data). */
export function checkScalarMap (raw: unknown, field: string): Record<string, string | number | boolean> {
  if (!isRecord(raw)) bad(field, 'must be an object of name → string, number or boolean')
  const entries = Object.entries(raw as Record<string, unknown>)
  if (entries.length > DMI_LIMITS.configEntries) bad(field, `at most ${DMI_LIMITS.configEntries} entries`)
  const out: Record<string, string | number | boolean> = {}
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > DMI_LIMITS.configKeyChars) bad(`${field}.${k}`, `keys are 1-${DMI_LIMITS.configKeyChars} characters`)
    if (typeof v === 'string') {
      if (v.length > DMI_LIMITS.configValueChars) bad(`${field}.${k}`, `string longer than ${DMI_LIMITS.configValueChars} characters`)
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) bad(`${field}.${k}`, 'must be a finite number')
    } else if (typeof v !== 'boolean') {
      bad(`${field}.${k}`, 'must be a string, number or boolean (DMI carries each value as a protobuf wrapper)')
    }
    out[k] = v as string | number | boolean
  }
  return out
}

export function checkProtocol (raw: unknown, field: string): ProtocolConfig {
  if (!isRecord(raw)) bad(field, 'must be an object {protocolName, configData?}')
  const o = raw as Record<string, unknown>
  if (typeof o.protocolName !== 'string' || !PROTOCOL_NAME.test(o.protocolName)) bad(`${field}.protocolName`, `must be 1-${DMI_LIMITS.protocolNameChars} letters, digits, '-', '_' or '.'`)
  const p: ProtocolConfig = { protocolName: o.protocolName as string }
  if (o.configData !== undefined) p.configData = checkScalarMap(o.configData, `${field}.configData`)
  return p
}

function depth (v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0
  let d = 0
  for (const x of Object.values(v)) d = Math.max(d, depth(x))
  return d + 1
}

function checkPushMethod (raw: unknown, field: string): Record<string, unknown> {
  if (!isRecord(raw)) bad(field, `must be an object with one of ${PUSH_METHODS.join(', ')}`)
  const o = raw as Record<string, unknown>
  for (const k of Object.keys(o)) if (!PUSH_METHODS.includes(k)) bad(`${field}.${k}`, `unknown push method (DMI PushMethod has ${PUSH_METHODS.join(', ')})`)
  let text: string
  try { text = JSON.stringify(o) } catch (err) { bad(field, `is not JSON: ${(err as Error).message}`) }
  if (Buffer.byteLength(text) > DMI_LIMITS.pushMethodBytes) bad(field, `larger than ${DMI_LIMITS.pushMethodBytes} bytes of JSON`)
  if (depth(o) > DMI_LIMITS.pushMethodDepth) bad(field, `nested deeper than ${DMI_LIMITS.pushMethodDepth} levels`)
  const copy = JSON.parse(text) as Record<string, unknown>
  const ad = copy.anomalyDetection
  if (ad !== undefined) {
    if (!isRecord(ad)) bad(`${field}.anomalyDetection`, 'must be an object {data}')
    const data = (ad as Record<string, unknown>).data
    if (data !== undefined) checkScalarMap(data, `${field}.anomalyDetection.data`)
  }
  return copy
}

function checkProperty (raw: unknown, field: string): DevicePropertyConfig {
  if (!isRecord(raw)) bad(field, 'must be an object {name, visitors?, reportCycle?, collectCycle?, reportToCloud?, pushMethod?}')
  const o = raw as Record<string, unknown>
  if (typeof o.name !== 'string' || !PROPERTY_NAME.test(o.name)) bad(`${field}.name`, 'must be a property name of the model')
  const p: DevicePropertyConfig = { name: o.name as string }
  if (o.visitors !== undefined) p.visitors = checkProtocol(o.visitors, `${field}.visitors`)
  const rc = cycle(o.reportCycle, `${field}.reportCycle`)
  if (rc !== undefined) p.reportCycle = rc
  const cc = cycle(o.collectCycle, `${field}.collectCycle`)
  if (cc !== undefined) p.collectCycle = cc
  const rtc = bool(o.reportToCloud, `${field}.reportToCloud`)
  if (rtc !== undefined) p.reportToCloud = rtc
  if (o.pushMethod !== undefined) p.pushMethod = checkPushMethod(o.pushMethod, `${field}.pushMethod`)
  return p
}

function checkMethod (raw: unknown, field: string): DeviceMethodSpec {
  if (!isRecord(raw)) bad(field, 'must be an object {name, description?, propertyNames}')
  const o = raw as Record<string, unknown>
  if (typeof o.name !== 'string' || !PROPERTY_NAME.test(o.name)) bad(`${field}.name`, 'must be 1-128 letters, digits, \'-\', \'_\' or \'.\'')
  const names = o.propertyNames ?? []
  if (!Array.isArray(names) || names.length > 256 || !names.every(n => typeof n === 'string' && PROPERTY_NAME.test(n))) bad(`${field}.propertyNames`, 'must be a list of property names')
  const m: DeviceMethodSpec = { name: o.name as string, propertyNames: [...names as string[]] }
  if (o.description !== undefined) {
    if (typeof o.description !== 'string' || o.description.length > DMI_LIMITS.descriptionChars) bad(`${field}.description`, `must be a string of at most ${DMI_LIMITS.descriptionChars} characters`)
    m.description = o.description as string
  }
  return m
}

/** Copy the DMI fields of `o` (untrusted) into `spec`, validated. */
export function addDmiFields (spec: DeviceSpec, o: Record<string, unknown>, maxProperties: number): void {
  if (o.protocol !== undefined && o.protocol !== null) spec.protocol = checkProtocol(o.protocol, 'protocol')
  if (o.properties !== undefined && o.properties !== null) {
    if (!Array.isArray(o.properties) || o.properties.length > maxProperties) bad('properties', `must be a list of at most ${maxProperties} property settings`)
    const list = (o.properties as unknown[]).map((p, i) => checkProperty(p, `properties[${i}]`))
    const seen = new Set<string>()
    for (const p of list) {
      if (seen.has(p.name)) bad('properties', `duplicate property ${JSON.stringify(p.name)}`)
      seen.add(p.name)
    }
    spec.properties = list
  }
  if (o.methods !== undefined && o.methods !== null) {
    if (!Array.isArray(o.methods) || o.methods.length > DMI_LIMITS.methods) bad('methods', `must be a list of at most ${DMI_LIMITS.methods} methods`)
    spec.methods = (o.methods as unknown[]).map((m, i) => checkMethod(m, `methods[${i}]`))
  }
  if (o.stateReport !== undefined && o.stateReport !== null) {
    if (!isRecord(o.stateReport)) bad('stateReport', 'must be an object {reportCycle?, reportToCloud?}')
    const s = o.stateReport as Record<string, unknown>
    const sr: NonNullable<DeviceSpec['stateReport']> = {}
    const rc = cycle(s.reportCycle, 'stateReport.reportCycle')
    if (rc !== undefined) sr.reportCycle = rc
    const rtc = bool(s.reportToCloud, 'stateReport.reportToCloud')
    if (rtc !== undefined) sr.reportToCloud = rtc
    spec.stateReport = sr
  }
}

/** Property settings must name properties of the device's model (checked where the model is known). */
export function checkDmiAgainstModel (spec: DeviceSpec, model: DeviceModel): void {
  const known = new Set(model.properties.map(p => p.name))
  spec.properties?.forEach((p, i) => { if (!known.has(p.name)) bad(`properties[${i}].name`, `"${p.name}" is not a property of model ${model.namespace}/${model.name}`) })
  spec.methods?.forEach((m, i) => m.propertyNames.forEach(n => { if (!known.has(n)) bad(`methods[${i}].propertyNames`, `"${n}" is not a property of model ${model.namespace}/${model.name}`) }))
}
