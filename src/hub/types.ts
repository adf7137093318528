/**
 * Public types of the cloud hub (CloudHub role, DESIGN.md §4 and §7).
 */
import type { Clock } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import type { RotateKeyContent, HelloContent } from '../session/protocol.js'
import type { Connection, ConnectionOptions, TransportName } from '../transport/types.js'
import type { PreAuthOptions } from '../transport/pre-auth.js'

export type NodeStatus = 'connected' | 'disconnected'

export interface NodeInfo {
  nodeId: string
  status: NodeStatus
  /** Labels set by the hub operator (setLabels) merged over labels the edge reported in hello. */
  labels: Record<string, string>
  transport: TransportName | undefined
  remoteAddress: string | undefined
  /** Key id bound to the node name at first join. */
  keyId: string | undefined
  connectedAt: number | undefined
  disconnectedAt: number | undefined
  /** Last inbound traffic of the current session (ms since epoch). */
  lastSeen: number | undefined
  /** RTT from the session's pings (ms). */
  rttMs: number | undefined
  sessionId: string | undefined
  /** Capabilities the edge stated in its hello (session/protocol.ts CAPABILITIES); undefined before the first session. */
  capabilities: string[] | undefined
}

/** Hub lifecycle and session events (typed event stream). */
export type HubEvent =
  | { type: 'node-connected', nodeId: string, transport: TransportName, remoteAddress: string, sessionId: string }
  | { type: 'node-disconnected', nodeId: string, sessionId: string, reason: string, clean: boolean }
  | { type: 'session-replaced', nodeId: string, oldSessionId: string, newSessionId: string }
  | { type: 'handshake-refused', code: string, reason: string, remoteAddress: string, nodeId?: string }
  | { type: 'forward-denied', from: string, to: string, module: string }
  /** `from` answered request `requestId`, which was sent to another node: refused (issue 13 item 3). */
  | { type: 'response-refused', from: string, requestId: string }

export interface UpstreamMessage {
  /** Authenticated node id of the sender (from its session, never from content). */
  nodeId: string
  envelope: Envelope
}

/** Decides who a hello belongs to. Throws JoinRefusedError to refuse. */
export interface HubAuthenticator {
  /** Identity string the hub presents in its challenge (also bound into the hello signature). */
  readonly hubId: string
  authenticate (hello: HelloContent, nonce: Uint8Array, connection: Connection): Promise<{ nodeId: string, keyId: string }>
  /**
   * In-session key rotation (protocol 2 `rotate-key`): verify both keys'
   * signatures over the session nonce and move the binding to the new key.
   * Absent: rotation is refused (EF_UNSUPPORTED).
   */
  rotate? (nodeId: string, oldKeyId: string, rotation: RotateKeyContent, nonce: Uint8Array): Promise<{ keyId: string }>
}

export interface HubOptions extends ConnectionOptions {
  /** URLs to listen on, e.g. `quic://0.0.0.0:10001`, `wss://0.0.0.0:10000`. Required. */
  listen: string[]
  /**
   * Allow plain `ws://` listeners on non-loopback addresses (no encryption,
   * edges cannot authenticate the hub). Loopback `ws://` is always allowed.
   * @default false
   */
  insecureTransport?: boolean
  /** Directory for the hub identity, bindings and state. Required. */
  dataDir: string
  /** Heartbeat period; a silent link is declared dead after 2.5× this. @default 5000 */
  heartbeatMs?: number
  /** Deadline for challenge → hello → welcome. @default preAuth.deadlineMs (5000) */
  handshakeTimeoutMs?: number
  /**
   * Bounds on unauthenticated connections, shared by every listener (issue 13
   * item 1; README "Security model"): concurrent ones overall (`maxPending`,
   * 512) and per source address (`maxPendingPerSource`, 64), one deadline from
   * accept to welcome on every transport (`deadlineMs`, default
   * handshakeTimeoutMs or 5000), and the largest frame before the welcome
   * (`maxFrameSize`, 8192: a hello), cut from the frame header. Refusals are
   * counted in `edgefabric_hub_connection_refusals_total{stage="preauth"}`.
   * memory:// is in-process and not bounded.
   */
  preAuth?: PreAuthOptions
  /** Default timeout of request(). @default 30000 */
  requestTimeoutMs?: number
  /** Maximum connected nodes; further joins are refused with EF_NODE_LIMIT (retryable). @default 100000 */
  maxNodes?: number
  /**
   * Edge-to-edge messages through the hub (`destination: 'node:<id>/<module>'`):
   * an allow-list of `FROM->TO:MODULE` rules (or `{from, to, module}`; `*`
   * matches any one part), or a function deciding per (from, to, module).
   * Deny by default; `true` is refused (it opened every module, ServiceBus
   * included). Answers to a forwarded request flow back without a rule.
   * See ./edge-to-edge.ts. @default false
   */
  edgeToEdge?: import('./edge-to-edge.js').EdgeToEdgeOption
  /** Extra DNS names / IPs for the hub's TLS certificate. */
  altNames?: string[]
  /** Bound on upstream messages buffered for `messages()` consumers before sessions are paused. @default 10000 */
  upstreamHighWaterMark?: number
  /** A store to use instead of LMDB in dataDir (tests, other backends). */
  store?: import('../reliable/store.js').ReliableStore
  /** Durability of the reliable lane's store (LMDB in `dataDir/reliable`). @default 'sync' */
  durability?: 'sync' | 'relaxed'
  /** Per-node outbox quota for reliable sends. @default { maxMessages: 1000000, maxBytes: 1 GiB, overflow: 'reject' } */
  quota?: { maxMessages?: number, maxBytes?: number, overflow?: 'reject' | 'drop-oldest' }
  /** Reliable sends a node rejects this many times are dead-lettered. @default 5 */
  maxRejections?: number
  /** Resend unacknowledged reliable messages after this long without ack progress. @default 5000 */
  ackTimeoutMs?: number
  /**
   * Reliable upstream messages are acknowledged to the edge only after this
   * resolves (at-least-once to the application); a rejection makes the edge
   * resend later. The 'message' event and messages() see them too.
   */
  onUpstream?: (m: UpstreamMessage) => Promise<void> | void
  /** Replace the token-based authenticator (tests, custom auth). */
  authenticator?: HubAuthenticator
  clock?: Clock
  /** pino logger. @default silent */
  logger?: import('pino').Logger
  /**
   * Admin HTTP server (metrics, health, status, console, device and fleet API).
   * `false` disables it. Access: src/ops/http-guard.ts; the admin token is
   * `token`, else `<dataDir>/admin-token` (generated at first start).
   * @default { host: '127.0.0.1', port: 0 }
   */
  admin?: import('../ops/admin-server.js').AdminHttpOptions | false
  /** Metrics: Node process/GC metrics (`edgefabric_process_*`) and per-node series (top N by queue depth + allow-list). @default { processMetrics: false, perNode: { top: 20 } } */
  metrics?: { processMetrics?: boolean, perNode?: { top?: number, nodes?: string[] } }
  /**
   * Cloud device registry (DESIGN.md §8): `true` or options open it in
   * `{dataDir}/devices` (LMDB, the hub's `durability`), expose it as
   * `hub.devices`, route reliable upstream `$device` messages into it and
   * serve the device API on the admin server. @default false
   */
  devices?: import('../device/cloud/registry-types.js').HubDevicesOption
  /**
   * Cluster mode (issue 17, src/cluster, README "Cluster mode"): bindings, the
   * hub identity, node presence and the reliable outboxes live in NATS
   * JetStream, and any hub serves any node. Absent: the embedded single hub
   * (LMDB in dataDir, no external service). @default undefined
   */
  cluster?: import('../cluster/types.js').ClusterOptions
}

export interface HubSendOptions {
  /**
   * `best-effort`: only to a connected node, not persisted. `reliable`: persisted
   * to the node's durable outbox before send() resolves, delivered at least
   * once (also to a node that is offline now), with supersession by
   * resourceVersion, TTL and quotas. @default 'best-effort'
   */
  delivery?: 'best-effort' | 'reliable'
}

export interface RequestOptions {
  /** @default HubOptions.requestTimeoutMs */
  timeoutMs?: number
}

export type NodeSelector = Record<string, string> | ((node: NodeInfo) => boolean)
