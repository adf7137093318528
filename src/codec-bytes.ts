/**
 * Byte-level helpers for the envelope wire format (src/codec.ts): UTF-8
 * strings with a varint length prefix, big-endian float64, and canonical
 * UUIDs as 16 raw bytes. Kept allocation-free on the hot path: short strings
 * are converted in JS because crossing into C++ (TextEncoder/TextDecoder,
 * Buffer#write/toString) costs more than the conversion itself for the 4-40
 * character router strings every envelope carries.
 */
import { DecodeError } from './errors.js'

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

/** Bytes a varint of `value` takes. */
export function varintSize (value: number): number {
  let n = 1
  while (value >= 0x80) { value = Math.floor(value / 128); n++ }
  return n
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

// fatal: corrupt bytes are a DecodeError, not silently U+FFFD.
// ignoreBOM: a string that starts with U+FEFF must keep it (the default strips it).
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const fromCharCode = String.fromCharCode

/** Decode UTF-8 bytes [start, end) strictly. Throws DecodeError naming `what` on invalid UTF-8. */
export function readUtf8 (buf: Uint8Array, start: number, end: number, what: string): string {
  const len = end - start
  if (len <= 24) {
    // ASCII fast path: one-byte chars straight from the bytes, no native call.
    let i = start
    while (i < end && (buf[i] as number) < 0x80) i++
    if (i === end) {
      switch (len) {
        case 0: return ''
        case 1: return fromCharCode(buf[start] as number)
        case 2: return fromCharCode(buf[start] as number, buf[start + 1] as number)
        case 3: return fromCharCode(buf[start] as number, buf[start + 1] as number, buf[start + 2] as number)
        case 4: return fromCharCode(buf[start] as number, buf[start + 1] as number, buf[start + 2] as number, buf[start + 3] as number)
        default: return fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[])
      }
    }
  }
  try {
    return utf8Decoder.decode(buf.subarray(start, end))
  } catch (err) {
    throw new DecodeError(`${what}: invalid UTF-8`, { cause: err })
  }
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

const uuidChars: number[] = new Array<number>(36).fill(0x2d)

/** Caller guarantees pos + 16 <= buf.length. */
export function readUuid (buf: Uint8Array, pos: number): string {
  let i = 0
  for (let b = 0; b < 16; b++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) i++
    const v = buf[pos + b] as number
    uuidChars[i++] = HEX_CHAR[v >> 4] as number
    uuidChars[i++] = HEX_CHAR[v & 15] as number
  }
  return fromCharCode.apply(null, uuidChars)
}
