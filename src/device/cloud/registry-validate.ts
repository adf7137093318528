/**
 * Validation of device API input (DESIGN.md §8). Every function takes
 * untrusted input (library callers and the admin HTTP API share it), returns
 * a normalised copy holding only known fields (so nothing unexpected is
 * persisted or sent to edges) or throws a typed error from ./errors.ts.
 */
import { ACCESS_MODES, PROPERTY_TYPES, type DeviceModel, type DeviceSpec, type PropertySpec, type TwinValue } from '../model.js'
import { addDmiFields } from './registry-validate-dmi.js'
import {
  InvalidDeviceModelError, InvalidDeviceSpecError, PropertyRangeError, PropertyTypeError, ReadOnlyPropertyError, UnknownPropertyError
} from '../errors.js'

/** Kubernetes DNS-1123 label: namespaces and device names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
/** Kubernetes DNS-1123 subdomain: model names (KubeEdge DeviceModel is a k8s object). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
/** KubeEdge property names: letters, digits, '-', '_', '.'. */
const PROPERTY_NAME = /^[A-Za-z0-9_.-]{1,128}$/
/** Same rule as hub node names (src/identity/token.ts). */
const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/
/** Label keys: optional DNS prefix and a name, as k8s; values ≤ 63 chars of the same alphabet or empty. */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/

/** Bounds on sizes (every collection bounded, DESIGN.md §9). */
export const LIMITS = Object.freeze({
  propertiesPerModel: 256,
  labelsPerDevice: 64,
  attributesPerDevice: 64,
  attributeValueChars: 4096,
  stringValueChars: 64 * 1024,
  unitChars: 64,
  descriptionChars: 1024
})

type Bad = (field: string, message: string) => never
const modelBad: Bad = (f, m) => { throw new InvalidDeviceModelError(f, m) }
const specBad: Bad = (f, m) => { throw new InvalidDeviceSpecError(f, m) }

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function isDnsLabel (s: unknown): s is string { return typeof s === 'string' && DNS_LABEL.test(s) }
export function isNodeName (s: unknown): s is string { return typeof s === 'string' && NODE_NAME.test(s) }

/** Namespace/name pair used by every API call; `bad` decides the error class. */
export function checkDeviceName (namespace: unknown, name: unknown, bad: Bad = specBad): void {
  if (!isDnsLabel(namespace)) bad('namespace', 'must be a DNS-1123 label (1-63 lower-case letters, digits, \'-\')')
  if (!isDnsLabel(name)) bad('name', 'must be a DNS-1123 label (1-63 lower-case letters, digits, \'-\')')
}

export function checkModelName (namespace: unknown, name: unknown): void {
  if (!isDnsLabel(namespace)) modelBad('namespace', 'must be a DNS-1123 label (1-63 lower-case letters, digits, \'-\')')
  if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name)) modelBad('name', 'must be a DNS-1123 subdomain (lower-case letters, digits, \'-\', \'.\')')
}

/** Type check without access/range rules (the edge's reported values go through this too). */
export function checkType (p: PropertySpec, value: unknown): TwinValue {
  switch (p.type) {
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new PropertyTypeError(p.name, `expected an int, got ${describe(value)}`)
      return value
    case 'float':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new PropertyTypeError(p.name, `expected a finite float, got ${describe(value)}`)
      return value
    case 'boolean':
      if (typeof value !== 'boolean') throw new PropertyTypeError(p.name, `expected a boolean, got ${describe(value)}`)
      return value
    case 'string':
      if (typeof value !== 'string') throw new PropertyTypeError(p.name, `expected a string, got ${describe(value)}`)
      if (value.length > LIMITS.stringValueChars) throw new PropertyRangeError(p.name, `string longer than ${LIMITS.stringValueChars} characters`)
      return value
  }
}

/** Type and range check of a value for `p` (desired, default or reported). */
export function checkValue (p: PropertySpec, value: unknown): TwinValue {
  const v = checkType(p, value)
  if (typeof v === 'number') {
    if (p.minimum !== undefined && v < p.minimum) throw new PropertyRangeError(p.name, `${v} is below the minimum ${p.minimum}`)
    if (p.maximum !== undefined && v > p.maximum) throw new PropertyRangeError(p.name, `${v} is above the maximum ${p.maximum}`)
  }
  return v
}

/** Values for setDesired / an edge's expected values: known, ReadWrite, typed, in range. */
export function checkDesired (model: DeviceModel, values: unknown): Record<string, TwinValue> {
  if (!isRecord(values)) throw new PropertyTypeError('*', 'desired values must be an object of property → value')
  const id = `${model.namespace}/${model.name}`
  const out: Record<string, TwinValue> = {}
  for (const [k, v] of Object.entries(values)) {
    const p = model.properties.find(x => x.name === k)
    if (p === undefined) throw new UnknownPropertyError(k, id)
    if (p.accessMode === 'ReadOnly') throw new ReadOnlyPropertyError(k)
    out[k] = checkValue(p, v)
  }
  return out
}

function optString (o: Record<string, unknown>, key: string, field: string, max: number, bad: Bad): string | undefined {
  const v = o[key]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.length > max) bad(field, `must be a string of at most ${max} characters`)
  return v as string
}

function checkProperty (raw: unknown, i: number): PropertySpec {
  const f = `properties[${i}]`
  if (!isRecord(raw)) modelBad(f, 'must be an object')
  const o = raw as Record<string, unknown>
  if (typeof o.name !== 'string' || !PROPERTY_NAME.test(o.name)) modelBad(`${f}.name`, 'must be 1-128 letters, digits, \'-\', \'_\' or \'.\'')
  const name = o.name as string
  if (!(PROPERTY_TYPES as readonly unknown[]).includes(o.type)) modelBad(`${f}.type`, `must be one of ${PROPERTY_TYPES.join(', ')}`)
  const accessMode = o.accessMode ?? 'ReadWrite'
  if (!(ACCESS_MODES as readonly unknown[]).includes(accessMode)) modelBad(`${f}.accessMode`, `must be one of ${ACCESS_MODES.join(', ')}`)
  const p: PropertySpec = { name, type: o.type as PropertySpec['type'], accessMode: accessMode as PropertySpec['accessMode'] }
  const numeric = p.type === 'int' || p.type === 'float'
  for (const k of ['minimum', 'maximum'] as const) {
    const v = o[k]
    if (v === undefined) continue
    if (!numeric) modelBad(`${f}.${k}`, `only int and float properties have a ${k}`)
    if (typeof v !== 'number' || !Number.isFinite(v) || (p.type === 'int' && !Number.isSafeInteger(v))) modelBad(`${f}.${k}`, `must be a finite ${p.type}`)
    p[k] = v as number
  }
  if (p.minimum !== undefined && p.maximum !== undefined && p.minimum > p.maximum) modelBad(`${f}.minimum`, `${p.minimum} is greater than maximum ${p.maximum}`)
  const unit = optString(o, 'unit', `${f}.unit`, LIMITS.unitChars, modelBad)
  if (unit !== undefined) p.unit = unit
  const description = optString(o, 'description', `${f}.description`, LIMITS.descriptionChars, modelBad)
  if (description !== undefined) p.description = description
  if (o.default !== undefined) {
    try {
      p.default = checkValue(p, o.default)
    } catch (err) {
      modelBad(`${f}.default`, (err as Error).message)
    }
  }
  return p
}

/** A normalised copy of a device model, or InvalidDeviceModelError. */
export function validateModel (raw: unknown): DeviceModel {
  if (!isRecord(raw)) modelBad('model', 'must be an object')
  const o = raw as Record<string, unknown>
  checkModelName(o.namespace, o.name)
  if (!Array.isArray(o.properties)) modelBad('properties', 'must be an array')
  const list = o.properties as unknown[]
  if (list.length > LIMITS.propertiesPerModel) modelBad('properties', `at most ${LIMITS.propertiesPerModel} properties`)
  const properties = list.map(checkProperty)
  const seen = new Set<string>()
  for (const p of properties) {
    if (seen.has(p.name)) modelBad('properties', `duplicate property ${JSON.stringify(p.name)}`)
    seen.add(p.name)
  }
  return { namespace: o.namespace as string, name: o.name as string, properties }
}

function stringMap (raw: unknown, field: string, maxEntries: number, checkKey: (k: string) => boolean, checkVal: (v: string) => boolean, rule: string): Record<string, string> {
  if (raw === undefined) return {}
  if (!isRecord(raw)) specBad(field, 'must be an object of string → string')
  const out: Record<string, string> = {}
  const entries = Object.entries(raw as Record<string, unknown>)
  if (entries.length > maxEntries) specBad(field, `at most ${maxEntries} entries`)
  for (const [k, v] of entries) {
    if (!checkKey(k)) specBad(`${field}.${k}`, `invalid key (${rule})`)
    if (typeof v !== 'string' || !checkVal(v)) specBad(`${field}.${k}`, `invalid value (${rule})`)
    out[k] = v as string
  }
  return out
}

/** Label selector / labels: k8s rules. */
export function checkLabels (raw: unknown, field = 'labels'): Record<string, string> {
  return stringMap(raw, field, LIMITS.labelsPerDevice, k => k.length <= 316 && LABEL_KEY.test(k), v => LABEL_VALUE.test(v),
    'Kubernetes label syntax: [prefix/]name of letters, digits, \'-\', \'_\', \'.\'; values ≤ 63 characters')
}

/** A normalised copy of a device spec (model existence is the registry's check), or InvalidDeviceSpecError. */
export function validateDeviceSpec (raw: unknown): DeviceSpec {
  if (!isRecord(raw)) specBad('device', 'must be an object')
  const o = raw as Record<string, unknown>
  checkDeviceName(o.namespace, o.name)
  if (typeof o.model !== 'string') specBad('model', 'must be a model id "{namespace}/{name}"')
  const model = o.model as string
  const slash = model.indexOf('/')
  try {
    checkModelName(model.slice(0, slash), model.slice(slash + 1))
  } catch {
    specBad('model', `${JSON.stringify(model)} is not a model id "{namespace}/{name}"`)
  }
  const spec: DeviceSpec = {
    namespace: o.namespace as string,
    name: o.name as string,
    model,
    labels: checkLabels(o.labels),
    attributes: stringMap(o.attributes, 'attributes', LIMITS.attributesPerDevice, k => PROPERTY_NAME.test(k), v => v.length <= LIMITS.attributeValueChars,
      `names as property names, values ≤ ${LIMITS.attributeValueChars} characters`)
  }
  if (o.nodeId !== undefined && o.nodeId !== null) {
    if (!isNodeName(o.nodeId)) specBad('nodeId', 'must be a node name (1-63 lower-case letters, digits, \'-\', \'.\')')
    spec.nodeId = o.nodeId as string
  }
  addDmiFields(spec, o, LIMITS.propertiesPerModel) // KubeEdge mapper settings (issue 14), opaque to edgefabric
  return spec
}

function describe (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`
  return typeof v
}
