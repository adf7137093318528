/**
 * Proof of token possession (issue 13 item 10): the join token never crosses
 * the wire. The edge sends the token's public payload (node, expiry, jti,
 * pins: nothing secret) and an HMAC over the hub's challenge, keyed by a
 * secret derived from the token's signature. An on-path relay sees neither the
 * token nor anything it can reuse: the MAC covers the hub's fresh nonce, the
 * hub id, the node name and the node key, so it verifies for that one
 * handshake of that one key only.
 *
 * The hub can recompute the secret because Ed25519 signatures are
 * deterministic (RFC 8032 §5.1.6): signing `ef1.<payload>` again with the
 * token key yields exactly the signature the token carries. A hub that
 * derives the same MAC key has therefore also checked the token's signature:
 * no other key can produce it.
 */
import { createHash, createHmac, sign, timingSafeEqual } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { JoinRefusedError } from '../errors.js'
import { JOIN_TOKEN_PREFIX, MAX_TOKEN_LENGTH, decodeJoinToken, type JoinTokenPayload } from './token.js'

const SECRET_TAG = Buffer.from('edgefabric join-secret v1\0')
const PROOF_TAG = Buffer.from('edgefabric join-proof v1\0')
/** A proof is one HMAC-SHA256. */
export const JOIN_PROOF_BYTES = 32

/** What a proof covers besides the token: one handshake of one key. */
export interface JoinTranscript {
  node: string
  /** The hub id from the challenge. */
  hub: string
  /** The hub's fresh challenge nonce. */
  nonce: Uint8Array
  /** The node's raw 32-byte public key. */
  key: Uint8Array
  /** TLS exporter value of the connection where the transport has one; empty otherwise. */
  channelBinding?: Uint8Array
}

/** The public part of a token that travels in the hello: `<base64url payload>`. */
export function tokenPayloadPart (token: string): string {
  const parts = token.trim().split('.')
  if (parts.length !== 3 || parts[0] !== JOIN_TOKEN_PREFIX) throw new JoinRefusedError('EF_TOKEN_INVALID', 'the join token is invalid: expected 3 dot-separated parts')
  return parts[1] as string
}

function secretFromSignature (signature: Uint8Array): Buffer {
  return createHash('sha256').update(SECRET_TAG).update(signature).digest()
}

/** Edge side: the MAC key, from the token's own signature. */
export function edgeJoinSecret (token: string): Buffer {
  decodeJoinToken(token) // validates the shape, throws JoinRefusedError
  const sig = Buffer.from(token.trim().split('.')[2] as string, 'base64url')
  return secretFromSignature(sig)
}

/**
 * Hub side: parse the payload part and recompute the MAC key by signing it
 * again. Throws JoinRefusedError EF_TOKEN_INVALID for a malformed payload.
 */
export function hubJoinSecret (payloadPart: unknown, tokenSigningKey: KeyObject): { payload: JoinTokenPayload, secret: Buffer } {
  if (typeof payloadPart !== 'string' || payloadPart.length === 0 || payloadPart.length > MAX_TOKEN_LENGTH) {
    throw new JoinRefusedError('EF_TOKEN_INVALID', 'the join token is invalid: the payload is missing or too long')
  }
  // decodeJoinToken wants the 3-part form; a dummy signature of the right
  // length passes its shape checks and is never used.
  const payload = decodeJoinToken(`${JOIN_TOKEN_PREFIX}.${payloadPart}.${Buffer.alloc(64).toString('base64url')}`)
  const sig = sign(null, Buffer.from(`${JOIN_TOKEN_PREFIX}.${payloadPart}`), tokenSigningKey)
  return { payload, secret: secretFromSignature(sig) }
}

function lp (b: Uint8Array | string): Buffer[] {
  const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(buf.length)
  return [len, buf]
}

function mac (secret: Uint8Array, payloadPart: string, t: JoinTranscript): Buffer {
  const h = createHmac('sha256', secret)
  h.update(PROOF_TAG)
  for (const part of [payloadPart, t.node, t.hub, t.nonce, t.key, t.channelBinding ?? new Uint8Array(0)]) {
    for (const b of lp(part)) h.update(b)
  }
  return h.digest()
}

/** Edge side: the proof for this handshake. */
export function joinProof (secret: Uint8Array, payloadPart: string, transcript: JoinTranscript): Uint8Array {
  return new Uint8Array(mac(secret, payloadPart, transcript))
}

/** Hub side: constant-time check; malformed input is false, never a throw. */
export function verifyJoinProof (secret: Uint8Array, payloadPart: string, transcript: JoinTranscript, proof: unknown): boolean {
  if (!(proof instanceof Uint8Array) || proof.length !== JOIN_PROOF_BYTES) return false
  return timingSafeEqual(mac(secret, payloadPart, transcript), proof)
}
