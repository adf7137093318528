/**
 * The abstract base every transport extends (the js-libp2p
 * `abstract-message-stream` idea): it owns the connection state machine,
 * per-channel send queues with priority scheduling, encoding, the high-water
 * mark / `drain` backpressure, the hard send bound, inbound decoding, per
 * channel pause/resume with a bounded inbound buffer, idempotent
 * close/abort, the single `close` event and the statistics.
 *
 * A transport implements four primitives (writeFrame, setReading,
 * closeUnderlying, abortUnderlying) and reports inbound frames, writability
 * and the end of the underlying connection through the protected methods.
 */
import { EventEmitter } from 'node:events'
import type { EnvelopeCodecStream } from '../codec/codec.js'
import { PRIORITIES, type Envelope } from '../codec/envelope.js'
import {
  ConnectionClosedError, DecodeError, EdgeFabricError, FrameTooLargeError, InboundOverflowError, InvalidEnvelopeError, ProtocolError,
  SendBufferFullError, toError
} from '../errors.js'
import type { FrameDecoder } from './framing.js'
import type { ResolvedConnectionOptions } from './options.js'
import type { PreAuthTicket } from './pre-auth.js'
import type {
  Channel, CloseInfo, Connection, ConnectionStats, ConnectionStatus, SendOptions, TransportName
} from './types.js'

export interface AbstractConnectionInit {
  transport: TransportName
  direction: 'inbound' | 'outbound'
  remoteAddress: string
  remoteIdentity: string | undefined
  options: ResolvedConnectionOptions
  /** True when one stalled channel can hold up the others (single ordered byte stream). */
  headOfLineBlocking: boolean
  /** Bytes the transport adds per frame, for the byte counters. */
  frameOverhead: number
  /**
   * Accepted under pre-auth bounds (./pre-auth.ts): inbound frames are limited
   * to `maxFrameSize` and only the control channel may carry them until
   * markAuthenticated(); the ticket is given back then, or when the connection ends.
   */
  preAuth?: { ticket: PreAuthTicket, maxFrameSize: number }
}

/** A listener threw while handling a message; the connection is aborted with this. */
export class ListenerError extends EdgeFabricError {
  static readonly code = 'EF_LISTENER_ERROR'
  constructor (cause: unknown) {
    super(ListenerError.code, 'a message listener threw', { cause })
  }
}

interface Inbound { env: Envelope, size: number }

let nextId = 0

export abstract class AbstractConnection extends EventEmitter implements Connection {
  readonly id: string
  readonly transport: TransportName
  readonly direction: 'inbound' | 'outbound'
  readonly remoteAddress: string
  readonly remoteIdentity: string | undefined
  readonly headOfLineBlocking: boolean
  protected readonly options: ResolvedConnectionOptions
  readonly #frameOverhead: number
  // pre-auth bounds (issue 13 item 1): undefined once authenticated, or never bounded
  #preAuth: PreAuthTicket | undefined
  #inboundLimit: number
  readonly #decoders: Array<{ decoder: FrameDecoder, extra: number }> = []

  #status: ConnectionStatus = 'open'
  readonly #stats: ConnectionStats
  // send side
  readonly #queues = new Map<Channel, Uint8Array[]>()
  readonly #writable = new Map<Channel, boolean>()
  #queuedBytes = 0
  #needDrain = false
  #pumping = false
  #drainWaiters: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  #flushWaiter: (() => void) | undefined
  // receive side
  readonly #paused = new Map<Channel, boolean>()
  readonly #reading = new Map<Channel, boolean>()
  readonly #inbound = new Map<Channel, Inbound[]>()
  readonly #inboundBytes = new Map<Channel, number>()
  #delivering = false
  // close
  #closeInfo: CloseInfo | undefined
  // codec: one stream per channel when the codec offers them (each channel is
  // an ordered, reliable byte stream, so its encoder and the peer's decoder
  // stay in step; see src/codec/stream.ts), created on first use
  readonly #codecStreams = new Map<Channel, EnvelopeCodecStream>()
  #pendingRemoteClose: CloseInfo | undefined
  #closing: Promise<void> | undefined
  #resolveClosed!: (info: CloseInfo) => void
  readonly #closed: Promise<CloseInfo>

  constructor (init: AbstractConnectionInit) {
    super()
    this.id = `${init.transport}-${++nextId}`
    this.transport = init.transport
    this.direction = init.direction
    this.remoteAddress = init.remoteAddress
    this.remoteIdentity = init.remoteIdentity
    this.headOfLineBlocking = init.headOfLineBlocking
    this.options = init.options
    this.#frameOverhead = init.frameOverhead
    this.#preAuth = init.preAuth?.ticket
    this.#inboundLimit = init.preAuth === undefined ? init.options.maxFrameSize : Math.min(init.preAuth.maxFrameSize, init.options.maxFrameSize)
    // The deadline now ends this connection, not just its socket.
    this.#preAuth?.onExpire(err => this.abort(err))
    for (const ch of PRIORITIES) {
      this.#queues.set(ch, [])
      this.#writable.set(ch, true)
      this.#paused.set(ch, false)
      this.#reading.set(ch, true)
      this.#inbound.set(ch, [])
      this.#inboundBytes.set(ch, 0)
    }
    this.#stats = {
      bytesSent: 0,
      bytesReceived: 0,
      messagesSent: 0,
      messagesReceived: 0,
      queuedBytes: 0,
      bufferedInboundBytes: 0,
      rttMs: undefined,
      openedAt: Date.now()
    }
    this.#closed = new Promise(resolve => { this.#resolveClosed = resolve })
    // A connection never emits 'error' (failures are reported through close), but
    // a stray emit from a subclass must not crash the process.
    this.on('error', () => {})
    // Messages that arrive before anyone listens (e.g. a greeting sent the
    // moment the peer accepts, while the dialer is still resolving its dial
    // promise) are buffered like paused ones and delivered to the first
    // listener — never emitted into the void.
    this.on('newListener', (event: string | symbol) => {
      if (event === 'message') queueMicrotask(() => this.#deliverBuffered())
    })
  }

  // ---- primitives for implementations ---------------------------------------

  /** Hand one encoded envelope to the underlying channel. Return false when that channel is congested. */
  protected abstract writeFrame (channel: Channel, payload: Uint8Array): boolean
  /** Start/stop reading the underlying stream of `channel` (inbound flow control). */
  protected abstract setReading (channel: Channel, reading: boolean): void
  /** Graceful close of the underlying connection, after the base flushed its queues. */
  protected abstract closeUnderlying (reason: string | undefined): Promise<void>
  /** Hard reset of the underlying connection, no flush. */
  protected abstract abortUnderlying (err: Error): void
  /**
   * The pre-auth frame limit was lifted: a transport whose framing is not a
   * registered FrameDecoder (e.g. ws' own maxPayload) raises its limit to
   * `inboundFrameLimit` here. Default: nothing to do.
   */
  protected liftInboundLimit (): void {}

  /**
   * Have `decoder` enforce this connection's inbound limit (+ `extra` bytes of
   * transport framing counted in its length, e.g. quic's type byte), now and
   * when markAuthenticated() lifts it. Byte-stream transports register every
   * decoder, so the pre-auth cut happens at the header, before allocation, in
   * whichever engine carries the bytes.
   */
  protected registerDecoder (decoder: FrameDecoder, extra = 0): void {
    decoder.maxFrameSize = this.#inboundLimit + extra
    if (this.#preAuth !== undefined) this.#decoders.push({ decoder, extra })
  }

  /** The largest inbound frame accepted now: the pre-auth limit until authenticated, then maxFrameSize. */
  protected get inboundFrameLimit (): number { return this.#inboundLimit }

  // ---- public API --------------------------------------------------------------

  get status (): ConnectionStatus { return this.#status }

  get stats (): ConnectionStats {
    this.refreshStats()
    let buffered = 0
    for (const n of this.#inboundBytes.values()) buffered += n
    return { ...this.#stats, queuedBytes: this.#queuedBytes, bufferedInboundBytes: buffered }
  }

  send (envelope: Envelope, options?: SendOptions): boolean {
    if (this.#status !== 'open') throw new ConnectionClosedError(`cannot send: connection is ${this.#status}`)
    const channel = options?.channel ?? envelope.header.priority ?? 'normal'
    const queue = this.#queues.get(channel)
    if (queue === undefined) throw new ConnectionClosedError(`unknown channel ${String(channel)}`)
    const stream = this.#codecStream(channel)
    const bytes = stream === undefined ? this.options.codec.encode(envelope) : stream.encode(envelope)
    if (bytes.byteLength > this.options.maxFrameSize) {
      stream?.cancel() // never sent: the peer must not miss what it defined
      throw new FrameTooLargeError(bytes.byteLength, this.options.maxFrameSize)
    }
    if (this.#queuedBytes + bytes.byteLength > this.options.maxSendBuffer) {
      stream?.cancel()
      throw new SendBufferFullError(this.#queuedBytes + bytes.byteLength, this.options.maxSendBuffer)
    }
    queue.push(bytes)
    this.#queuedBytes += bytes.byteLength
    this.#pump()
    if (this.#queuedBytes >= this.options.highWaterMark) {
      this.#needDrain = true
      return false
    }
    return true
  }

  onDrain (): Promise<void> {
    if (this.#status === 'closed') return Promise.reject(new ConnectionClosedError())
    if (this.#queuedBytes < this.options.highWaterMark) return Promise.resolve()
    this.#needDrain = true
    return new Promise((resolve, reject) => { this.#drainWaiters.push({ resolve, reject }) })
  }

  pause (channel?: Channel): void {
    for (const ch of channel === undefined ? PRIORITIES : [channel]) this.#paused.set(ch, true)
  }

  resume (channel?: Channel): void {
    for (const ch of channel === undefined ? PRIORITIES : [channel]) this.#paused.set(ch, false)
    this.#deliverBuffered()
  }

  close (reason?: string): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    if (this.#status === 'closed') return Promise.resolve()
    this.#status = 'closing'
    this.#closing = this.#gracefulClose(reason)
    return this.#closing
  }

  abort (err: Error): void {
    if (this.#status === 'closed') return
    this.#discardQueues()
    try {
      this.abortUnderlying(err)
    } catch {
      // the underlying connection is being torn down; nothing more to do with it
    }
    this.#finish({ initiator: 'local', clean: false, error: err })
  }

  closed (): Promise<CloseInfo> { return this.#closed }

  get authenticated (): boolean { return this.#preAuth === undefined }

  markAuthenticated (): void {
    const ticket = this.#preAuth
    if (ticket === undefined) return
    this.#preAuth = undefined
    this.#inboundLimit = this.options.maxFrameSize
    for (const { decoder, extra } of this.#decoders) decoder.maxFrameSize = this.#inboundLimit + extra
    this.#decoders.length = 0
    ticket.authenticated()
    try {
      this.liftInboundLimit()
    } catch (err) {
      this.abort(toError(err))
    }
  }

  // ---- for implementations ---------------------------------------------------

  /** One complete inbound frame (an encoded envelope) arrived on `channel`. */
  protected receiveFrame (channel: Channel, payload: Uint8Array): void {
    if (this.#status === 'closed') return
    this.#stats.bytesReceived += payload.byteLength + this.#frameOverhead
    if (payload.byteLength > this.#inboundLimit) {
      this.abort(new FrameTooLargeError(payload.byteLength, this.#inboundLimit))
      return
    }
    // Before authentication the only frame expected is the hello, on control.
    if (this.#preAuth !== undefined && channel !== 'control') {
      this.abort(new ProtocolError(`${channel} frame before authentication`))
      return
    }
    let env: Envelope
    try {
      const stream = this.#codecStream(channel)
      env = stream === undefined ? this.options.codec.decode(payload) : stream.decode(payload)
    } catch (err) {
      // also leaves the channel's codec stream out of step: nothing more can be decoded
      this.abort(toError(err))
      return
    }
    this.#stats.messagesReceived++
    const queue = this.#inbound.get(channel)
    if (queue === undefined) return
    if (!this.#paused.get(channel) && queue.length === 0 && !this.#delivering && this.listenerCount('message') > 0) {
      this.#emitMessage(env, channel)
      return
    }
    queue.push({ env, size: payload.byteLength })
    const buffered = (this.#inboundBytes.get(channel) ?? 0) + payload.byteLength
    this.#inboundBytes.set(channel, buffered)
    // Hard bound: a transport that keeps delivering after setReading(false) (a few
    // already-parsed frames are normal) must still not grow memory without bound.
    if (buffered > this.options.maxInboundBuffer * 2 + this.options.maxFrameSize) {
      this.abort(new InboundOverflowError(buffered, this.options.maxInboundBuffer * 2 + this.options.maxFrameSize))
      return
    }
    if (buffered >= this.options.maxInboundBuffer && this.#reading.get(channel) === true) {
      this.#reading.set(channel, false)
      this.setReading(channel, false)
    }
    if (!this.#paused.get(channel) && this.listenerCount('message') > 0) this.#deliverBuffered()
  }

  /** A channel that returned false from writeFrame can take more. */
  protected channelWritable (channel: Channel): void {
    this.#writable.set(channel, true)
    this.#pump()
  }

  /** The underlying connection ended without a local close()/abort(). */
  protected underlyingClosed (info: { clean: boolean, error?: Error, reason?: string }): void {
    if (this.#status === 'closed') return
    if (this.#closing !== undefined && info.clean) return // our own graceful close completing
    const close: CloseInfo = { initiator: 'remote', clean: info.clean }
    if (info.error !== undefined) close.error = info.error
    if (info.reason !== undefined) close.reason = info.reason
    this.#discardQueues()
    // A clean remote close keeps what was received while paused deliverable.
    if (info.clean && this.#hasBufferedInbound()) {
      this.#status = 'closing'
      this.#pendingRemoteClose = close
      return
    }
    this.#finish(close)
  }

  protected setRtt (ms: number): void {
    this.#stats.rttMs = ms
  }

  /**
   * Called before `stats` is read: a transport whose RTT lives below us
   * (quic's congestion controller) samples it here, on demand, instead of on
   * a timer per connection (issue 16: 10,000 idle sessions were 10,000 timer
   * callbacks and native calls a second for a figure rarely read).
   */
  protected refreshStats (): void {}

  // ---- internals ---------------------------------------------------------------

  /**
   * The channel's codec stream: its encode() for what we send on the channel,
   * its decode() for what we receive on it. Undefined for codecs without streams.
   */
  #codecStream (channel: Channel): EnvelopeCodecStream | undefined {
    let s = this.#codecStreams.get(channel)
    if (s === undefined) {
      const codec = this.options.codec
      if (codec.createStream === undefined) return undefined
      s = codec.createStream()
      this.#codecStreams.set(channel, s)
    }
    return s
  }

  #pump (): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      let progress = true
      while (progress && !this.#isClosed()) {
        progress = false
        for (const ch of PRIORITIES) {
          const queue = this.#queues.get(ch) as Uint8Array[]
          // strict priority: drain a higher class before touching a lower one
          while (queue.length > 0 && this.#writable.get(ch) === true && !this.#isClosed()) {
            const frame = queue.shift() as Uint8Array
            this.#queuedBytes -= frame.byteLength
            this.#stats.bytesSent += frame.byteLength + this.#frameOverhead
            this.#stats.messagesSent++
            progress = true
            let ok: boolean
            try {
              ok = this.writeFrame(ch, frame)
            } catch (err) {
              this.abort(toError(err))
              return
            }
            if (!ok) this.#writable.set(ch, false)
          }
        }
      }
    } finally {
      this.#pumping = false
    }
    if (this.#needDrain && this.#queuedBytes < this.options.highWaterMark) {
      this.#needDrain = false
      const waiters = this.#drainWaiters
      this.#drainWaiters = []
      for (const w of waiters) w.resolve()
      process.nextTick(() => { if (this.#status === 'open') this.emit('drain') })
    }
    if (this.#queuedBytes === 0 && this.#flushWaiter !== undefined) {
      const w = this.#flushWaiter
      this.#flushWaiter = undefined
      w()
    }
  }

  async #gracefulClose (reason: string | undefined): Promise<void> {
    const deadline = this.options.closeTimeoutMs
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => {
      timer = setTimeout(() => resolve('timeout'), deadline)
      timer.unref()
    })
    try {
      if (this.#queuedBytes > 0) {
        const flushed = new Promise<'ok'>(resolve => { this.#flushWaiter = () => resolve('ok') })
        const r = await Promise.race([flushed, timedOut, this.#closed.then(() => 'closed' as const)])
        if (r === 'timeout') {
          this.abort(new ConnectionClosedError(`graceful close did not flush within ${deadline} ms`))
          return
        }
        if (r === 'closed') return
      }
      if (this.#status === 'closed') return
      const r = await Promise.race([
        this.closeUnderlying(reason).then(() => 'ok' as const, (err: unknown) => toError(err)),
        timedOut
      ])
      if (r === 'timeout') {
        this.abort(new ConnectionClosedError(`graceful close did not complete within ${deadline} ms`))
        return
      }
      if (r instanceof Error) {
        this.abort(r)
        return
      }
      const info: CloseInfo = { initiator: 'local', clean: true }
      if (reason !== undefined) info.reason = reason
      this.#finish(info)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Status read through a method: it changes under re-entrant calls, which flow analysis cannot see. */
  #isClosed (): boolean { return this.#status === 'closed' }

  #discardQueues (): void {
    for (const q of this.#queues.values()) q.length = 0
    this.#queuedBytes = 0
  }

  #hasBufferedInbound (): boolean {
    for (const q of this.#inbound.values()) if (q.length > 0) return true
    return false
  }

  #deliverBuffered (): void {
    if (this.#delivering) return
    this.#delivering = true
    try {
      // Resuming reading can synchronously feed more frames into the buffer,
      // so repeat until a pass delivers nothing.
      let progress = true
      while (progress && !this.#isClosed()) {
        progress = false
        for (const ch of PRIORITIES) {
          const queue = this.#inbound.get(ch) as Inbound[]
          while (queue.length > 0 && !this.#paused.get(ch) && !this.#isClosed() && this.listenerCount('message') > 0) {
            const item = queue.shift() as Inbound
            this.#inboundBytes.set(ch, (this.#inboundBytes.get(ch) ?? 0) - item.size)
            this.#emitMessage(item.env, ch)
            progress = true
          }
          if (!this.#isClosed() && this.#reading.get(ch) === false && !this.#paused.get(ch) &&
              (this.#inboundBytes.get(ch) ?? 0) < this.options.maxInboundBuffer) {
            this.#reading.set(ch, true)
            this.setReading(ch, true)
            progress = true
          }
        }
      }
    } finally {
      this.#delivering = false
    }
    if (this.#pendingRemoteClose !== undefined && !this.#hasBufferedInbound()) {
      const info = this.#pendingRemoteClose
      this.#pendingRemoteClose = undefined
      this.#finish(info)
    }
  }

  #emitMessage (env: Envelope, channel: Channel): void {
    try {
      this.emit('message', env, channel)
    } catch (err) {
      // A throwing listener is an application bug; contain it to this connection.
      this.abort(new ListenerError(err))
    }
  }

  /** Give the pre-auth slot back; an error that ends an unauthenticated connection is reported as its refusal. */
  #releasePreAuth (info: CloseInfo): void {
    const ticket = this.#preAuth
    if (ticket === undefined) return
    this.#preAuth = undefined
    const err = info.error
    if (err instanceof FrameTooLargeError) ticket.fail('hello_too_large', err.message)
    else if (err instanceof DecodeError || err instanceof InvalidEnvelopeError || err instanceof ProtocolError) ticket.fail('hello_malformed', err.message)
    else ticket.release()
  }

  #finish (info: CloseInfo): void {
    if (this.#status === 'closed') return
    this.#releasePreAuth(info)
    this.#status = 'closed'
    this.#closeInfo = info
    this.#discardQueues()
    for (const q of this.#inbound.values()) q.length = 0
    for (const ch of PRIORITIES) this.#inboundBytes.set(ch, 0)
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const w of waiters) w.reject(new ConnectionClosedError('connection closed while waiting for drain', { cause: info.error }))
    if (this.#flushWaiter !== undefined) {
      const w = this.#flushWaiter
      this.#flushWaiter = undefined
      w()
    }
    this.emit('close', info)
    this.#resolveClosed(info)
  }

  /** The close info once closed. */
  get closeInfo (): CloseInfo | undefined { return this.#closeInfo }
}
