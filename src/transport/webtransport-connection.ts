/**
 * One WebTransport session as an edgefabric Connection.
 *
 * Wire format and close codes: ./webtransport-wire.ts.
 *
 * Graceful close is a FIN handshake, because closing a WebTransport session
 * discards whatever the peer has received but not yet read (the library errors
 * its ReadableStreams, which drops their queues): the closer FINs its four
 * streams; the peer, once it has read to the FIN on all four, FINs its own;
 * when the closer has read those FINs too, nothing is in flight and it closes
 * the session with CLOSE_GRACEFUL and the reason. A peer that never reads
 * makes the closer's close time out (closeTimeoutMs) and abort.
 *
 * Outbound: writeFrame reports a channel congested once WRITE_BUFFER_BYTES
 * are written but not yet taken by the library (it takes data only within the
 * peer's flow-control window), not on the WritableStream's 4-chunk
 * high-water mark, which says "busy" long before anything is actually full.
 *
 * Inbound flow control: the library eagerly moves arriving data into the
 * stream's ReadableStream and returns flow-control credit even when nobody
 * reads (probed with 1.6.8: a non-reading receiver took 40 MiB without
 * pushing back). So when the base asks us to stop reading a channel we also
 * stop the library's native stream (internal `stopReading()`), which leaves
 * data unconsumed and the sender's stream window closes.
 */
import { PRIORITIES } from '../codec/envelope.js'
import { ConnectionResetError, toError } from '../errors.js'
import { AbstractConnection } from './abstract-connection.js'
import { FRAME_HEADER_BYTES, FrameDecoder } from './framing.js'
import type { ResolvedConnectionOptions } from './options.js'
import type { PreAuthTicket } from './pre-auth.js'
import type { Channel } from './types.js'
import type { WtCloseInfo, WtSession } from './webtransport-lib.js'
import { CLOSE_ABORT, CLOSE_GRACEFUL, truncateReason, type ChannelStreams } from './webtransport-wire.js'

/** Frames smaller than this are coalesced into one stream write (one capsule / QUIC frame run). */
const COALESCE_BYTES = 64 * 1024
/**
 * Larger payloads are written in slices of this size: the HTTP/2 fallback
 * splits a write that exceeds the flow-control window by COPYING the rest,
 * which made one 8 MiB envelope cost ~36 MiB of copies with 1 MiB windows.
 */
const WRITE_SLICE_BYTES = 256 * 1024
/**
 * Bytes per channel written to the library and not yet accepted by it before
 * writeFrame says "congested". The library accepts asynchronously (a few
 * microtasks later), so this must hold a typical synchronous burst of sends;
 * otherwise "congested" would be reported while the peer's window is wide open.
 */
const WRITE_BUFFER_BYTES = 2 * 1024 * 1024
export interface WebTransportConnectionInit {
  direction: 'inbound' | 'outbound'
  remoteAddress: string
  remoteIdentity: string | undefined
  options: ResolvedConnectionOptions
  session: WtSession
  mode: 'http3' | 'http2'
  streams: ReadonlyMap<Channel, ChannelStreams>
  /** Destroy the underlying HTTP/2 connection or QUIC socket when a close does not complete. */
  teardown: () => void
  /** Smoothed RTT from the library's own pings, when it has one. */
  rtt: () => number | undefined
  /** Accepted under pre-auth bounds (./pre-auth.ts). */
  preAuth?: { ticket: PreAuthTicket, maxFrameSize: number }
}

interface ChannelIo extends ChannelStreams {
  channel: Channel
  decoder: FrameDecoder
  /** Decoded frames not yet handed to the base (reading stopped mid-chunk). */
  pending: Uint8Array[]
  pendingAt: number
  reading: boolean
  /** Local close in progress on a channel the application paused: read to the FIN, dropping data. */
  discarding: boolean
  looping: boolean
  eof: boolean
  finished: boolean
  batch: Uint8Array[]
  batchBytes: number
  flushScheduled: boolean
  /** Bytes handed to writer.write() whose promise has not settled. */
  unaccepted: number
  congested: boolean
}

export class WebTransportConnection extends AbstractConnection {
  /** `http3` (QUIC) or `http2` (the TCP fallback) — what this session actually runs on. */
  readonly webtransportMode: 'http3' | 'http2'
  readonly #session: WtSession
  readonly #io = new Map<Channel, ChannelIo>()
  readonly #teardown: () => void
  #eofCount = 0
  #sessionDone = false
  #localClosing = false
  #aborting = false
  #waiters: Array<() => void> = []
  #rttTimer: NodeJS.Timeout | undefined
  #teardownTimer: NodeJS.Timeout | undefined

  constructor (init: WebTransportConnectionInit) {
    super({
      transport: 'webtransport',
      direction: init.direction,
      remoteAddress: init.remoteAddress,
      remoteIdentity: init.remoteIdentity,
      options: init.options,
      // HTTP/2: every stream shares one TCP connection, so a lost segment stalls all channels.
      headOfLineBlocking: init.mode === 'http2',
      frameOverhead: FRAME_HEADER_BYTES,
      ...(init.preAuth !== undefined ? { preAuth: init.preAuth } : {})
    })
    this.webtransportMode = init.mode
    this.#session = init.session
    this.#teardown = init.teardown
    for (const ch of PRIORITIES) {
      const s = init.streams.get(ch)
      if (s === undefined) throw new Error(`missing stream for channel ${ch}`) // caller bug; dial/listen always pass four
      const decoder = new FrameDecoder(init.options.maxFrameSize)
      this.registerDecoder(decoder) // the pre-auth hello limit until markAuthenticated()
      this.#io.set(ch, {
        ...s,
        channel: ch,
        decoder,
        pending: [],
        pendingAt: 0,
        reading: true,
        discarding: false,
        looping: false,
        eof: false,
        finished: false,
        batch: [],
        batchBytes: 0,
        flushScheduled: false,
        unaccepted: 0,
        congested: false
      })
    }
    init.session.closed.then(info => { this.#onSessionClosed(info, undefined) }, (err: unknown) => { this.#onSessionClosed(undefined, err) })
    const rtt = (): void => { const ms = init.rtt(); if (ms !== undefined && Number.isFinite(ms)) this.setRtt(ms) }
    rtt()
    this.#rttTimer = setInterval(rtt, 1000)
    this.#rttTimer.unref()
    // Start reading on a later turn (not a microtask): a dialer attaches its 'message'
    // listener after `await dial()`, and bytes that came with the accept byte must not
    // be delivered before that.
    setImmediate(() => { for (const io of this.#io.values()) void this.#readLoop(io) })
  }

  // ---- primitives ----------------------------------------------------------------

  protected writeFrame (channel: Channel, payload: Uint8Array): boolean {
    const io = this.#io.get(channel) as ChannelIo
    if (io.finished) return true // our side already sent FIN (peer is closing): nothing more can go out
    if (payload.byteLength >= COALESCE_BYTES) {
      this.#flush(io)
      const header = new Uint8Array(FRAME_HEADER_BYTES)
      new DataView(header.buffer).setUint32(0, payload.byteLength, false)
      this.#write(io, header)
      for (let off = 0; off < payload.byteLength; off += WRITE_SLICE_BYTES) {
        this.#write(io, payload.subarray(off, Math.min(off + WRITE_SLICE_BYTES, payload.byteLength)))
      }
    } else {
      io.batch.push(payload)
      io.batchBytes += FRAME_HEADER_BYTES + payload.byteLength
      if (io.batchBytes >= COALESCE_BYTES) {
        this.#flush(io)
      } else if (!io.flushScheduled) {
        io.flushScheduled = true
        queueMicrotask(() => { io.flushScheduled = false; this.#flush(io) })
      }
    }
    if (io.unaccepted + io.batchBytes < WRITE_BUFFER_BYTES) return true
    io.congested = true
    return false
  }

  protected setReading (channel: Channel, reading: boolean): void {
    const io = this.#io.get(channel) as ChannelIo
    io.reading = reading
    if (reading) void this.#readLoop(io)
  }

  protected async closeUnderlying (reason: string | undefined): Promise<void> {
    this.#localClosing = true
    // A channel the application paused would never reach the peer's FIN and the close
    // would time out. Whatever arrives there now could not be delivered anyway (the base
    // drops undelivered inbound data when a local close completes), so drain it.
    for (const io of this.#io.values()) {
      if (!io.reading && !io.eof) {
        io.discarding = true
        io.pending = []
        io.pendingAt = 0
        void this.#readLoop(io)
      }
    }
    await Promise.all([...this.#io.values()].map(async io => { await this.#finishWrites(io) }))
    await this.#until(() => this.#eofCount === this.#io.size)
    if (!this.#sessionDone) {
      try {
        this.#session.close({ closeCode: CLOSE_GRACEFUL, reason: truncateReason(reason ?? '') })
      } catch {
        // the session is already closing; `closed` settles either way
      }
    }
    await this.#until(() => false)
  }

  protected abortUnderlying (err: Error): void {
    this.#aborting = true
    for (const io of this.#io.values()) { io.batch = []; io.batchBytes = 0; io.pending = []; io.pendingAt = 0 }
    if (!this.#sessionDone) {
      try {
        this.#session.close({ closeCode: CLOSE_ABORT, reason: truncateReason(err.message) })
      } catch {
        // already closing
      }
    }
    this.#scheduleTeardown()
  }

  // ---- reading ---------------------------------------------------------------------

  async #readLoop (io: ChannelIo): Promise<void> {
    if (io.looping) return
    io.looping = true
    try {
      if (io.leftover !== undefined) {
        const l = io.leftover
        io.leftover = undefined
        this.#ingest(io, l)
      }
      this.#deliver(io)
      while ((io.reading || io.discarding) && !io.eof && this.#alive()) {
        const r = await io.reader.read()
        if (r.done) {
          io.eof = true
          this.#onEof()
          break
        }
        // Reading may have been switched off while this read was pending: keep the chunk
        // (as pending frames). Only a paused channel drained during a local close drops data.
        if (io.discarding && !io.reading) continue
        this.#ingest(io, r.value)
        this.#deliver(io)
      }
    } catch (err) {
      this.#streamFailed(err)
    } finally {
      io.looping = false
      // Leave unread data in the library (unconsumed → no flow-control credit) until resumed.
      if (!io.reading && !io.discarding && !io.eof && this.#alive()) io.native?.stopReading()
    }
  }

  #ingest (io: ChannelIo, chunk: Uint8Array): void {
    let frames: Uint8Array[]
    try {
      frames = io.decoder.push(chunk)
    } catch (err) {
      this.abort(toError(err)) // FrameTooLargeError / DecodeError: the stream is unusable
      return
    }
    if (frames.length === 0) return
    if (io.pendingAt >= io.pending.length) {
      io.pending = frames
      io.pendingAt = 0
    } else {
      for (const f of frames) io.pending.push(f)
    }
  }

  #deliver (io: ChannelIo): void {
    while (io.pendingAt < io.pending.length && io.reading && this.#alive()) {
      const f = io.pending[io.pendingAt] as Uint8Array
      io.pendingAt++
      this.receiveFrame(io.channel, f)
    }
    if (io.pendingAt >= io.pending.length && io.pending.length > 0) {
      io.pending = []
      io.pendingAt = 0
    }
  }

  #onEof (): void {
    this.#eofCount++
    this.#wake()
    if (this.#eofCount === this.#io.size && !this.#localClosing && !this.#aborting) {
      // The peer finished all four streams: it is closing gracefully. Finish ours so
      // it knows we have read everything; it then closes the session with its reason.
      for (const io of this.#io.values()) void this.#finishWrites(io)
    }
  }

  // ---- writing ---------------------------------------------------------------------

  #flush (io: ChannelIo): void {
    if (io.batchBytes === 0 || io.finished) return
    const out = new Uint8Array(io.batchBytes)
    const view = new DataView(out.buffer)
    let off = 0
    for (const p of io.batch) {
      view.setUint32(off, p.byteLength, false)
      out.set(p, off + FRAME_HEADER_BYTES)
      off += FRAME_HEADER_BYTES + p.byteLength
    }
    io.batch = []
    io.batchBytes = 0
    this.#write(io, out)
  }

  #write (io: ChannelIo, chunk: Uint8Array): void {
    io.unaccepted += chunk.byteLength
    io.writer.write(chunk).then(() => {
      io.unaccepted -= chunk.byteLength
      // Resume the base at half the buffer so it refills while the rest is being sent.
      if (io.congested && io.unaccepted + io.batchBytes < WRITE_BUFFER_BYTES / 2) {
        io.congested = false
        if (this.status !== 'closed') this.channelWritable(io.channel)
      }
    }, (err: unknown) => { this.#streamFailed(err) })
  }

  async #finishWrites (io: ChannelIo): Promise<void> {
    if (io.finished) return
    this.#flush(io)
    io.finished = true
    try {
      await io.writer.close()
    } catch {
      // the session ended meanwhile; its closed promise reports why
    }
  }

  // ---- end of the session -------------------------------------------------------------

  #alive (): boolean { return this.status !== 'closed' && !this.#sessionDone && !this.#aborting }

  /** A stream read/write failed. Usually the session is ending: let its close info speak first. */
  #streamFailed (err: unknown): void {
    if (!this.#alive()) return
    setImmediate(() => {
      if (!this.#alive()) return
      this.abort(new ConnectionResetError('WebTransport stream failed', { cause: err }))
    })
  }

  #onSessionClosed (info: WtCloseInfo | undefined, err: unknown): void {
    this.#sessionDone = true
    this.#wake()
    clearInterval(this.#rttTimer)
    // The library closes the HTTP/2 connection of a dialer itself; anything else
    // (unresponsive peer, inbound side) is torn down shortly after.
    this.#scheduleTeardown()
    if (this.status === 'closed' || this.#aborting) return
    if (this.#localClosing) return // closeUnderlying is waiting on #sessionDone
    const code = info?.closeCode
    const reason = info?.reason !== undefined && info.reason !== '' ? info.reason : undefined
    if (err === undefined && code === CLOSE_GRACEFUL) {
      this.underlyingClosed(reason === undefined ? { clean: true } : { clean: true, reason })
      return
    }
    let message: string
    if (err !== undefined) message = `WebTransport session failed: ${toError(err).message}`
    else if (code === CLOSE_ABORT) message = `peer aborted the connection${reason !== undefined ? `: ${reason}` : ''}`
    else message = `WebTransport session ended unexpectedly (code ${String(code)}${reason !== undefined ? `: ${reason}` : ''})`
    const error = new ConnectionResetError(message, err !== undefined ? { cause: err } : {})
    this.underlyingClosed(reason === undefined ? { clean: false, error } : { clean: false, error, reason })
  }

  #scheduleTeardown (): void {
    if (this.#teardownTimer !== undefined) return
    clearInterval(this.#rttTimer)
    this.#teardownTimer = setTimeout(() => {
      try { this.#teardown() } catch { /* already gone */ }
    }, this.#sessionDone ? 200 : 1000)
    this.#teardownTimer.unref()
  }

  /** Resolve when `cond()` holds or the session is done (re-checked on every EOF / session end). */
  #until (cond: () => boolean): Promise<void> {
    if (cond() || this.#sessionDone) return Promise.resolve()
    return new Promise(resolve => {
      const check = (): void => {
        if (cond() || this.#sessionDone) resolve()
        else this.#waiters.push(check)
      }
      this.#waiters.push(check)
    })
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }
}
