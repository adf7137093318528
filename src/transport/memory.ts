/**
 * `memory://name` — an in-process transport, the reference implementation of
 * the contract and the deterministic substrate for hub/edge tests.
 *
 * Each direction of each channel behaves like a flow-controlled stream: the
 * receiver grants `capacity` bytes of credit per channel; the sender stops
 * (writeFrame → false) when it is used up; credit returns when the receiver
 * reads. A paused receiver therefore pushes back on the sender per channel,
 * like QUIC stream flow control, so a stalled bulk channel never delays
 * control. `delayMs` is a one-way latency applied to frames, credit and
 * close signals alike.
 *
 * URL query parameters (dial side): `capacity` (bytes, default 1 MiB) and
 * `delayMs` (default 0), e.g. `memory://hub?delayMs=20&capacity=65536`.
 */
import { PRIORITIES } from '../codec/envelope.js'
import {
  AbortedError, ConnectionResetError, DialError, DialTimeoutError, IdentityMismatchError, UnsupportedUrlError
} from '../errors.js'
import { intOption } from '../util/options.js'
import { AbstractConnection } from './abstract-connection.js'
import { resolveConnectionOptions, type ResolvedConnectionOptions } from './options.js'
import type { Channel, Connection, DialOptions, ListenOptions, Listener, Transport } from './types.js'

const listeners = new Map<string, MemoryListener>()
let autoName = 0

interface Link { delayMs: number, capacity: number }

type Signal = { kind: 'frame', channel: Channel, payload: Uint8Array } | { kind: 'fin', reason: string | undefined }

export class MemoryConnection extends AbstractConnection {
  peer!: MemoryConnection
  readonly #link: Link
  readonly #credit = new Map<Channel, number>()
  readonly #rx = new Map<Channel, Uint8Array[]>()
  readonly #reading = new Map<Channel, boolean>()
  #finReceived: string | undefined | null = null // null = no fin yet
  #gone = false
  #timers = new Set<NodeJS.Timeout>()

  constructor (direction: 'inbound' | 'outbound', remoteAddress: string, remoteIdentity: string | undefined,
    options: ResolvedConnectionOptions, link: Link) {
    super({ transport: 'memory', direction, remoteAddress, remoteIdentity, options, headOfLineBlocking: false, frameOverhead: 0 })
    this.#link = link
    for (const ch of PRIORITIES) {
      this.#credit.set(ch, link.capacity)
      this.#rx.set(ch, [])
      this.#reading.set(ch, true)
    }
    this.setRtt(link.delayMs * 2)
  }

  protected writeFrame (channel: Channel, payload: Uint8Array): boolean {
    const credit = (this.#credit.get(channel) ?? 0) - payload.byteLength
    this.#credit.set(channel, credit)
    this.#later(() => this.peer.#arrive({ kind: 'frame', channel, payload }))
    return credit > 0
  }

  protected setReading (channel: Channel, reading: boolean): void {
    this.#reading.set(channel, reading)
    if (reading) this.#drainRx(channel)
  }

  protected closeUnderlying (reason: string | undefined): Promise<void> {
    return new Promise(resolve => {
      this.#later(() => {
        this.peer.#arrive({ kind: 'fin', reason })
        this.#gone = true
        resolve()
      })
    })
  }

  protected abortUnderlying (err: Error): void {
    this.#gone = true
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    const peer = this.peer
    const reset = (): void => {
      if (peer.#gone) return
      peer.#gone = true
      peer.underlyingClosed({ clean: false, error: new ConnectionResetError('peer aborted the connection', { cause: err }) })
    }
    if (this.#link.delayMs === 0) setImmediate(reset)
    else setTimeout(reset, this.#link.delayMs)
  }

  #arrive (signal: Signal): void {
    if (this.#gone || this.status === 'closed') return
    if (signal.kind === 'fin') {
      this.#finReceived = signal.reason
      this.#maybeFin()
      return
    }
    ;(this.#rx.get(signal.channel) as Uint8Array[]).push(signal.payload)
    this.#drainRx(signal.channel)
  }

  #drainRx (channel: Channel): void {
    const rx = this.#rx.get(channel) as Uint8Array[]
    while (rx.length > 0 && this.#reading.get(channel) === true && this.status !== 'closed') {
      const payload = rx.shift() as Uint8Array
      this.receiveFrame(channel, payload)
      // return credit to the sender once the frame has been read
      this.#later(() => this.peer.#credited(channel, payload.byteLength))
    }
    this.#maybeFin()
  }

  #credited (channel: Channel, bytes: number): void {
    if (this.#gone || this.status === 'closed') return
    const before = this.#credit.get(channel) ?? 0
    const after = before + bytes
    this.#credit.set(channel, after)
    if (before <= 0 && after > 0) this.channelWritable(channel)
  }

  /** A fin is delivered only after every frame sent before it has been read. */
  #maybeFin (): void {
    if (this.#finReceived === null) return
    for (const rx of this.#rx.values()) if (rx.length > 0) return
    const reason = this.#finReceived
    this.#finReceived = null
    this.#gone = true
    this.underlyingClosed(reason === undefined ? { clean: true } : { clean: true, reason })
  }

  #later (fn: () => void): void {
    if (this.#link.delayMs === 0) {
      queueMicrotask(fn)
      return
    }
    const t = setTimeout(() => { this.#timers.delete(t); fn() }, this.#link.delayMs)
    this.#timers.add(t)
  }
}

class MemoryListener implements Listener {
  readonly url: string
  readonly identity: string | undefined
  readonly connections = new Set<Connection>()
  readonly name: string
  readonly options: ListenOptions
  readonly resolved: ResolvedConnectionOptions
  #closed = false

  constructor (name: string, options: ListenOptions) {
    this.name = name
    this.url = `memory://${name}`
    this.options = options
    this.resolved = resolveConnectionOptions(options)
    this.identity = typeof options.identity === 'string' ? options.identity : undefined
  }

  get isClosed (): boolean { return this.#closed }

  async close (graceMs = 2000): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (listeners.get(this.name) === this) listeners.delete(this.name)
    await Promise.all([...this.connections].map(async c => {
      const timer = setTimeout(() => c.abort(new AbortedError('listener closed')), graceMs)
      try { await c.close('listener closed') } finally { clearTimeout(timer) }
    }))
  }
}

function parse (url: URL): { name: string, link: Link } {
  if (url.protocol !== 'memory:') throw new UnsupportedUrlError(url.href, 'not a memory:// URL')
  const name = url.host + url.pathname.replace(/\/$/, '')
  const delayMs = intOption('delayMs', url.searchParams.has('delayMs') ? Number(url.searchParams.get('delayMs')) : undefined, 0, 0, 60_000)
  const capacity = intOption('capacity', url.searchParams.has('capacity') ? Number(url.searchParams.get('capacity')) : undefined, 1024 * 1024, 1)
  return { name, link: { delayMs, capacity } }
}

export const memoryTransport: Transport = {
  name: 'memory',
  schemes: ['memory'],
  async probe () {},

  async listen (url, options) {
    let { name } = parse(url)
    if (name === '' || name === '0') name = `auto-${process.pid}-${++autoName}`
    if (listeners.has(name)) throw new DialError(url.href, `memory listener "${name}" already exists`)
    const listener = new MemoryListener(name, options)
    listeners.set(name, listener)
    return listener
  },

  async dial (url, options: DialOptions = {}) {
    const { name, link } = parse(url)
    const resolved = resolveConnectionOptions(options)
    const timeoutMs = intOption('timeoutMs', options.timeoutMs, 10_000, 0)
    if (options.signal?.aborted === true) throw new AbortedError('dial aborted')
    // Connection setup takes one round trip, so close-during-dial and timeouts are observable.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); resolve() }, link.delayMs * 2)
      const deadline = setTimeout(() => { cleanup(); reject(new DialTimeoutError(url.href, timeoutMs)) }, timeoutMs)
      const onAbort = (): void => { cleanup(); reject(new AbortedError('dial aborted')) }
      const cleanup = (): void => {
        clearTimeout(timer)
        clearTimeout(deadline)
        options.signal?.removeEventListener('abort', onAbort)
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
    })
    const listener = listeners.get(name)
    if (listener === undefined || listener.isClosed) throw new DialError(url.href, 'connection refused (no memory listener with that name)')
    if (options.expectedRemoteIdentity !== undefined && options.expectedRemoteIdentity !== listener.identity) {
      throw new IdentityMismatchError(options.expectedRemoteIdentity, listener.identity)
    }
    const localIdentity = typeof options.identity === 'string' ? options.identity : undefined
    const expectInbound = listener.options.expectedRemoteIdentity
    if (expectInbound !== undefined && expectInbound !== localIdentity) {
      throw new IdentityMismatchError(expectInbound, localIdentity)
    }
    const max = listener.options.maxConnections ?? 100_000
    if (listener.connections.size >= max) throw new DialError(url.href, 'connection refused (listener at maxConnections)')
    const outbound = new MemoryConnection('outbound', listener.url, listener.identity, resolved, link)
    const inbound = new MemoryConnection('inbound', `memory-client-${outbound.id}`, localIdentity, listener.resolved, link)
    outbound.peer = inbound
    inbound.peer = outbound
    listener.connections.add(inbound)
    inbound.once('close', () => listener.connections.delete(inbound))
    try {
      listener.options.onConnection(inbound)
    } catch (err) {
      inbound.abort(err instanceof Error ? err : new AbortedError('onConnection threw'))
    }
    return outbound
  }
}
