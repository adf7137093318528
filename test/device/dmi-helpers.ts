/**
 * A KubeEdge mapper written in the test against the DMI proto (issue 14):
 * a grpc-js DeviceMapperService server on a real unix socket that keeps
 * devices and models the way mapper-framework's grpcserver/device.go does
 * (RegisterDevice needs the model; UpdateDeviceModel needs an existing
 * model; RegisterDevice of a known device changes nothing), and a grpc-js
 * DeviceManagerService client for the edge's socket. Plus a real hub with
 * the device registry and a real edge with DMI on a socket in t.testdir().
 */
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { mkdtempSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Hub } from '../../src/hub/hub.js'
import { EdgeNode, type EdgeOptions } from '../../src/edge/edge-node.js'
import type { DeviceModel } from '../../src/device/model.js'
import { decodeAnyMap } from '../../src/device/edge/dmi/any-value.js'

type TapTest = import('tap').Test

/** Loaded here, independently of the edge's loader, as a mapper author would. */
export const PROTO = fileURLToPath(new URL('../../proto/kubeedge-dmi-v1beta1.proto', import.meta.url))
const pkg = (grpc.loadPackageDefinition(loadSync(PROTO, { keepCase: true, longs: Number, defaults: true })) as any).v1beta1

export const MODEL: DeviceModel = {
  namespace: 'default',
  name: 'thermostat',
  properties: [
    { name: 'temperature', type: 'float', accessMode: 'ReadOnly', minimum: -40, maximum: 125, unit: 'C' },
    { name: 'target', type: 'float', accessMode: 'ReadWrite', minimum: 5, maximum: 35 },
    { name: 'mode', type: 'string', accessMode: 'ReadWrite' }
  ]
}

export function modbusDevice (name: string, nodeId = 'edge-1', protocolName = 'modbus'): any {
  return {
    namespace: 'default',
    name,
    model: 'default/thermostat',
    labels: {},
    attributes: {},
    nodeId,
    protocol: { protocolName, configData: { slaveID: 1, port: '/dev/ttyS0', baud: 9600.5, parity: false } },
    properties: [
      { name: 'temperature', visitors: { protocolName, configData: { register: 'HoldingRegister', offset: 2, limit: 1, scale: 0.1 } }, reportCycle: 1000, collectCycle: 500, reportToCloud: true, pushMethod: { mqtt: { address: 'tcp://127.0.0.1:1883', topic: 'temp', qos: 1, retained: false } } },
      { name: 'target', visitors: { protocolName, configData: { register: 'HoldingRegister', offset: 4 } } },
      { name: 'mode' }
    ],
    methods: [{ name: 'setTarget', description: 'set the target', propertyNames: ['target'] }],
    stateReport: { reportCycle: 2000, reportToCloud: true }
  }
}

export interface MapperCall { rpc: string, request: any }

export class TestMapper {
  readonly calls: MapperCall[] = []
  readonly devices = new Map<string, any>()
  readonly models = new Map<string, any>()
  /** Make every call fail with this status (a mapper that refuses). */
  refuse: grpc.status | undefined
  readonly server = new grpc.Server()
  #waiters: Array<() => void> = []

  private constructor (readonly socket: string) {
    const rec = (rpc: string, request: any): void => { this.calls.push({ rpc, request }); for (const w of this.#waiters.splice(0)) w() }
    const handle = (rpc: string, fn: (req: any) => any) => (call: any, cb: any) => {
      rec(rpc, call.request)
      if (this.refuse !== undefined) { cb({ code: this.refuse, details: 'refused by the test' }); return }
      try { cb(null, fn(call.request)) } catch (err) { cb({ code: grpc.status.FAILED_PRECONDITION, details: (err as Error).message }) }
    }
    const id = (ns: string, n: string): string => `${ns}/${n}`
    this.server.addService(pkg.DeviceMapperService.service, {
      RegisterDevice: handle('RegisterDevice', r => {
        const d = r.device
        if (this.devices.has(id(d.namespace, d.name))) return { deviceName: d.name } // as mapper-framework: already registered
        if (!this.models.has(id(d.namespace, d.spec.deviceModelReference))) throw new Error(`deviceModel ${d.spec.deviceModelReference} not found`)
        this.devices.set(id(d.namespace, d.name), d)
        return { deviceName: d.name, deviceNamespace: d.namespace }
      }),
      UpdateDevice: handle('UpdateDevice', r => {
        const d = r.device
        if (!this.models.has(id(d.namespace, d.spec.deviceModelReference))) throw new Error('deviceModel not found')
        this.devices.set(id(d.namespace, d.name), d)
        return {}
      }),
      RemoveDevice: handle('RemoveDevice', r => { this.devices.delete(id(r.deviceNamespace, r.deviceName)); return {} }),
      CreateDeviceModel: handle('CreateDeviceModel', r => { this.models.set(id(r.model.namespace, r.model.name), r.model); return { deviceModelName: r.model.name, deviceModelNamespace: r.model.namespace } }),
      UpdateDeviceModel: handle('UpdateDeviceModel', r => {
        if (!this.models.has(id(r.model.namespace, r.model.name))) throw new Error('update deviceModel failed, not existed')
        this.models.set(id(r.model.namespace, r.model.name), r.model)
        return {}
      }),
      RemoveDeviceModel: handle('RemoveDeviceModel', r => { this.models.delete(id(r.modelNamespace, r.modelName)); return {} }),
      GetDevice: handle('GetDevice', r => ({ device: this.devices.get(id(r.deviceNamespace, r.deviceName)) ?? null }))
    })
  }

  static async start (t: TapTest, socket: string): Promise<TestMapper> {
    const m = new TestMapper(socket)
    await new Promise<void>((resolve, reject) => m.server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), err => err === null ? resolve() : reject(err)))
    t.teardown(() => m.stop())
    return m
  }

  /** Keep what MapperRegister answered, as mapper-framework does at start. */
  load (res: { deviceList: any[], modelList: any[] }): void {
    for (const m of res.modelList) this.models.set(`${m.namespace}/${m.name}`, m)
    for (const d of res.deviceList) this.devices.set(`${d.namespace}/${d.name}`, d)
  }

  /** Stop serving (a mapper crash): the socket file goes away with the server. */
  stop (): void { this.server.forceShutdown() }

  desired (deviceId: string, prop: string): string | undefined {
    return this.devices.get(deviceId)?.spec.properties.find((p: any) => p.name === prop)?.desired?.value
  }

  async waitFor (pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs
    while (!pred()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; calls: ${this.calls.map(c => c.rpc).join(', ')}`)
      await new Promise<void>(resolve => { const timer = setTimeout(resolve, 50); this.#waiters.push(() => { clearTimeout(timer); resolve() }) })
    }
  }
}

/** A DeviceManagerService client, as a mapper dials the edge's socket. */
export class EdgeClient {
  readonly client: any
  constructor (address: string) {
    this.client = new pkg.DeviceManagerService(address, grpc.credentials.createInsecure())
  }

  async call (rpc: 'MapperRegister' | 'ReportDeviceStatus' | 'ReportDeviceStates', req: object): Promise<any> {
    return await new Promise((resolve, reject) => {
      this.client[rpc](req, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: any) => err !== null ? reject(err) : resolve(res))
    })
  }

  async register (name: string, protocol: string, mapperSocket: string, withData = true): Promise<any> {
    return await this.call('MapperRegister', { withData, mapper: { name, version: 'v1.0', api_version: 'v1beta1', protocol, address: Buffer.from(mapperSocket), state: 'ok' } })
  }

  /** As mapper-framework's twin report: one twin per property, reported value + metadata. */
  async report (name: string, twins: Record<string, string>, namespace = 'default'): Promise<any> {
    const ts = String(Date.now())
    return await this.call('ReportDeviceStatus', {
      deviceName: name,
      deviceNamespace: namespace,
      reportedDevice: { twins: Object.entries(twins).map(([k, v]) => ({ propertyName: k, observedDesired: { value: '', metadata: {} }, reported: { value: v, metadata: { timestamp: ts, type: 'float' } } })) }
    })
  }

  close (): void { this.client.close() }
}

export async function startHub (t: TapTest, dataDir: string): Promise<Hub> {
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir, admin: false, ackTimeoutMs: 500, devices: true, durability: 'relaxed' })
  t.teardown(() => hub.close(200))
  return hub
}

export async function startDmiEdge (t: TapTest, hub: Hub, dataDir: string, socket: string, extra: Partial<EdgeOptions> = {}): Promise<EdgeNode> {
  const edge = await EdgeNode.start({
    hub: hub.urls[0] as string,
    nodeId: 'edge-1',
    token: hub.createToken('edge-1'),
    dataDir,
    backoff: { baseMs: 20, capMs: 200 },
    admin: false,
    durability: 'relaxed',
    devices: { mqtt: { port: 0 } },
    dmi: { socket, retryMinMs: 50, retryMaxMs: 400, callTimeoutMs: 2000 },
    ...extra
  })
  t.teardown(() => edge.close())
  return edge
}

export { decodeAnyMap }

export async function until (pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** A unix socket path in t.testdir() when short enough for sun_path (107 bytes), else in a fresh /tmp dir. */
export function socketPath (t: TapTest, dir: string, name: string): string {
  const p = `${dir}/${name}`
  if (Buffer.byteLength(p) <= 100) return p
  const tmp = mkdtempSync('/tmp/efdmi-')
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  return `${tmp}/${name}`
}

/**
 * The usual DMI scene: a hub with MODEL and default/dev1 (modbus) bound to edge-1, edge-1 serving DMI on
 * `dmi.sock` in a fresh test dir and holding dev1's snapshot, and a TestMapper listening on `m.sock`.
 */
export async function startDmiScene (t: TapTest): Promise<{ dir: string, hub: Hub, edge: EdgeNode, edgeSock: string, mapperSock: string, mapper: TestMapper }> {
  const dir = t.testdir({})
  const hub = await startHub(t, dir + '/hub')
  await hub.devices!.upsertModel(MODEL)
  await hub.devices!.upsertDevice(modbusDevice('dev1'))
  const edgeSock = socketPath(t, dir, 'dmi.sock')
  const edge = await startDmiEdge(t, hub, dir + '/edge', edgeSock)
  await until(() => edge.devices?.getTwin('default', 'dev1') !== undefined, 'snapshot at the edge')
  const mapperSock = socketPath(t, dir, 'm.sock')
  const mapper = await TestMapper.start(t, mapperSock)
  return { dir, hub, edge, edgeSock, mapperSock, mapper }
}
