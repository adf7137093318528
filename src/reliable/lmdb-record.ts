/**
 * Binary value of an outbox record in LmdbStore (sub-database `outbox`,
 * lmdb-txn.ts). Hand-written instead of msgpack: the sender reads every
 * record back once to send it and the cumulative ack reads it again to
 * remove it, and a msgpack decode of the tuple (a Buffer per field, an array
 * per record) was the larger part of both — ≈4 µs/msg each in the drain
 * profile. Here a read is one copy out of LMDB (lmdb-js copies `binary`
 * values), a few integer reads, the short strings, and a view of the
 * envelope bytes into that copy.
 *
 *   u8  flags           1 key, 2 version, 4 op, 8 expiresAt
 *   u32 rejections      little-endian
 *   f64 enqueuedAt
 *   f64 expiresAt       only with flag 8
 *   (u16 length, UTF-8) id, then key / version / op when flagged
 *   ...                 the encoded envelope, to the end of the value
 *
 * String lengths fit u16: store-rules.ts LIMITS bounds them far below 65,535 bytes.
 */
import type { OutboxRecord } from './store.js'
import type { RecordRef } from './store-logic.js'

const KEY = 1
const VERSION = 2
const OP = 4
const EXPIRES = 8

export function encodeRecord (r: OutboxRecord): Buffer {
  let flags = 0
  let n = 1 + 4 + 8 + 2 + Buffer.byteLength(r.id)
  if (r.key !== undefined) { flags |= KEY; n += 2 + Buffer.byteLength(r.key) }
  if (r.version !== undefined) { flags |= VERSION; n += 2 + Buffer.byteLength(r.version) }
  if (r.op !== undefined) { flags |= OP; n += 2 + Buffer.byteLength(r.op) }
  if (r.expiresAt !== undefined) { flags |= EXPIRES; n += 8 }
  n += r.bytes.byteLength
  const b = Buffer.allocUnsafe(n)
  b[0] = flags
  b.writeUInt32LE(r.rejections, 1)
  b.writeDoubleLE(r.enqueuedAt, 5)
  let o = 13
  if (r.expiresAt !== undefined) { b.writeDoubleLE(r.expiresAt, o); o += 8 }
  const str = (s: string): void => {
    const len = b.write(s, o + 2, 'utf8')
    b.writeUInt16LE(len, o)
    o += 2 + len
  }
  str(r.id)
  if (r.key !== undefined) str(r.key)
  if (r.version !== undefined) str(r.version)
  if (r.op !== undefined) str(r.op)
  b.set(r.bytes, o)
  return b
}

/** `v` must be a buffer this record may keep (lmdb-js returns a fresh copy for `binary` values): `bytes` is a view into it. */
export function decodeRecord (seq: number, v: Uint8Array): OutboxRecord {
  const b = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  const flags = b[0] as number
  const rejections = b.readUInt32LE(1)
  const enqueuedAt = b.readDoubleLE(5)
  let o = 13
  let expiresAt: number | undefined
  if ((flags & EXPIRES) !== 0) { expiresAt = b.readDoubleLE(o); o += 8 }
  const str = (): string => {
    const len = b.readUInt16LE(o)
    const s = b.toString('utf8', o + 2, o + 2 + len)
    o += 2 + len
    return s
  }
  const r: OutboxRecord = { id: str(), bytes: v, seq, enqueuedAt, rejections }
  if ((flags & KEY) !== 0) r.key = str()
  if ((flags & VERSION) !== 0) r.version = str()
  if ((flags & OP) !== 0) r.op = str()
  if (expiresAt !== undefined) r.expiresAt = expiresAt
  r.bytes = new Uint8Array(b.buffer, b.byteOffset + o, b.byteLength - o) // a plain view: cheaper than a Buffer
  return r
}

/**
 * What removing the record needs (RecordRef: size of the envelope, key, expiry) read straight
 * from its body — no copy, and the id, version and op strings are skipped, not decoded.
 */
export function refOfBody (seq: number, b: Buffer): RecordRef {
  const flags = b[0] as number
  let o = 13
  let expiresAt: number | undefined
  if ((flags & EXPIRES) !== 0) { expiresAt = b.readDoubleLE(o); o += 8 }
  o += 2 + b.readUInt16LE(o) // id
  let key: string | undefined
  if ((flags & KEY) !== 0) {
    const len = b.readUInt16LE(o)
    key = b.toString('utf8', o + 2, o + 2 + len)
    o += 2 + len
  }
  if ((flags & VERSION) !== 0) o += 2 + b.readUInt16LE(o)
  if ((flags & OP) !== 0) o += 2 + b.readUInt16LE(o)
  const ref: RecordRef = { seq, size: b.byteLength - o }
  if (key !== undefined) ref.key = key
  if (expiresAt !== undefined) ref.expiresAt = expiresAt
  return ref
}
