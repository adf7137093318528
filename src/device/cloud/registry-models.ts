/**
 * Device model operations of the registry (README "Cloud device API"):
 * create/replace and delete. Called by DeviceRegistry with its context
 * (registry-context.ts); each is one transaction.
 */
import { DeviceModelInUseError, DeviceModelNotFoundError } from '../errors.js'
import type { DeviceModel } from '../model.js'
import type { RegistryContext } from './registry-context.js'
import { nextRevision, nodeOf, reconcileDesired, saveDevice } from './registry-records.js'
import type { StoredDevice } from './registry-types.js'
import { validateModel } from './registry-validate.js'

/**
 * Create or replace a model. Devices using it get desired values re-checked
 * against it (values that no longer fit are dropped, new defaults added), a
 * new revision and a snapshot. An identical model is a no-op.
 */
export async function upsertModel (ctx: RegistryContext, input: DeviceModel): Promise<{ model: DeviceModel, revision: number, devices: number }> {
  const model = validateModel(input)
  const id = `${model.namespace}/${model.name}`
  const r = await ctx.mutate((tx, m) => {
    const cur = tx.get<DeviceModel>('models', id)
    if (cur !== undefined && JSON.stringify(cur) === JSON.stringify(model)) return { rev: tx.get<number>('meta', 'revision') ?? 0, devices: 0 }
    const rev = nextRevision(tx)
    const users = tx.entries<StoredDevice>('devices').filter(e => e.value.spec.model === id)
    tx.put('models', id, model)
    m.changes.push({ type: 'model-upserted', namespace: model.namespace, name: model.name, revision: rev, at: m.now })
    for (const { value: d } of users) {
      const next: StoredDevice = { ...d, desired: reconcileDesired(d.desired, model, rev, m.now).desired, revision: rev, updatedAt: m.now }
      saveDevice(tx, next, model, m.keys)
      m.changes.push({ type: 'device-upserted', namespace: d.spec.namespace, name: d.spec.name, revision: rev, at: m.now, ...nodeOf(d.spec), detail: { reason: 'model-changed' } })
    }
    return { rev, devices: users.length }
  })
  return { model, revision: r.rev, devices: r.devices }
}

/** Delete a model; refused (DeviceModelInUseError) while devices use it. */
export async function deleteModel (ctx: RegistryContext, namespace: string, name: string): Promise<void> {
  const id = `${namespace}/${name}`
  await ctx.mutate((tx, m) => {
    if (tx.get('models', id) === undefined) throw new DeviceModelNotFoundError(id)
    const users = tx.entries<StoredDevice>('devices').filter(e => e.value.spec.model === id).map(e => String(e.key))
    if (users.length > 0) throw new DeviceModelInUseError(id, users)
    const revision = nextRevision(tx)
    tx.remove('models', id)
    m.changes.push({ type: 'model-deleted', namespace, name, revision, at: m.now })
  })
}
