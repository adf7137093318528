/**
 * Codec streams: the stateful envelope codec for one ordered, reliable
 * channel (a transport's per-priority stream, for the life of a connection).
 *
 * A stream's encoder and the peer's decoder for the same channel keep the
 * same dictionaries: router strings (src/codec/strings.ts) and object shapes
 * (src/codec/shapes.ts). Once defined (the second time the encoder sees
 * them), later frames refer to them by number and carry only the values.
 * That removes most of a structured envelope's bytes and much of its encode
 * and decode work (bench/codec.ts).
 *
 * Frames: a stream frame is wire format version 2 (src/codec/header.ts).
 * Its content is stream content (meta bit 0x40) unless the stream subset
 * does not cover it (Map, Set, typed arrays other than Uint8Array, keys that
 * are '__proto__' or not well-formed UTF-16...): then it is the stateless
 * content encoding. A re-entrant encode gets a stateless version 1 frame,
 * which a stream decoder reads too. The stateless codec.decode() refuses
 * version 2 frames with a DecodeError: they mean nothing outside their stream.
 *
 * Contract, because both sides must stay in step:
 * - Every frame encode() returns must be delivered to the peer's decoder
 *   for this channel, in order. A frame that will not be sent (refused as
 *   too large, send buffer full) must be cancel()ed before the next encode().
 * - decode() must see every frame of the channel, in order. After a decode
 *   error the stream state is undefined: abort the connection (transports
 *   do). Unknown shape ids, malformed or excess definitions are DecodeError.
 * - encode() and decode() of one stream object are independent halves: the
 *   encoder for what this side sends on the channel, the decoder for what it
 *   receives on it.
 */
import type { Envelope } from './envelope.js'
import { ShapeEncoder, ShapeTable } from './shapes.js'
import { StringEncoder } from './strings.js'

export interface EnvelopeCodecStream {
  /** Encode for this channel; the frame may depend on earlier frames of this stream. */
  encode (envelope: Envelope): Uint8Array
  /** Decode the next frame received on this channel. Throws DecodeError / InvalidEnvelopeError, nothing else. */
  decode (bytes: Uint8Array): Envelope
  /**
   * The frame returned by the last encode() will not be sent: forget what it
   * defined, or the peer would meet references it never saw defined.
   */
  cancel (): void
}

/** The encoder half's dictionaries. */
export interface EncoderState { readonly shapes: ShapeEncoder, readonly strings: StringEncoder }
/** The decoder half's dictionaries. */
export interface DecoderState { readonly shapes: ShapeTable, readonly strings: string[] }

/** What a stream needs from the codec (src/codec/codec.ts). */
export interface FrameCodec {
  encode (envelope: Envelope): Uint8Array
  encodeFrame (envelope: Envelope, stream: EncoderState | null): Uint8Array
  decodeFrame (bytes: Uint8Array, stream: DecoderState | null): Envelope
}

export class CodecStream implements EnvelopeCodecStream {
  readonly #codec: FrameCodec
  readonly #tx: EncoderState = { shapes: new ShapeEncoder(), strings: new StringEncoder() }
  readonly #rx: DecoderState = { shapes: new ShapeTable(), strings: [] }
  #encoding = false
  // Dictionary sizes before the last encode(), for cancel().
  #shapesBefore = 0
  #stringsBefore = 0

  constructor (codec: FrameCodec) {
    this.#codec = codec
  }

  encode (envelope: Envelope): Uint8Array {
    // A content getter or toJSON() that encodes on this same stream would put
    // its frame on the wire BEFORE ours, while ours may define what it
    // refers to: give it a stateless frame.
    if (this.#encoding) return this.#codec.encode(envelope)
    this.#encoding = true
    const tx = this.#tx
    const shapes = tx.shapes.count
    const strings = tx.strings.count
    try {
      const frame = this.#codec.encodeFrame(envelope, tx)
      this.#shapesBefore = shapes
      this.#stringsBefore = strings
      return frame
    } catch (err) {
      tx.shapes.rollback(shapes)
      tx.strings.rollback(strings)
      this.#shapesBefore = shapes // nothing left for cancel() to undo
      this.#stringsBefore = strings
      throw err
    } finally {
      this.#encoding = false
    }
  }

  cancel (): void {
    this.#tx.shapes.rollback(this.#shapesBefore)
    this.#tx.strings.rollback(this.#stringsBefore)
  }

  decode (bytes: Uint8Array): Envelope {
    return this.#codec.decodeFrame(bytes, this.#rx)
  }
}
