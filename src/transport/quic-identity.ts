/**
 * QUIC identities. The native engine forces libp2p-TLS: each side presents a
 * self-signed certificate bound to a libp2p key, and the authenticated
 * identity is that key's peer id (`12D3KooW…` for Ed25519). There is no CA:
 * trust comes from pinning the peer id (`expectedRemoteIdentity`).
 *
 * A server should persist its key (encodeQuicIdentity → store → decodeQuicIdentity)
 * so its peer id, which dialers pin, survives restarts. A dialer without a
 * configured identity uses one ephemeral key per process.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { InvalidOptionError, toError } from '../errors.js'

/** A libp2p private key (from @libp2p/crypto). Ed25519 is what generateQuicIdentity() makes. */
export type QuicPrivateKey = Parameters<typeof privateKeyToProtobuf>[0]

/** What `identity` accepts for quic:// — a private key, or its protobuf encoding. */
export type QuicIdentity = QuicPrivateKey | Uint8Array

/** A fresh Ed25519 identity. Persist it with encodeQuicIdentity(). */
export async function generateQuicIdentity (): Promise<QuicPrivateKey> {
  return await generateKeyPair('Ed25519')
}

/** Protobuf bytes of the key (the libp2p standard encoding), for storage. */
export function encodeQuicIdentity (key: QuicIdentity): Uint8Array {
  return quicIdentityBytes(key)
}

/** Inverse of encodeQuicIdentity(). Throws InvalidOptionError for bytes that are not a key. */
export function decodeQuicIdentity (bytes: Uint8Array): QuicPrivateKey {
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new InvalidOptionError('identity', `not a protobuf-encoded libp2p private key: ${toError(err).message}`, { cause: err })
  }
}

/** The peer id string of a key: what the other side passes as `expectedRemoteIdentity`. */
export function quicPeerId (key: QuicIdentity): string {
  const k = key instanceof Uint8Array ? decodeQuicIdentity(key) : key
  try {
    return peerIdFromPrivateKey(k).toString()
  } catch (err) {
    throw new InvalidOptionError('identity', `cannot derive a peer id: ${toError(err).message}`, { cause: err })
  }
}

/** Protobuf bytes for the native config. */
export function quicIdentityBytes (key: QuicIdentity): Uint8Array {
  if (key instanceof Uint8Array) {
    decodeQuicIdentity(key) // validate early, with a clear error
    return key
  }
  try {
    return privateKeyToProtobuf(key)
  } catch (err) {
    throw new InvalidOptionError('identity', `not a libp2p private key: ${toError(err).message}`, { cause: err })
  }
}

let ephemeral: Promise<QuicPrivateKey> | undefined

/**
 * The key to use for an `identity` option: the given one; else a fresh key
 * (`fresh`, listeners) or the per-process ephemeral key (dialers).
 */
export async function resolveQuicIdentity (identity: unknown, fresh = false): Promise<{ proto: Uint8Array, peerId: string }> {
  let key: QuicIdentity
  if (identity === undefined) {
    if (fresh) {
      key = await generateQuicIdentity()
    } else {
      ephemeral ??= generateQuicIdentity()
      key = await ephemeral
    }
  } else if (identity instanceof Uint8Array) {
    key = identity
  } else if (identity !== null && typeof identity === 'object' && 'type' in identity && 'raw' in identity) {
    key = identity as QuicPrivateKey
  } else {
    throw new InvalidOptionError('identity', 'quic:// expects a @libp2p/crypto private key or its protobuf bytes (see generateQuicIdentity())')
  }
  return { proto: quicIdentityBytes(key), peerId: quicPeerId(key) }
}
