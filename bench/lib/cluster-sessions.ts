/**
 * bench/cluster.ts `--sessions N`: idle sessions held by one hub in cluster
 * mode (3 nats-server, R3) against the embedded single hub (LMDB), rounds
 * interleaved. Each round: the hub alone in a child process
 * (cluster-sessions-hub.ts), N simulated edges (bench/sessions-edge.ts, the
 * real EdgeConnector) join over ws, every session passes a heartbeat, then
 * `idle` seconds of nothing. Reported per mode: sessions held, hub RSS per
 * session (after − before, after a forced GC), hub idle CPU, and in cluster
 * mode the NATS servers' RSS growth and idle CPU (each connected node has an
 * outbox reader: an ordered consumer on the servers).
 */
import { readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { loadavg } from 'node:os'

import { setTimeout as sleep } from 'node:timers/promises'
import { loadOrCreateHubIdentity } from '../../src/hub/identity.js'
import { createJoinToken } from '../../src/identity/token.js'
import type { NatsCluster } from '../../test/cluster/nats-cluster.js'
import { IpcChild } from './child-ipc.js'
import type { ConnectResult, HubStats } from './sessions-ipc.js'

type HubReply = HubStats & { url: string }
export interface SessionsResult { mode: string, held: number, joinRate: number, rssPerSessionKb: number, idleCpuPct: number, natsRssPerSessionKb?: number, natsIdleCpuPct?: number }

const T = 180_000
const PER_PROC = 1000

/** RSS (bytes) and CPU ticks (user + system) of a process, from /proc. */
function procOf (pid: number | undefined): { rss: number, ticks: number } {
  if (pid === undefined) return { rss: 0, ticks: 0 }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { rss: Number(f[21]) * 4096, ticks: Number(f[11]) + Number(f[12]) }
  } catch { return { rss: 0, ticks: 0 } }
}
const natsTotals = (nats: NatsCluster): { rss: number, ticks: number } =>
  nats.servers.map(s => procOf(s.proc?.pid)).reduce((a, b) => ({ rss: a.rss + b.rss, ticks: a.ticks + b.ticks }), { rss: 0, ticks: 0 })

export async function sessionsRound (mode: 'single' | 'cluster', n: number, idleS: number, nats: NatsCluster, tag: string): Promise<SessionsResult> {
  const dataDir = await mkdtemp(`/tmp/ef-bench-cluster-sessions-${mode}-`)
  const procs = Math.max(1, Math.ceil(n / PER_PROC))
  const window = 32
  const cluster = mode === 'cluster' ? JSON.stringify({ servers: nats.urls, name: `s${tag}`, identitySecret: 'bench-secret-0123456789', hubName: `bench-${tag}` }) : 'none'
  const preAuth = JSON.stringify({ maxPendingPerSource: Math.max(64, procs * window), maxPending: Math.max(512, procs * window) })
  const hub = IpcChild.fork('hub', new URL('./cluster-sessions-hub.js', import.meta.url), ['ws://127.0.0.1:0', dataDir, preAuth, cluster], { execArgv: ['--expose-gc'], serialization: 'json' })
  const edges: IpcChild[] = []
  try {
    const before = await hub.request<HubReply>('stats', { gc: true }, T)
    const natsBefore = natsTotals(nats)
    const identity = await loadOrCreateHubIdentity(dataDir)
    for (let p = 0; p < procs; p++) {
      const nodes: Array<{ id: string, token: string }> = []
      for (let i = p * PER_PROC; i < Math.min(n, (p + 1) * PER_PROC); i++) nodes.push({ id: `sim-${i}`, token: createJoinToken(identity, { nodeId: `sim-${i}`, ttlSeconds: 3600 }) })
      const child = IpcChild.fork(`edge-${p}`, new URL('../sessions-edge.js', import.meta.url), [], { serialization: 'json' })
      edges.push(child)
      await child.request('init', { init: { url: before.url, pins: { tls: identity.caFingerprint, quic: identity.quicPeerId }, nodes, window, deadlineMs: Math.max(120_000, n * 30), tuning: {} } }, T)
    }
    const joins = await Promise.all(edges.map(async e => await e.request<ConnectResult>('connect', {}, Math.max(120_000, n * 30) + 120_000)))
    const seconds = Math.max(0.001, (Math.max(...joins.map(j => j.lastWelcomeAt)) - Math.min(...joins.map(j => j.firstDialAt))) / 1000)
    const welcomed = joins.reduce((a, j) => a + j.connected, 0)
    await sleep(6000) // past the first heartbeat; the join burst's garbage settles
    const mem = await hub.request<HubReply>('stats', { gc: true }, T)
    const natsA = natsTotals(nats)
    const a = await hub.request<HubReply>('stats', {}, T)
    await sleep(idleS * 1000)
    const b = await hub.request<HubReply>('stats', {}, T)
    const natsB = natsTotals(nats)
    const held = b.connected
    const cpu = ((b.cpuUserUs + b.cpuSystemUs - a.cpuUserUs - a.cpuSystemUs) / 1000) / (b.at - a.at) * 100
    const r: SessionsResult = { mode, held, joinRate: welcomed / seconds, rssPerSessionKb: (mem.rss - before.rss) / Math.max(1, held) / 1024, idleCpuPct: cpu }
    if (mode === 'cluster') {
      r.natsRssPerSessionKb = (natsA.rss - natsBefore.rss) / Math.max(1, held) / 1024
      r.natsIdleCpuPct = (natsB.ticks - natsA.ticks) / 100 / ((b.at - a.at) / 1000) * 100
    }
    process.stderr.write(`sessions ${mode}: ${held}/${n} held, ${r.joinRate.toFixed(0)} joins/s, hub RSS ${(mem.rss / 1048576).toFixed(0)} MiB (${r.rssPerSessionKb.toFixed(1)} KB/session), idle CPU ${cpu.toFixed(1)} %${r.natsRssPerSessionKb === undefined ? '' : `, NATS +${r.natsRssPerSessionKb.toFixed(1)} KB/session over 3 servers, NATS idle CPU ${r.natsIdleCpuPct?.toFixed(1)} %`}; load ${loadavg().map(x => x.toFixed(1)).join(' ')}\n`)
    return r
  } finally {
    await Promise.all(edges.map(async e => { await e.quit(30_000).catch(() => { e.kill() }) }))
    await hub.quit(30_000).catch(() => { hub.kill() })
  }
}

export function sessionsReport (rows: SessionsResult[]): string {
  const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }
  const rng = (xs: number[], d = 1): string => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`
  const out: string[] = []
  for (const mode of ['single', 'cluster']) {
    const rs = rows.filter(r => r.mode === mode)
    if (rs.length === 0) continue
    out.push(`  ${mode.padEnd(7)} held ${rng(rs.map(r => r.held), 0)}, joins/s ${rng(rs.map(r => r.joinRate), 0)}, hub RSS/session ${rng(rs.map(r => r.rssPerSessionKb))} KB, hub idle CPU ${rng(rs.map(r => r.idleCpuPct))} % of a core` +
      (mode === 'cluster' ? `, NATS RSS/session ${rng(rs.map(r => r.natsRssPerSessionKb ?? NaN))} KB (3 servers together), NATS idle CPU ${rng(rs.map(r => r.natsIdleCpuPct ?? NaN))} %` : ''))
  }
  return out.join('\n')
}

