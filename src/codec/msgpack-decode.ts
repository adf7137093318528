/**
 * msgpack decoder for envelope content (src/codec/codec.ts). Decodes what
 * codec-msgpack-encode.ts writes (and the same subset from any msgpack
 * writer) to exactly what msgpackr's Unpackr would return with the codec's
 * options, only faster. On anything else (other extensions, float32, uint64,
 * non-string or long map keys, '__proto__', invalid UTF-8, deep nesting,
 * truncation) it throws GIVE_UP and the codec runs msgpackr on the content,
 * which is the authority on everything beyond this subset, errors included.
 *
 * Why: msgpackr's general machinery (module state, bundled strings, records,
 * native string extraction) cost ~1.8 µs for a 300-byte twin update, against
 * ~1.1 µs here; see bench/codec.ts.
 */
import { copyBytes, copyToUint8Array, GIVE_UP, readUtf8 } from './bytes.js'
import { DecodeError } from '../errors.js'
import {
  MAX_DEFINITION_BYTES, MAX_KEY_BYTES, MAX_SHAPE_KEYS, MAX_SHAPES, SHAPE_DEF, SHAPE_INLINE, type ShapeTable
} from './shapes.js'

/** Deeper content goes to msgpackr (which handles it, or fails typed). */
const MAX_DEPTH = 64

// Module state for one decode. Decoding runs no user code, so nothing can re-enter.
const EMPTY = Buffer.alloc(0)
const NO_VIEW: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
let src: Buffer = EMPTY
let view = NO_VIEW
let p = 0
let end = 0
let depth = 0
let budget = 0
/** The stream's dictionary when decoding stream content (codec-shapes.ts), else null. */
let shapes: ShapeTable | null = null

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

// ---- shaped objects (stream content only; wire form in codec-shapes.ts) ------

/** A shape used this often gets a generated constructor (costly to compile, fast to run). */
const COMPILE_AFTER = 3

/** Unsigned LEB128 count (a shape's key count). */
function readCount (): number {
  let v = 0
  let mul = 1
  for (let i = 0; i < 5; i++) {
    const b = u8()
    v += (b & 0x7f) * mul
    if (b < 0x80) return v
    mul *= 128
  }
  throw new DecodeError('shape key count varint too long')
}

function readShapeKeys (n: number, definition: boolean): string[] {
  if (n > end - p) throw new DecodeError(`shape declares ${n} keys, only ${end - p} bytes left`)
  const keys = new Array<string>(n)
  for (let i = 0; i < n; i++) {
    const len = readCount()
    if (definition && len > MAX_KEY_BYTES) throw new DecodeError(`a ${len}-byte key in a shape definition (at most ${MAX_KEY_BYTES})`)
    const k = len <= 16 ? readKey(len) : readStr(len) // readKey also refuses '__proto__' (GIVE_UP)
    if (k === '__proto__') throw new DecodeError("'__proto__' in a shape")
    keys[i] = k
  }
  if (definition && new Set(keys).size !== n) throw new DecodeError('duplicate key in a shape definition')
  return keys
}

function readWithKeys (keys: string[]): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  for (let i = 0; i < keys.length; i++) o[keys[i] as string] = readValue()
  return o
}

/**
 * `{"k1": r(), "k2": r(), ...}`: V8 creates the object from a boilerplate
 * with its final hidden class, where assigning keys one by one walks a
 * transition per key. Keys are JSON string literals (safe in JS source);
 * '__proto__' and duplicates were refused by readShapeKeys.
 */
function compile (keys: string[]): () => Record<string, unknown> {
  const body = keys.map(k => `${JSON.stringify(k)}:r()`).join(',')
  // eslint-disable-next-line @typescript-eslint/no-implied-eval, no-new-func
  return (new Function('r', `return function shaped(){return{${body}}}`) as (r: () => unknown) => () => Record<string, unknown>)(readValue)
}

function readShaped (): Record<string, unknown> {
  const table = shapes
  if (table === null) throw GIVE_UP // 0xc1 outside a stream: msgpackr reports it
  if (++depth > MAX_DEPTH) throw GIVE_UP
  const tag = u8()
  let o: Record<string, unknown>
  if (tag < SHAPE_DEF) {
    const keys = table.keys[tag]
    if (keys === undefined) throw new DecodeError(`unknown shape id ${tag} (${table.keys.length} defined on this stream)`)
    const make = table.makers[tag]
    if (make !== undefined) o = make()
    else {
      const uses = (table.uses[tag] as number) + 1
      table.uses[tag] = uses
      if (uses >= COMPILE_AFTER) {
        const made = compile(keys)
        table.makers[tag] = made
        o = made()
      } else o = readWithKeys(keys)
    }
  } else if (tag === SHAPE_DEF) {
    if (table.keys.length >= MAX_SHAPES) throw new DecodeError(`more than ${MAX_SHAPES} shapes defined on one stream`)
    const n = u8()
    if (n === 0 || n > MAX_SHAPE_KEYS) throw new DecodeError(`shape definition with ${n} keys (1..${MAX_SHAPE_KEYS} allowed)`)
    const from = p
    const keys = readShapeKeys(n, true)
    if ((table.definedBytes += p - from) > MAX_DEFINITION_BYTES) {
      throw new DecodeError(`shape definitions beyond ${MAX_DEFINITION_BYTES} bytes on one stream`)
    }
    o = readWithKeys(keys)
    // defined once its object is read, nested shapes first (post-order, as the encoder)
    table.keys.push(keys)
    table.makers.push(undefined)
    table.uses.push(1)
  } else { // SHAPE_INLINE
    const n = readCount()
    if (n === 0) throw new DecodeError('inline shape without keys')
    o = readWithKeys(readShapeKeys(n, false))
  }
  depth--
  return o
}

/** ext 8/16/32 of n data bytes: ours are a Uint8Array (typed-array ext 0x74, code 1) and a 96-bit timestamp. */
function readExt (n: number): Uint8Array | Date {
  if (p + 1 + n > end) throw GIVE_UP
  const type = src[p]
  if (type === 0x74 && n >= 1 && src[p + 1] === 1) {
    // A copy, as msgpackr's reader (pooled: bytes.ts copyToUint8Array)
    const out = copyToUint8Array(src, p + 2, p + 1 + n)
    p += 1 + n
    return out
  }
  if (type === 0xff && n === 12) {
    const d = p + 1
    p += 13
    // msgpackr's arithmetic, verbatim, so both decoders agree on every input
    const b = src
    return new Date(
      (((b[d] as number) << 24) + ((b[d + 1] as number) << 16) + ((b[d + 2] as number) << 8) + (b[d + 3] as number)) / 1000000 +
      ((((b[d + 4] as number) & 0x80) !== 0 ? -0x1000000000000 : 0) + (b[d + 6] as number) * 0x10000000000 + (b[d + 7] as number) * 0x100000000 +
        (b[d + 8] as number) * 0x1000000 + ((b[d + 9] as number) << 16) + ((b[d + 10] as number) << 8) + (b[d + 11] as number)) * 1000)
  }
  throw GIVE_UP
}

/** fixext 4 / 8 with type -1: msgpack timestamps 32 and 64, as msgpackr reads them. */
function readTimestamp (n: 4 | 8): Date {
  if (p + 1 + n > end || src[p] !== 0xff) throw GIVE_UP
  const d = p + 1
  p += 1 + n
  const b = src
  if (n === 4) return new Date(((b[d] as number) * 0x1000000 + ((b[d + 1] as number) << 16) + ((b[d + 2] as number) << 8) + (b[d + 3] as number)) * 1000)
  return new Date(
    (((b[d] as number) << 22) + ((b[d + 1] as number) << 14) + ((b[d + 2] as number) << 6) + ((b[d + 3] as number) >> 2)) / 1000000 +
    (((b[d + 3] as number) & 0x3) * 0x100000000 + (b[d + 4] as number) * 0x1000000 + ((b[d + 5] as number) << 16) + ((b[d + 6] as number) << 8) + (b[d + 7] as number)) * 1000)
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
    case 0xc1: return readShaped()
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
    case 0xd3: {
      if (p + 8 > end) throw GIVE_UP
      const v = view.getBigInt64(src.byteOffset + p) // msgpackr's default: int64 as bigint
      p += 8
      return v
    }
    case 0xd4: { // fixext 1: type 0 = undefined, type -1 = invalid Date (msgpackr ignores the data byte)
      if (p + 2 > end) throw GIVE_UP
      const type = src[p]
      p += 2
      if (type === 0) return undefined
      if (type === 0xff) return new Date(NaN)
      throw GIVE_UP
    }
    case 0xd6: return readTimestamp(4)
    case 0xd7: return readTimestamp(8)
    case 0xd9: return readStr(u8())
    case 0xda: return readStr(u16())
    case 0xdb: return readStr(u32())
    case 0xdc: return readArray(u16())
    case 0xdd: return readArray(u32())
    case 0xde: return readObject(u16())
    case 0xdf: return readObject(u32())
    default: throw GIVE_UP // float32, uint64, other ext types, 0xc1
  }
}

/** Decode exactly one msgpack value filling [start, stop) of `buf`, or throw GIVE_UP. */
export function decodeFast (buf: Buffer, start: number, stop: number, dictionary: ShapeTable | null = null): unknown {
  shapes = dictionary
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
    shapes = null
    if (view.byteLength > 1024 * 1024) view = NO_VIEW // nor a big ArrayBuffer through the cached view
  }
}
