/**
 * Reliable-lane scenarios of the lossy-link benchmark with the real product:
 * a Hub (bench/reliable-ef-hub.ts, namespace B) sends reliable cloud→edge
 * messages to an EdgeNode (bench/reliable-ef-edge.ts, namespace A), both on
 * LMDB, across the emulated link, started with `ip netns exec` and the
 * request/reply channel of bench/lib/child-ipc.ts. Durability `relaxed`
 * on both: the subject is the link, not fsync (bench/reliable.ts covers that).
 *
 * - delivery: `count` messages paced at `rate`/s; distinct delivered,
 *   duplicates, latency p50/p99 (send on the hub → arrival at the edge app).
 * - outage: messages paced at `rate`/s for `preMs`, then the wire goes down
 *   (every packet dropped, nothing queued) for `outageMs` while the hub keeps
 *   producing, then up. Drain time = link restore → the edge has every
 *   message (all were produced before the restore): dead-link detection,
 *   reconnect backoff and transport recovery (TCP RTO / QUIC PTO backoff)
 *   are all inside it, as a user would see them.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { toError } from '../../src/errors.js'
import { ADDR_B, type LinkLab } from './lossy-netns.js'
import { IpcChild } from './child-ipc.js'
import { now } from './reliable-ipc.js'

/** A child of bench/ in namespace `side`, on the request/reply channel of ./child-ipc.ts. */
function nsChild (name: string, lab: LinkLab, side: 'a' | 'b', script: string): IpcChild {
  const proc = lab.spawnIn(side, process.execPath, [fileURLToPath(new URL(`../${script}.js`, import.meta.url))], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced'
  })
  proc.stderr?.resume()
  return new IpcChild(name, proc)
}

interface Summary { count: number, distinct: number, firstAt: number, lastAt: number, p50: number, p99: number, startAt: number, connectedAt: number }

export interface ReliableResult {
  error?: string
  sent?: number
  delivered?: number
  duplicates?: number
  p50Ms?: number
  p99Ms?: number
  /** outage only: link restore → last message at the edge. */
  drainMs?: number
  /** Hub start → edge connected (handshake over the emulated link). */
  connectMs?: number
}

export interface ReliableJob {
  /** ws, quic or https (WebTransport). */
  scheme: string
  kind: 'delivery' | 'outage'
  rate: number
  /** delivery: messages to send. */
  count: number
  preMs: number
  outageMs: number
  /** Give up waiting for delivery this long after the last send (or the restore). */
  timeoutMs: number
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export async function runReliable (lab: LinkLab, job: ReliableJob): Promise<ReliableResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ef-lossy-'))
  const hub = nsChild('hub', lab, 'b', 'reliable-ef-hub')
  const edge = nsChild('edge', lab, 'a', 'reliable-ef-edge')
  try {
    const listen = job.scheme === 'https' ? `https://${ADDR_B}:0/ef` : `${job.scheme}://${ADDR_B}:0`
    const { url, token } = await hub.request<{ url: string, token: string }>('start', { listen, dataDir: join(dir, 'hub'), durability: 'relaxed', altNames: [ADDR_B] })
    const n = job.kind === 'delivery' ? job.count : Math.ceil(job.rate * (job.preMs + job.outageMs) / 1000)
    await edge.request('start', { hub: url, token, dataDir: join(dir, 'edge'), durability: 'relaxed', capacity: n, base: 0 })
    // One message end to end proves the session is up before the clock starts.
    await hub.request('produce', { n: 1, window: 1 })
    const first = await edge.request<Summary>('wait', { n: 1, timeoutMs: 40_000 })
    const connectMs = first.connectedAt > 0 ? first.connectedAt - first.startAt : undefined
    await edge.request('reset', { capacity: n, base: 1 })
    let upAt = 0
    const producing = hub.request('produce', { n, window: 256, rate: job.rate })
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
      return { error: toError(err).message, sent: n, delivered: partial.distinct, duplicates: partial.count - partial.distinct, connectMs }
    }
    return {
      sent: n,
      delivered: s.distinct,
      duplicates: s.count - s.distinct,
      p50Ms: s.p50,
      p99Ms: s.p99,
      drainMs: job.kind === 'outage' ? Math.max(0, s.lastAt - upAt) : undefined,
      connectMs
    }
  } catch (err) {
    return { error: toError(err).message.slice(0, 300) }
  } finally {
    await Promise.all([edge.quit(5000), hub.quit(5000)])
    rmSync(dir, { recursive: true, force: true })
  }
}
