/**
 * decodeOwned() (issue 16, drain): decode() for bytes the caller hands over.
 * It must decode exactly what decode() decodes and fail the same way; only
 * binary content may be a view of the input. decode() keeps copying, also
 * right after a decodeOwned() that threw.
 */
import t from 'tap'
import { createCodec, defaultCodec } from '../../src/codec/codec.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { DecodeError } from '../../src/errors.js'

const owned = (bytes: Uint8Array): Envelope => (defaultCodec.decodeOwned as (b: Uint8Array) => Envelope).call(defaultCodec, bytes)
const fresh = (e: Envelope): Uint8Array => Uint8Array.from(defaultCodec.encode(e))

t.test('the default codec offers it; every content kind decodes as with decode()', async t => {
  t.type(defaultCodec.decodeOwned, 'function')
  t.type(createCodec().decodeOwned, 'function')
  const contents: unknown[] = [undefined, 'text', 'ünïcödé', Buffer.from('abc'), new Uint8Array(0), { a: 1, b: [Buffer.from('x'), 'y'] }, [1, 2, 3], 42]
  for (const content of contents) {
    const bytes = fresh(newMessage({ source: 's', group: 'g', operation: 'update', resource: 'r', content, resourceVersion: '7', ttl: 1000 }))
    t.same(owned(Uint8Array.from(bytes)), defaultCodec.decode(bytes), `content ${JSON.stringify(content)}`)
  }
})

t.test('binary content is a view of the handed-over bytes; decode() still copies', async t => {
  const payload = Buffer.alloc(256, 0x61)
  const bytes = fresh(newMessage({ source: 's', group: 'g', operation: 'update', resource: 'r', content: payload }))
  const a = owned(bytes).content as Buffer
  t.ok(Buffer.isBuffer(a), 'a Buffer, as decode() gives')
  t.equal(a.buffer, bytes.buffer, 'a view of the input')
  t.ok(a.byteOffset >= bytes.byteOffset && a.byteOffset + a.byteLength <= bytes.byteOffset + bytes.byteLength, 'inside it')
  const b = defaultCodec.decode(bytes).content as Buffer
  bytes.fill(0)
  t.same(b, payload, 'decode() content does not change with the input')
})

t.test('a throwing decodeOwned() leaves decode() copying', async t => {
  const bad = Uint8Array.from([1, 2, 3])
  t.throws(() => owned(bad), DecodeError)
  t.throws(() => defaultCodec.decode(bad), DecodeError, 'fails the same way')
  const bytes = fresh(newMessage({ source: 's', group: 'g', operation: 'update', resource: 'r', content: Buffer.from('keep') }))
  const c = defaultCodec.decode(bytes).content as Buffer
  bytes.fill(0)
  t.equal(c.toString(), 'keep', 'decode() after the failure copied')
})
