/**
 * Transport-wide quic:// settings and the native engine config built from them.
 */
import { InvalidOptionError } from '../errors.js'
import { intOption } from '../util/options.js'
import type { CongestionController, EngineConfigInit, QuicEngineName } from './quic-engine.js'
import { CHANNEL_ORDER } from './quic-wire.js'

const MiB = 1024 * 1024
const MIN_WINDOW = 64 * 1024

/** Transport-wide QUIC settings (createQuicTransport). */
export interface QuicTransportOptions {
  /**
   * QUIC engine: `edgefabric` (native/quic, prebuilt for linux-x64: migration,
   * hub-derived stateless resets, congestion control by choice) or `libp2p`
   * (@chainsafe/libp2p-quic). `auto` picks edgefabric where its prebuilt loads
   * and libp2p elsewhere; the EDGEFABRIC_QUIC_ENGINE environment variable
   * overrides `auto`. Both engines speak the same wire. @default 'auto'
   */
  engine?: QuicEngineName | 'auto'
  /**
   * Congestion controller (edgefabric engine; libp2p always uses cubic). The
   * EDGEFABRIC_QUIC_CC environment variable overrides the default (as
   * EDGEFABRIC_QUIC_ENGINE does `auto`), never an explicit setting. @default 'cubic'
   */
  congestionController?: CongestionController
  /** Let a peer's address change mid-connection (NAT rebinding; edgefabric engine only, libp2p never does). @default true */
  migration?: boolean
  /** A connection with no packets for this long is dead (how a vanished peer is noticed). @default 10000 */
  maxIdleTimeoutMs?: number
  /** Send a keep-alive after this much silence; must be below maxIdleTimeoutMs. @default 2000 */
  keepAliveIntervalMs?: number
  /**
   * Per-stream receive window: how much a peer may send on one channel we
   * are not reading, on top of the connection's `maxInboundBuffer` (the
   * window used is the smaller of the two, at least 64 KiB, so a paused
   * channel costs at most about 2 × maxInboundBuffer). Also caps one
   * stream's throughput at window / RTT (4 MiB at 50 ms ≈ 670 Mbit/s; the
   * former 2 MiB capped bulk at 50 ms below ws, issue 18 / bench/RESULTS.md).
   * A window is credit, not memory: quinn buffers only what arrives unread.
   * @default 4 MiB
   */
  maxStreamData?: number
  /** Per-connection receive window, at least 2 × the stream window so one stalled channel cannot starve the others. @default 8 MiB */
  maxConnectionData?: number
  /**
   * OS UDP socket send/receive buffer of an endpoint (clamped by the OS to
   * net.core.rmem_max / wmem_max; one per listener and one per dialing
   * process, not per connection). A userland receiver that is descheduled
   * drops what does not fit here: 2 MiB dropped 0.2–3 % of a 50 ms / 400
   * Mbit/s bulk transfer on a loaded 2-core machine (issue 18, bench/RESULTS.md).
   * @default 4 MiB
   */
  socketBufferSize?: number
  /**
   * UDP payload of every packet the edgefabric engine sends (quinn 0.9 has no
   * path MTU discovery, so this is fixed for the connection). 1200 is what
   * every QUIC path must carry (RFC 9000 §14); raise it (up to 1452 for a
   * 1500-byte IPv6 MTU) only on paths known to carry it: fewer, larger packets.
   * @default 1200
   */
  maxUdpPayloadSize?: number
  /** An inbound connection must open its streams within this time. @default 10000 */
  acceptTimeoutMs?: number
  /** Shortest time between two RTT samples from the engine; the RTT is sampled when a connection's stats are read. @default 1000 */
  rttIntervalMs?: number
}

export interface ResolvedQuicOptions {
  engine: QuicEngineName | 'auto'
  congestionController: CongestionController
  migration: boolean
  maxIdleTimeoutMs: number
  keepAliveIntervalMs: number
  maxStreamData: number
  maxConnectionData: number
  socketBufferSize: number
  maxUdpPayloadSize: number
  acceptTimeoutMs: number
  rttIntervalMs: number
}

export function resolveQuicOptions (o: QuicTransportOptions): ResolvedQuicOptions {
  const maxIdleTimeoutMs = intOption('maxIdleTimeoutMs', o.maxIdleTimeoutMs, 10_000, 100, 600_000)
  const keepAliveIntervalMs = intOption('keepAliveIntervalMs', o.keepAliveIntervalMs, Math.min(2000, Math.floor(maxIdleTimeoutMs / 3)), 10, 600_000)
  if (keepAliveIntervalMs >= maxIdleTimeoutMs) {
    throw new InvalidOptionError('keepAliveIntervalMs', `must be below maxIdleTimeoutMs (${maxIdleTimeoutMs}), got ${keepAliveIntervalMs}`)
  }
  const maxStreamData = intOption('maxStreamData', o.maxStreamData, 4 * MiB, MIN_WINDOW, 0xffff_ffff)
  const maxConnectionData = intOption('maxConnectionData', o.maxConnectionData, Math.max(8 * MiB, 2 * maxStreamData), maxStreamData, 0xffff_ffff)
  const engine = o.engine ?? 'auto'
  if (engine !== 'auto' && engine !== 'edgefabric' && engine !== 'libp2p') {
    throw new InvalidOptionError('engine', `must be 'edgefabric', 'libp2p' or 'auto', got ${String(engine)}`)
  }
  const envCc = process.env.EDGEFABRIC_QUIC_CC
  const congestionController = o.congestionController ?? (envCc !== undefined && envCc !== '' ? envCc as CongestionController : 'cubic')
  if (congestionController !== 'cubic' && congestionController !== 'newreno' && congestionController !== 'bbr') {
    const what = o.congestionController === undefined ? 'congestionController (EDGEFABRIC_QUIC_CC)' : 'congestionController'
    throw new InvalidOptionError(what, `must be 'cubic', 'newreno' or 'bbr', got ${String(congestionController)}`)
  }
  if (o.migration !== undefined && typeof o.migration !== 'boolean') throw new InvalidOptionError('migration', 'must be a boolean')
  return {
    engine,
    congestionController,
    migration: o.migration ?? true,
    maxIdleTimeoutMs,
    keepAliveIntervalMs,
    maxStreamData,
    maxConnectionData,
    socketBufferSize: intOption('socketBufferSize', o.socketBufferSize, 4 * MiB, 64 * 1024, 0x7fff_ffff),
    maxUdpPayloadSize: intOption('maxUdpPayloadSize', o.maxUdpPayloadSize, 1200, 1200, 65527),
    acceptTimeoutMs: intOption('acceptTimeoutMs', o.acceptTimeoutMs, 10_000, 1),
    rttIntervalMs: intOption('rttIntervalMs', o.rttIntervalMs, 1000, 10)
  }
}

/** The engine config of one endpoint or dial (windows follow the connection's maxInboundBuffer). */
export function engineConfig (key: Uint8Array, o: ResolvedQuicOptions, maxInboundBuffer: number): EngineConfigInit {
  const streamWindow = Math.min(o.maxStreamData, Math.max(MIN_WINDOW, maxInboundBuffer))
  return {
    privateKeyProto: key,
    handshakeTimeout: o.maxIdleTimeoutMs, // the libp2p binding uses the idle timeout for handshakes anyway
    maxIdleTimeout: o.maxIdleTimeoutMs,
    keepAliveInterval: o.keepAliveIntervalMs,
    maxConcurrentStreamLimit: CHANNEL_ORDER.length, // a peer cannot open a fifth stream at all
    maxStreamData: streamWindow,
    maxConnectionData: Math.max(o.maxConnectionData, 2 * streamWindow),
    receiveBufferSize: o.socketBufferSize,
    sendBufferSize: o.socketBufferSize,
    congestionController: o.congestionController,
    migration: o.migration,
    maxUdpPayloadSize: o.maxUdpPayloadSize
  }
}
