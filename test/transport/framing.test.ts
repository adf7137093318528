/**
 * Length-prefix framing (src/transport/framing.ts): reassembly across any
 * chunking, many frames per chunk, the size limit enforced on the header
 * alone (before any payload is buffered), zero length, poisoning.
 */
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame, frameHeader } from '../../src/transport/framing.js'
import { DecodeError, FrameTooLargeError } from '../../src/errors.js'

const payloads = [Buffer.from([7]), randomBytes(5), randomBytes(300), Buffer.from('x'), randomBytes(70000)]
const stream = Buffer.concat(payloads.map(p => encodeFrame(p)))

function same (t: Tap.Test, got: Uint8Array[], want: Uint8Array[], msg: string): void {
  t.equal(got.length, want.length, `${msg}: frame count`)
  t.ok(got.every((g, i) => Buffer.compare(g, want[i] as Uint8Array) === 0), `${msg}: frame bytes`)
}

t.test('header encoding', t => {
  t.same([...frameHeader(0x01020304)], [1, 2, 3, 4], 'big-endian length')
  const f = encodeFrame(Buffer.from('abc'))
  t.same([...f], [0, 0, 0, 3, 0x61, 0x62, 0x63])
  t.equal(FRAME_HEADER_BYTES, 4)
  t.end()
})

t.test('a stream split in two at every byte boundary', t => {
  let ok = 0
  for (let k = 0; k <= stream.length; k += k < 400 ? 1 : 997) {
    const d = new FrameDecoder(1 << 20)
    const got = [...d.push(stream.subarray(0, k)), ...d.push(stream.subarray(k))]
    if (got.length === payloads.length && got.every((g, i) => Buffer.compare(g, payloads[i] as Buffer) === 0) && d.bufferedBytes === 0) ok++
    else t.fail(`split at ${k}`)
  }
  t.ok(ok > 400, `${ok} split points`)
  t.end()
})

t.test('one byte at a time', t => {
  const small = Buffer.concat(payloads.slice(0, 4).map(p => encodeFrame(p)))
  const d = new FrameDecoder(1024)
  const got: Uint8Array[] = []
  let most = 0
  for (let i = 0; i < small.length; i++) {
    got.push(...d.push(small.subarray(i, i + 1)))
    most = Math.max(most, d.bufferedBytes)
  }
  t.ok(most <= FRAME_HEADER_BYTES + 300, `never holds more than one frame (${most} bytes)`)
  same(t, got, payloads.slice(0, 4), 'byte by byte')
  t.equal(d.bufferedBytes, 0)
  t.end()
})

t.test('random chunkings (property)', t => {
  fc.assert(fc.property(
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 20 }),
    fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
    (frames, cuts) => {
      const bytes = Buffer.concat(frames.map(f => encodeFrame(f)))
      const d = new FrameDecoder(256)
      const got: Uint8Array[] = []
      let at = 0
      for (let i = 0; at < bytes.length; i++) {
        const n = cuts[i % cuts.length] as number
        got.push(...d.push(bytes.subarray(at, at + n)))
        at += n
      }
      return got.length === frames.length && got.every((g, i) => Buffer.compare(g, frames[i] as Uint8Array) === 0) && d.bufferedBytes === 0
    }), { numRuns: 300 })
  t.pass()
  t.end()
})

t.test('many frames in one chunk', t => {
  const many = Array.from({ length: 2000 }, (_, i) => Buffer.from(`frame ${i}`))
  const d = new FrameDecoder(64)
  same(t, d.push(Buffer.concat(many.map(p => encodeFrame(p)))), many, '2000 frames')
  t.equal(d.bufferedBytes, 0)
  t.end()
})

t.test('an empty chunk is harmless', t => {
  const d = new FrameDecoder(64)
  t.same(d.push(new Uint8Array(0)), [])
  same(t, d.push(encodeFrame(Buffer.from('a'))), [Buffer.from('a')], 'after an empty chunk')
  t.end()
})

t.test('oversize length is rejected from the header alone, before buffering the payload', t => {
  for (const declared of [0xffffffff, 1025]) {
    const d = new FrameDecoder(1024)
    const header = frameHeader(declared)
    t.same(d.push(header.subarray(0, 3)), [], 'three header bytes: waiting')
    let err: unknown
    try { d.push(header.subarray(3)) } catch (e) { err = e }
    t.ok(err instanceof FrameTooLargeError, 'the fourth header byte throws')
    t.match(err, { code: 'EF_FRAME_TOO_LARGE', size: declared, limit: 1024 })
    t.equal(d.bufferedBytes, 0, 'nothing kept')
  }
  const d = new FrameDecoder(1024)
  const exact = randomBytes(1024)
  same(t, d.push(encodeFrame(exact)), [exact], 'exactly the limit passes')
  t.end()
})

t.test('zero length → DecodeError', t => {
  const d = new FrameDecoder(1024)
  t.throws(() => d.push(Buffer.concat([encodeFrame(Buffer.from('ok')), frameHeader(0)])), DecodeError)
  t.end()
})

t.test('poisoned after an error: every later push throws the same error', t => {
  for (const bad of [frameHeader(0), frameHeader(5000)]) {
    const d = new FrameDecoder(1024)
    let first: unknown
    try { d.push(bad) } catch (e) { first = e }
    t.ok(first instanceof Error)
    for (const next of [encodeFrame(Buffer.from('valid')), new Uint8Array(0)]) {
      let again: unknown
      try { d.push(next) } catch (e) { again = e }
      t.equal(again, first, 'same error')
    }
    t.equal(d.bufferedBytes, 0, 'buffers released')
  }
  t.end()
})

t.test('frames from one chunk are views; frames across chunks are assembled copies', t => {
  const chunk = Buffer.concat([encodeFrame(Buffer.from('abc')), encodeFrame(Buffer.from('defg'))])
  const d = new FrameDecoder(64)
  const [a] = d.push(chunk.subarray(0, 7))
  t.equal(a?.buffer, chunk.buffer, 'zero-copy when the frame is inside one chunk')
  const [b] = d.push(chunk.subarray(7, 9).slice()).concat(d.push(chunk.subarray(9).slice()))
  t.equal(Buffer.from(b as Uint8Array).toString(), 'defg')
  t.end()
})
