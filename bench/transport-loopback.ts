/**
 * Transport loopback benchmark (issue 2): for each transport, bulk MB/s and
 * 256-byte request/response rates, server in a child process, medians of
 * several runs, ratios to `ws` measured in the same invocation.
 *
 *   npm run bench:transport                      # full: 5 runs × 3 s per scenario, under a machine-wide lock
 *   node dist-bench/bench/transport-loopback.js --quick   # 3 runs × 1 s
 *   ... --transports ws,quic --runs 3 --duration 2000 --json out.json | --no-json
 *   ... --transports ws,webtransport-h3          # opt-in row: WebTransport with HTTP/3 forced
 *   ... --smoke                                  # ws + memory, 2 runs × 100 ms (the test suite's check)
 *
 * "1 and 16 streams": a connection here has one stream per priority class,
 * not arbitrary streams, so the issue's streams are read as concurrent
 * request/response flows: 1 outstanding request (latency-bound, p50/p99),
 * 16 outstanding on ONE connection (pipelined, matched by parentId), and
 * 16 connections with 1 outstanding each. Bulk: 1 MiB envelopes on the
 * `bulk` channel of 1 connection, and of 16 connections at once.
 *
 * Rounds are interleaved (round 1: every transport, round 2: every transport
 * in a rotated order, ...) so slow drift in machine load hits all transports
 * alike. memory:// has no sockets, so its server runs in this process
 * ("in-process" row): a reference for the fabric's own per-message cost.
 * Results: Markdown on stdout, JSON in bench/out/ (gitignored).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { dirname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { TransportUnavailableError, toError } from '../src/errors.js'
import { dial, transportFor } from '../src/transport/index.js'
import type { DialOptions } from '../src/transport/types.js'
import { parseArgs } from './lib/loopback-args.js'
import { startChildServer } from './lib/loopback-child.js'
import { startLoopbackServer, type ServerInfo } from './lib/loopback-protocol.js'
import {
  detailTable, summaryTable, transportName, type ScenarioDef, type ScenarioResult, type TransportResult
} from './lib/loopback-report.js'
import { BenchClient, measureBulk, measureRequestResponse, warmRequests } from './lib/loopback-scenarios.js'

export interface BenchOptions {
  /** Keys from TRANSPORTS, in table order. */
  transports: string[]
  runs: number
  durationMs: number
  /** Untimed load per transport before the first round. */
  warmupMs: number
  bulkEnvelopeBytes: number
  requestBytes: number
  /** Outstanding requests on one connection, and connections in the multi-connection scenarios. */
  concurrency: number
  /** Where to write JSON; undefined = do not write. */
  jsonPath: string | undefined
  log: (line: string) => void
}

interface TransportDef { key: string, label: string, listenUrl: string, inProcess?: boolean, optIn?: boolean }

export const TRANSPORTS: readonly TransportDef[] = [
  { key: 'ws', label: 'ws', listenUrl: 'ws://127.0.0.1:0' },
  { key: 'wss', label: 'wss (TLS)', listenUrl: 'wss://127.0.0.1:0' },
  { key: 'quic', label: 'quic', listenUrl: 'quic://127.0.0.1:0' },
  { key: 'webtransport', label: 'WebTransport https', listenUrl: 'https://127.0.0.1:0/bench' },
  { key: 'memory', label: 'memory', listenUrl: 'memory://0', inProcess: true },
  // Opt-in (--transports …,webtransport-h3): HTTP/3 forced, so a machine without the native
  // binding shows the TransportUnavailableError reason in the table. The default
  // `webtransport` row already uses HTTP/3 whenever it can run.
  { key: 'webtransport-h3', label: 'WebTransport https ?mode=http3', listenUrl: 'https://127.0.0.1:0/bench?mode=http3', optIn: true }
]

export function defaultOptions (): BenchOptions {
  return {
    transports: TRANSPORTS.filter(t => t.optIn !== true).map(t => t.key),
    runs: 5,
    durationMs: 3000,
    warmupMs: 1000,
    bulkEnvelopeBytes: 1024 * 1024,
    requestBytes: 256,
    concurrency: 16,
    jsonPath: undefined,
    log: line => { process.stdout.write(line + '\n') }
  }
}

export function scenarioDefs (o: BenchOptions): ScenarioDef[] {
  const n = o.concurrency
  const mib = o.bulkEnvelopeBytes >= 1024 * 1024 ? `${o.bulkEnvelopeBytes / 1024 / 1024} MiB` : `${o.bulkEnvelopeBytes / 1024} KiB`
  return [
    { key: 'bulk-1', title: `bulk ${mib} msgs, 1 conn`, kind: 'bulk', connections: 1, workers: 0 },
    { key: `bulk-${n}c`, title: `bulk, ${n} conns`, kind: 'bulk', connections: n, workers: 0 },
    { key: 'rr-1', title: `${o.requestBytes} B req/resp, 1 in flight`, kind: 'rr', connections: 1, workers: 1 },
    { key: `rr-${n}`, title: `${n} in flight, 1 conn`, kind: 'rr', connections: 1, workers: n },
    { key: `rr-${n}c`, title: `${n} conns × 1 in flight`, kind: 'rr', connections: n, workers: 1 }
  ]
}

interface Live {
  def: TransportDef
  result: TransportResult
  info: ServerInfo
  /** Child server pid (undefined for the in-process memory server). */
  pid: number | undefined
  stop: () => Promise<void>
}

/** CPU seconds (user + system, all threads) used so far by process `pid`, from /proc; undefined where unavailable. */
function procCpuSeconds (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15, in clock ticks (100/s on Linux).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

const pause = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function dialOptions (info: ServerInfo, url: string): DialOptions {
  // Pin what the child printed: wss = certificate fingerprint, quic = peer id, WebTransport = leaf hash.
  return url.startsWith('ws:') || url.startsWith('memory:') || info.identity === undefined
    ? {}
    : { expectedRemoteIdentity: info.identity }
}

async function openClients (live: Live, n: number): Promise<BenchClient[]> {
  const conns = await Promise.all(Array.from({ length: n }, async () => await dial(live.info.url, dialOptions(live.info, live.info.url))))
  const mode = (conns[0] as { webtransportMode?: unknown } | undefined)?.webtransportMode
  if (typeof mode === 'string' && live.result.mode !== undefined && mode !== live.result.mode) live.result.mode = `${live.result.mode}/client ${mode}`
  return conns.map(c => new BenchClient(c))
}

async function closeClients (clients: BenchClient[]): Promise<void> {
  await Promise.all(clients.map(async c => {
    if (c.conn.status === 'open') await c.conn.close('bench done')
    await c.conn.closed()
  }))
}

async function setup (def: TransportDef, o: BenchOptions, scenarios: ScenarioDef[]): Promise<Live | TransportResult> {
  const result: TransportResult = {
    key: def.key, label: def.label, mode: undefined, inProcess: def.inProcess === true, unavailable: undefined, scenarios: {}
  }
  for (const s of scenarios) result.scenarios[s.key] = { samples: [], p50Us: [], p99Us: [], cpuClientPct: [], cpuServerPct: [], cpuUsPerOp: [], errors: [] }
  try {
    await transportFor(def.listenUrl) // probe here too: an unavailable transport is a row, not a crash
    let info: ServerInfo
    let stop: () => Promise<void>
    let pid: number | undefined
    if (def.inProcess === true) {
      const s = await startLoopbackServer(def.listenUrl)
      info = s.info
      stop = async () => await s.listener.close(500)
    } else {
      const child = await startChildServer(def.listenUrl)
      info = child.info
      pid = child.pid
      stop = child.stop
    }
    result.mode = info.mode
    const live: Live = { def, result, info, pid, stop }
    // Warm-up: JIT on both sides, TLS session setup paths, allocator growth.
    const [client] = await openClients(live, 1)
    const c = client as BenchClient
    const payload = new Uint8Array(o.bulkEnvelopeBytes)
    const request = new Uint8Array(o.requestBytes)
    await measureRequestResponse([c], 4, request, o.warmupMs / 2)
    await measureBulk([c], payload, o.warmupMs / 2)
    await closeClients([c])
    return live
  } catch (err) {
    result.unavailable = err instanceof TransportUnavailableError ? err.reason : `setup failed: ${toError(err).message}`
    return result
  }
}

async function runScenario (live: Live, s: ScenarioDef, clients: BenchClient[], o: BenchOptions): Promise<void> {
  const r = live.result.scenarios[s.key] as ScenarioResult
  const wall0 = performance.now()
  const cpu0 = process.cpuUsage()
  const child0 = procCpuSeconds(live.pid)
  let ops: number // round trips, or MB for bulk
  try {
    if (s.kind === 'bulk') {
      const sample = await measureBulk(clients, new Uint8Array(o.bulkEnvelopeBytes), o.durationMs)
      r.samples.push(sample.perSecond)
      ops = sample.bytes / 1e6
    } else {
      const sample = await measureRequestResponse(clients, s.workers, new Uint8Array(o.requestBytes), o.durationMs)
      r.samples.push(sample.perSecond)
      r.p50Us.push(sample.p50Us)
      r.p99Us.push(sample.p99Us)
      ops = sample.count
    }
  } catch (err) {
    r.errors.push(toError(err).message)
    return
  }
  const wallS = (performance.now() - wall0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const clientS = (cpu.user + cpu.system) / 1e6
  r.cpuClientPct.push(clientS / wallS * 100)
  const child1 = procCpuSeconds(live.pid)
  const serverS = child0 !== undefined && child1 !== undefined ? child1 - child0 : undefined
  if (serverS !== undefined) r.cpuServerPct.push(serverS / wallS * 100)
  // In-process (memory) the client figure already covers both ends.
  if (serverS !== undefined || live.pid === undefined) r.cpuUsPerOp.push((clientS + (serverS ?? 0)) * 1e6 / ops)
}

/** One round for one transport: single-connection scenarios, then multi-connection ones. */
async function round (live: Live, scenarios: ScenarioDef[], o: BenchOptions): Promise<void> {
  const groups = new Map<number, ScenarioDef[]>()
  // rr before bulk within a group: a bulk run leaves nothing queued (bulk-end is acked), but be safe.
  const ordered = [...scenarios.filter(s => s.kind === 'rr'), ...scenarios.filter(s => s.kind === 'bulk')]
  for (const s of ordered) groups.set(s.connections, [...(groups.get(s.connections) ?? []), s])
  for (const [n, group] of groups) {
    let clients: BenchClient[]
    try {
      clients = await openClients(live, n)
      await warmRequests(clients, new Uint8Array(o.requestBytes), 20)
    } catch (err) {
      for (const s of group) live.result.scenarios[s.key]?.errors.push(`dial/warm-up: ${toError(err).message}`)
      continue
    }
    for (const s of group) {
      if (clients.some(c => c.conn.status !== 'open')) {
        live.result.scenarios[s.key]?.errors.push('connection closed by an earlier failure')
        continue
      }
      await runScenario(live, s, clients, o)
      await pause(50) // let the peer finish its bookkeeping before the next clock starts
    }
    await closeClients(clients).catch(() => {})
  }
}

export interface BenchReport {
  benchmark: 'transport-loopback'
  date: string
  machine: { cpus: number, cpuModel: string, memGiB: number, node: string, kernel: string, platform: string }
  loadavgStart: number[]
  loadavgEnd: number[]
  settings: Omit<BenchOptions, 'log' | 'jsonPath'>
  scenarios: ScenarioDef[]
  transports: TransportResult[]
  markdown: string[]
}

export async function runBench (opts: Partial<BenchOptions> = {}): Promise<BenchReport> {
  const o: BenchOptions = { ...defaultOptions(), ...opts }
  const scenarios = scenarioDefs(o)
  const defs = o.transports.map(k => {
    const d = TRANSPORTS.find(t => t.key === k)
    if (d === undefined) throw new Error(`unknown transport "${k}" (known: ${TRANSPORTS.map(t => t.key).join(', ')})`)
    return d
  })
  const cpuList = cpus()
  const started = new Date()
  const loadavgStart = loadavg()
  const machine = {
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    node: process.version,
    kernel: release(),
    platform: `${process.platform}-${process.arch}`
  }
  o.log(`transport loopback: ${started.toISOString()}, ${machine.cpus} vCPU ${machine.cpuModel}, node ${machine.node}, kernel ${machine.kernel}`)
  o.log(`load average at start: ${loadavgStart.map(n => n.toFixed(2)).join(' ')}; ${o.runs} runs × ${o.durationMs} ms per scenario`)

  const all: TransportResult[] = []
  const live: Live[] = []
  try {
    for (const d of defs) {
      const r = await setup(d, o, scenarios)
      if ('stop' in r) { live.push(r); all.push(r.result) } else all.push(r)
      const last = all[all.length - 1] as TransportResult
      o.log(`  ${transportName(last)}: ${last.unavailable === undefined ? 'ready' : `UNAVAILABLE — ${last.unavailable}`}`)
    }
    for (let run = 0; run < o.runs; run++) {
      for (let i = 0; i < live.length; i++) {
        const l = live[(i + run) % live.length] as Live
        await round(l, scenarios, o)
      }
      o.log(`  run ${run + 1}/${o.runs} done`)
    }
  } finally {
    await Promise.all(live.map(async l => await l.stop().catch(() => {})))
  }

  const loadavgEnd = loadavg()
  const markdown = [
    ...summaryTable(all, scenarios),
    '',
    ...detailTable(all, scenarios),
    '',
    `Medians of ${o.runs} runs × ${o.durationMs / 1000} s; ratios (×) vs ws in the same run. MB/s = 10^6 payload bytes/s confirmed by the server. ` +
      `Load average start ${loadavgStart.map(n => n.toFixed(2)).join(' ')}, end ${loadavgEnd.map(n => n.toFixed(2)).join(' ')}.`
  ]
  o.log('')
  for (const line of markdown) o.log(line)

  const report: BenchReport = {
    benchmark: 'transport-loopback',
    date: started.toISOString(),
    machine,
    loadavgStart,
    loadavgEnd,
    settings: {
      transports: o.transports, runs: o.runs, durationMs: o.durationMs, warmupMs: o.warmupMs,
      bulkEnvelopeBytes: o.bulkEnvelopeBytes, requestBytes: o.requestBytes, concurrency: o.concurrency
    },
    scenarios,
    transports: all,
    markdown
  }
  if (o.jsonPath !== undefined) {
    mkdirSync(dirname(o.jsonPath), { recursive: true })
    writeFileSync(o.jsonPath, JSON.stringify(report, null, 2) + '\n')
    o.log(`\nJSON: ${o.jsonPath}`)
  }
  return report
}

export { parseArgs }

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href
if (isMain) {
  let opts: Partial<BenchOptions>
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${toError(err).message}\n`)
    process.exit(64)
  }
  runBench(opts).then(
    // Native transports may keep handles for a moment after close; the report is out, so leave.
    () => process.exit(0),
    (err: unknown) => { process.stderr.write(`transport-loopback failed: ${toError(err).stack ?? String(err)}\n`); process.exit(1) }
  )
}
