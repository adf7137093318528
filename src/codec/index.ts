/**
 * src/codec/ owns the envelope (DESIGN.md §2) and its wire forms — nothing
 * else in the tree knows a byte layout:
 *
 * - envelope.ts        the public Envelope type, operations, priorities, ids
 * - check.ts           validation before encoding (InvalidEnvelopeError)
 * - codec.ts           the stateless frame (version 1): storage, first frames
 * - header.ts          the fixed binary header shared by both frame versions
 * - stream.ts          the per-channel stream form (version 2): router-string
 *   strings.ts         and object-shape dictionaries built up by earlier
 *   shapes.ts          frames of the same channel (HPACK-like)
 * - msgpack-encode.ts  our msgpack for object content (writes into the frame)
 *   msgpack-decode.ts  and its strict decoder (limits checked before allocating)
 * - bytes.ts           UTF-8, varints and the growable write buffer
 *
 * Importers outside the folder take what they need from this index or from
 * codec.ts / envelope.ts; the other files are the codec's insides.
 */
export * from './envelope.js'
export { defaultCodec, type EnvelopeCodec, type EnvelopeCodecStream } from './codec.js'
