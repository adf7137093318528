/**
 * Every NATS name edgefabric uses in cluster mode, in one place (README
 * "Cluster mode" documents them for non-Node clients). `<c>` is the cluster
 * name, `<node>` a node name (lower-case letters, digits, '-' and '.'; a '.'
 * is written as '_' in subject tokens — node names never contain '_').
 *
 * Streams (file storage, R3):
 *   EF_<C>_DOWN  `ef.<c>.down.<node>.r.<keyhash>`  reliable downstream, one per resource
 *                                                  (max_msgs_per_subject 1: supersession)
 *                `ef.<c>.down.<node>.m.<id>`        reliable downstream, unversioned
 *   EF_<C>_UP    `ef.<c>.up.<node>`                 reliable upstream (what edges sent, acked)
 *   EF_<C>_DEAD  `ef.<c>.dead.<node>`               dead letters with reasons (JSON)
 * Core subjects (not stored):
 *   `ef.<c>.node.<node>.send`   best-effort message to a connected node (any hub serves it)
 *   `ef.<c>.node.<node>.req`    request to a connected node; the reply is the response
 *   `ef.<c>.live.up.<node>`     best-effort upstream messages, as they arrive
 *   `ef.<c>.broadcast`          broadcast by labels; every hub replies {sent, failed}
 *   `ef.<c>.hub.<hub>.kick`     (internal) presence takeover notices
 * KV buckets (R3): ef_<c>_presence, ef_<c>_bindings, ef_<c>_inbox, ef_<c>_identity.
 */
import { createHash } from 'node:crypto'

/** Message headers (NATS headers, case-insensitive). */
export const H = {
  /** Envelope id; also Nats-Msg-Id for JetStream's duplicate window. */
  id: 'Ef-Id',
  /** resourceVersion (compared as integers when both are digit strings). */
  version: 'Ef-Version',
  /** Resource key (router.resource). */
  resource: 'Ef-Resource',
  operation: 'Ef-Operation',
  group: 'Ef-Group',
  /** Absolute expiry, ms since the epoch (2.9 has no per-message TTL: checked at delivery). */
  expiresAt: 'Ef-Expires-At',
  /** The payload is an edgefabric envelope in the stateless wire form, not bare content. */
  envelope: 'Ef-Envelope',
  /** Node that sent an upstream message (from its authenticated session). */
  node: 'Ef-Node',
  /** Upstream: the edge's lane sequence number. */
  seq: 'Ef-Seq',
  /** Content encoding of a bare payload: `json` or `bytes`. */
  content: 'Ef-Content',
  /** Error code on a failed request reply. */
  error: 'Ef-Error'
} as const

export function nodeToken (nodeId: string): string {
  return nodeId.replace(/\./g, '_')
}

export function tokenToNode (token: string): string {
  return token.replace(/_/g, '.')
}

/** A subject-safe digest of a resource key (resource names may hold '/', '.', spaces…). */
export function keyHash (key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 22)
}

/** A subject token needing no digest: letters, digits, '-' and '_' (no '.', '*', '>', spaces), at most 64. */
const SAFE_TOKEN = /^[A-Za-z0-9_-]{1,64}$/

export class Names {
  readonly cluster: string
  readonly prefix: string
  readonly streamDown: string
  readonly streamUp: string
  readonly streamDead: string
  readonly bucketPresence: string
  readonly bucketBindings: string
  readonly bucketInbox: string
  readonly bucketIdentity: string

  constructor (cluster: string) {
    this.cluster = cluster
    this.prefix = `ef.${cluster}`
    const up = cluster.toUpperCase().replace(/-/g, '_')
    this.streamDown = `EF_${up}_DOWN`
    this.streamUp = `EF_${up}_UP`
    this.streamDead = `EF_${up}_DEAD`
    const low = cluster.replace(/-/g, '_')
    this.bucketPresence = `ef_${low}_presence`
    this.bucketBindings = `ef_${low}_bindings`
    this.bucketInbox = `ef_${low}_inbox`
    this.bucketIdentity = `ef_${low}_identity`
  }

  down (nodeId: string): string { return `${this.prefix}.down.${nodeToken(nodeId)}.>` }
  downResource (nodeId: string, key: string): string { return `${this.prefix}.down.${nodeToken(nodeId)}.r.${keyHash(key)}` }
  /** An id that is already one subject token (newMessage's UUIDs are) is used as is: a sha256 per message showed in the bench/cluster profile. */
  downMessage (nodeId: string, id: string): string { return `${this.prefix}.down.${nodeToken(nodeId)}.m.${SAFE_TOKEN.test(id) ? id : keyHash(id)}` }
  up (nodeId: string): string { return `${this.prefix}.up.${nodeToken(nodeId)}` }
  dead (nodeId: string): string { return `${this.prefix}.dead.${nodeToken(nodeId)}` }
  nodeSend (nodeId: string): string { return `${this.prefix}.node.${nodeToken(nodeId)}.send` }
  nodeReq (nodeId: string): string { return `${this.prefix}.node.${nodeToken(nodeId)}.req` }
  liveUp (nodeId: string): string { return `${this.prefix}.live.up.${nodeToken(nodeId)}` }
  get broadcast (): string { return `${this.prefix}.broadcast` }
  /** The node a `…down.<node>.…` subject addresses. */
  nodeOfDown (subject: string): string | undefined {
    const parts = subject.split('.')
    return parts[3] === undefined ? undefined : tokenToNode(parts[3])
  }
}
