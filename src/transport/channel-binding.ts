/**
 * Channel binding for the session handshake (issue 13 item 10: "the session
 * bound to the channel where the transport allows it"). A TLS exporter value
 * (RFC 5705; RFC 8446 §7.5 for TLS 1.3) is the same at both ends of ONE TLS
 * connection and different on each leg of a relay that terminates TLS and
 * re-originates it, even when the relay's certificate is accepted. The edge
 * signs it into its hello and join proof, the hub compares it with its own:
 * a relayed hello is refused (EF_CHANNEL_BINDING_MISMATCH).
 *
 * TLS 1.2 exporters are only safe with the extended master secret (RFC 7627
 * §5.4), which OpenSSL negotiates by default; Node offers TLS 1.3 first.
 * quic:// on the native engine exports it too (quinn's
 * `Connection::export_keying_material`, native/quic); the libp2p fallback
 * engine and WebTransport do not expose it: those connections have none.
 */
import type { TLSSocket } from 'node:tls'

/** Exporter label: RFC 5705 §4 labels for private use start with "EXPERIMENTAL"; this one is ours alone. */
export const CHANNEL_BINDING_LABEL = 'EXPORTER-edgefabric-join'
export const CHANNEL_BINDING_BYTES = 32

/** The exporter value of an established TLS socket; undefined for anything else (never throws). */
export function tlsChannelBinding (socket: unknown): Uint8Array | undefined {
  const s = socket as Partial<TLSSocket> | undefined
  if (s === undefined || s === null || s.encrypted !== true || typeof s.exportKeyingMaterial !== 'function') return undefined
  try {
    return new Uint8Array(s.exportKeyingMaterial(CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL, Buffer.alloc(0)))
  } catch {
    return undefined // not yet (or no longer) established
  }
}
