/**
 * One quic:// connection: four QUIC streams (one per channel) under the
 * AbstractConnection base. Each stream has its own read loop and its own
 * serialized writer, so a stalled bulk stream (peer not reading, or we paused
 * it) leaves control untouched; QUIC flow control does the pushing back.
 *
 * Graceful close (see ./quic-wire.ts): the closer sends CLOSE on control and
 * finishes its four streams; the other side reads every stream to its end,
 * reports a clean remote close, finishes its own streams; the closer, having
 * read all four ends, closes the QUIC connection. Anything else that ends the
 * connection (abort, idle timeout after the peer vanished) is unclean.
 */
import { ConnectionResetError, FrameTooLargeError, ProtocolError, toError } from '../errors.js'
import { AbstractConnection } from './abstract-connection.js'
import { FrameDecoder } from './framing.js'
import type { ResolvedConnectionOptions } from './options.js'
import { settle, type NativeClient, type NativeConnection, type NativeStream } from './quic-native.js'
import {
  CHANNEL_ORDER, IO_CHUNK, QUIC_FRAME_OVERHEAD, StreamWriter, T_CLOSE, T_DATA, utf8
} from './quic-wire.js'
import type { Channel } from './types.js'

/** Per-stream transport buffer before writeFrame() says "wait". */
const WRITE_BUDGET = 256 * 1024

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
  readonly #rttTimer: NodeJS.Timeout
  #dead = false
  #remoteClose: { reason: string } | undefined
  #localClosing = false
  #remoteDone = false
  #allEnded: (() => void) | undefined

  constructor (init: QuicConnectionInit) {
    super({
      transport: 'quic',
      direction: init.direction,
      remoteAddress: init.remoteAddress,
      remoteIdentity: init.remoteIdentity,
      options: init.options,
      headOfLineBlocking: false,
      frameOverhead: QUIC_FRAME_OVERHEAD
    })
    this.#native = init.native
    this.#client = init.client
    for (const channel of CHANNEL_ORDER) {
      const c = init.channels.get(channel) as QuicChannelInit
      const writer = new StreamWriter(c.stream, WRITE_BUDGET,
        () => { if (!this.#dead) this.channelWritable(channel) },
        err => this.#failed(err))
      this.#chans.set(channel, {
        channel, stream: c.stream, decoder: c.decoder, writer, pending: c.frames, want: true, reading: false, eof: false
      })
    }
    this.#updateRtt()
    this.#rttTimer = setInterval(() => this.#updateRtt(), init.rttIntervalMs)
    this.#rttTimer.unref()
    this.#native.closed().then(() => this.#nativeClosed(), () => this.#nativeClosed())
    // Start reading after the current microtasks: dial()'s caller (or
    // onConnection) attaches its 'message' listener first.
    setImmediate(() => { for (const st of this.#chans.values()) void this.#readLoop(st) })
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
    if (this.#dead) return
    this.#localClosing = true
    const ended = new Promise<void>(resolve => { this.#allEnded = resolve })
    const control = this.#chans.get('control') as ChannelState
    control.writer.enqueue(T_CLOSE, Buffer.from(reason ?? '', 'utf8').subarray(0, 1024))
    await Promise.all([...this.#chans.values()].map(st => st.writer.finish()))
    // Read every stream to its end even if paused: the peer's last frames
    // must be consumed or its FIN never arrives.
    this.#kickAll()
    this.#checkEnded()
    await ended
    this.#teardown(true)
  }

  protected abortUnderlying (_err: Error): void {
    this.#teardown(true)
  }

  // ---- reading ----------------------------------------------------------------

  async #readLoop (st: ChannelState): Promise<void> {
    if (st.reading || this.#dead) return
    st.reading = true
    try {
      while (st.pending.length > 0 && !this.#dead) {
        this.#handle(st, st.pending.shift() as Uint8Array)
      }
      while (!st.eof && !this.#dead && (st.want || this.#localClosing || this.#remoteClose !== undefined)) {
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
          this.abort(decoderError(err, this.options.maxFrameSize))
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
    if (type === T_DATA) {
      this.receiveFrame(st.channel, frame.subarray(1))
      return
    }
    if (type === T_CLOSE && st.channel === 'control' && this.#remoteClose === undefined) {
      this.#remoteClose = { reason: utf8(frame.subarray(1)) }
      this.#kickAll()
      return
    }
    this.abort(new ProtocolError(`unexpected quic frame type ${String(type)} on the ${st.channel} stream`))
  }

  #onEnd (st: ChannelState): void {
    if (st.decoder.bufferedBytes > 0) {
      this.abort(new ProtocolError(`the ${st.channel} stream ended inside a frame`))
      return
    }
    // CLOSE travels on control before its FIN, so a bare control FIN is a protocol error.
    if (st.channel === 'control' && this.#remoteClose === undefined && !this.#localClosing) {
      this.abort(new ProtocolError('the peer ended the control stream without CLOSE'))
      return
    }
    this.#checkEnded()
  }

  #checkEnded (): void {
    for (const st of this.#chans.values()) if (!st.eof) return
    if (this.#localClosing) {
      this.#allEnded?.()
      return
    }
    if (this.#remoteClose !== undefined && !this.#remoteDone) {
      this.#remoteDone = true
      const reason = this.#remoteClose.reason
      this.underlyingClosed(reason === '' ? { clean: true } : { clean: true, reason })
      void this.#answerRemoteClose()
    }
  }

  /** The peer closed gracefully and we read everything: end our halves, let it close the connection. */
  async #answerRemoteClose (): Promise<void> {
    await Promise.all([...this.#chans.values()].map(st => st.writer.finish()))
    const t = setTimeout(() => this.#teardown(true), this.options.closeTimeoutMs)
    t.unref()
    await this.#native.closed().catch(() => {})
    clearTimeout(t)
    this.#teardown(true)
  }

  #kickAll (): void {
    for (const st of this.#chans.values()) void this.#readLoop(st)
  }

  // ---- failure / teardown -----------------------------------------------------

  /** A read or write failed: the connection is gone (reset, lost, timed out). */
  #failed (err: unknown): void {
    if (this.#dead) return
    const e = toError(err)
    this.#teardown(true)
    this.#allEnded?.()
    this.underlyingClosed({ clean: false, error: new ConnectionResetError(`quic connection lost: ${e.message}`, { cause: e }) })
  }

  #nativeClosed (): void {
    if (this.#dead) return
    // Pending reads reject with the same news; give them the first word (same tick ordering is not guaranteed).
    setImmediate(() => this.#failed(new Error('connection closed')))
  }

  #teardown (closeNative: boolean): void {
    if (this.#dead) return
    this.#dead = true
    clearInterval(this.#rttTimer)
    for (const st of this.#chans.values()) st.writer.kill()
    if (closeNative) {
      try { this.#native.abort() } catch { /* already closed */ }
    }
    if (this.#client !== undefined) void settle(() => this.#client?.abort())
  }

  #updateRtt (): void {
    if (this.#dead) return
    try {
      this.setRtt(this.#native.rtt())
    } catch {
      // the connection is closing; the next event tears us down
    }
  }
}
