/**
 * Typed errors shared by every layer. Each error class has a stable `code`
 * (never change a published code; add a new one instead) and carries the
 * underlying `cause` when there is one, as undici's `lib/core/errors.js` does.
 *
 * Match on `err.code` (or `isEdgeFabricError(err, code)`), never on messages.
 */

export interface ErrorOptions {
  cause?: unknown
}

export class EdgeFabricError extends Error {
  /** Stable machine-readable code, e.g. `EF_FRAME_TOO_LARGE`. */
  readonly code: string

  constructor (code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.name = new.target.name
  }
}

export function isEdgeFabricError (err: unknown, code?: string): err is EdgeFabricError {
  return err instanceof EdgeFabricError && (code === undefined || err.code === code)
}

/** Turn anything thrown into an Error without losing it. */
export function toError (err: unknown): Error {
  if (err instanceof Error) return err
  return new EdgeFabricError('EF_UNKNOWN', typeof err === 'string' ? err : 'non-error value thrown', { cause: err })
}

// ---- options / configuration ------------------------------------------------

/** An option failed validation; `option` names it as the user wrote it. */
export class InvalidOptionError extends EdgeFabricError {
  static readonly code = 'EF_INVALID_OPTION'
  readonly option: string
  constructor (option: string, message: string, options?: ErrorOptions) {
    super(InvalidOptionError.code, `invalid option "${option}": ${message}`, options)
    this.option = option
  }
}

/**
 * Configuration (file, environment or flags) failed validation. The message
 * starts with where the bad value came from (`--heartbeat`, `EDGEFABRIC_NODE`,
 * `config file /etc/edge.json`) so a user can fix it without reading code.
 */
export class ConfigError extends EdgeFabricError {
  static readonly code = 'EF_CONFIG'
  /** Where the value came from: a flag (`--hub-url`), an env var name, `config file <path>`, or `config` for a missing required key. */
  readonly source: string
  /** The schema key concerned (camelCase), or the unknown name as written by the user. */
  readonly key: string
  constructor (source: string, key: string, message: string, options?: ErrorOptions) {
    super(ConfigError.code, `${source}: ${message}`, options)
    this.source = source
    this.key = key
  }
}

/**
 * `--help` / `-h` reached the config loader. Not a failure: the CLI prints
 * `helpText` to stdout and exits 0. (Commands normally intercept `--help`
 * earlier; this keeps a missed check from turning into "unknown option".)
 */
export class HelpRequestedError extends EdgeFabricError {
  static readonly code = 'EF_HELP_REQUESTED'
  readonly helpText: string
  constructor (helpText: string) {
    super(HelpRequestedError.code, 'help requested')
    this.helpText = helpText
  }
}

// ---- codec / framing --------------------------------------------------------

/** Bytes could not be decoded into an envelope (garbage, truncated, wrong types). */
export class DecodeError extends EdgeFabricError {
  static readonly code = 'EF_DECODE'
  constructor (message: string, options?: ErrorOptions) {
    super(DecodeError.code, message, options)
  }
}

/** A value is not a valid envelope (missing or mistyped field). */
export class InvalidEnvelopeError extends EdgeFabricError {
  static readonly code = 'EF_INVALID_ENVELOPE'
  readonly field: string
  constructor (field: string, message: string, options?: ErrorOptions) {
    super(InvalidEnvelopeError.code, `invalid envelope field "${field}": ${message}`, options)
    this.field = field
  }
}

/** A frame's declared or actual size exceeds the configured maximum (checked before allocating). */
export class FrameTooLargeError extends EdgeFabricError {
  static readonly code = 'EF_FRAME_TOO_LARGE'
  readonly size: number
  readonly limit: number
  constructor (size: number, limit: number) {
    super(FrameTooLargeError.code, `frame of ${size} bytes exceeds the maximum frame size of ${limit} bytes`)
    this.size = size
    this.limit = limit
  }
}

// ---- transport --------------------------------------------------------------

/** The transport for this URL cannot run on this machine (missing native binding, etc.). */
export class TransportUnavailableError extends EdgeFabricError {
  static readonly code = 'EF_TRANSPORT_UNAVAILABLE'
  readonly transport: string
  readonly reason: string
  constructor (transport: string, reason: string, options?: ErrorOptions) {
    super(TransportUnavailableError.code, `transport "${transport}" is unavailable: ${reason}`, options)
    this.transport = transport
    this.reason = reason
  }
}

/** No transport is registered for the URL's scheme, or the URL is malformed. */
export class UnsupportedUrlError extends EdgeFabricError {
  static readonly code = 'EF_UNSUPPORTED_URL'
  readonly url: string
  constructor (url: string, message: string, options?: ErrorOptions) {
    super(UnsupportedUrlError.code, `${message}: ${url}`, options)
    this.url = url
  }
}

/** The remote peer's authenticated identity is not the one expected. */
export class IdentityMismatchError extends EdgeFabricError {
  static readonly code = 'EF_IDENTITY_MISMATCH'
  readonly expected: string
  readonly actual: string | undefined
  /** `detail`: why a chain was refused when the pin names an issuer (src/transport/tls-pin.ts). */
  constructor (expected: string, actual: string | undefined, detail?: string) {
    super(IdentityMismatchError.code, `remote identity ${actual ?? '(none)'} does not match expected ${expected}${detail === undefined ? '' : `: ${detail}`}`)
    this.expected = expected
    this.actual = actual
  }
}

/** A dial did not complete within its deadline. */
export class DialTimeoutError extends EdgeFabricError {
  static readonly code = 'EF_DIAL_TIMEOUT'
  constructor (url: string, ms: number, options?: ErrorOptions) {
    super(DialTimeoutError.code, `dial to ${url} timed out after ${ms} ms`, options)
  }
}

/** A dial or other pending operation was cancelled (close() during dial, AbortSignal). */
export class AbortedError extends EdgeFabricError {
  static readonly code = 'EF_ABORTED'
  constructor (message = 'operation aborted', options?: ErrorOptions) {
    super(AbortedError.code, message, options)
  }
}

/** A dial failed (refused, unreachable, TLS failure). */
export class DialError extends EdgeFabricError {
  static readonly code = 'EF_DIAL_FAILED'
  constructor (url: string, message: string, options?: ErrorOptions) {
    super(DialError.code, `dial to ${url} failed: ${message}`, options)
  }
}

/** A listener could not be started (address in use, bad address, missing permission). */
export class ListenError extends EdgeFabricError {
  static readonly code = 'EF_LISTEN_FAILED'
  constructor (url: string, message: string, options?: ErrorOptions) {
    super(ListenError.code, `listen on ${url} failed: ${message}`, options)
  }
}

/** Operation on a connection that is closing or closed. */
export class ConnectionClosedError extends EdgeFabricError {
  static readonly code = 'EF_CONNECTION_CLOSED'
  constructor (message = 'connection is closed', options?: ErrorOptions) {
    super(ConnectionClosedError.code, message, options)
  }
}

/** The connection failed (reset, peer vanished, liveness lost). */
export class ConnectionResetError extends EdgeFabricError {
  static readonly code = 'EF_CONNECTION_RESET'
  constructor (message = 'connection reset', options?: ErrorOptions) {
    super(ConnectionResetError.code, message, options)
  }
}

/** The sender exceeded the hard bound of the connection's send buffer. */
export class SendBufferFullError extends EdgeFabricError {
  static readonly code = 'EF_SEND_BUFFER_FULL'
  constructor (queued: number, limit: number) {
    super(SendBufferFullError.code, `send buffer full: ${queued} bytes queued, limit ${limit}; wait for 'drain'`)
  }
}

/** The peer kept sending while we were paused beyond the inbound buffer bound. */
export class InboundOverflowError extends EdgeFabricError {
  static readonly code = 'EF_INBOUND_OVERFLOW'
  constructor (buffered: number, limit: number) {
    super(InboundOverflowError.code, `inbound buffer overflow: ${buffered} bytes buffered, limit ${limit}`)
  }
}

/** The peer violated the wire protocol (unexpected stream, bad preface, ...). */
export class ProtocolError extends EdgeFabricError {
  static readonly code = 'EF_PROTOCOL'
  constructor (message: string, options?: ErrorOptions) {
    super(ProtocolError.code, message, options)
  }
}

// ---- request / response -----------------------------------------------------

/** No response arrived within the request's timeout. */
export class RequestTimeoutError extends EdgeFabricError {
  static readonly code = 'EF_REQUEST_TIMEOUT'
  readonly requestId: string
  constructor (requestId: string, ms: number) {
    super(RequestTimeoutError.code, `request ${requestId} got no response within ${ms} ms`)
    this.requestId = requestId
  }
}

// ---- edge module bus / servicebus --------------------------------------------

/** Why a module mailbox refused a message (see MailboxFullError.reason). */
export type MailboxFullReason =
  /** 'reject' policy: the mailbox is at its message or byte bound. */
  | 'full'
  /** The message alone is larger than the mailbox's byte bound; no policy can admit it. */
  | 'too-large'
  /** 'block' policy: no space freed within blockTimeoutMs. */
  | 'block-timeout'
  /** 'block' policy: too many senders are already waiting (the waiting list is bounded too). */
  | 'too-many-blocked'
  /** 'drop-oldest' policy: the message was accepted, then evicted by newer ones before it was consumed. */
  | 'dropped'

/** A module's bounded mailbox could not take (or keep) a message. Never silent: the sender gets this. */
export class MailboxFullError extends EdgeFabricError {
  static readonly code = 'EF_MAILBOX_FULL'
  readonly module: string
  readonly reason: MailboxFullReason
  constructor (module: string, reason: MailboxFullReason, message: string) {
    super(MailboxFullError.code, `mailbox of module "${module}": ${message}`)
    this.module = module
    this.reason = reason
  }
}

/** Sub-codes of ModuleBusError. */
export type ModuleBusErrorReason =
  | 'duplicate-module' // register() with a name already in use
  | 'no-module' // send/request to a module or group that is not registered
  | 'closed' // the bus was closed or the module unregistered
  | 'already-consuming' // a second consumer on a module handle (one consumer per mailbox)
  | 'too-many-pending' // the bounded pending-request map is full
  | 'duplicate-request' // request() with an id that is already pending

/** Misuse or state errors of the edge module bus; match on `reason`. */
export class ModuleBusError extends EdgeFabricError {
  static readonly code = 'EF_MODULE_BUS'
  readonly reason: ModuleBusErrorReason
  constructor (reason: ModuleBusErrorReason, message: string, options?: ErrorOptions) {
    super(ModuleBusError.code, message, options)
    this.reason = reason
  }
}

/** Sub-codes of ServiceBusError. */
export type ServiceBusErrorReason =
  | 'port-not-allowed' // the target port is not in allowedPorts
  | 'bad-request' // malformed request object (method, path, headers, body, port)
  | 'timeout' // no complete response within timeoutMs
  | 'response-too-large' // response body exceeds maxBodyBytes
  | 'connect-failed' // the local app refused / is not listening
  | 'http-error' // the exchange failed mid-way (socket reset, parse error)
  | 'bad-operation' // servicebus module got an operation it does not serve

/** ServiceBus (local HTTP bridge) failures; match on `reason`. */
export class ServiceBusError extends EdgeFabricError {
  static readonly code = 'EF_SERVICEBUS'
  readonly reason: ServiceBusErrorReason
  constructor (reason: ServiceBusErrorReason, message: string, options?: ErrorOptions) {
    super(ServiceBusError.code, message, options)
    this.reason = reason
  }
}

// ---- identity / joining -----------------------------------------------------

/**
 * Persistent identity material (keys, certificates, node bindings) is
 * missing, unreadable or corrupt. `file` names the offending path so an
 * operator can fix or remove it; we never regenerate over it silently,
 * because that would change pinned identities under every edge.
 */
export class IdentityError extends EdgeFabricError {
  static readonly code = 'EF_IDENTITY_STORE'
  readonly file: string
  constructor (file: string, message: string, options?: ErrorOptions) {
    super(IdentityError.code, `identity store ${file}: ${message}`, options)
    this.file = file
  }
}

/** Why a hub refused an edge's join. Stable: these go over the wire. */
export const JOIN_REFUSAL_CODES = [
  'EF_TOKEN_INVALID',
  'EF_TOKEN_EXPIRED',
  'EF_NODE_MISMATCH',
  'EF_NODE_KEY_MISMATCH',
  'EF_UNSUPPORTED_VERSION',
  'EF_NODE_LIMIT',
  'EF_NODE_NAME_INVALID',
  /** A single-use token was already used to bind another node key (issue 12/13: first use wins, once). */
  'EF_TOKEN_USED',
  /** An operator revoked the token (`edgefabric token revoke`, or `node remove`). */
  'EF_TOKEN_REVOKED',
  /** The node has no binding at this hub (never joined, or removed) and presented no join proof. */
  'EF_NODE_NOT_BOUND',
  /** Cluster mode (src/cluster): the hub cannot reach NATS JetStream right now; another hub may serve. */
  'EF_CLUSTER_UNAVAILABLE',
  /** The hello was made on another TLS connection than the hub's (a relay terminating TLS; issue 13 item 10). */
  'EF_CHANNEL_BINDING_MISMATCH'
] as const

export type JoinRefusalCode = typeof JOIN_REFUSAL_CODES[number]

export function isJoinRefusalCode (value: unknown): value is JoinRefusalCode {
  return typeof value === 'string' && (JOIN_REFUSAL_CODES as readonly string[]).includes(value)
}

/**
 * The hub refused (or would refuse) a join. `reason` is a one-line human
 * sentence the edge CLI prints before exiting; `retryable` tells it whether
 * waiting can help (only a full hub can clear up on its own).
 */
export class JoinRefusedError extends EdgeFabricError {
  declare readonly code: JoinRefusalCode
  readonly reason: string
  readonly retryable: boolean
  constructor (code: JoinRefusalCode, reason: string, options?: ErrorOptions) {
    super(code, `join refused: ${reason}`, options)
    this.reason = reason.replace(/[\r\n]+/g, ' ')
    this.retryable = code === 'EF_NODE_LIMIT' || code === 'EF_CLUSTER_UNAVAILABLE'
  }
}

/** A reliable send was refused by the peer's outbox quota (overflow policy `reject`). */
export class QuotaExceededError extends EdgeFabricError {
  static readonly code = 'EF_QUOTA_EXCEEDED'
  readonly peer: string
  constructor (peer: string, reason: string) {
    super(QuotaExceededError.code, `outbox quota for ${peer} exceeded: ${reason}`)
    this.peer = peer
  }
}

/**
 * Another live process holds this data directory (hub or edge): two writers
 * on one LMDB store and one binding file would replace each other's state.
 */
export class DataDirLockedError extends EdgeFabricError {
  static readonly code = 'EF_DATA_DIR_LOCKED'
  readonly dataDir: string
  readonly pid: number | undefined
  constructor (dataDir: string, pid: number | undefined, holder?: string) {
    super(DataDirLockedError.code, `data directory ${dataDir} is in use by ${holder ?? 'another process'}${pid !== undefined ? ` (pid ${pid})` : ''}; stop it first, or give this process its own --data-dir`)
    this.dataDir = dataDir
    this.pid = pid
  }
}

// ---- reliable store -------------------------------------------------------------

/** An operation on a reliable store (outbox/inbox/resources) after close(). */
export class StoreClosedError extends EdgeFabricError {
  static readonly code = 'EF_STORE_CLOSED'
  constructor (message = 'reliable store is closed', options?: ErrorOptions) {
    super(StoreClosedError.code, message, options)
  }
}

/**
 * The durable store failed underneath (open, commit, fsync, disk full,
 * incompatible data directory). `cause` holds the storage engine's error.
 * When a commit fails nothing of that transaction was applied.
 */
export class StoreError extends EdgeFabricError {
  static readonly code = 'EF_STORE'
  constructor (message: string, options?: ErrorOptions) {
    super(StoreError.code, message, options)
  }
}
