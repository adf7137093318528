/**
 * The measured scenarios of the transport loopback benchmark, client side.
 *
 * - request/response: `workers` loops per connection, each with one request
 *   outstanding at a time (send → await the response matched by parentId →
 *   next). 1 worker on 1 connection is latency-bound; 16 workers on one
 *   connection pipeline through it; 1 worker on each of 16 connections
 *   spreads the same load over 16 connections.
 * - bulk: each connection sends `upload` envelopes on the `bulk` channel for
 *   the duration, honouring backpressure (send() false → await onDrain()),
 *   then `bulk-end`; the clock stops when the server has confirmed every byte
 *   (its report must match what was sent, or the sample is an error).
 */
import { ConnectionClosedError } from '../../src/errors.js'
import type { Envelope } from '../../src/codec/envelope.js'
import type { Channel, Connection } from '../../src/transport/types.js'
import { bulkEndEnvelope, requestEnvelope, uploadEnvelope, type BulkReport } from './loopback-protocol.js'

interface Waiter { resolve: (env: Envelope) => void, reject: (err: Error) => void }

/** A connection plus response matching by parentId. */
export class BenchClient {
  readonly conn: Connection
  readonly #pending = new Map<string, Waiter>()
  #closedError: Error | undefined

  constructor (conn: Connection) {
    this.conn = conn
    conn.on('message', env => {
      const id = env.header.parentId
      if (id === undefined) return
      const w = this.#pending.get(id)
      if (w === undefined) return
      this.#pending.delete(id)
      w.resolve(env)
    })
    conn.once('close', info => {
      this.#closedError = info.error ?? new ConnectionClosedError(`connection closed (${info.initiator}${info.reason !== undefined ? `: ${info.reason}` : ''})`)
      for (const w of this.#pending.values()) w.reject(this.#closedError)
      this.#pending.clear()
    })
  }

  /** Send `env` on `channel` and resolve with its response. */
  request (env: Envelope, channel: Channel = 'normal'): Promise<Envelope> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError)
    return new Promise<Envelope>((resolve, reject) => {
      this.#pending.set(env.header.id, { resolve, reject })
      try {
        // At most `workers` small requests are ever queued, far below the
        // high-water mark, so the boolean needs no waiting here.
        this.conn.send(env, { channel })
      } catch (err) {
        this.#pending.delete(env.header.id)
        reject(err as Error)
      }
    })
  }
}

export interface RrSample {
  /** Completed request/response round trips per second, all workers together. */
  perSecond: number
  count: number
  p50Us: number
  p99Us: number
}

export interface BulkSample {
  /** Payload (envelope content) bytes per second confirmed by the server, in MB/s (10^6). */
  perSecond: number
  bytes: number
  seconds: number
}

export function percentile (sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

const yieldToLoop = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

/**
 * Guard against a hung transport: past `ms`, abort every connection, which
 * rejects whatever is pending, so the run records an error instead of hanging.
 */
async function watchdog<T> (clients: BenchClient[], ms: number, what: string, run: Promise<T>): Promise<T> {
  const timer = setTimeout(() => {
    for (const c of clients) c.conn.abort(new Error(`${what}: no completion within ${ms} ms`))
  }, ms)
  try {
    return await run
  } finally {
    clearTimeout(timer)
  }
}

async function rrWorker (client: BenchClient, content: Uint8Array, deadline: number, latMs: number[]): Promise<void> {
  while (performance.now() < deadline) {
    const t0 = performance.now()
    await client.request(requestEnvelope(content))
    latMs.push(performance.now() - t0)
  }
}

/** Untimed requests on a fresh connection (handshake leftovers, congestion window, JIT). */
export async function warmRequests (clients: BenchClient[], content: Uint8Array, count: number): Promise<void> {
  await watchdog(clients, 15_000, 'warm-up', Promise.all(clients.map(async c => {
    for (let i = 0; i < count; i++) await c.request(requestEnvelope(content))
  })))
}

export async function measureRequestResponse (clients: BenchClient[], workers: number, content: Uint8Array, durationMs: number): Promise<RrSample> {
  const latMs: number[] = []
  const start = performance.now()
  const deadline = start + durationMs
  const loops = clients.flatMap(c => Array.from({ length: workers }, () => rrWorker(c, content, deadline, latMs)))
  await watchdog(clients, durationMs + 15_000, 'request/response', Promise.all(loops))
  const seconds = (performance.now() - start) / 1000
  const sorted = Float64Array.from(latMs).sort()
  return {
    perSecond: latMs.length / seconds,
    count: latMs.length,
    p50Us: percentile(sorted, 0.5) * 1000,
    p99Us: percentile(sorted, 0.99) * 1000
  }
}

async function bulkSender (client: BenchClient, payload: Uint8Array, deadline: number): Promise<number> {
  const conn = client.conn
  let sent = 0
  let sinceYield = 0
  while (performance.now() < deadline) {
    const ok = conn.send(uploadEnvelope(payload), { channel: 'bulk' })
    sent += payload.byteLength
    if (!ok) {
      sinceYield = 0
      await conn.onDrain()
    } else if (++sinceYield >= 4) {
      // A transport that keeps accepting must not starve the event loop (and our deadline check).
      sinceYield = 0
      await yieldToLoop()
    }
  }
  const reply = await client.request(bulkEndEnvelope(), 'bulk')
  const report = reply.content as BulkReport
  if (report?.bytes !== sent) throw new Error(`bulk: server confirmed ${String(report?.bytes)} bytes, ${sent} were sent`)
  return sent
}

export async function measureBulk (clients: BenchClient[], payload: Uint8Array, durationMs: number): Promise<BulkSample> {
  const start = performance.now()
  const deadline = start + durationMs
  const sent = await watchdog(clients, durationMs + 30_000, 'bulk', Promise.all(clients.map(c => bulkSender(c, payload, deadline))))
  const seconds = (performance.now() - start) / 1000
  const bytes = sent.reduce((a, b) => a + b, 0)
  return { perSecond: bytes / seconds / 1e6, bytes, seconds }
}
