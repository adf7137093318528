/**
 * Envelope codec: the production wire format (DESIGN.md §2).
 *
 * msgpack of the whole envelope measured no faster than JSON and barely
 * smaller: most of an envelope is a fixed set of header/router fields whose
 * names msgpack spells out in every message. So a frame is a fixed binary
 * header, then the content; only object content is msgpack, and binary or
 * string content skips msgpack entirely.
 *
 * Wire layout, version 1 (multi-byte numbers big-endian):
 *
 *   0   u8    version (1). A peer rejects any other value with a DecodeError.
 *   1   u8    flags   0x01 parentId  0x02 resourceVersion  0x04 sync present
 *                     0x08 sync=true 0x10 ttl  0x20 priority  0x40 destination
 *                     0x80 reserved, must be 0
 *   2   u8    meta    bits 0-1 priority index in PRIORITIES (0 unless 0x20)
 *                     bits 2-3 content kind: 0 undefined, 1 msgpack, 2 bytes, 3 UTF-8 string
 *                     0x10 id is a 16-byte UUID, 0x20 parentId is a 16-byte UUID
 *                     0xc0 reserved, must be 0
 *   3   u8    operation: index in OPERATIONS, or 0xff = custom, sent as a str below
 *   4   f64   timestamp
 *  12  [f64   ttl]                    if flags 0x10
 *       id                            16 raw bytes if meta 0x10 (canonical lowercase UUID), else str
 *      [parentId]                     if flags 0x01: 16 raw bytes if meta 0x20, else str
 *      [resourceVersion: str]         if flags 0x02
 *       source: str
 *      [destination: str]             if flags 0x40
 *       group: str
 *      [operation: str]               if byte 3 is 0xff
 *       resource: str
 *       content                       kind 0: nothing; kind 1: exactly one msgpack value up to
 *                                     the end; kinds 2, 3: varint length, then exactly that many bytes
 *
 *   str = unsigned LEB128 byte length, then that many bytes of UTF-8.
 *
 * Version 2 is a stream frame (createStream(), src/codec/stream.ts): the same
 * layout, with router strings and object shapes that refer to a dictionary
 * built up by earlier frames of the same channel. decode() refuses it; a
 * stream's decode() reads both versions.
 *
 * Decoding is strict: truncation at any byte, trailing bytes, reserved bits,
 * inconsistent flags, unknown operation codes, invalid UTF-8 or msgpack are
 * DecodeError; well-formed bytes carrying an invalid value (empty id,
 * non-finite timestamp or ttl) are InvalidEnvelopeError. Declared lengths are
 * checked against the bytes present before anything is allocated. Nothing
 * else is ever thrown.
 *
 * Value semantics (all tested in test/codec.test.ts):
 * - Strings are UTF-8 on the wire. Well-formed strings (astral characters,
 *   a leading U+FEFF included) round-trip exactly; a lone surrogate cannot be
 *   expressed in UTF-8 and arrives as U+FFFD, as with TextEncoder.
 * - Optional header/router fields that are undefined are not sent and are
 *   absent (not `undefined`) after decoding, exactly as newMessage() builds
 *   them. Unknown extra header/router properties are not sent.
 * - Content: anything msgpackr encodes with { moreTypes: true }: undefined,
 *   null, booleans, numbers (-0 arrives as 0), strings, bigint, arrays
 *   (holes arrive as undefined), plain objects and class instances (own
 *   enumerable properties, or toJSON()), Date, Buffer and every typed array
 *   (keeping its type), ArrayBuffer, DataView, Set, Error, RegExp. A Map
 *   arrives as a plain object. Functions become undefined; symbols and cyclic
 *   values are an InvalidEnvelopeError. A '__proto__' key arrives as
 *   '__proto_' (msgpackr's guard against prototype pollution).
 * - Top-level Uint8Array content (Buffer or not) arrives as a Buffer.
 * - Decoded binary, top-level or nested, is always a COPY: the caller may
 *   reuse the input buffer as soon as decode() returns. Small copies are
 *   slices of Node's shared Buffer pool, like Buffers from fs or net, and a
 *   nested plain Uint8Array up to 4 KiB is a slice of a pool of its own
 *   (bytes.ts copyToUint8Array): its `.buffer` is shared.
 * - encode() returns a view into a slab that is written once, front to back,
 *   and never reused: safe to queue and keep. Like Node's pooled Buffers, it
 *   may have a non-zero byteOffset and share its ArrayBuffer with other
 *   frames; never transfer or reuse `.buffer`.
 */
import { Unpackr, Packr } from 'msgpackr'
import type { Envelope } from './envelope.js'
import { DecodeError, EdgeFabricError, InvalidEnvelopeError, InvalidOptionError } from '../errors.js'
import { GIVE_UP, copyBytes, readUtf8, writeUtf8 } from './bytes.js'
import { checkEnvelope, type CheckedFields } from './check.js'
import {
  KIND_BYTES, KIND_MSGPACK, KIND_STRING, KIND_UNDEFINED, M_STREAM_CONTENT, cursor, streamContent, headerBound, kind as frameKind, readHeader, readLength, writeHeader
} from './header.js'
import { decodeFast } from './msgpack-decode.js'
import { encodeFast, encodedEnd, encodedStart } from './msgpack-encode.js'
import type { ShapeEncoder } from './shapes.js'
import { CodecStream, type DecoderState, type EncoderState, type EnvelopeCodecStream, type FrameCodec } from './stream.js'

export { WIRE_VERSION, STREAM_WIRE_VERSION } from './header.js'
export type { EnvelopeCodecStream } from './stream.js'

export interface EnvelopeCodec {
  /** Encode one envelope into a self-contained byte string (no length prefix). */
  encode (envelope: Envelope): Uint8Array
  /** Decode bytes produced by encode(). Throws DecodeError / InvalidEnvelopeError, nothing else. */
  decode (bytes: Uint8Array): Envelope
  /**
   * Optional: a stateful codec for ONE ordered, reliable channel (e.g. a
   * transport's per-priority stream), whose frames may refer to what earlier
   * frames on that channel defined; see src/codec/stream.ts. Transports use
   * one per channel when the codec offers it; stored or forwarded envelopes
   * use the stateless encode()/decode().
   */
  createStream? (): EnvelopeCodecStream
  /**
   * Optional: decode() for bytes the caller hands over and never touches again,
   * so binary content may be a view of them instead of a copy. The reliable
   * receiver's records are private copies already (the data message's decode
   * copied them out of the frame); a second copy per message was a share of
   * the edge's CPU and allocations in a drain (issue 16).
   */
  decodeOwned? (bytes: Uint8Array): Envelope
}

export interface CodecOptions {
  /**
   * Largest content, in encoded bytes, that encode() produces and decode()
   * accepts. Whole frames are also bounded by the transport's maxFrameSize.
   * @default Infinity
   */
  maxContentBytes?: number
}

/** Encoded frames are carved from slabs of this size (see encode()). */
const SLAB_BYTES = 16 * 1024

function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function tooLarge (size: number, limit: number): InvalidEnvelopeError {
  return new InvalidEnvelopeError('content', `${size} bytes exceeds maxContentBytes ${limit}`)
}

function badContent (err: unknown): InvalidEnvelopeError {
  return new InvalidEnvelopeError('content', `cannot be encoded as msgpack: ${message(err)}`, { cause: err })
}

function checkFields (envelope: Envelope): CheckedFields {
  try {
    return checkEnvelope(envelope)
  } catch (err) {
    if (err instanceof InvalidEnvelopeError) throw err
    throw new InvalidEnvelopeError('envelope', `cannot be read: ${message(err)}`, { cause: err }) // a throwing getter or Proxy
  }
}

/**
 * Stream content (shape-coded, see src/codec/shapes.ts) via encodeFast, or
 * undefined when the content is outside the stream subset: the dictionary is
 * then as before, and the caller writes a stateless frame.
 */
function encodeStream (slab: Buffer, start: number, pos: number, content: unknown, dictionary: ShapeEncoder): Buffer | undefined {
  const defined = dictionary.count
  try {
    return encodeFast(slab, start, pos, content, dictionary)
  } catch (err) {
    dictionary.rollback(defined)
    if (err !== GIVE_UP) throw badContent(err)
    return undefined
  }
}

function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

class BinaryEnvelopeCodec implements EnvelopeCodec, FrameCodec {
  readonly #maxContentBytes: number
  // Both rarely used (see codec-msgpack-*.ts), and reused: building them per
  // call is costly. moreTypes: typed arrays keep their type, and without it
  // msgpackr 2.1.3 writes a Uint16Array's byteLength but copies only as many
  // bytes as it has elements, sending stale bytes of its shared buffer.
  // structuredClone false: a hostile peer cannot make cyclic content.
  // copyBuffers: decoded binary never aliases the input frame.
  readonly #packr = new Packr({ useRecords: false, moreTypes: true })
  readonly #unpackr = new Unpackr({ useRecords: false, copyBuffers: true, structuredClone: false } as ConstructorParameters<typeof Unpackr>[0])
  #slab: Buffer | undefined
  #slabUsed = 0
  /** Set by decodeOwned() for the decode it runs: bytes content becomes a view of the input. */
  #owned = false

  constructor (options: CodecOptions = {}) {
    const max = options.maxContentBytes ?? Infinity
    if (typeof max !== 'number' || Number.isNaN(max) || max < 0) {
      throw new InvalidOptionError('maxContentBytes', 'must be a non-negative number')
    }
    this.#maxContentBytes = max
  }

  encode (envelope: Envelope): Uint8Array {
    return this.encodeFrame(envelope, null)
  }

  createStream (): EnvelopeCodecStream {
    return new CodecStream(this)
  }

  /**
   * A stateless frame, or with `stream` a stream frame (with stream content
   * when the content allows). The caller rolls the stream state back if this
   * throws.
   */
  encodeFrame (envelope: Envelope, stream: EncoderState | null): Uint8Array {
    // Every field is read and checked once, before anything is written, so a
    // getter cannot change a value between check and write.
    const f = checkFields(envelope)
    const content = envelope.content
    let kind = KIND_MSGPACK
    let contentBytes = 0
    if (content === undefined) kind = KIND_UNDEFINED
    else if (typeof content === 'string') { kind = KIND_STRING; contentBytes = Buffer.byteLength(content, 'utf8') } else if (content instanceof Uint8Array) { kind = KIND_BYTES; contentBytes = content.byteLength }
    if (contentBytes > this.#maxContentBytes) throw tooLarge(contentBytes, this.#maxContentBytes)

    // Frames are written straight into a slab, at its first unused byte, and
    // returned as a view: no per-frame allocation or copy, and no byte of a
    // slab is written twice, so every returned frame stays intact for as long
    // as it is kept. The slab is taken while encoding: a content getter or
    // toJSON() that re-enters encode() gets a slab of its own.
    const bound = headerBound(f) + contentBytes + (kind === KIND_MSGPACK ? 1024 : 0)
    const prevSlab = this.#slab
    const prevUsed = this.#slabUsed
    this.#slab = undefined
    let slab: Buffer
    let start = 0
    if (prevSlab !== undefined && prevUsed + bound <= prevSlab.length) {
      slab = prevSlab
      start = prevUsed
    } else {
      // A frame too big for a slab gets a buffer of its own, not kept as the
      // slab: small frames carved from it later would pin it.
      slab = Buffer.allocUnsafeSlow(bound > SLAB_BYTES / 2 ? bound : SLAB_BYTES)
    }
    const slabStart = start
    let buf = slab
    let pos = writeHeader(buf, start, f, kind, contentBytes, stream === null ? null : stream.strings)
    const headerBytes = pos - start
    let end = pos + contentBytes
    if (kind === KIND_BYTES) buf.set(content as Uint8Array, pos)
    else if (kind === KIND_STRING) {
      if (contentBytes <= 64) writeUtf8(buf, pos, content as string)
      else buf.write(content as string, pos, 'utf8')
    } else if (kind === KIND_MSGPACK) {
      const streamed = stream === null ? undefined : encodeStream(slab, start, pos, content, stream.shapes)
      if (streamed !== undefined) {
        buf = streamed
        start = encodedStart
        end = encodedEnd
        buf[start + 2] = (buf[start + 2] as number) | M_STREAM_CONTENT
      } else try {
        buf = encodeFast(slab, start, pos, content) // a larger buffer of its own if it outgrew the slab
        start = encodedStart
        end = encodedEnd
      } catch (err) {
        if (err !== GIVE_UP) throw badContent(err)
        const packed = this.#packWithMsgpackr(content)
        // msgpackr's output lives in a buffer shared by every Packr in the process: copy it.
        end = pos + packed.length
        if (end > buf.length) {
          buf = Buffer.allocUnsafeSlow(headerBytes + packed.length)
          slab.copy(buf, 0, start, pos)
          start = 0
          pos = headerBytes
          end = pos + packed.length
        }
        buf.set(packed, pos)
      }
      contentBytes = end - start - headerBytes
    }
    // Give the slab back: used up to this frame's end if the frame is in it,
    // unchanged if the frame went to a buffer of its own or is refused.
    if (slab.length === SLAB_BYTES) {
      this.#slab = slab
      this.#slabUsed = buf === slab && contentBytes <= this.#maxContentBytes ? end : slabStart
    } else {
      this.#slab = prevSlab
      this.#slabUsed = prevUsed
    }
    if (contentBytes > this.#maxContentBytes) throw tooLarge(contentBytes, this.#maxContentBytes)
    return buf.subarray(start, end)
  }

  #packWithMsgpackr (content: unknown): Uint8Array {
    try {
      return this.#packr.pack(content)
    } catch (err) {
      throw badContent(err)
    }
  }

  decode (bytes: Uint8Array): Envelope {
    return this.decodeFrame(bytes, null)
  }

  decodeOwned (bytes: Uint8Array): Envelope {
    this.#owned = true
    try {
      return this.decodeFrame(bytes, null)
    } finally {
      this.#owned = false
    }
  }

  /** Decode a stateless frame, or with `stream` also a stream frame of that stream. */
  decodeFrame (bytes: Uint8Array, stream: DecoderState | null): Envelope {
    if (!(bytes instanceof Uint8Array)) throw new DecodeError(`expected a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`)
    try {
      return this.#decode(asBuffer(bytes), stream)
    } catch (err) {
      // Every failure path throws a typed error already; anything else (a
      // bug, a stack overflow) still reaches the caller typed.
      if (err instanceof EdgeFabricError) throw err
      throw new DecodeError(`malformed envelope: ${message(err)}`, { cause: err })
    }
  }

  #decode (buf: Buffer, stream: DecoderState | null): Envelope {
    const env = readHeader(buf, stream === null ? null : stream.strings)
    const len = buf.length
    const kind = frameKind
    if (kind === KIND_UNDEFINED) {
      if (cursor !== len) throw new DecodeError(`${len - cursor} trailing bytes after an envelope without content`)
      return env
    }
    if (kind === KIND_MSGPACK) {
      const start = cursor
      if (start === len) throw new DecodeError('truncated envelope: msgpack content missing')
      this.#checkSize(len - start)
      if (streamContent) {
        // No msgpackr fallback: stream content is exactly what the fast decoder reads.
        try {
          env.content = decodeFast(buf, start, len, (stream as DecoderState).shapes)
        } catch (err) {
          if (err !== GIVE_UP) throw err
          throw new DecodeError('content: malformed stream frame content')
        }
        return env
      }
      try {
        env.content = decodeFast(buf, start, len)
      } catch (err) {
        if (err !== GIVE_UP) throw err
        // Outside the fast decoder's subset, or malformed: msgpackr has the last word.
        try {
          env.content = this.#unpackr.unpack(buf, { start, end: len })
        } catch (err) {
          throw new DecodeError(`content: invalid msgpack: ${message(err)}`, { cause: err })
        }
      }
      return env
    }
    const n = readLength(buf, 'content')
    this.#checkSize(n)
    const start = cursor
    if (start + n !== len) throw new DecodeError(`${len - start - n} trailing bytes after the content`)
    if (kind === KIND_BYTES) {
      env.content = this.#owned ? buf.subarray(start, len) : copyBytes(buf, start, len)
    } else {
      const s = readUtf8(buf, start, len)
      if (s === undefined) throw new DecodeError('content: invalid UTF-8')
      env.content = s
    }
    return env
  }

  #checkSize (n: number): void {
    if (n > this.#maxContentBytes) throw new DecodeError(`content of ${n} bytes exceeds maxContentBytes ${this.#maxContentBytes}`)
  }
}

/** A codec with its own options and buffers. */
export function createCodec (options?: CodecOptions): EnvelopeCodec {
  return new BinaryEnvelopeCodec(options)
}

/** The codec transports use unless given another (DESIGN.md §2). */
export const defaultCodec: EnvelopeCodec = createCodec()
