/**
 * The transport compliance suite (as aedes-persistence's abstract.js does for
 * stores): every transport runs exactly this, from its own test file, with a
 * harness describing how to listen, dial and pin identities. A capability a
 * transport lacks is skipped with the reason printed, never silently.
 */
import type { Test } from 'tap'
import { certificateFingerprint, generateCertificateAuthority, issueCertificate } from '../../src/identity/tls.js'
import { dial, listen } from '../../src/transport/index.js'
import type { EnvelopeCodec } from '../../src/codec/codec.js'
import type { Envelope } from '../../src/codec/envelope.js'
import type { Channel, CloseInfo } from '../../src/transport/types.js'
import {
  collect, eventually, makePair, msg, netHandles, sendAll, spawnPeer, teardown, withTimeout, type ComplianceHarness
} from './compliance-helpers.js'
import { forgeChain } from './forged-cert.js'

export type { ComplianceHarness } from './compliance-helpers.js'

const CODE = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code

export function runCompliance (t: Test, h: ComplianceHarness): void {
  const warnings: string[] = []
  const rejections: unknown[] = []
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`) }
  const onRejection = (r: unknown): void => { rejections.push(r) }
  process.on('warning', onWarning)
  process.on('unhandledRejection', onRejection)
  const baseHandles = netHandles()

  t.test('handshake and identity', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    t.equal(pair.client.status, 'open')
    t.equal(pair.server.status, 'open')
    t.equal(pair.client.direction, 'outbound')
    t.equal(pair.server.direction, 'inbound')
    if (h.skip?.identity !== undefined) {
      t.comment(`identity pinning skipped: ${h.skip.identity}`)
      return
    }
    t.ok(pair.listener.identity, 'listener has an identity')
    t.equal(pair.client.remoteIdentity, pair.listener.identity, 'dialer sees the listener identity')
    const err = await dial(pair.listener.url, { ...h.dialOptions?.(pair.listener), expectedRemoteIdentity: h.wrongIdentity ?? 'not-the-identity' })
      .then(c => { c.abort(new Error('should not connect')); return undefined }, (e: unknown) => e)
    t.equal(CODE(err), 'EF_IDENTITY_MISMATCH', 'wrong identity is refused')
  })

  // The gap that hid EF_HUB_IDENTITY_MISMATCH over https://: only exact leaf pins were
  // tested, while join tokens pin the hub's CA. And a CA pin must not be satisfied by a
  // copy of the (public) CA certificate appended to someone else's leaf.
  t.test('identity: pinning the issuing CA, and only a CA that signed the leaf', async t => {
    if (h.caPinning === undefined) {
      t.comment(`CA pinning skipped: ${h.skip?.caPinning ?? 'the harness names no CA (not a certificate-chain transport)'}`)
      return
    }
    const ca = h.caPinning
    const caFp = certificateFingerprint(ca.cert)
    const names = ['localhost', '127.0.0.1']
    // ≤ 14 days: WebTransport pins only such leaves.
    const leaf = await issueCertificate(ca, { commonName: 'localhost', altNames: names, days: 2 })
    const pair = await makePair(h, { identity: { cert: leaf.cert + ca.cert, key: leaf.key } }, { expectedRemoteIdentity: caFp })
    t.teardown(() => teardown(pair))
    t.equal(pair.client.remoteIdentity, leaf.fingerprint, 'pinning the CA connects; remoteIdentity is the verified leaf')

    const refused = async (cert: string, key: string, what: string): Promise<void> => {
      let accepted = 0
      const l = await listen(h.listenUrl, { ...(await h.listenOptions?.()), identity: { cert, key }, onConnection: c => { accepted++; c.abort(new Error('impostor')) } })
      try {
        const err = await dial(l.url, { ...h.dialOptions?.(l), expectedRemoteIdentity: caFp })
          .then(c => { c.abort(new Error('should not connect')); return undefined }, (e: unknown) => e)
        t.equal(CODE(err), 'EF_IDENTITY_MISMATCH', `${what}: refused`)
        t.equal(accepted, 0, `${what}: no connection reached the listener`)
      } finally {
        await l.close(100)
      }
    }
    const forged = await forgeChain(ca.cert, names)
    await refused(forged.cert, forged.key, 'own leaf + copy of the pinned CA')
    const otherCa = await generateCertificateAuthority({ commonName: 'another CA', days: 2 })
    const foreign = await issueCertificate(otherCa, { commonName: 'localhost', altNames: names, days: 2 })
    await refused(foreign.cert + otherCa.cert, foreign.key, 'leaf of another CA')
  })

  t.test('both directions, ordering within a channel', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    const n = 1000
    const atServer = collect(pair.server, n)
    const atClient = collect(pair.client, n)
    await Promise.all([
      sendAll(pair.client, Array.from({ length: n }, (_, i) => msg(i))),
      sendAll(pair.server, Array.from({ length: n }, (_, i) => msg(i, { seq: i, from: 'server' })))
    ])
    const [s, c] = await Promise.all([atServer, atClient])
    t.same(s.map(m => (m.env.content as { seq: number }).seq), Array.from({ length: n }, (_, i) => i), 'client→server in order')
    t.same(c.map(m => (m.env.content as { seq: number }).seq), Array.from({ length: n }, (_, i) => i), 'server→client in order')
    t.equal((c[0]?.env.content as { from: string }).from, 'server')
    t.ok(pair.client.stats.bytesSent > 0 && pair.server.stats.bytesReceived > 0, 'byte counters move')
    t.equal(pair.client.stats.messagesSent, n)
    t.equal(pair.server.stats.messagesReceived, n)
  })

  t.test('8 MiB envelope', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    const big = new Uint8Array(8 * 1024 * 1024)
    for (let i = 0; i < big.length; i += 4099) big[i] = i & 0xff
    const got = collect(pair.server, 1, 30_000)
    pair.client.send(msg(1, big, 'bulk'))
    const [m] = await got
    const content = m?.env.content as Uint8Array
    t.equal(content.byteLength, big.byteLength)
    t.ok(Buffer.from(content).equals(Buffer.from(big)), 'content intact')
    t.equal(m?.channel, 'bulk')
  })

  t.test('10k small envelopes pipelined', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    const n = 10_000
    const got = collect(pair.server, n, 60_000)
    await sendAll(pair.client, Array.from({ length: n }, (_, i) => msg(i)))
    const all = await got
    t.equal(all.length, n)
    t.equal((all[n - 1]?.env.content as { seq: number }).seq, n - 1)
  })

  t.test('concurrent channels keep per-channel order', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    const channels: Channel[] = ['control', 'high', 'normal', 'bulk']
    const per = 500
    const got = collect(pair.server, per * channels.length)
    for (let i = 0; i < per; i++) {
      for (const ch of channels) {
        if (!pair.client.send(msg(i, { seq: i, ch }, ch))) await pair.client.onDrain()
      }
    }
    const all = await got
    for (const ch of channels) {
      const seqs = all.filter(m => m.channel === ch).map(m => (m.env.content as { seq: number }).seq)
      t.same(seqs, Array.from({ length: per }, (_, i) => i), `${ch} in order`)
    }
  })

  t.test('backpressure bounds the sender when the receiver stops reading', async t => {
    const hwm = 64 * 1024
    const pair = await makePair(h, { maxInboundBuffer: 256 * 1024 }, { highWaterMark: hwm, maxSendBuffer: 16 * 1024 * 1024 + hwm })
    t.teardown(() => teardown(pair))
    pair.server.pause()
    const chunk = new Uint8Array(16 * 1024)
    let sent = 0
    // Keep sending while send() says yes until a `false` is not followed by a
    // drain within 300 ms: a brief false can just mean the sender outran an
    // asynchronous socket write (TLS), not that the paused receiver filled up.
    for (let round = 0; round < 200; round++) {
      while (pair.client.send(msg(sent, chunk))) {
        sent++
        if (sent % 64 === 0) await new Promise(resolve => setImmediate(resolve))
        if (sent > 20_000) break
      }
      sent++
      const stalled = await Promise.race([
        pair.client.onDrain().then(() => false, () => true),
        new Promise<boolean>(resolve => setTimeout(() => resolve(true), 300))
      ])
      if (stalled || sent > 20_000) break
    }
    t.ok(sent < 20_000, `the sender stalled after ${sent} messages`)
    // Give the transport time to fill every buffer it has; the sender must stay bounded.
    let drained = false
    const drain = pair.client.onDrain().then(() => { drained = true }, () => {})
    for (let i = 0; i < 20; i++) {
      await new Promise(resolve => setTimeout(resolve, 50))
      if (drained) break
      sent++
      try { pair.client.send(msg(sent, chunk)) } catch { break }
    }
    await new Promise(resolve => setTimeout(resolve, 300))
    t.notOk(drained, 'no drain while the receiver is paused')
    t.ok(pair.client.stats.queuedBytes <= 16 * 1024 * 1024 + hwm, 'queued bytes within the hard bound')
    t.ok(pair.server.stats.bufferedInboundBytes <= 2 * 256 * 1024 + 16 * 1024 * 1024, 'receiver buffer within its bound')
    // Hard bound: ignoring `false` ends in a typed error, not unbounded memory.
    const big = new Uint8Array(1024 * 1024)
    let err: unknown
    for (let i = 0; i < 64 && err === undefined; i++) {
      try { pair.client.send(msg(sent + i, big)) } catch (e) { err = e }
    }
    t.equal(CODE(err), 'EF_SEND_BUFFER_FULL', 'past the hard bound send() throws a typed error')
    // Resume: everything accepted is delivered and drain fires.
    let received = 0
    pair.server.on('message', () => { received++ })
    pair.server.resume()
    await withTimeout(drain, 20_000, 'drain after resume')
    t.ok(drained, 'drain after resume')
    t.ok(await eventually(() => pair.client.stats.queuedBytes === 0, 20_000), 'send queue empties')
    t.ok(await eventually(() => received === pair.client.stats.messagesSent, 20_000), `all ${pair.client.stats.messagesSent} handed-off messages delivered (got ${received})`)
  })

  t.test('a stalled bulk channel does not delay control traffic', async t => {
    if (h.skip?.independentChannels !== undefined) {
      t.comment(`skipped: ${h.skip.independentChannels}`)
      const pair = await makePair(h)
      t.teardown(() => teardown(pair))
      t.equal(pair.client.headOfLineBlocking, true, 'transport declares head-of-line blocking')
      return
    }
    const pair = await makePair(h, { maxInboundBuffer: 128 * 1024 })
    t.teardown(() => teardown(pair))
    t.equal(pair.client.headOfLineBlocking, false)
    pair.server.pause('bulk')
    const chunk = new Uint8Array(64 * 1024)
    let i = 0
    while (pair.client.send(msg(i++, chunk, 'bulk')) && i < 4000) { if (i % 16 === 0) await new Promise(resolve => setImmediate(resolve)) }
    await new Promise(resolve => setTimeout(resolve, 200)) // let the bulk stream's windows fill
    const started = Date.now()
    const got = collect(pair.server, 1, 5000)
    pair.client.send(msg(-1, 'ping', 'control'))
    const [m] = await got
    t.equal(m?.channel, 'control')
    const ms = Date.now() - started
    t.ok(ms < 1000, `control message arrived in ${ms} ms while bulk is stalled`)
    const rest = collect(pair.server, i, 30_000)
    pair.server.resume('bulk')
    t.equal((await rest).length, i, 'all bulk delivered after resume')
  })

  for (const side of ['client', 'server'] as const) {
    t.test(`graceful close from the ${side} flushes and reports clean`, async t => {
      const pair = await makePair(h)
      t.teardown(() => teardown(pair))
      const [closer, other] = side === 'client' ? [pair.client, pair.server] : [pair.server, pair.client]
      const got = collect(other, 100)
      for (let i = 0; i < 100; i++) closer.send(msg(i))
      const otherClosed = other.closed()
      await closer.close('done here')
      t.equal((await got).length, 100, 'everything sent before close() arrived')
      const local = await closer.closed()
      t.match(local, { initiator: 'local', clean: true })
      const remote = await withTimeout(otherClosed, 5000, 'remote close')
      t.match(remote, { initiator: 'remote', clean: true })
      if (h.skip?.closeReason === undefined) t.equal(remote.reason, 'done here', 'reason travels')
      t.equal(closer.status, 'closed')
      await closer.close() // idempotent
      closer.abort(new Error('after close')) // no-op
      t.throws(() => closer.send(msg(1)), { code: 'EF_CONNECTION_CLOSED' })
    })

    t.test(`abort from the ${side} is seen as unclean`, async t => {
      const pair = await makePair(h)
      t.teardown(() => teardown(pair))
      const [closer, other] = side === 'client' ? [pair.client, pair.server] : [pair.server, pair.client]
      let closes = 0
      closer.on('close', () => { closes++ })
      const boom = new Error('boom')
      closer.abort(boom)
      closer.abort(new Error('again'))
      await closer.close()
      const local = await closer.closed()
      t.match(local, { initiator: 'local', clean: false })
      t.equal(local.error, boom)
      t.equal(closes, 1, 'one close event')
      const remote = await withTimeout(other.closed(), 10_000, 'remote sees abort')
      t.match(remote, { initiator: 'remote', clean: false })
      t.ok(remote.error, 'with an error')
    })
  }

  t.test('close during dial and failed dials are typed', async t => {
    const ac = new AbortController()
    const p = dial(h.deadUrl, { signal: ac.signal, timeoutMs: 5000 })
    ac.abort()
    const err = await p.then(c => { c.abort(new Error('x')); return undefined }, (e: unknown) => e)
    t.equal(CODE(err), 'EF_ABORTED', 'abort during dial rejects with EF_ABORTED')
    const err2 = await dial(h.deadUrl, { timeoutMs: 1500 }).then(c => { c.abort(new Error('x')); return undefined }, (e: unknown) => e)
    t.ok(['EF_DIAL_FAILED', 'EF_DIAL_TIMEOUT'].includes(CODE(err2) ?? ''), `dead address: ${CODE(err2)}`)
    // close immediately after the dial resolves
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    await pair.client.close()
    t.equal(pair.client.status, 'closed')
  })

  t.test('oversize frame → typed error and closed connection', async t => {
    const pair = await makePair(h, { maxFrameSize: 64 * 1024 })
    t.teardown(() => teardown(pair))
    pair.client.send(msg(1, new Uint8Array(256 * 1024)))
    const info: CloseInfo = await withTimeout(pair.server.closed(), 10_000, 'receiver closes')
    t.equal(CODE(info.error), 'EF_FRAME_TOO_LARGE', 'receiver reports EF_FRAME_TOO_LARGE')
    t.equal(info.clean, false)
    const peer = await withTimeout(pair.client.closed(), 10_000, 'sender sees the close')
    t.equal(peer.clean, false)
  })

  t.test('garbage bytes → typed error and closed connection', async t => {
    const garbage: EnvelopeCodec = {
      encode: () => new Uint8Array([0xc1, 0xff, 0x00, 0x13, 0x37, 0xde, 0xad]),
      decode: (): Envelope => { throw new Error('unused') }
    }
    const pair = await makePair(h, {}, { codec: garbage })
    t.teardown(() => teardown(pair))
    pair.client.send(msg(1))
    const info = await withTimeout(pair.server.closed(), 10_000, 'receiver closes')
    t.ok(['EF_DECODE', 'EF_INVALID_ENVELOPE'].includes(CODE(info.error) ?? ''), `receiver reports ${CODE(info.error)}`)
    t.equal(info.clean, false)
  })

  t.test('listener close closes its connections', async t => {
    const pair = await makePair(h)
    t.teardown(() => teardown(pair))
    await pair.listener.close(1000)
    const info = await withTimeout(pair.client.closed(), 5000, 'client sees listener close')
    t.equal(info.initiator, 'remote')
    t.equal(pair.listener.connections.size, 0)
    await pair.listener.close() // idempotent
  })

  t.test('a SIGKILLed peer process is detected', async t => {
    if (h.skip?.peerKill !== undefined || h.peerListenUrl === undefined) {
      t.comment(`skipped: ${h.skip?.peerKill ?? 'no peer URL'}`)
      return
    }
    const peer = await spawnPeer(h.peerListenUrl)
    t.teardown(() => { peer.child.kill('SIGKILL') })
    const conn = await dial(peer.url, peer.identity !== undefined && h.skip?.identity === undefined ? { expectedRemoteIdentity: peer.identity } : {})
    const echo = collect(conn, 1, 5000)
    conn.send(msg(7))
    t.equal(((await echo)[0]?.env.content as { seq: number }).seq, 7, 'echo from the child')
    const started = Date.now()
    peer.child.kill('SIGKILL')
    const limit = h.peerKillDetectMs ?? 5000
    const info = await withTimeout(conn.closed(), limit + 2000, 'detection of the killed peer')
    const ms = Date.now() - started
    t.equal(info.clean, false, 'unclean close')
    t.equal(info.initiator, 'remote')
    t.ok(ms <= limit, `detected in ${ms} ms (limit ${limit})`)
  })

  t.test('no leaked handles, warnings or unhandled rejections', async t => {
    const ok = await eventually(() => netHandles() <= baseHandles, 3000)
    t.ok(ok, `network handles back to baseline (${netHandles()} vs ${baseHandles}: ${process.getActiveResourcesInfo().join(',')})`)
    await new Promise(resolve => setTimeout(resolve, 50))
    t.same(warnings, [], 'no process warnings (MaxListenersExceededWarning etc.)')
    t.same(rejections.map(String), [], 'no unhandled rejections')
    process.off('warning', onWarning)
    process.off('unhandledRejection', onRejection)
  })
}
