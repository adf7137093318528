/**
 * The registry's side of the edges (DESIGN.md §8, protocol.ts): upstream
 * `$device` messages from a node (twin and state reports, upload records,
 * the edge's ResyncRequest) and resyncs started by the cloud. The conflict
 * rules themselves live in registry-upstream.ts; this module turns one
 * parsed message into writes inside a registry transaction plus the
 * metrics counted once that transaction committed.
 */
import type { Envelope } from '../../codec/envelope.js'
import { DeviceReportError, InvalidDeviceSpecError } from '../errors.js'
import type { DeviceModel } from '../model.js'
import { DEVICE_GROUP, type StateReport, type TwinReport, type UploadRecord } from '../protocol.js'
import type { Mutation, RegistryContext } from './registry-context.js'
import { MAX_MAPPER_DEVICES } from './registry-credentials.js'
import { dispatchGrant, dispatchResyncRequest, nextRevision, saveDevice } from './registry-records.js'
import type { KvTxn } from './registry-store.js'
import type { StoredDevice, StoredMapper, UploadEntry } from './registry-types.js'
import { applyStateReport, applyTwinReport, parseStateReport, parseTwinReport, parseUpload } from './registry-upstream.js'
import { isNodeName } from './registry-validate.js'

export type UpstreamKind = 'twin' | 'state' | 'upload' | 'resync' | 'unknown'

/** One upstream message, shape-checked (values are checked against the model in the transaction). */
export type Upstream =
  | { kind: 'twin', report: TwinReport }
  | { kind: 'state', report: StateReport }
  | { kind: 'upload', record: UploadRecord }
  | { kind: 'resync', only: Array<{ namespace: string, name: string }> | undefined }

export function upstreamKind (env: Envelope): UpstreamKind {
  const res = env.router.resource
  return res.startsWith('twin/') ? 'twin' : res.startsWith('state/') ? 'state' : res.startsWith('upload/') ? 'upload' : res.startsWith('device-resync/') ? 'resync' : 'unknown'
}

/** Shape check of an upstream envelope; throws DeviceReportError('invalid') for anything malformed. */
export function parseUpstream (env: Envelope): Upstream {
  const op = env.router.operation
  const res = env.router.resource
  if (env.router.group !== DEVICE_GROUP) throw new DeviceReportError('invalid', `not a ${DEVICE_GROUP} message`)
  switch (upstreamKind(env)) {
    case 'twin':
      if (op !== 'report') throw new DeviceReportError('invalid', `twin messages use operation "report", not ${JSON.stringify(op)}`)
      return { kind: 'twin', report: parseTwinReport(env.content) }
    case 'state':
      return { kind: 'state', report: parseStateReport(env.content) }
    case 'upload':
      return { kind: 'upload', record: parseUpload(env.content) }
    case 'resync': {
      const c = env.content as { devices?: unknown } | undefined
      const only = Array.isArray(c?.devices) ? (c.devices as Array<{ namespace: string, name: string }>).filter(d => typeof d?.namespace === 'string' && typeof d?.name === 'string') : undefined
      return { kind: 'resync', only }
    }
    default:
      throw new DeviceReportError('invalid', `unknown device resource ${JSON.stringify(res.slice(0, 100))}`)
  }
}

/**
 * Apply one upstream message from `nodeId` inside a transaction. Throws
 * DeviceReportError (before any write) for a message that names an unknown
 * or foreign device. Returns what to count once the transaction committed.
 */
export function applyUpstream (ctx: RegistryContext, tx: KvTxn, m: Mutation, nodeId: string, u: Upstream): () => void {
  const { metrics } = ctx
  switch (u.kind) {
    case 'twin': {
      const r = applyTwinReport(tx, nodeId, u.report, m.now, ctx.devicesOf(nodeId) ?? [])
      m.changes.push(...r.changes)
      m.keys.push(...r.keys)
      return () => {
        metrics.upstream.inc({ kind: u.kind, result: r.result })
        if (r.accepted.length > 0) metrics.merges.inc({ result: 'accepted' }, r.accepted.length)
        if (r.rejected.length > 0) metrics.merges.inc({ result: 'rejected' }, r.rejected.length)
        if (r.resyncRequested) metrics.resyncs.inc({ direction: 'requested' })
      }
    }
    case 'state': {
      const c = applyStateReport(tx, nodeId, u.report, m.now)
      if (c !== undefined) m.changes.push(c)
      return () => metrics.upstream.inc({ kind: u.kind, result: c === undefined ? 'stale' : 'applied' })
    }
    case 'upload': {
      const evicted = applyUpload(ctx, tx, m, nodeId, u.record)
      return () => {
        if (evicted > 0) metrics.uploadDrops.inc({ reason: 'evicted' }, evicted)
        metrics.upstream.inc({ kind: u.kind, result: 'applied' })
      }
    }
    case 'resync': {
      const requested = resyncTx(ctx, tx, m, nodeId, u.only, false)
      return () => {
        countResync(ctx, requested)
        metrics.upstream.inc({ kind: u.kind, result: 'applied' })
      }
    }
  }
}

/** Count a refused upstream message, log it and emit it as 'error' (it resolves: a poison message must not block the lane). */
export function refuseUpstream (ctx: RegistryContext, nodeId: string, env: Envelope, err: DeviceReportError): void {
  ctx.metrics.upstream.inc({ kind: upstreamKind(env), result: err.reason })
  ctx.logger.warn({ nodeId, resource: env.router.resource.slice(0, 200), reason: err.reason, err: err.message }, 'device message from edge not applied')
  ctx.emitError(err)
}

/** Append to the bounded upload log; returns how many old entries it evicted. */
function applyUpload (ctx: RegistryContext, tx: KvTxn, m: Mutation, nodeId: string, u: UploadRecord): number {
  const truncated = u.payload.byteLength > ctx.maxUploadBytes
  if (truncated) ctx.metrics.uploadDrops.inc({ reason: 'truncated' })
  const payload = truncated ? u.payload.slice(0, ctx.maxUploadBytes) : u.payload
  const [next, first] = tx.get<[number, number]>('meta', 'log') ?? [1, 1]
  const entry: UploadEntry = { n: next, nodeId, topic: u.topic, payload, timestamp: u.timestamp, receivedAt: m.now, truncated }
  tx.put('uploads', next, entry)
  let f = first
  let evicted = 0
  while (next + 1 - f > ctx.maxUploads) { tx.remove('uploads', f); f++; evicted++ }
  tx.put('meta', 'log', [next + 1, f])
  const t = /^\$hw\/events\/(?:upload|device)\/([^/]+)\/([^/]+)/.exec(u.topic)
  m.changes.push({ type: 'upload', namespace: t?.[1] ?? '', name: t?.[2] ?? '', nodeId, revision: 0, at: m.now, detail: { n: next, topic: u.topic, bytes: payload.byteLength, timestamp: u.timestamp } })
  return evicted
}

/** Newest upload records first (bounded log, `maxUploads`). */
export function listUploads (ctx: RegistryContext, filter: { nodeId?: string, limit?: number }): UploadEntry[] {
  const limit = Math.max(1, Math.min(filter.limit ?? 100, 10_000))
  const out: UploadEntry[] = []
  const all = ctx.kv.entries<UploadEntry>('uploads')
  for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
    const e = all[i]?.value
    if (e !== undefined && (filter.nodeId === undefined || e.nodeId === filter.nodeId)) out.push(e)
  }
  return out
}

/**
 * Re-send snapshots (a new revision each: the edge drops a message whose
 * version it already stored, DESIGN.md §5) of every device bound to `nodeId`
 * (or the listed ones) and, for a whole node, its mapper grants. With
 * `requestReports` also a ResyncRequest asking the edge for `full` reports
 * (each device marked `resyncPending` until its full report arrives).
 * Returns the number of devices resynced.
 */
export async function resync (ctx: RegistryContext, nodeId: string, only: Array<{ namespace: string, name: string }> | undefined, requestReports: boolean): Promise<number> {
  if (!isNodeName(nodeId)) throw new InvalidDeviceSpecError('nodeId', 'must be a node name')
  const r = await ctx.mutate((tx, m) => {
    const before = m.changes.length
    const requested = resyncTx(ctx, tx, m, nodeId, only, requestReports)
    return { requested, devices: m.changes.length - before }
  }, { awaitDispatch: true })
  countResync(ctx, r.requested)
  return r.devices
}

function countResync (ctx: RegistryContext, requested: number): void {
  ctx.metrics.resyncs.inc({ direction: 'answered' })
  if (requested > 0) ctx.metrics.resyncs.inc({ direction: 'requested' })
}

/** The writes of a resync inside a transaction; pushes one 'resync' change per device. Returns the devices asked to report in full. */
function resyncTx (ctx: RegistryContext, tx: KvTxn, m: Mutation, nodeId: string, only: Array<{ namespace: string, name: string }> | undefined, requestReports: boolean): number {
  const ids = only === undefined ? [...ctx.devicesOf(nodeId) ?? []] : only.slice(0, MAX_MAPPER_DEVICES).map(d => `${d.namespace}/${d.name}`)
  const rev = nextRevision(tx)
  for (const id of ids) {
    const d = tx.get<StoredDevice>('devices', id)
    if (d === undefined || d.spec.nodeId !== nodeId) continue
    const model = tx.get<DeviceModel>('models', d.spec.model)
    if (model === undefined) continue
    const next: StoredDevice = { ...d, revision: rev, resyncPending: d.resyncPending || requestReports }
    saveDevice(tx, next, model, m.keys)
    m.changes.push({ type: 'resync', namespace: d.spec.namespace, name: d.spec.name, nodeId, revision: rev, at: m.now, detail: { direction: requestReports ? 'both' : 'answered' } })
  }
  if (only === undefined) {
    for (const { key, value } of tx.entries<StoredMapper>('mappers', `${nodeId}/`)) {
      const grant: StoredMapper = { ...value, revision: rev }
      tx.put('mappers', key, grant)
      dispatchGrant(tx, grant, 'update', m.keys)
    }
  }
  return requestReports ? dispatchResyncRequest(tx, nodeId, ids, m.keys) : 0
}
