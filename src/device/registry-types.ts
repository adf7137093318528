/**
 * Public types of the cloud device registry (src/device/registry.ts).
 */
import type { Clock } from '../clock.js'
import type { Envelope } from '../envelope.js'
import type { Logger } from '../ops/logger.js'
import type { Registry } from '../ops/metrics.js'
import type { AppendOutcome } from '../reliable/store.js'
import type { DeviceModel, DeviceSpec, DeviceState, TwinValue } from './model.js'
import type { DesiredValue, ReportedValue } from './protocol.js'

/** Where the registry hands cloud → edge messages: the hub's reliable lane (HubCore.sendReliable). */
export interface DeviceSink {
  sendReliable (nodeId: string, env: Envelope): Promise<AppendOutcome>
}

export interface DeviceRegistryOptions {
  /** LMDB directory; omitted = in memory (lost on close). */
  path?: string
  /** LMDB durability, as the hub's reliable store. @default 'sync' */
  durability?: 'sync' | 'relaxed'
  /** Delivery of snapshots, removals, mapper grants and resync requests. Without one they wait (persisted) until `attach()`. */
  sink?: DeviceSink
  /** prom-client registry for `edgefabric_hub_device_*` metrics. @default a private registry */
  metricsRegistry?: Registry
  clock?: Clock
  logger?: Logger
  /** Changes a watcher may fall behind before it is closed with WatchOverflowError. @default 1024 */
  watchBuffer?: number
  /** Concurrent watchers (each holds a buffer). @default 1024 */
  maxWatchers?: number
  /** Upload records kept (bounded FIFO log, oldest evicted first, counted). @default 10000 */
  maxUploads?: number
  /** Largest upload payload kept, bytes (larger ones are truncated, counted). @default 65536 */
  maxUploadBytes?: number
  /** Retry period for messages the lane refused (quota) or could not take. @default 5000 */
  retryMs?: number
}

/** What the hub's `devices` option accepts. */
export type HubDevicesOption = boolean | Omit<DeviceRegistryOptions, 'path' | 'sink' | 'clock' | 'logger' | 'metricsRegistry'> & {
  /** Keep the registry in memory instead of `{dataDir}/devices`. @default false */
  inMemory?: boolean
}

/** A device credential as stored (the secret itself is never stored). */
export interface StoredCredential {
  username: string
  passwordHash: string
  issuedAt: number
}

/** The persisted record of one device. */
export interface StoredDevice {
  spec: DeviceSpec
  /** Registry revision of the device's last snapshot-relevant change (== snapshot resourceVersion). */
  revision: number
  desired: Record<string, DesiredValue>
  reported: Record<string, ReportedValue>
  state: DeviceState
  /** When `state` was reported (ms). */
  stateAt: number | null
  /** Last report of any kind from the edge for this device (ms). */
  lastSeen: number | null
  /** Highest edgeSeq applied from the bound node (gap detection; reset on re-bind). */
  lastEdgeSeq: number
  /** Highest snapshot revision the bound node said it holds (TwinReport.baseRevision). */
  syncedRevision: number
  /** A ResyncRequest is outstanding for this device (cleared by a `full` report). */
  resyncPending: boolean
  credentials: StoredCredential[]
  createdAt: number
  updatedAt: number
}

export interface StoredMapper {
  nodeId: string
  name: string
  username: string
  passwordHash: string
  devices: string[]
  revision: number
  issuedAt: number
}

/** A cloud → edge message committed with the change that caused it, not yet handed to the lane. */
export interface Dispatch {
  nodeId: string
  resource: string
  operation: string
  /** resourceVersion (decimal revision) or null for unversioned messages. */
  version: string | null
  content: unknown
}

export interface UploadEntry {
  n: number
  nodeId: string
  topic: string
  payload: Uint8Array
  timestamp: number
  receivedAt: number
  truncated: boolean
}

/** getDevice() result. */
export interface DeviceView {
  spec: DeviceSpec
  revision: number
  desired: Record<string, DesiredValue>
  reported: Record<string, ReportedValue>
  state: DeviceState
  stateAt: number | undefined
  lastSeen: number | undefined
  nodeId: string | undefined
  /** Highest snapshot revision the bound node reported holding (0 = none yet); `syncedRevision === revision` means in sync. */
  syncedRevision: number
  resyncPending: boolean
  /** Usernames of the device's credentials (hashes are not returned). */
  credentials: Array<{ username: string, issuedAt: number }>
  createdAt: number
  updatedAt: number
}

export interface ListDevicesFilter {
  nodeId?: string
  /** All must match. */
  labels?: Record<string, string>
  namespace?: string
  model?: string
  /** At most this many, in device id order. @default unlimited (HTTP: 1000) */
  limit?: number
  /** Only devices whose id `{ns}/{name}` sorts after this one (pagination cursor). */
  after?: string
}

export type DeviceChangeType =
  | 'model-upserted' | 'model-deleted'
  | 'device-upserted' | 'device-deleted'
  | 'desired' | 'reported' | 'state' | 'upload' | 'credentials'
  | 'conflict' | 'resync' | 'mapper'

/** One change, as emitted on 'change' and by watch(). */
export interface DeviceChange {
  type: DeviceChangeType
  /** Device (or model, for model-*) namespace/name; mapper: nodeId/name. */
  namespace: string
  name: string
  /** Registry revision after the change (unchanged for reported/state/upload). */
  revision: number
  nodeId?: string
  at: number
  /** Type-specific detail: changed desired/reported values, state, upload topic, conflict outcome… */
  detail?: Record<string, unknown>
}

export interface WatchFilter {
  namespace?: string
  name?: string
  nodeId?: string
  types?: DeviceChangeType[]
}

export interface DesiredInput { [property: string]: TwinValue }
