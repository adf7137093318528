/**
 * `configData` values on the DMI wire (issue 14): each is a
 * google.protobuf wrapper packed in an Any, the way edgecore's
 * dtcommon.dataToAny makes them and mapper-framework's
 * common.DecodeAnyValue reads them: string → StringValue, integer →
 * Int64Value, other number → FloatValue, boolean → BoolValue. A wrapper is
 * a message with the single field 1, so it is encoded here by hand rather
 * than by loading google/protobuf/wrappers.proto.
 */
import type { PbAny } from './proto.js'

const PREFIX = 'type.googleapis.com/google.protobuf.'

function varint (n: bigint): number[] {
  let v = BigInt.asUintN(64, n) // int64 negatives are 10-byte two's complement varints
  const out: number[] = []
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n }
  out.push(Number(v))
  return out
}

export function encodeAny (v: string | number | boolean): PbAny {
  if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8')
    return { type_url: PREFIX + 'StringValue', value: Buffer.concat([Buffer.from([0x0a, ...varint(BigInt(s.length))]), s]) }
  }
  if (typeof v === 'boolean') return { type_url: PREFIX + 'BoolValue', value: Buffer.from([0x08, v ? 1 : 0]) }
  if (Number.isSafeInteger(v)) return { type_url: PREFIX + 'Int64Value', value: Buffer.from([0x08, ...varint(BigInt(v))]) }
  const f = Buffer.alloc(5)
  f[0] = 0x0d
  f.writeFloatLE(v, 1)
  return { type_url: PREFIX + 'FloatValue', value: f }
}

function readVarint (b: Uint8Array, at: number): { v: bigint, next: number } {
  let v = 0n
  let shift = 0n
  let i = at
  for (;;) {
    const byte = b[i++]
    if (byte === undefined || shift > 63n) throw new Error('truncated varint')
    v |= BigInt(byte & 0x7f) << shift
    if ((byte & 0x80) === 0) return { v, next: i }
    shift += 7n
  }
}

/** The scalar inside a wrapper Any (what a mapper sees); throws on other types. */
export function decodeAny (a: PbAny): string | number | boolean {
  const type = a.type_url.slice(a.type_url.lastIndexOf('/') + 1)
  const b = a.value
  const field = b.length > 0 ? b[0] : undefined // proto3 leaves a default (0, '', false) out
  switch (type) {
    case 'google.protobuf.StringValue': {
      if (field === undefined) return ''
      const { v, next } = readVarint(b, 1)
      return Buffer.from(b.buffer, b.byteOffset + next, Number(v)).toString('utf8')
    }
    case 'google.protobuf.BoolValue': return field === undefined ? false : readVarint(b, 1).v !== 0n
    case 'google.protobuf.Int64Value':
    case 'google.protobuf.Int32Value': return field === undefined ? 0 : Number(BigInt.asIntN(64, readVarint(b, 1).v))
    case 'google.protobuf.FloatValue': return field === undefined ? 0 : Buffer.from(b.buffer, b.byteOffset, b.byteLength).readFloatLE(1)
    case 'google.protobuf.DoubleValue': return field === undefined ? 0 : Buffer.from(b.buffer, b.byteOffset, b.byteLength).readDoubleLE(1)
    default: throw new Error(`unsupported Any type ${a.type_url}`)
  }
}

export function encodeAnyMap (m: Record<string, string | number | boolean> | undefined): Record<string, PbAny> {
  const out: Record<string, PbAny> = {}
  for (const [k, v] of Object.entries(m ?? {})) out[k] = encodeAny(v)
  return out
}

export function decodeAnyMap (m: Record<string, PbAny> | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const [k, v] of Object.entries(m ?? {})) out[k] = decodeAny(v)
  return out
}
