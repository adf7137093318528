/**
 * `ws://` and `wss://` transport (DESIGN.md §3) on the `ws` package: one
 * binary WebSocket message per envelope, channel byte first (see
 * ./ws-connection.ts for the wire format and its head-of-line limits,
 * ./ws-listener.ts for the server side).
 *
 * wss:// identity (./ws-tls.ts):
 * - listener: `identity: { cert, key }` (PEM); `Listener.identity` is the
 *   sha256 fingerprint of its certificate.
 * - dialer, `expectedRemoteIdentity` only: certificate PINNING. The TLS layer
 *   is told not to validate against the system CA store (a self-signed dev
 *   CA would never pass), but the leaf must have exactly that fingerprint, or
 *   be verifiably signed (through the presented chain) by the certificate
 *   that has it (./tls-pin.ts) — checked after the TLS handshake and BEFORE
 *   the HTTP upgrade request (headers, tokens) is written. Strictly stronger
 *   than CA validation for this peer — it is not "skip verify".
 * - dialer, `identity: { ca }`: normal validation (chain + hostname) against
 *   that CA; combined with `expectedRemoteIdentity`, both must pass.
 * - dialer, neither: normal validation against the system store.
 */
import type { ClientRequest } from 'node:http'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import WebSocket from 'ws'
import {
  AbortedError, DialError, DialTimeoutError, EdgeFabricError, IdentityMismatchError, InvalidOptionError,
  UnsupportedUrlError, toError
} from '../errors.js'
import { intOption } from '../util/options.js'
import { resolveConnectionOptions } from './options.js'
import type { Connection, DialOptions, ListenOptions, Listener, Transport } from './types.js'
import { WsConnection } from './ws-connection.js'
import { formatHostPort, listenWs } from './ws-listener.js'
import { peerChainDer, verifyPinnedChain } from './tls-pin.js'
import { tlsChannelBinding } from './channel-binding.js'
import { normalizeFingerprint, parseDialIdentity, peerChainFingerprints } from './ws-tls.js'

export { WsConnection } from './ws-connection.js'
export type { WsDialIdentity, WsServerIdentity } from './ws-tls.js'

export interface WsTransportOptions {
  /**
   * writeFrame reports a congested socket (and the base queues instead) once
   * ws' `bufferedAmount` exceeds this. Small keeps priority scheduling
   * effective: what is already in the socket cannot be overtaken.
   * @default 256 KiB
   */
  writeBufferBytes?: number
  /**
   * Interval of ws pings used to measure RTT (stats only, never liveness). 0 disables. Off by default
   * (issue 16): the session's own ping/pong gives the RTT, and a second timer per connection doubled
   * the idle uplink (≈ 600 → ≈ 250 bit/s per node at a 5 s heartbeat, bench/RESULTS.md "Sessions").
   * @default 0
   */
  pingIntervalMs?: number
}

const noop = (): void => {}

function checkScheme (url: URL): 'ws' | 'wss' {
  if (url.protocol === 'ws:') return 'ws'
  if (url.protocol === 'wss:') return 'wss'
  throw new UnsupportedUrlError(url.href, 'not a ws:// or wss:// URL')
}

/**
 * Pinning without CA validation: hold the upgrade request back until the
 * peer's certificate chain has been checked (ws calls finishRequest instead
 * of req.end(); nothing is written before end()).
 */
function pinBeforeRequest (expected: string) {
  return (req: ClientRequest): void => {
    req.once('socket', (socket: Socket) => {
      socket.once('secureConnect', () => {
        // Not just "the chain contains the pin": a pinned CA must have SIGNED
        // the leaf, or anyone could append a copy of the public CA certificate
        // to their own leaf (./tls-pin.ts).
        const pin = verifyPinnedChain(peerChainDer(socket as TLSSocket), expected)
        if (pin.ok) req.end()
        else req.destroy(new IdentityMismatchError(expected, pin.leaf, pin.reason))
      })
    })
  }
}

async function dialWs (url: URL, options: DialOptions, settings: Required<WsTransportOptions>): Promise<Connection> {
  const scheme = checkScheme(url)
  const resolved = resolveConnectionOptions(options)
  const timeoutMs = intOption('timeoutMs', options.timeoutMs, 10_000, 0)
  const identity = parseDialIdentity(options.identity)
  if (options.expectedRemoteIdentity !== undefined &&
      (typeof options.expectedRemoteIdentity !== 'string' || options.expectedRemoteIdentity.length === 0)) {
    throw new InvalidOptionError('expectedRemoteIdentity', 'must be a non-empty fingerprint string')
  }
  const expected = options.expectedRemoteIdentity === undefined ? undefined : normalizeFingerprint(options.expectedRemoteIdentity)
  if (options.signal?.aborted === true) throw new AbortedError('dial aborted')
  if (scheme === 'ws') {
    // Plain ws:// proves nothing about the peer, so any expectation is unmet.
    if (expected !== undefined) throw new IdentityMismatchError(expected, undefined)
    if (options.identity !== undefined) throw new InvalidOptionError('identity', 'ws:// has no TLS identity; use wss://')
  }

  const wsOptions: WebSocket.ClientOptions = {
    perMessageDeflate: false,
    // +1: our channel byte. Checked from the frame header, before buffering.
    maxPayload: resolved.maxFrameSize + 1,
    followRedirects: false,
    skipUTF8Validation: true
  }
  if (scheme === 'wss') {
    const pinOnly = expected !== undefined && identity.ca === undefined
    wsOptions.rejectUnauthorized = !pinOnly
    if (identity.ca !== undefined) wsOptions.ca = identity.ca
    if (identity.cert !== undefined) wsOptions.cert = identity.cert
    if (identity.key !== undefined) wsOptions.key = identity.key
    if (identity.passphrase !== undefined) wsOptions.passphrase = identity.passphrase
    if (expected !== undefined) wsOptions.finishRequest = pinBeforeRequest(expected)
  }

  let ws: WebSocket
  try {
    ws = new WebSocket(url, wsOptions)
  } catch (err) {
    throw new UnsupportedUrlError(url.href, toError(err).message, { cause: err })
  }
  // Permanent: ws may emit 'error' again while a failed dial is torn down.
  ws.on('error', noop)

  return await new Promise<Connection>((resolve, reject) => {
    let settled = false
    let socket: Socket | undefined
    const timer = setTimeout(() => { fail(new DialTimeoutError(url.href, timeoutMs)) }, timeoutMs)
    const onAbort = (): void => { fail(new AbortedError('dial aborted')) }
    const onError = (err: Error): void => {
      fail(err instanceof EdgeFabricError ? err : new DialError(url.href, err.message, { cause: err }))
    }
    const onUpgrade = (res: { socket: Socket }): void => { socket = res.socket }
    const cleanup = (): void => {
      settled = true
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      ws.off('error', onError)
      ws.off('upgrade', onUpgrade)
      ws.off('open', onOpen)
    }
    function fail (err: Error): void {
      if (settled) return
      cleanup()
      ws.terminate() // destroys the request/socket: nothing leaks
      reject(err)
    }
    function onOpen (): void {
      if (settled) return
      cleanup()
      const remoteIdentity = scheme === 'wss' && socket !== undefined ? peerChainFingerprints(socket as TLSSocket)[0] : undefined
      const channelBinding = scheme === 'wss' ? tlsChannelBinding(socket) : undefined
      resolve(new WsConnection({
        ws,
        direction: 'outbound',
        remoteAddress: formatHostPort(socket?.remoteAddress ?? url.hostname, socket?.remotePort ?? Number(url.port)),
        remoteIdentity,
        options: resolved,
        writeBufferBytes: settings.writeBufferBytes,
        pingIntervalMs: settings.pingIntervalMs,
        ...(channelBinding !== undefined ? { channelBinding } : {})
      }))
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    ws.on('error', onError)
    ws.on('upgrade', onUpgrade)
    ws.on('open', onOpen)
  })
}

/** A ws transport with its own settings (the registry uses `wsTransport`, the defaults). */
export function createWsTransport (opts: WsTransportOptions = {}): Transport {
  const settings: Required<WsTransportOptions> = {
    writeBufferBytes: intOption('writeBufferBytes', opts.writeBufferBytes, 256 * 1024, 1),
    pingIntervalMs: intOption('pingIntervalMs', opts.pingIntervalMs, 0, 0)
  }
  return {
    name: 'ws',
    schemes: ['ws', 'wss'],
    // Pure JavaScript on node:http/https/tls: nothing to probe.
    async probe () {},
    async dial (url: URL, options: DialOptions = {}): Promise<Connection> {
      return await dialWs(url, options, settings)
    },
    async listen (url: URL, options: ListenOptions): Promise<Listener> {
      checkScheme(url)
      return await listenWs(url, options, settings)
    }
  }
}

export const wsTransport: Transport = createWsTransport()
