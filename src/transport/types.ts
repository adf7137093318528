/**
 * The one transport boundary (DESIGN.md §3). Learned from js-libp2p's
 * interface package and nats.js' transport: a tiny contract, an abstract base
 * (./abstract-connection.ts) that owns the state machine, scheduling,
 * backpressure and accounting, and implementations that provide a few
 * primitives each.
 *
 * A connection carries envelopes in both directions over one logical stream
 * per priority class (`control`, `high`, `normal`, `bulk`). Order is kept
 * within a class, never across classes.
 */
import type { Envelope, Priority } from '../codec/envelope.js'
import type { EnvelopeCodec } from '../codec/codec.js'
import type { PreAuthGate } from './pre-auth.js'

export type TransportName = 'memory' | 'ws' | 'quic' | 'webtransport'

/** Logical stream of a connection; one per priority class. */
export type Channel = Priority

/** Lifecycle of a connection. Transitions only forward: open → closing → closed. */
export type ConnectionStatus = 'open' | 'closing' | 'closed'

/** What the single `close` event (and `closed()`) reports. */
export interface CloseInfo {
  /** Who ended the connection: `local` (close/abort here) or `remote` (peer or network). */
  initiator: 'local' | 'remote'
  /** `true` for a graceful close by either side; `false` when it ended with an error. */
  clean: boolean
  /** The error for an unclean close. */
  error?: Error
  /** Free-text reason given by the closing side, when known. */
  reason?: string
}

export interface ConnectionStats {
  /** Payload + framing bytes handed to the underlying transport. */
  bytesSent: number
  /** Payload + framing bytes received from the underlying transport. */
  bytesReceived: number
  messagesSent: number
  messagesReceived: number
  /** Bytes accepted by send() and not yet handed to the transport. */
  queuedBytes: number
  /** Bytes received and not yet delivered because of pause(). */
  bufferedInboundBytes: number
  /** Smoothed round-trip time in ms, when the transport measures it. */
  rttMs: number | undefined
  /** Time the connection was opened (ms since epoch). */
  openedAt: number
}

export interface ConnectionEvents {
  /** One decoded envelope, in order within its channel. */
  message: [envelope: Envelope, channel: Channel]
  /** send() returned false earlier and the queue is back below the high-water mark. */
  drain: []
  /** Emitted exactly once, after which the connection is `closed`. */
  close: [info: CloseInfo]
}

/** Per-send options. */
export interface SendOptions {
  /** Channel to send on. @default envelope.header.priority ?? 'normal' */
  channel?: Channel
}

/**
 * One connection between two peers. Both ends have the same API.
 *
 * Events are emitted through `on(...)` (a typed Node EventEmitter); a
 * connection never emits `'error'`: failures end it, and `close` / `closed()`
 * carry the error.
 */
export interface Connection {
  /** Process-unique id, for logs. */
  readonly id: string
  readonly transport: TransportName
  readonly direction: 'inbound' | 'outbound'
  /** `host:port` (or transport-specific) address of the peer. */
  readonly remoteAddress: string
  /**
   * The peer's authenticated identity: the libp2p peer id for QUIC, the
   * sha256 fingerprint of the peer certificate for TLS transports, the
   * configured identity for memory. `undefined` when the transport does not
   * authenticate (plain ws://).
   */
  readonly remoteIdentity: string | undefined
  readonly status: ConnectionStatus
  readonly stats: ConnectionStats
  /** Whether a stalled channel can hold up another channel (true only for single-stream transports such as ws). */
  readonly headOfLineBlocking: boolean
  /**
   * A value both ends of this one secure channel compute alike and a relay's
   * two legs do not: the TLS exporter (RFC 5705 / RFC 8446 §7.5, label
   * `EXPORTER-edgefabric-join`, 32 bytes) for wss. The session handshake signs
   * it (issue 13 item 10). Absent, or returning undefined, where the transport
   * has none to offer (ws, quic, webtransport, memory).
   * @default undefined
   */
  channelBinding? (): Uint8Array | undefined

  /**
   * Queue an envelope for sending. Returns `false` when queued bytes are at or
   * above the high-water mark: stop sending and wait for `'drain'`.
   * Throws `SendBufferFullError` past the hard bound, `ConnectionClosedError`
   * when not open, `FrameTooLargeError` for an oversize envelope.
   */
  send (envelope: Envelope, options?: SendOptions): boolean
  /** Resolve when the send queue is below the high-water mark (at once if it is). Rejects if the connection closes. */
  onDrain (): Promise<void>
  /**
   * Stop delivering `message` events (for one channel, or all). Already read
   * data is buffered up to `maxInboundBuffer`; beyond that the transport stops
   * reading, which pushes back on the sender.
   */
  pause (channel?: Channel): void
  resume (channel?: Channel): void

  /**
   * The session layer authenticated the peer: lift the pre-auth bounds of a
   * connection accepted under `ListenOptions.preAuth` (inbound frames up to
   * `maxFrameSize` from now on, no accept deadline, out of the unauthenticated
   * count). Call it BEFORE sending the message that lets the peer send more
   * (the welcome). Idempotent; a no-op for connections without pre-auth bounds.
   */
  markAuthenticated (): void
  /** False while the connection is held to pre-auth bounds (see markAuthenticated). */
  readonly authenticated: boolean

  /** Graceful close: flushes queued data, then closes. Idempotent; safe in every state. */
  close (reason?: string): Promise<void>
  /** Immediate close with an error; queued data is discarded. Idempotent. */
  abort (err: Error): void
  /** Resolves (never rejects) with the close info once closed. */
  closed (): Promise<CloseInfo>

  on<K extends keyof ConnectionEvents> (event: K, listener: (...args: ConnectionEvents[K]) => void): this
  once<K extends keyof ConnectionEvents> (event: K, listener: (...args: ConnectionEvents[K]) => void): this
  off<K extends keyof ConnectionEvents> (event: K, listener: (...args: ConnectionEvents[K]) => void): this
}

/** Options shared by dial and listen. All have validated defaults (./options.ts). */
export interface ConnectionOptions {
  /** Largest encoded envelope accepted or sent, checked before allocating. @default 16 MiB */
  maxFrameSize?: number
  /** send() returns false at or above this many queued bytes. @default 1 MiB */
  highWaterMark?: number
  /** Hard bound on queued send bytes; send() throws beyond it. Must be ≥ maxFrameSize + highWaterMark. @default 64 MiB */
  maxSendBuffer?: number
  /** Bound on bytes buffered while paused, per channel, before reading stops. @default 4 MiB */
  maxInboundBuffer?: number
  /** Graceful close() waits this long for queued data to flush, then aborts. @default 5000 ms */
  closeTimeoutMs?: number
  /** Codec for envelopes. @default the shared default codec */
  codec?: EnvelopeCodec
}

/** TLS / identity material. Meaning is transport-specific; see each transport. */
export interface IdentityOptions {
  /** Local private key / certificate material (transport-specific). */
  identity?: unknown
  /**
   * Identity the remote must prove (QUIC: peer id string; TLS: sha256
   * fingerprint of the certificate or of its CA, hex). A mismatch fails the
   * dial or the inbound connection with `IdentityMismatchError`.
   */
  expectedRemoteIdentity?: string
}

export interface DialOptions extends ConnectionOptions, IdentityOptions {
  /** Abort the dial. */
  signal?: AbortSignal
  /** Deadline for connection + handshake. @default 10000 ms */
  timeoutMs?: number
}

export interface ListenOptions extends ConnectionOptions, IdentityOptions {
  /** Called for every inbound connection once it is open. Required. */
  onConnection: (connection: Connection) => void
  /** Max concurrent inbound connections; extra ones are refused. @default 100000 */
  maxConnections?: number
  /**
   * Hold every inbound connection to pre-auth bounds until the session layer
   * calls `markAuthenticated()`: frames up to `gate.maxFrameSize` (cut from the
   * header, before allocation), a slot in the gate's caps, the gate's deadline
   * from accept. One gate may be shared by many listeners (./pre-auth.ts).
   * @default none: no pre-auth bounds
   */
  preAuth?: PreAuthGate
}

export interface Listener {
  /** The URL actually bound (port 0 resolved), e.g. `ws://127.0.0.1:39211`. */
  readonly url: string
  /** The listener's identity as a dialer must pin it (`expectedRemoteIdentity`), if any. */
  readonly identity: string | undefined
  /** Open inbound connections. */
  readonly connections: ReadonlySet<Connection>
  /** Stop accepting; close open connections gracefully (abort them after `graceMs`). Idempotent. */
  close (graceMs?: number): Promise<void>
}

/** A transport implementation, selected by URL scheme. */
export interface Transport {
  readonly name: TransportName
  /** URL schemes handled, without `:` (e.g. `['ws', 'wss']`). */
  readonly schemes: readonly string[]
  /** Throws `TransportUnavailableError` (with the reason) if it cannot run here. */
  probe (): Promise<void>
  dial (url: URL, options?: DialOptions): Promise<Connection>
  listen (url: URL, options: ListenOptions): Promise<Listener>
}
