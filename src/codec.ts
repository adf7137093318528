/**
 * Envelope codec. PLACEHOLDER implementation (plain msgpackr) — being replaced
 * by the fast wire layout. The interface below is the contract.
 */
import { Packr } from 'msgpackr'
import type { Envelope } from './envelope.js'
import { DecodeError, InvalidEnvelopeError } from './errors.js'

export interface EnvelopeCodec {
  /** Encode one envelope into a self-contained byte string (no length prefix). */
  encode (envelope: Envelope): Uint8Array
  /** Decode bytes produced by encode(). Throws DecodeError / InvalidEnvelopeError, nothing else. */
  decode (bytes: Uint8Array): Envelope
}

const packr = new Packr({ useRecords: false })

export const defaultCodec: EnvelopeCodec = {
  encode (envelope) { return packr.pack(envelope) },
  decode (bytes) {
    let v: unknown
    try { v = packr.unpack(bytes) } catch (err) { throw new DecodeError('malformed envelope bytes', { cause: err }) }
    if (typeof v !== 'object' || v === null) throw new InvalidEnvelopeError('envelope', 'not an object')
    return v as Envelope
  }
}
