/**
 * KubeEdge twin payloads (DESIGN.md §8): parsing what mappers send and
 * building what the edge answers. Field names follow KubeEdge's
 * `dttype` package (`event_id`, `timestamp` in ms, `twin.{name}.expected/actual`,
 * `expected_version`/`actual_version` `{cloud, edge}`, `metadata.type`).
 * Values travel as strings ("25.5") like KubeEdge mappers send them and are
 * parsed by the property type of the device model.
 */
import { EdgeFabricError } from '../../errors.js'
import type { PropertySpec, TwinValue } from '../model.js'

/** A mapper request the edge refuses; answered as `{code, reason}` on the result topic. */
export class TwinRequestError extends EdgeFabricError {
  /** KubeEdge-style numeric status on the wire (400 bad request, 404 unknown, 413 too large). */
  readonly status: number
  constructor (code: string, status: number, message: string) {
    super(code, message)
    this.status = status
  }
}

export const BAD_JSON = 'EF_TWIN_BAD_JSON'
export const BAD_REQUEST = 'EF_TWIN_BAD_REQUEST'
export const BAD_VALUE = 'EF_TWIN_BAD_VALUE'
export const READ_ONLY = 'EF_TWIN_READ_ONLY'
export const UNKNOWN_DEVICE = 'EF_TWIN_UNKNOWN_DEVICE'
export const UNKNOWN_PROPERTY = 'EF_TWIN_UNKNOWN_PROPERTY'
export const TOO_LARGE = 'EF_TWIN_TOO_LARGE'
export const BUSY = 'EF_TWIN_BUSY'

export interface WireValue { value: string, metadata: { timestamp: number } }
export interface WireTwin {
  expected?: WireValue
  actual?: WireValue
  optional: boolean
  metadata: { type: string }
  expected_version?: { cloud: number, edge: number }
  actual_version?: { cloud: number, edge: number }
}

/** One requested change of a property, after validation. */
export interface TwinChange {
  /** `raw`: the string as sent (compat mode echoes it); `outOfRange`: a reading outside min/max, stored and flagged. */
  actual?: { value: TwinValue, timestamp: number, raw?: string, outOfRange?: boolean }
  expected?: { value: TwinValue, timestamp: number, raw?: string }
}

export function parseJson (payload: Uint8Array): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'))
  } catch (err) {
    throw new TwinRequestError(BAD_JSON, 400, `payload is not valid JSON: ${(err as Error).message}`)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TwinRequestError(BAD_JSON, 400, 'payload must be a JSON object')
  return v as Record<string, unknown>
}

/** `event_id` of a request, echoed in the answer ('' when absent or not a string). */
export function eventId (req: Record<string, unknown> | undefined): string {
  const id = req?.event_id
  return typeof id === 'string' ? id : ''
}

/** Parse a wire value (string as KubeEdge sends it, or a JSON scalar) by the property type and check its range. */
export function parseValue (prop: PropertySpec, raw: unknown): TwinValue {
  const v = parseType(prop, raw)
  checkRange(prop, v)
  return v
}

export function checkRange (prop: PropertySpec, v: TwinValue): void {
  if (typeof v !== 'number') return
  const where = `property "${prop.name}" (${prop.type})`
  if (prop.minimum !== undefined && v < prop.minimum) throw new TwinRequestError(BAD_VALUE, 400, `${where}: ${v} is below the minimum ${prop.minimum}`)
  if (prop.maximum !== undefined && v > prop.maximum) throw new TwinRequestError(BAD_VALUE, 400, `${where}: ${v} is above the maximum ${prop.maximum}`)
}

/** Parse by type only (no range). */
export function parseType (prop: PropertySpec, raw: unknown): TwinValue {
  const where = `property "${prop.name}" (${prop.type})`
  if (raw === null || (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean')) {
    throw new TwinRequestError(BAD_VALUE, 400, `${where}: value must be a string, number or boolean`)
  }
  let v: TwinValue
  switch (prop.type) {
    case 'string':
      if (typeof raw !== 'string') throw new TwinRequestError(BAD_VALUE, 400, `${where}: value must be a string`)
      return raw
    case 'boolean':
      if (raw === true || raw === 'true') return true
      if (raw === false || raw === 'false') return false
      throw new TwinRequestError(BAD_VALUE, 400, `${where}: "${String(raw)}" is not true/false`)
    case 'int': {
      const s = String(raw).trim()
      if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new TwinRequestError(BAD_VALUE, 400, `${where}: "${String(raw)}" is not an integer`)
      v = Number(s)
      break
    }
    case 'float': {
      const s = String(raw).trim()
      const n = s === '' || typeof raw === 'boolean' ? NaN : Number(s)
      if (!Number.isFinite(n)) throw new TwinRequestError(BAD_VALUE, 400, `${where}: "${String(raw)}" is not a number`)
      v = n
      break
    }
  }
  return v
}

export function wireTimestamp (raw: unknown, fallback: number): number {
  const ts = (raw as { metadata?: { timestamp?: unknown } } | undefined)?.metadata?.timestamp
  return typeof ts === 'number' && Number.isFinite(ts) && ts > 0 ? ts : fallback
}

/**
 * Validate a `…/twin/update` request against the model: every named property
 * must exist, values must parse by type within min/max, and `expected` is
 * refused for ReadOnly properties (only the device reports those). All or
 * nothing: one bad twin refuses the whole request.
 */
export function parseTwinUpdate (req: Record<string, unknown>, props: ReadonlyMap<string, PropertySpec>, now: number): Map<string, TwinChange> {
  const twin = req.twin
  if (twin === null || typeof twin !== 'object' || Array.isArray(twin)) throw new TwinRequestError(BAD_REQUEST, 400, '"twin" must be an object of property names')
  const out = new Map<string, TwinChange>()
  for (const [name, entry] of Object.entries(twin as Record<string, unknown>)) {
    const prop = props.get(name)
    if (prop === undefined) throw new TwinRequestError(UNKNOWN_PROPERTY, 404, `unknown property "${name}"`)
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new TwinRequestError(BAD_REQUEST, 400, `twin "${name}" must be an object`)
    const e = entry as { actual?: unknown, expected?: unknown }
    const change: TwinChange = {}
    for (const side of ['actual', 'expected'] as const) {
      const w = e[side]
      if (w === undefined || w === null) continue
      if (typeof w !== 'object' || Array.isArray(w) || !('value' in w)) throw new TwinRequestError(BAD_REQUEST, 400, `twin "${name}".${side} must be {value, metadata}`)
      if (side === 'expected' && prop.accessMode === 'ReadOnly') throw new TwinRequestError(READ_ONLY, 400, `property "${name}" is ReadOnly: its expected value cannot be set from the edge`)
      change[side] = { value: parseValue(prop, (w as { value: unknown }).value), timestamp: wireTimestamp(w, now) }
    }
    if (change.actual === undefined && change.expected === undefined) throw new TwinRequestError(BAD_REQUEST, 400, `twin "${name}" has neither actual nor expected`)
    out.set(name, change)
  }
  if (out.size === 0) throw new TwinRequestError(BAD_REQUEST, 400, '"twin" is empty')
  return out
}

/** Values go out as strings, as KubeEdge does. */
export function wireValue (v: { value: TwinValue, timestamp: number, raw?: string }): WireValue {
  return { value: v.raw ?? String(v.value), metadata: { timestamp: v.timestamp } }
}

export function errorPayload (eventIdValue: string, err: TwinRequestError, now: number): Record<string, unknown> {
  return { event_id: eventIdValue, timestamp: now, code: err.status, error: err.code, reason: err.message }
}
