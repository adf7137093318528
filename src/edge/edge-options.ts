/**
 * `EdgeOptions`: what `EdgeNode.start` takes, each member documented with its
 * default, and the checks that run before anything is opened (a bad URL or
 * option fails fast, naming the option).
 */
import type { Clock } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import { InvalidOptionError } from '../errors.js'
import type { Logger } from '../ops/logger.js'
import type { ConnectionOptions } from '../transport/types.js'
import type { ReliableStore } from '../reliable/store.js'
import type { MailboxOptions } from './bus.js'
import { checkHubUrl } from './hub-url.js'
import type { DeviceOptions } from '../device/edge/devices.js'
import { resolveDmiOptions, type DmiOptions } from '../device/edge/dmi/options.js'
import { resolveDeviceOptions, type ResolvedDeviceOptions } from '../device/edge/options.js'

export interface EdgeOptions extends ConnectionOptions {
  /** Hub URL(s); tried in order after failed dials. Required. */
  hub: string | string[]
  /** This node's name (must match the join token). Required. */
  nodeId: string
  /**
   * Join token from `edgefabric token create`, for the FIRST join only: it
   * binds this node's key at the hub and is never sent (a proof of
   * possession is). Later starts need none: the join is remembered in
   * `dataDir/identity/hub.json`, and an expired token given again is ignored
   * once the node is bound. Required for the first join.
   */
  token?: string
  /**
   * Allow `ws://` hub URLs to non-loopback hosts: no encryption, and the hub
   * is not authenticated (an on-path relay can read and inject traffic).
   * Loopback `ws://` is always allowed (with a warning).
   * @default false
   */
  insecureTransport?: boolean
  /** Directory for the node key and local state. Required. */
  dataDir: string
  labels?: Record<string, string>
  /** @default 10000 */
  handshakeTimeoutMs?: number
  /** @default 10000 */
  dialTimeoutMs?: number
  /** Reconnect backoff: full jitter in [0, min(cap, base·2^n)]. @default { baseMs: 500, capMs: 30000 } */
  backoff?: { baseMs?: number, capMs?: number }
  /** Default request timeout. @default 30000 */
  requestTimeoutMs?: number
  defaultMailbox?: MailboxOptions
  /** ServiceBus: let the hub call HTTP apps on these loopback ports. `false` disables. @default false */
  serviceBus?: { allowedPorts: number[], timeoutMs?: number, maxBodyBytes?: number } | false
  /** Local HTTP endpoint for apps to post upstream. `false` disables. @default false */
  upstreamEndpoint?: { host?: string, port?: number, token?: string } | false
  /** Local query API for the last known resources (works offline). `false` disables. @default false */
  localApi?: { host?: string, port?: number } | false
  /** Durability of the edge store (LMDB in `dataDir/reliable`). @default 'sync' */
  durability?: 'sync' | 'relaxed'
  /** A store to use instead of LMDB (tests). */
  store?: ReliableStore
  /** Quota of the durable outbox to the cloud. @default { maxMessages: 1000000, maxBytes: 1 GiB, overflow: 'reject' } */
  quota?: { maxMessages?: number, maxBytes?: number, overflow?: 'reject' | 'drop-oldest' }
  /**
   * Called for every new reliable message from the cloud and awaited BEFORE
   * the edge commits and acknowledges it (then the message goes to the bus as
   * usual). Use it to make delivery at-least-once to your own code: the bus
   * only guarantees a module's mailbox accepted the message, not that the
   * module processed it. A throw or rejection makes the lane reject the
   * message (the cloud resends it, up to its `maxRejections`); the hub's
   * counterpart is `HubOptions.onUpstream`.
   */
  onReliable?: (env: Envelope) => Promise<void> | void
  /** Admin HTTP server (metrics, status, console). `false` disables. Access as the hub's (src/ops/http-guard.ts). @default { host: '127.0.0.1', port: 0 } */
  admin?: import('../ops/admin-server.js').AdminHttpOptions | false
  /** Metrics: Node process/GC metrics (`edgefabric_process_*`). @default { processMetrics: false } */
  metrics?: { processMetrics?: boolean }
  /** Device twins over MQTT (embedded/external broker, README "Device twins"). `false`/absent disables. @default false */
  devices?: DeviceOptions | false
  /** KubeEdge DMI v1beta1 gRPC for mappers (README "KubeEdge mappers"); needs `devices`. `false`/absent disables. @default false */
  dmi?: DmiOptions | false
  clock?: Clock
  logger?: Logger
}

/** The checks of `EdgeNode.start` that need nothing opened: required options, hub URLs, devices and DMI. */
export function checkEdgeOptions (o: EdgeOptions): { deviceOptions: ResolvedDeviceOptions | undefined, dmiOptions: ReturnType<typeof resolveDmiOptions> | undefined } {
  if (typeof o.nodeId !== 'string' || o.nodeId === '') throw new InvalidOptionError('nodeId', 'is required')
  // Hub URLs first: a URL the edge can never use fails before anything is opened.
  for (const u of Array.isArray(o.hub) ? o.hub : [o.hub]) checkHubUrl(u, o.insecureTransport === true)
  if (o.token !== undefined && (typeof o.token !== 'string' || o.token === '')) throw new InvalidOptionError('token', 'must be a join token string when given')
  if (typeof o.dataDir !== 'string' || o.dataDir === '') throw new InvalidOptionError('dataDir', 'is required')
  const deviceOptions = o.devices === undefined || o.devices === false ? undefined : resolveDeviceOptions(o.devices)
  const dmiOptions = o.dmi === undefined || o.dmi === false ? undefined : resolveDmiOptions(o.dmi)
  if (dmiOptions !== undefined && deviceOptions === undefined) throw new InvalidOptionError('dmi', 'needs the devices option (DMI serves the edge\'s device twins)')
  return { deviceOptions, dmiOptions }
}

/** The transport-level members of EdgeOptions, for the connector's dials. */
export function pickConnectionOptions (o: EdgeOptions): ConnectionOptions {
  const c: ConnectionOptions = {}
  if (o.maxFrameSize !== undefined) c.maxFrameSize = o.maxFrameSize
  if (o.highWaterMark !== undefined) c.highWaterMark = o.highWaterMark
  if (o.maxSendBuffer !== undefined) c.maxSendBuffer = o.maxSendBuffer
  if (o.maxInboundBuffer !== undefined) c.maxInboundBuffer = o.maxInboundBuffer
  if (o.closeTimeoutMs !== undefined) c.closeTimeoutMs = o.closeTimeoutMs
  return c
}
