/**
 * Reliable-lane scenarios of the lossy-link benchmark, for edgefabric and
 * the peers alike (./lossy-peers.ts): a cloud side in namespace B sends
 * cloud→edge messages to an edge application in namespace A across the
 * emulated link. edgefabric: a Hub (bench/reliable-ef-hub.ts) and an
 * EdgeNode (bench/reliable-ef-edge.ts), both on LMDB, durability `relaxed`
 * on both (the subject is the link, not fsync; bench/reliable.ts covers
 * that). Peers: their broker in B, a publisher beside it, the edge client in
 * A (bench/reliable-mqtt.ts, bench/reliable-nats.ts). All speak the same
 * commands over ./child-ipc.ts.
 *
 * - delivery: `count` messages paced at `rate`/s; distinct delivered,
 *   duplicates, latency p50/p99 (send on the cloud side → arrival at the edge app).
 * - outage: messages paced at `rate`/s for `preMs`, then the wire goes down
 *   (every packet dropped, nothing queued) for `outageMs` while the cloud
 *   keeps producing, then up. Drain time = link restore → the edge has every
 *   message (all were produced before the restore): dead-link detection,
 *   reconnect backoff and transport recovery (TCP RTO / QUIC PTO backoff)
 *   are all inside it, as a user would see them.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { toError } from '../../src/errors.js'
import type { IpcChild } from './child-ipc.js'
import { ADDR_B, type LinkLab } from './lossy-netns.js'
import { NATS_ACK_WAIT_MS, nsChild, PEER_KEEPALIVE_S, PEER_RECONNECT_MS, startPeerServer, type PeerKey } from './lossy-peers.js'
import { now } from './reliable-ipc.js'
import type { RequestStats } from './session-load.js'

/** What runs on the wire: edgefabric over one transport scheme, or a peer. */
export type SystemRef = { kind: 'ef', scheme: string, env?: Record<string, string> } | { kind: 'peer', peer: PeerKey }

export interface Summary { count: number, distinct: number, firstAt: number, lastAt: number, p50: number, p99: number, startAt: number, connectedAt: number, reconnects: number, disconnects: number }

/** A running cloud side + edge side, the first message already delivered end to end. */
export interface Pair {
  cloud: IpcChild
  edge: IpcChild
  /** Cloud start → edge connected (handshake over the emulated link). */
  connectMs: number | undefined
  close: () => Promise<void>
}

export async function startPair (lab: LinkLab, sys: SystemRef, capacity: number): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-lossy-'))
  let server: { stop: () => Promise<void> } | undefined
  const env = sys.kind === 'ef' ? sys.env : undefined
  const cloud = nsChild('cloud', lab, 'b', sys.kind === 'ef' ? 'reliable-ef-hub' : sys.peer === 'mosquitto' ? 'reliable-mqtt' : 'reliable-nats', env)
  const edge = nsChild('edge', lab, 'a', sys.kind === 'ef' ? 'reliable-ef-edge' : sys.peer === 'mosquitto' ? 'reliable-mqtt' : 'reliable-nats', env)
  const close = async (): Promise<void> => {
    await Promise.all([edge.quit(5000), cloud.quit(5000)])
    await server?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    if (sys.kind === 'ef') {
      const listen = sys.scheme === 'https' ? `https://${ADDR_B}:0/ef` : `${sys.scheme}://${ADDR_B}:0`
      const { url, token } = await cloud.request<{ url: string, token: string }>('start', { listen, dataDir: join(dir, 'hub'), durability: 'relaxed', altNames: [ADDR_B] })
      await edge.request('start', { hub: url, token, dataDir: join(dir, 'edge'), durability: 'relaxed', capacity, base: 0 })
    } else {
      const s = await startPeerServer(lab, sys.peer, join(dir, sys.peer))
      server = s
      await cloud.request('pub-start', { url: s.url, responder: true, ackWaitMs: NATS_ACK_WAIT_MS })
      await edge.request('sub-start', {
        url: s.url, capacity, base: 0, keepaliveS: PEER_KEEPALIVE_S, pingMs: PEER_KEEPALIVE_S * 1000, reconnectMs: PEER_RECONNECT_MS
      })
    }
    // One message end to end proves the session is up before any clock starts.
    await cloud.request('produce', { n: 1, window: 1 })
    const first = await edge.request<Summary>('wait', { n: 1, timeoutMs: 40_000 })
    const connectMs = first.connectedAt > 0 ? first.connectedAt - first.startAt : undefined
    return { cloud, edge, connectMs, close }
  } catch (err) {
    await close()
    throw err
  }
}

export interface ReliableResult {
  error?: string
  sent?: number
  delivered?: number
  duplicates?: number
  p50Ms?: number
  p99Ms?: number
  /** outage only: link restore → last message at the edge. */
  drainMs?: number
  /** Cloud start → edge connected (handshake over the emulated link). */
  connectMs?: number
  /** Edge sessions re-established during the run. */
  reconnects?: number
  /**
   * delivery with rrMs: application-level request/response on the same
   * session (edge → cloud application → edge, 256 B, one in flight), the
   * pattern every system offers (edgefabric bus requestUpstream, MQTT QoS 1
   * request + response topics, NATS request/reply).
   */
  appRr?: { p50Ms: number, p99Ms: number, perSecond: number, failed: number }
}

export interface ReliableJob {
  system: SystemRef
  kind: 'delivery' | 'outage'
  rate: number
  /** delivery: messages to send. */
  count: number
  preMs: number
  outageMs: number
  /** Give up waiting for delivery this long after the last send (or the restore). */
  timeoutMs: number
  /** delivery: then this long of application-level request/response (0 = none). */
  rrMs?: number
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export async function runReliable (lab: LinkLab, job: ReliableJob): Promise<ReliableResult> {
  const n = job.kind === 'delivery' ? job.count : Math.ceil(job.rate * (job.preMs + job.outageMs) / 1000)
  let pair: Pair | undefined
  try {
    pair = await startPair(lab, job.system, n)
    const { cloud, edge, connectMs } = pair
    await edge.request('reset', { capacity: n, base: 1 })
    let upAt = 0
    const producing = cloud.request('produce', { n, window: 256, rate: job.rate })
    if (job.kind === 'outage') {
      await sleep(job.preMs)
      await lab.down()
      await sleep(job.outageMs)
      await lab.up()
      upAt = now()
    }
    await producing
    let s: Summary
    try {
      s = await edge.request<Summary>('wait', { n, timeoutMs: job.timeoutMs })
    } catch (err) {
      // Not everything arrived in time: report what did (an error plus counts).
      const partial = await edge.request<Summary>('wait', { n: 0, timeoutMs: 1000 })
      return { error: toError(err).message, sent: n, delivered: partial.distinct, duplicates: partial.count - partial.distinct, connectMs, reconnects: partial.reconnects }
    }
    let appRr: ReliableResult['appRr']
    if (job.kind === 'delivery' && (job.rrMs ?? 0) > 0) {
      await edge.request('rr-start', { timeoutMs: 10_000 })
      await sleep(job.rrMs ?? 0)
      const r = await edge.request<RequestStats>('rr-stop')
      appRr = { p50Ms: r.p50Ms, p99Ms: r.p99Ms, perSecond: r.ok / ((job.rrMs ?? 1) / 1000), failed: r.failed }
    }
    return {
      appRr,
      sent: n,
      delivered: s.distinct,
      duplicates: s.count - s.distinct,
      p50Ms: s.p50,
      p99Ms: s.p99,
      drainMs: job.kind === 'outage' ? Math.max(0, s.lastAt - upAt) : undefined,
      connectMs,
      reconnects: s.reconnects
    }
  } catch (err) {
    return { error: toError(err).message.slice(0, 300) }
  } finally {
    await pair?.close()
  }
}
