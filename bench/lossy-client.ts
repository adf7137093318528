/**
 * Client side of the lossy-link benchmark (bench/lossy.ts), run inside
 * namespace A by `ip netns exec`: dials the echo server
 * (bench/loopback-server.ts, in namespace B) through the emulated link and
 * runs the asked scenarios in order, one JSON line per scenario on stdout.
 *
 *   node dist-bench/bench/lossy-client.js '<ClientJob JSON>'
 *
 * Scenarios (the server protocol is bench/lib/loopback-protocol.ts):
 * - setup: `setupCount` sequential fresh connections; each sample is dial +
 *   one 256 B request answered (a connection is set up once it is usable).
 * - bulk: 64 KiB envelopes on the `bulk` channel for the duration, each
 *   followed by a `bulk-end` whose answer (on `control`) confirms the bytes
 *   the server received since the previous one; goodput = bytes confirmed
 *   by the deadline ÷ duration. The connection is then aborted rather than
 *   drained: on a 0.2 Mbit/s link the megabytes sitting in send buffers would
 *   take minutes to flush and say nothing more about the link.
 * - rr: 256 B request/response, one in flight, p50/p99.
 * - hol: the same requests on the `high` channel WHILE a bulk transfer runs
 *   on `bulk` of the same connection: on one TCP stream (ws, WebTransport
 *   over HTTP/2) a lost bulk segment also stalls the requests behind it.
 * - streams: `streams` request loops on one connection at once.
 * Exits when done; a scenario failure is a line with `error`, not a crash.
 */
import { toError } from '../src/errors.js'
import { dial } from '../src/transport/index.js'
import type { Channel } from '../src/transport/types.js'
import type { QuicStats } from '../src/transport/quic-engine-addon.js'
import { bulkEndEnvelope, requestEnvelope, uploadEnvelope, type BulkReport } from './lib/loopback-protocol.js'
import { BenchClient, measureRequestResponse, percentile } from './lib/loopback-scenarios.js'

export type ClientScenario = 'setup' | 'bulk' | 'rr' | 'hol' | 'streams'

export interface ClientJob {
  url: string
  identity: string | undefined
  scenarios: ClientScenario[]
  durationMs: number
  setupCount: number
  streams: number
}

export interface ClientResult {
  scenario: ClientScenario
  error?: string
  /** Goodput, Mbit/s of payload (bulk, hol). */
  goodputMbit?: number
  /** Request/response latency percentiles, ms (rr, hol, streams). */
  p50Ms?: number
  p99Ms?: number
  /** Completed requests per second (rr, hol, streams). */
  perSecond?: number
  /** Connection setup samples, ms (setup). */
  setupMs?: number[]
  /** WebTransport only: http3 or http2. */
  mode?: string
  /** quic on the edgefabric engine: the sender's (this client's) transport counters at the end of the scenario (issue 18). */
  quic?: QuicStats
}

const REQUEST = new Uint8Array(256)
const BULK = new Uint8Array(64 * 1024)

async function open (job: ClientJob): Promise<BenchClient> {
  const conn = await dial(job.url, job.url.startsWith('ws:') || job.identity === undefined ? {} : { expectedRemoteIdentity: job.identity })
  return new BenchClient(conn)
}

async function close (c: BenchClient): Promise<void> {
  if (c.conn.status === 'open') await c.conn.close('bench done')
  await c.conn.closed()
}

function quicStatsOf (c: BenchClient): QuicStats | undefined {
  const f = (c.conn as { quicStats?: () => QuicStats | undefined }).quicStats
  return typeof f === 'function' ? f.call(c.conn) : undefined
}

function modeOf (c: BenchClient): string | undefined {
  const m = (c.conn as { webtransportMode?: unknown }).webtransportMode
  return typeof m === 'string' ? m : undefined
}

async function withTimeout<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Bulk upload until `deadline`; resolves with payload bytes the server confirmed by then. */
async function bulkUntil (c: BenchClient, deadline: number): Promise<number> {
  let confirmed = 0
  while (performance.now() < deadline && c.conn.status === 'open') {
    let ok1: boolean
    try {
      ok1 = c.conn.send(uploadEnvelope(BULK), { channel: 'bulk' })
    } catch {
      break // closed under us: what was confirmed so far stands, the caller sees the state
    }
    c.request(bulkEndEnvelope(), 'bulk').then(reply => {
      if (performance.now() <= deadline) confirmed += (reply.content as BulkReport).bytes
    }, () => {}) // the connection is aborted at the end with requests pending
    if (!ok1 || c.conn.status !== 'open') {
      const left = deadline - performance.now()
      if (left <= 0) break
      await Promise.race([c.conn.onDrain().catch(() => {}), new Promise(resolve => setTimeout(resolve, left))])
    } else {
      await new Promise(resolve => setImmediate(resolve))
    }
  }
  const left = deadline - performance.now()
  if (left > 0) await new Promise(resolve => setTimeout(resolve, left))
  return confirmed
}

async function rrLoop (c: BenchClient, channel: Channel, until: () => boolean, lat: number[]): Promise<void> {
  while (!until()) {
    const t0 = performance.now()
    await c.request(requestEnvelope(REQUEST), channel)
    lat.push(performance.now() - t0)
  }
}

async function scenario (job: ClientJob, s: ClientScenario): Promise<ClientResult> {
  if (s === 'setup') {
    const samples: number[] = []
    let mode: string | undefined
    for (let i = 0; i < job.setupCount; i++) {
      const t0 = performance.now()
      const c = await withTimeout(60_000, 'dial', open(job))
      await withTimeout(60_000, 'first request', c.request(requestEnvelope(REQUEST)))
      samples.push(performance.now() - t0)
      mode ??= modeOf(c)
      await close(c)
    }
    return { scenario: s, setupMs: samples, mode }
  }
  const c = await withTimeout(60_000, 'dial', open(job))
  try {
    // Untimed: handshake leftovers, JIT; the congestion window is left as a fresh connection has it.
    for (let i = 0; i < 3; i++) await withTimeout(60_000, 'warm-up', c.request(requestEnvelope(REQUEST)))
    const mode = modeOf(c)
    if (s === 'bulk') {
      const bytes = await bulkUntil(c, performance.now() + job.durationMs)
      return { scenario: s, goodputMbit: bytes * 8 / (job.durationMs / 1000) / 1e6, mode, quic: quicStatsOf(c) }
    }
    if (s === 'rr' || s === 'streams') {
      const r = await measureRequestResponse([c], s === 'rr' ? 1 : job.streams, REQUEST, job.durationMs)
      return { scenario: s, p50Ms: r.p50Us / 1000, p99Ms: r.p99Us / 1000, perSecond: r.perSecond, mode, quic: quicStatsOf(c) }
    }
    // hol: requests on `high` while `bulk` is saturated on the same connection.
    const lat: number[] = []
    const start = performance.now()
    const deadline = start + job.durationMs
    const bulk = bulkUntil(c, deadline)
    // Let the bulk transfer fill the pipe before the first timed request.
    await new Promise(resolve => setTimeout(resolve, Math.min(500, job.durationMs / 4)))
    const requests = withTimeout(job.durationMs + 60_000, 'hol requests', rrLoop(c, 'high', () => performance.now() > deadline, lat))
    const [bytes] = await Promise.all([bulk, requests])
    const sorted = Float64Array.from(lat).sort()
    return {
      scenario: s,
      goodputMbit: bytes * 8 / (job.durationMs / 1000) / 1e6,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      perSecond: lat.length / ((performance.now() - start) / 1000),
      mode
    }
  } finally {
    // Abort, not close: a graceful close would first flush what bulk left queued.
    c.conn.abort(new Error('scenario done'))
    await c.conn.closed()
  }
}

const job = JSON.parse(process.argv[2] ?? '{}') as ClientJob
for (const s of job.scenarios ?? []) {
  let r: ClientResult
  try {
    r = await scenario(job, s)
  } catch (err) {
    r = { scenario: s, error: toError(err).message.slice(0, 300) }
  }
  process.stdout.write(JSON.stringify(r) + '\n')
}
// Native transports may hold handles a moment after close; every result is out.
process.exit(0)
