/**
 * Mapper → edge (DeviceManagerService, issue 14 part 2), as edgecore's
 * edge/pkg/devicetwin/dmiserver/server.go:
 *  - MapperRegister: remembers the mapper (persisted) and, with withData,
 *    answers the devices of its protocol bound to this node and their models.
 *  - ReportDeviceStatus / ReportDeviceStates: edgecore turns each into the
 *    MQTT twin/state update message and routes it to its twin module; here
 *    the same JSON goes to the same TwinEngine as MQTT (validation, durable
 *    store, outbox to the cloud), and its answer becomes the gRPC status
 *    (edgecore answers OK before processing; a mapper here learns about a
 *    refusal). The twins of one request are applied as one update.
 */
import * as grpc from '@grpc/grpc-js'
import type { Clock } from '../../../util/clock.js'
import type { Logger } from '../../../ops/logger.js'
import type { TwinEngine } from '../twin-engine.js'
import { deviceTopic, isSafeLevel } from '../topics.js'
import { fingerprint, modelKey, protocolOf, toPbDevice, toPbModel } from './convert.js'
import type { MapperRecord } from './dmi-store.js'
import type { DmiMetrics } from './metrics.js'
import type { PbDevice, PbDeviceModel, PbMapperRegisterRequest, PbMapperRegisterResponse, PbReportDeviceStatesRequest, PbReportDeviceStatusRequest } from './proto.js'

export interface ManagerDeps {
  engine: TwinEngine
  clock: Clock
  logger: Logger
  metrics: DmiMetrics
  /** Persist and link the mapper; throws a ServiceError-like `{code, details}` when refused (too many mappers). */
  register: (m: MapperRecord, acknowledged: { devices: Map<string, string>, models: Map<string, string> } | undefined) => Promise<void>
}

const PROTOCOL = /^[A-Za-z0-9_.-]{1,128}$/
const MAX_ADDRESS = 107
const MAX_TEXT = 256

export class DmiRequestError extends Error {
  constructor (readonly code: grpc.status, message: string) { super(message) }
}

/** A request the mapper got wrong or the edge refused, as a gRPC status with the engine's code in the text. */
function refuse (code: grpc.status, message: string): never { throw new DmiRequestError(code, message) }

/** TwinEngine answers carry KubeEdge-style numeric codes (twin-payload.ts). */
function statusOf (httpish: number): grpc.status {
  if (httpish === 404) return grpc.status.NOT_FOUND
  if (httpish === 503) return grpc.status.RESOURCE_EXHAUSTED
  if (httpish >= 500) return grpc.status.INTERNAL
  return grpc.status.INVALID_ARGUMENT
}

/** `unix:///p`, `unix:/p` or `/p` → `/p`. Mappers (mapper-framework) send the bare path. */
export function mapperAddress (raw: Uint8Array): string {
  let a = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8')
  if (a.startsWith('unix://')) a = a.slice(7)
  else if (a.startsWith('unix:')) a = a.slice(5)
  if (!a.startsWith('/') || Buffer.byteLength(a) > MAX_ADDRESS || a.includes('\0')) {
    refuse(grpc.status.INVALID_ARGUMENT, `mapper.address must be the absolute path of the mapper's unix socket (at most ${MAX_ADDRESS} bytes)`)
  }
  return a
}

export class ManagerService {
  readonly #d: ManagerDeps

  constructor (deps: ManagerDeps) { this.#d = deps }

  /** What a mapper of `protocol` should hold now, with fingerprints (what it acknowledges by registering). */
  catalogue (protocol: string): { devices: PbDevice[], models: PbDeviceModel[], fps: { devices: Map<string, string>, models: Map<string, string> } } {
    const devices: PbDevice[] = []
    const models: PbDeviceModel[] = []
    const fps = { devices: new Map<string, string>(), models: new Map<string, string>() }
    for (const rec of this.#d.engine.deps.store.list()) {
      if (protocolOf(rec) !== protocol) continue
      const dev = toPbDevice(rec)
      devices.push(dev)
      fps.devices.set(`${rec.namespace}/${rec.name}`, fingerprint(dev))
      const key = modelKey(rec)
      if (!fps.models.has(key)) {
        const m = toPbModel(rec.snapshot.model, rec.namespace)
        models.push(m)
        fps.models.set(key, fingerprint(m))
      }
    }
    return { devices, models, fps }
  }

  async mapperRegister (req: PbMapperRegisterRequest): Promise<PbMapperRegisterResponse> {
    const m = req.mapper
    if (m === null || m === undefined) refuse(grpc.status.INVALID_ARGUMENT, 'mapper is required')
    if (!PROTOCOL.test(m.protocol)) refuse(grpc.status.INVALID_ARGUMENT, `mapper.protocol must be 1-128 letters, digits, '-', '_' or '.' (got ${JSON.stringify(m.protocol.slice(0, 64))})`)
    for (const k of ['name', 'version', 'api_version', 'state'] as const) {
      if (m[k].length > MAX_TEXT) refuse(grpc.status.INVALID_ARGUMENT, `mapper.${k} longer than ${MAX_TEXT} characters`)
    }
    if (m.name === '') refuse(grpc.status.INVALID_ARGUMENT, 'mapper.name is required')
    const record: MapperRecord = {
      name: m.name,
      version: m.version,
      apiVersion: m.api_version,
      protocol: m.protocol,
      address: mapperAddress(m.address),
      state: m.state,
      registeredAt: this.#d.clock.now()
    }
    const cat = req.withData ? this.catalogue(m.protocol) : undefined
    await this.#d.register(record, cat?.fps)
    this.#d.logger.info({ mapper: record.name, protocol: record.protocol, address: record.address, devices: cat?.devices.length ?? 0 }, 'DMI mapper registered')
    return { modelList: cat?.models ?? [], deviceList: cat?.devices ?? [] }
  }

  async reportDeviceStatus (req: PbReportDeviceStatusRequest): Promise<void> {
    const { ns, name } = names(req.deviceNamespace, req.deviceName)
    const twins = req.reportedDevice?.twins ?? []
    if (twins.length === 0) refuse(grpc.status.INVALID_ARGUMENT, 'reportedDevice has no twins')
    const now = this.#d.clock.now()
    const twin: Record<string, object> = {}
    for (const t of twins) {
      // observedDesired is what the mapper believes is desired; the cloud stays authoritative, so only `reported` is applied.
      if (t.reported === null || t.reported === undefined) continue
      const ts = Number(t.reported.metadata?.timestamp)
      twin[t.propertyName] = { actual: { value: t.reported.value, metadata: { timestamp: Number.isSafeInteger(ts) && ts > 0 ? ts : now } } }
    }
    if (Object.keys(twin).length === 0) refuse(grpc.status.INVALID_ARGUMENT, 'no twin carries a reported value')
    await this.#toEngine(deviceTopic(ns, name, 'twin/update'), { event_id: '', timestamp: now, twin })
  }

  async reportDeviceStates (req: PbReportDeviceStatesRequest): Promise<void> {
    const { ns, name } = names(req.deviceNamespace, req.deviceName)
    if (req.state === '') refuse(grpc.status.INVALID_ARGUMENT, 'state is required')
    await this.#toEngine(deviceTopic(ns, name, 'state/update'), { event_id: '', timestamp: this.#d.clock.now(), state: req.state })
  }

  async #toEngine (topic: string, body: object): Promise<void> {
    let answer: Record<string, unknown> | undefined
    await this.#d.engine.handleMqtt(topic, Buffer.from(JSON.stringify(body)), 'internal', p => { answer = p as Record<string, unknown> })
    if (answer === undefined) refuse(grpc.status.INTERNAL, 'the twin engine gave no answer')
    if (typeof answer.code === 'number') refuse(statusOf(answer.code), `${String(answer.error)}: ${String(answer.reason)}`)
  }
}

/** KubeEdge ≤ 1.16 mappers leave the namespace empty: their devices live in `default`. */
function names (namespace: string, name: string): { ns: string, name: string } {
  const ns = namespace === '' ? 'default' : namespace
  if (!isSafeLevel(ns) || !isSafeLevel(name) || ns.length > 253 || name.length > 253) refuse(grpc.status.INVALID_ARGUMENT, 'deviceName and deviceNamespace must be non-empty names without \'/\', \'+\' or \'#\'')
  return { ns, name }
}
