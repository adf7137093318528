/**
 * Credential operations of the registry (README "Cloud device API",
 * DESIGN.md §9): per-device MQTT credentials and mapper grants. Only scrypt
 * hashes are stored and sent to the edge (in the device snapshot or the
 * MapperGrant), so devices authenticate while the edge is offline. Called by
 * DeviceRegistry with its context (registry-context.ts).
 */
import { hashSecret, newSecret } from '../credentials.js'
import { DeviceNotFoundError, InvalidDeviceSpecError, MapperNotFoundError } from '../errors.js'
import type { RegistryContext } from './registry-context.js'
import { deviceAndModel, dispatchGrant, nextRevision, nodeOf, saveDevice, viewOf } from './registry-records.js'
import type { DeviceView, StoredDevice, StoredMapper } from './registry-types.js'
import { checkDeviceName, isDnsLabel, isNodeName } from './registry-validate.js'

/** Largest device list of one mapper grant (and of one edge's resync request). */
export const MAX_MAPPER_DEVICES = 10_000

/**
 * Issue (or rotate) the device's MQTT credential. The password is returned
 * once; only its scrypt hash is stored and sent to the edge in the snapshot.
 * Username = device id `{namespace}/{name}`. Rotation replaces the old one.
 */
export async function issueCredential (ctx: RegistryContext, namespace: string, name: string): Promise<{ username: string, password: string }> {
  checkDeviceName(namespace, name)
  const password = newSecret()
  const passwordHash = await hashSecret(password)
  const username = `${namespace}/${name}`
  await setCredentials(ctx, namespace, name, [{ username, passwordHash, issuedAt: ctx.clock.now() }], 'issued')
  return { username, password }
}

/** Replace the device's credentials (`[]` revokes); a new revision and snapshot carry them to the edge. */
export async function setCredentials (ctx: RegistryContext, namespace: string, name: string, credentials: StoredDevice['credentials'], action: 'issued' | 'revoked'): Promise<DeviceView> {
  const id = `${namespace}/${name}`
  const next = await ctx.mutate((tx, m) => {
    const { d, model } = deviceAndModel(tx, id)
    const n: StoredDevice = { ...d, credentials, revision: nextRevision(tx), updatedAt: m.now }
    saveDevice(tx, n, model, m.keys)
    m.changes.push({ type: 'credentials', namespace, name, revision: n.revision, at: m.now, ...nodeOf(n.spec), detail: { action } })
    return n
  })
  return viewOf(next)
}

/**
 * Grant a mapper on `nodeId` the right to act for `deviceIds` (each bound to
 * that node). Returns the password once; re-granting rotates it. Username =
 * `mapper/{nodeId}/{name}`.
 */
export async function grantMapper (ctx: RegistryContext, nodeId: string, name: string, deviceIds: string[]): Promise<{ username: string, password: string }> {
  if (!isNodeName(nodeId)) throw new InvalidDeviceSpecError('nodeId', 'must be a node name')
  if (!isDnsLabel(name)) throw new InvalidDeviceSpecError('name', 'mapper names must be DNS-1123 labels')
  if (!Array.isArray(deviceIds) || deviceIds.length > MAX_MAPPER_DEVICES) throw new InvalidDeviceSpecError('devices', `must be an array of at most ${MAX_MAPPER_DEVICES} device ids`)
  const devices = [...new Set(deviceIds)].sort()
  for (const id of devices) if (typeof id !== 'string' || !/^[^/]+\/[^/]+$/.test(id)) throw new InvalidDeviceSpecError('devices', `${JSON.stringify(id)} is not a device id "{namespace}/{name}"`)
  const password = newSecret()
  const passwordHash = await hashSecret(password)
  const username = `mapper/${nodeId}/${name}`
  await ctx.mutate((tx, m) => {
    for (const id of devices) {
      const d = tx.get<StoredDevice>('devices', id)
      if (d === undefined) throw new DeviceNotFoundError(id)
      if (d.spec.nodeId !== nodeId) throw new InvalidDeviceSpecError('devices', `device ${id} is not bound to node ${nodeId}`)
    }
    const grant: StoredMapper = { nodeId, name, username, passwordHash, devices, revision: nextRevision(tx), issuedAt: m.now }
    tx.put('mappers', `${nodeId}/${name}`, grant)
    dispatchGrant(tx, grant, 'update', m.keys)
    m.changes.push({ type: 'mapper', namespace: nodeId, name, nodeId, revision: grant.revision, at: m.now, detail: { action: 'granted', devices } })
  })
  return { username, password }
}

export async function revokeMapper (ctx: RegistryContext, nodeId: string, name: string): Promise<void> {
  const id = `${nodeId}/${name}`
  await ctx.mutate((tx, m) => {
    const cur = tx.get<StoredMapper>('mappers', id)
    if (cur === undefined) throw new MapperNotFoundError(id)
    const revision = nextRevision(tx)
    tx.remove('mappers', id)
    dispatchGrant(tx, { ...cur, revision }, 'delete', m.keys)
    m.changes.push({ type: 'mapper', namespace: nodeId, name, nodeId, revision, at: m.now, detail: { action: 'revoked' } })
  })
}

/** Mapper grants (without password hashes). */
export function listMappers (ctx: RegistryContext, nodeId?: string): Array<Omit<StoredMapper, 'passwordHash'>> {
  return ctx.kv.entries<StoredMapper>('mappers', nodeId === undefined ? undefined : `${nodeId}/`).map(({ value: { passwordHash: _, ...rest } }) => rest)
}
