/**
 * The DMI v1beta1 contract (issue 14 part 2): loads our hand-written
 * proto/kubeedge-dmi-v1beta1.proto (wire-compatible with KubeEdge's
 * staging/src/github.com/kubeedge/api/apis/dmi/v1beta1/api.proto) with
 * @grpc/proto-loader, and the TypeScript shapes of the messages as
 * proto-loader hands them over (keepCase: the proto's own field names;
 * int64 as number; absent fields filled with defaults).
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

/**
 * proto/ sits at the package root: four levels up from src/device/edge/dmi and
 * dist/device/edge/dmi, five from dist-bench/src/device/edge/dmi (benchmarks).
 */
export const DMI_PROTO_PATH = ((): string => {
  const rel = 'proto/kubeedge-dmi-v1beta1.proto'
  for (let up = 4; up <= 6; up++) {
    const p = fileURLToPath(new URL('../'.repeat(up) + rel, import.meta.url))
    if (existsSync(p)) return p
  }
  return fileURLToPath(new URL('../../../../' + rel, import.meta.url))
})()

export const LOADER_OPTIONS = Object.freeze({ keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true })

interface DmiPackage {
  DeviceManagerService: grpc.ServiceClientConstructor
  DeviceMapperService: grpc.ServiceClientConstructor
}

let cached: DmiPackage | undefined

/** The two services (service definitions and client constructors), loaded once per process. */
export function dmiPackage (): DmiPackage {
  if (cached === undefined) {
    const def = loadSync(DMI_PROTO_PATH, { ...LOADER_OPTIONS })
    cached = (grpc.loadPackageDefinition(def) as unknown as { v1beta1: DmiPackage }).v1beta1
  }
  return cached
}

export interface PbAny { type_url: string, value: Uint8Array }
export interface PbCustomizedValue { data: Record<string, PbAny> }
export interface PbProtocolConfig { protocolName: string, configData: PbCustomizedValue | null }
export interface PbTwinProperty { value: string, metadata: Record<string, string> }
export interface PbDeviceProperty {
  name: string
  desired: PbTwinProperty | null
  visitors: PbProtocolConfig | null
  reportCycle: number
  collectCycle: number
  reportToCloud: boolean
  /** KubeEdge PushMethod, as JSON with the proto's field names. */
  pushMethod: Record<string, unknown> | null
}
export interface PbDeviceMethod { name: string, description: string, propertyNames: string[] }
export interface PbTwin { propertyName: string, observedDesired: PbTwinProperty | null, reported: PbTwinProperty | null }
export interface PbDeviceStatus { twins: PbTwin[], reportToCloud: boolean, reportCycle: number }
export interface PbDevice {
  name: string
  namespace: string
  spec: { deviceModelReference: string, protocol: PbProtocolConfig | null, properties: PbDeviceProperty[], methods: PbDeviceMethod[] } | null
  status: PbDeviceStatus | null
}
export interface PbModelProperty { name: string, description: string, type: string, accessMode: string, minimum: string, maximum: string, unit: string }
export interface PbDeviceModel { name: string, namespace: string, spec: { properties: PbModelProperty[], commands: unknown[] } | null }
export interface PbMapperInfo { name: string, version: string, api_version: string, protocol: string, address: Uint8Array, state: string }
export interface PbMapperRegisterRequest { withData: boolean, mapper: PbMapperInfo | null }
export interface PbMapperRegisterResponse { modelList: PbDeviceModel[], deviceList: PbDevice[] }
export interface PbReportDeviceStatusRequest { deviceName: string, deviceNamespace: string, reportedDevice: PbDeviceStatus | null }
export interface PbReportDeviceStatesRequest { deviceName: string, deviceNamespace: string, state: string }
