/**
 * msgpack encoder for envelope content (src/codec/codec.ts), writing straight into
 * the codec's slab after the binary header. Its output means the same as
 * msgpackr's `new Packr({ useRecords: false, moreTypes: true })` (the peer
 * decodes it with msgpackr when its own fast decoder gives up): plain objects
 * and class instances (own enumerable properties, or toJSON()), arrays,
 * strings, numbers, booleans, null, undefined, Buffer (bin), other typed
 * arrays / ArrayBuffer / DataView (ext 0x74), Date (timestamp ext), bigint in
 * int64 range, Map (as a map), Set / Error / RegExp (msgpackr's exts).
 * Anything else (bigint beyond int64, subclasses of those built-ins,
 * symbols, nesting deeper than MAX_DEPTH, cycles) throws GIVE_UP, and the
 * codec asks msgpackr itself.
 *
 * Why not just msgpackr: it costs ~2x more per twin update, writes lone
 * surrogates in short strings as invalid UTF-8 (three U+FFFD at the peer,
 * where Buffer/TextEncoder give one), and its output lives in a buffer shared
 * by every Packr in the process, so it needs a copy anyway.
 */
import { GIVE_UP, writeVarint } from './bytes.js'
import {
  SHAPE_DEF, SHAPE_INLINE, SHAPE_MARKER, checkKey, keyBytes, type ShapeEncoder, type ShapeNode
} from './shapes.js'

const hasOwn = Object.prototype.hasOwnProperty
/** Deeper content goes to msgpackr (which handles it, or fails typed on a cycle). */
const MAX_DEPTH = 64

// msgpackr's typed-array codes (its `typedArrays` order), by exact prototype.
const TYPED_CODES = new Map<object, number>([
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array
].map((c, i) => [c.prototype, i]))
const CODE_ARRAY_BUFFER = 16
const CODE_DATA_VIEW = 17

// Module-level state, saved and restored around each call: a getter or
// toJSON() in the content may re-enter the codec, and a nested encode must
// not clobber the outer one.
let target: Buffer = Buffer.alloc(0)
let tpos = 0
let base = 0 // where the current frame starts in `target`; only [base, tpos) moves on growth
let depth = 0
/** The stream's dictionary when encoding stream content (codec-shapes.ts), else null. */
let shapes: ShapeEncoder | null = null
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

function room (n: number): void {
  if (tpos + n > target.length) grow(n)
}

function writeNumber (v: number): void {
  room(9)
  if (v >>> 0 === v) { // also -0, which msgpackr writes as 0 too
    if (v < 0x80) target[tpos++] = v
    else if (v < 0x100) { target[tpos++] = 0xcc; target[tpos++] = v } else if (v < 0x10000) {
      target[tpos++] = 0xcd; target[tpos++] = v >> 8; target[tpos++] = v & 0xff
    } else {
      target[tpos++] = 0xce; target.writeUInt32BE(v, tpos); tpos += 4
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) target[tpos++] = 0x100 + v
    else if (v >= -0x80) { target[tpos++] = 0xd0; target[tpos++] = v + 0x100 } else if (v >= -0x8000) {
      target[tpos++] = 0xd1; target[tpos++] = (v >> 8) & 0xff; target[tpos++] = v & 0xff
    } else {
      target[tpos++] = 0xd2; target.writeInt32BE(v, tpos); tpos += 4
    }
  } else {
    f64[0] = v
    target[tpos] = 0xcb
    if (littleEndian) for (let i = 0; i < 8; i++) target[tpos + 1 + i] = f64Bytes[7 - i] as number
    else for (let i = 0; i < 8; i++) target[tpos + 1 + i] = f64Bytes[i] as number
    tpos += 9
  }
}

function writeString (s: string): void {
  const n = s.length
  room(5 + 3 * n)
  // Reserve the header for the likely byte length (ASCII), write the UTF-8,
  // and move the bytes only when the guess was wrong (non-ASCII, long strings).
  const hdr = n < 32 ? 1 : n < 64 ? 2 : 3 * n < 0x100 ? 2 : 3 * n < 0x10000 ? 3 : 5
  const start = tpos + hdr
  let len: number
  if (n < 64) {
    // Same loop as writeUtf8() in codec-bytes.ts, inlined: measured ~5-10% faster here.
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

/** Header of an array (fix 0x90) or map (fix 0x80) of `len` entries. */
function writeLength (len: number, fix: number, t16: number): void {
  room(5)
  if (len < 16) target[tpos++] = fix | len
  else if (len < 0x10000) { target[tpos++] = t16; target[tpos++] = len >> 8; target[tpos++] = len & 0xff } else {
    target[tpos++] = t16 + 1; target.writeUInt32BE(len, tpos); tpos += 4
  }
}

function writeObject (o: Record<string, unknown>): void {
  if (shapes !== null) { writeShaped(o, shapes); return }
  // for-in, not Object.keys(): inside for-in V8 reads o[k] through the enum
  // cache, where a keyed load elsewhere is megamorphic and several times
  // slower. Same own enumerable keys in the same order as msgpackr's writer.
  room(1)
  const at = tpos++ - base // fixmap header, patched below (relative: grow() moves the frame)
  let n = 0
  for (const k in o) {
    if (!hasOwn.call(o, k)) continue
    writeString(k)
    writeValue(o[k])
    n++
  }
  const from = base + at
  if (n < 16) {
    target[from] = 0x80 | n
    return
  }
  // rare: a map16/map32 header needs 2 or 4 more bytes; shift the entries
  const extra = n < 0x10000 ? 2 : 4
  room(extra)
  target.copyWithin(from + 1 + extra, from + 1, tpos)
  tpos += extra
  if (extra === 2) { target[from] = 0xde; target[from + 1] = n >> 8; target[from + 2] = n & 0xff } else {
    target[from] = 0xdf; target.writeUInt32BE(n, from + 1)
  }
}

/**
 * An object in stream content (wire form in codec-shapes.ts). One pass, as
 * writeObject(): walk the trie of key sequences while writing the values
 * after a 2-byte header; only when the shape is not yet known are the keys
 * inserted in front of the values.
 */
function writeShaped (o: Record<string, unknown>, enc: ShapeEncoder): void {
  room(2)
  const at = tpos - base
  tpos += 2
  const known = enc.count // ids below this were defined before this object started
  let node: ShapeNode | undefined = enc.root
  let last = node // deepest trie node reached
  let offTrie: string[] | undefined // keys after `last` once the trie is left
  let n = 0
  for (const k in o) {
    if (!hasOwn.call(o, k)) continue
    if (node !== undefined) {
      node = node.k1 === k ? node.c1 : enc.child(node, k)
      if (node !== undefined) last = node
      else offTrie = []
    }
    if (offTrie !== undefined) {
      checkKey(k)
      offTrie.push(k)
    }
    writeValue(o[k])
    n++
  }
  const start = base + at
  if (n === 0) {
    target[start] = 0x80 // {}: an empty msgpack map
    tpos = start + 1
    return
  }
  target[start] = SHAPE_MARKER
  let tag = SHAPE_INLINE
  if (node !== undefined) {
    const id = node.id
    if (id >= 0) {
      if (id < known) { target[start + 1] = id; return }
      // else defined by an object nested in this one: the decoder does not know it yet
    } else if (node.seen++ > 0 && enc.define(node)) { // after the values: ids are assigned in the order objects end
      tag = SHAPE_DEF
    }
  }
  // Keys go between the header and the values: [count][keys...].
  const pieces = last.path()
  let keyLen = last.pathBytes
  if (offTrie !== undefined) {
    for (const k of offTrie) { const b = keyBytes(k); pieces.push(b); keyLen += b.length }
  }
  const countLen = tag === SHAPE_DEF ? 1 : n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 5
  const shift = countLen + keyLen
  room(shift)
  const from = base + at // room() may have moved the frame
  target.copyWithin(from + 2 + shift, from + 2, tpos)
  tpos += shift
  target[from + 1] = tag
  let p = from + 2
  if (tag === SHAPE_DEF) target[p++] = n
  else p = writeVarint(target, p, n)
  for (const b of pieces) { target.set(b, p); p += b.length }
}

function writeArray (a: ArrayLike<unknown>): void {
  const n = a.length
  writeLength(n, 0x90, 0xdc)
  for (let i = 0; i < n; i++) writeValue(a[i])
}

/** ext 0x74 (msgpackr's typed array): [code, ...bytes]. */
function writeTyped (bytes: Uint8Array, code: number): void {
  const n = bytes.byteLength + 1
  room(7 + n)
  if (n < 0x100) { target[tpos++] = 0xc7; target[tpos++] = n } else if (n < 0x10000) {
    target[tpos++] = 0xc8; target[tpos++] = n >> 8; target[tpos++] = n & 0xff
  } else { target[tpos++] = 0xc9; target.writeUInt32BE(n, tpos); tpos += 4 }
  target[tpos++] = 0x74
  target[tpos++] = code
  target.set(bytes, tpos)
  tpos += n - 1
}

/** msgpack timestamp ext (-1), exactly as msgpackr writes a Date. */
function writeDate (d: Date): void {
  room(15)
  const seconds = d.getTime() / 1000
  const ms = d.getMilliseconds()
  if (ms === 0 && seconds >= 0 && seconds < 0x100000000) {
    target[tpos++] = 0xd6; target[tpos++] = 0xff; target.writeUInt32BE(seconds, tpos); tpos += 4
  } else if (seconds > 0 && seconds < 0x100000000) {
    target[tpos++] = 0xd7; target[tpos++] = 0xff
    target.writeUInt32BE(ms * 4000000, tpos); target.writeUInt32BE(Math.floor(seconds), tpos + 4); tpos += 8
  } else if (Number.isNaN(seconds)) {
    target[tpos++] = 0xd4; target[tpos++] = 0xff; target[tpos++] = 0xff // msgpackr's invalid date
  } else {
    const s = Math.floor(seconds) // |s| < 2^43: split into int32 high and uint32 low words
    const hi = Math.floor(s / 0x100000000)
    target[tpos++] = 0xc7; target[tpos++] = 12; target[tpos++] = 0xff
    target.writeUInt32BE(ms * 1000000, tpos); target.writeInt32BE(hi, tpos + 4); target.writeUInt32BE(s - hi * 0x100000000, tpos + 8)
    tpos += 12
  }
}

/** fixext 1 tag (msgpackr's Set 0x73, Error 0x65, RegExp 0x78) followed by an array. */
function writeTagged (tag: number, items: unknown[]): void {
  room(3)
  target[tpos++] = 0xd4; target[tpos++] = tag; target[tpos++] = 0
  writeArray(items)
}

/**
 * Stream content is limited to what codec-msgpack-decode.ts reads, as there
 * is no msgpackr fallback inside a stream frame: Maps, Sets, Errors, RegExps,
 * typed arrays other than Uint8Array, ArrayBuffers and DataViews send their
 * frame stateless instead (rare in envelopes; correctness over speed).
 */
function isStreamable (v: object): boolean {
  const proto = Object.getPrototypeOf(v) as object | null
  if (proto === Uint8Array.prototype || proto === Date.prototype) return true
  return !(v instanceof Map || v instanceof Set || v instanceof Error || v instanceof RegExp ||
    v instanceof ArrayBuffer || ArrayBuffer.isView(v) || v instanceof Date)
}

/** Objects that are not plain objects, arrays or Buffers, in msgpackr's order of checks. */
function writeOther (v: object, ctor: unknown): void {
  if (shapes !== null && ctor !== Array && !isStreamable(v)) throw GIVE_UP
  if (ctor === Map) {
    const m = v as Map<unknown, unknown>
    writeLength(m.size, 0x80, 0xde)
    for (const [k, x] of m) { writeValue(k); writeValue(x) }
    return
  }
  const proto = Object.getPrototypeOf(v) as object | null
  const code = proto === null ? undefined : TYPED_CODES.get(proto)
  if (code !== undefined) {
    const t = v as Uint16Array
    writeTyped(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), code)
  } else if (proto === Date.prototype) writeDate(v as Date)
  else if (proto === Set.prototype) writeTagged(0x73, Array.from(v as Set<unknown>))
  else if (proto === Error.prototype) { const e = v as Error; writeTagged(0x65, [e.name, e.message, e.cause]) } else if (proto === RegExp.prototype) { const r = v as RegExp; writeTagged(0x78, [r.source, r.flags]) } else if (proto === ArrayBuffer.prototype) writeTyped(new Uint8Array(v as ArrayBuffer), CODE_ARRAY_BUFFER)
  else if (proto === DataView.prototype) { const d = v as DataView; writeTyped(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), CODE_DATA_VIEW) } else if (v instanceof Date || v instanceof Set || v instanceof Error || v instanceof RegExp ||
      v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
    throw GIVE_UP // subclasses: msgpackr's toJSON-vs-extension rules
  } else if (Array.isArray(v)) writeArray(v)
  else {
    const toJSON = (v as { toJSON?: unknown }).toJSON
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(v)
      if (json !== v) { writeValue(json); return }
    }
    writeObject(v as Record<string, unknown>) // class instances, null-prototype objects
  }
}

function writeValue (v: unknown): void {
  switch (typeof v) {
    case 'string': writeString(v); return
    case 'number': writeNumber(v); return
    case 'boolean':
      room(1)
      target[tpos++] = v ? 0xc3 : 0xc2
      return
    case 'undefined':
      room(3)
      target[tpos++] = 0xd4; target[tpos++] = 0; target[tpos++] = 0 // fixext 1, type 0: msgpackr's undefined
      return
    case 'bigint':
      if (v < -0x8000000000000000n || v > 0x7fffffffffffffffn) throw GIVE_UP // msgpackr's bigint ext
      room(9)
      target[tpos++] = 0xd3
      target.writeBigInt64BE(v, tpos)
      tpos += 8
      return
    case 'function':
      if ((v as { toJSON?: unknown }).toJSON !== undefined) throw GIVE_UP
      writeValue(undefined) // as msgpackr without writeFunction
      return
    case 'object': {
      if (v === null) {
        room(1)
        target[tpos++] = 0xc0
        return
      }
      if (++depth > MAX_DEPTH) throw GIVE_UP
      const ctor = (v as object).constructor
      if (ctor === Object) writeObject(v as Record<string, unknown>)
      else if (ctor === Array) writeArray(v as unknown[])
      else if (ctor === Buffer) { // bin, as msgpackr
        const b = v as Uint8Array
        const n = b.byteLength
        room(5 + n)
        if (n < 0x100) { target[tpos++] = 0xc4; target[tpos++] = n } else if (n < 0x10000) {
          target[tpos++] = 0xc5; target[tpos++] = n >> 8; target[tpos++] = n & 0xff
        } else { target[tpos++] = 0xc6; target.writeUInt32BE(n, tpos); tpos += 4 }
        target.set(b, tpos)
        tpos += n
      } else writeOther(v as object, ctor)
      depth--
      return
    }
    default: throw GIVE_UP // symbol: msgpackr rejects it
  }
}

/**
 * Append `value` as msgpack to `buf` at `pos`, the frame being built having
 * started at `frameStart`. Returns the buffer now holding the frame: `buf`,
 * or a new larger one holding just the frame if it outgrew `buf`; the frame
 * is then at [encodedStart, encodedEnd). Throws GIVE_UP for values this
 * encoder leaves to msgpackr (the partial output is then garbage), and
 * whatever a getter or toJSON() in the content throws.
 */
export function encodeFast (buf: Buffer, frameStart: number, pos: number, value: unknown, dictionary: ShapeEncoder | null = null): Buffer {
  const savedTarget = target
  const savedPos = tpos
  const savedBase = base
  const savedDepth = depth
  const savedShapes = shapes
  target = buf
  tpos = pos
  base = frameStart
  depth = 0
  shapes = dictionary
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
    shapes = savedShapes
  }
}
export let encodedStart = 0
export let encodedEnd = 0
