/**
 * The edgefabric wire format on WebTransport.
 *
 * The dialer opens one bidirectional stream per channel and
 * writes a 1-byte preface naming it (0 control, 1 high, 2 normal, 3 bulk);
 * the listener answers ACCEPT_BYTE on the control stream once all four are
 * there (so a refused dial fails the dial instead of closing an "open"
 * connection). After that, both directions of each stream carry 4-byte
 * length-prefixed frames (./framing.ts), one encoded envelope each.
 *
 * The session is closed with one of the codes below; only CLOSE_GRACEFUL
 * (after the FIN handshake of ./webtransport-connection.ts) counts as clean.
 * Anything else — our abort, a refusal, the library's own codes when the
 * TCP connection or QUIC path dies — is reported as a reset.
 */
import type { ReadableStreamDefaultReader, WritableStreamDefaultWriter } from 'node:stream/web'
import { ProtocolError } from '../errors.js'
import type { Channel } from './types.js'

export const CHANNEL_PREFACE: Readonly<Record<Channel, number>> = { control: 0, high: 1, normal: 2, bulk: 3 }
export const PREFACE_CHANNEL: readonly Channel[] = ['control', 'high', 'normal', 'bulk']
/** Listener → dialer, first byte on the control stream: the session is accepted. */
export const ACCEPT_BYTE = 0xac

/** Session close codes (application-chosen, 32-bit; distinct from 0 so a bare stream end is never taken for a graceful close). */
export const CLOSE_GRACEFUL = 0xef00
export const CLOSE_ABORT = 0xef01
export const CLOSE_REFUSED = 0xef02

/** Close reasons travel in a capsule; keep them short. */
const MAX_REASON = 1000

/** The library's native stream object (internal API): pause/resume pulling from the network. */
export interface NativeStreamHandle { stopReading: () => void, startReading: () => void }

export interface ChannelStreams {
  reader: ReadableStreamDefaultReader<Uint8Array>
  writer: WritableStreamDefaultWriter<Uint8Array>
  native: NativeStreamHandle | undefined
  /** Bytes read past the preface / accept byte during the handshake. */
  leftover: Uint8Array | undefined
}

export function truncateReason (reason: string): string {
  return reason.length > MAX_REASON ? reason.slice(0, MAX_REASON) : reason
}

/**
 * WebTransport flow-control windows, the same on both sides.
 *
 * The library's defaults stall every transfer after ≈16–32 KiB over HTTP/2.
 * Root cause (1.6.8, lib/http2/node/server.js): the server advertises
 * `initialSessionFlowControlWindow` to the client but sets its own session
 * receive window to `sessionFlowControlWindowSizeLimit` (default 15 MiB), and
 * only grants more credit once half of THAT is consumed — so the client stops
 * at the advertised window and waits forever. With the limit equal to the
 * initial window both ends agree, and even 16 KiB windows work (probed).
 *
 * Sizes: a stream window bounds what a paused channel can absorb (the rest
 * waits at the sender, as backpressure); 1 MiB per stream keeps that small.
 * Throughput on loopback did not depend on the window (256 KiB … 16 MiB
 * measured the same within noise): the JS HTTP/2 path is CPU-bound, about
 * 0.7 CPU-seconds per 32 MiB for both ends together. The session window is the sum
 * of the four stream windows so a stalled channel can never use up the
 * credit the other channels need.
 */
export const WT_FLOW_CONTROL = {
  initialStreamFlowControlWindow: 1024 * 1024,
  streamFlowControlWindowSizeLimit: 1024 * 1024,
  initialSessionFlowControlWindow: 4 * 1024 * 1024,
  sessionFlowControlWindowSizeLimit: 4 * 1024 * 1024
} as const

/** Read until at least one byte arrived; throws ProtocolError on a stream that ends first. */
export async function readFirst (reader: ReadableStreamDefaultReader<Uint8Array>, what: string): Promise<Uint8Array> {
  for (;;) {
    const r = await reader.read()
    if (r.done) throw new ProtocolError(`${what} ended before its first byte`)
    if (r.value.byteLength > 0) return r.value
  }
}
