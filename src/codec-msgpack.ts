/**
 * A fast path for msgpack content (src/codec.ts): encodes and decodes the
 * JSON-like subset (plain objects with string keys, arrays, strings, numbers,
 * booleans, null, undefined, Uint8Array/Buffer) as standard msgpack, bytes and
 * values identical in meaning to msgpackr with the codec's options. Anything
 * else (Date, bigint, Map, class instances, extension types, float32, int64,
 * non-string map keys, deep nesting, anything malformed) makes it give up
 * (throws GIVE_UP) and the caller hands the whole content to msgpackr, which
 * stays the single authority on everything beyond this subset.
 *
 * Why: msgpackr's general paths (shared module state, bundled strings,
 * records, native string extraction) cost ~3 µs per round trip for a 300-byte
 * twin update, which alone used most of the time budget of a whole envelope.
 * Writing straight into the codec's scratch buffer also saves a copy.
 */

import { copyBytes, readUtf8 } from './codec-bytes.js'

/** Thrown (never escapes the codec) when a value is outside the fast subset. */
export const GIVE_UP: unknown = Object.freeze({ giveUp: true })

const hasOwn = Object.prototype.hasOwnProperty
const MAX_DEPTH = 64 // deeper content goes to msgpackr (which handles it, or fails typed)

// ---- encoder ----------------------------------------------------------------
// Module-level state, saved/restored around each call: a getter in the content
// may re-enter the codec, so a nested encode must not clobber an outer one.

let target: Buffer = Buffer.alloc(0)
let tpos = 0
let base = 0 // where the current frame starts in `target`; only [base, tpos) moves on growth
let depth = 0
const f64 = new Float64Array(1)
const f64Bytes = new Uint8Array(f64.buffer)
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Move the frame being written ([base, tpos)) into a new, larger buffer of its own. */
function grow (n: number): void {
  const used = tpos - base
  const next = Buffer.allocUnsafeSlow(Math.max(used * 2, used + n + 4096))
  target.copy(next, 0, base, tpos)
  target = next
  base = 0
  tpos = used
}

function writeFloat64 (v: number): void {
  f64[0] = v
  target[tpos] = 0xcb
  if (littleEndian) for (let i = 0; i < 8; i++) target[tpos + 1 + i] = f64Bytes[7 - i] as number
  else for (let i = 0; i < 8; i++) target[tpos + 1 + i] = f64Bytes[i] as number
  tpos += 9
}

function writeNumber (v: number): void {
  if (tpos + 9 > target.length) grow(9)
  if (v >>> 0 === v) { // also -0, which msgpackr writes as 0 too
    if (v < 0x80) target[tpos++] = v
    else if (v < 0x100) { target[tpos++] = 0xcc; target[tpos++] = v } else if (v < 0x10000) {
      target[tpos++] = 0xcd; target[tpos++] = v >> 8; target[tpos++] = v & 0xff
    } else {
      target[tpos++] = 0xce; target[tpos++] = v >>> 24; target[tpos++] = (v >> 16) & 0xff
      target[tpos++] = (v >> 8) & 0xff; target[tpos++] = v & 0xff
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) target[tpos++] = 0x100 + v
    else if (v >= -0x80) { target[tpos++] = 0xd0; target[tpos++] = v + 0x100 } else if (v >= -0x8000) {
      target[tpos++] = 0xd1; target[tpos++] = (v >> 8) & 0xff; target[tpos++] = v & 0xff
    } else {
      target[tpos++] = 0xd2; target[tpos++] = (v >>> 24) & 0xff; target[tpos++] = (v >> 16) & 0xff
      target[tpos++] = (v >> 8) & 0xff; target[tpos++] = v & 0xff
    }
  } else {
    writeFloat64(v)
  }
}

function writeString (s: string): void {
  const n = s.length
  if (tpos + 5 + 3 * n > target.length) grow(5 + 3 * n)
  // Reserve the header for the likely byte length (ASCII), write the UTF-8,
  // and move the bytes only when the guess was wrong (non-ASCII, long strings).
  const hdr = n < 32 ? 1 : n < 64 ? 2 : 3 * n < 0x100 ? 2 : 3 * n < 0x10000 ? 3 : 5
  const start = tpos + hdr
  let len: number
  if (n < 64) {
    let p = start
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i)
      if (c < 0x80) { target[p++] = c; continue }
      if (c < 0x800) { target[p++] = 0xc0 | (c >> 6); target[p++] = 0x80 | (c & 0x3f); continue }
      if ((c & 0xfc00) === 0xd800) {
        const c2 = i + 1 < n ? s.charCodeAt(i + 1) : 0
        if ((c2 & 0xfc00) === 0xdc00) {
          i++
          const cp = 0x10000 + ((c & 0x3ff) << 10) + (c2 & 0x3ff)
          target[p++] = 0xf0 | (cp >> 18); target[p++] = 0x80 | ((cp >> 12) & 0x3f)
          target[p++] = 0x80 | ((cp >> 6) & 0x3f); target[p++] = 0x80 | (cp & 0x3f)
          continue
        }
        c = 0xfffd // lone surrogate, as TextEncoder / Buffer#write
      } else if ((c & 0xfc00) === 0xdc00) c = 0xfffd
      target[p++] = 0xe0 | (c >> 12); target[p++] = 0x80 | ((c >> 6) & 0x3f); target[p++] = 0x80 | (c & 0x3f)
    }
    len = p - start
  } else {
    len = target.write(s, start, 'utf8')
  }
  const need = len < 0x20 ? 1 : len < 0x100 ? 2 : len < 0x10000 ? 3 : 5
  if (need !== hdr) target.copyWithin(tpos + need, start, start + len) // memmove; room for +1 was reserved
  if (need === 1) target[tpos] = 0xa0 | len
  else if (need === 2) { target[tpos] = 0xd9; target[tpos + 1] = len } else if (need === 3) {
    target[tpos] = 0xda; target[tpos + 1] = len >> 8; target[tpos + 2] = len & 0xff
  } else {
    target[tpos] = 0xdb; target.writeUInt32BE(len, tpos + 1)
  }
  tpos += need + len
}

function writeLength (len: number, fix: number, t16: number): void {
  if (tpos + 5 > target.length) grow(5)
  if (len < 16) target[tpos++] = fix | len
  else if (len < 0x10000) { target[tpos++] = t16; target[tpos++] = len >> 8; target[tpos++] = len & 0xff } else {
    target[tpos++] = t16 + 1; target.writeUInt32BE(len, tpos); tpos += 4
  }
}

function writeValue (v: unknown): void {
  switch (typeof v) {
    case 'string': writeString(v); return
    case 'number': writeNumber(v); return
    case 'boolean':
      if (tpos + 1 > target.length) grow(1)
      target[tpos++] = v ? 0xc3 : 0xc2
      return
    case 'undefined': // fixext 1, type 0: msgpackr's undefined
      if (tpos + 3 > target.length) grow(3)
      target[tpos++] = 0xd4; target[tpos++] = 0; target[tpos++] = 0
      return
    case 'object': {
      if (v === null) {
        if (tpos + 1 > target.length) grow(1)
        target[tpos++] = 0xc0
        return
      }
      if (++depth > MAX_DEPTH) throw GIVE_UP
      const ctor = (v as object).constructor
      if (ctor === Object) {
        // for-in, not Object.keys(): V8 reads o[k] through the enum cache
        // inside for-in, where a keyed load elsewhere is megamorphic and slow.
        // Same own-enumerable keys in the same order as msgpackr's writer.
        const o = v as Record<string, unknown>
        if (tpos + 1 > target.length) grow(1)
        const at = tpos++ - base // fixmap header, patched below (relative: grow() moves the frame)
        let n = 0
        for (const k in o) {
          if (!hasOwn.call(o, k)) continue
          writeString(k)
          writeValue(o[k])
          n++
        }
        const from = base + at
        if (n < 16) target[from] = 0x80 | n
        else {
          // rare: a map16/map32 header needs 2 or 4 more bytes; shift the entries
          const extra = n < 0x10000 ? 2 : 4
          if (tpos + extra > target.length) grow(extra)
          target.copyWithin(from + 1 + extra, from + 1, tpos)
          tpos += extra
          if (extra === 2) { target[from] = 0xde; target[from + 1] = n >> 8; target[from + 2] = n & 0xff } else {
            target[from] = 0xdf; target.writeUInt32BE(n, from + 1)
          }
        }
      } else if (ctor === Array) {
        const a = v as unknown[]
        const n = a.length
        writeLength(n, 0x90, 0xdc)
        for (let i = 0; i < n; i++) writeValue(a[i])
      } else if (ctor === Buffer) { // bin, as msgpackr
        const b = v as Uint8Array
        const n = b.byteLength
        if (tpos + 5 + n > target.length) grow(5 + n)
        if (n < 0x100) { target[tpos++] = 0xc4; target[tpos++] = n } else if (n < 0x10000) {
          target[tpos++] = 0xc5; target[tpos++] = n >> 8; target[tpos++] = n & 0xff
        } else { target[tpos++] = 0xc6; target.writeUInt32BE(n, tpos); tpos += 4 }
        target.set(b, tpos)
        tpos += n
      } else if (ctor === Uint8Array) { // ext 0x74 "typed array", type 1, as msgpackr with moreTypes
        const b = v as Uint8Array
        const n = b.byteLength + 1
        if (tpos + 7 + n > target.length) grow(7 + n)
        if (n < 0x100) { target[tpos++] = 0xc7; target[tpos++] = n } else if (n < 0x10000) {
          target[tpos++] = 0xc8; target[tpos++] = n >> 8; target[tpos++] = n & 0xff
        } else { target[tpos++] = 0xc9; target.writeUInt32BE(n, tpos); tpos += 4 }
        target[tpos++] = 0x74
        target[tpos++] = 1
        target.set(b, tpos)
        tpos += n - 1
      } else {
        throw GIVE_UP
      }
      depth--
      return
    }
    default: throw GIVE_UP // bigint, function, symbol
  }
}

/**
 * Append `value` as msgpack to `buf` at `pos`, where the frame being built
 * started at `frameStart`. Returns the buffer now holding the frame: `buf`, or
 * a new larger one holding just the frame if it outgrew `buf`; the frame is
 * then at [encodedStart, encodedEnd). Throws GIVE_UP for values outside the
 * subset (the partial output is then garbage).
 */
export function encodeFast (buf: Buffer, frameStart: number, pos: number, value: unknown): Buffer {
  const savedTarget = target
  const savedPos = tpos
  const savedBase = base
  const savedDepth = depth
  target = buf
  tpos = pos
  base = frameStart
  depth = 0
  try {
    writeValue(value)
    encodedStart = base
    encodedEnd = tpos
    return target
  } finally {
    target = savedTarget
    tpos = savedPos
    base = savedBase
    depth = savedDepth
  }
}
export let encodedStart = 0
export let encodedEnd = 0

// ---- decoder ----------------------------------------------------------------
// Runs no user code, so plain module state is safe.

const EMPTY = Buffer.alloc(0)
let src: Buffer = EMPTY
let view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
let p = 0
let end = 0
let budget = 0

function readStr (len: number): string {
  const start = p
  if (len > end - start) throw GIVE_UP
  p = start + len
  const s = readUtf8(src, start, p)
  if (s === undefined) throw GIVE_UP // invalid UTF-8: msgpackr decides what that becomes
  return s
}

// Map keys repeat from message to message (same schema), so decoded keys are
// cached by their bytes: a hit returns the very same (internalized) string,
// which skips both creating it and V8's string-table lookup on the store.
const KEY_SLOTS = 1024
const KEY_MAX = 16
const keyStr: string[] = new Array<string>(KEY_SLOTS).fill('')
const keyLen = new Uint8Array(KEY_SLOTS) // 0 = empty slot
const keyBytes = new Uint8Array(KEY_SLOTS * KEY_MAX)

function readKey (len: number): string {
  if (len === 0 || len > KEY_MAX) return readStr(len)
  const start = p
  if (start + len > end) throw GIVE_UP
  // A cheap slot choice (length, first, middle, last byte): the byte compare
  // below is what makes a hit correct, the hash only spreads the keys.
  const slot = ((len << 6) ^ ((src[start] as number) << 3) ^ ((src[start + (len >> 1)] as number) << 1) ^ (src[start + len - 1] as number)) & (KEY_SLOTS - 1)
  const at = slot * KEY_MAX
  if (keyLen[slot] === len) {
    let i = 0
    while (i < len && keyBytes[at + i] === src[start + i]) i++
    if (i === len) { p = start + len; return keyStr[slot] as string }
  }
  const k = readStr(len)
  if (k === '__proto__') throw GIVE_UP // msgpackr's rule applies (never cached, so hits need no check)
  keyLen[slot] = len
  keyStr[slot] = k
  for (let i = 0; i < len; i++) keyBytes[at + i] = src[start + i] as number
  return k
}

function u8 (): number {
  if (p >= end) throw GIVE_UP
  return src[p++] as number
}

function u16 (): number {
  if (p + 2 > end) throw GIVE_UP
  const v = ((src[p] as number) << 8) | (src[p + 1] as number)
  p += 2
  return v
}

function u32 (): number {
  if (p + 4 > end) throw GIVE_UP
  const v = (src[p] as number) * 0x1000000 + (((src[p + 1] as number) << 16) | ((src[p + 2] as number) << 8) | (src[p + 3] as number))
  p += 4
  return v
}

function readObject (n: number): Record<string, unknown> {
  if (++depth > MAX_DEPTH || n > end - p) throw GIVE_UP
  const o: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) {
    const t = u8()
    let k: string
    if (t >= 0xa0 && t < 0xc0) k = readKey(t & 0x1f)
    else if (t === 0xd9) {
      k = readStr(u8())
      if (k === '__proto__') throw GIVE_UP
    }
    else throw GIVE_UP // non-string (or long) keys: msgpackr's rules
    o[k] = readValue()
  }
  depth--
  return o
}

function readArray (n: number): unknown[] {
  // Every element takes at least one byte, so all arrays of one value together
  // can declare at most as many elements as there are bytes: nested headers
  // cannot make us pre-allocate more than the frame justifies.
  if (++depth > MAX_DEPTH || n > end - p || (budget -= n) < 0) throw GIVE_UP
  const a = new Array<unknown>(n)
  for (let i = 0; i < n; i++) a[i] = readValue()
  depth--
  return a
}

/** ext 8/16/32 of n data bytes: only msgpackr's typed-array ext for Uint8Array is ours. */
function readExt (n: number): Uint8Array {
  if (p + 1 + n > end || n < 1 || src[p] !== 0x74 || src[p + 1] !== 1) throw GIVE_UP
  const out = new Uint8Array(n - 1) // own ArrayBuffer, as msgpackr's reader
  out.set(src.subarray(p + 2, p + 1 + n))
  p += 1 + n
  return out
}

function readBin (n: number): Buffer {
  if (p + n > end) throw GIVE_UP
  const b = copyBytes(src, p, p + n) // a copy, as msgpackr's copyBuffers
  p += n
  return b
}

function readValue (): unknown {
  const t = u8()
  if (t < 0x80) return t
  if (t < 0x90) return readObject(t & 0x0f)
  if (t < 0xa0) return readArray(t & 0x0f)
  if (t < 0xc0) return readStr(t & 0x1f)
  if (t >= 0xe0) return t - 0x100
  switch (t) {
    case 0xc0: return null
    case 0xc2: return false
    case 0xc3: return true
    case 0xc4: return readBin(u8())
    case 0xc5: return readBin(u16())
    case 0xc6: return readBin(u32())
    case 0xc7: return readExt(u8())
    case 0xc8: return readExt(u16())
    case 0xc9: return readExt(u32())
    case 0xcb: {
      if (p + 8 > end) throw GIVE_UP
      const v = view.getFloat64(src.byteOffset + p) // big-endian
      p += 8
      return v
    }
    case 0xcc: return u8()
    case 0xcd: return u16()
    case 0xce: return u32()
    case 0xd0: return (u8() << 24) >> 24
    case 0xd1: return (u16() << 16) >> 16
    case 0xd2: return u32() | 0
    case 0xd4: // fixext 1 type 0 = undefined (msgpackr ignores the data byte)
      if (p + 2 > end || src[p] !== 0) throw GIVE_UP
      p += 2
      return undefined
    case 0xd9: return readStr(u8())
    case 0xda: return readStr(u16())
    case 0xdb: return readStr(u32())
    case 0xdc: return readArray(u16())
    case 0xdd: return readArray(u32())
    case 0xde: return readObject(u16())
    case 0xdf: return readObject(u32())
    default: throw GIVE_UP // float32, int64, ext types, 0xc1
  }
}

/** Decode exactly one msgpack value filling [start, stop) of `buf`, or throw GIVE_UP. */
export function decodeFast (buf: Buffer, start: number, stop: number): unknown {
  src = buf
  p = start
  end = stop
  depth = 0
  budget = stop - start
  // Frames mostly come from a few large ArrayBuffers (socket reads, pools,
  // our slabs), so the DataView is cached per ArrayBuffer.
  if (buf.buffer !== view.buffer) view = new DataView(buf.buffer)
  try {
    const v = readValue()
    if (p !== stop) throw GIVE_UP
    return v
  } finally {
    src = EMPTY // do not keep the frame alive
  }
}
