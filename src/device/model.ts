/**
 * Device models and devices (DESIGN.md §8): the shapes shared by the cloud
 * registry (src/device/cloud/registry*.ts) and the edge twin engine
 * (src/device/twin*.ts). Plain data, msgpack-friendly; no behaviour here
 * except pure validation helpers that both sides use.
 */

/** Property types, as KubeEdge's device model `type` (metadata.type on the wire). */
export const PROPERTY_TYPES = ['int', 'float', 'string', 'boolean'] as const
export type PropertyType = typeof PROPERTY_TYPES[number]

/** KubeEdge `accessMode`. ReadOnly: only the device reports it; ReadWrite: the cloud may set a desired value. */
export const ACCESS_MODES = ['ReadOnly', 'ReadWrite'] as const
export type AccessMode = typeof ACCESS_MODES[number]

export type TwinValue = number | string | boolean

export interface PropertySpec {
  name: string
  type: PropertyType
  /** @default 'ReadWrite' */
  accessMode: AccessMode
  /** Numeric types only. */
  minimum?: number
  maximum?: number
  unit?: string
  /** Initial desired value for ReadWrite properties. */
  default?: TwinValue
  description?: string
}

export interface DeviceModel {
  /** `{namespace}/{name}` is the model id. */
  namespace: string
  name: string
  properties: PropertySpec[]
}

export interface DeviceSpec {
  namespace: string
  name: string
  /** Model id `{namespace}/{name}`. */
  model: string
  labels: Record<string, string>
  /** Static attributes pushed to the mapper on `…/updated` (KubeEdge device attributes). */
  attributes: Record<string, string>
  /** Node the device is bound to; undefined = unbound. */
  nodeId?: string
  /**
   * How a KubeEdge mapper reaches the device (KubeEdge `spec.protocol`): the
   * edge hands the device to the DMI mapper registered for `protocolName`
   * (src/device/edge/dmi/). Absent = the device is not served over DMI.
   */
  protocol?: ProtocolConfig
  /** Per-property mapper settings (KubeEdge `spec.properties`); names must be properties of the model. Absent = every model property, no visitor config. */
  properties?: DevicePropertyConfig[]
  /** KubeEdge `spec.methods`. */
  methods?: DeviceMethodSpec[]
  /** KubeEdge `spec.stateReport`: how the mapper reports the device state. */
  stateReport?: { reportCycle?: number, reportToCloud?: boolean }
}

/**
 * A customized-protocol config (KubeEdge ProtocolConfig / VisitorConfig).
 * edgefabric does not interpret `configData`; its values are scalars because
 * DMI carries each as a protobuf wrapper in an Any (edgecore's dataToAny).
 */
export interface ProtocolConfig {
  protocolName: string
  configData?: Record<string, string | number | boolean>
}

/** KubeEdge DeviceProperty (device side): how the mapper collects and pushes one property. */
export interface DevicePropertyConfig {
  /** A property of the device's model. */
  name: string
  visitors?: ProtocolConfig
  /** ms (KubeEdge int64). */
  reportCycle?: number
  /** ms (KubeEdge int64). */
  collectCycle?: number
  reportToCloud?: boolean
  /**
   * KubeEdge PushMethod as JSON (`http`, `mqtt`, `otel`, `dbMethod`,
   * `anomalyDetection`, field names as in the DMI proto). Opaque to
   * edgefabric: stored and forwarded to the mapper.
   */
  pushMethod?: Record<string, unknown>
}

/** KubeEdge DeviceMethod. */
export interface DeviceMethodSpec {
  name: string
  description?: string
  propertyNames: string[]
}

/**
 * Device state values accepted on `…/state/update`, lower case: KubeEdge's five
 * (dtmanager/device.go) plus the two more mappers-go sends (`mappers/common`
 * DEVSTERR "ERROR", DEVSTDISCONN "DISCONNECTED"), which edgecore drops silently
 * and issue 14 item 1 asks us to store as sent.
 */
export const DEVICE_STATES = ['online', 'offline', 'ok', 'unknown', 'unhealthy', 'disconnected', 'error'] as const
export type DeviceState = typeof DEVICE_STATES[number]

/** `{namespace}/{name}` */
export function deviceId (d: { namespace: string, name: string }): string {
  return `${d.namespace}/${d.name}`
}
