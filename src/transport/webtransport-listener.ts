/**
 * The WebTransport listener: an @fails-components/webtransport server
 * (Http3Server over QUIC/UDP, or Http2Server — WebTransport over HTTP/2 on
 * TCP — when the native HTTP/3 binding is absent) accepting sessions on the
 * URL's path. Each session becomes a Connection once the dialer has opened
 * its four channel streams (see ./webtransport-connection.ts).
 */
import { randomBytes } from 'node:crypto'
import type { ReadableStreamDefaultReader } from 'node:stream/web'
import { createSecureContext } from 'node:tls'
import { PRIORITIES } from '../codec/envelope.js'
import { AbortedError, FrameTooLargeError, InvalidOptionError, ListenError, ProtocolError, toError } from '../errors.js'
import { intOption } from '../util/options.js'
import { certificateFingerprint, generateSelfSignedCertificate, type CertificateKeyPair } from '../identity/tls.js'
import { resolveConnectionOptions, type ResolvedConnectionOptions } from './options.js'
import type { Channel, Connection, ListenOptions, Listener } from './types.js'
import { WebTransportConnection } from './webtransport-connection.js'
import {
  destroyHttp2Session, guardPing, http2PeerKey, nativeStreamFor, serverHttp2, serverHttp2Session, setServerCertificate
} from './webtransport-internals.js'
import { resetSocket, type PreAuthGate, type PreAuthTicket } from './pre-auth.js'
import type { WtBidiStream, WtLibrary, WtServer, WtServerSession } from './webtransport-lib.js'
import {
  ACCEPT_BYTE, CLOSE_REFUSED, PREFACE_CHANNEL, WT_FLOW_CONTROL, readFirst, truncateReason, type ChannelStreams
} from './webtransport-wire.js'

const noop = (): void => {}

/** How long an accepted session may take to open its four streams. */
const HANDSHAKE_TIMEOUT_MS = 10_000
/** Bound on starting the library server (it reports some failures only by never becoming ready). */
const START_TIMEOUT_MS = 10_000

export interface WtListenTarget {
  scheme: string
  host: string
  port: number
  path: string
  /** `mode=` as written in the URL (echoed into Listener.url), if any. */
  modeParam: string | undefined
}

function parseIdentity (identity: unknown): CertificateKeyPair | undefined {
  if (identity === undefined) return undefined
  const o = identity as { cert?: unknown, key?: unknown }
  const str = (v: unknown): string | undefined => typeof v === 'string' ? v : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : undefined
  const cert = str(o?.cert)
  const key = str(o?.key)
  if (typeof identity !== 'object' || identity === null || cert === undefined || key === undefined) {
    throw new InvalidOptionError('identity', 'WebTransport listener identity must be { cert, key } (PEM strings)')
  }
  try {
    createSecureContext({ cert, key }) // fail here, typed, instead of a server that never starts
  } catch (err) {
    throw new InvalidOptionError('identity', `certificate/key rejected by TLS: ${toError(err).message}`, { cause: err })
  }
  return { cert, key }
}

export class WebTransportListener implements Listener {
  url = ''
  identity: string | undefined
  readonly connections = new Set<Connection>()
  /** `http3` or `http2` (the TCP fallback): what this listener serves. */
  readonly webtransportMode: 'http3' | 'http2'
  readonly #lib: WtLibrary
  readonly #target: WtListenTarget
  readonly #options: ListenOptions
  readonly #resolved: ResolvedConnectionOptions
  readonly #maxConnections: number
  readonly #pending = new Set<WtServerSession>()
  readonly #h2Sessions = new Set<unknown>()
  readonly #gate: PreAuthGate | undefined
  /** HTTP/2 mode: pre-auth slots taken at TCP accept, by `address|port`, until a session adopts one. */
  readonly #tcpTickets = new Map<string, PreAuthTicket>()
  #server: WtServer | undefined
  #closing: Promise<void> | undefined

  constructor (lib: WtLibrary, mode: 'http3' | 'http2', target: WtListenTarget, options: ListenOptions) {
    if (typeof options?.onConnection !== 'function') throw new InvalidOptionError('onConnection', 'must be a function')
    if (options.expectedRemoteIdentity !== undefined) {
      throw new InvalidOptionError('expectedRemoteIdentity', 'WebTransport cannot authenticate clients (no client certificates); ' +
        'authenticate them in the session handshake instead')
    }
    this.#lib = lib
    this.webtransportMode = mode
    this.#target = target
    this.#options = options
    this.#resolved = resolveConnectionOptions(options)
    this.#maxConnections = intOption('maxConnections', options.maxConnections, 100_000, 1)
    this.#gate = options.preAuth
  }

  async start (): Promise<void> {
    let material = parseIdentity(this.#options.identity)
    if (material === undefined) {
      // No identity given: an ephemeral self-signed certificate (14 days, the WebTransport pinning
      // limit). Dialers pin it through Listener.identity.
      const names = [...new Set([this.#target.host, 'localhost', '127.0.0.1'])]
      material = await generateSelfSignedCertificate({ commonName: 'localhost', altNames: names })
    }
    this.identity = certificateFingerprint(material.cert)
    const init = {
      port: this.#target.port,
      host: this.#target.host,
      secret: randomBytes(16).toString('hex'), // QUIC token/retry secret (HTTP/3), required by both servers
      cert: material.cert,
      privKey: material.key,
      ...WT_FLOW_CONTROL
    }
    const href = `${this.#target.scheme}://${this.#target.host}:${this.#target.port}${this.#target.path}`
    let server: WtServer
    try {
      server = this.webtransportMode === 'http3' ? new this.#lib.Http3Server(init) : new this.#lib.Http2Server(init)
    } catch (err) {
      throw new ListenError(href, toError(err).message, { cause: err })
    }
    this.#server = server
    server.ready.catch(noop)
    server.closed.catch(noop)
    const sessions = server.sessionStream(this.#target.path)
    server.startServer()
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        server.ready,
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`server not ready after ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS) })
      ])
    } catch (err) {
      try { server.stopServer() } catch { /* never started */ }
      throw new ListenError(href, toError(err).message, { cause: err })
    } finally {
      clearTimeout(timer)
    }
    const addr = server.address()
    const host = addr?.host ?? this.#target.host
    const hostPart = host.includes(':') ? `[${host}]` : host
    const query = this.#target.modeParam !== undefined ? `?mode=${this.#target.modeParam}` : ''
    this.url = `${this.#target.scheme}://${hostPart}:${addr?.port ?? this.#target.port}${this.#target.path}${query}`
    const h2server = serverHttp2(server)
    const gate = this.#gate
    if (gate !== undefined) {
      // HTTP/2 mode: a slot from TCP accept, so an idle socket or a slow TLS /
      // HTTP/2 / CONNECT exchange meets the same deadline as everything else.
      h2server?.on('connection', socket => {
        socket.on('error', noop)
        const key = `${socket.remoteAddress ?? ''}|${socket.remotePort ?? 0}`
        // The kill is a TCP reset: once TLS and an HTTP/2 session sit on the socket,
        // destroy() on any of them leaves a silent peer connected (probed, node 20).
        const ticket = gate.admit('webtransport', `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`, () => { resetSocket(socket) })
        if (ticket === undefined) { socket.destroy(); return }
        this.#tcpTickets.set(key, ticket)
        socket.once('close', () => {
          ticket.release()
          if (this.#tcpTickets.get(key) === ticket) this.#tcpTickets.delete(key)
        })
      })
    }
    h2server?.on('session', s => {
      // The deadline ends the HTTP/2 session first (then the gate's kill resets the TCP socket).
      const key = gate === undefined ? undefined : http2PeerKey(s)
      if (key !== undefined) this.#tcpTickets.get(key)?.onExpire(() => { destroyHttp2Session(s) })
      guardPing(s) // the library's RTT timer would otherwise throw on a destroyed session
      this.#h2Sessions.add(s)
      const o = s as { once?: (ev: string, cb: () => void) => void, on?: (ev: string, cb: () => void) => void }
      o.once?.('close', () => this.#h2Sessions.delete(s))
      o.on?.('error', noop) // node:http2 sessions re-emit socket errors; the WebTransport session reports them
    })
    void this.#acceptLoop(sessions.getReader())
  }

  async #acceptLoop (reader: ReadableStreamDefaultReader<WtServerSession>): Promise<void> {
    for (;;) {
      let r: { done: boolean, value?: WtServerSession }
      try {
        r = await reader.read()
      } catch {
        return
      }
      if (r.done || r.value === undefined) return
      this.#onSession(r.value)
    }
  }

  #onSession (s: WtServerSession): void {
    s.ready.catch(noop)
    s.closed.catch(noop)
    const h2 = serverHttp2Session(s)
    const refuse = (reason: string): void => {
      try { s.close({ closeCode: CLOSE_REFUSED, reason: truncateReason(reason) }) } catch { /* closing */ }
      if (h2 !== undefined) setTimeout(() => destroyHttp2Session(h2), 1000).unref()
    }
    if (this.#closing !== undefined) { refuse('listener closing'); return }
    if (this.connections.size + this.#pending.size >= this.#maxConnections) { refuse('listener at maxConnections'); return }
    let ticket: PreAuthTicket | undefined
    if (this.#gate !== undefined) {
      // The TCP connection's slot for its first session; any further session on the
      // same HTTP/2 connection (or HTTP/3, which has no TCP accept) takes its own.
      const key = h2 === undefined ? undefined : http2PeerKey(h2)
      ticket = key === undefined ? undefined : this.#tcpTickets.get(key)
      if (ticket !== undefined && key !== undefined) this.#tcpTickets.delete(key)
      if (ticket === undefined || !ticket.open) {
        ticket = this.#gate.admit('webtransport', s.peerAddress ?? 'unknown', () => { refuse('not authenticated in time') })
        if (ticket === undefined) { refuse('too many unauthenticated sessions'); return }
      } else {
        ticket.onExpire(() => { refuse('not authenticated in time') })
      }
    }
    this.#pending.add(s)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new ProtocolError(`session did not open its channel streams within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS)
    })
    timeout.catch(noop)
    const incoming = s.incomingBidirectionalStreams.getReader()
    Promise.race([this.#handshake(s, incoming), timeout]).then(streams => {
      this.#pending.delete(s)
      if (this.#closing !== undefined || (ticket !== undefined && !ticket.open)) {
        ticket?.release()
        refuse('listener closing')
        return
      }
      this.#open(s, h2, streams, incoming, ticket)
    }, (err: unknown) => {
      this.#pending.delete(s)
      ticket?.fail(err instanceof FrameTooLargeError ? 'hello_too_large' : 'hello_malformed', toError(err).message)
      refuse(toError(err).message)
    }).finally(() => { clearTimeout(timer) }).catch(noop)
  }

  async #handshake (s: WtServerSession, incoming: ReadableStreamDefaultReader<WtBidiStream>): Promise<Map<Channel, ChannelStreams>> {
    await s.ready
    const streams = new Map<Channel, ChannelStreams>()
    while (streams.size < PRIORITIES.length) {
      const r = await incoming.read()
      if (r.done) throw new ProtocolError('session ended during the handshake')
      const bs = r.value
      const reader = bs.readable.getReader()
      const writer = bs.writable.getWriter()
      const native = nativeStreamFor(s, bs.readable)
      const first = await readFirst(reader, 'channel stream')
      const channel = PREFACE_CHANNEL[first[0] as number]
      if (channel === undefined || streams.has(channel)) throw new ProtocolError(`bad channel preface ${String(first[0])}`)
      this.#checkPreAuthLeftover(channel, first.subarray(1))
      streams.set(channel, { reader, writer, native, leftover: first.byteLength > 1 ? first.subarray(1) : undefined })
    }
    const control = streams.get('control') as ChannelStreams
    control.writer.write(Uint8Array.of(ACCEPT_BYTE)).catch(noop)
    return streams
  }

  /**
   * Bytes that came with a channel preface, before authentication: data
   * channels must be silent and control may hold only the start of one hello.
   * Checked here because the connection (which enforces the same through its
   * decoders) does not exist until all four streams are open.
   */
  #checkPreAuthLeftover (channel: Channel, rest: Uint8Array): void {
    const gate = this.#gate
    if (gate === undefined || rest.byteLength === 0) return
    if (channel !== 'control') throw new ProtocolError(`${channel} data before authentication`)
    if (rest.byteLength >= 4) {
      const len = new DataView(rest.buffer, rest.byteOffset, 4).getUint32(0, false)
      if (len > gate.maxFrameSize) throw new FrameTooLargeError(len, gate.maxFrameSize)
    }
    if (rest.byteLength > gate.maxFrameSize + 4) throw new ProtocolError('more than one hello before authentication')
  }

  #open (s: WtServerSession, h2: ReturnType<typeof serverHttp2Session>, streams: Map<Channel, ChannelStreams>,
    incoming: ReadableStreamDefaultReader<WtBidiStream>, ticket: PreAuthTicket | undefined): void {
    const conn = new WebTransportConnection({
      direction: 'inbound',
      remoteAddress: s.peerAddress ?? 'unknown',
      remoteIdentity: undefined, // WebTransport has no client certificates
      options: this.#resolved,
      session: s,
      mode: this.webtransportMode,
      streams,
      teardown: () => { if (h2 !== undefined) destroyHttp2Session(h2) },
      rtt: () => h2?.WTrtt,
      ...(ticket !== undefined && this.#gate !== undefined ? { preAuth: { ticket, maxFrameSize: this.#gate.maxFrameSize } } : {})
    })
    this.connections.add(conn)
    conn.once('close', () => { this.connections.delete(conn) })
    // Any stream beyond the four channels is a protocol violation.
    incoming.read().then(r => {
      if (!r.done) conn.abort(new ProtocolError('unexpected extra stream'))
    }, noop)
    try {
      this.#options.onConnection(conn)
    } catch (err) {
      conn.abort(toError(err))
    }
  }

  /**
   * Serve a new certificate to new sessions; open sessions are unaffected.
   * WebTransport pins leaves valid for at most 14 days, so a long-running
   * listener must rotate (the hub does, src/hub/hub-core.ts). Returns false
   * when this listener cannot swap its certificate while running (HTTP/3: the
   * native binding takes it only at start; restart the listener instead).
   * Throws InvalidOptionError for material TLS rejects.
   */
  updateIdentity (identity: { cert: string, key: string }): boolean {
    const material = parseIdentity(identity) as CertificateKeyPair
    if (this.#server === undefined || this.#closing !== undefined || this.webtransportMode !== 'http2') return false
    if (!setServerCertificate(this.#server, material)) return false
    this.identity = certificateFingerprint(material.cert)
    return true
  }

  close (graceMs = 2000): Promise<void> {
    this.#closing ??= this.#doClose(graceMs)
    return this.#closing
  }

  async #doClose (graceMs: number): Promise<void> {
    for (const s of this.#pending) {
      try { s.close({ closeCode: CLOSE_REFUSED, reason: 'listener closing' }) } catch { /* closing */ }
    }
    await Promise.all([...this.connections].map(async c => {
      const timer = setTimeout(() => c.abort(new AbortedError('listener closed')), graceMs)
      try { await c.close('listener closed') } finally { clearTimeout(timer) }
    }))
    const server = this.#server
    if (server === undefined) return
    try { server.stopServer() } catch { /* not started */ }
    // node:http2's server.close() waits for every session; the graceful part is over.
    for (const s of this.#h2Sessions) destroyHttp2Session(s)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([server.closed.catch(noop), new Promise(resolve => { timer = setTimeout(resolve, 2000) })])
    clearTimeout(timer)
  }
}
