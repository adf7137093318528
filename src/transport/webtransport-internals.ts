/**
 * The few places where the WebTransport transport reaches below
 * @fails-components/webtransport's public API (checked against 1.6.8). Each
 * accessor is guarded: when the library changes shape it returns undefined /
 * does nothing, and the feature degrades (no RTT, no early teardown, no
 * inbound stop) instead of throwing.
 *
 * - native stream `stopReading()/startReading()`: the public ReadableStream
 *   does not push back on the sender (see ./webtransport-connection.ts).
 * - the HTTP/2 `ClientHttp2Session` / `ServerHttp2Session` under a session:
 *   to destroy it when a close does not complete (an unresponsive peer would
 *   otherwise keep the TCP connection open), to read the RTT the library
 *   measures with HTTP/2 pings, and to read the peer certificate of an
 *   unpinned dial.
 */
import type { ReadableStream } from 'node:stream/web'
import { normalizeFingerprint } from '../identity/tls.js'
import type { NativeStreamHandle } from './webtransport-wire.js'
import type { WtSession } from './webtransport-lib.js'

type Loose = Record<string, unknown> | undefined

function obj (v: unknown): Loose {
  return typeof v === 'object' && v !== null ? v as Record<string, unknown> : undefined
}

function fn (o: Loose, name: string): ((...args: unknown[]) => unknown) | undefined {
  const f = o?.[name]
  return typeof f === 'function' ? (f as (...args: unknown[]) => unknown).bind(o) : undefined
}

/** The library's HttpWTSession: the client WebTransport wraps it as `sessionint`. */
function wtSessionObject (session: WtSession): Loose {
  const s = obj(session)
  return obj(s?.sessionint) ?? s
}

/** Native stream behind a ReadableStream of this session (HttpWTStream.objint). */
export function nativeStreamFor (session: WtSession, readable: ReadableStream<Uint8Array>): NativeStreamHandle | undefined {
  try {
    const objs = wtSessionObject(session)?.streamObjs
    if (!(objs instanceof Set)) return undefined
    for (const s of objs) {
      const so = obj(s)
      if (so?.readable !== readable) continue
      const native = obj(so.objint)
      const stop = fn(native, 'stopReading')
      const start = fn(native, 'startReading')
      if (stop === undefined || start === undefined) return undefined
      return { stopReading: () => { try { stop() } catch { /* stream gone */ } }, startReading: () => { try { start() } catch { /* stream gone */ } } }
    }
  } catch {
    // shape changed: no native flow control
  }
  return undefined
}

interface Http2SessionLike {
  destroy: (err?: Error) => void
  ping?: (...args: unknown[]) => boolean
  destroyed?: boolean
  connecting?: boolean
  once?: (ev: string, cb: () => void) => void
  WTrtt?: number
  socket?: { getPeerCertificate?: () => { fingerprint256?: string }, remoteAddress?: string, remotePort?: number }
}

function asHttp2Session (v: unknown): Http2SessionLike | undefined {
  const o = obj(v)
  return typeof o?.destroy === 'function' ? o as unknown as Http2SessionLike : undefined
}

const pingGuarded = new WeakSet<object>()

/**
 * The library measures RTT with an interval that calls `session.ping()`
 * while `!session.closed`; but a DESTROYED node:http2 session is not
 * `closed` until its 'close' event, and ping() on it throws
 * ERR_HTTP2_INVALID_SESSION from a timer — an uncaught exception that kills
 * the process (seen in webtransport-specific.test.ts teardowns under load).
 * Make ping on a destroyed session a no-op instead (node returns false when
 * a ping cannot be sent).
 */
export function guardPing (session: unknown): void {
  try {
    const h2 = asHttp2Session(session)
    if (h2 === undefined || typeof h2.ping !== 'function' || pingGuarded.has(h2)) return
    pingGuarded.add(h2)
    const ping = h2.ping.bind(h2)
    h2.ping = (...args: unknown[]): boolean => {
      if (h2.destroyed === true) return false
      try { return ping(...args) } catch { return false }
    }
  } catch {
    // shape changed: nothing to guard
  }
}

/** Dialer: the HttpClient → its transport (Http2WebTransportClient / HTTP/3 client). */
function clientTransport (wt: WtSession): Loose {
  return obj(obj(obj(obj(wt)?.sessionint)?.parentobj)?.transportInt)
}

/** Dialer: destroy the HTTP/2 connection (or close the HTTP/3 client) now. */
export function teardownClient (wt: WtSession): void {
  try {
    const ti = clientTransport(wt)
    const h2 = asHttp2Session(ti?.clientInt)
    if (h2 !== undefined) {
      guardPing(h2)
      if (h2.destroyed === true) return
      // With an error: the library's 'error' handler then settles its pending
      // connect promise (and clears that promise's timer) instead of leaving it.
      const err = new Error('WebTransport session torn down')
      if (h2.connecting === true) {
        // Destroying the session while TLS is mid-handshake lets the handshake finish
        // first, and the library's 'secureConnect' listener then THROWS (uncaught:
        // "Can not get http2 TLSSocket"). Destroy the TLS socket itself instead, which
        // node:http2 keeps under Symbol(socket) (its public `socket` proxy forbids destroy).
        const sym = Object.getOwnPropertySymbols(h2).find(k => k.description === 'socket')
        const sock = obj(sym === undefined ? undefined : (h2 as unknown as Record<symbol, unknown>)[sym])
        const destroySocket = fn(sock, 'destroy')
        if (destroySocket !== undefined) destroySocket(err)
        else h2.once?.('connect', () => { h2.destroy(err) })
        return
      }
      h2.destroy(err)
      settleSettingsWait(wt)
      return
    }
    fn(ti, 'closeClient')?.()
  } catch {
    // already gone
  }
}

/**
 * After a teardown between TLS and the server's SETTINGS, the library would keep
 * waiting for SETTINGS under a timer it never clears on failure (the process then
 * lingers up to webTransportConnectTimeout). Report "WebTransport supported" so the
 * wait ends now: its next step fails at once on the destroyed session and the
 * library rejects ready/closed, which the dialer already handles.
 */
function settleSettingsWait (wt: WtSession): void {
  try {
    const client = obj(obj(obj(wt)?.sessionint)?.parentobj)
    if (obj(client?.webtransportProm) !== undefined) fn(client, 'onClientWebTransportSupport')?.({})
  } catch {
    // shape changed: the library's own timer ends the wait
  }
}

/** Dialer: guard the library's RTT pings on this session's HTTP/2 connection (see guardPing). */
export function guardClientPing (wt: WtSession): void {
  guardPing(clientTransport(wt)?.clientInt)
}

export function clientRtt (wt: WtSession): number | undefined {
  const rtt = asHttp2Session(clientTransport(wt)?.clientInt)?.WTrtt
  return typeof rtt === 'number' ? rtt : undefined
}

/** Dialer over HTTP/2: sha256 of the certificate the server presented (unpinned dials). */
export function clientPeerFingerprint (wt: WtSession): string | undefined {
  try {
    const fp = asHttp2Session(clientTransport(wt)?.clientInt)?.socket?.getPeerCertificate?.()?.fingerprint256
    return typeof fp === 'string' && fp !== '' ? normalizeFingerprint(fp) : undefined
  } catch {
    return undefined
  }
}

/** Listener: the ServerHttp2Session carrying a session (undefined over HTTP/3). Capture it early: the library drops it on close. */
export function serverHttp2Session (session: WtSession): Http2SessionLike | undefined {
  return asHttp2Session(obj(obj(obj(session)?.objint)?.stream)?.session)
}

/** Listener: the node:http2 server under an HttpServer (HTTP/2 mode), to track and destroy its sessions. */
export function serverHttp2 (server: unknown): Http2ServerLike | undefined {
  const s = obj(obj(obj(server)?.transportInt)?.serverInt)
  return typeof s?.on === 'function' ? s as unknown as Http2ServerLike : undefined
}

/** The node:http2 server (a net.Server): 'session' per HTTP/2 connection, 'connection' per TCP accept. */
export interface Http2ServerLike {
  on (ev: 'session', cb: (s: unknown) => void): void
  on (ev: 'connection', cb: (socket: import('node:net').Socket) => void): void
}

/** `address|port` of the peer of a server-side HTTP/2 session, when its socket tells. */
export function http2PeerKey (session: unknown): string | undefined {
  try {
    const sock = asHttp2Session(session)?.socket
    if (sock?.remoteAddress === undefined) return undefined
    return `${sock.remoteAddress}|${sock.remotePort ?? 0}`
  } catch {
    return undefined
  }
}

/**
 * Listener (HTTP/2 mode): serve a new certificate to new TLS connections
 * (node:tls `Server.setSecureContext`); open sessions keep theirs. False when
 * there is no such server (HTTP/3: the native binding takes its certificate
 * only at start).
 */
export function setServerCertificate (server: unknown, material: { cert: string, key: string }): boolean {
  const s = obj(obj(obj(server)?.transportInt)?.serverInt)
  const set = fn(s, 'setSecureContext')
  if (set === undefined) return false
  set(material)
  return true
}

export function destroyHttp2Session (s: unknown): void {
  try {
    const h2 = asHttp2Session(s)
    guardPing(h2)
    if (h2 !== undefined && h2.destroyed !== true) h2.destroy()
  } catch {
    // already gone
  }
}
