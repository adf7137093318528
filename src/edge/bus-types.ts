/**
 * Public types and option resolution of the edge module bus (src/edge/bus.ts).
 */
import type { Clock } from '../util/clock.js'
import type { Envelope } from '../codec/envelope.js'
import type { EdgeFabricError } from '../errors.js'
import { InvalidOptionError } from '../errors.js'
import { enumOption, intOption } from '../util/options.js'

/**
 * What a full mailbox does with one more message. KubeEdge blocks forever on
 * a full 1024-slot channel (a slow module stalls the hub reader) or, in its
 * 100-slot FIFO, silently drops the oldest; each policy here is bounded in
 * time and every refusal or drop is reported.
 * - `reject`: send() rejects with MailboxFullError (reason 'full'); nothing queued.
 * - `drop-oldest`: the oldest queued messages are evicted to make room; each
 *   eviction calls onDrop(module, 'drop-oldest') and logs a warning with its id.
 * - `block`: send() waits (FIFO) until the consumer frees space, or rejects with
 *   MailboxFullError (reason 'block-timeout') after blockTimeoutMs.
 */
export const OVERFLOW_POLICIES = ['reject', 'drop-oldest', 'block'] as const
export type OverflowPolicy = typeof OVERFLOW_POLICIES[number]

export interface MailboxOptions {
  /** Max queued messages. @default 1024 */
  capacity?: number
  /** Max estimated bytes queued (see bus-size.ts). @default 16 MiB */
  maxBytes?: number
  /** @default 'reject' */
  overflow?: OverflowPolicy
  /** 'block' policy: how long a sender may wait for space. @default 5000 */
  blockTimeoutMs?: number
}

export interface ResolvedMailboxOptions {
  readonly capacity: number
  readonly maxBytes: number
  readonly overflow: OverflowPolicy
  readonly blockTimeoutMs: number
}

export const DEFAULT_MAILBOX: ResolvedMailboxOptions = Object.freeze({
  capacity: 1024,
  maxBytes: 16 * 1024 * 1024,
  overflow: 'reject',
  blockTimeoutMs: 5000
})

export function resolveMailboxOptions (opts: MailboxOptions | undefined, base: ResolvedMailboxOptions, prefix: string): ResolvedMailboxOptions {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new InvalidOptionError(prefix, 'must be an object')
  const o = opts ?? {}
  return Object.freeze({
    capacity: intOption(`${prefix}.capacity`, o.capacity, base.capacity, 1, 1_000_000),
    maxBytes: intOption(`${prefix}.maxBytes`, o.maxBytes, base.maxBytes, 1),
    overflow: enumOption(`${prefix}.overflow`, o.overflow, OVERFLOW_POLICIES, base.overflow),
    blockTimeoutMs: intOption(`${prefix}.blockTimeoutMs`, o.blockTimeoutMs, base.blockTimeoutMs, 1, 24 * 3600_000)
  })
}

/**
 * Why a message did not reach a module's consumer (onDrop reason, stats key).
 * Refusals (the sender's promise rejects): 'full', 'too-large',
 * 'block-timeout', 'too-many-blocked'. Drops after acceptance or without a
 * sender to tell: 'drop-oldest', 'expired' (TTL passed before consumption),
 * 'closed' (module unregistered / bus closed with the message queued),
 * 'superseded' (an unconsumed connection event replaced by a newer one),
 * 'no-module' (dispatch found no module; `module` is the destination/group),
 * 'late-response' (a response to a request that already timed out or was answered).
 */
export type DropReason =
  | 'full' | 'too-large' | 'block-timeout' | 'too-many-blocked'
  | 'drop-oldest' | 'expired' | 'closed' | 'superseded' | 'no-module' | 'late-response'

/** pino-compatible subset. */
export interface BusLogger {
  warn (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
}

export const noopLogger: BusLogger = { warn () {}, debug () {} }

export interface ModuleBusOptions {
  /** Sends a message to the cloud (the edge runtime's outbox). A rejection reaches the sender. */
  upstream: (env: Envelope) => Promise<void> | void
  /** @default systemClock */
  clock?: Clock
  logger?: BusLogger
  /** Counter hook: called once for every message that does not reach a consumer. Must not throw. */
  onDrop?: (module: string, reason: DropReason) => void
  /** Defaults for every module's mailbox; register() may override per module. */
  defaultMailbox?: MailboxOptions
  /** Bound of the pending-request map (requests awaiting a response). @default 10000 */
  maxPendingRequests?: number
  /** request() timeout when the caller gives none. @default 30000 */
  defaultRequestTimeoutMs?: number
  /** Byte estimate used for maxBytes. @default estimateEnvelopeBytes */
  sizeOf?: (env: Envelope) => number
}

export interface RegisterOptions {
  name: string
  group: string
  mailbox?: MailboxOptions
  /** Receive '$edge' connected/disconnected events (see ModuleBus.broadcastState). @default false */
  connectionEvents?: boolean
}

export interface RequestOptions {
  /** @default the bus's defaultRequestTimeoutMs */
  timeoutMs?: number
}

/** Where a request should go: a module by name, or every module of a group (first response wins). */
export type RequestTarget = string | { group: string }

/** One module that refused a dispatched/fanned-out message. */
export interface DeliveryFailure {
  module: string
  error: EdgeFabricError
}

/**
 * Outcome of ModuleBus.dispatch(). dispatch never rejects; the edge runtime
 * answers the cloud (e.g. an error response for a sync request) from this.
 */
export type DispatchResult =
  /** Accepted by at least one module; `failed` lists members of the group that refused. */
  | { status: 'delivered', modules: string[], failed: DeliveryFailure[] }
  /** Every addressed module refused (mailbox full, module closing). */
  | { status: 'rejected', failed: DeliveryFailure[] }
  /** A response that resolved a pending request. */
  | { status: 'response' }
  /** A response to a request that already timed out or was answered; dropped. */
  | { status: 'late-response' }
  /** No registered module has that destination name or group; dropped and counted. */
  | { status: 'no-module' }
  /** TTL already passed; dropped and counted. */
  | { status: 'expired' }
  /** The bus is closed. */
  | { status: 'closed' }

export type ConnectionState = 'connected' | 'disconnected'

/** Group and resource of the connection events from broadcastState(). */
export const EDGE_GROUP = '$edge'

export interface ModuleStats {
  name: string
  group: string
  depth: number
  bytes: number
  capacity: number
  maxBytes: number
  overflow: OverflowPolicy
  /** Senders waiting for space ('block' policy). */
  blockedSenders: number
  accepted: number
  consumed: number
  /** Handler errors in onMessage(). */
  handlerErrors: number
  dropped: Partial<Record<DropReason, number>>
}

export interface BusStats {
  modules: ModuleStats[]
  pendingRequests: number
  dispatched: number
  upstreamSent: number
  upstreamFailed: number
  /** Drops not attributable to a registered module (no-module, late-response), by reason. */
  unrouted: Partial<Record<DropReason, number>>
}
