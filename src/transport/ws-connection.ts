/**
 * One `ws://` / `wss://` connection (either direction) on top of a `ws`
 * WebSocket. Wire format: one binary WebSocket message per envelope, whose
 * first byte is the channel (0 control, 1 high, 2 normal, 3 bulk) followed by
 * the encoded envelope. No length prefix: WebSocket already frames messages,
 * and `maxPayload` enforces the size limit from the frame header, before the
 * payload is buffered.
 *
 * Head-of-line blocking: a WebSocket is one ordered TCP stream, so the four
 * channels are multiplexed and cannot be flow-controlled independently.
 * The sender still schedules strictly by priority (the base class does it),
 * so control traffic overtakes queued bulk traffic at the sender; but once
 * bytes are in the socket, a control message waits behind them. Inbound,
 * stopping one channel (setReading(ch, false)) has to pause the whole socket,
 * which stalls every channel until that one is read again. Hence
 * `headOfLineBlocking: true`; use quic:// when that matters.
 */
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { PRIORITIES } from '../codec/envelope.js'
import { ConnectionResetError, FrameTooLargeError, ProtocolError } from '../errors.js'
import { AbstractConnection } from './abstract-connection.js'
import type { ResolvedConnectionOptions } from './options.js'
import type { PreAuthTicket } from './pre-auth.js'
import type { Channel } from './types.js'

const CHANNEL_BYTE: Readonly<Record<Channel, number>> = { control: 0, high: 1, normal: 2, bulk: 3 }

/** Options object reused for every send (ws spreads it, so sharing is safe). */
const SEND_OPTS = { binary: true, fin: true } as const

/**
 * Bytes per frame the transport adds, for the byte counters: the channel byte
 * + a 2-byte WebSocket header + a 2-byte extended length (the common case,
 * envelopes of 126 B–64 KiB) + 2, half of the 4-byte mask that only
 * client→server frames carry (the base takes one constant for both
 * directions, so the mask is averaged over them).
 */
export const WS_FRAME_OVERHEAD = 1 + 2 + 2 + 2

/** WebSocket close codes that mean a deliberate, graceful close (RFC 6455 §7.4.1). */
const CLEAN_CODES = new Set([1000, 1001])

/** RFC 6455 limits the close reason to 123 bytes of UTF-8. */
function closeReason (reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined
  let r = reason
  while (Buffer.byteLength(r) > 123) r = r.slice(0, -1)
  return r
}

export interface WsConnectionInit {
  ws: WebSocket
  direction: 'inbound' | 'outbound'
  remoteAddress: string
  remoteIdentity: string | undefined
  options: ResolvedConnectionOptions
  /** writeFrame reports congestion once the socket buffers hold more than this. */
  writeBufferBytes: number
  /** Interval of RTT pings; 0 disables. */
  pingIntervalMs: number
  /** Accepted under pre-auth bounds: the WebSocketServer's maxPayload is the pre-auth limit; lifted per socket at markAuthenticated(). */
  preAuth?: { ticket: PreAuthTicket, maxFrameSize: number }
  /** TLS exporter of the wss socket (./channel-binding.ts); none for ws://. */
  channelBinding?: Uint8Array
}

/** ws' Receiver keeps the message size limit in a private field; it is read and raised defensively. */
interface WsReceiverLimit { _maxPayload?: unknown }

export class WsConnection extends AbstractConnection {
  readonly #ws: WebSocket
  readonly #highWater: number
  readonly #lowWater: number
  /** Channels whose last writeFrame returned false, waiting for channelWritable. */
  readonly #blocked = new Set<Channel>()
  /** Channels that asked to stop reading; the socket reads only when this is empty. */
  readonly #notReading = new Set<Channel>()
  #closeWaiter: (() => void) | undefined
  #pingTimer: NodeJS.Timeout | undefined
  #pingSeq = 0
  #pingOutstanding: { seq: number, at: number } | undefined
  #srtt: number | undefined
  readonly #binding: Uint8Array | undefined

  constructor (init: WsConnectionInit) {
    super({
      transport: 'ws',
      direction: init.direction,
      remoteAddress: init.remoteAddress,
      remoteIdentity: init.remoteIdentity,
      options: init.options,
      headOfLineBlocking: true,
      frameOverhead: WS_FRAME_OVERHEAD,
      ...(init.preAuth !== undefined ? { preAuth: init.preAuth } : {})
    })
    this.#ws = init.ws
    this.#binding = init.channelBinding
    this.#highWater = init.writeBufferBytes
    // Hysteresis: unblock only at half the threshold, so a congested socket
    // does not flip writable/blocked on every single frame.
    this.#lowWater = Math.floor(init.writeBufferBytes / 2)
    const ws = this.#ws
    ws.binaryType = 'nodebuffer'
    ws.on('message', this.#onMessage)
    ws.on('error', this.#onError)
    ws.on('close', this.#onClose)
    ws.on('pong', this.#onPong)
    if (init.pingIntervalMs > 0) {
      this.#ping()
      this.#pingTimer = setInterval(this.#ping, init.pingIntervalMs)
      this.#pingTimer.unref()
    }
  }

  /** The TLS exporter of a wss connection, taken at open (issue 13 item 10). */
  channelBinding (): Uint8Array | undefined { return this.#binding }

  // ---- primitives -----------------------------------------------------------------

  /**
   * Raise ws' per-message limit from the pre-auth hello size to maxFrameSize
   * (+1: our channel byte). ws checks `_maxPayload` against each frame header
   * before buffering the payload, which is exactly the cut wanted; it is set
   * once per server, so the per-socket raise goes through the Receiver's field.
   * If a ws release renames it, this throws and the connection is aborted —
   * loudly (test/security covers it) rather than silently keeping the small limit.
   */
  protected override liftInboundLimit (): void {
    const r = (this.#ws as unknown as { _receiver?: WsReceiverLimit | null })._receiver
    if (r === undefined || r === null || typeof r._maxPayload !== 'number') {
      throw new ProtocolError('cannot raise the WebSocket message limit after authentication (ws Receiver._maxPayload not found)')
    }
    r._maxPayload = this.inboundFrameLimit + 1
  }

  protected writeFrame (channel: Channel, payload: Uint8Array): boolean {
    const ws = this.#ws
    // CLOSING/CLOSED: the 'close' event is on its way and ends the connection;
    // the frame is lost with it, like everything else in flight.
    if (ws.readyState !== WebSocket.OPEN) return true
    // One copy to prepend the channel byte. ws cannot send a gather list, and
    // the alternative (a 1-byte fragment with fin:false, then the payload)
    // only moves the copy to the receiver, which must reassemble fragments,
    // and costs a second frame header. Measured on loopback with raw ws
    // (16 KiB and 1 MiB messages, both directions): the copy was as fast or
    // faster than fragmenting in every case (e.g. c2s 16 KiB 668 vs 569 MB/s).
    const frame = Buffer.allocUnsafe(payload.byteLength + 1)
    frame[0] = CHANNEL_BYTE[channel]
    frame.set(payload, 1)
    ws.send(frame, SEND_OPTS, this.#onSent)
    if (ws.bufferedAmount > this.#highWater) {
      this.#blocked.add(channel)
      return false
    }
    return true
  }

  protected setReading (channel: Channel, reading: boolean): void {
    // One TCP stream: pausing a channel pauses the socket, i.e. every channel
    // (see the head-of-line note at the top). ws.pause() stops reading from the
    // socket; messages already parsed from the last chunk are still emitted and
    // the base buffers them.
    if (reading) {
      this.#notReading.delete(channel)
      if (this.#notReading.size === 0) this.#ws.resume()
    } else {
      this.#notReading.add(channel)
      this.#ws.pause()
    }
  }

  protected closeUnderlying (reason: string | undefined): Promise<void> {
    this.#stopPing()
    return new Promise(resolve => {
      const ws = this.#ws
      if (ws.readyState === WebSocket.CLOSED) {
        resolve()
        return
      }
      this.#closeWaiter = resolve
      // The base has handed every queued frame to ws already; ws queues the
      // close frame behind them, so the peer reads all data before the close.
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, closeReason(reason))
    })
  }

  protected abortUnderlying (_err: Error): void {
    this.#stopPing()
    // terminate() destroys the TCP socket without a close frame: the peer sees
    // an abnormal closure (1006) and reports ConnectionResetError.
    this.#ws.terminate()
  }

  // ---- ws events ---------------------------------------------------------------------

  readonly #onSent = (err?: Error | null): void => {
    // A failed write means the socket is gone; 'close' reports it. (Node
    // passes null on success, hence the loose check.)
    if (err != null || this.#blocked.size === 0) return
    if (this.#ws.bufferedAmount > this.#lowWater) return
    // Every frame handed to ws carries this callback, so the callback of the
    // last frame written while blocked always runs after the buffer drained:
    // no polling timer is needed.
    const blocked = PRIORITIES.filter(ch => this.#blocked.has(ch))
    this.#blocked.clear()
    for (const ch of blocked) this.channelWritable(ch)
  }

  readonly #onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
    if (!isBinary) {
      this.abort(new ProtocolError('text WebSocket message received; edgefabric sends binary messages only'))
      return
    }
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
    const channel = buf.length > 0 ? PRIORITIES[buf[0] as number] : undefined
    if (channel === undefined) {
      this.abort(new ProtocolError(buf.length === 0 ? 'empty WebSocket message (no channel byte)' : `unknown channel byte ${buf[0] as number}`))
      return
    }
    this.receiveFrame(channel, buf.subarray(1))
  }

  readonly #onError = (err: Error & { code?: string }): void => {
    // After open, ws emits 'error' only for a peer that broke the protocol
    // (ws has already sent the matching close frame, e.g. 1009 for size);
    // network failures arrive as 'close' with 1006.
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.abort(new FrameTooLargeError(this.#oversizeLength(), this.inboundFrameLimit))
      return
    }
    this.abort(new ProtocolError(`WebSocket protocol error: ${err.message}`, { cause: err }))
  }

  readonly #onClose = (code: number, reasonBuf: Buffer): void => {
    this.#stopPing()
    const reason = reasonBuf.length > 0 ? reasonBuf.toString('utf8') : undefined
    const waiter = this.#closeWaiter
    this.#closeWaiter = undefined
    if (CLEAN_CODES.has(code)) {
      this.underlyingClosed(reason === undefined ? { clean: true } : { clean: true, reason })
    } else {
      const error = code === 1006
        ? new ConnectionResetError('WebSocket connection lost (no close frame)')
        : new ConnectionResetError(`peer closed the WebSocket with code ${code}${code === 1009 ? ' (message too big)' : ''}${reason === undefined ? '' : `: ${reason}`}`)
      this.underlyingClosed(reason === undefined ? { clean: false, error } : { clean: false, error, reason })
    }
    // Our own graceful close completing (the base ignores the clean underlyingClosed above then).
    waiter?.()
  }

  // ---- RTT -------------------------------------------------------------------------

  /**
   * RTT from WebSocket ping/pong, for stats only. Deliberately NOT a liveness
   * check: pongs queue behind bulk data on this single stream, and liveness is
   * judged by the hub/edge on inbound traffic. One ping outstanding at a time.
   */
  readonly #ping = (): void => {
    if (this.#ws.readyState !== WebSocket.OPEN || this.#pingOutstanding !== undefined) return
    const seq = ++this.#pingSeq >>> 0
    const data = Buffer.allocUnsafe(4)
    data.writeUInt32BE(seq, 0)
    this.#pingOutstanding = { seq, at: performance.now() }
    this.#ws.ping(data)
  }

  readonly #onPong = (data: Buffer): void => {
    const out = this.#pingOutstanding
    if (out === undefined || data.length !== 4 || data.readUInt32BE(0) !== out.seq) return
    this.#pingOutstanding = undefined
    const sample = performance.now() - out.at
    // EWMA with TCP's 1/8 gain (RFC 6298).
    this.#srtt = this.#srtt === undefined ? sample : this.#srtt + (sample - this.#srtt) / 8
    this.setRtt(Math.round(this.#srtt * 100) / 100)
  }

  #stopPing (): void {
    if (this.#pingTimer !== undefined) clearInterval(this.#pingTimer)
    this.#pingTimer = undefined
  }

  /**
   * The declared size of the rejected message, from ws' receiver state when
   * available (private fields, read defensively); otherwise the smallest size
   * that breaks the limit.
   */
  #oversizeLength (): number {
    const r = (this.#ws as unknown as { _receiver?: { _totalPayloadLength?: unknown } })._receiver
    const total = typeof r?._totalPayloadLength === 'number' ? r._totalPayloadLength : 0
    const size = total - 1 // minus our channel byte
    return size > this.inboundFrameLimit ? size : this.inboundFrameLimit + 1
  }
}
