/**
 * Edge → mapper (DeviceMapperService, issue 14 part 2): one MapperLink per
 * registered mapper (edgecore keeps one DMI client per protocol). A pass
 * compares what the mapper should hold — every device of its protocol in
 * the twin store, converted as edgecore's ConvertDevice, and their models —
 * with the fingerprints it acknowledged (DmiStore), and calls
 * CreateDeviceModel/UpdateDeviceModel, RegisterDevice/UpdateDevice,
 * RemoveDevice, RemoveDeviceModel for the differences, models first (a
 * mapper looks a device's model up when it registers the device).
 *
 * Never losing the latest desired state: the twin store holds it durably and
 * a pass always sends the current record, so changes made while a mapper is
 * down coalesce into one call per device when it is back. Transport failures
 * stop the pass and retry it with doubling, jittered backoff; a mapper
 * refusing one item does not hold up the others (the item is retried with
 * the pass).
 */
import * as grpc from '@grpc/grpc-js'
import type { Clock, TimerHandle } from '../../../util/clock.js'
import type { Logger } from '../../../ops/logger.js'
import type { TwinStore } from '../twin-store.js'
import { fingerprint, modelKey, protocolOf, toPbDevice, toPbModel } from './convert.js'
import type { DmiStore, MapperRecord, PushedKind } from './dmi-store.js'
import type { DmiMetrics } from './metrics.js'
import type { ResolvedDmiOptions } from './options.js'
import { dmiPackage, type PbDevice, type PbDeviceModel } from './proto.js'

export interface LinkDeps {
  twins: TwinStore
  store: DmiStore
  options: ResolvedDmiOptions
  clock: Clock
  logger: Logger
  metrics: DmiMetrics
  /** Called when the link starts or stops being behind (metrics gauge). */
  onBehind: (link: MapperLink, behind: boolean) => void
}

interface Want<T> { msg: T, fp: string }

/** The mapper did not answer (down, restarting, overloaded): stop the pass, retry later. */
const TRANSPORT = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED, grpc.status.RESOURCE_EXHAUSTED])

type Outcome = 'ok' | 'refused' | 'down'

export class MapperLink {
  mapper: MapperRecord
  readonly #d: LinkDeps
  #client: grpc.Client | undefined
  #devices: Map<string, string>
  #models: Map<string, string>
  #dirty = true
  #running: Promise<void> | undefined
  #timer: TimerHandle | undefined
  #attempt = 0
  #gen = 0
  #closed = false
  #behind = false
  #lastError: string | undefined

  constructor (deps: LinkDeps, mapper: MapperRecord) {
    this.#d = deps
    this.mapper = mapper
    this.#devices = deps.store.pushed(mapper.protocol, 'd')
    this.#models = deps.store.pushed(mapper.protocol, 'm')
  }

  get protocol (): string { return this.mapper.protocol }
  /** Device ids the mapper acknowledged. */
  get acknowledged (): string[] { return [...this.#devices.keys()] }
  get lastError (): string | undefined { return this.#lastError }
  /** Resolves when no pass is running (tests, shutdown). */
  async idle (): Promise<void> { while (this.#running !== undefined) await this.#running }

  /** The mapper (re-)registered. `acknowledged` = what it was just given in MapperRegisterResponse (withData); undefined = nothing. */
  async register (mapper: MapperRecord, acknowledged: { devices: Map<string, string>, models: Map<string, string> } | undefined): Promise<void> {
    this.#gen++ // a pass in progress works for the old registration: it stops at its next step
    if (mapper.address !== this.mapper.address) { this.#client?.close(); this.#client = undefined }
    this.mapper = mapper
    this.#devices = new Map(acknowledged?.devices ?? [])
    this.#models = new Map(acknowledged?.models ?? [])
    await this.#d.store.replacePushed(mapper.protocol, this.#devices, this.#models)
    this.#d.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#attempt = 0
    this.poke()
  }

  /** Something the mapper may hold changed: run a pass now, or with the pending retry. */
  poke (): void {
    this.#dirty = true
    if (this.#closed || this.#running !== undefined || this.#timer !== undefined) return
    this.#running = this.#loop().finally(() => { this.#running = undefined })
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#gen++
    this.#d.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    await this.idle()
    this.#client?.close()
    this.#client = undefined
    this.#setBehind(false)
  }

  async #loop (): Promise<void> {
    while (this.#dirty && !this.#closed) {
      this.#dirty = false
      let done = false
      try {
        done = await this.#pass(this.#gen)
      } catch (err) { // a store write failed: retry like a transport failure
        this.#lastError = (err as Error).message
        this.#d.logger.warn({ err, mapper: this.mapper.name }, 'DMI push pass failed')
      }
      if (!done) { this.#retry(); return }
      this.#attempt = 0
      this.#lastError = undefined
    }
    if (!this.#dirty) this.#setBehind(false)
  }

  #retry (): void {
    if (this.#closed) return
    this.#dirty = true
    this.#setBehind(true)
    const o = this.#d.options
    const base = Math.min(o.retryMaxMs, o.retryMinMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    const delay = Math.max(1, Math.round(base * (0.8 + Math.random() * 0.4)))
    this.#timer = this.#d.clock.setTimeout(() => { this.#timer = undefined; this.poke() }, delay)
  }

  #setBehind (b: boolean): void {
    if (b === this.#behind) return
    this.#behind = b
    this.#d.onBehind(this, b)
  }

  /** What the mapper should hold now. */
  #wanted (): { devices: Map<string, Want<PbDevice>>, models: Map<string, Want<PbDeviceModel>> } {
    const devices = new Map<string, Want<PbDevice>>()
    const models = new Map<string, Want<PbDeviceModel>>()
    for (const rec of this.#d.twins.list()) {
      if (protocolOf(rec) !== this.protocol) continue
      const msg = toPbDevice(rec)
      devices.set(`${rec.namespace}/${rec.name}`, { msg, fp: fingerprint(msg) })
      const key = modelKey(rec)
      if (!models.has(key)) {
        const m = toPbModel(rec.snapshot.model, rec.namespace)
        models.set(key, { msg: m, fp: fingerprint(m) })
      }
    }
    return { devices, models }
  }

  /** true = the mapper holds everything; false = retry later. */
  async #pass (gen: number): Promise<boolean> {
    const { devices, models } = this.#wanted()
    let complete = true
    const stale = (): boolean => gen !== this.#gen
    const step = async (kind: PushedKind, id: string, fp: string | undefined, run: () => Promise<Outcome>): Promise<boolean> => {
      const r = await run()
      if (stale()) return false
      if (r === 'down') return false
      if (r === 'refused') { complete = false; return true }
      const map = kind === 'd' ? this.#devices : this.#models
      if (fp === undefined) map.delete(id)
      else map.set(id, fp)
      await this.#d.store.setPushed(this.protocol, kind, id, fp)
      return !stale()
    }
    for (const [id, w] of models) {
      if (this.#models.get(id) === w.fp) continue
      const known = this.#models.has(id)
      const ok = await step('m', id, w.fp, async () => {
        const first = await this.#call(known ? 'UpdateDeviceModel' : 'CreateDeviceModel', { model: w.msg })
        // A mapper that lost its state refuses an update of a model it does not know: create it.
        return known && first === 'refused' ? await this.#call('CreateDeviceModel', { model: w.msg }) : first
      })
      if (!ok) return stale()
    }
    for (const [id, w] of devices) {
      if (this.#devices.get(id) === w.fp) continue
      const known = this.#devices.has(id)
      const ok = await step('d', id, w.fp, async () => {
        const first = await this.#call(known ? 'UpdateDevice' : 'RegisterDevice', { device: w.msg })
        const r = known && first === 'refused' ? await this.#call('RegisterDevice', { device: w.msg }) : first
        // Refused even as a new device: most likely the mapper lost its models (restarted without
        // registering again). Forget that it has this one, so the next pass creates it first.
        if (r === 'refused') this.#models.delete(`${w.msg.namespace}/${w.msg.spec?.deviceModelReference ?? ''}`)
        return r
      })
      if (!ok) return stale()
    }
    for (const id of [...this.#devices.keys()]) {
      if (devices.has(id)) continue
      const [ns, name] = split(id)
      // A refusal means the mapper does not have it (any more): that is what we wanted.
      const ok = await step('d', id, undefined, async () => await this.#call('RemoveDevice', { deviceName: name, deviceNamespace: ns }) === 'down' ? 'down' : 'ok')
      if (!ok) return stale()
    }
    for (const id of [...this.#models.keys()]) {
      if (models.has(id)) continue
      const [ns, name] = split(id)
      const ok = await step('m', id, undefined, async () => await this.#call('RemoveDeviceModel', { modelName: name, modelNamespace: ns }) === 'down' ? 'down' : 'ok')
      if (!ok) return stale()
    }
    return complete
  }

  #clientFor (): grpc.Client {
    if (this.#client === undefined) {
      const o = this.#d.options
      const Ctor = dmiPackage().DeviceMapperService
      this.#client = new Ctor(`unix:${this.mapper.address}`, grpc.credentials.createInsecure(), {
        'grpc.max_send_message_length': o.maxMessageBytes,
        'grpc.max_receive_message_length': o.maxMessageBytes,
        'grpc.initial_reconnect_backoff_ms': o.retryMinMs,
        'grpc.max_reconnect_backoff_ms': o.retryMaxMs
      })
    }
    return this.#client
  }

  async #call (rpc: string, req: object): Promise<Outcome> {
    const client = this.#clientFor() as unknown as Record<string, (r: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void>
    const fn = client[rpc]
    if (fn === undefined) throw new Error(`no rpc ${rpc}`)
    const err = await new Promise<grpc.ServiceError | null>(resolve => {
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + this.#d.options.callTimeoutMs }, e => resolve(e))
    })
    const m = this.#d.metrics.pushes
    if (err === null) { m.inc({ rpc, result: 'ok' }); return 'ok' }
    this.#lastError = `${rpc}: ${err.details ?? err.message}`
    if (TRANSPORT.has(err.code)) {
      m.inc({ rpc, result: 'unavailable' })
      // A fresh channel at the next attempt: grpc-js would otherwise fail calls fast during its own
      // reconnect backoff, which runs on real time, out of step with ours (edgecore dials per call).
      this.#client?.close()
      this.#client = undefined
      this.#d.logger.debug({ mapper: this.mapper.name, rpc, code: err.code, reason: err.details }, 'DMI mapper unavailable')
      return 'down'
    }
    m.inc({ rpc, result: 'refused' })
    this.#d.logger.warn({ mapper: this.mapper.name, rpc, code: err.code, reason: err.details }, 'DMI mapper refused a call')
    return 'refused'
  }
}

function split (id: string): [string, string] {
  const i = id.indexOf('/')
  return [id.slice(0, i), id.slice(i + 1)]
}
