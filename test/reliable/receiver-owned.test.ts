/**
 * The receiver decodes its records with decodeOwned() (issue 16, drain): the
 * application's binary content may be a view of the record. A versioned
 * record's bytes are stored with the resource at the commit, after the
 * hand-off, so an application that changes the content it was handed must
 * not change what is stored (the receiver gives it a copy then). Real LMDB
 * store in a test dir.
 */
import t from 'tap'
import { defaultCodec } from '../../src/codec/codec.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { ReliableReceiver } from '../../src/reliable/receiver.js'
import { systemClock } from '../../src/util/clock.js'

t.test('an application scribbling on the content it was handed does not change the stored resource', async t => {
  const store = await LmdbStore.open(t.testdir(), { durability: 'relaxed' })
  t.teardown(async () => { await store.close() })
  const handed: Buffer[] = []
  const r = new ReliableReceiver({
    peer: 'cloud', source: 'edge', store, clock: systemClock, codec: defaultCodec,
    deliver: (env: Envelope) => {
      const c = env.content as Buffer
      handed.push(Buffer.from(c))
      c.fill(0x7a) // the application reuses the buffer it was given
      return 'ok'
    },
    sendControl: () => {}
  })
  const versioned = Uint8Array.from(defaultCodec.encode(newMessage({ source: 'cloud', group: 'app', operation: 'update', resource: 'twin/a', resourceVersion: '3', content: Buffer.from('original state') })))
  const plain = Uint8Array.from(defaultCodec.encode(newMessage({ source: 'cloud', group: 'app', operation: 'update', resource: 'x', content: Buffer.from('event') })))
  r.onData({ s: [1, 2], m: [versioned, plain] })
  await r.idle()
  t.same(handed.map(b => b.toString()), ['original state', 'event'], 'both handed over intact')
  const stored = store.getResource('twin/a')
  t.ok(stored?.bytes !== undefined, 'the resource is stored')
  t.equal(defaultCodec.decode(stored?.bytes as Uint8Array).content?.toString(), 'original state', 'what was stored is what was sent')
  t.equal(store.receivedSeq('cloud'), 2)
})
