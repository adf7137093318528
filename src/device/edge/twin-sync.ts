/**
 * Cloud → edge device sync (DESIGN.md §5, §8; contract in protocol.ts):
 * snapshots, removals, mapper grants and resync requests arriving on the
 * reliable lane in group `$device`. `deliver()` is awaited by the edge's
 * receiver before it commits and acks, so a snapshot is durable in the twin
 * store before the cloud considers it delivered; a throw makes the lane
 * reject (and the cloud resend) the message.
 */
import type { Envelope } from '../../codec/envelope.js'
import { EdgeFabricError } from '../../errors.js'
import type { CredentialIndex } from './acl.js'
import type { Authenticator } from './auth.js'
import type { DeviceRemoved, DeviceSnapshot, MapperGrant, ResyncRequest, TwinReport } from '../protocol.js'
import { isSafeLevel, membershipTopic } from './topics.js'
import { attributeChanges, membershipDevice } from './twin-answers.js'
import { twinResource } from '../protocol.js'
import { mergeSnapshot, type TwinRecord } from './twin-state.js'
import type { TwinEngine } from './twin-engine.js'

export class InvalidDeviceMessageError extends EdgeFabricError {
  static readonly code = 'EF_DEVICE_BAD_MESSAGE'
  constructor (message: string) { super(InvalidDeviceMessageError.code, message) }
}

function checkSnapshot (s: DeviceSnapshot): void {
  const dev = s?.device
  if (dev === undefined || typeof dev.namespace !== 'string' || typeof dev.name !== 'string' || !isSafeLevel(dev.namespace) || !isSafeLevel(dev.name)) {
    throw new InvalidDeviceMessageError('snapshot without a valid device namespace/name')
  }
  if (!Array.isArray(s.model?.properties) || typeof s.revision !== 'number' || s.desired === null || typeof s.desired !== 'object') {
    throw new InvalidDeviceMessageError(`snapshot of ${dev.namespace}/${dev.name} lacks model.properties, desired or revision`)
  }
}

export class TwinSync {
  /** Called with usernames whose credential was revoked, rotated or narrowed: their live sessions are cut. */
  onRevoked: (usernames: string[]) => void = () => {}

  constructor (readonly engine: TwinEngine, readonly credentials: CredentialIndex, readonly auth: Authenticator) {}

  /** Load credentials of everything persisted (edge restart: devices authenticate offline). */
  restore (): void {
    const store = this.engine.deps.store
    for (const r of store.list()) this.credentials.setDevice(`${r.namespace}/${r.name}`, r.snapshot.credentials ?? [])
    for (const g of store.grants()) this.credentials.setGrant(g.name, g)
  }

  async deliver (env: Envelope): Promise<void> {
    const res = env.router.resource
    const op = env.router.operation
    if (res.startsWith('device/')) {
      if (op === 'delete') await this.#remove(env.content as DeviceRemoved)
      else await this.#snapshot(env.content as DeviceSnapshot)
    } else if (res.startsWith('mapper/')) {
      const g = env.content as MapperGrant
      if (typeof g?.name !== 'string' || typeof g.username !== 'string') throw new InvalidDeviceMessageError('mapper grant without name/username')
      const store = this.engine.deps.store
      const old = store.grant(g.name)
      if (old !== undefined) this.onRevoked([old.username]) // re-grant rotates the secret / changes the device set
      if (op === 'delete') {
        await store.removeGrant(g.name)
        this.credentials.removeGrant(g.name)
      } else {
        if (!Array.isArray(g.devices) || typeof g.passwordHash !== 'string') throw new InvalidDeviceMessageError('mapper grant without devices/passwordHash')
        await store.putGrant(g)
        this.credentials.setGrant(g.name, g)
      }
    } else if (res.startsWith('device-resync/')) {
      await this.resync(env.content as ResyncRequest)
    }
  }

  async #snapshot (snap: DeviceSnapshot): Promise<void> {
    checkSnapshot(snap)
    const e = this.engine
    const d = e.deps
    const id = `${snap.device.namespace}/${snap.device.name}`
    await e.exclusive(id, async () => {
      const old = d.store.get(id)
      if (old !== undefined && old.snapshot.revision >= snap.revision) return // older or same snapshot: nothing new
      const { rec, expectedChanged, attributesChanged } = mergeSnapshot(old, snap)
      // The twin store shows `rec` (its revision) as soon as put() is called and resolves on the
      // commit (twin-store.ts coalesces writes per turn). The credentials must change no later than
      // the revision becomes visible: a device told "your twin is at the edge" logged in before the
      // commit and was refused with the old (or no) credentials (demo.test.ts under load). They come
      // from the cloud's snapshot, which stays authoritative if the local write fails.
      const stored = d.store.put(rec)
      const creds = Array.isArray(snap.credentials) ? snap.credentials : []
      this.credentials.setDevice(id, creds)
      const gone = (old?.snapshot.credentials ?? []).filter(c => !creds.some(n => n.username === c.username && n.passwordHash === c.passwordHash))
      if (gone.length > 0) this.onRevoked(gone.map(c => c.username))
      await stored
      const now = d.clock.now()
      const event = `cloud-${snap.revision}`
      if (old === undefined) {
        d.publish(membershipTopic(d.nodeId, 'updated'), { event_id: event, timestamp: now, added_devices: [e.compat ? membershipDevice(rec, true) : deviceInfo(rec)], removed_devices: [] })
      }
      if (attributesChanged) {
        let attributes: Record<string, unknown> = {}
        if (e.compat) attributes = attributeChanges(old?.snapshot.device.attributes, snap.device.attributes)
        else for (const [k, v] of Object.entries(snap.device.attributes)) attributes[k] = { value: v, optional: false, metadata: { type: 'string', timestamp: now } }
        e.publishDevice(rec, 'updated', { event_id: event, timestamp: now, attributes })
      }
      if (expectedChanged.length > 0) {
        d.metrics.twinUpdates.inc({ source: 'cloud' })
        // "desired set at the cloud reaches the mapper as a delta" (issue 5)
        e.publishChanges(old, rec, expectedChanged, event, true)
      }
    })
  }

  async #remove (r: DeviceRemoved): Promise<void> {
    if (typeof r?.namespace !== 'string' || typeof r.name !== 'string') throw new InvalidDeviceMessageError('removal without namespace/name')
    const e = this.engine
    const d = e.deps
    const id = `${r.namespace}/${r.name}`
    await e.exclusive(id, async () => {
      const old = d.store.get(id)
      if (old === undefined) return
      await d.store.remove(id)
      this.credentials.removeDevice(id)
      this.onRevoked((old.snapshot.credentials ?? []).map(c => c.username))
      d.publish(membershipTopic(d.nodeId, 'updated'), { event_id: `cloud-${r.revision}`, timestamp: d.clock.now(), added_devices: [], removed_devices: [e.compat ? membershipDevice(old, false) : deviceInfo(old)] })
    })
  }

  /** Answer a ResyncRequest: a full report per device (Azure IoT Edge style full twin resync). */
  async resync (req: ResyncRequest): Promise<void> {
    const e = this.engine
    const d = e.deps
    d.metrics.resyncs.inc({ direction: 'down' })
    const wanted = Array.isArray(req?.devices) ? req.devices.map(x => `${x.namespace}/${x.name}`) : d.store.list().map(r => `${r.namespace}/${r.name}`)
    for (const id of wanted) {
      await e.exclusive(id, async () => {
        const rec = d.store.get(id)
        if (rec === undefined) return
        const next: TwinRecord = { ...rec, edgeSeq: rec.edgeSeq + 1, baselined: true }
        const report: TwinReport = { namespace: rec.namespace, name: rec.name, edgeSeq: next.edgeSeq, reported: { ...rec.reported }, baseRevision: rec.snapshot.revision, full: true }
        const local = Object.entries(rec.localExpected)
        if (local.length > 0) report.expected = Object.fromEntries(local.map(([k, v]) => [k, { value: v.value, timestamp: v.timestamp }]))
        await d.store.put(next)
        await d.upstream(e.envelope('report', twinResource(rec.namespace, rec.name), report))
      })
    }
  }
}

function deviceInfo (r: TwinRecord): object {
  return { id: `${r.namespace}/${r.name}`, name: r.name, namespace: r.namespace, state: r.state?.state ?? 'unknown', attributes: r.snapshot.device.attributes }
}
