/**
 * Device operations of the registry (README "Cloud device API"): create or
 * update (including re-binding to another node), list, delete and set
 * desired values. Called by DeviceRegistry with its context
 * (registry-context.ts); each mutation is one transaction.
 */
import { DeviceModelNotFoundError, DeviceNotFoundError } from '../errors.js'
import { deviceId, type DeviceModel, type DeviceSpec, type TwinValue } from '../model.js'
import type { RegistryContext } from './registry-context.js'
import { deviceAndModel, dispatchRemoval, nextRevision, nodeOf, reconcileDesired, saveDevice, viewOf } from './registry-records.js'
import type { DeviceView, ListDevicesFilter, StoredDevice } from './registry-types.js'
import { checkDesired, checkLabels, validateDeviceSpec } from './registry-validate.js'
import { checkDmiAgainstModel } from './registry-validate-dmi.js'

/**
 * Create or update a device. Unchanged specs are a no-op (same revision).
 * A changed node binding sends a removal (reason 'rebound') to the old node
 * and a snapshot to the new one; the edge sequence and synced revision
 * start over for the new node.
 */
export async function upsertDevice (ctx: RegistryContext, input: DeviceSpec): Promise<DeviceView> {
  const spec = validateDeviceSpec(input)
  const id = deviceId(spec)
  const d = await ctx.mutate((tx, m) => {
    const model = tx.get<DeviceModel>('models', spec.model)
    if (model === undefined) throw new DeviceModelNotFoundError(spec.model)
    checkDmiAgainstModel(spec, model)
    const old = tx.get<StoredDevice>('devices', id)
    if (old !== undefined && sameSpec(old.spec, spec)) return old
    const rev = nextRevision(tx)
    const rebound = old?.spec.nodeId !== undefined && old.spec.nodeId !== spec.nodeId ? old.spec.nodeId : undefined
    const sameNode = old !== undefined && old.spec.nodeId === spec.nodeId
    const next: StoredDevice = {
      spec,
      revision: rev,
      desired: reconcileDesired(old?.desired ?? {}, model, rev, m.now).desired,
      reported: old?.reported ?? {},
      state: old?.state ?? 'unknown',
      stateAt: old?.stateAt ?? null,
      lastSeen: old?.lastSeen ?? null,
      lastEdgeSeq: sameNode ? old.lastEdgeSeq : 0,
      syncedRevision: sameNode ? old.syncedRevision : 0,
      resyncPending: sameNode ? old.resyncPending : false,
      credentials: old?.credentials ?? [],
      createdAt: old?.createdAt ?? m.now,
      updatedAt: m.now
    }
    if (rebound !== undefined) dispatchRemoval(tx, rebound, spec, rev, 'rebound', m.keys)
    saveDevice(tx, next, model, m.keys)
    m.index(id, spec.nodeId)
    m.changes.push({ type: 'device-upserted', namespace: spec.namespace, name: spec.name, revision: rev, at: m.now, ...nodeOf(spec), detail: rebound === undefined ? {} : { reboundFrom: rebound } })
    return next
  })
  return viewOf(d)
}

export function listDevices (ctx: RegistryContext, filter: ListDevicesFilter): DeviceView[] {
  const labels = filter.labels === undefined ? undefined : checkLabels(filter.labels, 'labels selector')
  let list: StoredDevice[]
  if (filter.nodeId !== undefined) {
    list = [...ctx.devicesOf(filter.nodeId) ?? []].sort().flatMap(id => { const d = ctx.kv.get<StoredDevice>('devices', id); return d === undefined ? [] : [d] })
  } else {
    list = ctx.kv.entries<StoredDevice>('devices', filter.namespace === undefined ? undefined : `${filter.namespace}/`).map(e => e.value)
  }
  const limit = filter.limit === undefined ? Infinity : Math.max(1, Math.floor(filter.limit))
  const out: DeviceView[] = []
  for (const d of list) {
    if (out.length >= limit) break
    if (filter.after !== undefined && deviceId(d.spec) <= filter.after) continue
    if (match(d)) out.push(viewOf(d))
  }
  return out
  function match (d: StoredDevice): boolean {
    return (filter.namespace === undefined || d.spec.namespace === filter.namespace) &&
      (filter.nodeId === undefined || d.spec.nodeId === filter.nodeId) &&
      (filter.model === undefined || d.spec.model === filter.model) &&
      (labels === undefined || Object.entries(labels).every(([k, v]) => d.spec.labels[k] === v))
  }
}

/** Delete a device; a bound node gets a removal (reason 'deleted'). */
export async function deleteDevice (ctx: RegistryContext, namespace: string, name: string): Promise<void> {
  const id = `${namespace}/${name}`
  await ctx.mutate((tx, m) => {
    const d = tx.get<StoredDevice>('devices', id)
    if (d === undefined) throw new DeviceNotFoundError(id)
    const revision = nextRevision(tx)
    if (d.spec.nodeId !== undefined) dispatchRemoval(tx, d.spec.nodeId, d.spec, revision, 'deleted', m.keys)
    tx.remove('devices', id)
    m.index(id, undefined)
    m.changes.push({ type: 'device-deleted', namespace, name, revision, at: m.now, ...nodeOf(d.spec) })
  })
}

/**
 * Set desired values (KubeEdge "expected"). Unknown properties, ReadOnly
 * properties, wrong types and out-of-range values are refused with typed
 * errors; nothing is applied unless every value is valid.
 */
export async function setDesired (ctx: RegistryContext, namespace: string, name: string, values: Record<string, TwinValue>): Promise<DeviceView> {
  const id = `${namespace}/${name}`
  const next = await ctx.mutate((tx, m) => {
    const { d, model } = deviceAndModel(tx, id)
    const checked = checkDesired(model, values)
    const rev = nextRevision(tx)
    const desired = { ...d.desired }
    for (const [k, v] of Object.entries(checked)) desired[k] = { value: v, revision: rev, timestamp: m.now }
    const n: StoredDevice = { ...d, desired, revision: rev, updatedAt: m.now }
    saveDevice(tx, n, model, m.keys)
    const changed = Object.fromEntries(Object.keys(checked).map(k => [k, desired[k]]))
    m.changes.push({ type: 'desired', namespace, name, revision: rev, at: m.now, ...nodeOf(n.spec), detail: { desired: changed, source: 'cloud' } })
    return n
  })
  return viewOf(next)
}

function sameSpec (a: DeviceSpec, b: DeviceSpec): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b))
}

function canonical (s: DeviceSpec): unknown {
  const sortObj = (o: Record<string, string>): Array<[string, string]> => Object.entries(o).sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0)
  // DMI settings (issue 14) compare as JSON: validation builds them in a fixed key order.
  return [s.namespace, s.name, s.model, sortObj(s.labels), sortObj(s.attributes), s.nodeId ?? null,
    s.protocol ?? null, s.properties ?? null, s.methods ?? null, s.stateReport ?? null]
}
