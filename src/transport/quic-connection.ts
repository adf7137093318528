/**
 * One quic:// connection: four QUIC streams (one per channel) under the
 * AbstractConnection base. Each stream has its own read loop and its own
 * serialized writer, so a stalled bulk stream (peer not reading, or we paused
 * it) leaves control untouched; QUIC flow control does the pushing back.
 *
 * Graceful close (protocol in ./quic-wire.ts): the closer sends CLOSE and
 * finishes its data streams; the peer reads everything (even if paused),
 * reports a clean remote close, finishes its streams and sends ACK; the
 * closer, holding the ACK and all of the peer's data, closes the QUIC
 * connection. Anything else that ends the connection (abort, idle timeout
 * after the peer vanished) is unclean: the binding closes every connection
 * with code 0, so "clean" is decided by this protocol, not by QUIC.
 */
import { CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL } from './channel-binding.js'
import { ConnectionResetError, FrameTooLargeError, ProtocolError, toError } from '../errors.js'
import { AbstractConnection } from './abstract-connection.js'
import { FrameDecoder } from './framing.js'
import type { ResolvedConnectionOptions } from './options.js'
import type { PreAuthTicket } from './pre-auth.js'
import { settle, type NativeClient, type NativeConnection, type NativeStream } from './quic-native.js'
import {
  CHANNEL_ORDER, DATA_CHANNELS, IO_CHUNK, QUIC_FRAME_OVERHEAD, StreamWriter, T_ACCEPT, T_ACK, T_CLOSE, T_DATA, reasonBytes, utf8
} from './quic-wire.js'
import type { Channel } from './types.js'
import type { QuicStats } from './quic-engine-addon.js'

/** Per-stream transport buffer before writeFrame() says "wait". */
const WRITE_BUDGET = 128 * 1024

export interface QuicChannelInit {
  stream: NativeStream
  /** Decoder already fed with what was read during setup. */
  decoder: FrameDecoder
  /** Complete frames read during setup, not yet handled. */
  frames: Uint8Array[]
}

export interface QuicConnectionInit {
  native: NativeConnection
  /** The dialer's own endpoint, released with the connection. */
  client?: NativeClient
  direction: 'inbound' | 'outbound'
  remoteAddress: string
  remoteIdentity: string
  options: ResolvedConnectionOptions
  channels: Map<Channel, QuicChannelInit>
  rttIntervalMs: number
  /** Acceptor: send ACCEPT as the first control frame (before anything onConnection sends). */
  sendAccept?: boolean
  /** Accepted under pre-auth bounds (./pre-auth.ts); the channel decoders already hold the pre-auth limit. */
  preAuth?: { ticket: PreAuthTicket, maxFrameSize: number }
}

interface ChannelState {
  channel: Channel
  stream: NativeStream
  decoder: FrameDecoder
  writer: StreamWriter
  pending: Uint8Array[]
  want: boolean
  reading: boolean
  eof: boolean
}

/** Turn a decoder error about (type byte + envelope) into one about the envelope. */
export function decoderError (err: unknown, maxFrameSize: number): Error {
  if (err instanceof FrameTooLargeError) return new FrameTooLargeError(err.size - 1, maxFrameSize)
  return toError(err)
}

export class QuicConnection extends AbstractConnection {
  readonly #native: NativeConnection
  readonly #client: NativeClient | undefined
  readonly #chans = new Map<Channel, ChannelState>()
  readonly #rttIntervalMs: number
  /** When the RTT was last sampled from the engine (performance.now()); see refreshStats. */
  #rttAt = -Infinity
  #dead = false
  #reported = false
  #localClosing = false
  /** The peer's CLOSE (or ACK, which also ends its control data) arrived. */
  #peerFinal: { reason: string } | undefined
  #gotAck = false
  #sentAck = false
  #closeTimer: NodeJS.Timeout | undefined
  #ended: (() => void) | undefined
  /** The TLS exporter once read (it never changes for a connection). */
  #binding: Uint8Array | undefined

  constructor (init: QuicConnectionInit) {
    super({
      transport: 'quic',
      direction: init.direction,
      remoteAddress: init.remoteAddress,
      remoteIdentity: init.remoteIdentity,
      options: init.options,
      headOfLineBlocking: false,
      frameOverhead: QUIC_FRAME_OVERHEAD,
      ...(init.preAuth !== undefined ? { preAuth: init.preAuth } : {})
    })
    this.#native = init.native
    this.#client = init.client
    for (const channel of CHANNEL_ORDER) {
      const c = init.channels.get(channel) as QuicChannelInit
      // +1: the length prefix counts the frame's type byte (./quic-wire.ts).
      this.registerDecoder(c.decoder, 1)
      const writer = new StreamWriter(c.stream, WRITE_BUDGET,
        () => { if (!this.#dead) this.channelWritable(channel) },
        err => this.#failed(err))
      this.#chans.set(channel, {
        channel, stream: c.stream, decoder: c.decoder, writer, pending: c.frames, want: true, reading: false, eof: false
      })
    }
    if (init.sendAccept === true) this.#control().writer.enqueue(T_ACCEPT, new Uint8Array(0))
    this.#rttIntervalMs = init.rttIntervalMs
    this.#updateRtt()
    this.#native.closed().then(() => this.#nativeClosed(), () => this.#nativeClosed())
    // Start reading after the current microtasks: dial()'s caller (or
    // onConnection) attaches its 'message' listener first.
    setImmediate(() => { for (const st of this.#chans.values()) void this.#readLoop(st) })
  }

  /**
   * Channel binding (issue 13 item 10, ./channel-binding.ts): the TLS exporter of this QUIC
   * connection from the native engine (quinn `export_keying_material`, RFC 9001 §4 on the TLS 1.3
   * schedule); undefined on the libp2p engine, which cannot export.
   */
  channelBinding (): Uint8Array | undefined {
    this.#binding ??= this.#native.exporter?.(CHANNEL_BINDING_LABEL, CHANNEL_BINDING_BYTES)
    return this.#binding
  }

  /**
   * The engine's transport counters for this connection (quinn ConnectionStats:
   * congestion window and events, lost packets, ACK frames, flow-control
   * blocking); undefined on the libp2p engine. For benchmarks and diagnosis.
   */
  quicStats (): QuicStats | undefined {
    try {
      return this.#native.quicStats?.()
    } catch {
      return undefined
    }
  }

  // ---- AbstractConnection primitives -------------------------------------------

  protected writeFrame (channel: Channel, payload: Uint8Array): boolean {
    const st = this.#chans.get(channel)
    if (st === undefined || this.#dead) return true
    return st.writer.enqueue(T_DATA, payload)
  }

  protected setReading (channel: Channel, reading: boolean): void {
    const st = this.#chans.get(channel)
    if (st === undefined) return
    st.want = reading
    if (reading) void this.#readLoop(st)
  }

  protected async closeUnderlying (reason: string | undefined): Promise<void> {
    // Already ended, or answering the peer's close (it ends the connection).
    if (this.#dead || this.#reported) return
    this.#localClosing = true
    const ended = new Promise<void>(resolve => { this.#ended = resolve })
    // CLOSE goes out at once, not after the data streams drained: it tells
    // the peer to read everything even if paused, which is what lets a
    // congested data stream drain at all.
    this.#control().writer.enqueue(T_CLOSE, reasonBytes(reason))
    this.#kickAll()
    await Promise.all(DATA_CHANNELS.map(ch => this.#chans.get(ch)?.writer.finish()))
    this.#progress()
    await ended
  }

  protected abortUnderlying (_err: Error): void {
    this.#teardown()
  }

  // ---- reading ----------------------------------------------------------------

  async #readLoop (st: ChannelState): Promise<void> {
    if (st.reading || this.#dead) return
    st.reading = true
    try {
      while (st.pending.length > 0 && !this.#dead) {
        this.#handle(st, st.pending.shift() as Uint8Array)
      }
      while (!st.eof && !this.#dead && (st.want || this.#localClosing || this.#peerFinal !== undefined)) {
        const chunk = await st.stream.read(IO_CHUNK)
        if (this.#dead) return
        if (chunk === null) {
          st.eof = true
          this.#onEnd(st)
          return
        }
        let frames: Uint8Array[]
        try {
          frames = st.decoder.push(chunk)
        } catch (err) {
          this.abort(decoderError(err, this.inboundFrameLimit))
          return
        }
        for (const f of frames) {
          if (this.#dead) return
          this.#handle(st, f)
        }
      }
    } catch (err) {
      this.#failed(err)
    } finally {
      st.reading = false
    }
  }

  #handle (st: ChannelState, frame: Uint8Array): void {
    const type = frame[0]
    if (type === T_DATA && this.#peerFinal === undefined) {
      this.receiveFrame(st.channel, frame.subarray(1))
      return
    }
    if (st.channel === 'control' && this.#peerFinal === undefined && type === T_CLOSE) {
      this.#peerFinal = { reason: utf8(frame.subarray(1)) }
      this.#kickAll()
      if (!this.#localClosing) {
        // A peer that announces a close must finish it; don't wait forever.
        this.#closeTimer = setTimeout(() => this.#failed(new Error('the peer did not complete its close')), this.options.closeTimeoutMs)
        this.#closeTimer.unref()
      }
      this.#progress()
      return
    }
    if (st.channel === 'control' && type === T_ACK && this.#localClosing && !this.#gotAck) {
      this.#gotAck = true
      this.#peerFinal ??= { reason: '' }
      this.#progress()
      return
    }
    if (type === T_DATA && st.channel !== 'control') {
      this.receiveFrame(st.channel, frame.subarray(1)) // data streams end with FIN, not CLOSE
      return
    }
    this.abort(new ProtocolError(`unexpected quic frame type ${String(type)} on the ${st.channel} stream`))
  }

  #onEnd (st: ChannelState): void {
    if (st.decoder.bufferedBytes > 0) {
      this.abort(new ProtocolError(`the ${st.channel} stream ended inside a frame`))
      return
    }
    // CLOSE or ACK is the last thing on control, so a bare control FIN is a protocol error.
    if (st.channel === 'control' && this.#peerFinal === undefined) {
      this.abort(new ProtocolError('the peer ended the control stream without CLOSE'))
      return
    }
    this.#progress()
  }

  /** Advance the close protocol after any close-related event. */
  #progress (): void {
    if (this.#dead || this.#peerFinal === undefined) return
    for (const ch of DATA_CHANNELS) if (this.#chans.get(ch)?.eof !== true) return
    // We hold all of the peer's data.
    if (!this.#sentAck) {
      this.#sentAck = true
      clearTimeout(this.#closeTimer)
      if (!this.#localClosing) this.#report({ clean: true, reason: this.#peerFinal.reason })
      void this.#sendAck()
    }
    // The peer holds all of ours: close the QUIC connection.
    if (this.#gotAck) {
      this.#teardown()
      this.#ended?.()
    }
  }

  async #sendAck (): Promise<void> {
    await Promise.all(DATA_CHANNELS.map(ch => this.#chans.get(ch)?.writer.finish()))
    const control = this.#control()
    control.writer.enqueue(T_ACK, new Uint8Array(0))
    await control.writer.finish()
    if (this.#localClosing || this.#dead) return
    // We answered a remote close; the closer ends the connection. Bound the wait.
    const t = setTimeout(() => this.#teardown(), this.options.closeTimeoutMs)
    t.unref()
    await this.#native.closed().catch(() => {})
    clearTimeout(t)
    this.#teardown()
  }

  #kickAll (): void {
    for (const st of this.#chans.values()) void this.#readLoop(st)
  }

  #control (): ChannelState {
    return this.#chans.get('control') as ChannelState
  }

  // ---- failure / teardown -----------------------------------------------------

  /** A read or write failed: the connection is gone (reset, lost, timed out). */
  #failed (err: unknown): void {
    if (this.#dead) return
    const e = toError(err)
    this.#teardown()
    this.#ended?.()
    // After our ACK we hold all of the peer's data, and the peer only closes the
    // connection once it holds all of ours: the close completed cleanly.
    if (this.#sentAck) return
    this.#report({ clean: false, error: new ConnectionResetError(`quic connection lost: ${e.message}`, { cause: e }) })
  }

  /** Tell the base how the connection ended, once: a later failure must not overwrite a clean end. */
  #report (info: { clean: boolean, error?: Error, reason?: string }): void {
    if (this.#reported) return
    this.#reported = true
    if (info.reason === '') delete info.reason
    this.underlyingClosed(info)
  }

  #nativeClosed (): void {
    if (this.#dead) return
    // Pending reads reject with the same news; let them report first.
    setImmediate(() => this.#failed(new Error('connection closed')))
  }

  #teardown (): void {
    if (this.#dead) return
    this.#dead = true
    clearTimeout(this.#closeTimer)
    for (const st of this.#chans.values()) st.writer.kill()
    this.#ended?.()
    try { this.#native.abort() } catch { /* already closed */ }
    if (this.#client !== undefined) void settle(() => this.#client?.abort())
  }

  /**
   * The RTT is the engine's (RFC 9002 §5 smoothed_rtt), sampled when stats
   * are read and at most once per `rttIntervalMs`: no timer per connection.
   */
  protected override refreshStats (): void {
    if (performance.now() - this.#rttAt >= this.#rttIntervalMs) this.#updateRtt()
  }

  #updateRtt (): void {
    this.#rttAt = performance.now()
    if (this.#dead) return
    try {
      this.setRtt(this.#native.rtt())
    } catch {
      // the connection is closing; the next event tears us down
    }
  }
}
