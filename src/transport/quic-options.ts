/**
 * Transport-wide quic:// settings and the native engine config built from them.
 */
import { InvalidOptionError, toError } from '../errors.js'
import { intOption } from '../util/options.js'
import type { NativeBinding, NativeConfig } from './quic-native.js'
import { CHANNEL_ORDER } from './quic-wire.js'

const MiB = 1024 * 1024
const MIN_WINDOW = 64 * 1024

/** Transport-wide QUIC settings (createQuicTransport). */
export interface QuicTransportOptions {
  /** A connection with no packets for this long is dead (how a vanished peer is noticed). @default 10000 */
  maxIdleTimeoutMs?: number
  /** Send a keep-alive after this much silence; must be below maxIdleTimeoutMs. @default 2000 */
  keepAliveIntervalMs?: number
  /**
   * Per-stream receive window: how much a peer may send on one channel we
   * are not reading, on top of the connection's `maxInboundBuffer` (the
   * window used is the smaller of the two, at least 64 KiB, so a paused
   * channel costs at most about 2 × maxInboundBuffer). Also caps one
   * stream's throughput at window / RTT (2 MiB at 100 ms ≈ 160 Mbit/s).
   * @default 2 MiB
   */
  maxStreamData?: number
  /** Per-connection receive window, at least 2 × the stream window so one stalled channel cannot starve the others. @default 8 MiB */
  maxConnectionData?: number
  /** OS UDP socket send/receive buffer (clamped by the OS). @default 2 MiB */
  socketBufferSize?: number
  /** An inbound connection must open its streams within this time. @default 10000 */
  acceptTimeoutMs?: number
  /** How often the connection's RTT statistic is refreshed. @default 1000 */
  rttIntervalMs?: number
}

export interface ResolvedQuicOptions {
  maxIdleTimeoutMs: number
  keepAliveIntervalMs: number
  maxStreamData: number
  maxConnectionData: number
  socketBufferSize: number
  acceptTimeoutMs: number
  rttIntervalMs: number
}

export function resolveQuicOptions (o: QuicTransportOptions): ResolvedQuicOptions {
  const maxIdleTimeoutMs = intOption('maxIdleTimeoutMs', o.maxIdleTimeoutMs, 10_000, 100, 600_000)
  const keepAliveIntervalMs = intOption('keepAliveIntervalMs', o.keepAliveIntervalMs, Math.min(2000, Math.floor(maxIdleTimeoutMs / 3)), 10, 600_000)
  if (keepAliveIntervalMs >= maxIdleTimeoutMs) {
    throw new InvalidOptionError('keepAliveIntervalMs', `must be below maxIdleTimeoutMs (${maxIdleTimeoutMs}), got ${keepAliveIntervalMs}`)
  }
  const maxStreamData = intOption('maxStreamData', o.maxStreamData, 2 * MiB, MIN_WINDOW, 0xffff_ffff)
  const maxConnectionData = intOption('maxConnectionData', o.maxConnectionData, Math.max(8 * MiB, 2 * maxStreamData), maxStreamData, 0xffff_ffff)
  return {
    maxIdleTimeoutMs,
    keepAliveIntervalMs,
    maxStreamData,
    maxConnectionData,
    socketBufferSize: intOption('socketBufferSize', o.socketBufferSize, 2 * MiB, 64 * 1024, 0x7fff_ffff),
    acceptTimeoutMs: intOption('acceptTimeoutMs', o.acceptTimeoutMs, 10_000, 1),
    rttIntervalMs: intOption('rttIntervalMs', o.rttIntervalMs, 1000, 10)
  }
}

export function nativeConfig (binding: NativeBinding, key: Uint8Array, o: ResolvedQuicOptions, maxInboundBuffer: number): NativeConfig {
  const streamWindow = Math.min(o.maxStreamData, Math.max(MIN_WINDOW, maxInboundBuffer))
  try {
    return new binding.QuinnConfig({
      privateKeyProto: key,
      handshakeTimeout: o.maxIdleTimeoutMs, // the binding uses the idle timeout for handshakes anyway
      maxIdleTimeout: o.maxIdleTimeoutMs,
      keepAliveInterval: o.keepAliveIntervalMs,
      maxConcurrentStreamLimit: CHANNEL_ORDER.length, // a peer cannot open a fifth stream at all
      maxStreamData: streamWindow,
      maxConnectionData: Math.max(o.maxConnectionData, 2 * streamWindow),
      receiveBufferSize: o.socketBufferSize,
      sendBufferSize: o.socketBufferSize
    })
  } catch (err) {
    throw new InvalidOptionError('identity', `rejected by the QUIC engine: ${toError(err).message}`, { cause: err })
  }
}

