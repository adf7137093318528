/**
 * Device state reports and the device/attribute forms the edge sends to
 * mappers, in both payload modes. KubeEdge references (issue 14 items 1–3):
 *  - dtmanager/device.go dealDeviceStateUpdate: the state is compared
 *    lower-cased against online/offline/ok/unknown/unhealthy and stored as
 *    sent; `last_online` = now in RFC 3339 (seconds) for online/ok, else "";
 *    the answer is dttype.DeviceMsg `{event_id, timestamp, device: {name,
 *    state, lastOnlineTime}}` (DeviceCloudMsg, omitempty);
 *  - dttype.Device / MsgAttr: attributes are `{k: {value, optional,
 *    metadata: {type}}}`; membership `added_devices` carry the twin without
 *    versions (MarshalMembershipUpdate); dtmanager DealMsgAttr signals a
 *    removed attribute as `"k": null` on `…/updated`.
 */
import { DEVICE_STATES } from '../model.js'
import { stateResource, type StateReport } from '../protocol.js'
import { BAD_REQUEST, TwinRequestError } from './twin-payload.js'
import { wireTwins, type TwinRecord } from './twin-state.js'
import type { TwinEngine } from './twin-engine.js'

/** RFC 3339 in UTC without fractional seconds, as Go's time.RFC3339 formats `time.Now().UTC()`. */
export function rfc3339 (ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export async function stateUpdate (engine: TwinEngine, rec: TwinRecord, state: unknown, event: string): Promise<Record<string, unknown>> {
  const d = engine.deps
  const now = d.clock.now()
  const compat = engine.compat
  const lower = typeof state === 'string' ? state.toLowerCase() : undefined
  const canonical = DEVICE_STATES.find(s => s === (compat ? lower : state))
  if (canonical === undefined || typeof state !== 'string') {
    // KubeEdge drops unknown states silently; we answer 400 and count (mappers-go's "ERROR" and "DISCONNECTED" are accepted, see DEVICE_STATES).
    throw new TwinRequestError(BAD_REQUEST, 400, `"state" must be one of ${DEVICE_STATES.join(', ')}${compat ? ' (any case)' : ''}`)
  }
  const lastOnline = canonical === 'online' || canonical === 'ok' ? rfc3339(now) : (compat ? '' : rec.state?.lastOnline)
  const next: TwinRecord = { ...rec, state: { state, timestamp: now, ...(lastOnline !== undefined ? { lastOnline } : {}) } }
  await d.store.put(next)
  const report: StateReport = { namespace: rec.namespace, name: rec.name, state: canonical, timestamp: now, ...(state !== canonical ? { reportedAs: state } : {}) }
  await d.upstream(engine.envelope('state', stateResource(rec.namespace, rec.name), report))
  if (!compat) return { event_id: event, timestamp: now, device: { name: rec.name, state, last_online: new Date(now).toISOString() } }
  const device: Record<string, string> = { name: rec.name, state }
  if (lastOnline !== undefined && lastOnline !== '') device.lastOnlineTime = lastOnline
  return { event_id: event, timestamp: now, device }
}

/** KubeEdge MsgAttr form of one attribute (edgefabric attributes are strings). */
export function wireAttribute (value: string): { value: string, optional: boolean, metadata: { type: string } } {
  return { value, optional: false, metadata: { type: 'string' } }
}

/** A dttype.Device for membership answers (compat): attributes as MsgAttr, twin without versions. */
export function membershipDevice (r: TwinRecord, withTwin: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { id: `${r.namespace}/${r.name}`, name: r.name, namespace: r.namespace, state: r.state?.state ?? 'unknown' }
  if (r.state?.lastOnline !== undefined && r.state.lastOnline !== '') out.last_online = r.state.lastOnline
  out.attributes = Object.fromEntries(Object.entries(r.snapshot.device.attributes).map(([k, v]) => [k, wireAttribute(v)]))
  if (withTwin) out.twin = wireTwins(r, undefined, false)
  return out
}

/** `…/updated` attributes between two snapshots: changed or added as MsgAttr, removed as null. */
export function attributeChanges (before: Record<string, string> | undefined, after: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(after)) if (before?.[k] !== v) out[k] = wireAttribute(v)
  for (const k of Object.keys(before ?? {})) if (!(k in after)) out[k] = null
  return out
}
