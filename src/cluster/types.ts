/**
 * Cluster mode (issue 17, DESIGN.md §10b): options and the narrow interfaces
 * through which src/cluster talks to a hub. The cluster layer never imports
 * src/hub: the hub hands it an object of this shape (ClusterHubPort), so the
 * single-hub default stays untouched by anything here.
 */
import type { Envelope } from '../codec/envelope.js'
import { EdgeFabricError } from '../errors.js'

export interface ClusterOptions {
  /** NATS server URLs, e.g. `['nats://a:4222', 'nats://b:4222']`. Required. */
  servers: string[]
  /**
   * Cluster name: prefixes every subject (`ef.<name>.…`), stream
   * (`EF_<NAME>_…`) and KV bucket (`ef_<name>_…`), so several edgefabric
   * clusters can share one NATS system. Letters, digits, '-' and '_'.
   * @default 'default'
   */
  name?: string
  /** NATS credentials file (JWT + nkey seed, `nsc` format). */
  credsFile?: string
  /** JetStream replicas of every stream and bucket (R3 on a 3-server cluster). @default 3 */
  replicas?: number
  /**
   * Secret that encrypts the hub identity (CA key, token key, QUIC key) kept
   * in the cluster (identity.ts). Without it the identity is not stored in
   * the cluster: copy `dataDir/identity/` to every hub, and the cluster only
   * checks that all hubs present the same one. Env: EDGEFABRIC_CLUSTER_SECRET.
   */
  identitySecret?: string
  /** How long the downstream and upstream streams keep a message at most (the bound behind TTL checks at delivery). @default 7 days */
  maxAgeMs?: number
  /** Timeout of one JetStream API call or publish. @default 5000 */
  timeoutMs?: number
  /** A name for this hub in presence records and logs. @default `<hostname>-<pid>-<random>` */
  hubName?: string
  /**
   * Snapshot the device registry's log every this many entries and purge the log below the
   * older of the two kept snapshots (registry-snapshot.ts): start-up replays at most about this
   * many entries, the log holds 1–2× this many. 0 turns compaction off (the log then grows
   * without bound). @default 10000
   */
  registrySnapshotEvery?: number
}

/** Which hub holds a node's session, since when (presence bucket value). */
export interface PresenceRecord {
  hub: string
  session: string
  since: number
}

/**
 * What the cluster needs from the hub it serves (HubCore satisfies it).
 * Every member acts on sessions held by THIS hub only.
 */
export interface ClusterHubPort {
  /** Best-effort send to a node whose session this hub holds; throws when it does not. */
  sendLocal (nodeId: string, env: Envelope): Promise<void>
  /** Request to a node whose session this hub holds. */
  requestLocal (nodeId: string, env: Envelope, timeoutMs: number): Promise<Envelope>
  /** Broadcast to the matching nodes held by this hub. */
  broadcastLocal (selector: Record<string, string>, env: Envelope): Promise<{ sent: string[], failed: string[] }>
  /** Close this hub's session for the node (last connection wins, across hubs). */
  disconnect (nodeId: string, reason: string): Promise<void>
  /** True when this hub holds an active session for the node. */
  holds (nodeId: string): boolean
  /** New records for the node's outbox arrived from the cluster: let the lane send them. */
  pumpLane (nodeId: string): void
}

/** The hub cannot reach the cluster (NATS/JetStream) right now: new reliable work is refused. */
export class ClusterUnavailableError extends EdgeFabricError {
  static readonly code = 'EF_CLUSTER_UNAVAILABLE'
  constructor (message: string, options?: { cause?: unknown }) {
    super(ClusterUnavailableError.code, message, options)
  }
}

/** The hub identity in the cluster differs from this hub's own. */
export class ClusterIdentityMismatchError extends EdgeFabricError {
  static readonly code = 'EF_CLUSTER_IDENTITY_MISMATCH'
  constructor (message: string) {
    super(ClusterIdentityMismatchError.code, message)
  }
}
