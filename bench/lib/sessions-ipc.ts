/**
 * Messages between bench/sessions.ts (the orchestrator) and its children
 * (bench/sessions-hub.ts, bench/sessions-edge.ts), carried by the
 * request/reply channel of ./child-ipc.ts, and the figures they report.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { registerTransport } from '../../src/transport/index.js'
import { createQuicTransport, type QuicTransportOptions } from '../../src/transport/quic.js'
import { createWsTransport } from '../../src/transport/ws.js'

export interface ProcStats {
  /** process.memoryUsage() */
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
  /** process.cpuUsage() in µs (user + system, every thread of the process). */
  cpuUserUs: number
  cpuSystemUs: number
  /** Date.now() at the reading. */
  at: number
}

export interface HubStats extends ProcStats {
  /** Sessions the hub counts as connected (node-connected minus node-disconnected events). */
  connected: number
  refusals: number
  disconnects: number
  /** CPU µs per thread name (Linux /proc), to tell the JS thread from native runtimes. */
  threads: Record<string, number>
  /** /proc/self/smaps_rollup in bytes (Rss, Anonymous, Private_Dirty, …): where the native memory is. */
  smaps: Record<string, number>
}

export interface EdgeStats extends ProcStats {
  connected: number
  /** Sum over this process's sessions of Connection.stats (payload + framing, no IP/TCP/UDP/QUIC headers). */
  bytesSent: number
  bytesReceived: number
  messagesSent: number
  messagesReceived: number
  /** Sessions that dropped after having been welcomed (should stay 0 while idle). */
  drops: number
}

export interface ConnectResult {
  /** Date.now() of the first dial and the last welcome. */
  firstDialAt: number
  lastWelcomeAt: number
  connected: number
  /** Dial/handshake attempts that failed and were retried by the connector's backoff. */
  retries: number
  /** Connectors that gave up (a refusal retrying cannot fix). */
  failed: number
  /** Sessions not welcomed when the phase deadline passed. */
  missing: number
  lastError?: string
  /** Failed dials by message (digits masked), this process. */
  dialErrors?: Record<string, number>
  /** Per-session handshake latency (dial start → welcome), ms: p50 / p99 / max. */
  latencyMs: { p50: number, p99: number, max: number }
}

export interface EdgeInit {
  url: string
  pins: { quic?: string, tls?: string }
  nodes: Array<{ id: string, token: string }>
  /** Dials in flight per process. */
  window: number
  /** Phase deadline, ms. */
  deadlineMs: number
  tuning: TransportTuning
}

/**
 * What-if transport settings, applied identically in the hub and the edge
 * processes by registering a transport built with them in place of the
 * default one. Empty = the shipped defaults.
 */
export interface TransportTuning {
  /** quic:// keep-alive interval (default 2000 ms); the idle timeout becomes max(10 s, 3 × this). */
  quicKeepAliveMs?: number
  /** quic:// RTT statistic refresh interval (default 1000 ms, one timer per connection). */
  quicRttIntervalMs?: number
  /** ws:// RTT ping interval (default 5000 ms; 0 = off). */
  wsPingMs?: number
}

export function applyTuning (t: TransportTuning): void {
  if (t.quicKeepAliveMs !== undefined || t.quicRttIntervalMs !== undefined) {
    const o: QuicTransportOptions = {}
    if (t.quicKeepAliveMs !== undefined) {
      o.keepAliveIntervalMs = t.quicKeepAliveMs
      o.maxIdleTimeoutMs = Math.max(10_000, t.quicKeepAliveMs * 3)
    }
    if (t.quicRttIntervalMs !== undefined) o.rttIntervalMs = t.quicRttIntervalMs
    registerTransport(createQuicTransport(o))
  }
  if (t.wsPingMs !== undefined) registerTransport(createWsTransport({ pingIntervalMs: t.wsPingMs }))
}

export function describeTuning (t: TransportTuning): string {
  const parts: string[] = []
  if (t.quicKeepAliveMs !== undefined) parts.push(`quic keep-alive ${t.quicKeepAliveMs} ms`)
  if (t.quicRttIntervalMs !== undefined) parts.push(`quic RTT poll ${t.quicRttIntervalMs} ms`)
  if (t.wsPingMs !== undefined) parts.push(t.wsPingMs === 0 ? 'ws RTT ping off' : `ws RTT ping ${t.wsPingMs} ms`)
  return parts.join(', ')
}

export type ParentRequest =
  | { seq: number, cmd: 'stats', gc?: boolean }
  | { seq: number, cmd: 'init', init: EdgeInit }
  | { seq: number, cmd: 'connect' }
  | { seq: number, cmd: 'disconnect' }
  | { seq: number, cmd: 'snapshot', file: string }

export function procStats (): ProcStats {
  const m = process.memoryUsage()
  const c = process.cpuUsage()
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    cpuUserUs: c.user,
    cpuSystemUs: c.system,
    at: Date.now()
  }
}

/** Full GC, twice (the second pass collects what the first one's finalizers released). */
export async function forceGc (): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return
  gc()
  await new Promise(resolve => setImmediate(resolve))
  gc()
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i] as number
}

/**
 * CPU time per thread name of this process, in µs (Linux only; {} elsewhere).
 * Threads with the same name (tokio workers, libuv pool) are summed.
 */
export function threadCpu (): Record<string, number> {
  const out: Record<string, number> = {}
  let tasks: string[]
  try {
    tasks = readdirSync('/proc/self/task')
  } catch {
    return out
  }
  const ticksUs = 1e6 / 100 // USER_HZ is 100 on Linux
  for (const t of tasks) {
    try {
      const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const name = stat.slice(stat.indexOf('(') + 1, close).replace(/[0-9]+$/, '').replace(/[-_:]+$/, '') || 'thread'
      const fields = stat.slice(close + 2).split(' ')
      const us = (Number(fields[11]) + Number(fields[12])) * ticksUs
      out[name] = (out[name] ?? 0) + us
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** /proc/self/smaps_rollup as bytes per field ({} where unavailable). */
export function smapsRollup (): Record<string, number> {
  const out: Record<string, number> = {}
  try {
    for (const line of readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+) kB/.exec(line)
      if (m !== null) out[m[1] as string] = Number(m[2]) * 1024
    }
  } catch {
    // not Linux
  }
  return out
}
