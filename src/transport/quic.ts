/**
 * `quic://host:port` — real QUIC (RFC 9000, TLS 1.3) through the quinn
 * binding of @chainsafe/libp2p-quic (./quic-native.ts), four streams per
 * connection, one per priority class, so bulk never blocks control
 * (DESIGN.md §3). Wire protocol: ./quic-wire.ts. Connection: ./quic-connection.ts.
 *
 * Identity (libp2p-TLS, ./quic-identity.ts): `identity` is a @libp2p/crypto
 * private key or its protobuf bytes; `expectedRemoteIdentity` is the peer id
 * string the other side must present. A dialer should always pin the
 * listener's peer id (`Listener.identity`): without a pin, a quic:// dial is
 * encrypted but not authenticated. A listener without `identity` generates a
 * fresh key, so its peer id changes on every start: servers persist theirs.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import {
  AbortedError, DialError, DialTimeoutError, EdgeFabricError, IdentityMismatchError, InvalidOptionError,
  ListenError, ProtocolError, UnsupportedUrlError, toError
} from '../errors.js'
import { intOption } from '../util/options.js'
import { FrameDecoder } from './framing.js'
import { resolveConnectionOptions } from './options.js'
import { QuicConnection, decoderError, type QuicChannelInit } from './quic-connection.js'
import { resolveQuicIdentity } from './quic-identity.js'
import { QuicListener } from './quic-listener.js'
import { chooseQuicEngine, type EngineChoice } from './quic-engine.js'
import { parseRemote, type NativeClient, type NativeConnection } from './quic-native.js'
import { engineConfig, resolveQuicOptions, type QuicTransportOptions } from './quic-options.js'
import {
  CHANNEL_ID, CHANNEL_ORDER, IO_CHUNK, REFUSE_IDENTITY, T_ACCEPT, T_REFUSE, utf8
} from './quic-wire.js'
import type { Channel, Connection, DialOptions, ListenOptions, Listener, Transport } from './types.js'

export type { QuicTransportOptions } from './quic-options.js'
export type { QuicEngineName, CongestionController } from './quic-engine.js'
export {
  generateQuicIdentity, quicPeerId, encodeQuicIdentity, decodeQuicIdentity,
  type QuicIdentity, type QuicPrivateKey
} from './quic-identity.js'

interface Target { host: string, port: number }

function parseQuicUrl (url: URL, listen: boolean): Target {
  if (url.protocol !== 'quic:') throw new UnsupportedUrlError(url.href, 'not a quic:// URL')
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '') throw new UnsupportedUrlError(url.href, 'quic:// URL needs a host')
  if (url.port === '' && !listen) throw new UnsupportedUrlError(url.href, 'quic:// URL needs a port')
  return { host, port: url.port === '' ? 0 : Number(url.port) }
}

async function resolveHost (host: string, url: string): Promise<string> {
  if (isIP(host) !== 0) return host
  try {
    return (await lookup(host)).address
  } catch (err) {
    throw new DialError(url, `cannot resolve host "${host}"`, { cause: err })
  }
}

function urlHost (ip: string): string {
  return isIP(ip) === 6 ? `[${ip}]` : ip
}

/** Map a native failure (plain Error with a message) to a typed error. */
function dialFailure (url: string, err: unknown, timeoutMs: number): Error {
  if (err instanceof EdgeFabricError) return err
  const e = toError(err)
  if (/timed out/i.test(e.message)) return new DialTimeoutError(url, timeoutMs, { cause: e })
  return new DialError(url, e.message, { cause: e })
}

/** Read until the first complete frame on a stream; returns it and any frames behind it. */
async function firstFrame (stream: QuicChannelInit['stream'], decoder: FrameDecoder, max: number): Promise<{ frame: Uint8Array, rest: Uint8Array[] }> {
  for (;;) {
    const chunk = await stream.read(IO_CHUNK)
    if (chunk === null) throw new ProtocolError('the listener ended the control stream during setup')
    let frames: Uint8Array[]
    try {
      frames = decoder.push(chunk)
    } catch (err) {
      throw decoderError(err, max)
    }
    if (frames.length > 0) return { frame: frames[0] as Uint8Array, rest: frames.slice(1) }
  }
}

/** A quic:// transport with its engine choice exposed (for the start log line and tests). */
export interface QuicTransport extends Transport {
  /** Resolves the engine (memoized): which one, and a one-line reason to log at start. */
  engine (): Promise<EngineChoice>
}

export function createQuicTransport (transportOptions: QuicTransportOptions = {}): QuicTransport {
  const topts = resolveQuicOptions(transportOptions)
  let chosen: Promise<EngineChoice> | undefined
  const choose = (): Promise<EngineChoice> => {
    chosen ??= chooseQuicEngine(topts.engine)
    chosen.catch(() => { chosen = undefined })
    return chosen
  }

  async function dial (url: URL, options: DialOptions = {}): Promise<Connection> {
    const href = url.href
    const resolved = resolveConnectionOptions(options)
    const timeoutMs = intOption('timeoutMs', options.timeoutMs, 10_000, 0)
    const signal = options.signal
    if (signal?.aborted === true) throw new AbortedError('dial aborted')
    const target = parseQuicUrl(url, false)

    let client: NativeClient | undefined
    let native: NativeConnection | undefined
    let settled = false
    const cancel = (): void => {
      try { native?.abort() } catch { /* gone */ }
      try { client?.abort() } catch { /* gone */ }
    }

    const attempt = async (): Promise<Connection> => {
      const { engine } = await choose()
      const id = await resolveQuicIdentity(options.identity)
      const config = engineConfig(id.proto, topts, resolved.maxInboundBuffer)
      const ip = await resolveHost(target.host, href)
      if (settled) throw new AbortedError()
      client = await engine.client(config, isIP(ip) === 6 ? 1 : 0)
      if (settled) throw new AbortedError()
      native = await client.outboundConnection(ip, target.port)
      if (settled) throw new AbortedError()
      const { address, peerId } = parseRemote(native.remoteMultiaddr())
      const expected = options.expectedRemoteIdentity
      if (expected !== undefined && expected !== peerId) throw new IdentityMismatchError(expected, peerId)

      const channels = new Map<Channel, QuicChannelInit>()
      const max = resolved.maxFrameSize
      for (const channel of CHANNEL_ORDER) {
        const stream = await native.outboundStream()
        // QUIC announces a stream with its first bytes: the preface opens it at the listener.
        await stream.write(Uint8Array.of(CHANNEL_ID[channel]))
        channels.set(channel, { stream, decoder: new FrameDecoder(max + 1), frames: [] })
      }
      const control = channels.get('control') as QuicChannelInit
      const { frame, rest } = await firstFrame(control.stream, control.decoder, max)
      if (frame[0] === T_REFUSE) {
        const text = utf8(frame.subarray(2))
        if (frame[1] === REFUSE_IDENTITY) throw new IdentityMismatchError(text, id.peerId)
        throw new DialError(href, `refused by the listener: ${text}`)
      }
      if (frame[0] !== T_ACCEPT) throw new ProtocolError(`expected ACCEPT, got frame type ${String(frame[0])}`)
      control.frames = rest
      if (settled) throw new AbortedError()
      return new QuicConnection({
        native,
        client,
        direction: 'outbound',
        remoteAddress: address,
        remoteIdentity: peerId as string,
        options: resolved,
        channels,
        rttIntervalMs: topts.rttIntervalMs
      })
    }

    return await new Promise<Connection>((resolve, reject) => {
      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        cleanup()
        cancel()
        reject(err)
      }
      const onAbort = (): void => fail(new AbortedError('dial aborted'))
      const timer = setTimeout(() => fail(new DialTimeoutError(href, timeoutMs)), timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      // The signal may have fired between dial() being called and now (no event then).
      if (signal?.aborted === true) {
        fail(new AbortedError('dial aborted'))
        return
      }
      attempt().then(conn => {
        if (settled) {
          conn.abort(new AbortedError('dial aborted'))
          return
        }
        settled = true
        cleanup()
        resolve(conn)
      }, (err: unknown) => fail(dialFailure(href, err, timeoutMs)))
    })
  }

  async function listen (url: URL, options: ListenOptions): Promise<Listener> {
    if (typeof options?.onConnection !== 'function') throw new InvalidOptionError('onConnection', 'must be a function')
    const resolved = resolveConnectionOptions(options)
    const maxConnections = intOption('maxConnections', options.maxConnections, 100_000, 1)
    const target = parseQuicUrl(url, true)
    const { engine } = await choose()
    const id = await resolveQuicIdentity(options.identity, true)
    const config = engineConfig(id.proto, topts, resolved.maxInboundBuffer)
    const ip = await resolveHost(target.host, url.href)
    let server
    try {
      server = await engine.server(config, ip, target.port)
    } catch (err) {
      throw new ListenError(url.href, toError(err).message, { cause: err })
    }
    // Read the port now: the binding panics if port() is called after abort().
    const port = server.port()
    return new QuicListener({
      server,
      url: `quic://${urlHost(ip)}:${port}`,
      identity: id.peerId,
      options,
      resolved,
      maxConnections,
      acceptTimeoutMs: topts.acceptTimeoutMs,
      rttIntervalMs: topts.rttIntervalMs
    })
  }

  return {
    name: 'quic',
    schemes: ['quic'],
    async probe () { await choose() },
    engine: choose,
    dial,
    listen
  }
}

/** quic:// with default transport options. */
export const quicTransport: QuicTransport = createQuicTransport()
