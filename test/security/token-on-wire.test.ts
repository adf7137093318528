/**
 * Issue 13 item 10 (plain ws:// edges): an on-path relay captured the join
 * token, completed the join itself and injected commands. Now:
 * - the token never crosses the wire: a raw TCP relay records every byte of
 *   a first join and neither the token nor its signature part appears;
 * - what a relay does capture (the hello with its join proof) cannot be
 *   completed into a session of its own: replayed as is on a new connection
 *   (new nonce) or with the relay's own key, the hub refuses it, and the
 *   token stays unused for the real edge;
 * - plain ws:// to a non-loopback hub is refused unless insecureTransport.
 */
import { once } from 'node:events'
import { generateKeyPairSync } from 'node:crypto'
import { createConnection, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { Hub } from '../../src/hub/hub.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { dial, listen } from '../../src/transport/index.js'
import type { Envelope } from '../../src/codec/envelope.js'
import { parseChallenge, parseHello, sessionMessage, helloContext, PROTOCOL_VERSION } from '../../src/session/protocol.js'
import { rawPublicKey, signChallenge } from '../../src/identity/node-key.js'
import { run } from '../day2/procs.js'

/**
 * Unmask WebSocket frames (RFC 6455 §5.3: client frames are XOR-masked, so a
 * plain byte search would prove nothing). Returns the HTTP upgrade request
 * followed by the unmasked payloads.
 */
function unmaskClientStream (raw: Buffer): Buffer {
  const headerEnd = raw.indexOf('\r\n\r\n')
  if (headerEnd < 0) return raw
  const out: Buffer[] = [raw.subarray(0, headerEnd + 4)]
  let i = headerEnd + 4
  while (i + 2 <= raw.length) {
    const b1 = raw[i + 1] as number
    let len = b1 & 0x7f
    let p = i + 2
    if (len === 126) { len = raw.readUInt16BE(p); p += 2 } else if (len === 127) { len = Number(raw.readBigUInt64BE(p)); p += 8 }
    const masked = (b1 & 0x80) !== 0
    const mask = masked ? raw.subarray(p, p + 4) : undefined
    if (masked) p += 4
    if (p + len > raw.length) break
    const payload = Buffer.from(raw.subarray(p, p + len))
    if (mask !== undefined) for (let k = 0; k < payload.length; k++) payload[k] = (payload[k] as number) ^ (mask[k % 4] as number)
    out.push(payload)
    i = p + len
  }
  return Buffer.concat(out)
}

/** Raw TCP relay recording both directions (edge to hub unmasked). */
async function tcpRelay (target: number): Promise<{ port: number, bytes: () => Buffer, close: () => Promise<void> }> {
  const up: Buffer[] = []
  const down: Buffer[] = []
  const sockets = new Set<Socket>()
  const server = createServer(inbound => {
    const outbound = createConnection({ host: '127.0.0.1', port: target })
    for (const s of [inbound, outbound]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => { inbound.destroy(); outbound.destroy() }) }
    inbound.on('data', (c: Buffer) => { up.push(c); outbound.write(c) })
    outbound.on('data', (c: Buffer) => { down.push(c); inbound.write(c) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as { port: number }).port,
    bytes: () => Buffer.concat([unmaskClientStream(Buffer.concat(up)), Buffer.concat(down)]),
    close: async () => { for (const s of sockets) s.destroy(); await new Promise(resolve => server.close(resolve)) }
  }
}

function nextMessage (conn: Awaited<ReturnType<typeof dial>>, op: string): Promise<Envelope> {
  return new Promise((resolve, reject) => {
    const onMsg = (env: Envelope): void => { if (env.router.operation === op) { conn.off('message', onMsg); resolve(env) } }
    conn.on('message', onMsg)
    conn.once('close', () => reject(new Error(`closed before ${op}`)))
  })
}

t.test('first join over a recording relay: the token never appears on the wire', async t => {
  const root = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(() => hub.close(0))
  const relay = await tcpRelay(Number(new URL(hub.urls[0] as string).port))
  t.teardown(relay.close)
  const token = hub.createToken('edge-1')
  const [, payloadPart, sigPart] = token.split('.') as [string, string, string]
  const edge = await EdgeNode.start({ hub: `ws://127.0.0.1:${relay.port}`, nodeId: 'edge-1', token, dataDir: join(root, 'edge'), admin: false })
  t.teardown(() => edge.close())
  await edge.waitConnected(10_000)
  const wire = relay.bytes()
  t.ok(wire.length > 0, `relay saw ${wire.length} bytes`)
  t.equal(wire.indexOf(token), -1, 'the token string is not on the wire')
  t.equal(wire.indexOf(sigPart), -1, 'nor its signature part (base64url)')
  t.equal(wire.indexOf(Buffer.from(sigPart, 'base64url')), -1, 'nor the raw signature bytes')
  t.not(wire.indexOf(payloadPart), -1, 'the public payload part is (node, expiry, jti, pins: nothing secret)')
})

t.test('a relay that captured a hello cannot complete the join in a session of its own', async t => {
  const root = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(() => hub.close(0))
  const refusals: string[] = []
  hub.on('event', e => { if (e.type === 'handshake-refused') refusals.push(e.code) })
  const hubUrl = hub.urls[0] as string

  // An envelope-level relay: accepts the edge, dials the hub, forwards the
  // challenge, keeps the hello (with its join proof) and drops the edge.
  let captured: Envelope | undefined
  let gotHello: () => void = () => {}
  const helloSeen = new Promise<void>(resolve => { gotHello = resolve })
  const relay = await listen('ws://127.0.0.1:0', {
    onConnection: edgeSide => {
      void dial(hubUrl).then(hubSide => {
        hubSide.on('message', env => { try { edgeSide.send(env, { channel: 'control' }) } catch {} })
        edgeSide.on('message', env => {
          if (env.router.operation !== 'hello') return
          captured = env
          gotHello()
          edgeSide.abort(new Error('the relay keeps the hello'))
          hubSide.abort(new Error('relay'))
        })
      })
    }
  })
  t.teardown(async () => await relay.close(0))
  const token = hub.createToken('edge-1')
  const edgeDir = join(root, 'edge')
  const victim = await EdgeNode.start({ hub: relay.url, nodeId: 'edge-1', token, dataDir: edgeDir, admin: false, backoff: { baseMs: 60_000, capMs: 60_000 } })
  await helloSeen
  await victim.close()
  const hello = parseHello(captured as Envelope)
  t.ok(hello.join, 'the captured hello carries a join proof')
  t.equal((hello as unknown as Record<string, unknown>).token, undefined, 'and no token')

  // 1. replay the hello as is on a fresh connection: new nonce, the key signature fails
  {
    const c = await dial(hubUrl)
    await nextMessage(c, 'challenge')
    const refused = nextMessage(c, 'refused')
    c.send(sessionMessage('hello', { ...hello, labels: hello.labels ?? {} }, 'edge-1'), { channel: 'control' })
    t.match((await refused).content, { code: 'EF_NODE_KEY_MISMATCH' }, 'replayed hello refused')
  }
  // 2. the relay's own key, correctly signed for the new nonce, with the captured join proof
  {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const key = rawPublicKey(publicKey)
    const c = await dial(hubUrl)
    const ch = parseChallenge(await nextMessage(c, 'challenge'))
    const refused = nextMessage(c, 'refused')
    c.send(sessionMessage('hello', {
      version: PROTOCOL_VERSION, node: 'edge-1', key, sig: signChallenge({ privateKey }, ch.nonce, helloContext('edge-1', ch.hub)),
      capabilities: [], labels: {}, join: hello.join
    }, 'edge-1'), { channel: 'control' })
    t.match((await refused).content, { code: 'EF_TOKEN_INVALID' }, 'captured proof does not work for another key or nonce')
  }
  t.same(refusals, ['EF_NODE_KEY_MISMATCH', 'EF_TOKEN_INVALID'], 'both refusals seen as events (and counted)')
  t.equal((await hub.bindings.list()).length, 0, 'nothing bound by the relay')

  // The real edge, on a clean path, still joins with the same (unused) token.
  const edge = await EdgeNode.start({ hub: hubUrl, nodeId: 'edge-1', token, dataDir: edgeDir, admin: false })
  t.teardown(() => edge.close())
  await edge.waitConnected(10_000)
  t.equal((await hub.bindings.get('edge-1'))?.keyId, edge.identity.keyId)
})

t.test('plain ws:// to a non-loopback hub is refused unless insecureTransport', async t => {
  const root = t.testdir({})
  const token = 'ef1.eyJ2IjoxfQ.' + Buffer.alloc(64).toString('base64url')
  await t.rejects(EdgeNode.start({ hub: 'ws://hub.invalid:10000', nodeId: 'edge-1', token, dataDir: join(root, 'a'), admin: false }),
    { code: 'EF_INVALID_OPTION', message: /plain ws:\/\/ is refused[\s\S]*insecureTransport/ })
  const r = await run(['edge', '--hub', 'ws://hub.invalid:10000', '--node', 'edge-1', '--token', token, '--data-dir', join(root, 'b'), '--admin', 'off'])
  t.equal(r.code, 2)
  t.match(r.stderr, /--hub: "ws:\/\/hub.invalid:10000": plain ws:\/\/ is refused.*--insecure-transport/)
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  const c = await run(['cloud', '--listen', 'ws://0.0.0.0:1', '--data-dir', join(root, 'c'), '--admin', 'off'])
  t.equal(c.code, 2)
  t.match(c.stderr, /--listen: .*plain ws:\/\/ is refused.*--insecure-transport/)
})
