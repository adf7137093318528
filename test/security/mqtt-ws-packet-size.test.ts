/**
 * Issue 13 item 4: MQTT over WebSocket had no packet-size guard — 200 MiB
 * were buffered from an unauthenticated client and a 100 MiB publish was
 * accepted. Now WebSocket connections pass the same PacketSizeGuard as TCP
 * (a packet announcing more than maxPayloadBytes + 64 KiB is cut at its
 * fixed header) and a single WebSocket frame may not exceed that bound
 * either (ws `maxPayload`, whose default is 100 MiB).
 *
 * The attacker is a raw TCP socket speaking RFC 6455 itself, streaming its
 * payload so the attacker's own memory stays small; the broker runs in this
 * process, so its RSS is what we sample.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { connectPacket, edgeWithDevices, mb, publishHeader, remainingLength } from './mqtt-helpers.js'

const MiB = 1024 * 1024

/** A masked client frame header (RFC 6455 §5.2) for `len` payload bytes, mask key 0 (payload passes unchanged). */
function frameHeader (len: number): Buffer {
  if (len < 126) return Buffer.from([0x82, 0x80 | len, 0, 0, 0, 0])
  if (len < 65536) { const b = Buffer.from([0x82, 0x80 | 126, 0, 0, 0, 0, 0, 0]); b.writeUInt16BE(len, 2); return b }
  const b = Buffer.alloc(14)
  b[0] = 0x82; b[1] = 0x80 | 127
  b.writeBigUInt64BE(BigInt(len), 2)
  return b
}
const frame = (payload: Buffer): Buffer => Buffer.concat([frameHeader(payload.length), payload])

async function upgrade (wsUrl: string): Promise<Socket> {
  const u = new URL(wsUrl)
  const sock = connect(Number(u.port), u.hostname)
  sock.on('error', () => {})
  await new Promise(resolve => sock.once('connect', resolve))
  sock.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`)
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (d: Buffer): void => { head += d.toString('latin1'); if (head.includes('\r\n\r\n')) { sock.off('data', onData); head.startsWith('HTTP/1.1 101') ? resolve() : reject(new Error(head)) } }
    sock.on('data', onData)
  })
  return sock
}

/** Stream `total` bytes from `next()` chunks until the peer closes; returns bytes the socket accepted and the RSS peak growth. */
async function stream (sock: Socket, total: number, next: (n: number) => Buffer): Promise<{ sent: number, closed: boolean, rssGrowth: number }> {
  const rss0 = process.memoryUsage().rss
  let peak = rss0
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 20)
  let closed = false
  const onClose = new Promise<void>(resolve => sock.once('close', () => { closed = true; resolve() }))
  let sent = 0
  while (sent < total && !closed) {
    const chunk = next(Math.min(64 * 1024, total - sent))
    sent += chunk.length
    if (!sock.write(chunk)) await Promise.race([new Promise(resolve => sock.once('drain', resolve)), onClose])
  }
  await Promise.race([onClose, new Promise(resolve => setTimeout(resolve, 2000))])
  clearInterval(sampler)
  peak = Math.max(peak, process.memoryUsage().rss)
  sock.destroy()
  return { sent, closed, rssGrowth: peak - rss0 }
}

t.test('MQTT over WebSocket gets the TCP packet-size limits', async t => {
  const { edge, secrets } = await edgeWithDevices(t, ['a'], { mqtt: { port: 0, ws: { port: 0 } } })
  const wsUrl = edge.devices?.wsUrl as string
  const zeros = Buffer.alloc(64 * 1024 + 16)

  // 1. One 200 MiB WebSocket frame, unauthenticated: refused at the frame header.
  let sock = await upgrade(wsUrl)
  sock.write(frameHeader(200 * MiB))
  const one = await stream(sock, 200 * MiB, n => zeros.subarray(0, n))
  t.comment(`200 MiB single frame: connection closed after ${mb(one.sent)} accepted by the socket, broker RSS growth ${mb(one.rssGrowth)}`)
  t.ok(one.closed, 'connection closed')
  t.ok(one.sent < 32 * MiB, 'long before the frame was through')

  // 2. An unauthenticated CONNECT announcing 200 MiB, in 64 KiB WebSocket frames: cut at the MQTT fixed header.
  sock = await upgrade(wsUrl)
  sock.write(frame(Buffer.concat([Buffer.from([0x10]), remainingLength(200 * MiB)])))
  const two = await stream(sock, 200 * MiB, n => frame(zeros.subarray(0, n)))
  t.comment(`200 MiB CONNECT in small frames: closed after ${mb(two.sent)}, broker RSS growth ${mb(two.rssGrowth)}`)
  t.ok(two.closed, 'connection closed')
  t.ok(two.sent < 32 * MiB)

  // 3. An authenticated device publishing 100 MiB: cut at the PUBLISH header, nothing delivered.
  sock = await upgrade(wsUrl)
  sock.write(frame(connectPacket('default/a', 'default/a', secrets.a)))
  await new Promise<void>(resolve => sock.once('data', () => resolve())) // CONNACK
  sock.write(frame(publishHeader('$hw/events/device/default/a/twin/update', 100 * MiB)))
  const three = await stream(sock, 100 * MiB, n => frame(zeros.subarray(0, n)))
  t.comment(`100 MiB PUBLISH from an authenticated device: closed after ${mb(three.sent)}, broker RSS growth ${mb(three.rssGrowth)}`)
  t.ok(three.closed, 'connection closed')
  t.ok(three.sent < 32 * MiB)
  for (const r of [one, two, three]) t.ok(r.rssGrowth < 64 * MiB, `broker memory bounded (${mb(r.rssGrowth)})`)
  const denials = (await edge.registry.metrics()).split('\n').find(l => l.startsWith('edgefabric_edge_device_acl_denials_total{action="oversize"}'))
  t.match(denials, / 2$/, 'the two MQTT-level cuts are counted as oversize (the frame-level one is refused by ws itself)')
})
