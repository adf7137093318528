/**
 * The edgefabric engine's bulk path (issue 18, clean bulk at 50 ms RTT, CPU per byte):
 * writes gathered by the engine instead of copied in JS (StreamWriter → EngineStream.writev
 * → C_WRITEV), events handed to JS as an external buffer, several reads in flight per
 * streaming stream. What must not change: the bytes, their order, and that a receiver that
 * stops reading still stops the sender (the compliance suite's backpressure test).
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { newMessage } from '../../src/codec/envelope.js'
import { createQuicTransport, generateQuicIdentity } from '../../src/transport/quic.js'
import { edgefabricAvailable } from '../../src/transport/quic-engine.js'
import { engineChannel } from '../../src/transport/quic-engine-addon.js'
import { IO_CHUNK, StreamWriter, T_DATA, frameHead } from '../../src/transport/quic-wire.js'
import type { NativeStream } from '../../src/transport/quic-native.js'

const avail = edgefabricAvailable()
const skip = avail.ok ? false : avail.reason

/** A stream that records what it is asked to write (the collaborator of StreamWriter; the writer is under test). */
class GatherRecorder {
  readonly writes: Uint8Array[][] = []
  readonly plain: Uint8Array[] = []
  async writev (parts: readonly Uint8Array[]): Promise<void> { this.writes.push([...parts]) }
  async write (data: Uint8Array): Promise<void> { this.plain.push(data) }
  async finishWrite (): Promise<void> {}
}

function concat (parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts.map(p => Buffer.from(p.buffer, p.byteOffset, p.byteLength)))
}

t.test('StreamWriter hands big pieces to a gathering stream by reference and copies only runs of small ones', async t => {
  const rec = new GatherRecorder()
  const w = new StreamWriter(rec as unknown as NativeStream, 1 << 30, () => {}, err => { throw err })
  const big = randomBytes(150 * 1024)
  const smalls = Array.from({ length: 40 }, (_, i) => randomBytes(10 + i))
  const medium = randomBytes(3000)
  const expected: Uint8Array[] = []
  w.enqueue(T_DATA, big)
  expected.push(frameHead(T_DATA, big.byteLength), big)
  for (const s of smalls) { w.enqueue(T_DATA, s); expected.push(frameHead(T_DATA, s.byteLength), s) }
  w.enqueue(T_DATA, medium)
  expected.push(frameHead(T_DATA, medium.byteLength), medium)
  await w.idle()
  t.equal(rec.plain.length, 0, 'nothing went through the copying write()')
  t.ok(concat(rec.writes.flat()).equals(concat(expected)), 'the stream got exactly the framed bytes, in order')
  for (const parts of rec.writes) {
    const n = parts.reduce((a, p) => a + p.byteLength, 0)
    t.ok(n > 0 && n <= IO_CHUNK, `a write of ${n} B (≤ IO_CHUNK)`)
  }
  const byRef = rec.writes.flat().filter(p => p.buffer === big.buffer)
  t.ok(byRef.length >= 2, 'the 150 KiB body went out as views of its own buffer (no copy)')
  t.equal(byRef.reduce((a, p) => a + p.byteLength, 0), big.byteLength, 'all of it')
  // 40 small frames (heads + bodies: 80 pieces) went out coalesced, not as 80 parts.
  t.ok(rec.writes.flat().length <= 10, `${rec.writes.flat().length} parts in all`)
  t.equal(w.bufferedBytes, 0)
})

t.test('64 KiB envelopes arrive byte-exact through gathered writes and read-ahead', { skip }, async t => {
  const tr = createQuicTransport({ engine: 'edgefabric' })
  const id = await generateQuicIdentity()
  const N = 160
  const recv = createHash('sha256')
  let got = 0
  let onAll: () => void = () => {}
  const all = new Promise<void>(resolve => { onAll = resolve })
  const l = await tr.listen(new URL('quic://127.0.0.1:0'), {
    identity: id,
    onConnection: c => c.on('message', env => {
      recv.update(env.content as Uint8Array)
      if (++got === N) onAll()
    })
  })
  t.teardown(() => l.close())
  const conn = await tr.dial(new URL(l.url), { expectedRemoteIdentity: l.identity as string })
  const sent = createHash('sha256')
  const ch = engineChannel()
  const in0 = ch.batchesIn
  for (let i = 0; i < N; i++) {
    const content = randomBytes(64 * 1024)
    sent.update(content)
    const env = newMessage({ source: 't', group: 'g', operation: 'upload', resource: `r/${i}`, content, priority: 'bulk' })
    if (!conn.send(env, { channel: 'bulk' })) await conn.onDrain()
  }
  let timer: NodeJS.Timeout | undefined
  await Promise.race([all, new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`bulk: ${got}/${N} after 60 s`)), 60_000) })])
  clearTimeout(timer)
  t.equal(got, N, `${N} envelopes of 64 KiB arrived`)
  t.equal(recv.digest('hex'), sent.digest('hex'), 'their contents, in order, byte for byte')
  t.ok(ch.batchesIn > in0, 'through engine event batches')
  await conn.close()
})
