/**
 * The edge twin engine, mapper side (KubeEdge DeviceTwin + EventBus, DESIGN.md §8):
 * handles `…/twin/update`, `…/twin/get`, `…/state/update`, membership gets,
 * readings on `$ke/events/device/{id}/data/update` and upload records
 * arriving from a broker, and answers on the result topics. Every accepted
 * change is persisted (TwinStore) and queued in the edge's durable outbox
 * before the result is published, so a result means "durable at the edge";
 * the outbox reaches the cloud after reconnects. Bad input gets
 * `{code, reason}` on the matching result topic and a counter; nothing else
 * is affected. Cloud-side deliveries: twin-sync.ts.
 *
 * `updateTwin` / `updateState` are the transport-neutral entry points: the
 * MQTT path below and the DMI gRPC server (src/device/edge/dmi/) call the
 * same validation, persistence and upstream path. Payload forms depend on
 * `compat` (twin-compat.ts, twin-answers.ts).
 */
import { newMessage, type Envelope } from '../../codec/envelope.js'
import type { Clock } from '../../util/clock.js'
import type { Logger } from '../../ops/logger.js'
import { DEVICE_GROUP, resyncResource, twinResource, type ReportedValue, type ResyncRequest, type TwinReport, type UploadRecord } from '../protocol.js'
import { deviceTopic, membershipTopic, parseTopic, type TopicForm } from './topics.js'
import { BUSY, errorPayload, eventId, parseJson, parseTwinUpdate, TOO_LARGE, TwinRequestError, UNKNOWN_DEVICE, type TwinChange } from './twin-payload.js'
import { planCompatUpdate } from './twin-compat.js'
import { membershipDevice, stateUpdate } from './twin-answers.js'
import { cloneRecord, delta, documentFor, propertyMap, wireTwins, type EdgeReported, type LocalExpected, type TwinRecord } from './twin-state.js'
import type { TwinStore } from './twin-store.js'
import type { DeviceMetrics } from './metrics.js'
import type { CompatMode } from './options.js'

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
  /** Payload forms and twin semantics. @default 'strict' */
  compat?: CompatMode
  /** Unknown twin keys become optional twins ('optional', compat) or get 404 ('refuse'). @default 'refuse' */
  extraProperties?: 'optional' | 'refuse'
  /** Namespace of single-level (legacy) device topics; undefined = off. */
  legacyNamespace?: string | undefined
  /** Publish to the mapper side: to `origin` only, or every broker when undefined. */
  publish: (topic: string, payload: object, origin?: BrokerName) => void
  /**
   * False when nobody could receive `topic` (broker-subscribers.ts): the engine then does not
   * build that answer, delta or document at all (issue 16). @default always true
   */
  wants?: (topic: string, origin?: BrokerName) => boolean
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
  get compat (): boolean { return this.#d.compat === 'kubeedge' }

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
    const d = this.#d
    const t = parseTopic(topic, { legacyNamespace: d.legacyNamespace })
    if (t.kind === 'other') return
    const now = d.clock.now()
    let reply: ((p: object) => void) | undefined = replyTo
    if (reply === undefined && t.kind === 'membership-get') reply = p => d.publish(membershipTopic(t.nodeId, 'get/result'), p, origin)
    else if (reply === undefined && t.kind !== 'upload' && t.kind !== 'data' && t.kind !== 'membership-get') {
      // No answer to build when nobody subscribed to the result topic (MQTT drops it anyway; issue 16).
      const rt = deviceTopic(t.namespace, t.name, RESULT_OF[t.kind], t.form)
      if (d.wants?.(rt, origin) !== false) reply = p => d.publish(rt, p, origin)
    }
    let req: Record<string, unknown> | undefined
    try {
      if (payload.byteLength > d.maxPayloadBytes) throw new TwinRequestError(TOO_LARGE, 413, `payload of ${payload.byteLength} bytes exceeds maxPayloadBytes ${d.maxPayloadBytes}`)
      if (this.#pending >= d.maxPending) throw new TwinRequestError(BUSY, 503, `more than ${d.maxPending} device requests in progress`)
      this.#pending++
      try {
        // Readings (mappers-go TopicDataUpdate) travel like upload records; the ACL already confined them to the device's own id.
        if (t.kind === 'upload' || t.kind === 'data') { await this.#upload(topic, payload, now); return }
        req = parseJson(payload)
        if (t.kind === 'membership-get') { reply?.({ event_id: eventId(req), timestamp: now, devices: this.membership() }); return }
        const id = `${t.namespace}/${t.name}`
        const r = req
        if (t.kind === 'twin-get') {
          const rec = d.store.get(id)
          if (rec === undefined) { this.maybeAskResync(); throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} is not bound to node ${d.nodeId}`) }
          reply?.({ event_id: eventId(r), timestamp: now, twin: wireTwins(rec, undefined, !this.compat) })
        } else if (t.kind === 'twin-update') {
          const answer = await this.updateTwin(id, r, origin, reply !== undefined)
          reply?.(answer)
        } else {
          // Not `reply?.(await …)`: an optional call skips its arguments, so without a reply the
          // state would never be stored or sent (yet PUBACKed).
          const answer = await this.updateState(id, r.state, eventId(r))
          reply?.(answer)
        }
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
    const compat = this.compat
    return this.#d.store.list().map(r => compat
      ? membershipDevice(r, true)
      : { id: `${r.namespace}/${r.name}`, name: r.name, namespace: r.namespace, state: r.state?.state ?? 'unknown', attributes: r.snapshot.device.attributes, twin: wireTwins(r) })
  }

  #known (id: string): TwinRecord {
    const rec = this.#d.store.get(id)
    if (rec === undefined) { this.maybeAskResync(); throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} is not bound to node ${this.#d.nodeId}`) }
    return rec
  }

  /**
   * A twin update `{event_id?, twin: {...}}` from a mapper (MQTT `…/twin/update`
   * or DMI ReportDeviceStatus): validated, persisted, queued upstream, then
   * answered. Returns the result payload; throws TwinRequestError.
   */
  async updateTwin (id: string, req: Record<string, unknown>, origin?: BrokerName, withTwin = true): Promise<Record<string, unknown>> {
    this.#known(id)
    // Pipelined per device: the exclusive section computes the next record from the cache
    // (TwinStore.put updates it at once) and issues the twin-store write and the outbox append
    // in order; the durability wait happens outside it, so the device's next update is computed
    // while this one commits, and both share a group commit. The answer, the delta and the
    // document still go out only after both writes are durable ("a result means durable").
    const step = await this.exclusive(id, async () => this.#twinUpdate(id, req, origin))
    await step.durable
    return step.answer(withTwin)
  }

  /** A state report (MQTT `…/state/update` or DMI ReportDeviceStates). Returns the result payload; throws TwinRequestError. */
  async updateState (id: string, state: unknown, event = ''): Promise<Record<string, unknown>> {
    this.#known(id)
    return await this.exclusive(id, async () => {
      const rec = this.#d.store.get(id)
      if (rec === undefined) throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} was removed`)
      return await stateUpdate(this, rec, state, event)
    })
  }

  /** The synchronous part of a twin update: validation, the next record, the writes issued in order. */
  #twinUpdate (id: string, req: Record<string, unknown>, origin?: BrokerName): { durable: Promise<unknown>, answer: (withTwin: boolean) => Record<string, unknown> } {
    const d = this.#d
    const now = d.clock.now()
    const rec = d.store.get(id)
    if (rec === undefined) throw new TwinRequestError(UNKNOWN_DEVICE, 404, `device ${id} was removed`)
    const compat = this.compat
    let changes: Map<string, TwinChange>
    const next = cloneRecord(rec)
    const touched: string[] = []
    const deleted: string[] = []
    if (compat) {
      const plan = planCompatUpdate(req, propertyMap(rec), rec.extras ?? {}, d.extraProperties === 'optional', now)
      changes = plan.changes
      if (plan.extras.size > 0 || plan.deleted.length > 0) {
        next.extras = { ...(rec.extras ?? {}) }
        for (const [k, x] of plan.extras) { next.extras[k] = x; touched.push(k) }
        for (const k of plan.deleted) { delete next.extras[k]; deleted.push(k) }
      }
    } else {
      changes = parseTwinUpdate(req, propertyMap(rec), now)
    }
    const reported: Record<string, ReportedValue> = {}
    const expected: Record<string, { value: string | number | boolean, timestamp: number }> = {}
    for (const [name, c] of changes) {
      if (c.actual !== undefined) {
        const { raw, outOfRange, value, timestamp } = c.actual
        const stored: EdgeReported = { value, timestamp } // optional keys set, not spread in (issue 16: spreads in literals are slow on Node 20)
        if (compat && raw !== undefined) stored.raw = raw
        if (outOfRange === true) stored.outOfRange = outOfRange
        next.reported[name] = stored
        reported[name] = { value, timestamp }
        if (outOfRange === true) {
          d.metrics.outOfRange.inc()
          d.logger.debug({ device: id, property: name, value }, 'reading outside the model range stored and flagged')
        }
      }
      if (c.expected !== undefined) {
        const { raw, value, timestamp } = c.expected
        const local: LocalExpected = { value, timestamp, baseRevision: rec.snapshot.revision }
        if (compat && raw !== undefined) local.raw = raw
        next.localExpected[name] = local
        expected[name] = { value, timestamp }
      }
    }
    const names = [...changes.keys()]
    let durable: Promise<unknown> = Promise.resolve()
    if (names.length > 0) {
      if (Object.keys(expected).length > 0) next.edgeVersion++
      next.edgeSeq++
      const report: TwinReport = { namespace: rec.namespace, name: rec.name, edgeSeq: next.edgeSeq, reported, baseRevision: rec.snapshot.revision }
      if (rec.baselined === false) { // first report for this record: full, so the cloud takes our edgeSeq as its new base
        report.full = true
        report.reported = Object.fromEntries(Object.entries(next.reported).map(([k, v]) => [k, { value: v.value, timestamp: v.timestamp }]))
        next.baselined = true
      }
      if (Object.keys(expected).length > 0) report.expected = expected
      // Both issued now, in this order, so the outbox holds reports in edgeSeq order.
      durable = Promise.all([d.store.put(next), d.upstream(this.envelope('report', twinResource(rec.namespace, rec.name), report))])
        .then(() => { d.metrics.twinUpdates.inc({ source: 'mapper' }) })
    } else if (touched.length > 0 || deleted.length > 0) {
      durable = d.store.put(next) // extra twins only: edge-local
    }
    return {
      durable,
      answer: withTwin => {
        this.publishChanges(rec, next, [...names, ...touched, ...deleted], eventId(req), compat, origin)
        if (!withTwin) return {} // nobody subscribed to the result (handleMqtt)
        const twin: Record<string, unknown> = wireTwins(next, [...names, ...touched], !compat)
        for (const k of deleted) twin[k] = null
        return { event_id: eventId(req), timestamp: now, twin }
      }
    }
  }

  /**
   * Publish `…/twin/update/delta` and `…/twin/update/document`. Strict: a
   * delta when expected ≠ actual for a touched property (or `forceDelta`).
   * Compat (KubeEdge DealDeviceTwin): a delta after every update while any
   * expected ≠ actual, versions left out.
   */
  publishChanges (before: TwinRecord | undefined, after: TwinRecord, changed: string[], event: string, forceDelta?: boolean, _origin?: BrokerName): void {
    const d = this.#d
    const compat = this.compat
    if (changed.length === 0 && !compat) return
    const now = d.clock.now()
    const dl = delta(after)
    const dlBefore = before === undefined ? {} : delta(before)
    if (Object.keys(dl).length > 0 && (forceDelta === true || compat || changed.some(n => n in dl || n in dlBefore))) {
      if (this.#wantsDevice(after, 'twin/update/delta')) this.publishDevice(after, 'twin/update/delta', { event_id: event, timestamp: now, twin: wireTwins(after, undefined, !compat), delta: dl })
      d.metrics.deltas.inc()
    }
    if (changed.length > 0 && this.#wantsDevice(after, 'twin/update/document')) this.publishDevice(after, 'twin/update/document', { event_id: event, timestamp: now, twin: documentFor(before, after, changed, !compat) })
  }

  /** Whether anyone could receive `suffix` of this device, on either topic form. */
  #wantsDevice (rec: { namespace: string, name: string }, suffix: string): boolean {
    const w = this.#d.wants
    if (w === undefined || w(deviceTopic(rec.namespace, rec.name, suffix))) return true
    return this.#d.legacyNamespace === rec.namespace && w(deviceTopic(rec.namespace, rec.name, suffix, 'legacy' as TopicForm))
  }

  /** Publish on a device topic, and on its single-level form too when legacy topics cover the device. */
  publishDevice (rec: { namespace: string, name: string }, suffix: string, payload: object): void {
    const d = this.#d
    d.publish(deviceTopic(rec.namespace, rec.name, suffix), payload)
    if (d.legacyNamespace === rec.namespace) d.publish(deviceTopic(rec.namespace, rec.name, suffix, 'legacy' as TopicForm), payload)
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
