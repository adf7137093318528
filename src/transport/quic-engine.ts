/**
 * Which QUIC engine carries quic:// (issue 18): `edgefabric` (our own,
 * native/quic: quinn 0.9 from Debian's crates, shipped as a prebuilt for
 * linux-x64) or `libp2p` (the quinn binding of @chainsafe/libp2p-quic, the
 * fallback everywhere else). Both speak the same wire (libp2p-TLS, ALPN
 * `libp2p`, the streams of ./quic-wire.ts), so either side may run either.
 *
 * What only the edgefabric engine does: connection migration on (a NAT
 * rebinding keeps the session), a stateless-reset key derived from the
 * listener identity (a restarted hub's resets end the edges' old
 * connections at once), the congestion controller by choice, and crossings
 * batched per event-loop turn (./quic-engine-addon.ts).
 */
import { createHmac } from 'node:crypto'
import { TransportUnavailableError, toError } from '../errors.js'
import { engineChannel } from './quic-engine-addon.js'
import { engineCertificate } from './quic-engine-cert.js'
import { EngineClient, engine } from './quic-engine-native.js'
import { nativeBinding, type NativeClient, type NativeConfigInit, type NativeServer } from './quic-native.js'

export type QuicEngineName = 'edgefabric' | 'libp2p'
export type CongestionController = 'cubic' | 'newreno' | 'bbr'

/** Everything an engine needs for one endpoint or dial. */
export interface EngineConfigInit extends NativeConfigInit {
  congestionController: CongestionController
  migration: boolean
  /** UDP payload size of every packet (edgefabric engine; native/quic config.rs). */
  maxUdpPayloadSize: number
}

export interface QuicEngine {
  readonly name: QuicEngineName
  server (config: EngineConfigInit, ip: string, port: number): Promise<NativeServer>
  client (config: EngineConfigInit, family: 0 | 1): Promise<NativeClient>
}

const CONGESTION: Record<CongestionController, number> = { cubic: 0, newreno: 1, bbr: 2 }

/** The flat f64 layout native/quic/src/config.rs decodes. */
export function encodeParams (c: EngineConfigInit): Uint8Array {
  const f = new Float64Array([
    c.maxIdleTimeout,
    c.keepAliveInterval,
    c.maxStreamData,
    c.maxConnectionData,
    // Send window: what one connection may have unacknowledged in flight; a
    // window-sized send buffer lets a bulk stream fill the path (issue 16).
    c.maxConnectionData,
    CONGESTION[c.congestionController],
    c.maxConcurrentStreamLimit,
    c.receiveBufferSize,
    c.migration ? 1 : 0,
    0,
    c.maxUdpPayloadSize
  ])
  return new Uint8Array(f.buffer)
}

/**
 * The stateless-reset key of a listener, derived from its identity key: a
 * restarted process with the same identity computes the same reset tokens
 * (RFC 9000 §10.3), so its peers accept its resets instead of waiting out
 * their idle timeout. HMAC with a fixed label: the key never leaves the
 * process and says nothing about the identity key.
 */
export function statelessResetKey (identityProto: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', identityProto).update('edgefabric quic stateless reset v1').digest())
}

const edgefabricEngine: QuicEngine = {
  name: 'edgefabric',
  async server (config, ip, port) {
    const { cert, key } = await engineCertificate(config.privateKeyProto)
    // The listener sends no keep-alives (issue 16): one side's PINGs keep a
    // connection from idling out for both (RFC 9000 §10.1.2: the PING restarts
    // the listener's idle timer, its ACK restarts the dialer's), and the dialer
    // is the side a NAT binding belongs to. The listener still notices a
    // vanished dialer by its idle timeout, judged on inbound packets only.
    return engine().listen(encodeParams({ ...config, keepAliveInterval: 0 }), cert, key, statelessResetKey(config.privateKeyProto), ip, port)
  },
  async client (config) {
    const { cert, key } = await engineCertificate(config.privateKeyProto)
    return new EngineClient({ params: encodeParams(config), cert, key })
  }
}

const libp2pEngine: QuicEngine = {
  name: 'libp2p',
  async server (config, ip, port) {
    const binding = await nativeBinding()
    return new binding.Server(new binding.QuinnConfig(libp2pInit(config)), ip, port)
  },
  async client (config, family) {
    const binding = await nativeBinding()
    return new binding.Client(new binding.QuinnConfig(libp2pInit(config)), family)
  }
}

function libp2pInit (c: EngineConfigInit): NativeConfigInit {
  const { congestionController: _cc, migration: _m, maxUdpPayloadSize: _p, ...init } = c
  return init
}

export interface EngineChoice {
  engine: QuicEngine
  /** One line for the start log: which engine and why. */
  reason: string
}

/** The edgefabric engine if its prebuilt loads here, with the reason when it does not. */
export function edgefabricAvailable (): { ok: true } | { ok: false, reason: string } {
  try {
    engineChannel()
    return { ok: true }
  } catch (err) {
    return { ok: false, reason: toError(err).message }
  }
}

/**
 * Pick the engine. `auto` (the default; EDGEFABRIC_QUIC_ENGINE overrides it)
 * is `edgefabric` when its prebuilt loads on this platform, else `libp2p`.
 * Asking for `edgefabric` explicitly where it cannot load is an error.
 */
export async function chooseQuicEngine (wanted: QuicEngineName | 'auto'): Promise<EngineChoice> {
  const env = process.env.EDGEFABRIC_QUIC_ENGINE
  const pick = wanted === 'auto' && (env === 'edgefabric' || env === 'libp2p') ? env : wanted
  if (pick === 'libp2p') {
    await nativeBinding()
    return { engine: libp2pEngine, reason: 'quic: engine libp2p (@chainsafe/libp2p-quic), as configured' }
  }
  const avail = edgefabricAvailable()
  if (avail.ok) {
    return { engine: edgefabricEngine, reason: `quic: engine edgefabric (native quinn 0.9, ${process.platform}-${process.arch} prebuilt)` }
  }
  if (pick === 'edgefabric') throw new TransportUnavailableError('quic', avail.reason)
  try {
    await nativeBinding()
  } catch (err) {
    throw new TransportUnavailableError('quic', `no QUIC engine: ${avail.reason}; libp2p: ${toError(err).message}`, { cause: err })
  }
  return { engine: libp2pEngine, reason: `quic: engine libp2p (fallback: ${avail.reason})` }
}

/** The engine line of a transport, if it is quic:// (for the start log of hubs and edges). */
export async function quicEngineLine (transport: unknown): Promise<string | undefined> {
  const f = (transport as { engine?: () => Promise<EngineChoice> } | undefined)?.engine
  if (typeof f !== 'function') return undefined
  try {
    return (await f()).reason
  } catch {
    return undefined
  }
}
