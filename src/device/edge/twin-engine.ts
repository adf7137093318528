/**
 * The edge twin engine, mapper side (KubeEdge DeviceTwin + EventBus, DESIGN.md §8):
 * handles `…/twin/update`, `…/twin/get`, `…/state/update`, membership gets
 * and upload records arriving from a broker, and answers on the result
 * topics. Every accepted change is persisted (TwinStore) and queued in the
 * edge's durable outbox before the result is published, so a result means
 * "durable at the edge"; the outbox reaches the cloud after reconnects.
 * Bad input gets `{code, reason}` on the matching result topic and a counter;
 * nothing else is affected. Cloud-side deliveries: twin-sync.ts.
 */
import { newMessage, type Envelope } from '../../codec/envelope.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import { DEVICE_STATES, type DeviceState } from '../model.js'
import { DEVICE_GROUP, resyncResource, stateResource, twinResource, type ReportedValue, type ResyncRequest, type StateReport, type TwinReport, type UploadRecord } from '../protocol.js'
import { deviceTopic, membershipTopic, parseTopic } from './topics.js'
import { BAD_REQUEST, BUSY, errorPayload, eventId, parseJson, parseTwinUpdate, TOO_LARGE, TwinRequestError, UNKNOWN_DEVICE } from './twin-payload.js'
import { cloneRecord, delta, documentFor, propertyMap, wireTwins, type TwinRecord } from './twin-state.js'
import type { TwinStore } from './twin-store.js'
import type { DeviceMetrics } from './metrics.js'

export type BrokerName = 'internal' | 'external'

export interface EngineDeps {
  store: TwinStore
  nodeId: string
  clock: Clock
  logger: Logger
  metrics: DeviceMetrics
  maxPayloadBytes: number
  /** Bound on mapper requests being processed at once (beyond: EF_TWIN_BUSY). */
  maxPending: number
  /** Publish to the mapper side: to `origin` only, or every broker when undefined. */
  publish: (topic: string, payload: object, origin?: BrokerName) => void
  /** Durable send to the cloud (EdgeNode.sendUpstream). */
  upstream: (env: Envelope) => Promise<void>
}

const RESULT_OF = { 'twin-update': 'twin/update/result', 'twin-get': 'twin/get/result', 'state-update': 'state/update/result' } as const
/** At most one edge-initiated ResyncRequest per this interval. */
const RESYNC_INTERVAL_MS = 30_000

export class TwinEngine {
  readonly #d: EngineDeps
  readonly #chains = new Map<string, Promise<unknown>>()
  #pending = 0
  #lastResyncAsk = -Infinity

  constructor (deps: EngineDeps) { this.#d = deps }

  get deps (): EngineDeps { return this.#d }

  /** Resolves once no request is being processed (shutdown), or after `timeoutMs`. */
  async idle (timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs
    while ((this.#pending > 0 || this.#chains.size > 0) && Date.now() < until) {
      await Promise.race([Promise.allSettled([...this.#chains.values()]), new Promise(resolve => setTimeout(resolve, 10))])
    }
  }

  /** Run `fn` after every earlier operation on the same device (per-device order, no lost updates). */
  async exclusive<T> (id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(id) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.#chains.set(id, tail)
    void tail.then(() => { if (this.#chains.get(id) === tail) this.#chains.delete(id) })
    return await run
  }

  /**
   * One MQTT message from a broker. Never throws. `replyTo` (DMI, issue 14:
   * src/device/edge/dmi/) takes the answer instead of the result topic, so
   * another front end gets the same validation, durability and upstream path.
   */
  async handleMqtt (topic: string, payload: Buffer, origin: BrokerName, replyTo?: (p: object) => void): Promise<void> {
    const t = parseTopic(topic)
    if (t.kind === 'other') return
    const d = this.#d
    const now = d.clock.now()
    let reply: ((p: object) => void) | undefined = replyTo
    if (reply === undefined && t.kind === 'membership-get') reply = p => d.publish(membershipTopic(t.nodeId, 'get/result'), p, origin)
    else if (reply === undefined && t.kind !== 'upload' && t.kind !== 'membership-get') reply = p => d.publish(deviceTopic(t.namespace, t.name, RESULT_OF[t.kind]), p, origin)
    let req: Record<string, unknown> | undefined
    try {
      if (payload.byteLength > d.maxPayloadBytes) throw new TwinRequestError(TOO_LARGE, 413, `payload of ${payload.byteLength} bytes exceeds maxPayloadBytes ${d.maxPayloadBytes}`)
      if (this.#pending >= d.maxPending) throw new TwinRequestError(BUSY, 503, `more than ${d.maxPending} device requests in progress`)
      this.#pending++
      try {
        if (t.kind === 'upload') { await this.#upload(topic, payload, now); return }
        req = parseJson(payload)
        if (t.kind === 'membership-get') { reply?.({ event_id: eventId(req), timestamp: now, devices: this.membership() }); return }
        const id = `${t.namespace}/${t.name}`
        const rec = d.store.get(id)
        if (rec === undefined) { this.maybeAskResync(); throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} is not bound to node ${d.nodeId}`) }
        const r = req
        if (t.kind === 'twin-get') reply?.({ event_id: eventId(r), timestamp: now, twin: wireTwins(rec) })
        else if (t.kind === 'twin-update') await this.exclusive(id, async () => { await this.#twinUpdate(id, r, now, origin, reply) })
        else await this.exclusive(id, async () => { await this.#stateUpdate(id, r, now, reply) })
      } finally {
        this.#pending--
      }
    } catch (err) {
      if (err instanceof TwinRequestError) {
        d.metrics.errors.inc({ code: err.code })
        d.logger.debug({ topic, code: err.code, reason: err.message }, 'device request refused')
        reply?.(errorPayload(eventId(req), err, now))
      } else {
        d.metrics.errors.inc({ code: 'EF_TWIN_INTERNAL' })
        d.logger.warn({ err, topic }, 'device request failed')
        reply?.(errorPayload(eventId(req), new TwinRequestError('EF_TWIN_INTERNAL', 500, (err as Error).message), now))
      }
    }
  }

  membership (): object[] {
    return this.#d.store.list().map(r => ({
      id: `${r.namespace}/${r.name}`,
      name: r.name,
      namespace: r.namespace,
      state: r.state?.state ?? 'unknown',
      attributes: r.snapshot.device.attributes,
      twin: wireTwins(r)
    }))
  }

  async #twinUpdate (id: string, req: Record<string, unknown>, now: number, origin: BrokerName, reply?: (p: object) => void): Promise<void> {
    const d = this.#d
    const rec = d.store.get(id)
    if (rec === undefined) throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} was removed`)
    const changes = parseTwinUpdate(req, propertyMap(rec), now)
    const before = cloneRecord(rec)
    const next = cloneRecord(rec)
    const reported: Record<string, ReportedValue> = {}
    const expected: Record<string, { value: string | number | boolean, timestamp: number }> = {}
    for (const [name, c] of changes) {
      if (c.actual !== undefined) { next.reported[name] = c.actual; reported[name] = c.actual }
      if (c.expected !== undefined) {
        next.localExpected[name] = { ...c.expected, baseRevision: rec.snapshot.revision }
        expected[name] = c.expected
      }
    }
    if (Object.keys(expected).length > 0) next.edgeVersion++
    next.edgeSeq++
    const report: TwinReport = { namespace: rec.namespace, name: rec.name, edgeSeq: next.edgeSeq, reported, baseRevision: rec.snapshot.revision }
    if (rec.baselined === false) { // first report for this record: full, so the cloud takes our edgeSeq as its new base
      report.full = true
      report.reported = { ...next.reported }
      next.baselined = true
    }
    if (Object.keys(expected).length > 0) report.expected = expected
    await d.store.put(next)
    await d.upstream(this.envelope('report', twinResource(rec.namespace, rec.name), report))
    d.metrics.twinUpdates.inc({ source: 'mapper' })
    const names = [...changes.keys()]
    reply?.({ event_id: eventId(req), timestamp: now, twin: wireTwins(next, names) })
    this.publishChanges(before, next, names, eventId(req), undefined, origin)
  }

  /** Publish `…/twin/update/delta` (when expected ≠ actual for a touched property) and `…/twin/update/document`. */
  publishChanges (before: TwinRecord | undefined, after: TwinRecord, changed: string[], event: string, forceDelta?: boolean, _origin?: BrokerName): void {
    if (changed.length === 0) return
    const d = this.#d
    const now = d.clock.now()
    const dl = delta(after)
    const dlBefore = before === undefined ? {} : delta(before)
    if (Object.keys(dl).length > 0 && (forceDelta === true || changed.some(n => n in dl || n in dlBefore))) {
      d.publish(deviceTopic(after.namespace, after.name, 'twin/update/delta'), { event_id: event, timestamp: now, twin: wireTwins(after), delta: dl })
      d.metrics.deltas.inc()
    }
    d.publish(deviceTopic(after.namespace, after.name, 'twin/update/document'), { event_id: event, timestamp: now, twin: documentFor(before, after, changed) })
  }

  async #stateUpdate (id: string, req: Record<string, unknown>, now: number, reply?: (p: object) => void): Promise<void> {
    const d = this.#d
    const rec = d.store.get(id)
    if (rec === undefined) throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} was removed`)
    const state = req.state
    if (typeof state !== 'string' || !(DEVICE_STATES as readonly string[]).includes(state)) {
      throw new TwinRequestError(BAD_REQUEST, 400, `"state" must be one of ${DEVICE_STATES.join(', ')}`)
    }
    const next = { ...rec, state: { state: state as DeviceState, timestamp: now } }
    await d.store.put(next)
    const report: StateReport = { namespace: rec.namespace, name: rec.name, state: state as DeviceState, timestamp: now }
    await d.upstream(this.envelope('state', stateResource(rec.namespace, rec.name), report))
    reply?.({ event_id: eventId(req), timestamp: now, device: { name: rec.name, state, last_online: new Date(now).toISOString() } })
  }

  async #upload (topic: string, payload: Buffer, now: number): Promise<void> {
    const rec: UploadRecord = { topic, payload: new Uint8Array(payload), timestamp: now }
    await this.#d.upstream(this.envelope('upload', `upload/${topic}`, rec))
    this.#d.metrics.uploads.inc()
  }

  /** The edge has no snapshots but devices talk to it (store wiped): ask the cloud for all of ours, rate limited. */
  maybeAskResync (): void {
    const d = this.#d
    const now = d.clock.now()
    if (d.store.size > 0 || now - this.#lastResyncAsk < RESYNC_INTERVAL_MS) return
    this.#lastResyncAsk = now
    const req: ResyncRequest = { nodeId: d.nodeId }
    d.upstream(this.envelope('query', resyncResource(d.nodeId), req)).catch(err => d.logger.warn({ err }, 'resync request not queued'))
    d.metrics.resyncs.inc({ direction: 'up' })
  }

  envelope (operation: string, resource: string, content: unknown): Envelope {
    return newMessage({ source: 'devicetwin', group: DEVICE_GROUP, operation, resource, content, timestamp: this.#d.clock.now() })
  }
}
