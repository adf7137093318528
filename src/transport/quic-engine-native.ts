/**
 * The edgefabric engine behind the same stream/connection/server surface as
 * the libp2p binding (./quic-native.ts), so quic:// keeps one framing path
 * (./quic-wire.ts, ./quic-connection.ts, ./quic-listener.ts) whichever
 * engine carries it.
 *
 * Semantics kept from the libp2p binding (what quic-connection.ts relies on):
 * read(max) resolves a chunk or null at FIN and rejects once the connection
 * is lost; abort() closes with code 0 at once; closed() never rejects; the
 * remote address is `/ip4|ip6/<ip>/udp/<port>/quic-v1/p2p/<peer id>`, the peer
 * id checked from the libp2p-TLS certificate before the connection is surfaced.
 */
import { isIP } from 'node:net'
import { ProtocolError, toError } from '../errors.js'
import {
  C_CLOSE, C_EP_CLOSE, C_FINISH, C_OPEN, C_READ, C_RESET, C_STOP, C_WRITE, C_WRITEV, E_CONN_CLOSED, E_CONN_IN, E_DATA,
  E_DIAL_ERR, E_DIAL_OK, E_EP_CLOSED, E_FIN, E_FINISHED, E_READ_ERR, E_STREAM_IN, E_STREAM_OPENED,
  E_STREAM_OPEN_ERR, E_WRITE_ERR, E_WRITTEN, decodeQuicStats, engineChannel, type EngineChannel, type QuicStats
} from './quic-engine-addon.js'
import { peerIdFromCertificate } from './quic-engine-cert.js'
import type { NativeClient, NativeConnection, NativeServer, NativeStream } from './quic-native.js'

/** Longest wait for the engine to confirm a closed endpoint. */
const ENDPOINT_CLOSE_MS = 2000

/** Unconfirmed bytes a stream may have in the engine before write() waits. */
const WRITE_AHEAD = 256 * 1024

/**
 * Bytes a stream may have asked the engine for (reads outstanding) plus read
 * and not yet taken by read(). Several reads in flight: the engine takes the
 * next chunk off quinn (and quinn returns the credit to the peer) while JS is
 * still busy with the previous one, instead of once per engine↔JS round trip
 * (issue 18, clean bulk at 50 ms RTT). Bounded, so a reader that stops
 * reading still stops the stream (QUIC flow control pushes back).
 */
const READ_AHEAD = 256 * 1024

/** Writes at least this big travel by reference (C_WRITEV); smaller ones are copied inline. */
const BY_REFERENCE = 1024

interface Waiter<T> { resolve: (v: T) => void, reject: (e: Error) => void }

function deferred<T> (): { promise: Promise<T>, waiter: Waiter<T> } {
  let waiter: Waiter<T> | undefined
  const promise = new Promise<T>((resolve, reject) => { waiter = { resolve, reject } })
  return { promise, waiter: waiter as Waiter<T> }
}

/** What a Waiter of a failed operation gets: the engine's text as a plain Error, like the libp2p binding. */
function nativeError (payload: Buffer | string): Error {
  return new Error(typeof payload === 'string' ? payload : payload.toString('utf8'))
}

export class EngineStream implements NativeStream {
  readonly #ch: EngineChannel
  readonly sid: number
  readonly conn: EngineConnection
  readonly #chunks: Buffer[] = []
  #reader: Waiter<Uint8Array | null> | undefined
  /** Sizes of the reads in flight, oldest first (each answered by one E_DATA, E_FIN or E_READ_ERR, in order). */
  readonly #asked: number[] = []
  /** Sum of #asked. */
  #outstanding = 0
  /** The last answer filled its read: more is probably waiting (see #prefetch). */
  #streaming = false
  /** Bytes in #chunks. */
  #buffered = 0
  #eof = false
  #error: Error | undefined
  /** Writes handed to the engine and not yet confirmed, in order. */
  readonly #writes: Array<{ bytes: number, waiter: Waiter<void> | undefined }> = []
  #inflight = 0
  #writeError: Error | undefined
  readonly #finishes: Array<Waiter<void>> = []
  #readMax = 64 * 1024

  constructor (ch: EngineChannel, sid: number, conn: EngineConnection) {
    this.#ch = ch
    this.sid = sid
    this.conn = conn
  }

  id (): string { return String(this.sid) }

  read (max: number): Promise<Uint8Array | null> {
    this.#readMax = Math.max(1, max)
    const chunk = this.#chunks.shift()
    if (chunk !== undefined) {
      this.#buffered -= chunk.byteLength
      this.#prefetch()
      return Promise.resolve(chunk)
    }
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#eof) return Promise.resolve(null)
    if (this.#reader !== undefined) return Promise.reject(new Error('a read is already pending on this stream'))
    const d = deferred<Uint8Array | null>()
    this.#reader = d.waiter
    this.#prefetch()
    return d.promise
  }

  /**
   * Keep reads outstanding: one while the stream trickles, up to READ_AHEAD
   * (asked + buffered) while it streams (the last answer filled its read), so
   * a bulk stream's next chunks are on their way while JS works and an idle
   * stream still holds one read only (issue 16).
   */
  #prefetch (): void {
    if (this.#eof || this.#error !== undefined) return
    const limit = this.#streaming ? READ_AHEAD : 1
    while (this.#asked.length === 0
      ? this.#buffered === 0 || this.#buffered + this.#readMax <= limit
      : this.#outstanding + this.#buffered + this.#readMax <= limit) {
      this.#asked.push(this.#readMax)
      this.#outstanding += this.#readMax
      this.#ch.command(C_READ, this.sid, this.#readMax)
    }
  }

  /** The oldest read was answered (answers come in order). */
  #answered (): number {
    const max = this.#asked.shift() ?? 0
    this.#outstanding -= max
    return max
  }

  /**
   * Resolves at once while less than WRITE_AHEAD bytes are unconfirmed (the
   * engine keeps per-stream order), else when the engine has taken enough of
   * them: a bulk stream keeps several chunks in flight instead of one round
   * trip to the engine per chunk. A failure of an early-resolved write
   * surfaces on the next write.
   */
  write (data: Uint8Array): Promise<void> {
    return this.writev([data])
  }

  /**
   * write() of several buffers as one write (one engine write, one
   * confirmation), gathered by the engine without a JS-side copy. The
   * buffers must not change until the promise resolves.
   */
  writev (parts: readonly Uint8Array[]): Promise<void> {
    const failed = this.#writeError ?? this.#error
    if (failed !== undefined) return Promise.reject(failed)
    let bytes = 0
    for (const p of parts) bytes += p.byteLength
    const early = this.#inflight < WRITE_AHEAD
    this.#inflight += bytes
    if (parts.length === 1 && bytes < BY_REFERENCE) this.#ch.command(C_WRITE, this.sid, 0, parts[0])
    else this.#ch.commandv(C_WRITEV, this.sid, parts)
    if (early) {
      this.#writes.push({ bytes, waiter: undefined })
      return Promise.resolve()
    }
    const d = deferred<void>()
    this.#writes.push({ bytes, waiter: d.waiter })
    return d.promise
  }

  finishWrite (): Promise<void> {
    const d = deferred<void>()
    this.#finishes.push(d.waiter)
    this.#ch.command(C_FINISH, this.sid)
    return d.promise
  }

  resetWrite (): void { this.#ch.command(C_RESET, this.sid, 0) }
  stopRead (): void { this.#ch.command(C_STOP, this.sid, 0) }

  onData (payload: Buffer): void {
    this.#streaming = payload.byteLength >= this.#answered()
    const r = this.#reader
    if (r !== undefined) {
      this.#reader = undefined
      r.resolve(payload)
    } else {
      this.#chunks.push(payload)
      this.#buffered += payload.byteLength
    }
    this.#prefetch()
  }

  onFin (): void {
    this.#answered()
    this.#eof = true
    const r = this.#reader
    this.#reader = undefined
    r?.resolve(null)
  }

  onReadError (err: Error): void {
    this.#answered()
    this.#error ??= err
    const r = this.#reader
    this.#reader = undefined
    r?.reject(this.#error)
  }

  onWritten (): void {
    const w = this.#writes.shift()
    if (w === undefined) return
    this.#inflight -= w.bytes
    w.waiter?.resolve()
    w.waiter = undefined
    // Release waiting writes that are now within the write-ahead budget.
    let ahead = 0
    for (const x of this.#writes) {
      if (ahead >= WRITE_AHEAD) break
      if (x.waiter !== undefined) { x.waiter.resolve(); x.waiter = undefined }
      ahead += x.bytes
    }
  }

  onWriteError (err: Error): void {
    const w = this.#writes.shift()
    if (w === undefined) return
    this.#inflight -= w.bytes
    this.#writeError ??= err
    w.waiter?.reject(err)
  }
  onFinished (): void { this.#finishes.shift()?.resolve() }

  /** The connection ended: everything pending fails (a FIN already seen stays a FIN). */
  lost (err: Error): void {
    this.onReadError(err)
    this.#writeError ??= err
    for (const w of this.#writes.splice(0)) w.waiter?.reject(err)
    this.#inflight = 0
    for (const f of this.#finishes.splice(0)) f.resolve()
  }
}

export class EngineConnection implements NativeConnection {
  readonly #ch: EngineChannel
  readonly cid: number
  readonly #multiaddr: string
  readonly streams = new Map<number, EngineStream>()
  readonly #inbound: EngineStream[] = []
  readonly #acceptors: Array<Waiter<NativeStream>> = []
  readonly #closed: Promise<void>
  #markClosed!: () => void
  #lost: Error | undefined

  constructor (ch: EngineChannel, cid: number, address: string, peerId: string) {
    this.#ch = ch
    this.cid = cid
    const sep = address.lastIndexOf(':')
    const ip = address.slice(0, sep).replace(/^\[(.*)\]$/, '$1')
    this.#multiaddr = `/${isIP(ip) === 6 ? 'ip6' : 'ip4'}/${ip}/udp/${address.slice(sep + 1)}/quic-v1/p2p/${peerId}`
    this.#closed = new Promise(resolve => { this.#markClosed = resolve })
    ch.ref()
  }

  get isClosed (): boolean { return this.#lost !== undefined }

  inboundStream (): Promise<NativeStream> {
    const s = this.#inbound.shift()
    if (s !== undefined) return Promise.resolve(s)
    if (this.#lost !== undefined) return Promise.reject(this.#lost)
    const d = deferred<NativeStream>()
    this.#acceptors.push(d.waiter)
    return d.promise
  }

  outboundStream (): Promise<NativeStream> {
    if (this.#lost !== undefined) return Promise.reject(this.#lost)
    return engine().openStream(this)
  }

  abort (): void {
    if (this.#lost === undefined) this.#ch.command(C_CLOSE, this.cid, 0)
  }

  rtt (): number {
    const ms = this.#ch.addon.rtt(this.cid)
    return ms < 0 ? 0 : ms
  }

  exporter (label: string, length: number): Uint8Array | undefined {
    const out = this.#ch.addon.exporter?.(this.cid, Buffer.from(label), length)
    return out === undefined ? undefined : new Uint8Array(out)
  }

  quicStats (): QuicStats | undefined {
    return decodeQuicStats(this.#ch.addon.stats?.(this.cid))
  }

  /** The peer's current address as the engine sees it (changes on migration). */
  currentRemoteAddress (): string | undefined {
    return this.#ch.addon.remote(this.cid)
  }

  id (): string { return String(this.cid) }
  remoteMultiaddr (): string { return this.#multiaddr }
  closed (): Promise<void> { return this.#closed }

  addInbound (s: EngineStream): void {
    const a = this.#acceptors.shift()
    if (a !== undefined) a.resolve(s)
    else this.#inbound.push(s)
  }

  onClosed (reason: string): void {
    if (this.#lost !== undefined) return
    this.#lost = new Error(`connection lost: ${reason}`)
    for (const s of this.streams.values()) s.lost(this.#lost)
    for (const a of this.#acceptors.splice(0)) a.reject(this.#lost)
    this.#ch.unref()
    this.#markClosed()
  }
}

export class EngineServer implements NativeServer {
  readonly eid: number
  readonly #port: number
  readonly #ready: EngineConnection[] = []
  readonly #waiters: Array<Waiter<NativeConnection>> = []
  #closing: Promise<void> | undefined
  #markClosed: (() => void) | undefined

  constructor (eid: number, port: number) {
    this.eid = eid
    this.#port = port
    engineChannel().ref()
  }

  port (): number { return this.#port }

  inboundConnection (): Promise<NativeConnection> {
    const c = this.#ready.shift()
    if (c !== undefined) return Promise.resolve(c)
    if (this.#closing !== undefined) return Promise.reject(new Error('server closed'))
    const d = deferred<NativeConnection>()
    this.#waiters.push(d.waiter)
    return d.promise
  }

  abort (): Promise<void> {
    this.#closing ??= new Promise<void>(resolve => {
      this.#markClosed = resolve
      // The engine reports the endpoint closed once its connections drained;
      // bound the wait so a listener close never hangs on it.
      setTimeout(resolve, ENDPOINT_CLOSE_MS).unref()
      engineChannel().command(C_EP_CLOSE, this.eid)
      for (const w of this.#waiters.splice(0)) w.reject(new Error('server closed'))
      for (const c of this.#ready.splice(0)) c.abort()
    })
    return this.#closing
  }

  offer (c: EngineConnection): void {
    if (this.#closing !== undefined) { c.abort(); return }
    const w = this.#waiters.shift()
    if (w !== undefined) w.resolve(c)
    else this.#ready.push(c)
  }

  onClosed (): void {
    engineChannel().unref()
    this.#markClosed?.()
  }
}

export interface EngineDialParams { params: Uint8Array, cert: Uint8Array, key: Uint8Array }

export class EngineClient implements NativeClient {
  readonly #dial: EngineDialParams
  #aborted = false
  #pending: Promise<EngineConnection> | undefined

  constructor (dial: EngineDialParams) {
    this.#dial = dial
  }

  outboundConnection (ip: string, port: number): Promise<NativeConnection> {
    this.#pending = engine().dial(this.#dial, ip, port)
    return this.#pending.then(c => {
      if (this.#aborted) { c.abort(); throw new Error('dial aborted') }
      return c
    })
  }

  /** The UDP endpoint is shared by all dials of the process: abort only drops a dial still in progress. */
  abort (): void {
    this.#aborted = true
    this.#pending?.then(c => { if (this.#aborted) c.abort() }, () => {})
  }
}

/** Engine-wide tables: ids from the native side → JS objects. */
class Engine {
  readonly ch: EngineChannel
  readonly servers = new Map<number, EngineServer>()
  readonly conns = new Map<number, EngineConnection>()
  readonly streams = new Map<number, EngineStream>()
  readonly dials = new Map<number, Waiter<EngineConnection>>()
  readonly opens = new Map<number, { conn: EngineConnection, waiter: Waiter<NativeStream> }>()
  #req = 0

  constructor (ch: EngineChannel) {
    this.ch = ch
    ch.onEvent((op, a, b, p) => this.#event(op, a, b, p))
  }

  #nextReq (): number {
    this.#req = (this.#req + 1) >>> 0 || 1
    return this.#req
  }

  listen (params: Uint8Array, cert: Uint8Array, key: Uint8Array, resetKey: Uint8Array, ip: string, port: number): EngineServer {
    const r = this.ch.addon.listen(params, cert, key, resetKey, Buffer.from(ip), port)
    const eid = Math.floor(r / 65536)
    const server = new EngineServer(eid, r % 65536)
    this.servers.set(eid, server)
    return server
  }

  dial (d: EngineDialParams, ip: string, port: number): Promise<EngineConnection> {
    const req = this.#nextReq()
    const w = deferred<EngineConnection>()
    this.ch.ref()
    this.dials.set(req, w.waiter)
    try {
      this.ch.addon.dial(req, d.params, d.cert, d.key, Buffer.from(ip), port)
    } catch (err) {
      this.dials.delete(req)
      this.ch.unref()
      return Promise.reject(toError(err))
    }
    return w.promise
  }

  openStream (conn: EngineConnection): Promise<NativeStream> {
    const req = this.#nextReq()
    const w = deferred<NativeStream>()
    this.opens.set(req, { conn, waiter: w.waiter })
    this.ch.command(C_OPEN, conn.cid, req)
    return w.promise
  }

  #stream (conn: EngineConnection, sid: number): EngineStream {
    const s = new EngineStream(this.ch, sid, conn)
    this.streams.set(sid, s)
    conn.streams.set(sid, s)
    return s
  }

  /** A handshake finished: check the certificate, then surface the connection (or close it). */
  #adopt (cid: number, payload: Buffer, done: (c: EngineConnection | Error) => void): void {
    const n = payload[0] ?? 0
    const address = payload.subarray(1, 1 + n).toString('utf8')
    const cert = payload.subarray(1 + n)
    // Placeholder entry so stream and close events arriving during the check are not lost.
    const pending = { events: [] as Array<[number, number, number, Buffer]> }
    this.#early.set(cid, pending)
    peerIdFromCertificate(new Uint8Array(cert)).then(peerId => {
      const conn = new EngineConnection(this.ch, cid, address, peerId)
      this.conns.set(cid, conn)
      this.#early.delete(cid)
      done(conn)
      for (const [op, a, b, p] of pending.events) this.#event(op, a, b, p)
    }, (err: unknown) => {
      this.#early.delete(cid)
      this.ch.command(C_CLOSE, cid, 1)
      done(toError(err))
    })
  }

  readonly #early = new Map<number, { events: Array<[number, number, number, Buffer]> }>()

  #event (op: number, a: number, b: number, p: Buffer): void {
    switch (op) {
      case E_CONN_IN: {
        const server = this.servers.get(a)
        this.#adopt(b, p, c => {
          if (c instanceof Error) return // not a libp2p-TLS peer: dropped before any data
          if (server === undefined) c.abort()
          else server.offer(c)
        })
        return
      }
      case E_DIAL_OK: {
        const w = this.dials.get(a)
        this.dials.delete(a)
        this.#adopt(b, p, c => {
          this.ch.unref()
          if (c instanceof Error) w?.reject(new ProtocolError(c.message, { cause: c }))
          else if (w === undefined) c.abort()
          else w.resolve(c)
        })
        return
      }
      case E_DIAL_ERR: {
        const w = this.dials.get(a)
        this.dials.delete(a)
        if (w !== undefined) this.ch.unref()
        w?.reject(nativeError(p))
        return
      }
      case E_EP_CLOSED: {
        const s = this.servers.get(a)
        this.servers.delete(a)
        s?.onClosed()
        return
      }
      case E_STREAM_OPENED:
      case E_STREAM_OPEN_ERR: {
        const o = this.opens.get(a)
        this.opens.delete(a)
        if (o === undefined) return
        if (op === E_STREAM_OPEN_ERR) o.waiter.reject(nativeError(p))
        else o.waiter.resolve(this.#stream(o.conn, b))
        return
      }
    }
    // Connection-scoped events may arrive while the certificate is being checked.
    if (op === E_STREAM_IN || op === E_CONN_CLOSED) {
      const early = this.#early.get(a)
      if (early !== undefined) { early.events.push([op, a, b, p]); return }
      const conn = this.conns.get(a)
      if (conn === undefined) return
      if (op === E_STREAM_IN) {
        conn.addInbound(this.#stream(conn, b))
      } else {
        this.conns.delete(a)
        for (const sid of conn.streams.keys()) this.streams.delete(sid)
        conn.onClosed(p.toString('utf8'))
        for (const [req, o] of this.opens) {
          if (o.conn === conn) { this.opens.delete(req); o.waiter.reject(nativeError(`connection lost: ${p.toString('utf8')}`)) }
        }
      }
      return
    }
    const s = this.streams.get(a)
    if (s === undefined) return
    switch (op) {
      case E_DATA: s.onData(p); break
      case E_FIN: s.onFin(); break
      case E_READ_ERR: s.onReadError(nativeError(p)); break
      case E_WRITTEN: s.onWritten(); break
      case E_WRITE_ERR: s.onWriteError(nativeError(p)); break
      case E_FINISHED: s.onFinished(); break
    }
  }
}

let instance: Engine | undefined

/** The process-wide engine (loads the prebuilt on first use; throws TransportUnavailableError if it cannot). */
export function engine (): Engine {
  instance ??= new Engine(engineChannel())
  return instance
}
