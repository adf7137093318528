/**
 * The durable store contract behind reliable delivery (DESIGN.md §5–6), as
 * aedes-persistence does for MQTT: one async contract, an in-memory reference
 * implementation and an LMDB implementation, and one compliance suite
 * (test/reliable/store-compliance.ts) that every implementation runs.
 *
 * Three parts, each keyed by peer (a node id on the hub; 'cloud' on an edge):
 *  - outbox: per-peer sequence-numbered records waiting for a cumulative ack,
 *    with supersession by resource key/version, quotas, TTL and dead letters;
 *  - inbox: the highest sequence durably processed from each peer plus a
 *    persisted window of message ids for dedup;
 *  - resources (MetaManager role): the latest object and version per resource
 *    key, with delete tombstones so older updates cannot resurrect an object.
 *
 * Durability point: a promise returned by a writing method resolves only once
 * the write is durable in the store's mode — `sync`: on disk (fsync'd commit);
 * `relaxed`: committed but possibly not yet flushed (survives a process crash,
 * not a power loss). Writers issued close together share one transaction
 * (group commit), so throughput is not bound by one fsync per message.
 */

export type Durability = 'sync' | 'relaxed'

export interface OutboxInput {
  /** Envelope id (header.id). */
  id: string
  /** The encoded envelope. */
  bytes: Uint8Array
  /** Supersession key (the resource, per peer). Absent: never superseded. */
  key?: string
  /** resourceVersion; compared with compareVersions(). */
  version?: string
  /** Envelope operation (e.g. 'delete'), kept for inspection. */
  op?: string
  /** Absolute expiry, ms since the epoch. Absent: never expires. */
  expiresAt?: number
}

export interface OutboxRecord extends OutboxInput {
  seq: number
  enqueuedAt: number
  /** Times the receiver rejected this record (not plain resends). */
  rejections: number
}

export interface QuotaPolicy {
  /** Max pending records for the peer. */
  maxMessages: number
  /** Max pending bytes (sum of `bytes.byteLength`) for the peer. */
  maxBytes: number
  /** `reject`: refuse the new message (typed error to the producer); `drop-oldest`: dead-letter the oldest. */
  overflow: 'reject' | 'drop-oldest'
}

export type AppendOutcome =
  /** Durably queued as `seq`; `superseded` lists pending seqs it replaced (removed, recorded). */
  | { status: 'queued', seq: number, superseded: number[], dropped: number[] }
  /**
   * A pending record for the same key has an equal or newer version: this one is not queued.
   * Ties: a delete replaces a pending non-delete of the same version (deletes win ties, so the
   * delete of an object at version v is never lost behind its update v). Either side without a
   * version: arrival order, the new one replaces. (store-rules.ts isNewer)
   */
  | { status: 'stale', pendingVersion: string | undefined }
  /** Over quota with overflow `reject` (or a single message larger than maxBytes). */
  | { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: string }

export interface DeadLetter {
  peer: string
  seq: number
  id: string
  key?: string
  /** EF_TTL_EXPIRED, EF_QUOTA_DROPPED, EF_SUPERSEDED, EF_REJECTED_BY_PEER, ... */
  code: string
  reason: string
  at: number
  size: number
  /** The message itself was kept with the record (at most DEAD_BODY_MAX bytes): it can be requeued. */
  requeueable?: boolean
}

/** Dead letters keep the message body up to this size, for requeue from the admin API. */
export const DEAD_BODY_MAX = 64 * 1024

export interface OutboxStats {
  count: number
  bytes: number
  /** Lowest pending seq (0 when empty). */
  firstSeq: number
  /** Highest seq ever assigned for this peer (0 when none). */
  lastSeq: number
}

export interface InboundItem {
  /** Sequence number assigned by the sending peer. */
  seq: number
  id: string
  /** Resource key; when present the resource store is updated (if the version is newer). */
  key?: string
  version?: string
  op?: string
  /** Encoded envelope, stored as the resource's latest object. */
  bytes?: Uint8Array
}

export interface InboundResult {
  /**
   * Per item: 'new' (process it), 'duplicate' (id seen or seq ≤ received), 'stale' (older or
   * equal version than stored, same tie rule as the outbox: a delete replaces an update of the
   * same version, an update never resurrects a tombstone of the same version).
   */
  outcome: Array<'new' | 'duplicate' | 'stale'>
}

export interface ResourceRecord {
  key: string
  version: string | undefined
  op: string | undefined
  /** Latest encoded envelope; undefined for a delete tombstone. */
  bytes: Uint8Array | undefined
  deleted: boolean
  updatedAt: number
}

export interface ReliableStore {
  readonly durability: Durability
  /**
   * Whether the sender may send a record it has just appended without reading it back through
   * `pending()` (sender-fresh.ts). The cluster store says false: it removes acknowledged messages
   * by id, from what its outbox reader handed out, so every record sent must come through `pending()`.
   * @default true
   */
  readonly directSend?: boolean

  // ---- outbox ---------------------------------------------------------------
  /** Append in one transaction, applying supersession and the quota. Resolves once durable. */
  append (peer: string, items: OutboxInput[], quota: QuotaPolicy, now: number): Promise<AppendOutcome[]>
  /** Pending records with seq > afterSeq, in seq order, at most `limit` (synchronous read). */
  pending (peer: string, afterSeq: number, limit: number): OutboxRecord[]
  /** Cumulative ack: remove every pending record with seq ≤ upto. Resolves with the count removed. */
  ack (peer: string, upto: number): Promise<number>
  /**
   * A new session's peer stated it has everything up to `r` (its `resume`), just before the sender
   * acks `r`. Optional: a store whose outbox several processes feed (the cluster store) uses it to
   * tell what this process sent in this session from what the peer says it had from elsewhere.
   */
  resumed?: (peer: string, r: number) => void
  /** The receiver rejected `seq`: count it; at `maxRejections` the record is dead-lettered. Resolves with the count (or -1 if dead-lettered / unknown). */
  reject (peer: string, seq: number, maxRejections: number, code: string, reason: string, now: number): Promise<number>
  /** Dead-letter every record with expiresAt ≤ now (code EF_TTL_EXPIRED). Resolves with them. */
  expire (peer: string, now: number): Promise<OutboxRecord[]>
  outboxStats (peer: string): OutboxStats
  /** Peers that have pending records. */
  peersWithPending (): string[]
  /** Peers with pending records and their counters, in one pass (admin API, metrics at 10k+ peers). */
  pendingStats? (): Array<{ peer: string, count: number, bytes: number }>
  /** Most recent dead letters first. */
  deadLetters (peer?: string, limit?: number): DeadLetter[]
  /** The encoded message of a requeueable dead letter (admin requeue), if kept. */
  deadLetterBody? (peer: string, seq: number): Uint8Array | undefined
  /** Remove dead letters: of `peer` (every peer when undefined), only `seqs` when given. Resolves with the count removed. */
  purgeDeadLetters? (peer: string | undefined, seqs?: number[]): Promise<number>

  // ---- inbox -----------------------------------------------------------------
  /** Highest seq from `peer` durably processed (0 if none). */
  receivedSeq (peer: string): number
  /**
   * One transaction: classify items (dedup by seq and by id window; stale by
   * resource version), apply resource updates of the 'new' ones, remember their
   * ids (window of `dedupWindow` ids per peer), and raise receivedSeq(peer) to
   * the highest seq given. Resolves once durable.
   */
  commitInbound (peer: string, items: InboundItem[], now: number): Promise<InboundResult>
  /**
   * Is `id` in the peer's dedup window (synchronous read)? The receiver asks BEFORE handing a
   * message to the application, so a producer's retry with the same id (a new seq) is dropped
   * instead of delivered twice. Counts what is committed and what a commit still in flight
   * wrote; a failed commit is forgotten (the sender resends everything it covered anyway).
   */
  hasInboundId (peer: string, id: string): boolean

  // ---- resources (MetaManager) -----------------------------------------------
  getResource (key: string): ResourceRecord | undefined
  /** Resources whose key starts with `prefix`, in key order, at most `limit`. */
  listResources (prefix?: string, limit?: number): ResourceRecord[]

  /** Flush and close. Idempotent. */
  close (): Promise<void>
}

/**
 * Order of resourceVersions: two strings of digits compare as integers (etcd /
 * Kubernetes resourceVersion style); anything else compares as strings.
 * Returns <0, 0, >0.
 */
export function compareVersions (a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    a = a.replace(/^0+(?=\d)/, '')
    b = b.replace(/^0+(?=\d)/, '')
    if (a.length !== b.length) return a.length - b.length
  }
  return a < b ? -1 : a > b ? 1 : 0
}
