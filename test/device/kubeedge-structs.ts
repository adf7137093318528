/**
 * KubeEdge's `dttype` structs (edge/pkg/devicetwin/dttype/types.go,
 * types_helper.go; kubeedge/kubeedge 16cd8548) as decoding schemas, plus the
 * payloads mappers-go builds (mappers/common/event.go CreateMessageTwinUpdate,
 * CreateMessageState, CreateMessageData; 85fb6d1d) written out as the exact
 * bytes Go's encoding/json produces for them.
 *
 * `goDecode` behaves like encoding/json.Unmarshal into the struct: unknown
 * keys are dropped, JSON null leaves a zero value (nil for pointers, maps and
 * slices), and a type mismatch is an error — which is what made a whole
 * membership message fail to decode when attributes were plain strings.
 */

type Schema = 'string' | 'int64' | 'bool' | { map: Schema } | { slice: Schema } | { [field: string]: Schema }

const TwinValue: Schema = { value: 'string', metadata: { timestamp: 'int64' } }
const TwinVersion: Schema = { cloud: 'int64', edge: 'int64' }
export const MsgTwin: Schema = { expected: TwinValue, actual: TwinValue, optional: 'bool', metadata: { type: 'string' }, expected_version: TwinVersion, actual_version: TwinVersion }
export const MsgAttr: Schema = { value: 'string', optional: 'bool', metadata: { type: 'string' } }
export const Device: Schema = { id: 'string', name: 'string', description: 'string', state: 'string', last_online: 'string', attributes: { map: MsgAttr }, twin: { map: MsgTwin } }
const Base = { event_id: 'string', timestamp: 'int64' } as const
/** dttype.DeviceMsg (BuildDeviceCloudMsgState): the state/update/result answer. */
export const DeviceMsg: Schema = { ...Base, device: { id: 'string', name: 'string', description: 'string', state: 'string', lastOnlineTime: 'string', attributes: { map: MsgAttr }, twin: { map: MsgTwin } } }
export const DeviceTwinResult: Schema = { ...Base, twin: { map: MsgTwin } }
export const Result: Schema = { ...Base, code: 'int64', reason: 'string' }
export const MembershipGetResult: Schema = { ...Base, devices: { slice: Device } }
export const MembershipUpdate: Schema = { ...Base, added_devices: { slice: Device }, removed_devices: { slice: Device } }
export const DeviceTwinDelta: Schema = { ...Base, twin: { map: MsgTwin }, delta: { map: 'string' } }
export const DeviceTwinDocument: Schema = { ...Base, twin: { map: { last: MsgTwin, current: MsgTwin } } }
export const DeviceAttrUpdate: Schema = { ...Base, attributes: { map: MsgAttr } }

export class GoDecodeError extends Error {}

export function goDecode (schema: Schema, v: unknown, path = '$'): unknown {
  if (v === null) return null
  if (schema === 'string') { if (typeof v !== 'string') throw new GoDecodeError(`${path}: cannot unmarshal ${typeof v} into Go value of type string`); return v }
  if (schema === 'int64') { if (typeof v !== 'number' || !Number.isInteger(v)) throw new GoDecodeError(`${path}: cannot unmarshal ${typeof v} into int64`); return v }
  if (schema === 'bool') { if (typeof v !== 'boolean') throw new GoDecodeError(`${path}: cannot unmarshal ${typeof v} into bool`); return v }
  if ('map' in schema && Object.keys(schema).length === 1) {
    if (typeof v !== 'object' || Array.isArray(v)) throw new GoDecodeError(`${path}: cannot unmarshal into map`)
    return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, goDecode((schema as { map: Schema }).map, x, `${path}.${k}`)]))
  }
  if ('slice' in schema && Object.keys(schema).length === 1) {
    if (!Array.isArray(v)) throw new GoDecodeError(`${path}: cannot unmarshal into slice`)
    return v.map((x, i) => goDecode((schema as { slice: Schema }).slice, x, `${path}[${i}]`))
  }
  if (typeof v !== 'object' || Array.isArray(v)) throw new GoDecodeError(`${path}: cannot unmarshal ${Array.isArray(v) ? 'array' : typeof v} into struct`)
  const out: Record<string, unknown> = {}
  const fields = schema as Record<string, Schema>
  for (const [k, x] of Object.entries(v as object)) {
    // encoding/json matches field names case-insensitively
    const f = Object.keys(fields).find(name => name.toLowerCase() === k.toLowerCase())
    if (f === undefined) continue
    out[f] = goDecode(fields[f] as Schema, x, `${path}.${k}`)
  }
  return out
}

/** mappers-go CreateMessageTwinUpdate(name, valueType, value): Actual only; ValueMetadata is a non-pointer struct, so `"metadata":{}`. */
export function createMessageTwinUpdate (name: string, valueType: string, value: string, ts = Date.now()): string {
  return `{"event_id":"","timestamp":${ts},"twin":{${JSON.stringify(name)}:{"actual":{"value":${JSON.stringify(value)},"metadata":{}},"metadata":{"type":${JSON.stringify(valueType)}}}}}`
}

/** mappers-go CreateMessageState(state): DeviceUpdate with a nil Attributes map and no omitempty → `"attributes":null`. */
export function createMessageState (state: string, ts = Date.now()): string {
  return `{"event_id":"","timestamp":${ts},"state":${JSON.stringify(state)},"attributes":null}`
}

/** mappers-go CreateMessageData(name, valueType, value). */
export function createMessageData (name: string, valueType: string, value: string, ts = Date.now()): string {
  return `{"event_id":"","timestamp":${ts},"data":{${JSON.stringify(name)}:{"value":${JSON.stringify(value)},"metadata":{"timestamp":${ts},"type":${JSON.stringify(valueType)}}}}}`
}

/** Go strconv.FormatFloat(v, 'f', 6, 64), as the modbus mapper formats float and double registers. */
export function formatF6 (v: number): string { return v.toFixed(6) }
