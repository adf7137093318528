/**
 * The fixed binary envelope header of the wire format (layout in
 * src/codec.ts): everything but the content. Kept apart from the codec so
 * the layout, its flags and its strict checks sit together.
 */
import { OPERATIONS, PRIORITIES, type Envelope, type MessageHeader, type MessageRouter } from './envelope.js'
import { DecodeError, InvalidEnvelopeError } from './errors.js'
import { StringCache, readFloat64, readUtf8, readUuid, writeFloat64, writeUtf8, writeUuid, writeVarint } from './codec-bytes.js'
import type { CheckedFields } from './codec-check.js'

/** The wire format version of stateless frames: what encode() writes and decode() reads. */
export const WIRE_VERSION = 1
/**
 * Version byte of a stream frame (src/codec-stream.ts): the same layout, but
 * its msgpack content may use the stream's shape dictionary, so only that
 * stream's decoder can read it. A stream decoder also reads version 1.
 */
export const STREAM_WIRE_VERSION = 2

// byte 1: flags
const F_PARENT = 0x01
const F_RV = 0x02
const F_SYNC = 0x04
const F_SYNC_TRUE = 0x08
const F_TTL = 0x10
const F_PRIORITY = 0x20
const F_DEST = 0x40
const F_RESERVED = 0x80
// byte 2: meta
const M_PRIORITY = 0x03
const M_KIND_SHIFT = 2
const M_ID_UUID = 0x10
const M_PARENT_UUID = 0x20
const M_RESERVED = 0xc0
// byte 3: operation
const OP_CUSTOM = 0xff
const FIXED_BYTES = 12

export const KIND_UNDEFINED = 0
export const KIND_MSGPACK = 1
export const KIND_BYTES = 2
export const KIND_STRING = 3

const OP_INDEX = new Map<string, number>(OPERATIONS.map((op, i) => [op, i]))

/** Upper bound of the header's size for these fields (plus a content length varint). */
export function headerBound (f: CheckedFields): number {
  return 72 + 3 * f.stringChars
}

/** Write a str (varint length + UTF-8). `buf` has room for 5 + 3 * s.length bytes. */
function putStr (buf: Buffer, pos: number, s: string): number {
  const n = s.length
  if (n < 43) { // ≤ 126 UTF-8 bytes: the length fits one varint byte, filled in afterwards
    const end = writeUtf8(buf, pos + 1, s)
    buf[pos] = end - pos - 1
    return end
  }
  pos = writeVarint(buf, pos, Buffer.byteLength(s, 'utf8'))
  return pos + buf.write(s, pos, 'utf8')
}

/**
 * Write the header at `start` (room: headerBound(f)); returns the position
 * after it, where the content goes. Bytes and string content are preceded by
 * their length (`contentBytes`).
 */
export function writeHeader (buf: Buffer, start: number, f: CheckedFields, kind: number, contentBytes: number): number {
  let flags = 0
  let meta = kind << M_KIND_SHIFT
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
  return pos
}

// ---- decoding -----------------------------------------------------------------
// Cursor of the frame being decoded. Decoding is synchronous and runs no user
// code, so one module-level cursor is safe and saves returning pairs.

/** Position after the last field read; after readHeader(), where the content starts. */
export let cursor = 0

// Router strings repeat from message to message; decode them through a cache.
const routerStrings = new StringCache(256, 64)

function need (buf: Buffer, n: number, what: string): void {
  if (cursor + n > buf.length) throw new DecodeError(`truncated envelope: ${what} needs ${n} bytes at offset ${cursor}, only ${buf.length - cursor} left`)
}

/** A varint length at the cursor, checked against the bytes left. */
export function readLength (buf: Buffer, what: string): number {
  let len = 0
  let shift = 1
  for (let i = 0; ; i++) {
    if (cursor >= buf.length) throw new DecodeError(`truncated envelope: ${what} length at offset ${cursor}`)
    const b = buf[cursor++] as number
    len += (b & 0x7f) * shift
    if (b < 0x80) break
    if (i === 4) throw new DecodeError(`${what}: length varint too long`) // > 2^35: no frame is that big
    shift *= 128
  }
  if (len > buf.length - cursor) throw new DecodeError(`truncated envelope: ${what} declares ${len} bytes, only ${buf.length - cursor} left`)
  return len
}

function getStr (buf: Buffer, what: string, cached: boolean): string {
  const len = readLength(buf, what)
  const start = cursor
  cursor += len
  const s = cached ? routerStrings.get(buf, start, cursor) : readUtf8(buf, start, cursor)
  if (s === undefined) throw new DecodeError(`${what}: invalid UTF-8`)
  return s
}

/**
 * Parse and check the header of the frame `buf`. Returns the envelope with
 * `content` still undefined and its content kind in `kind`; `cursor` is then
 * the content's first byte (for bytes/string content: its length varint).
 */
export function readHeader (buf: Buffer, stream: boolean): Envelope {
  const len = buf.length
  if (len === 0) throw new DecodeError('empty envelope')
  const version = buf[0] as number
  if (version !== WIRE_VERSION && !(stream && version === STREAM_WIRE_VERSION)) {
    throw new DecodeError(version === STREAM_WIRE_VERSION
      ? `a stream frame (wire format version ${version}) can only be decoded by its stream's decoder`
      : `unsupported envelope wire format version ${version} (this peer reads version ${WIRE_VERSION})`)
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
  kind = (meta >> M_KIND_SHIFT) & 3
  if (version === STREAM_WIRE_VERSION && kind !== KIND_MSGPACK) throw new DecodeError('stream frame without msgpack content')

  const timestamp = readFloat64(buf, 4)
  if (!Number.isFinite(timestamp)) throw new InvalidEnvelopeError('header.timestamp', 'must be a finite number')
  cursor = FIXED_BYTES
  let ttl: number | undefined
  if ((flags & F_TTL) !== 0) {
    need(buf, 8, 'ttl')
    ttl = readFloat64(buf, cursor)
    cursor += 8
    if (!Number.isFinite(ttl)) throw new InvalidEnvelopeError('header.ttl', 'must be a finite number')
  }
  let id: string
  if ((meta & M_ID_UUID) !== 0) { need(buf, 16, 'id'); id = readUuid(buf, cursor); cursor += 16 } else id = getStr(buf, 'header.id', false)
  if (id.length === 0) throw new InvalidEnvelopeError('header.id', 'must be a non-empty string')
  // Same property order as newMessage(), so decoded envelopes share its shapes.
  const header: MessageHeader = { id, timestamp }
  if ((flags & F_PARENT) !== 0) {
    let parentId: string
    if ((meta & M_PARENT_UUID) !== 0) { need(buf, 16, 'parentId'); parentId = readUuid(buf, cursor); cursor += 16 } else parentId = getStr(buf, 'header.parentId', false)
    if (parentId.length === 0) throw new InvalidEnvelopeError('header.parentId', 'must be a non-empty string')
    header.parentId = parentId
  }
  if ((flags & F_RV) !== 0) header.resourceVersion = getStr(buf, 'header.resourceVersion', false)
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
  return { header, router, content: undefined }
}

/** Content kind of the frame last passed to readHeader(). */
export let kind = KIND_UNDEFINED
