/**
 * Dialing a WebTransport listener (see ./webtransport.ts for modes and identity):
 * URL → library client with certificate-hash pinning → four channel streams →
 * the listener's accept byte → WebTransportConnection. A failed opening
 * handshake, which the library reports only as "Opening handshake failed.",
 * is turned into a specific typed error (refusal, identity mismatch, an
 * untrusted or over-long-lived certificate, an HTTP/3-only listener).
 * A pin may name the leaf or an issuing CA: ./webtransport-pin.ts resolves
 * it to the verified leaf hash that WebTransport itself can pin.
 */
import { PRIORITIES } from '../codec/envelope.js'
import {
  AbortedError, DialError, DialTimeoutError, EdgeFabricError, IdentityMismatchError, InvalidOptionError,
  ProtocolError, TransportUnavailableError, UnsupportedUrlError, toError
} from '../errors.js'
import { intOption } from '../util/options.js'
import { isSha256Fingerprint, normalizeFingerprint, WEBTRANSPORT_MAX_CERT_DAYS } from '../identity/tls.js'
import { resolveConnectionOptions } from './options.js'
import type { Channel, Connection, DialOptions } from './types.js'
import { WebTransportConnection } from './webtransport-connection.js'
import { clientPeerFingerprint, clientRtt, guardClientPing, nativeStreamFor, teardownClient } from './webtransport-internals.js'
import { loadWebTransport, type WebTransportStatus, type WtCloseInfo, type WtSession } from './webtransport-lib.js'
import type { WtListenTarget } from './webtransport-listener.js'
import { peekCertificate, resolvePin } from './webtransport-pin.js'
import { verifyPinnedChain } from './tls-pin.js'
import {
  ACCEPT_BYTE, CHANNEL_PREFACE, CLOSE_ABORT, CLOSE_REFUSED, WT_FLOW_CONTROL, readFirst, type ChannelStreams
} from './webtransport-wire.js'

const noop = (): void => {}
export type ModeParam = 'auto' | 'http3' | 'http2'

export interface Target extends WtListenTarget {
  mode: ModeParam
  /** The https:// URL handed to the library (our query parameter removed). */
  httpsUrl: string
}

export function parseTarget (url: URL): Target {
  const scheme = url.protocol.replace(/:$/, '')
  if (scheme !== 'https' && scheme !== 'webtransport') throw new UnsupportedUrlError(url.href, 'not an https:// or webtransport:// URL')
  const params = new URLSearchParams(url.search)
  const modeParam = params.get('mode') ?? undefined
  if (modeParam !== undefined && modeParam !== 'auto' && modeParam !== 'http3' && modeParam !== 'http2') {
    throw new InvalidOptionError('mode', `URL parameter must be auto, http3 or http2, got ${JSON.stringify(modeParam)}`)
  }
  params.delete('mode')
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '') throw new UnsupportedUrlError(url.href, 'missing host')
  const port = url.port === '' ? 443 : Number(url.port)
  const path = url.pathname === '' ? '/' : url.pathname
  const rest = params.toString()
  const hostPart = host.includes(':') ? `[${host}]` : host
  return {
    scheme,
    host,
    port,
    path,
    modeParam,
    mode: modeParam ?? 'auto',
    httpsUrl: `https://${hostPart}:${port}${path}${rest === '' ? '' : `?${rest}`}`
  }
}

/** The mode to use for `requested` here, or a TransportUnavailableError that says why not. */
export function chooseMode (requested: ModeParam, status: WebTransportStatus): 'http3' | 'http2' | 'auto-http3' {
  if (status.mode === 'unavailable') throw new TransportUnavailableError('webtransport', status.reason ?? 'library unavailable')
  if (requested === 'http2') return 'http2'
  if (status.mode === 'http3') return requested === 'http3' ? 'http3' : 'auto-http3'
  if (requested === 'http3') throw new TransportUnavailableError('webtransport', status.reason ?? 'HTTP/3 unavailable')
  return 'http2'
}

function parseExpected (v: unknown): string | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !isSha256Fingerprint(v)) {
    throw new InvalidOptionError('expectedRemoteIdentity', 'must be the sha256 fingerprint (64 hex digits) of the server certificate or of a CA that issued it')
  }
  return normalizeFingerprint(v)
}

export async function dialWebTransport (url: URL, options: DialOptions = {}): Promise<Connection> {
  const target = parseTarget(url)
  const resolved = resolveConnectionOptions(options)
  const timeoutMs = intOption('timeoutMs', options.timeoutMs, 10_000, 0)
  const expected = parseExpected(options.expectedRemoteIdentity)
  const aborted = (): boolean => options.signal?.aborted === true // a function: re-read after the await
  if (aborted()) throw new AbortedError('dial aborted')
  const { lib, status } = await loadWebTransport()
  const choice = chooseMode(target.mode, status)
  if (lib === undefined) throw new TransportUnavailableError('webtransport', status.reason ?? 'library unavailable')
  if (aborted()) throw new AbortedError('dial aborted')

  const started = Date.now()
  // One deadline and one abort for the whole dial, the certificate read included.
  let timer: NodeJS.Timeout | undefined
  let onAbort = noop
  const interrupted = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DialTimeoutError(url.href, timeoutMs)), timeoutMs)
    onAbort = () => reject(new AbortedError('dial aborted'))
    options.signal?.addEventListener('abort', onAbort, { once: true })
  })
  interrupted.catch(noop)
  const peekAbort = new AbortController()
  const stopClock = (): void => {
    peekAbort.abort()
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', onAbort)
  }

  // The pin (a leaf or an issuing CA, e.g. the hub CA a join token pins) → the
  // verified leaf hash; `serverCertificateHashes` only ever matches a leaf.
  let pinned: string | undefined
  let chainRead = false
  if (expected !== undefined) {
    try {
      const peer = await Promise.race([peekCertificate(target.host, target.port, Math.min(timeoutMs, 3000), peekAbort.signal), interrupted])
      const pin = resolvePin(url.href, expected, peer)
      pinned = pin.leaf
      chainRead = pin.verified
    } catch (err) {
      stopClock()
      throw err
    }
  }

  let wt: WtSession
  try {
    wt = new lib.WebTransport(target.httpsUrl, {
      ...(pinned !== undefined ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: Buffer.from(pinned, 'hex') }] } : {}),
      ...(choice === 'http2' ? { forceReliable: true } : {}),
      ...(choice === 'http3' ? { requireUnreliable: true } : {}),
      ...WT_FLOW_CONTROL,
      // Our deadline fires first and tears the attempt down; the library's own timers
      // (which cannot be unref'd) are just behind it so they never outlive a dial by much.
      // `auto` with HTTP/3 available: the library tries QUIC first, then falls back to
      // HTTP/2 by itself; leave half of the deadline for that fallback.
      quicConnectTimeout: choice === 'auto-http3' ? Math.max(500, Math.floor(timeoutMs / 2)) : timeoutMs + 1000,
      // Covers only the wait for the server's SETTINGS after TLS (one round trip); its
      // timer survives a torn-down attempt until it fires, so keep it short.
      webTransportConnectTimeout: Math.min(timeoutMs + 1000, 5000)
    })
  } catch (err) {
    stopClock()
    throw new DialError(url.href, toError(err).message, { cause: err })
  }
  wt.ready.catch(noop)
  wt.closed.catch(noop)

  let settled = false
  try {
    const streams = await Promise.race([clientHandshake(wt, () => settled), interrupted])
    const mode = wt.reliability === 'supports-unreliable' ? 'http3' : 'http2'
    guardClientPing(wt)
    return new WebTransportConnection({
      direction: 'outbound',
      remoteAddress: `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`,
      // The leaf hash the session was pinned to, as wss:// reports the leaf even for a CA pin.
      remoteIdentity: pinned ?? (mode === 'http2' ? clientPeerFingerprint(wt) : undefined),
      options: resolved,
      session: wt,
      mode,
      streams,
      teardown: () => { teardownClient(wt) },
      rtt: () => clientRtt(wt)
    })
  } catch (err) {
    settled = true
    try { wt.close({ closeCode: CLOSE_ABORT, reason: 'dial abandoned' }) } catch { /* not open */ }
    teardownClient(wt)
    if (err instanceof AbortedError || err instanceof DialTimeoutError) throw err
    const info = await Promise.race([wt.closed.then(i => i, () => undefined), new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), 50))])
    const failure = await explainDialFailure(url, target, expected, pinned, chainRead, err, info, Math.max(500, timeoutMs - (Date.now() - started)))
    if (failure instanceof DialError && choice === 'http2' && status.mode === 'http2' && info?.closeCode !== CLOSE_REFUSED) {
      // Say what this machine can and cannot reach: an HTTP/3-only listener is invisible over TCP.
      throw new DialError(url.href, `${failure.message.replace(/^dial to \S+ failed: /, '')} (this machine has no HTTP/3, so it dialed ` +
        'WebTransport over HTTP/2 on TCP; a listener serving only HTTP/3 on UDP cannot be reached from here)', { cause: failure.cause })
    }
    throw failure
  } finally {
    settled = true
    stopClock()
  }
}

async function clientHandshake (wt: WtSession, abandoned: () => boolean): Promise<Map<Channel, ChannelStreams>> {
  await wt.ready
  const streams = new Map<Channel, ChannelStreams>()
  for (const ch of PRIORITIES) {
    if (abandoned()) throw new AbortedError('dial abandoned')
    const bs = await wt.createBidirectionalStream()
    const writer = bs.writable.getWriter()
    const reader = bs.readable.getReader()
    writer.write(Uint8Array.of(CHANNEL_PREFACE[ch])).catch(noop)
    streams.set(ch, { reader, writer, native: nativeStreamFor(wt, bs.readable), leftover: undefined })
  }
  const control = streams.get('control') as ChannelStreams
  const first = await readFirst(control.reader, 'control stream')
  if (first[0] !== ACCEPT_BYTE) throw new ProtocolError(`listener sent ${String(first[0])} instead of the accept byte`)
  control.leftover = first.byteLength > 1 ? first.subarray(1) : undefined
  return streams
}

/**
 * The library reports every failed opening handshake the same way. Turn it
 * into a typed, specific error: a refusal by the listener, or — when a pinned
 * dial fails over HTTP/2 — whether the server's certificate is the pinned one.
 */
async function explainDialFailure (url: URL, target: Target, expected: string | undefined, pinned: string | undefined, chainRead: boolean,
  err: unknown, info: WtCloseInfo | undefined, budgetMs: number): Promise<Error> {
  if (info?.closeCode === CLOSE_REFUSED) return new DialError(url.href, `refused by the listener: ${info.reason ?? ''}`, { cause: err })
  if (err instanceof EdgeFabricError && !(err instanceof ProtocolError)) return err
  if (expected === undefined && target.mode !== 'http3') {
    const peer = await peekCertificate(target.host, target.port, Math.min(budgetMs, 3000))
    if (peer?.authorizationError !== undefined) {
      return new DialError(url.href, `the server certificate is not trusted (${peer.authorizationError}); ` +
        'a self-signed or private-CA listener must be pinned with expectedRemoteIdentity', { cause: err })
    }
  }
  if (expected !== undefined && target.mode !== 'http3') {
    const peer = await peekCertificate(target.host, target.port, Math.min(budgetMs, 3000))
    if (peer !== undefined) {
      const pin = verifyPinnedChain(peer.chain, expected)
      if (!pin.ok) return new IdentityMismatchError(expected, pin.leaf, pin.reason)
      if (pinned !== undefined && peer.fingerprint !== pinned) {
        // Still issued by the pinned CA, but not the leaf we pinned: reissued mid-dial. Retrying helps.
        return new DialError(url.href, 'the server certificate changed during the dial (reissued under the pinned CA); retry', { cause: err })
      }
      const days = (peer.notAfter - peer.notBefore) / 86_400_000
      if (days > WEBTRANSPORT_MAX_CERT_DAYS) {
        return new DialError(url.href, `the server certificate matches the pinned fingerprint but is valid for ${days.toFixed(1)} days; ` +
          `WebTransport certificate-hash pinning accepts at most ${WEBTRANSPORT_MAX_CERT_DAYS}`, { cause: err })
      }
      if (peer.notAfter < Date.now() || peer.notBefore > Date.now()) {
        return new DialError(url.href, 'the server certificate matches the pinned fingerprint but is not currently valid', { cause: err })
      }
    }
  }
  const unread = expected !== undefined && !chainRead
    ? ' (the server certificate chain could not be read over TCP before the dial, so the pin was used as the leaf ' +
      'certificate hash; a pinned CA can only be checked when the listener also answers TLS on TCP, as the HTTP/2 mode does)'
    : ''
  return new DialError(url.href, `WebTransport handshake failed: ${toError(err).message}${unread}`, { cause: err })
}
