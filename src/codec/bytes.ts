/**
 * Byte-level helpers for the envelope wire format (src/codec/codec.ts): UTF-8,
 * varints, big-endian float64, canonical UUIDs as 16 raw bytes, a decoded
 * string cache. Kept allocation-free on the hot path: short strings
 * are converted in JS because crossing into C++ (TextEncoder/TextDecoder,
 * Buffer#write/toString) costs more than the conversion itself for the 4-40
 * character router strings every envelope carries.
 */

/**
 * Thrown by the fast msgpack encoder/decoder (never escapes the codec) for a
 * value or input outside what they handle; the codec then asks msgpackr.
 */
export const GIVE_UP: unknown = Object.freeze({ giveUp: true })

// ---- float64, big-endian (network order, like the frame length prefix) ------

const f64 = new Float64Array(1)
const f64Bytes = new Uint8Array(f64.buffer)
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

export function writeFloat64 (buf: Uint8Array, pos: number, value: number): void {
  f64[0] = value
  if (hostIsLittleEndian) {
    for (let i = 0; i < 8; i++) buf[pos + i] = f64Bytes[7 - i] as number
  } else {
    for (let i = 0; i < 8; i++) buf[pos + i] = f64Bytes[i] as number
  }
}

/** Caller guarantees pos + 8 <= buf.length. */
export function readFloat64 (buf: Uint8Array, pos: number): number {
  if (hostIsLittleEndian) {
    for (let i = 0; i < 8; i++) f64Bytes[7 - i] = buf[pos + i] as number
  } else {
    for (let i = 0; i < 8; i++) f64Bytes[i] = buf[pos + i] as number
  }
  return f64[0] as number
}

// ---- unsigned LEB128 varint -------------------------------------------------

export function writeVarint (buf: Uint8Array, pos: number, value: number): number {
  while (value >= 0x80) {
    buf[pos++] = (value & 0x7f) | 0x80
    value = Math.floor(value / 128)
  }
  buf[pos++] = value
  return pos
}

// ---- UTF-8 ------------------------------------------------------------------

/**
 * Encode `s` as UTF-8 at `pos`, returning the new position. `buf` must have
 * room for 3 * s.length bytes. Lone surrogates become U+FFFD (EF BF BD),
 * exactly as TextEncoder and Buffer#write do, so short and long strings (the
 * latter written natively) behave the same.
 */
export function writeUtf8 (buf: Uint8Array, pos: number, s: string): number {
  const n = s.length
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i)
    if (c < 0x80) {
      buf[pos++] = c
    } else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6)
      buf[pos++] = 0x80 | (c & 0x3f)
    } else {
      if ((c & 0xfc00) === 0xd800) {
        const c2 = i + 1 < n ? s.charCodeAt(i + 1) : 0
        if ((c2 & 0xfc00) === 0xdc00) {
          i++
          const cp = 0x10000 + ((c & 0x3ff) << 10) + (c2 & 0x3ff)
          buf[pos++] = 0xf0 | (cp >> 18)
          buf[pos++] = 0x80 | ((cp >> 12) & 0x3f)
          buf[pos++] = 0x80 | ((cp >> 6) & 0x3f)
          buf[pos++] = 0x80 | (cp & 0x3f)
          continue
        }
        c = 0xfffd
      } else if ((c & 0xfc00) === 0xdc00) {
        c = 0xfffd
      }
      buf[pos++] = 0xe0 | (c >> 12)
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f)
      buf[pos++] = 0x80 | (c & 0x3f)
    }
  }
  return pos
}

// fatal: corrupt bytes are reported, not silently turned into U+FFFD.
// ignoreBOM: a string that starts with U+FEFF must keep it (the default strips it).
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const fromCharCode = String.fromCharCode

/** Buffer#latin1Slice: undocumented but present since early Node; msgpackr relies on it too. */
interface NodeBufferInternals { latin1Slice (start: number, end: number): string }

/** ASCII bytes [i, i + len), len 1..12: explicit arity avoids apply() and a native call. */
function shortAscii (b: Uint8Array, i: number, len: number): string {
  switch (len) {
    case 1: return fromCharCode(b[i] as number)
    case 2: return fromCharCode(b[i] as number, b[i + 1] as number)
    case 3: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number)
    case 4: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number, b[i + 3] as number)
    case 5: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number, b[i + 3] as number, b[i + 4] as number)
    case 6: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number, b[i + 3] as number, b[i + 4] as number, b[i + 5] as number)
    case 7: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number, b[i + 3] as number, b[i + 4] as number, b[i + 5] as number, b[i + 6] as number)
    case 8: return fromCharCode(b[i] as number, b[i + 1] as number, b[i + 2] as number, b[i + 3] as number, b[i + 4] as number, b[i + 5] as number, b[i + 6] as number, b[i + 7] as number)
    default: return shortAscii(b, i, 8) + shortAscii(b, i + 8, len - 8) // 9..12: short enough to come out flat
  }
}

/**
 * Decode UTF-8 bytes [start, end) of a Buffer strictly; undefined if they are
 * not valid UTF-8 (the caller reports that its own way).
 */
export function readUtf8 (buf: Buffer, start: number, end: number): string | undefined {
  const len = end - start
  if (len === 0) return ''
  if (len <= 64) {
    let i = start
    while (i < end && (buf[i] as number) < 0x80) i++
    if (i === end) return len <= 12 ? shortAscii(buf, start, len) : (buf as unknown as NodeBufferInternals).latin1Slice(start, end)
  }
  try {
    return utf8Decoder.decode(buf.subarray(start, end))
  } catch {
    return undefined
  }
}

/**
 * Decoded strings cached by their bytes. Router strings (source, group,
 * resource) repeat from message to message on a connection; a hit returns the
 * previous string after a byte compare, without a native call or allocation.
 * Fixed memory (slots x maxLen bytes); a hostile peer can only cause misses.
 */
export class StringCache {
  readonly lens: Uint8Array
  readonly bytes: Uint8Array
  readonly strs: string[]
  readonly maxLen: number
  readonly mask: number

  constructor (slots: number, maxLen: number) {
    this.lens = new Uint8Array(slots) // 0 = empty
    this.bytes = new Uint8Array(slots * maxLen)
    this.strs = new Array<string>(slots).fill('')
    this.maxLen = maxLen
    this.mask = slots - 1
  }

  /** readUtf8 of [start, end), through the cache. */
  get (buf: Buffer, start: number, end: number): string | undefined {
    const len = end - start
    if (len === 0 || len > this.maxLen) return readUtf8(buf, start, end)
    const slot = ((len << 6) ^ ((buf[start] as number) << 3) ^ ((buf[start + (len >> 1)] as number) << 1) ^ (buf[end - 1] as number)) & this.mask
    const at = slot * this.maxLen
    const bytes = this.bytes
    if (this.lens[slot] === len) {
      let i = 0
      while (i < len && bytes[at + i] === buf[start + i]) i++
      if (i === len) return this.strs[slot]
    }
    const s = readUtf8(buf, start, end)
    if (s !== undefined) {
      this.lens[slot] = len
      this.strs[slot] = s
      for (let i = 0; i < len; i++) bytes[at + i] = buf[start + i] as number
    }
    return s
  }
}

/**
 * A Buffer holding a copy of [start, end): the caller may reuse `buf`. Small
 * copies come from Node's shared pool (like Buffers from fs or net), because
 * a fresh ArrayBuffer per copy costs more than the rest of a decode.
 */
export function copyBytes (buf: Uint8Array, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start)
  out.set(buf.subarray(start, end))
  return out
}

// Pool for copyToUint8Array: plain Uint8Array copies carved from one
// ArrayBuffer, as Node's Buffer pool does for Buffers.
const U8_POOL_BYTES = 64 * 1024
let u8Pool = new ArrayBuffer(0)
let u8Used = 0

/**
 * A plain Uint8Array (not a Buffer) holding a copy of [start, end). Copies up
 * to 4 KiB share a pooled ArrayBuffer (8-byte aligned, never written twice),
 * like Buffer.allocUnsafe's: an ArrayBuffer of its own per copy cost more than
 * the rest of decoding a drained record (issue 16; a reliable data message
 * carries its records as Uint8Arrays). Like a pooled Buffer, `.buffer` is
 * shared: use byteOffset/byteLength, never the whole ArrayBuffer.
 */
export function copyToUint8Array (buf: Uint8Array, start: number, end: number): Uint8Array {
  const n = end - start
  if (n > 4096) {
    const own = new Uint8Array(n)
    own.set(buf.subarray(start, end))
    return own
  }
  if (u8Used + n > u8Pool.byteLength) {
    u8Pool = new ArrayBuffer(U8_POOL_BYTES)
    u8Used = 0
  }
  const out = new Uint8Array(u8Pool, u8Used, n)
  out.set(buf.subarray(start, end))
  u8Used = (u8Used + n + 7) & ~7
  return out
}

// ---- canonical UUID <-> 16 bytes --------------------------------------------

const HEX_VALUE = new Int8Array(128).fill(-1)
for (let i = 0; i < 10; i++) HEX_VALUE[0x30 + i] = i
for (let i = 0; i < 6; i++) HEX_VALUE[0x61 + i] = 10 + i // lowercase only: uppercase would not round-trip
const HEX_CHAR = new Uint8Array(16)
for (let i = 0; i < 16; i++) HEX_CHAR[i] = '0123456789abcdef'.charCodeAt(i)

/**
 * If `s` is a canonical lowercase UUID (8-4-4-4-12 hex, as crypto.randomUUID()
 * makes), write its 16 bytes at `pos` and return true. Anything else
 * (uppercase, braces, other ids) returns false and is sent as a string, so
 * every id round-trips exactly.
 */
export function writeUuid (buf: Uint8Array, pos: number, s: string): boolean {
  if (s.length !== 36 || s.charCodeAt(8) !== 0x2d || s.charCodeAt(13) !== 0x2d ||
      s.charCodeAt(18) !== 0x2d || s.charCodeAt(23) !== 0x2d) return false
  let i = 0
  for (let b = 0; b < 16; b++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) i++
    const hi = s.charCodeAt(i)
    const lo = s.charCodeAt(i + 1)
    const h = hi < 128 ? HEX_VALUE[hi] as number : -1
    const l = lo < 128 ? HEX_VALUE[lo] as number : -1
    if (h < 0 || l < 0) return false
    buf[pos + b] = (h << 4) | l
    i += 2
  }
  return true
}

// Char codes of the high / low hex digit of each byte value.
const HI = new Uint8Array(256)
const LO = new Uint8Array(256)
for (let v = 0; v < 256; v++) { HI[v] = HEX_CHAR[v >> 4] as number; LO[v] = HEX_CHAR[v & 15] as number }
function hi (b: Uint8Array, i: number): number { return HI[b[i] as number] as number }
function lo (b: Uint8Array, i: number): number { return LO[b[i] as number] as number }

/** Caller guarantees p + 16 <= b.length. One fromCharCode call: a flat string, no temporary array. */
export function readUuid (b: Uint8Array, p: number): string {
  return fromCharCode(
    hi(b, p), lo(b, p), hi(b, p + 1), lo(b, p + 1), hi(b, p + 2), lo(b, p + 2), hi(b, p + 3), lo(b, p + 3), 0x2d,
    hi(b, p + 4), lo(b, p + 4), hi(b, p + 5), lo(b, p + 5), 0x2d,
    hi(b, p + 6), lo(b, p + 6), hi(b, p + 7), lo(b, p + 7), 0x2d,
    hi(b, p + 8), lo(b, p + 8), hi(b, p + 9), lo(b, p + 9), 0x2d,
    hi(b, p + 10), lo(b, p + 10), hi(b, p + 11), lo(b, p + 11), hi(b, p + 12), lo(b, p + 12),
    hi(b, p + 13), lo(b, p + 13), hi(b, p + 14), lo(b, p + 14), hi(b, p + 15), lo(b, p + 15))
}
