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
}

/** Device state values accepted on `…/state/update` (KubeEdge). */
export const DEVICE_STATES = ['online', 'offline', 'ok', 'unknown', 'unhealthy'] as const
export type DeviceState = typeof DEVICE_STATES[number]

/** `{namespace}/{name}` */
export function deviceId (d: { namespace: string, name: string }): string {
  return `${d.namespace}/${d.name}`
}
