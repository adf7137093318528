/**
 * `edge.dmi`: KubeEdge's Device Management Interface v1beta1 on an edge node
 * (issue 14 part 2, README "KubeEdge mappers"). Serves DeviceManagerService
 * on a unix socket (and optionally loopback TCP) for mappers, and calls each
 * registered mapper's DeviceMapperService when the devices or models it
 * should hold change (pusher.ts). Sits on top of `edge.devices`: the twin
 * store is the source of devices and desired values, the twin engine takes
 * the mappers' reports.
 */
import { chmod } from 'node:fs/promises'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import type { Registry } from 'prom-client'
import type { Clock } from '../../../util/clock.js'
import type { Logger } from '../../../ops/logger.js'
import type { EdgeDevices } from '../devices.js'
import { DmiStore, type MapperRecord } from './dmi-store.js'
import { DmiRequestError, ManagerService } from './manager-service.js'
import { createDmiMetrics, type DmiMetrics } from './metrics.js'
import { resolveDmiOptions, type DmiOptions, type ResolvedDmiOptions } from './options.js'
import { dmiPackage, type PbMapperRegisterRequest, type PbReportDeviceStatesRequest, type PbReportDeviceStatusRequest } from './proto.js'
import { MapperLink } from './pusher.js'
import { prepareSocket, removeSocket } from './socket.js'

export { resolveDmiOptions, type DmiOptions, type ResolvedDmiOptions }

export interface EdgeDmiInit {
  options: DmiOptions
  devices: EdgeDevices
  dataDir: string
  durability: 'sync' | 'relaxed'
  clock: Clock
  logger: Logger
  registry: Registry
}

export interface DmiMapperView { name: string, protocol: string, address: string, version: string, acknowledged: string[], lastError: string | undefined }

export class EdgeDmi {
  readonly options: ResolvedDmiOptions
  readonly metrics: DmiMetrics
  readonly #store: DmiStore
  readonly #links = new Map<string, MapperLink>()
  readonly #logger: Logger
  readonly #init: EdgeDmiInit
  readonly #manager: ManagerService
  readonly #seen = new Map<string, { snapshot: unknown, local: Record<string, unknown> }>()
  #server: grpc.Server | undefined
  #tcpPort: number | undefined
  /** The socket file is ours to remove (we bound it); never remove another process's. */
  #bound = false
  #behind = 0
  #closed = false

  private constructor (init: EdgeDmiInit, options: ResolvedDmiOptions, store: DmiStore) {
    this.#init = init
    this.options = options
    this.#store = store
    this.metrics = createDmiMetrics(init.registry)
    this.#logger = init.logger.child({ component: 'dmi' })
    this.#manager = new ManagerService({
      engine: init.devices.engine,
      clock: init.clock,
      logger: this.#logger,
      metrics: this.metrics,
      register: async (m, ack) => { await this.#register(m, ack) }
    })
  }

  static validate (options: DmiOptions): ResolvedDmiOptions { return resolveDmiOptions(options) }

  static async start (init: EdgeDmiInit): Promise<EdgeDmi> {
    const options = resolveDmiOptions(init.options)
    const store = DmiStore.open(join(init.dataDir, 'dmi'), init.durability)
    const d = new EdgeDmi(init, options, store)
    try {
      for (const m of store.mappers()) d.#link(m) // edge restart: push what changed while it was down
      d.metrics.mappers.set(d.#links.size)
      init.devices.store.onChange = id => d.#changed(id)
      await d.#listen()
    } catch (err) {
      await d.close()
      throw err
    }
    return d
  }

  get socket (): string { return this.options.socket }
  /** Bound TCP port (option `tcp`), else undefined. */
  get tcpPort (): number | undefined { return this.#tcpPort }

  mappers (): DmiMapperView[] {
    return [...this.#links.values()].map(l => ({ name: l.mapper.name, protocol: l.protocol, address: l.mapper.address, version: l.mapper.version, acknowledged: l.acknowledged, lastError: l.lastError }))
  }

  /** Resolves once no push pass is running (tests, benchmarks). */
  async idle (): Promise<void> { await Promise.all([...this.#links.values()].map(async l => { await l.idle() })) }

  async #listen (): Promise<void> {
    const o = this.options
    const server = new grpc.Server({
      'grpc.max_receive_message_length': o.maxMessageBytes,
      'grpc.max_send_message_length': o.maxMessageBytes,
      'grpc.max_concurrent_streams': 100,
      // Idle mapper connections are closed (they reconnect per call anyway, as mapper-framework does).
      'grpc.max_connection_idle_ms': 5 * 60_000
    })
    const svc = dmiPackage().DeviceManagerService.service
    server.addService(svc, {
      MapperRegister: this.#unary<PbMapperRegisterRequest>('MapperRegister', async req => await this.#manager.mapperRegister(req)),
      ReportDeviceStatus: this.#unary<PbReportDeviceStatusRequest>('ReportDeviceStatus', async req => { await this.#manager.reportDeviceStatus(req); return {} }),
      ReportDeviceStates: this.#unary<PbReportDeviceStatesRequest>('ReportDeviceStates', async req => { await this.#manager.reportDeviceStates(req); return {} })
    })
    this.#server = server
    await prepareSocket(o.socket)
    await bind(server, `unix:${o.socket}`)
    this.#bound = true
    await chmod(o.socket, o.socketMode)
    if (o.tcp !== undefined) this.#tcpPort = await bind(server, `${o.tcp.host.includes(':') ? `[${o.tcp.host}]` : o.tcp.host}:${o.tcp.port}`)
    this.#logger.info({ socket: o.socket, tcpPort: this.#tcpPort }, 'DMI listening')
  }

  #unary<Req> (rpc: string, fn: (req: Req) => Promise<object>): grpc.handleUnaryCall<Req, object> {
    return (call, callback) => {
      if (this.#closed) { callback({ code: grpc.status.UNAVAILABLE, details: 'edge is shutting down' }); return }
      fn(call.request).then(res => {
        this.metrics.served.inc({ rpc, result: 'ok' })
        callback(null, res)
      }, (err: unknown) => {
        if (err instanceof DmiRequestError) {
          this.metrics.served.inc({ rpc, result: 'refused' })
          this.#logger.debug({ rpc, code: err.code, reason: err.message }, 'DMI request refused')
          callback({ code: err.code, details: err.message })
        } else {
          this.metrics.served.inc({ rpc, result: 'error' })
          this.#logger.warn({ err, rpc }, 'DMI request failed')
          callback({ code: grpc.status.INTERNAL, details: (err as Error).message })
        }
      })
    }
  }

  async #register (m: MapperRecord, ack: { devices: Map<string, string>, models: Map<string, string> } | undefined): Promise<void> {
    if (!this.#links.has(m.protocol) && this.#links.size >= this.options.maxMappers) {
      throw new DmiRequestError(grpc.status.RESOURCE_EXHAUSTED, `more than dmi.maxMappers (${this.options.maxMappers}) mappers`)
    }
    await this.#store.putMapper(m)
    const link = this.#links.get(m.protocol) ?? this.#link(m, false)
    await link.register(m, ack)
    this.metrics.mappers.set(this.#links.size)
  }

  #link (m: MapperRecord, start = true): MapperLink {
    const link = new MapperLink({
      twins: this.#init.devices.store,
      store: this.#store,
      options: this.options,
      clock: this.#init.clock,
      logger: this.#logger,
      metrics: this.metrics,
      onBehind: (_l, behind) => { this.#behind += behind ? 1 : -1; this.metrics.behind.set(this.#behind) }
    }, m)
    this.#links.set(m.protocol, link)
    if (start) link.poke()
    return link
  }

  /**
   * A twin record was written. Mapper reports rewrite it constantly but
   * change nothing a mapper holds; only a new snapshot (cloud change) or a
   * change of pending local expected values does, so passes run only then.
   */
  #changed (id: string): void {
    if (this.#closed) return
    const rec = this.#init.devices.store.get(id)
    const seen = this.#seen.get(id)
    if (rec !== undefined && seen !== undefined && seen.snapshot === rec.snapshot && sameEntries(seen.local, rec.localExpected)) return
    if (rec === undefined) this.#seen.delete(id)
    else this.#seen.set(id, { snapshot: rec.snapshot, local: rec.localExpected })
    for (const l of this.#links.values()) l.poke()
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#init.devices.store.onChange = () => {}
    const server = this.#server
    this.#server = undefined
    if (server !== undefined) {
      await new Promise<void>(resolve => {
        const t = setTimeout(() => { server.forceShutdown(); resolve() }, 2000)
        server.tryShutdown(() => { clearTimeout(t); resolve() })
      })
      if (this.#bound) await removeSocket(this.options.socket)
    }
    await Promise.all([...this.#links.values()].map(async l => { await l.close() }))
    await this.#store.close()
  }
}

function sameEntries (a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  if (a === b) return true
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  return ka.every(k => a[k] === b[k])
}

async function bind (server: grpc.Server, address: string): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => { if (err !== null) reject(err); else resolve(port) })
  })
}
