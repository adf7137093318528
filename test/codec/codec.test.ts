/**
 * Envelope codec (src/codec/codec.ts): round-trip properties, the documented value
 * semantics, strict decoding of hostile bytes, and encode-side validation.
 */
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { Packr, Unpackr } from 'msgpackr'
import { createCodec, defaultCodec, STREAM_WIRE_VERSION, WIRE_VERSION, type EnvelopeCodecStream } from '../../src/codec/codec.js'
import { GIVE_UP } from '../../src/codec/bytes.js'
import { decodeFast } from '../../src/codec/msgpack-decode.js'
import { encodeFast, encodedEnd, encodedStart } from '../../src/codec/msgpack-encode.js'
import { newMessage, OPERATIONS, PRIORITIES, type Envelope, type NewMessageInit } from '../../src/codec/envelope.js'
import { EdgeFabricError } from '../../src/errors.js'

const codec = createCodec()
const CODE = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code
const TYPED = new Set(['EF_DECODE', 'EF_INVALID_ENVELOPE'])

function base (over: Partial<NewMessageInit> = {}): Envelope {
  return newMessage({ source: 'edge-1/devicetwin', group: 'twin', operation: 'update', resource: 'default/device/sensor-0042', ...over })
}

/** decode() must either return or throw a typed codec error; returns the error, if any. */
function decodeTyped (bytes: Uint8Array): { env?: Envelope, err?: EdgeFabricError } {
  try {
    return { env: codec.decode(bytes) }
  } catch (err) {
    if (!(err instanceof EdgeFabricError) || !TYPED.has(err.code)) {
      throw new Error(`untyped decode failure for ${Buffer.from(bytes).toString('hex').slice(0, 200)}: ${String(err)}`, { cause: err })
    }
    return { err }
  }
}

// ---- what a value looks like after the wire (the documented semantics) ------

const wellFormed = (s: string): string => (s as unknown as { toWellFormed (): string }).toWellFormed()

/** Expected decoded form of nested content (msgpack path). */
function expectNested (v: unknown): unknown {
  if (typeof v === 'string') return wellFormed(v)
  if (typeof v === 'number') return Object.is(v, -0) ? 0 : v // msgpack ints have no -0 (as msgpackr)
  if (Buffer.isBuffer(v)) return Buffer.from(v)
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return v.map(expectNested)
  if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) out[wellFormed(k)] = expectNested(x)
    return out
  }
  return v
}

function expectEnvelope (env: Envelope): Envelope {
  const h = env.header
  const r = env.router
  const c = env.content
  const content = c instanceof Uint8Array ? Buffer.from(c) : typeof c === 'string' ? wellFormed(c) : expectNested(c)
  const init: NewMessageInit = {
    id: wellFormed(h.id),
    timestamp: h.timestamp,
    source: wellFormed(r.source),
    group: wellFormed(r.group),
    operation: wellFormed(r.operation),
    resource: wellFormed(r.resource),
    content
  }
  if (h.parentId !== undefined) init.parentId = wellFormed(h.parentId)
  if (h.resourceVersion !== undefined) init.resourceVersion = wellFormed(h.resourceVersion)
  if (h.sync !== undefined) init.sync = h.sync
  if (h.ttl !== undefined) init.ttl = h.ttl
  if (h.priority !== undefined) init.priority = h.priority
  if (r.destination !== undefined) init.destination = wellFormed(r.destination)
  return newMessage(init)
}

// ---- arbitraries -------------------------------------------------------------

// Any UTF-16 unit sequence: full Unicode plus lone surrogates.
const unit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map(c => String.fromCharCode(c)) }
)
const str = fc.string({ unit, maxLength: 40 })
const longStr = fc.string({ unit, minLength: 40, maxLength: 300 })
const anyStr = fc.oneof({ weight: 4, arbitrary: str }, { weight: 1, arbitrary: longStr })
const nonEmpty = fc.string({ unit, minLength: 1, maxLength: 40 })
const key = fc.string({ unit, maxLength: 20 }).filter(k => k !== '__proto__')
const finite = fc.double({ noNaN: true, noDefaultInfinity: true })

const leaf = fc.oneof(
  fc.constant(null), fc.constant(undefined), fc.boolean(),
  fc.integer(), fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }), fc.double(),
  anyStr,
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }).map(u => Buffer.from(u)),
  fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
)
const { value: content } = fc.letrec<{ value: unknown }>(tie => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(key, tie('value'), { maxKeys: 6, noNullPrototype: true }))
}))

const envelopeArb: fc.Arbitrary<Envelope> = fc.record({
  id: fc.oneof(fc.uuid(), nonEmpty),
  parentId: fc.option(fc.oneof(fc.uuid(), nonEmpty), { nil: undefined }),
  timestamp: finite,
  resourceVersion: fc.option(str, { nil: undefined }),
  sync: fc.option(fc.boolean(), { nil: undefined }),
  ttl: fc.option(finite, { nil: undefined }),
  priority: fc.option(fc.constantFrom(...PRIORITIES), { nil: undefined }),
  source: anyStr,
  destination: fc.option(str, { nil: undefined }),
  group: str,
  operation: fc.oneof(fc.constantFrom(...OPERATIONS), str),
  resource: anyStr,
  content: fc.oneof(
    { weight: 4, arbitrary: content },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: anyStr },
    { weight: 1, arbitrary: fc.constant(undefined) })
}).map(r => newMessage(r as NewMessageInit))

// ---- round trips -------------------------------------------------------------

t.test('round-trip property: decode(encode(e)) is e, as documented', t => {
  fc.assert(fc.property(envelopeArb, env => {
    const back = codec.decode(codec.encode(env))
    const want = expectEnvelope(env)
    if (!isDeepStrictEqual(back, want)) {
      throw new Error(`mismatch\n got  ${JSON.stringify(back, replacer)}\n want ${JSON.stringify(want, replacer)}`)
    }
  }), { numRuns: 1500 })
  t.pass('1500 random envelopes round-trip')
  t.end()
})

function replacer (_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v === undefined ? '<undefined>' : v
}

t.test('encoded bytes are stable: encode(decode(encode(e))) equals encode(e) for well-formed strings', t => {
  fc.assert(fc.property(envelopeArb, env => {
    // JSON.stringify escapes exactly the lone surrogates as \udxxx; two keys
    // differing only in one become the same U+FFFD key, so the bytes change
    fc.pre(!/\\ud[89a-f]/i.test(JSON.stringify(env, replacer)))
    const once = codec.encode(env)
    const twice = codec.encode(codec.decode(once))
    return Buffer.compare(once, twice) === 0
  }), { numRuns: 300 })
  t.pass()
  t.end()
})

t.test('decoded shape equals newMessage(): optional fields absent, not undefined', t => {
  const env = base()
  const back = codec.decode(codec.encode(env))
  t.strictSame(Object.keys(back), ['header', 'router', 'content'])
  t.strictSame(Object.keys(back.header).sort(), ['id', 'timestamp'])
  t.strictSame(Object.keys(back.router).sort(), ['group', 'operation', 'resource', 'source'])
  t.ok(isDeepStrictEqual(back, env))
  // undefined-valued optional fields count as absent
  const sloppy = base({ content: 1 })
  Object.assign(sloppy.header, { parentId: undefined, ttl: undefined })
  Object.assign(sloppy.router, { destination: undefined })
  const b2 = codec.decode(codec.encode(sloppy))
  t.notOk('parentId' in b2.header)
  t.notOk('ttl' in b2.header)
  t.notOk('destination' in b2.router)
  t.end()
})

t.test('every optional header field combination', t => {
  let n = 0
  for (let mask = 0; mask < 256; mask++) {
    const init: NewMessageInit = {
      source: 'src', group: 'grp', operation: (mask & 64) !== 0 ? 'custom-op' : 'query', resource: 'ns/t/n',
      id: (mask & 128) !== 0 ? 'not-a-uuid' : '0f8fad5b-d9cb-469f-a165-70867728950e',
      content: mask % 3 === 0 ? undefined : { mask }
    }
    if ((mask & 1) !== 0) init.parentId = mask % 2 === 0 ? 'parent' : '7c9e6679-7425-40de-944b-e07fc1f90ae7'
    if ((mask & 2) !== 0) init.resourceVersion = String(mask)
    if ((mask & 4) !== 0) init.sync = mask % 5 === 0
    if ((mask & 8) !== 0) init.ttl = mask * 1000
    if ((mask & 16) !== 0) init.priority = PRIORITIES[mask % 4]
    if ((mask & 32) !== 0) init.destination = 'dst'
    const env = newMessage(init)
    const back = codec.decode(codec.encode(env))
    if (!isDeepStrictEqual(back, env)) t.fail(`mask ${mask}`)
    else n++
  }
  t.equal(n, 256, 'all 256 combinations round-trip')
  t.end()
})

t.test('empty strings where allowed; empty ids rejected', t => {
  const env = base({ source: '', group: '', operation: '', resource: '', destination: '', resourceVersion: '', content: '' })
  t.ok(isDeepStrictEqual(codec.decode(codec.encode(env)), env))
  const noId = base()
  noId.header.id = ''
  t.throws(() => codec.encode(noId), { code: 'EF_INVALID_ENVELOPE', field: 'header.id' })
  const noParent = base({ parentId: '' })
  t.throws(() => codec.encode(noParent), { code: 'EF_INVALID_ENVELOPE', field: 'header.parentId' })
  t.end()
})

t.test('binary content: empty, Buffer, Uint8Array view, 8 MiB; decoded as a Buffer copy', t => {
  const empty = codec.decode(codec.encode(base({ content: new Uint8Array(0) }))).content
  t.ok(Buffer.isBuffer(empty))
  t.equal((empty as Buffer).length, 0)

  const backing = new Uint8Array(64).map((_, i) => i)
  const view = backing.subarray(10, 20) // non-zero byteOffset
  t.ok(isDeepStrictEqual(codec.decode(codec.encode(base({ content: view }))).content, Buffer.from(view)))

  const big = randomBytes(8 * 1024 * 1024)
  const frame = codec.encode(base({ content: big }))
  t.ok(frame.byteLength < big.length + 200, `frame ${frame.byteLength} bytes`)
  const got = codec.decode(frame).content as Buffer
  t.ok(Buffer.isBuffer(got))
  t.equal(Buffer.compare(got, big), 0, '8 MiB round-trips')
  t.end()
})

t.test('decode copies: the input buffer may be reused afterwards', t => {
  const env = base({ content: { bin: Buffer.from([1, 2, 3]), u8: new Uint8Array([4]), s: 'abc', when: new Date(5) } })
  for (const c of [Buffer.from([7, 8, 9]), env.content]) {
    const frame = Buffer.from(codec.encode(base({ content: c })))
    const back = codec.decode(frame)
    frame.fill(0xee)
    t.ok(isDeepStrictEqual(back.content, expectNested(c)), 'content unchanged after the input is overwritten')
  }
  t.end()
})

t.test('nested Uint8Array copies (pooled): plain Uint8Arrays, disjoint, independent of the input, across pool boundaries', t => {
  // A reliable data message carries its records like this (issue 16): many small ones, some large.
  const sizes = [0, 1, 7, 300, 4096, 4097, 70_000]
  for (let i = 0; i < 600; i++) sizes.push(200 + (i * 37) % 400) // > 64 KiB of small copies: the pool is renewed
  const records = sizes.map((n, i) => new Uint8Array(n).map((_, j) => (i * 31 + j) & 0xff))
  for (const c of [defaultCodec, createCodec()]) {
    const frame = Buffer.from(c.encode(base({ content: { m: records } })))
    const got = (c.decode(frame).content as { m: Uint8Array[] }).m
    frame.fill(0xee)
    t.equal(got.length, records.length)
    let ok = true
    for (let i = 0; i < got.length; i++) {
      const g = got[i] as Uint8Array
      if (Object.getPrototypeOf(g) !== Uint8Array.prototype || !isDeepStrictEqual(g, records[i])) ok = false
    }
    t.ok(ok, 'every copy is a plain Uint8Array equal to what was sent, after the input was overwritten')
    // Views sharing an ArrayBuffer must not overlap: writing one leaves every other intact.
    for (const g of got) g.fill(0x55)
    t.ok(got.every((g, i) => g.byteLength === (sizes[i] as number) && g.every(x => x === 0x55)), 'each copy has its own bytes')
    const byBuffer = new Map<ArrayBufferLike, Array<[number, number]>>()
    for (const g of got) { const r = byBuffer.get(g.buffer) ?? []; r.push([g.byteOffset, g.byteOffset + g.byteLength]); byBuffer.set(g.buffer, r) }
    let disjoint = true
    for (const ranges of byBuffer.values()) {
      ranges.sort((a, b) => a[0] - b[0])
      for (let i = 1; i < ranges.length; i++) if ((ranges[i] as [number, number])[0] < (ranges[i - 1] as [number, number])[1]) disjoint = false
    }
    t.ok(disjoint, 'no two copies overlap')
  }
  t.end()
})

t.test('encode output is never overwritten by later encodes (transports queue it)', t => {
  const envs: Envelope[] = []
  const frames: Uint8Array[] = []
  for (let i = 0; i < 3000; i++) {
    const c = i % 7 === 0 ? randomBytes(i % 5000) : i % 5 === 0 ? 'x'.repeat(i) : { i, s: 'y'.repeat(i % 300), d: i % 11 === 0 ? new Date(i) : null }
    envs.push(base({ content: c }))
    frames.push(codec.encode(envs[i] as Envelope))
  }
  let ok = 0
  frames.forEach((f, i) => { if (isDeepStrictEqual(codec.decode(f), expectEnvelope(envs[i] as Envelope))) ok++ })
  t.equal(ok, frames.length, 'all kept frames still decode to their envelope')
  t.end()
})

t.test('re-entrant encode from a content getter', t => {
  let inner: Uint8Array | undefined
  const content = {
    a: 1,
    get b () { inner = codec.encode(base({ content: 'inner' })); return 'outer-b' }
  }
  const frame = codec.encode(base({ content }))
  t.same(codec.decode(frame).content, { a: 1, b: 'outer-b' })
  t.equal(codec.decode(inner as Uint8Array).content, 'inner')
  t.end()
})

t.test('unicode: astral characters, BOM, lone surrogates (become U+FFFD)', t => {
  const astral = '𝄞 music, 😀, 中文, العربية, \u0000'
  for (const s of [astral, '\uFEFFbom first', 'x'.repeat(100) + astral, astral.repeat(10)]) {
    const env = base({ source: s, resource: s, resourceVersion: s, content: s })
    t.ok(isDeepStrictEqual(codec.decode(codec.encode(env)), env), `round-trips exactly: ${s.slice(0, 20)}`)
    const nested = base({ content: { [s]: s } })
    t.ok(isDeepStrictEqual(codec.decode(codec.encode(nested)), nested))
  }
  const lone = 'a\uD800b\uDFFFc\uD83D'
  const back = codec.decode(codec.encode(base({ group: lone, content: { k: lone } })))
  t.equal(back.router.group, 'a\uFFFDb\uFFFDc\uFFFD')
  t.same(back.content, { k: 'a\uFFFDb\uFFFDc\uFFFD' })
  t.end()
})

t.test('content types beyond JSON (msgpackr semantics, moreTypes)', t => {
  const rt = (c: unknown): unknown => codec.decode(codec.encode(base({ content: c }))).content
  t.same(rt(new Date(1717171717123)), new Date(1717171717123))
  t.equal(rt(123n), 123n)
  t.equal(rt(2n ** 70n), 2n ** 70n)
  t.same(rt(new Set([1, 'a'])), new Set([1, 'a']))
  t.same(rt(new Uint16Array([1, 513])), new Uint16Array([1, 513]))
  t.same(rt(new Float64Array([1.5, -0])), new Float64Array([1.5, -0]))
  t.same(rt({ n: new Map([['a', 1]]) }), { n: { a: 1 } }, 'Map arrives as a plain object')
  t.same(rt([1, , 3]), [1, undefined, 3], 'holes arrive as undefined') // eslint-disable-line no-sparse-arrays
  t.same(rt({ f: () => 1, x: 1 }), { f: undefined, x: 1 }, 'functions become undefined')
  t.ok(Number.isNaN(rt(NaN)))
  t.equal(rt(-0), 0)
  const withProto = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as object
  const got = rt(withProto) as Record<string, unknown>
  t.equal(Object.getPrototypeOf(got), Object.prototype, 'no prototype pollution')
  t.ok('__proto_' in got, "msgpackr renames a '__proto__' key")
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.end()
})

t.test('encode validates the envelope and names the field', t => {
  const cases: Array<[string, (e: Envelope) => void]> = [
    ['router.group', e => { delete (e.router as Partial<typeof e.router>).group }],
    ['router.source', e => { (e.router as unknown as Record<string, unknown>).source = 5 }],
    ['router.operation', e => { (e.router as unknown as Record<string, unknown>).operation = null }],
    ['router.resource', e => { (e.router as unknown as Record<string, unknown>).resource = undefined }],
    ['router.destination', e => { (e.router as unknown as Record<string, unknown>).destination = 1 }],
    ['header.id', e => { (e.header as unknown as Record<string, unknown>).id = 42 }],
    ['header.timestamp', e => { e.header.timestamp = NaN }],
    ['header.timestamp', e => { e.header.timestamp = Infinity }],
    ['header.timestamp', e => { (e.header as unknown as Record<string, unknown>).timestamp = '1' }],
    ['header.ttl', e => { e.header.ttl = -Infinity }],
    ['header.sync', e => { (e.header as unknown as Record<string, unknown>).sync = 'yes' }],
    ['header.priority', e => { (e.header as unknown as Record<string, unknown>).priority = 'urgent' }],
    ['header.resourceVersion', e => { (e.header as unknown as Record<string, unknown>).resourceVersion = 7 }],
    ['header', e => { (e as unknown as Record<string, unknown>).header = null }],
    ['router', e => { (e as unknown as Record<string, unknown>).router = 'x' }],
    ['content', e => { e.content = Symbol('s') }],
    ['content', e => { const a: Record<string, unknown> = {}; a.self = a; e.content = a }]
  ]
  for (const [field, mutate] of cases) {
    const env = base({ content: { ok: 1 } })
    mutate(env)
    t.throws(() => codec.encode(env), { code: 'EF_INVALID_ENVELOPE', field }, field)
  }
  t.throws(() => codec.encode(null as unknown as Envelope), { code: 'EF_INVALID_ENVELOPE', field: 'envelope' })
  const throwing = base()
  Object.defineProperty(throwing.router, 'group', { get () { throw new Error('getter') } })
  t.throws(() => codec.encode(throwing), { code: 'EF_INVALID_ENVELOPE', field: 'envelope' }, 'a throwing getter')
  const throwingContent = base({ content: { get x () { throw new Error('getter') } } })
  t.throws(() => codec.encode(throwingContent), { code: 'EF_INVALID_ENVELOPE', field: 'content' }, 'a throwing content getter')
  // the codec still works after failed encodes
  t.ok(isDeepStrictEqual(codec.decode(codec.encode(base())).router, base().router))
  t.end()
})

t.test('maxContentBytes', t => {
  t.throws(() => createCodec({ maxContentBytes: -1 }), { code: 'EF_INVALID_OPTION' })
  const small = createCodec({ maxContentBytes: 100 })
  for (const c of [Buffer.alloc(101), 'x'.repeat(101), { s: 'x'.repeat(200) }]) {
    t.throws(() => small.encode(base({ content: c })), { code: 'EF_INVALID_ENVELOPE', field: 'content' })
    t.throws(() => small.decode(codec.encode(base({ content: c }))), { code: 'EF_DECODE' })
  }
  t.equal((small.decode(small.encode(base({ content: Buffer.alloc(100) }))).content as Buffer).length, 100)
  t.end()
})

// ---- hostile bytes -----------------------------------------------------------

const samples: Envelope[] = [
  base(),
  base({ content: { twin: { temp: { actual: { value: '23.4', metadata: { timestamp: 1717171717123 } } } }, n: [1, -2, 3.5, null, true] } }),
  base({ content: Buffer.from('binary content bytes'), parentId: 'p-1', ttl: 5000, sync: true, priority: 'high', destination: 'hub' }),
  base({ content: 'string content', id: 'custom-id', operation: 'my-op', resourceVersion: '42' }),
  base({ content: { when: new Date(1), big: 10n, set: new Set([1]) } }),
  base({ content: 'x'.repeat(300), resource: 'r'.repeat(200) })
]

t.test('truncated at every byte offset → typed error', t => {
  let n = 0
  for (const env of samples) {
    const frame = codec.encode(env)
    for (let k = 0; k < frame.byteLength; k++) {
      const { err } = decodeTyped(frame.subarray(0, k))
      if (err === undefined) t.fail(`prefix of ${k}/${frame.byteLength} bytes decoded`)
      n++
    }
  }
  t.pass(`${n} truncations all rejected with EF_DECODE / EF_INVALID_ENVELOPE`)
  t.end()
})

t.test('trailing bytes → DecodeError', t => {
  for (const env of samples) {
    const frame = Buffer.concat([codec.encode(env), Buffer.from([0])])
    t.throws(() => codec.decode(frame), { code: 'EF_DECODE' })
  }
  t.end()
})

t.test('wrong version byte → DecodeError naming the version', t => {
  const frame = Buffer.from(codec.encode(base()))
  t.equal(frame[0], WIRE_VERSION)
  for (const v of [0, 2, 0x80, 0x83, 0xff]) {
    frame[0] = v
    t.throws(() => codec.decode(frame), { code: 'EF_DECODE', message: new RegExp(`version ${v}\\b`) })
  }
  t.throws(() => codec.decode(Buffer.from([2])), { code: 'EF_DECODE', message: /version 2/ }, 'even when short')
  t.throws(() => codec.decode(new Uint8Array(0)), { code: 'EF_DECODE' })
  t.throws(() => codec.decode('not bytes' as unknown as Uint8Array), { code: 'EF_DECODE' })
  t.end()
})

t.test('oversize declared lengths are rejected without allocating', t => {
  const frame = Buffer.from(codec.encode(base({ id: 'abc', content: 'hi' })))
  const at = frame.indexOf('abc') - 1 // the id's varint length
  const huge = Buffer.concat([frame.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), frame.subarray(at + 1)])
  t.throws(() => codec.decode(huge), { code: 'EF_DECODE', message: /declares 4294967295 bytes/ })
  const tooLong = Buffer.concat([frame.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), frame.subarray(at + 1)])
  t.throws(() => codec.decode(tooLong), { code: 'EF_DECODE', message: /varint too long/ })
  // msgpack content declaring a 4 GiB array / string / map in a few bytes
  const head = codec.encode(base())
  for (const c of [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], [0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61, 1],
    [0xc6, 0xff, 0xff, 0xff, 0xff], [0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff]]) {
    const f = Buffer.concat([head, Buffer.from(c)])
    f[2] = ((f[2] as number) & ~0x0c) | (1 << 2) // content kind: msgpack
    t.throws(() => codec.decode(f), { code: 'EF_DECODE' }, Buffer.from(c).toString('hex'))
  }
  t.end()
})

t.test('semantically invalid values on the wire → InvalidEnvelopeError', t => {
  const frame = Buffer.from(codec.encode(base({ id: 'x' })))
  frame.writeDoubleBE(NaN, 4)
  t.throws(() => codec.decode(frame), { code: 'EF_INVALID_ENVELOPE', field: 'header.timestamp' })
  const f2 = Buffer.from(codec.encode(base({ id: 'x' })))
  const at = f2.indexOf('x', 12) - 1
  const empty = Buffer.concat([f2.subarray(0, at), Buffer.from([0]), f2.subarray(at + 2)])
  t.throws(() => codec.decode(empty), { code: 'EF_INVALID_ENVELOPE', field: 'header.id' })
  t.end()
})

t.test('random and mutated bytes: typed error or a valid envelope, never anything else', t => {
  const started = Date.now()
  const rnd = (n: number): number => Math.floor(Math.random() * n)
  const frames = samples.map(e => Buffer.from(codec.encode(e)))
  let decoded = 0
  let rejected = 0
  for (let i = 0; i < 10_000; i++) {
    let bytes: Buffer
    if (i % 2 === 0) {
      bytes = randomBytes(rnd(120))
      if (bytes.length > 0 && i % 4 === 0) bytes[0] = WIRE_VERSION // get past the version check
    } else {
      bytes = Buffer.from(frames[i % frames.length] as Buffer)
      for (let m = 1 + rnd(4); m > 0; m--) {
        const op = rnd(3)
        const at = rnd(bytes.length)
        if (op === 0) bytes[at] = rnd(256)
        else if (op === 1) bytes[at] = (bytes[at] as number) ^ (1 << rnd(8))
        else bytes = Buffer.concat([bytes.subarray(0, at), randomBytes(rnd(4)), bytes.subarray(at + rnd(4))])
      }
    }
    const { env } = decodeTyped(bytes)
    if (env === undefined) { rejected++; continue }
    decoded++
    // whatever decodes is a valid envelope
    if (typeof env.header.id !== 'string' || env.header.id === '' || !Number.isFinite(env.header.timestamp) ||
        typeof env.router.source !== 'string' || typeof env.router.group !== 'string' ||
        typeof env.router.operation !== 'string' || typeof env.router.resource !== 'string' ||
        (env.header.priority !== undefined && !PRIORITIES.includes(env.header.priority))) {
      t.fail(`invalid envelope decoded from ${bytes.toString('hex')}`)
    }
  }
  t.ok(rejected > 0 && decoded > 0, `${decoded} decoded, ${rejected} rejected, ${Date.now() - started} ms`)
  t.end()
})

t.test('a random-byte content section through msgpackr: typed errors only', t => {
  const head = Buffer.from(codec.encode(base()))
  head[2] = ((head[2] as number) & ~0x0c) | (1 << 2)
  let n = 0
  for (let i = 0; i < 3000; i++) {
    const body = randomBytes(1 + Math.floor(Math.random() * 40))
    if (i % 3 === 0) body[0] = 0xc7 + (i % 3) // ext types: msgpackr's extensions
    if (i % 5 === 0) body[0] = 0xd4 + (i % 5)
    decodeTyped(Buffer.concat([head, body]))
    n++
  }
  t.pass(`${n} random msgpack bodies`)
  t.end()
})

// ---- the fast msgpack subset agrees with msgpackr ---------------------------

t.test('fast msgpack path and msgpackr agree both ways', t => {
  const packr = new Packr({ useRecords: false, moreTypes: true })
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, structuredClone: false } as ConstructorParameters<typeof Unpackr>[0])
  const scratch = Buffer.alloc(64)
  let fastOnly = 0
  fc.assert(fc.property(content, v => {
    // ours → msgpackr
    let ours: Buffer | undefined
    try {
      const b = encodeFast(scratch, 0, 0, v)
      ours = Buffer.from(b.subarray(encodedStart, encodedEnd))
    } catch (err) {
      if (err !== GIVE_UP) throw err
    }
    if (ours !== undefined) {
      fastOnly++
      const viaMsgpackr = unpackr.unpack(ours) as unknown
      const viaFast = decodeFast(ours, 0, ours.length)
      if (!isDeepStrictEqual(viaMsgpackr, viaFast) || !isDeepStrictEqual(viaFast, expectNested(v))) return false
    }
    // msgpackr → ours
    const theirs = packr.pack(v)
    const want = unpackr.unpack(theirs) as unknown
    try {
      return isDeepStrictEqual(decodeFast(Buffer.from(theirs), 0, theirs.length), want)
    } catch (err) {
      if (err !== GIVE_UP) throw err
      return true
    }
  }), { numRuns: 1500 })
  t.ok(fastOnly > 100, `${fastOnly} values took the fast path`)
  t.end()
})

t.test('non-JSON content means what msgpackr (moreTypes) makes of it, both decoders agreeing', t => {
  const packr = new Packr({ useRecords: false, moreTypes: true })
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, structuredClone: false } as ConstructorParameters<typeof Unpackr>[0])
  class Point { constructor (public x: number, public y: string) {} }
  class Stamp { constructor (private readonly ms: number) {} toJSON (): string { return `t${this.ms}` } }
  const text = fc.string({ unit: 'binary', maxLength: 30 }) // msgpackr itself mangles lone surrogates
  const exotic = fc.oneof(
    fc.date({ noInvalidDate: true }), // the whole Date range: timestamp 32, 64 and 96
    fc.bigInt(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.int8Array(), fc.uint16Array(), fc.int32Array(), fc.float32Array(), fc.float64Array(), fc.bigInt64Array(), fc.uint8ClampedArray(),
    fc.uint8Array().map(u => u.buffer), fc.uint8Array().map(u => new DataView(u.buffer)),
    fc.array(fc.oneof(fc.integer(), text)).map(a => new Set(a)),
    fc.array(fc.tuple(text, fc.integer())).map(e => new Map(e)),
    text.map(m => new Error(m)), fc.constantFrom(/a+b/gi, /x/, /^\d{3}$/u),
    fc.tuple(fc.integer(), text).map(([x, y]) => new Point(x, y)),
    fc.integer().map(ms => new Stamp(ms)),
    fc.dictionary(text.filter(k => k !== '__proto__'), fc.integer()).map(d => Object.assign(Object.create(null) as object, d))
  )
  const { value } = fc.letrec<{ value: unknown }>(tie => ({
    value: fc.oneof({ depthSize: 'small' }, exotic, fc.integer(), text,
      fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(text.filter(k => k !== '__proto__'), tie('value'), { maxKeys: 4, noNullPrototype: true }))
  }))
  const scratch = Buffer.alloc(16)
  let fast = 0
  fc.assert(fc.property(value, v => {
    const reference = unpackr.unpack(packr.pack(v)) as unknown
    const got = codec.decode(codec.encode(base({ content: v }))).content
    if (!isDeepStrictEqual(got, reference)) return false
    try {
      const b = encodeFast(scratch, 0, 0, v)
      const ours = Buffer.from(b.subarray(encodedStart, encodedEnd))
      const viaMsgpackr = unpackr.unpack(ours) as unknown
      if (!isDeepStrictEqual(viaMsgpackr, reference)) return false
      fast++
      return isDeepStrictEqual(decodeFast(ours, 0, ours.length), viaMsgpackr)
    } catch (err) {
      if (err !== GIVE_UP) throw err
      return true
    }
  }), { numRuns: 1000 })
  t.ok(fast > 300, `${fast} values encoded by the fast path`)
  const invalid = codec.decode(codec.encode(base({ content: [new Date(NaN)] }))).content as Date[]
  t.ok(invalid[0] instanceof Date && Number.isNaN(invalid[0].getTime()), 'an invalid Date stays an invalid Date')
  t.end()
})

// ---- codec streams (src/codec/stream.ts) ------------------------------------

/** A sender and a receiver stream: the two ends of one channel. */
function streamPair (c = codec): { tx: EnvelopeCodecStream, rx: EnvelopeCodecStream } {
  const tx = c.createStream?.()
  const rx = c.createStream?.()
  if (tx === undefined || rx === undefined) throw new Error('codec without streams')
  return { tx, rx }
}

function twinContent (i: number): unknown {
  return {
    event_id: `evt-${i}`,
    timestamp: 1717171717000 + i,
    twin: {
      temperature: {
        expected: { value: String(20 + i), metadata: { timestamp: 1717171700000 + i } },
        actual: { value: String(21 + i), metadata: { timestamp: 1717171717123 + i } },
        optional: false,
        metadata: { type: 'float' }
      },
      status: { actual: { value: i % 2 === 0 ? 'online' : 'degraded' }, optional: true }
    }
  }
}

/** Decode through `rx`, failing the test on anything but a typed codec error. */
function streamDecodeTyped (rx: EnvelopeCodecStream, bytes: Uint8Array): { env?: Envelope, err?: EdgeFabricError } {
  try {
    return { env: rx.decode(bytes) }
  } catch (err) {
    if (!(err instanceof EdgeFabricError) || !TYPED.has(err.code)) {
      throw new Error(`untyped stream decode failure for ${Buffer.from(bytes).toString('hex').slice(0, 200)}: ${String(err)}`, { cause: err })
    }
    return { err }
  }
}

// Content drawn from a small pool of shapes, so shapes repeat within and across
// frames (defined, then referred to), nested in each other, mixed with the
// free-form content above.
const shapedEnvelopes = fc.array(fc.uniqueArray(key, { minLength: 1, maxLength: 7 }), { minLength: 1, maxLength: 6 }).chain(pool => {
  const { value } = fc.letrec<{ value: unknown }>(tie => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.array(tie('value'), { maxLength: 5 }),
      fc.constantFrom(...pool).chain(keys => fc.tuple(...keys.map(() => tie('value')))
        .map(vals => Object.fromEntries(keys.map((k, i) => [k, vals[i]])))),
      content)
  }))
  return fc.array(fc.tuple(envelopeArb, value).map(([env, v]) => ({ ...env, content: v })), { minLength: 1, maxLength: 30 })
})

t.test('stream round-trip property: many envelopes with mixed shapes through one stream pair', t => {
  let frames = 0
  let streamFrames = 0
  fc.assert(fc.property(shapedEnvelopes, envs => {
    const { tx, rx } = streamPair()
    // encoded ahead of decoding, as a transport queues them
    const encoded = envs.map(e => tx.encode(e))
    for (const [i, bytes] of encoded.entries()) {
      frames++
      if (((bytes[2] as number) & 0x40) !== 0) streamFrames++ // stream content
      const back = rx.decode(bytes)
      const want = expectEnvelope(envs[i] as Envelope)
      if (!isDeepStrictEqual(back, want)) {
        throw new Error(`frame ${i}: mismatch\n got  ${JSON.stringify(back, replacer)}\n want ${JSON.stringify(want, replacer)}`)
      }
    }
  }), { numRuns: 600 })
  t.ok(streamFrames > frames / 3, `${frames} frames, ${streamFrames} of them with stream content`)
  t.end()
})

t.test('stream frames mean what stateless frames mean, for non-JSON content too', t => {
  class Point { constructor (public x: number, public y: string) {} }
  const exotic = fc.oneof(
    fc.date(), fc.bigInt(), fc.uint16Array(), fc.float64Array(), fc.uint8Array(), fc.uint8Array().map(u => u.buffer),
    fc.array(fc.integer()).map(a => new Set(a)), fc.array(fc.tuple(fc.string(), fc.integer())).map(e => new Map(e)),
    fc.string().map(m => new Error(m)), fc.tuple(fc.integer(), fc.string()).map(([x, y]) => new Point(x, y)),
    fc.dictionary(key, fc.integer()).map(d => Object.assign(Object.create(null) as object, d)),
    fc.constant(JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as unknown), fc.constant(() => 1)
  )
  const { value } = fc.letrec<{ value: unknown }>(tie => ({
    value: fc.oneof({ depthSize: 'small' }, exotic, fc.integer(), str,
      fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(key, tie('value'), { maxKeys: 4, noNullPrototype: true }))
  }))
  const { tx, rx } = streamPair()
  let n = 0
  fc.assert(fc.property(value, v => {
    const env = base({ content: { a: v, b: [v, { c: v }] } })
    const want = codec.decode(codec.encode(env))
    // twice: the second time its shapes are defined on the stream
    for (let i = 0; i < 2; i++) {
      const got = rx.decode(tx.encode(env))
      if (!isDeepStrictEqual(got, want)) return false
      n++
    }
    return true
  }), { numRuns: 500 })
  t.equal(n, 1000)
  t.end()
})

t.test('first frames define shapes, later frames are smaller than stateless and JSON', t => {
  const { tx, rx } = streamPair()
  const sizes: number[] = []
  for (let i = 0; i < 6; i++) {
    const env = base({ content: twinContent(10 + 2 * i), resourceVersion: String(1000 + i) }) // same sizes
    const frame = tx.encode(env)
    t.equal(frame[0], STREAM_WIRE_VERSION)
    sizes.push(frame.byteLength)
    t.ok(isDeepStrictEqual(rx.decode(frame), env), `frame ${i} round-trips`)
  }
  const stateless = codec.encode(base({ content: twinContent(5), resourceVersion: '1005' })).byteLength
  const [first, second, third] = sizes as [number, number, number]
  t.ok(second < first, `frame 2 (${second} B, definitions) is smaller than frame 1 (${first} B, keys inline)`)
  t.ok(third < second && third < stateless * 0.6, `frame 3 (${third} B) refers to the shapes; stateless ${stateless} B`)
  t.strictSame(sizes.slice(3), [third, third, third], 'steady state')
  // a fresh receiver has not seen the definitions
  const late = streamPair().rx
  const fresh = base({ content: twinContent(9), source: 'new-source', group: 'new-group', resource: 'new-resource' }) // literal strings
  t.throws(() => late.decode(tx.encode(fresh)), { code: 'EF_DECODE', message: /unknown shape id/ })
  t.end()
})

t.test('stateless frames decode through a stream decoder; stream frames only through theirs', t => {
  const { tx, rx } = streamPair()
  const envs = samples.concat(samples, [base({ content: twinContent(1) }), base({ content: twinContent(2) })])
  for (const [i, env] of envs.entries()) {
    // interleaved on one stream: stateless frames (e.g. re-sent from storage) and stream frames
    const frame = i % 2 === 0 ? codec.encode(env) : tx.encode(env)
    t.ok(isDeepStrictEqual(rx.decode(frame), codec.decode(codec.encode(env))), `frame ${i}`)
  }
  const streamFrame = tx.encode(base({ content: twinContent(3) }))
  t.equal(streamFrame[0], STREAM_WIRE_VERSION)
  t.throws(() => codec.decode(streamFrame), { code: 'EF_DECODE', message: /stream frame/ })
  // content the stream subset leaves out, and non-object content: plain content in a stream frame
  for (const c of [new Map([['a', 1]]), { s: new Set([1]) }, new Uint16Array([1, 2]), 'text', Buffer.from('bytes'), undefined, JSON.parse('{"__proto__": 1}') as unknown]) {
    const env = base({ content: c })
    const frame = tx.encode(env)
    t.equal(frame[0], STREAM_WIRE_VERSION)
    t.equal((frame[2] as number) & 0x40, 0, `no stream content for ${Object.prototype.toString.call(c)}`)
    t.ok(isDeepStrictEqual(rx.decode(frame), codec.decode(codec.encode(env))))
  }
  t.end()
})

t.test('shape bound: beyond it new shapes are sent inline, old ones stay referenced', t => {
  const { tx, rx } = streamPair()
  const shaped = (i: number): Record<string, number> => ({ [`k${i}`]: i, common: 1 })
  const send = (c: unknown): number => {
    const env = base({ content: c })
    const frame = tx.encode(env)
    t.ok(isDeepStrictEqual(rx.decode(frame), env))
    return frame.byteLength
  }
  for (let i = 0; i < 300; i++) { send(shaped(i)); send(shaped(i)) } // the second sighting defines
  const old = send(shaped(5))
  const beyond = send(shaped(299))
  t.ok(beyond >= old + 'k299'.length + 'common'.length, `shape 299 sent inline (${beyond} B), shape 5 by id (${old} B)`)
  t.equal(send(shaped(299)), beyond, 'and stays inline')
  t.end()
})

t.test('shape bounds: long keys stay inline, definitions stop at the byte budget', t => {
  const { tx, rx } = streamPair()
  const send = (c: unknown): number => {
    const env = base({ content: c })
    const frame = tx.encode(env)
    t.ok(isDeepStrictEqual(rx.decode(frame), env))
    return frame.byteLength
  }
  const long = { ['k'.repeat(65)]: 1 }
  send(0)
  send(0) // router strings defined: frame sizes below are content only
  t.equal(send(long), send(long), 'a 65-character key is never defined')
  t.ok(send(long) > 65)
  // 60-character keys: about 61 definition bytes each, 32 KiB hold ~530 of them
  const wide = (i: number): Record<string, number> => Object.fromEntries([0, 1, 2].map(j => [`${i}-${j}-`.padEnd(60, 'x'), j]))
  const sizes: number[] = []
  for (let i = 0; i < 200; i++) { send(wide(i)); send(wide(i)); sizes.push(send(wide(i))) }
  t.ok((sizes[0] as number) < 60, `early shapes by id (${sizes[0]} B)`)
  t.ok((sizes[199] as number) > 180, `late shapes inline (${sizes[199]} B)`)
  t.end()
})

t.test('cancel(): a frame that is not sent does not leave the peer behind', t => {
  const { tx, rx } = streamPair()
  const env = base({ content: twinContent(1) })
  rx.decode(tx.encode(env)) // first sighting
  tx.encode(env) // would define the shapes...
  tx.cancel() // ...but is never sent
  for (let i = 0; i < 3; i++) t.ok(isDeepStrictEqual(rx.decode(tx.encode(env)), env), `frame ${i} after the cancelled one`)
  // a failed encode defines nothing either
  const bad = base({ content: { x: { y: 1, z: Symbol('no') } } })
  t.throws(() => tx.encode(bad), { code: 'EF_INVALID_ENVELOPE' })
  t.throws(() => tx.encode(bad), { code: 'EF_INVALID_ENVELOPE' })
  const good = base({ content: { x: { y: 1, z: 2 } } })
  for (let i = 0; i < 3; i++) t.ok(isDeepStrictEqual(rx.decode(tx.encode(good)), good))
  t.end()
})

t.test('re-entrant encode on the same stream gives a stateless frame', t => {
  const { tx, rx } = streamPair()
  let inner: Uint8Array | undefined
  const content = { a: { q: 1 }, get b () { inner = tx.encode(base({ content: { a: { q: 2 } } })); return 'outer' } }
  const outer = tx.encode(base({ content }))
  t.equal((inner as Uint8Array)[0], WIRE_VERSION)
  // the inner frame reaches the peer first (a transport queues it first)
  t.same(rx.decode(inner as Uint8Array).content, { a: { q: 2 } })
  t.same(rx.decode(outer).content, { a: { q: 1 }, b: 'outer' })
  t.end()
})

t.test('shapes: recursive and nested same-shape objects, awkward keys, generated constructors', t => {
  const { tx, rx } = streamPair()
  const tree = (d: number): unknown => ({ v: d, kids: d === 0 ? [] : [tree(d - 1), tree(d - 1)] })
  const keys = ['"', '\\', '\u2028', '</script>', 'constructor', 'toString', '0', '10', '', ' ', '${x}', '`', '中文', '😀', 'a\uD800', 'hasOwnProperty']
  const odd = Object.fromEntries(keys.map((k, i) => [k, i]))
  for (let i = 0; i < 8; i++) { // > COMPILE_AFTER uses of every shape
    for (const c of [tree(4), odd, { o: odd, list: [odd, odd] }]) {
      const env = base({ content: c })
      t.ok(isDeepStrictEqual(rx.decode(tx.encode(env)), expectEnvelope(env)), `round ${i}`)
    }
  }
  const back = rx.decode(tx.encode(base({ content: odd }))).content as Record<string, unknown>
  t.equal(Object.getPrototypeOf(back), Object.prototype)
  t.strictSame(Object.keys(back), Object.keys(expectNested(odd) as object))
  t.end()
})

/** A stream frame of `tx` whose stream content is `body` (by default, from a fresh stream: literal strings only). */
function streamFrame (body: number[], tx = streamPair().tx): Buffer {
  const head = Buffer.from(tx.encode(base({ content: 0 }))) // content: the last byte
  if (((head[2] as number) & ~0x10) !== 0x44) throw new Error('expected msgpack stream content (and a UUID id) in meta')
  return Buffer.concat([head.subarray(0, head.length - 1), Buffer.from(body)])
}

t.test('malformed stream content → DecodeError', t => {
  const k = (s: string): number[] => [s.length, ...Buffer.from(s)]
  const cases: Array<[string, number[], RegExp]> = [
    ['unknown id', [0xc1, 0], /unknown shape id 0/],
    ['zero keys', [0xc1, 0xfe, 0], /0 keys/],
    ['too many keys', [0xc1, 0xfe, 65, ...Array<number>(200).fill(1)], /65 keys/],
    ['duplicate key', [0xc1, 0xfe, 2, ...k('a'), ...k('a'), 1, 2], /duplicate/],
    ['__proto__', [0xc1, 0xfe, 1, ...k('__proto__'), 1], /./],
    ['inline __proto__', [0xc1, 0xff, 1, ...k('__proto__'), 1], /./],
    ['inline without keys', [0xc1, 0xff, 0], /without keys/],
    ['key count beyond the frame', [0xc1, 0xff, 0xff, 0xff, 0x03, 1], /keys/],
    ['missing value', [0xc1, 0xfe, 2, ...k('a'), ...k('b'), 1], /./],
    ['bad UTF-8 key', [0xc1, 0xfe, 1, 1, 0xff, 1], /./],
    ['msgpack outside the subset', [0xca, 0, 0, 0, 0], /malformed stream frame/],
    ['trailing bytes', [0x01, 0x02], /./]
  ]
  for (const [name, body, message] of cases) {
    const rx = streamPair().rx
    t.throws(() => rx.decode(streamFrame(body)), { code: 'EF_DECODE', message }, name)
  }
  // a definition beyond the bound
  const { tx, rx } = streamPair()
  for (let i = 0; i < 300; i++) {
    const env = base({ content: { [`k${i}`]: i } })
    rx.decode(tx.encode(env))
    rx.decode(tx.encode(env))
  }
  t.throws(() => rx.decode(streamFrame([0xc1, 0xfe, 1, ...k('new'), 1], tx)), { code: 'EF_DECODE', message: /more than 254 shapes/ })
  // keys too long to define, and definitions beyond the stream's byte budget
  const longKey = [0xc1, 0x01, ...Array<number>(193).fill(0x61)]
  t.throws(() => streamPair().rx.decode(streamFrame([0xc1, 0xfe, 1, ...longKey, 1])), { code: 'EF_DECODE', message: /193-byte key/ })
  t.ok(streamPair().rx.decode(streamFrame([0xc1, 0xff, 1, ...longKey, 1])), 'inline, a long key is fine')
  const big = (d: number): number[] => {
    const keys: number[] = []
    for (let i = 0; i < 64; i++) keys.push(0xc0, 0x01, d, i, ...Array<number>(190).fill(0x62))
    return [0xc1, 0xfe, 64, ...keys, ...Array<number>(64).fill(1)]
  }
  const rx3 = streamPair().rx
  rx3.decode(streamFrame(big(1)))
  rx3.decode(streamFrame(big(2)))
  t.throws(() => rx3.decode(streamFrame(big(3))), { code: 'EF_DECODE', message: /beyond 32768 bytes/ })
  t.end()
})

t.test('router strings: remembered the second time, then sent as a number', t => {
  const { tx, rx } = streamPair()
  const env = (i: number, resource = 'default/device/sensor-0042'): Envelope =>
    base({ id: `id-${i}`, content: 'c', resource, destination: 'cloud/dest', operation: 'custom-op' })
  const sizes: number[] = []
  for (let i = 0; i < 4; i++) {
    const e = env(i)
    const frame = tx.encode(e)
    sizes.push(frame.byteLength)
    t.ok(isDeepStrictEqual(rx.decode(frame), e))
  }
  const strings = 'edge-1/devicetwin'.length + 'cloud/dest'.length + 'twin'.length + 'custom-op'.length + 'default/device/sensor-0042'.length
  t.equal(sizes[0], sizes[1], 'first and second sighting: literals')
  t.equal((sizes[1] as number) - (sizes[2] as number), strings, 'later: one byte per string instead of length + bytes')
  t.equal(sizes[2], sizes[3])
  // a one-off string stays a literal; the others stay numbers
  const other = env(9, 'default/device/other')
  t.equal(tx.encode(other).byteLength, (sizes[2] as number) + 'default/device/other'.length, 'a new resource is a literal')
  // a fresh decoder does not know the numbers
  t.throws(() => streamPair().rx.decode(tx.encode(env(10))), { code: 'EF_DECODE', message: /unknown string id/ })
  t.end()
})

t.test('router strings: bounds', t => {
  const { tx, rx } = streamPair()
  const long = 'r'.repeat(300) // too long to remember
  for (let i = 0; i < 300; i++) {
    const e = base({ content: i, resource: `res-${i}`, group: long })
    rx.decode(tx.encode(e))
    t.ok(isDeepStrictEqual(rx.decode(tx.encode(e)), e))
  }
  const early = tx.encode(base({ content: 1, resource: 'res-5', group: long })).byteLength
  const late = tx.encode(base({ content: 1, resource: 'res-299', group: long })).byteLength
  t.equal(late - early, 'res-299'.length, 'beyond the bound a string stays a literal')
  // hostile definitions
  const rx2 = streamPair().rx
  const frame = Buffer.from(streamPair().tx.encode(base({ content: 0, source: 'a' })))
  const at = 12 + 16 // after the fixed header and a UUID id: source, x = 1 * 4 (literal, 1 byte, not remembered)
  t.equal(frame[at], 0x04)
  t.equal(frame[at + 1], 0x61)
  frame[at] = 0x03 // reference to string 1
  t.throws(() => rx2.decode(frame), { code: 'EF_DECODE', message: /unknown string id 1/ })
  frame[at] = 0x06 // remembered literal: fine
  t.equal(rx2.decode(frame).router.source, 'a')
  t.end()
})

t.test('random mutations of stream frames: typed errors or valid envelopes', t => {
  const rnd = (n: number): number => Math.floor(Math.random() * n)
  let rejected = 0
  for (let i = 0; i < 1500; i++) {
    const { tx, rx } = streamPair()
    const env = base({ content: i % 2 === 0 ? twinContent(i) : { list: [{ a: 1, b: 'x' }, { a: 2, b: 'y' }], n: i } })
    const sighting = i % 3 // mutate the first (inline), second (definitions) or a later (references) frame
    for (let s = 0; s < sighting; s++) rx.decode(tx.encode(env))
    let bytes = Buffer.from(tx.encode(env))
    for (let m = 1 + rnd(3); m > 0; m--) {
      const at = 12 + rnd(bytes.length - 12) // mostly the content
      if (m % 2 === 0) bytes[at] = rnd(256)
      else bytes = Buffer.concat([bytes.subarray(0, at), randomBytes(rnd(3)), bytes.subarray(at + rnd(3))])
    }
    if (streamDecodeTyped(rx, bytes).err !== undefined) rejected++
  }
  t.ok(rejected > 0, `${rejected} of 1500 mutated frames rejected, the rest decoded`)
  t.end()
})
