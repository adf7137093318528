/**
 * Envelope codec: the production wire format (DESIGN.md §2).
 *
 * Plain msgpack of the whole envelope was measured no faster than JSON and
 * barely smaller, because most of an envelope is a fixed set of header/router
 * fields whose names msgpack spells out every time. So the envelope is a fixed
 * binary header followed by the content; only the content goes through
 * msgpackr, and binary or string content skips msgpack entirely.
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
 *   3   u8    operation: index in OPERATIONS, or 0xff = custom, sent as a string below
 *   4   f64   timestamp
 *  12  [f64   ttl]                        if flags 0x10
 *       id                                16 raw bytes if meta 0x10, else str
 *      [parentId]                         if flags 0x01: 16 raw bytes if meta 0x20, else str
 *      [resourceVersion: str]             if flags 0x02
 *       source: str
 *      [destination: str]                 if flags 0x40
 *       group: str
 *      [operation: str]                   if byte 3 is 0xff
 *       resource: str
 *       content: every remaining byte (kind 0: none; kind 1: exactly one msgpack value)
 *
 *   str = unsigned LEB128 byte length, then that many bytes of UTF-8.
 *
 * Decoding is strict: truncation, trailing bytes, set reserved bits,
 * inconsistent flags, invalid UTF-8 or msgpack are DecodeError; well-formed
 * bytes carrying an invalid value (empty id, non-finite timestamp) are
 * InvalidEnvelopeError. Nothing else is ever thrown.
 *
 * Value semantics (tested in test/codec.test.ts):
 * - Strings are UTF-8 on the wire. Well-formed strings (astral characters
 *   included) round-trip exactly; lone surrogates cannot be expressed in UTF-8
 *   and arrive as U+FFFD, as with TextEncoder, JSON-over-UTF-8 or msgpack.
 * - Optional header/router fields that are undefined are not sent and are
 *   absent (not `undefined`) after decoding, as newMessage() builds them.
 *   Unknown extra header/router properties are not sent.
 * - Content: undefined, a string, a Uint8Array (Buffer included) take fast
 *   paths; anything else goes through msgpackr with default types: null,
 *   booleans, numbers, bigint (64-bit range), strings, arrays, plain objects,
 *   Date, and nested binary. Other typed arrays, ArrayBuffer and DataView are
 *   sent as bytes; Map arrives as a plain object, Set/Error/RegExp as arrays
 *   (msgpackr's defaults). Functions and symbols are dropped by msgpackr.
 * - Decoded binary (top-level or nested) is always a Buffer holding a COPY,
 *   so the caller may reuse the input buffer as soon as decode() returns.
 * - encode() returns a fresh buffer that nothing else writes to (never a view
 *   into a scratch buffer or into msgpackr's shared slab), safe to queue.
 */
import { Packr, Unpackr } from 'msgpackr'
import { OPERATIONS, PRIORITIES, type Envelope, type MessageHeader, type MessageRouter } from './envelope.js'
import { DecodeError, EdgeFabricError, InvalidEnvelopeError, InvalidOptionError } from './errors.js'
import { StringCache, copyBytes, readFloat64, readUtf8, readUuid, writeFloat64, writeUtf8, writeUuid, writeVarint } from './codec-bytes.js'
import { checkEnvelope, type CheckedFields } from './codec-check.js'
import { decodeFast, encodeFast, encodedEnd, encodedStart, GIVE_UP } from './codec-msgpack.js'

export interface EnvelopeCodec {
  /** Encode one envelope into a self-contained byte string (no length prefix). */
  encode (envelope: Envelope): Uint8Array
  /** Decode bytes produced by encode(). Throws DecodeError / InvalidEnvelopeError, nothing else. */
  decode (bytes: Uint8Array): Envelope
}

export interface CodecOptions {
  /**
   * Largest encoded content, in bytes, that encode() produces and decode()
   * accepts. Frames are also bounded by the transport's maxFrameSize.
   * @default Infinity
   */
  maxContentBytes?: number
}

/** The wire format version this codec writes and the only one it reads. */
export const WIRE_VERSION = 1

const F_PARENT = 0x01
const F_RV = 0x02
const F_SYNC = 0x04
const F_SYNC_TRUE = 0x08
const F_TTL = 0x10
const F_PRIORITY = 0x20
const F_DEST = 0x40
const F_RESERVED = 0x80
const M_PRIORITY = 0x03
const M_ID_UUID = 0x10
const M_PARENT_UUID = 0x20
const M_RESERVED = 0xc0
const KIND_UNDEFINED = 0
const KIND_MSGPACK = 1
const KIND_BYTES = 2
const KIND_STRING = 3
const OP_CUSTOM = 0xff
const FIXED_BYTES = 12
/** Encoded frames are carved from slabs of this size (see encode()). */
const SLAB_BYTES = 16 * 1024

const OP_INDEX = new Map<string, number>(OPERATIONS.map((op, i) => [op, i]))

/** Write a str (varint length + UTF-8). `buf` has room for 5 + 3 * s.length bytes. */
function putStr (buf: Buffer, pos: number, s: string): number {
  const n = s.length
  if (n < 43) { // ≤ 126 UTF-8 bytes: the length fits one varint byte, fill it in afterwards
    const end = writeUtf8(buf, pos + 1, s)
    buf[pos] = end - pos - 1
    return end
  }
  pos = writeVarint(buf, pos, Buffer.byteLength(s, 'utf8'))
  return pos + buf.write(s, pos, 'utf8')
}

// Decoder cursor. decode() is synchronous and runs no user code while strings
// are read, so one module-level cursor is safe and avoids returning pairs.
let cur = 0

function need (buf: Uint8Array, n: number, what: string): void {
  if (cur + n > buf.length) throw new DecodeError(`truncated envelope: ${what} needs ${n} bytes at offset ${cur}, only ${buf.length - cur} left`)
}

const routerStrings = new StringCache(256, 64)

/** A str; `cached` for strings that repeat across messages (router fields). */
function getLength (buf: Buffer, what: string): number {
  // unsigned LEB128, at most 5 bytes (a length beyond 2^32 cannot be in a frame anyway)
  let len = 0
  let shift = 1
  for (let i = 0; ; i++) {
    if (cur >= buf.length) throw new DecodeError(`truncated envelope: ${what} length at offset ${cur}`)
    const b = buf[cur++] as number
    len += (b & 0x7f) * shift
    if (b < 0x80) break
    if (i === 4) throw new DecodeError(`${what}: length varint too long`)
    shift *= 128
  }
  if (len > buf.length - cur) throw new DecodeError(`truncated envelope: ${what} declares ${len} bytes, only ${buf.length - cur} left`)
  return len
}

/** A str; `cached` for strings that repeat across messages (router fields). */
function getStr (buf: Buffer, what: string, cached = false): string {
  const len = getLength(buf, what)
  const start = cur
  cur += len
  const s = cached ? routerStrings.get(buf, start, cur) : readUtf8(buf, start, cur)
  if (s === undefined) throw new DecodeError(`${what}: invalid UTF-8`)
  return s
}

function tooLarge (size: number, limit: number): InvalidEnvelopeError {
  return new InvalidEnvelopeError('content', `${size} bytes exceeds maxContentBytes ${limit}`)
}

function contentTooLarge (size: number, limit: number): DecodeError {
  return new DecodeError(`content of ${size} bytes exceeds maxContentBytes ${limit}`)
}

function badContent (err: unknown): InvalidEnvelopeError {
  return new InvalidEnvelopeError('content', `cannot be encoded as msgpack: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

class BinaryEnvelopeCodec implements EnvelopeCodec {
  readonly #maxContentBytes: number
  // One Packr/Unpackr per codec, reused: constructing them per call is costly.
  // Records off: per-message record definitions cost more than they save and
  // the peer has no shared structures. moreTypes: typed arrays keep their type
  // (without it msgpackr 2.1.3 writes a Uint16Array's byteLength but copies
  // only its element count, sending stale bytes of its shared buffer), and
  // Set/Error/RegExp/ArrayBuffer/DataView/huge bigint round-trip. structuredClone false: no cycles from a
  // hostile peer. copyBuffers: decoded binary never aliases the input frame.
  readonly #packr = new Packr({ useRecords: false, moreTypes: true })
  readonly #unpackr = new Unpackr({ useRecords: false, copyBuffers: true, structuredClone: false } as ConstructorParameters<typeof Unpackr>[0])
  #slab: Buffer | undefined
  #slabUsed = 0

  constructor (options: CodecOptions = {}) {
    const max = options.maxContentBytes ?? Infinity
    if (typeof max !== 'number' || Number.isNaN(max) || max < 0) {
      throw new InvalidOptionError('maxContentBytes', 'must be a non-negative number')
    }
    this.#maxContentBytes = max
  }

  encode (envelope: Envelope): Uint8Array {
    // Every field is read and checked once, before anything is written, so a
    // getter cannot change a value between check and write.
    const f: CheckedFields = checkEnvelope(envelope)
    const content = envelope.content
    let kind = KIND_MSGPACK
    let contentBytes = 0
    if (content === undefined) kind = KIND_UNDEFINED
    else if (typeof content === 'string') { kind = KIND_STRING; contentBytes = Buffer.byteLength(content, 'utf8') } else if (content instanceof Uint8Array) { kind = KIND_BYTES; contentBytes = content.byteLength }
    if (contentBytes > this.#maxContentBytes) throw tooLarge(contentBytes, this.#maxContentBytes)

    // Frames are written straight into a slab, at its first unused byte, and
    // returned as a view: no per-frame allocation or copy, and no byte of a
    // slab is ever written twice, so every returned frame stays intact for as
    // long as it is kept (as Node's Buffer pool does). The slab is taken
    // while encoding: content getters that re-enter encode() get their own.
    const bound = 72 + 3 * f.stringChars + contentBytes + (kind === KIND_MSGPACK ? 1024 : 0)
    const prevSlab = this.#slab
    const prevUsed = this.#slabUsed
    this.#slab = undefined
    let slab: Buffer
    let start = 0
    if (prevSlab !== undefined && prevUsed + bound <= prevSlab.length) {
      slab = prevSlab
      start = prevUsed
    } else {
      // A frame too big for a slab gets a buffer of its own (not kept as the
      // slab: small frames carved from it later would pin it).
      slab = Buffer.allocUnsafeSlow(bound > SLAB_BYTES / 2 ? bound : SLAB_BYTES)
    }
    const slabStart = start
    let buf = slab
    let flags = 0
    let meta = kind << 2
    const opIndex = OP_INDEX.get(f.operation)
    buf[start] = WIRE_VERSION
    buf[start + 3] = opIndex ?? OP_CUSTOM
    writeFloat64(buf, start + 4, f.timestamp)
    let pos = start + FIXED_BYTES
    if (f.ttl !== undefined) { flags |= F_TTL; writeFloat64(buf, pos, f.ttl); pos += 8 }
    if (writeUuid(buf, pos, f.id)) { meta |= M_ID_UUID; pos += 16 } else pos = putStr(buf, pos, f.id)
    if (f.parentId !== undefined) {
      flags |= F_PARENT
      if (writeUuid(buf, pos, f.parentId)) { meta |= M_PARENT_UUID; pos += 16 } else pos = putStr(buf, pos, f.parentId)
    }
    if (f.resourceVersion !== undefined) { flags |= F_RV; pos = putStr(buf, pos, f.resourceVersion) }
    if (f.sync !== undefined) flags |= f.sync ? F_SYNC | F_SYNC_TRUE : F_SYNC
    if (f.priority >= 0) { flags |= F_PRIORITY; meta |= f.priority }
    pos = putStr(buf, pos, f.source)
    if (f.destination !== undefined) { flags |= F_DEST; pos = putStr(buf, pos, f.destination) }
    pos = putStr(buf, pos, f.group)
    if (opIndex === undefined) pos = putStr(buf, pos, f.operation)
    pos = putStr(buf, pos, f.resource)
    buf[start + 1] = flags
    buf[start + 2] = meta

    if (kind === KIND_BYTES || kind === KIND_STRING) pos = writeVarint(buf, pos, contentBytes)
    const headerBytes = pos - start
    let end = pos + contentBytes
    if (kind === KIND_BYTES) buf.set(content as Uint8Array, pos)
    else if (kind === KIND_STRING) {
      if (contentBytes <= 64) writeUtf8(buf, pos, content as string)
      else buf.write(content as string, pos, 'utf8')
    } else if (kind === KIND_MSGPACK) {
      try {
        buf = encodeFast(slab, start, pos, content) // a larger buffer of its own if it outgrew the slab
        start = encodedStart
        end = encodedEnd
      } catch (err) {
        if (err !== GIVE_UP) throw badContent(err)
        const packed = this.#packWithMsgpackr(content)
        // msgpackr's output lives in its own shared buffer: copy it into ours.
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
    // Give the slab back: used up to this frame's end if the frame is in it;
    // unchanged if the frame outgrew it into a buffer of its own.
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
    if (!(bytes instanceof Uint8Array)) throw new DecodeError(`expected a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`)
    try {
      return this.#decode(asBuffer(bytes))
    } catch (err) {
      // Belt and braces: every failure path above already throws a typed
      // error; anything else (a bug, a stack overflow) still surfaces typed.
      if (err instanceof EdgeFabricError) throw err
      throw new DecodeError(`malformed envelope: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    }
  }

  #decode (buf: Buffer): Envelope {
    const len = buf.length
    if (len === 0) throw new DecodeError('empty envelope')
    const version = buf[0] as number
    if (version !== WIRE_VERSION) {
      throw new DecodeError(`unsupported envelope wire format version ${version} (this peer reads version ${WIRE_VERSION})`)
    }
    if (len < FIXED_BYTES) throw new DecodeError(`truncated envelope: ${len} bytes, the fixed header alone is ${FIXED_BYTES}`)
    const flags = buf[1] as number
    const meta = buf[2] as number
    const op = buf[3] as number
    if ((flags & F_RESERVED) !== 0 || (meta & M_RESERVED) !== 0) throw new DecodeError('reserved flag bits set')
    if ((flags & (F_SYNC | F_SYNC_TRUE)) === F_SYNC_TRUE) throw new DecodeError('sync value without sync flag')
    if ((flags & F_PRIORITY) === 0 && (meta & M_PRIORITY) !== 0) throw new DecodeError('priority bits without priority flag')
    if ((flags & F_PARENT) === 0 && (meta & M_PARENT_UUID) !== 0) throw new DecodeError('parentId UUID bit without parentId flag')
    if (op >= OPERATIONS.length && op !== OP_CUSTOM) throw new DecodeError(`unknown operation code ${op}`)

    const timestamp = readFloat64(buf, 4)
    if (!Number.isFinite(timestamp)) throw new InvalidEnvelopeError('header.timestamp', 'must be a finite number')
    cur = FIXED_BYTES
    let ttl: number | undefined
    if ((flags & F_TTL) !== 0) {
      need(buf, 8, 'ttl')
      ttl = readFloat64(buf, cur)
      cur += 8
      if (!Number.isFinite(ttl)) throw new InvalidEnvelopeError('header.ttl', 'must be a finite number')
    }
    let id: string
    if ((meta & M_ID_UUID) !== 0) { need(buf, 16, 'id'); id = readUuid(buf, cur); cur += 16 } else id = getStr(buf, 'header.id')
    if (id.length === 0) throw new InvalidEnvelopeError('header.id', 'must be a non-empty string')
    const header: MessageHeader = { id, timestamp }
    if ((flags & F_PARENT) !== 0) {
      let parentId: string
      if ((meta & M_PARENT_UUID) !== 0) { need(buf, 16, 'parentId'); parentId = readUuid(buf, cur); cur += 16 } else parentId = getStr(buf, 'header.parentId')
      if (parentId.length === 0) throw new InvalidEnvelopeError('header.parentId', 'must be a non-empty string')
      header.parentId = parentId
    }
    if ((flags & F_RV) !== 0) header.resourceVersion = getStr(buf, 'header.resourceVersion')
    if ((flags & F_SYNC) !== 0) header.sync = (flags & F_SYNC_TRUE) !== 0
    if (ttl !== undefined) header.ttl = ttl
    if ((flags & F_PRIORITY) !== 0) header.priority = PRIORITIES[meta & M_PRIORITY]
    const source = getStr(buf, 'router.source', true)
    const destination = (flags & F_DEST) !== 0 ? getStr(buf, 'router.destination', true) : undefined
    const group = getStr(buf, 'router.group', true)
    const operation = op === OP_CUSTOM ? getStr(buf, 'router.operation', true) : OPERATIONS[op] as string
    const resource = getStr(buf, 'router.resource', true)
    const router: MessageRouter = { source, group, operation, resource }
    if (destination !== undefined) router.destination = destination

    const kind = (meta >> 2) & 3
    let content: unknown
    if (kind === KIND_UNDEFINED) {
      if (cur !== len) throw new DecodeError(`${len - cur} trailing bytes after an envelope without content`)
    } else if (kind === KIND_MSGPACK) {
      const start = cur
      if (start === len) throw new DecodeError('truncated envelope: msgpack content missing')
      if (len - start > this.#maxContentBytes) throw contentTooLarge(len - start, this.#maxContentBytes)
      try {
        content = decodeFast(buf, start, len)
      } catch (err) {
        if (err !== GIVE_UP) throw err
        // Outside the fast subset (or malformed): msgpackr has the last word.
        try {
          content = this.#unpackr.unpack(buf, { start, end: len })
        } catch (err) {
          throw new DecodeError(`content: invalid msgpack: ${(err as Error)?.message ?? String(err)}`, { cause: err })
        }
      }
    } else {
      const n = getLength(buf, 'content')
      if (n > this.#maxContentBytes) throw contentTooLarge(n, this.#maxContentBytes)
      const start = cur
      if (start + n !== len) throw new DecodeError(`${len - start - n} trailing bytes after the content`)
      if (kind === KIND_BYTES) {
        content = copyBytes(buf, start, len)
      } else {
        content = readUtf8(buf, start, len)
        if (content === undefined) throw new DecodeError('content: invalid UTF-8')
      }
    }
    return { header, router, content }
  }
}

/** A codec with its own options and reusable buffers. */
export function createCodec (options?: CodecOptions): EnvelopeCodec {
  return new BinaryEnvelopeCodec(options)
}

export const defaultCodec: EnvelopeCodec = createCodec()
