/**
 * A device's twin at the edge (DESIGN.md §8) and the pure functions over it:
 * the effective expected value, the KubeEdge wire form, delta and document.
 *
 * Conflict rules (README "Device twins"):
 *  - expected/desired: the cloud is authoritative. An expected value set by a
 *    mapper at the edge is kept as `localExpected` with the snapshot revision
 *    it was made against (`baseRevision`) until a snapshot settles it: the
 *    snapshot carries the same value (the cloud accepted it) or a desired
 *    revision newer than `baseRevision` (the cloud decided otherwise; cloud
 *    wins). Unlike KubeEdge's `{cloud, edge}` counters, a local bump never
 *    blocks a later cloud update.
 *  - actual/reported: the edge is authoritative; every change goes upstream
 *    with a per-device `edgeSeq`.
 */
import type { DeviceSnapshot, ReportedValue } from '../protocol.js'
import type { PropertySpec, TwinValue } from '../model.js'
import { wireValue, type WireTwin } from './twin-payload.js'

/** `raw`: the string a mapper sent ("23.500000"), echoed verbatim in compat mode (issue 14 item 8). */
export interface LocalExpected { value: TwinValue, timestamp: number, baseRevision: number, raw?: string }

/** A reported value at the edge: `raw` as sent, `outOfRange` when it broke the model's min/max (stored, flagged). */
export interface EdgeReported extends ReportedValue { raw?: string, outOfRange?: boolean }

/**
 * A twin the model does not declare, added by a mapper in compat mode
 * (KubeEdge adds any key as an optional twin). Values are kept as strings,
 * typed by `type` (KubeEdge's `metadata.type`); edge-local, not sent upstream.
 */
export interface ExtraTwin {
  type: string
  actual?: { value: string, timestamp: number }
  expected?: { value: string, timestamp: number }
}

export interface TwinRecord {
  namespace: string
  name: string
  snapshot: DeviceSnapshot
  reported: Record<string, EdgeReported>
  localExpected: Record<string, LocalExpected>
  /** Optional twins added by mappers (compat mode). */
  extras?: Record<string, ExtraTwin>
  /** Last edgeSeq sent upstream for this device. */
  edgeSeq: number
  /** As the mapper sent it (compat: "OK" stays "OK"); `lastOnline` RFC 3339 (KubeEdge `last_online`). */
  state?: { state: string, timestamp: number, lastOnline?: string }
  /** Local expected bumps (wire `expected_version.edge`, informational). */
  edgeVersion: number
  /**
   * false for a record created from a snapshot at this edge: its first report
   * goes up as `full`, which re-baselines the cloud's edgeSeq for the device
   * (after a wiped device store the edge's counters restart at 0 and would
   * otherwise look stale to the cloud). Absent = baselined.
   */
  baselined?: boolean
}

export function newRecord (snapshot: DeviceSnapshot): TwinRecord {
  return { namespace: snapshot.device.namespace, name: snapshot.device.name, snapshot, reported: {}, localExpected: {}, edgeSeq: 0, edgeVersion: 0, baselined: false }
}

/** Per model property list (records share their snapshot's): built once, not per update and answer (issue 16). */
const propertyMaps = new WeakMap<readonly PropertySpec[], Map<string, PropertySpec>>()

/** Name → spec of the record's model. The map is shared: callers must not change it. */
export function propertyMap (rec: TwinRecord): ReadonlyMap<string, PropertySpec> {
  const props = rec.snapshot.model.properties
  let m = propertyMaps.get(props)
  if (m === undefined) { m = new Map(props.map(p => [p.name, p])); propertyMaps.set(props, m) }
  return m
}

/** Expected value in force: a pending local one, else the cloud's desired. */
export function effectiveExpected (rec: TwinRecord, name: string): { value: TwinValue, timestamp: number, raw?: string } | undefined {
  const local = rec.localExpected[name]
  if (local !== undefined) { // raw set, not spread in (issue 16: slow on Node 20); called per update by delta()
    const out: { value: TwinValue, timestamp: number, raw?: string } = { value: local.value, timestamp: local.timestamp }
    if (local.raw !== undefined) out.raw = local.raw
    return out
  }
  const d = rec.snapshot.desired[name]
  return d === undefined ? undefined : { value: d.value, timestamp: d.timestamp }
}

/** `versions: false` leaves out expected_version/actual_version, as KubeEdge does towards mappers. */
export function wireTwin (rec: TwinRecord, prop: PropertySpec, versions = true): WireTwin {
  const exp = effectiveExpected(rec, prop.name)
  const act = rec.reported[prop.name]
  const w: WireTwin = { optional: false, metadata: { type: prop.type } }
  if (exp !== undefined) {
    w.expected = wireValue(exp)
    if (versions) w.expected_version = { cloud: rec.snapshot.desired[prop.name]?.revision ?? 0, edge: rec.edgeVersion }
  }
  if (act !== undefined) {
    w.actual = wireValue(act)
    if (versions) w.actual_version = { cloud: rec.snapshot.revision, edge: rec.edgeSeq }
  }
  return w
}

export function wireExtra (x: ExtraTwin): WireTwin {
  const w: WireTwin = { optional: true, metadata: { type: x.type } }
  if (x.expected !== undefined) w.expected = { value: x.expected.value, metadata: { timestamp: x.expected.timestamp } }
  if (x.actual !== undefined) w.actual = { value: x.actual.value, metadata: { timestamp: x.actual.timestamp } }
  return w
}

export function wireTwins (rec: TwinRecord, names?: Iterable<string>, versions = true): Record<string, WireTwin> {
  const props = propertyMap(rec)
  const out: Record<string, WireTwin> = {}
  for (const name of names ?? [...props.keys(), ...Object.keys(rec.extras ?? {})]) {
    const p = props.get(name)
    if (p !== undefined) out[name] = wireTwin(rec, p, versions)
    else {
      const x = rec.extras?.[name]
      if (x !== undefined) out[name] = wireExtra(x)
    }
  }
  return out
}

/** Properties whose expected differs from actual (or has no actual yet): `delta` map of expected values as strings. */
export function delta (rec: TwinRecord): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of rec.snapshot.model.properties) {
    const exp = effectiveExpected(rec, p.name)
    if (exp === undefined) continue
    const act = rec.reported[p.name]
    if (act === undefined || act.value !== exp.value) out[p.name] = exp.raw ?? String(exp.value)
  }
  // Extra twins compare as strings, as KubeEdge compares every twin.
  for (const [name, x] of Object.entries(rec.extras ?? {})) {
    if (x.expected !== undefined && x.expected.value !== '' && x.expected.value !== x.actual?.value) out[name] = x.expected.value
  }
  return out
}

/** Deep-enough copy for `last` in a document. */
export function cloneRecord (rec: TwinRecord): TwinRecord {
  // No spread after the first property: V8 builds those in the runtime (µs per object on Node 20, issue 16).
  const next: TwinRecord = { ...rec, reported: { ...rec.reported }, localExpected: { ...rec.localExpected } }
  if (rec.extras !== undefined) next.extras = { ...rec.extras }
  return next
}

/** `{last, current}` per changed twin (KubeEdge `…/twin/update/document`). */
export function documentFor (before: TwinRecord | undefined, after: TwinRecord, changed: Iterable<string>, versions = true): Record<string, { last: WireTwin | null, current: WireTwin | null }> {
  const out: Record<string, { last: WireTwin | null, current: WireTwin | null }> = {}
  for (const name of changed) {
    const last = before === undefined ? undefined : wireTwins(before, [name], versions)[name]
    const current = wireTwins(after, [name], versions)[name]
    if (last === undefined && current === undefined) continue
    out[name] = { last: last ?? null, current: current ?? null }
  }
  return out
}

/**
 * Apply a newer cloud snapshot (cloud wins on expected): returns the new
 * record and the properties whose effective expected value changed.
 */
export function mergeSnapshot (rec: TwinRecord | undefined, snap: DeviceSnapshot): { rec: TwinRecord, expectedChanged: string[], attributesChanged: boolean } {
  if (rec === undefined) {
    const r = newRecord(snap)
    return { rec: r, expectedChanged: Object.keys(snap.desired), attributesChanged: Object.keys(snap.device.attributes).length > 0 }
  }
  const next: TwinRecord = { ...cloneRecord(rec), snapshot: snap }
  const known = new Set(snap.model.properties.map(p => p.name))
  for (const [name, local] of Object.entries(rec.localExpected)) {
    const d = snap.desired[name]
    // Settled: the cloud took our value, or the cloud set the property after our base (cloud wins), or it is gone.
    if (!known.has(name) || (d !== undefined && (d.value === local.value || d.revision > local.baseRevision))) delete next.localExpected[name]
  }
  for (const name of Object.keys(next.reported)) if (!known.has(name)) delete next.reported[name]
  // An extra twin the model now declares becomes a model property.
  if (next.extras !== undefined) for (const name of Object.keys(next.extras)) if (known.has(name)) delete next.extras[name]
  const expectedChanged: string[] = []
  for (const p of snap.model.properties) {
    const a = effectiveExpected(rec, p.name)
    const b = effectiveExpected(next, p.name)
    if (a?.value !== b?.value) expectedChanged.push(p.name)
  }
  const attributesChanged = JSON.stringify(rec.snapshot.device.attributes) !== JSON.stringify(snap.device.attributes)
  return { rec: next, expectedChanged, attributesChanged }
}
