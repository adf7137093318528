/**
 * `…/twin/update` with KubeEdge's semantics (compat mode, issue 14 item 8),
 * read from KubeEdge `edge/pkg/devicetwin/dtmanager/twin.go` (DealMsgTwin,
 * dealTwinCompare, dealTwinAdd, dealTwinDelete) and `dttype`
 * (UnmarshalDeviceTwinUpdate):
 *
 *  - a key must match `^[a-zA-Z0-9-_.,:/@#]{1,128}$` (dtcommon.ValidateTwinKey), else 400;
 *  - `"twin":{}` and entries carrying only metadata succeed (nothing changes);
 *  - `"k": null` deletes an optional twin; for a model property (not optional)
 *    or an unknown key it is a no-op and still a success;
 *  - an unknown key becomes an optional twin typed by `metadata.type`
 *    (default "string"), its value checked like dtcommon.ValidateValue —
 *    when `extraProperties` is 'optional' (else 404, as strict mode);
 *  - values are kept verbatim (`raw`), so "23.500000" is answered as sent;
 *  - a reading (actual) outside the model's min/max is stored and flagged
 *    `outOfRange`; an expected value outside it is still refused (400).
 * Deviations kept from strict mode: values are type-checked against the
 * model (KubeEdge checks the twin's stored type, which is the model's), and
 * `expected` of a ReadOnly property is refused.
 */
import type { PropertySpec } from '../model.js'
import { BAD_REQUEST, BAD_VALUE, checkRange, parseType, READ_ONLY, TwinRequestError, UNKNOWN_PROPERTY, wireTimestamp, type TwinChange } from './twin-payload.js'
import type { ExtraTwin } from './twin-state.js'

const TWIN_KEY = /^[a-zA-Z0-9\-_.,:/@#]{1,128}$/

export interface CompatPlan {
  /** Model properties that change. */
  changes: Map<string, TwinChange>
  /** Extra (optional) twins added or updated, in their new form. */
  extras: Map<string, ExtraTwin>
  /** Extra twins deleted with `"k": null`. */
  deleted: string[]
}

/** KubeEdge dtcommon.ValidateValue, plus "double" (mappers-go modbus sends it). */
export function validateKubeValue (type: string, value: string): void {
  const bad = (why: string): never => { throw new TwinRequestError(BAD_VALUE, 400, why) }
  switch (type) {
    case '': case 'string': case 'deleted': return
    case 'int': case 'integer': if (!/^[+-]?\d+$/.test(value)) bad(`"${value}" is not int or integer`); return
    case 'float': case 'double': if (value.trim() === '' || !Number.isFinite(Number(value))) bad(`"${value}" is not float`); return
    case 'boolean': if (value !== 'true' && value !== 'false') bad('the bool value must be true or false'); return
    default: bad(`the value type "${type}" is not allowed`)
  }
}

function wireString (raw: unknown, key: string, side: string): string {
  if (typeof raw === 'string') return raw
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw)
  throw new TwinRequestError(BAD_REQUEST, 400, `twin "${key}".${side}.value must be a string`)
}

export function planCompatUpdate (req: Record<string, unknown>, props: ReadonlyMap<string, PropertySpec>, extras: Readonly<Record<string, ExtraTwin>>, allowExtra: boolean, now: number): CompatPlan {
  const twin = req.twin
  // dttype.ErrorUpdate: "Update twin error, key:twin does not exist"
  if (twin === null || typeof twin !== 'object' || Array.isArray(twin)) throw new TwinRequestError(BAD_REQUEST, 400, 'Update twin error, key:twin does not exist')
  const plan: CompatPlan = { changes: new Map(), extras: new Map(), deleted: [] }
  for (const [key, entry] of Object.entries(twin as Record<string, unknown>)) {
    if (!TWIN_KEY.test(key)) throw new TwinRequestError(BAD_REQUEST, 400, 'The key of twin must only include upper or lowercase letters, number, english, and special letter - _ . , : / @ # and the length of key should be less than 128 bytes')
    const prop = props.get(key)
    const extra = extras[key]
    if (entry === null) {
      if (extra !== undefined) plan.deleted.push(key)
      continue
    }
    if (typeof entry !== 'object' || Array.isArray(entry)) throw new TwinRequestError(BAD_REQUEST, 400, `twin "${key}" must be an object`)
    const e = entry as { actual?: unknown, expected?: unknown, metadata?: unknown }
    const sides: Array<['actual' | 'expected', string, number]> = []
    for (const side of ['actual', 'expected'] as const) {
      const w = e[side]
      if (w === undefined || w === null) continue
      if (typeof w !== 'object' || Array.isArray(w)) throw new TwinRequestError(BAD_REQUEST, 400, `twin "${key}".${side} must be {value, metadata}`)
      const v = (w as { value?: unknown }).value
      if (v === undefined || v === null) continue // metadata only: nothing to change
      sides.push([side, wireString(v, key, side), wireTimestamp(w, now)])
    }
    if (prop !== undefined) {
      if (sides.length === 0) continue
      const change: TwinChange = {}
      for (const [side, raw, timestamp] of sides) {
        if (side === 'expected' && prop.accessMode === 'ReadOnly') throw new TwinRequestError(READ_ONLY, 400, `property "${key}" is ReadOnly: its expected value cannot be set from the edge`)
        const value = parseType(prop, raw)
        let outOfRange = false
        try { checkRange(prop, value) } catch (err) {
          if (side === 'expected') throw err
          outOfRange = true
        }
        change[side] = { value, timestamp, raw, ...(outOfRange ? { outOfRange } : {}) }
      }
      plan.changes.set(key, change)
      continue
    }
    if (!allowExtra) throw new TwinRequestError(UNKNOWN_PROPERTY, 404, `unknown property "${key}"`)
    const metaType = (e.metadata as { type?: unknown } | undefined)?.type
    const type = typeof metaType === 'string' && metaType !== '' ? metaType : (extra?.type ?? 'string')
    const next: ExtraTwin = { ...(extra ?? {}), type }
    for (const [side, raw, timestamp] of sides) {
      validateKubeValue(type, raw)
      next[side] = { value: raw, timestamp }
    }
    if (extra === undefined || sides.length > 0 || type !== extra.type) plan.extras.set(key, next)
  }
  return plan
}
