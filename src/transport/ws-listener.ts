/**
 * The `ws://` / `wss://` listener: an http(s) server whose `upgrade` events
 * are handed to a `noServer` WebSocketServer. Handling the upgrade ourselves
 * (instead of `verifyClient`) lets us refuse cheaply — before ws parses
 * anything — when the listener is closing, at `maxConnections`, on a wrong
 * path, or when a required client certificate does not match.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { WebSocketServer } from 'ws'
import { AbortedError, InvalidOptionError, ListenError, toError } from '../errors.js'
import { intOption } from '../util/options.js'
import { resolveConnectionOptions, type ResolvedConnectionOptions } from './options.js'
import type { Connection, ListenOptions, Listener } from './types.js'
import { WsConnection } from './ws-connection.js'
import { resetSocket, type PreAuthGate, type PreAuthTicket } from './pre-auth.js'
import { peerChainDer, verifyPinnedChain } from './tls-pin.js'
import { tlsChannelBinding } from './channel-binding.js'
import { normalizeFingerprint, parseServerIdentity, peerChainFingerprints } from './ws-tls.js'

export interface WsListenSettings {
  writeBufferBytes: number
  pingIntervalMs: number
}

const noop = (): void => {}

export function formatHostPort (address: string | undefined, port: number | undefined): string {
  const host = address ?? 'unknown'
  return `${host.includes(':') ? `[${host}]` : host}:${port ?? 0}`
}

/** Answer a refused upgrade with a plain HTTP response (ws' own abortHandshake pattern). */
function refuse (socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return
  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`)
}

class WsListener implements Listener {
  #url = ''
  readonly identity: string | undefined
  readonly connections = new Set<Connection>()
  readonly #server: HttpServer
  readonly #wss: WebSocketServer
  readonly #options: ListenOptions
  readonly #resolved: ResolvedConnectionOptions
  readonly #settings: WsListenSettings
  readonly #maxConnections: number
  readonly #path: string
  readonly #expectedClient: string | undefined
  /** Every upgrade socket from accept until it closes: pending handshakes count against maxConnections too. */
  readonly #sockets = new Set<Duplex>()
  readonly #gate: PreAuthGate | undefined
  /** Pre-auth slots of accepted TCP sockets, by remote address|port (the same key for the TLS socket on top). */
  readonly #tickets = new Map<string, PreAuthTicket>()
  #closing: Promise<void> | undefined

  constructor (url: URL, options: ListenOptions, settings: WsListenSettings) {
    if (typeof options?.onConnection !== 'function') throw new InvalidOptionError('onConnection', 'must be a function')
    const secure = url.protocol === 'wss:'
    this.#options = options
    this.#resolved = resolveConnectionOptions(options)
    this.#settings = settings
    this.#maxConnections = intOption('maxConnections', options.maxConnections, 100_000, 1)
    this.#gate = options.preAuth
    this.#path = url.pathname === '' ? '/' : url.pathname
    const expected = options.expectedRemoteIdentity
    if (expected !== undefined && (typeof expected !== 'string' || expected.length === 0)) {
      throw new InvalidOptionError('expectedRemoteIdentity', 'must be a non-empty fingerprint string')
    }
    if (expected !== undefined && !secure) {
      throw new InvalidOptionError('expectedRemoteIdentity', 'ws:// cannot authenticate clients; use wss://')
    }
    this.#expectedClient = expected === undefined ? undefined : normalizeFingerprint(expected)
    if (secure) {
      const id = parseServerIdentity(options.identity)
      this.identity = id.fingerprint
      this.#server = createHttpsServer({
        cert: id.cert,
        key: id.key,
        ...(id.ca !== undefined ? { ca: id.ca } : {}),
        ...(id.passphrase !== undefined ? { passphrase: id.passphrase } : {}),
        // A client certificate is checked by fingerprint in #onUpgrade, like
        // the dialer pins the server; chain validation against `ca` is not
        // required for that, so the TLS layer must not reject first.
        requestCert: this.#expectedClient !== undefined,
        rejectUnauthorized: false
      })
    } else {
      if (options.identity !== undefined) throw new InvalidOptionError('identity', 'ws:// has no TLS identity; use wss://')
      this.identity = undefined
      this.#server = createHttpServer()
    }
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      // +1: our channel byte. ws checks this against the frame header, before buffering the payload.
      // Under pre-auth bounds every socket starts at the hello limit; WsConnection raises it
      // per socket once the session authenticated (markAuthenticated → liftInboundLimit).
      maxPayload: (this.#gate === undefined ? this.#resolved.maxFrameSize : Math.min(this.#gate.maxFrameSize, this.#resolved.maxFrameSize)) + 1,
      skipUTF8Validation: true // we accept binary messages only (text → ProtocolError)
    })
    this.#wss.on('error', noop) // only emitted for an attached server; we attach none
    this.#wss.on('wsClientError', (_err, socket) => { refuse(socket, 400, 'Bad Request') })
    this.#server.on('request', (_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' })
      res.end('edgefabric WebSocket endpoint: upgrade required\n')
    })
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.#onUpgrade(req, socket, head) })
    // Pre-auth slot at TCP accept, before TLS and HTTP: an idle or slow socket is
    // bounded by the gate's caps and deadline like any other unauthenticated peer.
    if (this.#gate !== undefined) this.#server.on('connection', (socket: Socket) => { this.#onAccept(socket) })
    // Failed TLS handshakes and malformed HTTP: Node destroys the socket; the
    // listeners only exist so that nothing is ever emitted unhandled.
    this.#server.on('tlsClientError', noop)
    this.#server.on('clientError', (_err, socket: Duplex) => { socket.destroy() })
  }

  get url (): string { return this.#url }

  async start (url: URL): Promise<void> {
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const port = url.port === '' ? (url.protocol === 'wss:' ? 443 : 80) : Number(url.port)
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { reject(new ListenError(url.href, err.message, { cause: err })) }
      this.#server.once('error', onError)
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', onError)
        resolve()
      })
    })
    // After listening, server errors (e.g. EMFILE on accept) must not crash the process.
    this.#server.on('error', noop)
    const addr = this.#server.address() as AddressInfo
    const path = this.#path === '/' ? '' : this.#path
    this.#url = `${url.protocol}//${formatHostPort(addr.address, addr.port)}${path}`
  }

  #onAccept (socket: Socket): void {
    const gate = this.#gate as PreAuthGate
    socket.on('error', noop)
    const key = `${socket.remoteAddress ?? ''}|${socket.remotePort ?? 0}`
    // The kill is a TCP reset: destroy() on a socket whose handle TLS has taken over may close nothing.
    const ticket = gate.admit('ws', formatHostPort(socket.remoteAddress, socket.remotePort), () => { resetSocket(socket) })
    if (ticket === undefined) {
      socket.destroy() // refused at accept: nothing read, nothing answered (counted by the gate)
      return
    }
    this.#tickets.set(key, ticket)
    socket.once('close', () => {
      ticket.release()
      if (this.#tickets.get(key) === ticket) this.#tickets.delete(key)
    })
  }

  #onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', noop) // a reset before ws takes the socket over must not crash us
    if (this.#closing !== undefined) return refuse(socket, 503, 'Service Unavailable')
    const path = (req.url ?? '/').split('?')[0]
    if (this.#path !== '/' && path !== this.#path) return refuse(socket, 404, 'Not Found')
    if (this.#sockets.size >= this.#maxConnections) return refuse(socket, 503, 'Service Unavailable')
    let remoteIdentity: string | undefined
    const channelBinding = tlsChannelBinding(socket)
    if ((socket as TLSSocket).encrypted === true) {
      const chain = peerChainFingerprints(socket as TLSSocket)
      remoteIdentity = chain[0]
      // A pinned CA must have signed the client's leaf (./tls-pin.ts), not merely appear in its chain.
      if (this.#expectedClient !== undefined && !verifyPinnedChain(peerChainDer(socket as TLSSocket), this.#expectedClient).ok) {
        return refuse(socket, 403, 'Forbidden')
      }
    }
    const sock = socket as Socket
    let ticket: PreAuthTicket | undefined
    if (this.#gate !== undefined) {
      ticket = this.#tickets.get(`${sock.remoteAddress ?? ''}|${sock.remotePort ?? 0}`)
      if (ticket === undefined || !ticket.open) return refuse(socket, 503, 'Service Unavailable')
    }
    this.#sockets.add(socket)
    socket.once('close', () => this.#sockets.delete(socket))
    const remoteAddress = formatHostPort(sock.remoteAddress, sock.remotePort)
    this.#wss.handleUpgrade(req, socket, head, ws => {
      if (this.#closing !== undefined || (ticket !== undefined && !ticket.open)) {
        ws.on('error', noop)
        ws.terminate()
        return
      }
      const conn = new WsConnection({
        ws,
        direction: 'inbound',
        remoteAddress,
        remoteIdentity,
        options: this.#resolved,
        writeBufferBytes: this.#settings.writeBufferBytes,
        pingIntervalMs: this.#settings.pingIntervalMs,
        ...(channelBinding !== undefined ? { channelBinding } : {}),
        ...(ticket !== undefined && this.#gate !== undefined ? { preAuth: { ticket, maxFrameSize: this.#gate.maxFrameSize } } : {})
      })
      this.connections.add(conn)
      conn.once('close', () => this.connections.delete(conn))
      try {
        this.#options.onConnection(conn)
      } catch (err) {
        conn.abort(toError(err))
      }
    })
  }

  close (graceMs = 2000): Promise<void> {
    this.#closing ??= this.#close(graceMs)
    return this.#closing
  }

  async #close (graceMs: number): Promise<void> {
    // Stop accepting first; the callback runs once every socket is gone.
    const serverClosed = new Promise<void>(resolve => { this.#server.close(() => resolve()) })
    await Promise.all([...this.connections].map(async c => {
      const timer = setTimeout(() => c.abort(new AbortedError('listener closed')), graceMs)
      try { await c.close('listener closed') } finally { clearTimeout(timer) }
    }))
    // Leftovers: handshakes in progress, refused sockets still flushing, idle HTTP keep-alive.
    for (const s of this.#sockets) s.destroy()
    this.#server.closeAllConnections()
    await serverClosed
    this.#wss.close()
  }
}

export async function listenWs (url: URL, options: ListenOptions, settings: WsListenSettings): Promise<Listener> {
  const listener = new WsListener(url, options, settings)
  await listener.start(url)
  return listener
}
