/**
 * Helpers shared by the registry's transactions (./registry.ts,
 * ./registry-upstream.ts): the revision counter, snapshot building and the
 * cloud → edge messages of protocol.ts.
 */
import { deviceId, type DeviceModel, type DeviceSpec } from '../model.js'
import { DeviceModelNotFoundError, DeviceNotFoundError } from '../errors.js'
import { deviceResource, mapperResource, resyncResource, type DesiredValue, type DeviceRemoved, type DeviceSnapshot, type MapperGrant, type ResyncRequest } from '../protocol.js'
import { Dispatcher } from './registry-dispatch.js'
import type { KvTxn } from './registry-store.js'
import type { DeviceView, StoredDevice, StoredMapper } from './registry-types.js'
import { checkValue } from './registry-validate.js'

/**
 * Next value of the registry-wide revision counter. Global (as a Kubernetes
 * resourceVersion), so a device that is deleted and created again, or bound
 * back to a node it left, always gets a higher version than anything that
 * node stored for it: the edge's stale check (DESIGN.md §5) never drops it.
 */
export function nextRevision (tx: KvTxn): number {
  const r = (tx.get<number>('meta', 'revision') ?? 0) + 1
  tx.put('meta', 'revision', r)
  return r
}

export function snapshotOf (d: StoredDevice, model: DeviceModel): DeviceSnapshot {
  return {
    device: structuredClone(d.spec),
    model: structuredClone(model),
    desired: structuredClone(d.desired),
    revision: d.revision,
    credentials: d.credentials.map(c => ({ username: c.username, passwordHash: c.passwordHash }))
  }
}

/** A device and its model inside a transaction, or the API's typed not-found errors (checks before writes). */
export function deviceAndModel (tx: KvTxn, id: string): { d: StoredDevice, model: DeviceModel } {
  const d = tx.get<StoredDevice>('devices', id)
  if (d === undefined) throw new DeviceNotFoundError(id)
  const model = tx.get<DeviceModel>('models', d.spec.model)
  if (model === undefined) throw new DeviceModelNotFoundError(d.spec.model)
  return { d, model }
}

/** Write the device record and queue its snapshot to the bound node, in the same transaction. */
export function saveDevice (tx: KvTxn, d: StoredDevice, model: DeviceModel, keys: string[]): void {
  tx.put('devices', deviceId(d.spec), d)
  dispatchSnapshot(tx, d, model, keys)
}

/** Queue the device's current snapshot to its bound node (no-op when unbound). */
export function dispatchSnapshot (tx: KvTxn, d: StoredDevice, model: DeviceModel, keys: string[]): void {
  if (d.spec.nodeId === undefined) return
  keys.push(Dispatcher.put(tx, {
    nodeId: d.spec.nodeId,
    resource: deviceResource(d.spec.namespace, d.spec.name),
    operation: 'update',
    version: String(d.revision),
    content: snapshotOf(d, model)
  }))
}

export function dispatchRemoval (tx: KvTxn, nodeId: string, spec: DeviceSpec, revision: number, reason: DeviceRemoved['reason'], keys: string[]): void {
  const content: DeviceRemoved = { namespace: spec.namespace, name: spec.name, revision, reason }
  keys.push(Dispatcher.put(tx, { nodeId, resource: deviceResource(spec.namespace, spec.name), operation: 'delete', version: String(revision), content }))
}

export function grantOf (m: StoredMapper): MapperGrant {
  return { nodeId: m.nodeId, name: m.name, username: m.username, passwordHash: m.passwordHash, devices: [...m.devices], revision: m.revision }
}

export function dispatchGrant (tx: KvTxn, m: StoredMapper, operation: 'update' | 'delete', keys: string[]): void {
  const content = operation === 'update' ? grantOf(m) : { ...grantOf(m), passwordHash: '', devices: [] }
  keys.push(Dispatcher.put(tx, { nodeId: m.nodeId, resource: mapperResource(m.nodeId, m.name), operation, version: String(m.revision), content }))
}

/**
 * Ask `nodeId` for full reports of every device bound to it with a resync
 * outstanding. The message is unversioned and one per node, so a newer
 * request replaces a pending one: it therefore always lists ALL outstanding
 * devices, never only the newest gap.
 */
export function dispatchResyncRequest (tx: KvTxn, nodeId: string, candidates: Iterable<string>, keys: string[]): number {
  const devices: Array<{ namespace: string, name: string }> = []
  for (const id of new Set(candidates)) {
    const d = tx.get<StoredDevice>('devices', id)
    if (d?.resyncPending === true && d.spec.nodeId === nodeId) devices.push({ namespace: d.spec.namespace, name: d.spec.name })
  }
  if (devices.length === 0) return 0
  const content: ResyncRequest = { nodeId, devices }
  keys.push(Dispatcher.put(tx, { nodeId, resource: resyncResource(nodeId), operation: 'query', version: null, content }))
  return devices.length
}

/**
 * Desired values that still fit `model` (a model change may drop or retype a
 * property), plus defaults of ReadWrite properties that have none yet.
 */
export function reconcileDesired (desired: Record<string, DesiredValue>, model: DeviceModel, revision: number, now: number): { desired: Record<string, DesiredValue>, changed: boolean } {
  const out: Record<string, DesiredValue> = {}
  let changed = false
  for (const p of model.properties) {
    const cur = desired[p.name]
    if (p.accessMode === 'ReadWrite' && cur !== undefined) {
      try {
        checkValue(p, cur.value)
        out[p.name] = cur
        continue
      } catch { changed = true }
    }
    if (p.accessMode === 'ReadWrite' && p.default !== undefined) {
      out[p.name] = { value: p.default, revision, timestamp: now }
      changed = true
    }
  }
  for (const k of Object.keys(desired)) if (!(k in out)) changed = true
  return { desired: out, changed }
}

export function viewOf (d: StoredDevice): DeviceView {
  return {
    spec: d.spec,
    revision: d.revision,
    desired: d.desired,
    reported: d.reported,
    state: d.state,
    stateAt: d.stateAt ?? undefined,
    lastSeen: d.lastSeen ?? undefined,
    nodeId: d.spec.nodeId,
    syncedRevision: d.syncedRevision,
    resyncPending: d.resyncPending,
    credentials: d.credentials.map(c => ({ username: c.username, issuedAt: c.issuedAt })),
    createdAt: d.createdAt,
    updatedAt: d.updatedAt
  }
}

/** `{ nodeId }` of a bound device, `{}` for an unbound one (DeviceChange.nodeId is optional). */
export function nodeOf (spec: DeviceSpec): { nodeId?: string } {
  return spec.nodeId === undefined ? {} : { nodeId: spec.nodeId }
}

export { deviceId }
