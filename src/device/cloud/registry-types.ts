/**
 * Public types of the cloud device registry (src/device/cloud/registry.ts).
 */
import type { Clock } from '../../util/clock.js'
import type { Envelope } from '../../codec/envelope.js'
import type { Logger } from '../../ops/logger.js'
import type { Registry } from '../../ops/metrics.js'
import type { EnqueueOutcome } from '../../reliable/sender.js'
import type { DeviceModel, DeviceSpec, DeviceState, TwinValue } from '../model.js'
import type { DesiredValue, MapperGrant, ReportedValue } from '../protocol.js'
import type { DeviceKv } from './registry-store.js'

/** Where the registry hands cloud → edge messages: the hub's reliable lane (HubCore.sendReliable). */
export interface DeviceSink {
  sendReliable (nodeId: string, env: Envelope): Promise<EnqueueOutcome>
}

export interface DeviceRegistryOptions {
  /** LMDB directory; omitted = in memory (lost on close). */
  path?: string
  /**
   * A store to use instead of `path` (cluster mode: the JetStream-backed store
   * of src/cluster/registry-store.ts, shared by every hub). The registry closes it.
   */
  kv?: DeviceKv
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
export type HubDevicesOption = boolean | Omit<DeviceRegistryOptions, 'path' | 'kv' | 'sink' | 'clock' | 'logger' | 'metricsRegistry'> & {
  /** Keep the registry in memory instead of `{dataDir}/devices`. @default false */
  inMemory?: boolean
}

/** A device credential as stored (the secret itself is never stored). */
export interface StoredCredential {
  username: string
  passwordHash: string
  issuedAt: number
}

/** What the persisted record and the getDevice() view of one device share. */
export interface DeviceRecordBase {
  /** The device as the API caller set it (upsertDevice). */
  spec: DeviceSpec
  /** Registry revision of the device's last snapshot-relevant change (== snapshot resourceVersion). */
  revision: number
  /** Desired (KubeEdge "expected") values, each with the revision it was set at: the cloud is authoritative. */
  desired: Record<string, DesiredValue>
  /** Reported (actual) values from the edge, which is authoritative for them. */
  reported: Record<string, ReportedValue>
  /** Last state the edge reported. @default 'unknown' */
  state: DeviceState
  /** Highest snapshot revision the bound node reported holding (TwinReport.baseRevision; 0 = none yet); `syncedRevision === revision` means in sync. */
  syncedRevision: number
  /** A ResyncRequest is outstanding for this device (cleared by a `full` report). */
  resyncPending: boolean
  /** When the device was created (ms). */
  createdAt: number
  /** When its spec, desired values or credentials last changed (ms). */
  updatedAt: number
}

/** The persisted record of one device (msgpack in LMDB: absent times are `null`). */
export interface StoredDevice extends DeviceRecordBase {
  /** When `state` was reported (ms). */
  stateAt: number | null
  /** Last report of any kind from the edge for this device (ms). */
  lastSeen: number | null
  /** Highest edgeSeq applied from the bound node (gap detection; reset on re-bind). */
  lastEdgeSeq: number
  /** Device credentials (scrypt hashes only); sent to the edge in the snapshot. */
  credentials: StoredCredential[]
}

/** A mapper grant as stored: the MapperGrant sent to the edge (protocol.ts) plus when it was issued. */
export interface StoredMapper extends MapperGrant {
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

/** getDevice() result: the stored record without edge bookkeeping and password hashes. */
/** Why a device's bound node cannot sync it (issue 12: never silent). */
export interface DeviceSyncBlock {
  /** EF_EDGE_DEVICES_DISABLED: the node's edge runs without a device broker (it stated no `devices` capability). */
  code: 'EF_EDGE_DEVICES_DISABLED'
  reason: string
  /** When the hub learned it (ms): the node's last session start. */
  since: number
}

export interface DeviceView extends DeviceRecordBase {
  /** Set while the bound node cannot sync devices; the device messages stay queued and apply once it can. */
  syncBlocked?: DeviceSyncBlock
  /** When `state` was reported (ms); undefined before the first state report. */
  stateAt: number | undefined
  /** Last report of any kind from the edge (ms); undefined before the first. */
  lastSeen: number | undefined
  /** The bound node (`spec.nodeId`). */
  nodeId: string | undefined
  /** Usernames of the device's credentials (hashes are not returned). */
  credentials: Array<Omit<StoredCredential, 'passwordHash'>>
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
