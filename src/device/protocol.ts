/**
 * Hub ↔ edge device synchronisation (DESIGN.md §5, §8). All traffic rides the
 * reliable lanes in router group `$device`:
 *
 * Cloud → edge (hub.sendReliable to the bound node):
 *  - resource `device/{ns}/{name}`, operation `update`, header.resourceVersion =
 *    the registry's revision of that device (a decimal counter, strictly
 *    increasing per device). Content is a FULL snapshot (`DeviceSnapshot`), so
 *    supersession in the outbox keeps only the newest one pending per device
 *    and any gap at the edge heals with the next snapshot.
 *  - same resource, operation `delete` (content `DeviceRemoved`) when the
 *    device is deleted or re-bound to another node. resourceVersion is the
 *    registry revision at removal, so an older update never overwrites it.
 *  - resource `mapper/{nodeId}/{name}`, operation `update`/`delete` (content
 *    `MapperGrant`): a mapper credential granted a set of devices on that node.
 *  - resource `device-resync/{nodeId}`, operation `query` (content
 *    `ResyncRequest`): the cloud asks the edge to re-report full twins
 *    (it detected a gap in `edgeSeq`).
 *
 * Edge → cloud (edge durable outbox, EdgeNode.sendUpstream reliable):
 *  - resource `twin/{ns}/{name}`, operation `report` (content `TwinReport`).
 *  - resource `state/{ns}/{name}`, operation `state` (content `StateReport`).
 *  - resource `upload/{topic}`, operation `upload` (content `UploadRecord`).
 *  - resource `device-resync/{nodeId}`, operation `query` (content
 *    `ResyncRequest`): the edge asks for all snapshots of its devices (empty
 *    store after a wipe, or it detected a problem).
 *
 * Conflict rules (README "Device twins"):
 *  - desired/expected: the cloud is authoritative. An expected value set at
 *    the edge while disconnected is sent with `baseRevision` = the snapshot
 *    revision it was made against; the cloud accepts it only if that property's
 *    desired value has not changed at the cloud since `baseRevision` (merge
 *    against the last-synced base, as AWS Greengrass); otherwise the cloud's
 *    value wins and the next snapshot carries it back.
 *  - reported/actual: the edge is authoritative; the cloud keeps the report
 *    with the highest `edgeSeq` per device.
 *  - `edgeSeq` is a per-device counter at the edge, +1 per report. A report
 *    whose `edgeSeq` is not last+1 (gap) makes the cloud apply it and then
 *    send a ResyncRequest, and the edge answers with `full: true` reports
 *    (as Azure IoT Edge's full twin resync) instead of silently diverging.
 */
import type { DeviceModel, DeviceSpec, DeviceState, TwinValue } from './model.js'

export const DEVICE_GROUP = '$device'

export interface DesiredValue {
  value: TwinValue
  /** Registry revision at which this desired value was last set. */
  revision: number
  /** ms since epoch, when set. */
  timestamp: number
}

export interface DeviceSnapshot {
  /** Includes the KubeEdge mapper fields (protocol, properties, methods, stateReport) the edge hands to DMI mappers (issue 14). */
  device: DeviceSpec
  model: DeviceModel
  /** Desired (KubeEdge "expected") values per property name. */
  desired: Record<string, DesiredValue>
  /** Registry revision of this device (== header.resourceVersion). */
  revision: number
  /**
   * Per-device MQTT credentials issued by the cloud device API. Only a salted
   * hash travels (format `scrypt$<salt b64>$<hash b64>`, see
   * src/device/credentials.ts), so the edge can authenticate devices while
   * offline without ever holding the secret.
   */
  credentials: Array<{ username: string, passwordHash: string }>
}

/** A mapper credential: may act for every device listed (DESIGN.md §8, §9). */
export interface MapperGrant {
  nodeId: string
  name: string
  username: string
  passwordHash: string
  /** Device ids `{namespace}/{name}`. */
  devices: string[]
  revision: number
}

export interface DeviceRemoved {
  namespace: string
  name: string
  revision: number
  reason: 'deleted' | 'rebound'
}

export interface ReportedValue {
  value: TwinValue
  /** ms since epoch, as reported by the mapper (or edge receive time). */
  timestamp: number
}

export interface TwinReport {
  namespace: string
  name: string
  /** Per-device edge counter, +1 per report (gap detection). */
  edgeSeq: number
  /** Reported (actual) values changed by this report, or all of them when `full`. */
  reported: Record<string, ReportedValue>
  /** Expected values set locally at the edge (only ReadWrite properties), merged at the cloud against `baseRevision`. */
  expected?: Record<string, { value: TwinValue, timestamp: number }>
  /** Snapshot revision the edge held when it made this report. */
  baseRevision: number
  /** True when this is a full resync report (all reported values). */
  full?: boolean
}

export interface StateReport {
  namespace: string
  name: string
  /** Canonical (lower-case) state. */
  state: DeviceState
  timestamp: number
  /** The state as the mapper sent it when it differs from `state` ("OK"; KubeEdge compares case-insensitively). */
  reportedAs?: string
}

export interface UploadRecord {
  /** MQTT topic the device published on. */
  topic: string
  /** Raw payload (bytes). */
  payload: Uint8Array
  timestamp: number
}

export interface ResyncRequest {
  nodeId: string
  /** Devices to resync; undefined = all devices bound to the node. */
  devices?: Array<{ namespace: string, name: string }>
}

export function deviceResource (namespace: string, name: string): string { return `device/${namespace}/${name}` }
export function twinResource (namespace: string, name: string): string { return `twin/${namespace}/${name}` }
export function stateResource (namespace: string, name: string): string { return `state/${namespace}/${name}` }
export function mapperResource (nodeId: string, name: string): string { return `mapper/${nodeId}/${name}` }
export function resyncResource (nodeId: string): string { return `device-resync/${nodeId}` }
