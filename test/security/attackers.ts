/**
 * Hostile pre-auth clients for test/security, from raw sockets and the
 * underlying libraries — never the library's dial()/EdgeNode, whose framing
 * would refuse to send what an attacker sends.
 *
 * Each returns a handle whose `closed` resolves when the HUB ends the
 * connection (or the attacker gives up), with what the attacker observed.
 */
import { randomBytes } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { frameHeader } from '../../src/transport/framing.js'
import type { NativeConnection } from '../../src/transport/quic-native.js'
import { chooseQuicEngine } from '../../src/transport/quic-engine.js'
import { engineConfig, resolveQuicOptions } from '../../src/transport/quic-options.js'
import { generateQuicIdentity, quicIdentityBytes } from '../../src/transport/quic-identity.js'
import { loadWebTransport } from '../../src/transport/webtransport-lib.js'
import { WT_FLOW_CONTROL } from '../../src/transport/webtransport-wire.js'

export const MiB = 1024 * 1024
/** The frame size the attacker announced before authentication. */
export const HOSTILE_FRAME = 16 * MiB

export interface Attack {
  /** Resolves once the connection is gone: `byPeer` when the hub ended it. */
  closed: Promise<{ byPeer: boolean, ms: number, detail?: string }>
  stop: () => void
}

function hostPort (url: string): { host: string, port: number } {
  const u = new URL(url)
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) }
}

function socketAttack (socket: Socket, onOpen: (s: Socket) => void): Attack {
  const started = Date.now()
  let stopped = false
  socket.on('error', () => {})
  socket.setNoDelay(true)
  const closed = new Promise<{ byPeer: boolean, ms: number, detail?: string }>(resolve => {
    socket.once('close', () => resolve({ byPeer: !stopped, ms: Date.now() - started }))
  })
  socket.once(socket.constructor.name === 'TLSSocket' ? 'secureConnect' : 'connect', () => onOpen(socket))
  return { closed, stop: () => { stopped = true; socket.destroy() } }
}

/** A TCP (ws://, or wss:// with `tls`) socket that connects and sends nothing. */
export function tcpIdle (url: string, opts: { tls?: boolean, localAddress?: string, alpn?: string[] } = {}): Attack {
  const { host, port } = hostPort(url)
  const base = { host, port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) }
  const socket = opts.tls === true
    ? tlsConnect({ ...base, rejectUnauthorized: false, servername: 'localhost', ...(opts.alpn !== undefined ? { ALPNProtocols: opts.alpn } : {}) })
    : netConnect(base)
  return socketAttack(socket, () => {})
}

/**
 * ws:// / wss://: a hand-made upgrade, then one binary frame header announcing
 * `announce` bytes (masked, as a client must) and `send` bytes of it.
 */
export function wsOversize (url: string, opts: { tls?: boolean, localAddress?: string, announce?: number, send?: number } = {}): Attack & { upgraded: Promise<boolean>, serverClose: Promise<number | undefined> } {
  const { host, port } = hostPort(url)
  const base = { host, port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) }
  const socket = opts.tls === true ? tlsConnect({ ...base, rejectUnauthorized: false, servername: 'localhost' }) : netConnect(base)
  const announce = opts.announce ?? HOSTILE_FRAME
  const send = opts.send ?? 256 * 1024
  let resolveUp!: (v: boolean) => void
  const upgraded = new Promise<boolean>(resolve => { resolveUp = resolve })
  let resolveClose!: (v: number | undefined) => void
  const serverClose = new Promise<number | undefined>(resolve => { resolveClose = resolve })
  const attack = socketAttack(socket, s => {
    s.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    let buf = Buffer.alloc(0)
    let up = false
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (!up) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        up = buf.subarray(0, 12).toString() === 'HTTP/1.1 101'
        resolveUp(up)
        buf = buf.subarray(end + 4)
        if (!up) return
        // FIN + binary, MASK + 127 → 64-bit length, mask key, then the start of the payload.
        const head = Buffer.alloc(14)
        head[0] = 0x82
        head[1] = 0x80 | 127
        head.writeBigUInt64BE(BigInt(announce), 2)
        randomBytes(4).copy(head, 10)
        s.write(head)
        const chunk = Buffer.alloc(64 * 1024, 0x5a)
        for (let sent = 0; sent < send && !s.destroyed; sent += chunk.length) s.write(chunk.subarray(0, Math.min(chunk.length, send - sent)))
      }
      // A server close frame: 0x88, length, 2-byte code.
      if (buf.length >= 4 && buf[0] === 0x88) resolveClose(buf.readUInt16BE(2))
    })
  })
  void attack.closed.then(() => { resolveUp(false); resolveClose(undefined) })
  return { ...attack, upgraded, serverClose }
}

/** quic:// through the QUIC binding itself: open the control stream and announce a 16 MiB frame (or stay idle). */
export function quicAttack (url: string, opts: { announce?: number, send?: number, idle?: boolean } = {}): Attack {
  const started = Date.now()
  let native: NativeConnection | undefined
  let stopped = false
  const closed = (async () => {
    const { host, port } = hostPort(url)
    // Either engine speaks the hub's wire; the attacker takes whichever loads here.
    const { engine } = await chooseQuicEngine('auto')
    const id = await generateQuicIdentity()
    const client = await engine.client(engineConfig(quicIdentityBytes(id), resolveQuicOptions({}), 4 * MiB), 0)
    try {
      native = await client.outboundConnection(host, port)
    } catch (err) {
      return { byPeer: true, ms: Date.now() - started, detail: `handshake failed: ${(err as Error).message}` }
    }
    if (opts.idle !== true) {
      try {
        const stream = await native.outboundStream()
        const announce = opts.announce ?? HOSTILE_FRAME
        await stream.write(Uint8Array.of(0)) // control preface
        await stream.write(frameHeader(announce + 1)) // + the type byte
        await stream.write(Uint8Array.of(0)) // T_DATA
        const chunk = new Uint8Array(64 * 1024)
        const send = opts.send ?? 256 * 1024
        for (let sent = 0; sent < send; sent += chunk.length) {
          await Promise.race([stream.write(chunk.subarray(0, Math.min(chunk.length, send - sent))), native.closed()])
        }
      } catch { /* the hub cut us off */ }
    }
    await native.closed()
    try { client.abort() } catch { /* gone */ }
    return { byPeer: !stopped, ms: Date.now() - started }
  })()
  return { closed, stop: () => { stopped = true; try { native?.abort() } catch { /* gone */ } } }
}

/**
 * https:// WebTransport (the HTTP/2 fallback here) through the library itself:
 * open the four channel streams and announce a 16 MiB frame on control.
 */
export function wtOversize (url: string, leafFingerprint: string, opts: { announce?: number, send?: number } = {}): Attack {
  const started = Date.now()
  let session: { close: (i?: { closeCode: number, reason: string }) => void } | undefined
  let stopped = false
  const closed = (async () => {
    const { lib } = await loadWebTransport()
    if (lib === undefined) throw new Error('WebTransport library unavailable')
    const wt = new lib.WebTransport(url.replace(/\?.*$/, ''), {
      serverCertificateHashes: [{ algorithm: 'sha-256', value: Buffer.from(leafFingerprint.replace(/:/g, ''), 'hex') }],
      forceReliable: true,
      ...WT_FLOW_CONTROL
    })
    session = wt
    wt.closed.catch(() => {})
    try {
      await wt.ready
      const streams = []
      for (let ch = 0; ch < 4; ch++) {
        const bs = await wt.createBidirectionalStream()
        const w = bs.writable.getWriter()
        w.write(Uint8Array.of(ch)).catch(() => {})
        streams.push(w)
      }
      const control = streams[0]
      control?.write(frameHeader(opts.announce ?? HOSTILE_FRAME)).catch(() => {})
      const chunk = new Uint8Array(64 * 1024)
      for (let sent = 0; sent < (opts.send ?? 256 * 1024); sent += chunk.length) control?.write(chunk).catch(() => {})
    } catch { /* refused or cut off */ }
    const info = await wt.closed.catch((e: unknown) => ({ reason: String(e) }))
    return { byPeer: !stopped, ms: Date.now() - started, detail: JSON.stringify(info) }
  })()
  return { closed, stop: () => { stopped = true; try { session?.close({ closeCode: 0, reason: 'bye' }) } catch { /* gone */ } } }
}
