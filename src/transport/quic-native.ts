/**
 * The native QUIC engine: the quinn (Rust) binding shipped as the platform
 * package of `@chainsafe/libp2p-quic`, loaded directly because the package's
 * own loader is not exported. Pure-JS QUIC stacks measured far too slow on
 * this machine kind; this binding did ~200 MB/s on loopback.
 *
 * The binding's typings are `any`, so the surface we use is typed here from
 * what version 1.1.8 actually does (probed, see the transport report):
 * - `Stream.read(max)` resolves a fresh Uint8Array, or `null` at end of stream;
 *   it rejects with `connection lost` when the connection ends (any reason),
 *   `stream reset by peer` after a peer `resetWrite()`.
 * - `Connection.abort()` closes with code 0 immediately; data not yet sent is
 *   lost, so a graceful close needs an application-level handshake.
 * - `Server.port()` after `Server.abort()` PANICS and kills the process: the
 *   port is read once right after binding and never again.
 * - TLS is libp2p-TLS: any key is accepted; the peer id arrives as the
 *   `/p2p/<id>` suffix of `remoteMultiaddr()` and must be checked by us.
 */
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { TransportUnavailableError, toError } from '../errors.js'
import { generateQuicIdentity, quicIdentityBytes } from './quic-identity.js'
import type { QuicStats } from './quic-engine-addon.js'

/** The binding version this code was written and probed against. Another version may differ in API. */
export const PINNED_QUIC_BINDING_VERSION = '1.1.8'

export interface NativeStream {
  id (): string
  read (max: number): Promise<Uint8Array | null>
  write (data: Uint8Array): Promise<void>
  finishWrite (): Promise<void> | void
  resetWrite (): Promise<void> | void
  stopRead (): Promise<void> | void
}

export interface NativeConnection {
  inboundStream (): Promise<NativeStream>
  outboundStream (): Promise<NativeStream>
  abort (): void
  /** Smoothed RTT in whole ms (0 on loopback). */
  rtt (): number
  id (): string
  /** `/ip4/<ip>/udp/<port>/quic-v1/p2p/<peerId>` */
  remoteMultiaddr (): string
  /** Resolves (never rejects) once the connection is closed for any reason. */
  closed (): Promise<void>
  /**
   * TLS exporter value (RFC 5705; RFC 9001 uses the TLS 1.3 schedule) for channel binding;
   * undefined where the engine cannot export (the libp2p binding) or the connection is gone.
   */
  exporter? (label: string, length: number): Uint8Array | undefined
  /** The engine's transport counters (congestion window, losses, ACKs); undefined where the engine has none. */
  quicStats? (): QuicStats | undefined
}

export interface NativeServer {
  inboundConnection (): Promise<NativeConnection>
  abort (): Promise<void>
  port (): number
}

export interface NativeClient {
  outboundConnection (ip: string, port: number): Promise<NativeConnection>
  abort (): void
}

export interface NativeConfigInit {
  privateKeyProto: Uint8Array
  handshakeTimeout: number
  maxIdleTimeout: number
  keepAliveInterval: number
  maxConcurrentStreamLimit: number
  maxStreamData: number
  maxConnectionData: number
  receiveBufferSize: number
  sendBufferSize: number
}

export type NativeConfig = object

export interface NativeBinding {
  QuinnConfig: new (init: NativeConfigInit) => NativeConfig
  Server: new (config: NativeConfig, ip: string, port: number) => NativeServer
  Client: new (config: NativeConfig, family: 0 | 1) => NativeClient
}

const PREFIX = '@chainsafe/libp2p-quic'

function isMusl (): boolean {
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    return report?.header?.glibcVersionRuntime === undefined
  } catch {
    return false
  }
}

/** Platform package names to try, most likely first. */
export function nativePackageCandidates (): string[] {
  const { platform, arch } = process
  if (platform === 'linux') {
    const order = isMusl() ? ['musl', 'gnu'] : ['gnu', 'musl']
    return order.map(libc => `${PREFIX}-linux-${arch}-${libc}`)
  }
  if (platform === 'darwin') return [`${PREFIX}-darwin-${arch}`, `${PREFIX}-darwin-universal`]
  if (platform === 'win32') return [`${PREFIX}-win32-${arch}-msvc`]
  return [`${PREFIX}-${platform}-${arch}`]
}

function requireFrom (): Array<NodeJS.Require> {
  const out = [createRequire(import.meta.url)]
  // The platform package may be nested under @chainsafe/libp2p-quic rather than hoisted.
  try {
    out.push(createRequire(import.meta.resolve(PREFIX)))
  } catch {
    // not resolvable from here; the first require covers the hoisted layout
  }
  return out
}

function loadBinding (): NativeBinding {
  const reasons: string[] = []
  for (const name of nativePackageCandidates()) {
    for (const req of requireFrom()) {
      let path: string
      try {
        path = req.resolve(`${name}/package.json`)
      } catch {
        continue
      }
      try {
        const pkg = JSON.parse(readFileSync(path, 'utf8')) as { version?: string, main?: string }
        if (pkg.version !== PINNED_QUIC_BINDING_VERSION) {
          reasons.push(`${name}@${String(pkg.version)} is installed but ${PINNED_QUIC_BINDING_VERSION} is required (the native API changes between versions)`)
          continue
        }
        const binding = req(join(dirname(path), pkg.main ?? '')) as Partial<NativeBinding>
        if (typeof binding.QuinnConfig !== 'function' || typeof binding.Server !== 'function' || typeof binding.Client !== 'function') {
          reasons.push(`${name} does not export QuinnConfig/Server/Client`)
          continue
        }
        return binding as NativeBinding
      } catch (err) {
        reasons.push(`${name}: ${toError(err).message}`)
      }
    }
  }
  const tried = nativePackageCandidates().join(', ')
  throw new TransportUnavailableError('quic', reasons.length > 0
    ? reasons.join('; ')
    : `no native QUIC binding installed for ${process.platform}-${process.arch} (tried ${tried}; install @chainsafe/libp2p-quic@${PINNED_QUIC_BINDING_VERSION} with optional dependencies)`)
}

let loaded: Promise<NativeBinding> | undefined

/**
 * Load the binding and prove it works by building a config with a fresh key
 * (that runs certificate generation in Rust). Memoized; a failure is a
 * TransportUnavailableError with the reason, never a crash.
 */
export function nativeBinding (): Promise<NativeBinding> {
  loaded ??= (async () => {
    const binding = loadBinding()
    try {
      const key = quicIdentityBytes(await generateQuicIdentity())
      new binding.QuinnConfig({
        privateKeyProto: key,
        handshakeTimeout: 5000,
        maxIdleTimeout: 10_000,
        keepAliveInterval: 2000,
        maxConcurrentStreamLimit: 4,
        maxStreamData: 1 << 20,
        maxConnectionData: 1 << 22,
        receiveBufferSize: 1 << 20,
        sendBufferSize: 1 << 20
      })
    } catch (err) {
      throw new TransportUnavailableError('quic', `native QUIC binding failed its self-test: ${toError(err).message}`, { cause: err })
    }
    return binding
  })()
  return loaded
}

/** Call a native method that may return a promise or throw; never lets a rejection go unhandled. */
export function settle (fn: () => unknown): Promise<void> {
  try {
    const r = fn()
    if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') {
      return (r as Promise<unknown>).then(() => {}, () => {})
    }
  } catch {
    // the stream or connection is already gone; that is what the caller wanted
  }
  return Promise.resolve()
}

/** Parse `/ip4/1.2.3.4/udp/5/quic-v1/p2p/<id>` into `host:port` and the peer id. */
export function parseRemote (multiaddr: string): { address: string, peerId: string | undefined } {
  const parts = multiaddr.split('/')
  const family = parts[1]
  const ip = parts[2] ?? '?'
  const port = parts[4] ?? '?'
  const p2p = parts.indexOf('p2p')
  const peerId = p2p >= 0 ? parts[p2p + 1] : undefined
  return { address: family === 'ip6' ? `[${ip}]:${port}` : `${ip}:${port}`, peerId }
}
