/**
 * The accepting side of quic://: one native Server (UDP socket) per listener,
 * an accept loop, and the per-connection setup: take the dialer's four
 * streams (1-byte channel preface each), check identity and capacity, answer
 * ACCEPT or REFUSE on control, then hand the connection to onConnection.
 */
import { AbortedError, FrameTooLargeError, ProtocolError, toError } from '../errors.js'
import { FrameDecoder } from './framing.js'
import type { ResolvedConnectionOptions } from './options.js'
import { QuicConnection, decoderError, type QuicChannelInit } from './quic-connection.js'
import { parseRemote, settle, type NativeConnection, type NativeServer, type NativeStream } from './quic-native.js'
import {
  CHANNEL_ORDER, IO_CHUNK, REFUSE_CAPACITY, REFUSE_CLOSING, REFUSE_IDENTITY, refuseFrame
} from './quic-wire.js'
import type { Channel, Connection, ListenOptions, Listener } from './types.js'
import type { PreAuthTicket } from './pre-auth.js'
import { PrereadStream } from './quic-preread.js'

export interface QuicListenerInit {
  server: NativeServer
  url: string
  identity: string
  options: ListenOptions
  resolved: ResolvedConnectionOptions
  maxConnections: number
  acceptTimeoutMs: number
  rttIntervalMs: number
}

/** How long a refused dialer gets to read the refusal before we drop the connection. */
const REFUSE_LINGER_MS = 1000

export class QuicListener implements Listener {
  readonly url: string
  readonly identity: string
  readonly connections = new Set<Connection>()
  readonly #init: QuicListenerInit
  readonly #setup = new Set<NativeConnection>()
  /** Setup in progress: report a pre-auth violation found by a stream's preread. */
  readonly #violations = new Map<NativeConnection, (err: Error) => void>()
  /** Tickets handed to a QuicConnection (which gives them back itself). */
  readonly #adopted = new WeakSet<PreAuthTicket>()
  #closing: Promise<void> | undefined

  constructor (init: QuicListenerInit) {
    this.#init = init
    this.url = init.url
    this.identity = init.identity
    void this.#acceptLoop()
  }

  close (graceMs = 2000): Promise<void> {
    this.#closing ??= this.#close(graceMs)
    return this.#closing
  }

  async #close (graceMs: number): Promise<void> {
    for (const c of this.#setup) {
      try { c.abort() } catch { /* gone */ }
    }
    this.#setup.clear()
    await Promise.all([...this.connections].map(async c => {
      const timer = setTimeout(() => c.abort(new AbortedError('listener closed')), graceMs)
      try { await c.close('listener closed') } finally { clearTimeout(timer) }
    }))
    // Closing the endpoint closes whatever is left and releases the UDP port.
    await settle(() => this.#init.server.abort())
  }

  async #acceptLoop (): Promise<void> {
    for (;;) {
      let native: NativeConnection
      try {
        native = await this.#init.server.inboundConnection()
      } catch (err) {
        // One failed handshake rejects this call; only a closed server ends the loop.
        if (this.#closing !== undefined || /server closed/i.test(toError(err).message)) return
        continue
      }
      if (this.#closing !== undefined) {
        try { native.abort() } catch { /* gone */ }
        continue
      }
      // Pre-auth slot from the end of the QUIC handshake (the first point a
      // connection exists in JS): caps and the accept → authenticated deadline.
      const gate = this.#init.options.preAuth
      let ticket: PreAuthTicket | undefined
      if (gate !== undefined) {
        let remote = 'unknown'
        try { remote = parseRemote(native.remoteMultiaddr()).address } catch { /* keep 'unknown' */ }
        ticket = gate.admit('quic', remote, () => { try { native.abort() } catch { /* gone */ } })
        if (ticket === undefined) {
          try { native.abort() } catch { /* gone */ }
          continue
        }
      }
      this.#setup.add(native)
      this.#accept(native, ticket).catch((err: unknown) => {
        ticket?.fail(err instanceof FrameTooLargeError ? 'hello_too_large' : 'hello_malformed', toError(err).message)
        try { native.abort() } catch { /* gone */ }
      }).finally(() => {
        this.#setup.delete(native)
        // Refused in setup (identity, capacity, closing): no connection took the slot over.
        if (ticket !== undefined && !this.#adopted.has(ticket)) ticket.release()
      })
    }
  }

  async #accept (native: NativeConnection, ticket: PreAuthTicket | undefined): Promise<void> {
    const { address, peerId } = parseRemote(native.remoteMultiaddr())
    const timer = setTimeout(() => { try { native.abort() } catch { /* gone */ } }, this.#init.acceptTimeoutMs)
    timer.unref()
    let channels: Map<Channel, QuicChannelInit>
    try {
      channels = await this.#takeStreams(native, ticket === undefined ? undefined : this.#init.options.preAuth?.maxFrameSize)
    } finally {
      clearTimeout(timer)
    }
    const control = (channels.get('control') as QuicChannelInit).stream
    const expected = this.#init.options.expectedRemoteIdentity
    if (this.#closing !== undefined) {
      await refuse(native, control, REFUSE_CLOSING, 'listener is closing')
      return
    }
    if (expected !== undefined && expected !== peerId) {
      await refuse(native, control, REFUSE_IDENTITY, expected)
      return
    }
    if (this.connections.size >= this.#init.maxConnections) {
      await refuse(native, control, REFUSE_CAPACITY, `listener is at maxConnections (${this.#init.maxConnections})`)
      return
    }
    // From the checks to onConnection nothing awaits: capacity cannot be overrun,
    // and ACCEPT is queued ahead of anything onConnection sends.
    const conn = new QuicConnection({
      sendAccept: true,
      native,
      direction: 'inbound',
      remoteAddress: address,
      remoteIdentity: peerId as string,
      options: this.#init.resolved,
      channels,
      rttIntervalMs: this.#init.rttIntervalMs,
      ...(ticket !== undefined ? { preAuth: { ticket, maxFrameSize: this.#init.options.preAuth?.maxFrameSize ?? this.#init.resolved.maxFrameSize } } : {})
    })
    if (ticket !== undefined) this.#adopted.add(ticket)
    this.connections.add(conn)
    // Four streams are the protocol; a fifth would sit in quinn's receive
    // buffers unread (up to the stream window), so a peer that opens one is cut off.
    native.inboundStream().then(() => { conn.abort(new ProtocolError('unexpected extra stream')) }, () => {})
    conn.once('close', () => this.connections.delete(conn))
    try {
      this.#init.options.onConnection(conn)
    } catch (err) {
      conn.abort(toError(err))
    }
  }

  /**
   * Accept the dialer's four streams and read their prefaces. Under pre-auth
   * bounds (`preAuthMax`), frames are limited to it and every stream is read
   * and checked while the others are awaited (./quic-preread.ts).
   */
  async #takeStreams (native: NativeConnection, preAuthMax: number | undefined): Promise<Map<Channel, QuicChannelInit>> {
    const channels = new Map<Channel, QuicChannelInit>()
    const max = preAuthMax === undefined ? this.#init.resolved.maxFrameSize : Math.min(preAuthMax, this.#init.resolved.maxFrameSize)
    const prereads: PrereadStream[] = []
    let violation: Error | undefined
    // A violation on any stream ends the wait for the next one.
    const violated = new Promise<never>((_resolve, reject) => {
      this.#violations.set(native, err => { violation ??= err; reject(err) })
    })
    violated.catch(() => {})
    try {
      while (channels.size < CHANNEL_ORDER.length) {
        const raw = await Promise.race([native.inboundStream(), violated])
        let first: Uint8Array | null = null
        while (first === null || first.byteLength === 0) {
          first = await Promise.race([raw.read(IO_CHUNK), violated])
          if (first === null) throw new ProtocolError('stream ended before its preface')
        }
        const channel = CHANNEL_ORDER[first[0] as number]
        if (channel === undefined) throw new ProtocolError(`unknown channel preface ${String(first[0])}`)
        if (channels.has(channel)) throw new ProtocolError(`second stream for channel ${channel}`)
        const decoder = new FrameDecoder(max + 1)
        let frames: Uint8Array[]
        try {
          frames = decoder.push(first.subarray(1))
        } catch (err) {
          throw decoderError(err, max)
        }
        if (preAuthMax === undefined) {
          channels.set(channel, { stream: raw, decoder, frames })
          continue
        }
        if (frames.length > 0 && channel !== 'control') throw new ProtocolError(`${channel} data before authentication`)
        if (frames.length > 1) throw new ProtocolError('more than one frame before authentication')
        const stream = new PrereadStream(raw)
        prereads.push(stream)
        channels.set(channel, { stream, decoder, frames })
        stream.pump(channel, decoder, frames, max).catch((err: unknown) => this.#violations.get(native)?.(toError(err)))
      }
      if (violation !== undefined) throw violation
      return channels
    } finally {
      for (const p of prereads) p.handOver()
      this.#violations.delete(native)
    }
  }
}

/** Tell the dialer why, give it a moment to read that, then drop the connection. */
async function refuse (native: NativeConnection, control: NativeStream, code: number, text: string): Promise<void> {
  try {
    await control.write(refuseFrame(code, text))
    await settle(() => control.finishWrite())
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      native.closed().catch(() => {}),
      new Promise<void>(resolve => { timer = setTimeout(resolve, REFUSE_LINGER_MS); timer.unref() })
    ])
    clearTimeout(timer)
  } finally {
    try { native.abort() } catch { /* gone */ }
  }
}
