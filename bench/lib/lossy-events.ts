/**
 * The events edge links are known for (issue 19), for every system on the
 * wire (edgefabric per transport, mosquitto, NATS — ./lossy-reliable.ts
 * startPair): while the edge sends small requests at a fixed rate (open
 * loop, each with a deadline), the cloud sends reliable messages to the edge
 * at a fixed rate, and (asym) the edge uploads bulk messages, the lab
 * applies a schedule of events to the link:
 *
 * - rebind: NAT rebinding. The edge's namespace sits behind source NAT from
 *   the start; at 1/6 of the run the mapping moves to another source port
 *   range, at 7/12 to another source IP (LinkLab.nat). Every transport sees
 *   its flows arrive from a new address: TCP peers answer with a reset,
 *   QUIC may migrate (RFC 9000 §9) or wait out its idle timeout.
 * - flap: link up 4 s, down 1 s, repeated for the run.
 * - asym: cellular-like link, set by the caller (2 Mbit/s up, 20 down, 80 ms
 *   RTT, 1 % loss up) with a bulk upload beside the requests.
 *
 * Figures: requests failed / sent, latency of the answered ones, the longest
 * time without an answer, reconnects of the edge's session; delivered,
 * duplicates and p99 of the cloud→edge messages; upload goodput.
 */
import { toError } from '../../src/errors.js'
import { ADDR_A_REBOUND, type LinkLab } from './lossy-netns.js'
import { startPair, type Pair, type Summary, type SystemRef } from './lossy-reliable.js'
import type { RequestStats, UploadStats } from './session-load.js'

export type EventScenario = 'rebind' | 'flap' | 'asym'
export const EVENT_SCENARIOS: readonly EventScenario[] = ['rebind', 'flap', 'asym']

export interface EventJob {
  system: SystemRef
  scenario: EventScenario
  durationMs: number
  /** Edge requests per second (open loop) and each one's deadline. */
  reqRate: number
  reqTimeoutMs: number
  /** Reliable cloud→edge messages per second. */
  downRate: number
  /** asym: bulk upload message size and messages in flight. */
  upload?: { bytes: number, window: number }
}

export interface EventResult {
  error?: string
  requests?: RequestStats
  delivery?: { sent: number, delivered: number, duplicates: number, p50Ms: number, p99Ms: number, error?: string }
  upload?: UploadStats
  reconnects?: number
  /** Times the edge client saw its session/connection drop (what the client library reports). */
  disconnects?: number
  connectMs?: number
  /** What was applied to the link, ms from the start of the load. */
  events: Array<{ atMs: number, what: string }>
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** NAT mappings of the rebinding scenario: generation → target. */
const NAT_GENERATIONS: Array<{ what: string, to: { addr?: string, ports?: [number, number] } }> = [
  { what: 'NAT: source ports 20000-29999', to: { ports: [20000, 29999] } },
  { what: 'rebind source port (30000-39999)', to: { ports: [30000, 39999] } },
  { what: `rebind source IP (${ADDR_A_REBOUND})`, to: { addr: ADDR_A_REBOUND } }
]

function schedule (job: EventJob): Array<{ atMs: number, what: string, apply: (lab: LinkLab) => Promise<void> | void }> {
  const d = job.durationMs
  if (job.scenario === 'rebind') {
    return [
      { atMs: Math.round(d / 6), what: NAT_GENERATIONS[1]!.what, apply: lab => lab.nat(1, NAT_GENERATIONS[1]!.to) },
      { atMs: Math.round(d * 7 / 12), what: NAT_GENERATIONS[2]!.what, apply: lab => lab.nat(2, NAT_GENERATIONS[2]!.to) }
    ]
  }
  if (job.scenario === 'flap') {
    const out: ReturnType<typeof schedule> = []
    for (let t = 4000; t + 1000 <= d; t += 5000) {
      out.push({ atMs: t, what: 'down', apply: lab => lab.down() }, { atMs: t + 1000, what: 'up', apply: lab => lab.up() })
    }
    return out
  }
  return []
}

export async function runEvent (lab: LinkLab, job: EventJob): Promise<EventResult> {
  const events: EventResult['events'] = []
  const n = Math.ceil(job.downRate * job.durationMs / 1000)
  let pair: Pair | undefined
  try {
    if (job.scenario === 'rebind') lab.nat(0, NAT_GENERATIONS[0]!.to)
    pair = await startPair(lab, job.system, n)
    const { cloud, edge, connectMs } = pair
    await edge.request('reset', { capacity: n, base: 1 })
    await edge.request('rr-start', { rate: job.reqRate, timeoutMs: job.reqTimeoutMs })
    if (job.upload !== undefined) await edge.request('up-start', { bytes: job.upload.bytes, window: job.upload.window, timeoutMs: 120_000 })
    const t0 = performance.now()
    const producing = cloud.request('produce', { n, window: 256, rate: job.downRate }).catch((err: unknown) => err)
    for (const e of schedule(job)) {
      const wait = t0 + e.atMs - performance.now()
      if (wait > 0) await sleep(wait)
      await e.apply(lab)
      events.push({ atMs: Math.round(performance.now() - t0), what: e.what })
    }
    const left = t0 + job.durationMs - performance.now()
    if (left > 0) await sleep(left)
    await lab.up()
    const [requests, upload] = await Promise.all([
      edge.request<RequestStats>('rr-stop'),
      job.upload !== undefined ? edge.request<UploadStats>('up-stop') : Promise.resolve(undefined)
    ])
    const produced = await producing
    let delivery: EventResult['delivery']
    let reconnects: number | undefined
    let disconnects: number | undefined
    try {
      const s = await edge.request<Summary>('wait', { n, timeoutMs: 60_000 })
      delivery = { sent: n, delivered: s.distinct, duplicates: s.count - s.distinct, p50Ms: s.p50, p99Ms: s.p99 }
      reconnects = s.reconnects
      disconnects = s.disconnects
    } catch (err) {
      const s = await edge.request<Summary>('wait', { n: 0, timeoutMs: 1000 })
      delivery = { sent: n, delivered: s.distinct, duplicates: s.count - s.distinct, p50Ms: s.p50, p99Ms: s.p99, error: toError(err).message.slice(0, 200) }
      reconnects = s.reconnects
      disconnects = s.disconnects
    }
    if (produced instanceof Error) delivery.error = `producer: ${produced.message.slice(0, 200)}`
    return { requests, delivery, upload, reconnects, disconnects, connectMs, events }
  } catch (err) {
    return { error: toError(err).message.slice(0, 300), events }
  } finally {
    await pair?.close()
    if (job.scenario === 'rebind') lab.nat(0, undefined)
    await lab.up()
  }
}
