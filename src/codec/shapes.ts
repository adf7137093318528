/**
 * Shape dictionaries for codec streams (src/codec/stream.ts): the state an
 * encoder/decoder PAIR shares over one ordered, reliable channel.
 *
 * Most of a structured envelope's content is the names of its object keys,
 * repeated in every message. On a stream, an object's shape (its ordered
 * key list) is sent once and then referred to by a one-byte id, so later
 * frames carry only the values; the decoder builds such objects with a
 * generated object literal, which V8 creates with the final hidden class in
 * one step instead of one transition per property.
 *
 * Wire form of an object inside stream content (msgpack's never-used byte
 * 0xc1 introduces it; everything else is the codec's msgpack subset):
 *
 *   0xc1 id                 id < SHAPE_DEF: a shape defined earlier on this stream
 *   0xc1 SHAPE_DEF n keys   defines the next shape id (n: u8, 1..MAX_SHAPE_KEYS)
 *   0xc1 SHAPE_INLINE n keys  keys for this object only, not remembered (n: varint)
 *   ... followed by exactly one value per key, in key order.
 *   key = varint byte length + UTF-8.
 *
 * Ids are assigned in the order objects END (post-order: nested objects
 * first), on both sides, so a definition takes effect only once its object,
 * including everything nested in it, has been read. An object never refers
 * to a shape defined inside its own values (the encoder writes it inline).
 *
 * Bounds: at most MAX_SHAPES shapes per stream and direction, never evicted
 * (the decoder could not know), of at most MAX_SHAPE_KEYS keys of at most
 * MAX_KEY_BYTES, MAX_DEFINITION_BYTES of definitions in all; beyond that,
 * new shapes go inline. A decoder refuses definitions beyond these bounds. A shape
 * gets an id the SECOND time the encoder sees it, so objects used as
 * dictionaries (keys that are data) do not use up the ids with one-offs.
 * The encoder's trie of seen key sequences is bounded by MAX_NODES.
 */
import { GIVE_UP } from './bytes.js'

export const SHAPE_MARKER = 0xc1
export const SHAPE_DEF = 0xfe
export const SHAPE_INLINE = 0xff
/** Ids 0..253: SHAPE_DEF and SHAPE_INLINE are the two remaining tag values. */
export const MAX_SHAPES = SHAPE_DEF
/** Larger objects are always sent with inline keys. */
export const MAX_SHAPE_KEYS = 64
/** Trie nodes per encoder: bounds the memory objects with ever-new keys can take. */
export const MAX_NODES = 1024
/** Longer keys are always sent inline (UTF-16 units; so at most 3x as many UTF-8 bytes). */
export const MAX_KEY_CHARS = 64
export const MAX_KEY_BYTES = 3 * MAX_KEY_CHARS
/** Definition bytes (keys with their lengths) all shapes of a stream may take: what a decoder keeps. */
export const MAX_DEFINITION_BYTES = 32 * 1024

/** Children of a trie node found by a linear scan before the map. */
const SCANNED_CHILDREN = 16

/** varint + UTF-8 form of a key, as written into a definition. */
export function keyBytes (k: string): Buffer {
  const utf8 = Buffer.from(k, 'utf8') // lone surrogates become U+FFFD, as everywhere else in the codec
  let n = utf8.length
  let hdr = 1
  while (n >= 0x80) { hdr++; n = Math.floor(n / 128) }
  const out = Buffer.allocUnsafe(hdr + utf8.length)
  let v = utf8.length
  let p = 0
  while (v >= 0x80) { out[p++] = (v & 0x7f) | 0x80; v = Math.floor(v / 128) }
  out[p++] = v
  utf8.copy(out, p)
  return out
}

const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed

/**
 * Keys the stream form cannot carry as they are: '__proto__' (the stateless
 * path applies msgpackr's renaming), and lone surrogates (two such keys can
 * become the same U+FFFD key on the wire, which a shape cannot hold twice).
 * The frame is then sent stateless.
 */
export function checkKey (k: string): void {
  if (k === '__proto__' || !isWellFormed.call(k)) throw GIVE_UP
}

/** A key sequence seen by the encoder: the path from the root to this node. */
export class ShapeNode {
  readonly key: string
  readonly parent: ShapeNode | undefined
  /** Number of keys on the path. */
  readonly depth: number
  readonly keyBytes: Buffer
  /** Bytes of all keys on the path (their definition, without the count). */
  readonly pathBytes: number
  // Most nodes have a single child (objects of one shape): checked first, by
  // identity, before the map. Keys from for-in are internalized strings.
  k1: string | undefined = undefined
  c1: ShapeNode | undefined = undefined
  // Further children: a few in arrays scanned by identity (the root has one
  // per distinct first key, looked up for almost every object), then a map.
  ks: string[] | undefined = undefined
  cs: ShapeNode[] | undefined = undefined
  more: Map<string, ShapeNode> | undefined = undefined
  /** Shape id on this stream, or -1. */
  id = -1
  /** Objects of exactly this shape the encoder has seen (a shape is defined at the second). */
  seen = 0

  constructor (key: string, parent: ShapeNode | undefined) {
    this.key = key
    this.parent = parent
    this.depth = parent === undefined ? 0 : parent.depth + 1
    this.keyBytes = parent === undefined ? Buffer.alloc(0) : keyBytes(key)
    this.pathBytes = parent === undefined ? 0 : parent.pathBytes + this.keyBytes.length
  }

  /** The keys' definition bytes, root first. */
  path (): Buffer[] {
    const out = new Array<Buffer>(this.depth)
    let n: ShapeNode = this
    for (let i = this.depth - 1; i >= 0; i--) {
      out[i] = n.keyBytes
      n = n.parent as ShapeNode
    }
    return out
  }
}

/** Encoder half of a stream's dictionary. */
export class ShapeEncoder {
  readonly root = new ShapeNode('', undefined)
  /** Shapes defined so far (the next id). */
  count = 0
  #nodes = 1
  readonly #byId: ShapeNode[] = []

  /** The child of `node` for key `k`, created if needed; undefined once the trie is full or too deep. */
  child (node: ShapeNode, k: string): ShapeNode | undefined {
    const ks = node.ks
    if (ks !== undefined) {
      for (let i = 0; i < ks.length; i++) if (ks[i] === k) return (node.cs as ShapeNode[])[i]
      const found = node.more?.get(k)
      if (found !== undefined) return found
    }
    checkKey(k)
    if (this.#nodes >= MAX_NODES || node.depth >= MAX_SHAPE_KEYS || k.length > MAX_KEY_CHARS) return undefined
    const c = new ShapeNode(k, node)
    this.#nodes++
    if (node.c1 === undefined) {
      node.k1 = k
      node.c1 = c
    } else if (node.ks === undefined) {
      node.ks = [k]
      node.cs = [c]
    } else if (node.ks.length < SCANNED_CHILDREN) {
      node.ks.push(k)
      ;(node.cs as ShapeNode[]).push(c)
    } else {
      node.more ??= new Map()
      node.more.set(k, c)
    }
    return c
  }

  /** Definition bytes of the shapes defined so far. */
  #definedBytes = 0

  /** Give `node` the next id, if the bounds allow. */
  define (node: ShapeNode): boolean {
    if (this.count >= MAX_SHAPES || this.#definedBytes + node.pathBytes > MAX_DEFINITION_BYTES) return false
    node.id = this.count++
    this.#definedBytes += node.pathBytes
    this.#byId.push(node)
    return true
  }

  /** Forget shapes defined since `count` was `to` (their frame is not sent). */
  rollback (to: number): void {
    while (this.count > to) {
      const node = this.#byId.pop() as ShapeNode
      node.id = -1
      this.#definedBytes -= node.pathBytes
      this.count--
    }
  }
}

/** Decoder half of a stream's dictionary. */
export class ShapeTable {
  readonly keys: string[][] = []
  /** Definition bytes read so far (bounded by MAX_DEFINITION_BYTES). */
  definedBytes = 0
  /** Generated constructors, once a shape has been used COMPILE_AFTER times. */
  readonly makers: Array<(() => Record<string, unknown>) | undefined> = []
  readonly uses: number[] = []
}
