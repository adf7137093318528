/**
 * The fixed binary envelope header of the wire format (layout in
 * src/codec/codec.ts): everything but the content. Kept apart from the codec so
 * the layout, its flags and its strict checks sit together.
 */
import { OPERATIONS, PRIORITIES, type Envelope, type MessageHeader, type MessageRouter } from './envelope.js'
import { DecodeError, InvalidEnvelopeError } from '../errors.js'
import { StringCache, readFloat64, readUtf8, readUuid, writeFloat64, writeUtf8, writeUuid, writeVarint } from './bytes.js'
import type { CheckedFields } from './check.js'
import { MAX_STRINGS, MAX_STRING_BYTES, type StringEncoder } from './strings.js'

/** The wire format version of stateless frames: what encode() writes and decode() reads. */
export const WIRE_VERSION = 1
/**
 * Version byte of a stream frame (src/codec/stream.ts): the version 1 layout,
 * except that router strings (source, destination, group, custom operation,
 * resource) are in the stream's string form (src/codec/strings.ts), and that
 * meta bit 0x40 (reserved in version 1) says the msgpack content is stream
 * content (src/codec/shapes.ts). Only that stream's decoder can read it; a
 * stream decoder also reads version 1.
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
/** Stream frames only: the content is shape-coded stream content. */
export const M_STREAM_CONTENT = 0x40
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

/** A router string of a stream frame (src/codec/strings.ts). Room as for putStr(). */
function putDictStr (buf: Buffer, pos: number, s: string, dict: StringEncoder): number {
  const id = dict.ids.get(s)
  if (id !== undefined) return writeVarint(buf, pos, id * 2 + 1)
  const n = s.length
  const bytes = n < 64 ? utf8Length(s) : Buffer.byteLength(s, 'utf8')
  pos = writeVarint(buf, pos, bytes * 4 + (dict.remember(s, bytes) ? 2 : 0))
  return n < 64 ? writeUtf8(buf, pos, s) : pos + buf.write(s, pos, 'utf8')
}

/** UTF-8 byte length, as writeUtf8() writes it (lone surrogates: 3 bytes for U+FFFD). */
function utf8Length (s: string): number {
  const n = s.length
  let len = n
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) len += 1
    else if ((c & 0xfc00) === 0xd800 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { len += 2; i++ } else len += 2
  }
  return len
}

/**
 * Write the header at `start` (room: headerBound(f)); returns the position
 * after it, where the content goes. Bytes and string content are preceded by
 * their length (`contentBytes`). With `dict`, a stream frame's header.
 */
export function writeHeader (buf: Buffer, start: number, f: CheckedFields, kind: number, contentBytes: number, dict: StringEncoder | null = null): number {
  let flags = 0
  let meta = kind << M_KIND_SHIFT
  const opIndex = OP_INDEX.get(f.operation)
  buf[start] = dict === null ? WIRE_VERSION : STREAM_WIRE_VERSION
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
  if (dict === null) {
    pos = putStr(buf, pos, f.source)
    if (f.destination !== undefined) { flags |= F_DEST; pos = putStr(buf, pos, f.destination) }
    pos = putStr(buf, pos, f.group)
    if (opIndex === undefined) pos = putStr(buf, pos, f.operation)
    pos = putStr(buf, pos, f.resource)
  } else {
    pos = putDictStr(buf, pos, f.source, dict)
    if (f.destination !== undefined) { flags |= F_DEST; pos = putDictStr(buf, pos, f.destination, dict) }
    pos = putDictStr(buf, pos, f.group, dict)
    if (opIndex === undefined) pos = putDictStr(buf, pos, f.operation, dict)
    pos = putDictStr(buf, pos, f.resource, dict)
  }
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

/** A router string of a stream frame (src/codec/strings.ts), `strings` being the stream's. */
function getDictStr (buf: Buffer, what: string, strings: string[]): string {
  let x = 0
  let mul = 1
  for (let i = 0; ; i++) {
    if (cursor >= buf.length) throw new DecodeError(`truncated envelope: ${what} at offset ${cursor}`)
    const b = buf[cursor++] as number
    x += (b & 0x7f) * mul
    if (b < 0x80) break
    if (i === 4) throw new DecodeError(`${what}: varint too long`)
    mul *= 128
  }
  if (x % 2 === 1) {
    const s = strings[(x - 1) / 2]
    if (s === undefined) throw new DecodeError(`${what}: unknown string id ${(x - 1) / 2} (${strings.length} defined on this stream)`)
    return s
  }
  const remember = x % 4 === 2
  const len = (x - (remember ? 2 : 0)) / 4
  if (len > buf.length - cursor) throw new DecodeError(`truncated envelope: ${what} declares ${len} bytes, only ${buf.length - cursor} left`)
  const start = cursor
  cursor += len
  const s = routerStrings.get(buf, start, cursor)
  if (s === undefined) throw new DecodeError(`${what}: invalid UTF-8`)
  if (remember) {
    if (strings.length >= MAX_STRINGS) throw new DecodeError(`more than ${MAX_STRINGS} strings defined on one stream`)
    if (len > MAX_STRING_BYTES) throw new DecodeError(`${what}: a ${len}-byte string defined (at most ${MAX_STRING_BYTES})`)
    strings.push(s)
  }
  return s
}

/**
 * Parse and check the header of the frame `buf`. Returns the envelope with
 * `content` still undefined and its content kind in `kind`; `cursor` is then
 * the content's first byte (for bytes/string content: its length varint).
 */
export function readHeader (buf: Buffer, strings: string[] | null): Envelope {
  const stream = strings !== null
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
  if ((flags & F_RESERVED) !== 0 || (meta & (version === WIRE_VERSION ? M_RESERVED : M_RESERVED & ~M_STREAM_CONTENT)) !== 0) throw new DecodeError('reserved flag bits set')
  if ((flags & (F_SYNC | F_SYNC_TRUE)) === F_SYNC_TRUE) throw new DecodeError('sync value without sync flag')
  if ((flags & F_PRIORITY) === 0 && (meta & M_PRIORITY) !== 0) throw new DecodeError('priority bits without priority flag')
  if ((flags & F_PARENT) === 0 && (meta & M_PARENT_UUID) !== 0) throw new DecodeError('parentId UUID bit without parentId flag')
  if (op >= OPERATIONS.length && op !== OP_CUSTOM) throw new DecodeError(`unknown operation code ${op}`)
  kind = (meta >> M_KIND_SHIFT) & 3
  streamContent = (meta & M_STREAM_CONTENT) !== 0
  if (streamContent && kind !== KIND_MSGPACK) throw new DecodeError('stream content flag without msgpack content')

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
  let source: string, destination: string | undefined, group: string, operation: string, resource: string
  if (version === WIRE_VERSION) {
    source = getStr(buf, 'router.source', true)
    destination = (flags & F_DEST) !== 0 ? getStr(buf, 'router.destination', true) : undefined
    group = getStr(buf, 'router.group', true)
    operation = op === OP_CUSTOM ? getStr(buf, 'router.operation', true) : OPERATIONS[op] as string
    resource = getStr(buf, 'router.resource', true)
  } else {
    const dict = strings as string[]
    source = getDictStr(buf, 'router.source', dict)
    destination = (flags & F_DEST) !== 0 ? getDictStr(buf, 'router.destination', dict) : undefined
    group = getDictStr(buf, 'router.group', dict)
    operation = op === OP_CUSTOM ? getDictStr(buf, 'router.operation', dict) : OPERATIONS[op] as string
    resource = getDictStr(buf, 'router.resource', dict)
  }
  const router: MessageRouter = { source, group, operation, resource }
  if (destination !== undefined) router.destination = destination
  return { header, router, content: undefined }
}

/** Content kind of the frame last passed to readHeader(). */
export let kind = KIND_UNDEFINED
/** Whether that frame's content is stream content (M_STREAM_CONTENT). */
export let streamContent = false
