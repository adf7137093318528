/**
 * Result shape and printed report of bench/sessions.ts: a plain table for
 * the terminal and the same rows as Markdown for bench/RESULTS.md.
 */
import type { ConnectResult } from './sessions-ipc.js'
import type { PortCounts } from './nft-counters.js'
import type { PeerRunResult } from './sessions-peers.js'

/** Issue 3 targets. */
export const TARGET_BYTES_PER_SESSION = 20 * 1024
export const TARGET_IDLE_UP_BIT_PER_NODE = 250
export const TARGET_SESSIONS = 10_000

interface Mem { rss: number, heapUsed: number, external: number }

export interface RunResult {
  transport: string
  requested: number
  processes: number
  window: number
  heartbeatMs: number
  /** Sessions connected at the memory reading (the divisor of every per-session figure). */
  sessions: number
  join: ConnectResult & { rate: number, seconds: number }
  rejoin: (ConnectResult & { rate: number, seconds: number }) | undefined
  hubCpuDuringJoinPct: number
  /** Hub process CPU per welcomed session during the join phase (all threads). */
  hubCpuMsPerJoin: number
  /** Simulated edges' CPU (all edge processes) per welcomed session during the join phase. */
  edgeCpuMsPerJoin: number
  hub: {
    before: Mem
    afterJoin: Mem
    afterIdle: Mem
    rssPerSessionB: number
    heapPerSessionB: number
    externalPerSessionB: number
    idleCpuPct: number
    idleCpuPctByThread: Record<string, number>
    disconnectsWhileIdle: number
    refusals: number
    /** smaps_rollup (bytes) of the hub before the join, after it, and after the idle window. */
    smaps?: { before: Record<string, number>, afterJoin: Record<string, number>, afterIdle: Record<string, number> }
  }
  edges: { rss: number, idleCpuPct: number, dropsWhileIdle: number }
  idle: {
    seconds: number
    wire: { upBitPerNode: number, downBitPerNode: number, upPktPerNodeS: number, downPktPerNodeS: number, raw: PortCounts } | undefined
    wireUnavailable: string | undefined
    counted: { upBitPerNode: number, downBitPerNode: number, upMsgPerNodeS: number, downMsgPerNodeS: number }
  }
  admin: { status: { ms: number, bytes: number } | undefined, metrics: { ms: number, bytes: number } | undefined }
  /** Whole-machine CPU (% of one core) during join and idle, and the part used by processes other than this bench. */
  machineLoad: { loadavgAtEnd: number[], joinBusyPct?: number | undefined, joinOtherPct?: number | undefined, idleBusyPct?: number | undefined, idleOtherPct?: number | undefined }
}

const kb = (b: number): string => (b / 1024).toFixed(1)
const f0 = (x: number): string => x.toFixed(0)
const f1 = (x: number): string => x.toFixed(1)

function verdict (r: RunResult, quick: boolean): string {
  const short: string[] = []
  if (r.sessions < (quick ? r.requested : TARGET_SESSIONS)) short.push(`${r.sessions} sessions`)
  if (r.hub.rssPerSessionB > TARGET_BYTES_PER_SESSION) short.push('memory')
  const up = r.idle.wire?.upBitPerNode
  if (up === undefined) short.push('wire not measured')
  else if (up > TARGET_IDLE_UP_BIT_PER_NODE) short.push('idle uplink')
  return short.length === 0 ? 'pass' : `short: ${short.join(', ')}`
}

export function rows (results: RunResult[], quick: boolean): string[][] {
  const head = [
    'transport', 'sessions', 'connect/s first join', 'connect/s re-join', 'hub RSS/session KB', 'hub heap/session KB',
    'hub CPU % idle', 'idle up bit/s/node (wire)', 'idle down bit/s/node (wire)', 'idle up/down bit/s/node (transport-counted)',
    'target', 'result'
  ]
  const out = [head]
  for (const r of results) {
    const w = r.idle.wire
    out.push([
      r.transport,
      String(r.sessions),
      f0(r.join.rate),
      r.rejoin === undefined ? '-' : f0(r.rejoin.rate),
      kb(r.hub.rssPerSessionB),
      kb(r.hub.heapPerSessionB),
      f1(r.hub.idleCpuPct),
      w === undefined ? 'n/a' : f0(w.upBitPerNode),
      w === undefined ? 'n/a' : f0(w.downBitPerNode),
      `${f0(r.idle.counted.upBitPerNode)} / ${f0(r.idle.counted.downBitPerNode)}`,
      `${quick ? r.requested : TARGET_SESSIONS}, ≤ 20 KB, ≤ 250 bit/s up`,
      verdict(r, quick)
    ])
  }
  return out
}

export function printReport (results: RunResult[], quick: boolean): void {
  const table = rows(results, quick)
  const widths = (table[0] as string[]).map((_, i) => Math.max(...table.map(r => (r[i] as string).length)))
  console.log('')
  for (const r of table) console.log(r.map((c, i) => c.padEnd(widths[i] as number)).join('  '))
  console.log('')
  console.log('Markdown:')
  console.log(`| ${(table[0] as string[]).join(' | ')} |`)
  console.log(`|${(table[0] as string[]).map(() => '---').join('|')}|`)
  for (const r of table.slice(1)) console.log(`| ${r.join(' | ')} |`)
  console.log('')
  for (const r of results) {
    const w = r.idle.wire
    console.log(`${r.transport}: join ${r.join.connected} in ${f1(r.join.seconds)} s (handshake p50 ${f0(r.join.latencyMs.p50)} ms, p99 ${f0(r.join.latencyMs.p99)} ms, retries ${r.join.retries}, failed ${r.join.failed}, missing ${r.join.missing}), hub CPU during join ${f0(r.hubCpuDuringJoinPct)} % = ${r.hubCpuMsPerJoin.toFixed(2)} ms CPU per join (simulated edges: ${r.edgeCpuMsPerJoin.toFixed(2)} ms)` +
      (r.rejoin === undefined ? '' : `; re-join ${r.rejoin.connected} in ${f1(r.rejoin.seconds)} s (p50 ${f0(r.rejoin.latencyMs.p50)} ms, p99 ${f0(r.rejoin.latencyMs.p99)} ms, retries ${r.rejoin.retries})`))
    console.log(`  hub RSS ${kb(r.hub.before.rss)} → ${kb(r.hub.afterJoin.rss)} KiB (after idle ${kb(r.hub.afterIdle.rss)}), heap ${kb(r.hub.before.heapUsed)} → ${kb(r.hub.afterJoin.heapUsed)} KiB, external/session ${kb(r.hub.externalPerSessionB)} KB; ` +
      `drops while idle: hub ${r.hub.disconnectsWhileIdle}, edges ${r.edges.dropsWhileIdle}; edge processes RSS ${f0(r.edges.rss / 1048576)} MiB, CPU ${f0(r.edges.idleCpuPct)} % idle`)
    console.log(`  hub idle CPU by thread (% of a core): ${Object.entries(r.hub.idleCpuPctByThread).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    console.log(`  idle ${f1(r.idle.seconds)} s: ` + (w === undefined
      ? `wire n/a (${r.idle.wireUnavailable ?? '?'})`
      : `wire packets/node/s up ${w.upPktPerNodeS.toFixed(2)} down ${w.downPktPerNodeS.toFixed(2)}, mean IP packet up ${f0(w.raw.up.bytes / Math.max(1, w.raw.up.packets))} B down ${f0(w.raw.down.bytes / Math.max(1, w.raw.down.packets))} B`) +
      `; envelopes/node/s up ${r.idle.counted.upMsgPerNodeS.toFixed(3)} down ${r.idle.counted.downMsgPerNodeS.toFixed(3)}`)
    const ml = r.machineLoad
    console.log(`  machine: other processes used ${ml.joinOtherPct ?? '?'} % of a core during join, ${ml.idleOtherPct ?? '?'} % during idle (2 cores = 200 %); load average ${ml.loadavgAtEnd.join(' ')}`)
    if (r.admin.status !== undefined || r.admin.metrics !== undefined) {
      console.log(`  admin at this size: /status ${r.admin.status === undefined ? 'n/a' : `${r.admin.status.ms} ms, ${kb(r.admin.status.bytes)} KiB`}, /metrics ${r.admin.metrics === undefined ? 'n/a' : `${r.admin.metrics.ms} ms, ${kb(r.admin.metrics.bytes)} KiB`}`)
    }
  }
}

const ratio = (a: number, b: number): string => b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}×` : 'n/a'

/** The peers' own rows, then every hub row as ratios to each peer (lower = the hub needs less). */
export function peerRows (results: RunResult[], peers: PeerRunResult[]): { own: string[][], ratios: string[][] } {
  const own = [['peer', 'idle clients', 'connect/s', 'broker RSS/session KB', 'broker CPU % idle', 'client processes CPU % idle', 'idle up bit/s/node (wire)', 'idle down bit/s/node (wire)', 'drops while idle']]
  for (const p of peers) {
    own.push([p.label, `${p.sessions}/${p.requested}`, f0(p.joinRate), kb(p.rssPerSessionB), f1(p.idleCpuPct), f1(p.clientsIdleCpuPct),
      p.wire === undefined ? 'n/a' : f0(p.wire.upBitPerNode), p.wire === undefined ? 'n/a' : f0(p.wire.downBitPerNode), String(p.dropsWhileIdle)])
  }
  const ratios = [['edgefabric', 'vs peer', 'RSS/session', 'idle CPU', 'idle up bits/node', 'connect/s']]
  for (const r of results) {
    for (const p of peers) {
      ratios.push([r.transport, p.peer, ratio(r.hub.rssPerSessionB, p.rssPerSessionB), ratio(r.hub.idleCpuPct, p.idleCpuPct),
        r.idle.wire === undefined || p.wire === undefined ? 'n/a' : ratio(r.idle.wire.upBitPerNode, p.wire.upBitPerNode), ratio(r.join.rate, p.joinRate)])
    }
  }
  return { own, ratios }
}

export function printPeers (results: RunResult[], peers: PeerRunResult[]): void {
  if (peers.length === 0) return
  const { own, ratios } = peerRows(results, peers)
  for (const t of [own, ratios]) {
    console.log(`| ${(t[0] as string[]).join(' | ')} |`)
    console.log(`|${(t[0] as string[]).map(() => '---').join('|')}|`)
    for (const r of t.slice(1)) console.log(`| ${r.join(' | ')} |`)
    console.log('')
  }
  for (const p of peers) {
    console.log(`${p.label}: broker RSS ${kb(p.rssBeforeB)} → ${kb(p.rssAfterJoinB)} KiB; join ${p.sessions} in ${f1(p.joinSeconds)} s, failed ${p.failed}${p.lastError !== undefined ? ` (last: ${p.lastError})` : ''}; idle ${f1(p.idleSeconds)} s`)
    console.log('  config: ' + p.config.trim().split('\n').join('; '))
  }
}
