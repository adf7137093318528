/**
 * Session scale check (issue 3, "Scale check"): one hub process, several
 * simulated-edge processes each holding many idle sessions, on this machine.
 * Reports per transport:
 *
 * - connect rate: sessions welcomed per second, from the first dial to the
 *   last welcome, for first joins (the node key is bound and persisted) and
 *   for re-joins (binding already on disk);
 * - hub RSS and V8 heap per idle session: (after − before) / sessions, both
 *   read after a forced full GC in the hub process;
 * - hub CPU while idle: process.cpuUsage() over the idle window, % of one
 *   core (every thread: the quinn runtime, libuv, GC);
 * - idle bytes per node per second, up (edge→hub) and down, MEASURED on the
 *   wire by nftables counters on the hub port (IP packets incl. IP/TCP/UDP/
 *   QUIC headers), next to the transports' own counters (payload + framing
 *   only) — see ./lib/nft-counters.ts.
 *
 *   npm run bench:sessions                  # 10,000 sessions, ws then quic, 60 s idle
 *   npm run bench:sessions -- --quick       # 500 sessions, 10 s idle
 *   options: --sessions N --procs P --window W --idle S --heartbeat MS
 *            --transports ws,wss,quic --no-rejoin --out FILE
 *            --peers mosquitto,nats|none   same-run peers with as many idle clients (default both)
 *   diagnostics: --snapshot DIR (hub heap snapshots before/after) --hub-cpu-prof DIR (V8 CPU profile of the hub)
 *   what-if transport settings (hub and edges alike): --quic-keepalive MS --quic-rtt-interval MS --ws-ping MS (0 = off)
 *
 * Targets (issue 3): 10,000 idle sessions, ≤ 20 KB hub memory each,
 * ≤ 0.25 kbit/s idle uplink per node (KubeEdge's measured figure).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { loadOrCreateHubIdentity } from '../src/hub/identity.js'
import { createJoinToken } from '../src/identity/token.js'
import { IpcChild } from './lib/child-ipc.js'
import { describeTuning, type ConnectResult, type EdgeStats, type HubStats, type TransportTuning } from './lib/sessions-ipc.js'
import { NftCounters, diffCounts, type PortCounts } from './lib/nft-counters.js'
import { printPeers, printReport, type RunResult } from './lib/sessions-report.js'
import { runPeer, type PeerRunResult, type SessionPeer } from './lib/sessions-peers.js'

interface Config {
  sessions: number
  procs: number
  window: number
  idleS: number
  heartbeatMs: number
  transports: string[]
  tuning: TransportTuning
  rejoin: boolean
  snapshotDir: string | undefined
  cpuProfDir: string | undefined
  out: string
  quick: boolean
  /** Same-run peers holding the same number of idle clients (./lib/sessions-peers.ts). */
  peers: SessionPeer[]
}

function parseArgs (argv: string[]): Config {
  const quick = argv.includes('--quick')
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const num = (name: string, dflt: number): number => {
    const v = get(name)
    if (v === undefined) return dflt
    const n = Number(v)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${v}`)
    return n
  }
  const ka = get('--quic-keepalive')
  const wp = get('--ws-ping')
  const rtt = get('--quic-rtt-interval')
  const tuning: TransportTuning = {}
  if (ka !== undefined) tuning.quicKeepAliveMs = num('--quic-keepalive', 2000)
  if (wp !== undefined) tuning.wsPingMs = Number(wp)
  if (rtt !== undefined) tuning.quicRttIntervalMs = num('--quic-rtt-interval', 1000)
  return {
    quick,
    sessions: num('--sessions', quick ? 500 : 10_000),
    procs: num('--procs', 4),
    window: num('--window', 64),
    idleS: num('--idle', quick ? 10 : 60),
    heartbeatMs: num('--heartbeat', 5000),
    transports: (get('--transports') ?? 'ws,quic').split(',').filter(s => s !== ''),
    tuning,
    rejoin: !argv.includes('--no-rejoin'),
    snapshotDir: get('--snapshot'),
    cpuProfDir: get('--hub-cpu-prof'),
    peers: (get('--peers') ?? 'mosquitto,nats').split(',').filter(x => x !== '' && x !== 'none').map(x => {
      if (x !== 'mosquitto' && x !== 'nats') throw new Error(`--peers: unknown peer ${x} (mosquitto, nats, none)`)
      return x
    }),
    out: get('--out') ?? join('bench', 'out', `sessions${quick ? '-quick' : ''}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const hubScript = new URL('./sessions-hub.js', import.meta.url)
const edgeScript = new URL('./sessions-edge.js', import.meta.url)
/** A stuck child must not hang the bench: no reply to a short command within this is an error. */
const CHILD_TIMEOUT_MS = 120_000

function log (msg: string): void {
  process.stderr.write(`[sessions ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

type HubReply = HubStats & { url: string, adminUrl: string | undefined }

function sumEdges (list: EdgeStats[]): EdgeStats {
  const z: EdgeStats = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0, cpuUserUs: 0, cpuSystemUs: 0, at: 0, connected: 0, bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0, drops: 0 }
  for (const s of list) {
    for (const k of Object.keys(z) as Array<keyof EdgeStats>) z[k] += s[k]
  }
  z.at = Math.max(...list.map(s => s.at))
  return z
}

/** Whole-machine CPU jiffies (busy, total) from /proc/stat, to see what else ran during a phase. */
function machineCpu (): { busy: number, total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] as string
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    const idle = (v[3] ?? 0) + (v[4] ?? 0)
    return { busy: total - idle, total }
  } catch {
    return undefined
  }
}

/** Busy % of the whole machine (100 % = one core) between two readings. */
function machinePct (a: ReturnType<typeof machineCpu>, b: ReturnType<typeof machineCpu>): number | undefined {
  if (a === undefined || b === undefined || b.total <= a.total) return undefined
  return (b.busy - a.busy) / (b.total - a.total) * cpus().length * 100
}

function cpuPct (a: { cpuUserUs: number, cpuSystemUs: number, at: number }, b: { cpuUserUs: number, cpuSystemUs: number, at: number }): number {
  const wallMs = b.at - a.at
  return wallMs <= 0 ? 0 : ((b.cpuUserUs + b.cpuSystemUs - a.cpuUserUs - a.cpuSystemUs) / 1000) / wallMs * 100
}

/** % of one core per thread name over [a, b]. */
function threadPct (a: HubStats, b: HubStats): Record<string, number> {
  const out: Record<string, number> = {}
  const wallMs = b.at - a.at
  for (const [name, us] of Object.entries(b.threads)) {
    const pct = ((us - (a.threads[name] ?? 0)) / 1000) / wallMs * 100
    if (pct >= 0.05) out[name] = Math.round(pct * 10) / 10
  }
  return out
}

function mergeConnect (list: ConnectResult[]): ConnectResult & { rate: number, seconds: number } {
  const first = Math.min(...list.map(r => r.firstDialAt))
  const last = Math.max(...list.map(r => r.lastWelcomeAt))
  const connected = list.reduce((s, r) => s + r.connected, 0)
  const seconds = Math.max(0.001, (last - first) / 1000)
  const merged: ConnectResult & { rate: number, seconds: number } = {
    firstDialAt: first,
    lastWelcomeAt: last,
    connected,
    retries: list.reduce((s, r) => s + r.retries, 0),
    failed: list.reduce((s, r) => s + r.failed, 0),
    missing: list.reduce((s, r) => s + r.missing, 0),
    // per-process percentiles: report the worst process
    latencyMs: {
      p50: Math.max(...list.map(r => r.latencyMs.p50)),
      p99: Math.max(...list.map(r => r.latencyMs.p99)),
      max: Math.max(...list.map(r => r.latencyMs.max))
    },
    rate: connected / seconds,
    seconds
  }
  const err = list.find(r => r.lastError !== undefined)?.lastError
  if (err !== undefined) merged.lastError = err
  const dialErrors: Record<string, number> = {}
  for (const r of list) for (const [k, v] of Object.entries(r.dialErrors ?? {})) dialErrors[k] = (dialErrors[k] ?? 0) + v
  if (Object.keys(dialErrors).length > 0) merged.dialErrors = dialErrors
  return merged
}

async function waitHub (hub: IpcChild, pred: (s: HubReply) => boolean, timeoutMs: number): Promise<HubReply> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const s = await hub.request<HubReply>('stats', {}, CHILD_TIMEOUT_MS)
    if (pred(s) || Date.now() > end) return s
    await sleep(250)
  }
}

async function scrape (url: string | undefined, path: string): Promise<{ ms: number, bytes: number } | undefined> {
  if (url === undefined) return undefined
  const t0 = performance.now()
  try {
    const res = await fetch(new URL(path, url), { signal: AbortSignal.timeout(60_000) })
    const body = await res.arrayBuffer()
    return { ms: Math.round(performance.now() - t0), bytes: body.byteLength }
  } catch {
    return undefined
  }
}

async function runOne (transport: string, cfg: Config): Promise<RunResult> {
  const n = cfg.sessions
  const procs = Math.max(1, Math.min(cfg.procs, n))
  const dataDir = await mkdtemp('/tmp/ef-bench-sessions-')
  // Every simulated edge dials from 127.0.0.1, one source address for the whole fleet: the hub's
  // per-source pre-auth cap (64, src/transport/pre-auth.ts) would refuse the dial window of all
  // processes together (procs × window in flight) and measure retries, not joins. A real fleet
  // joins from many addresses, so the cap is raised to the bench's own in-flight bound (every transport alike).
  const inFlight = procs * cfg.window
  const hubArgs = [`${transport}://127.0.0.1:0`, dataDir, String(cfg.heartbeatMs), JSON.stringify(cfg.tuning),
    JSON.stringify({ maxPendingPerSource: Math.max(64, inFlight), maxPending: Math.max(512, inFlight) })]
  const hubExecArgv = ['--expose-gc']
  if (cfg.cpuProfDir !== undefined) hubExecArgv.push('--cpu-prof', `--cpu-prof-dir=${cfg.cpuProfDir}`)
  const hub = IpcChild.fork('hub', hubScript, hubArgs, { execArgv: hubExecArgv, serialization: 'json' })
  const edges: IpcChild[] = []
  let nft: NftCounters | undefined
  try {
    const h0 = await hub.request<HubReply>('stats', { gc: true }, CHILD_TIMEOUT_MS)
    const port = Number(new URL(h0.url.replace(/^quic:/, 'http:')).port)
    log(`${transport}: hub on ${h0.url} (admin ${h0.adminUrl ?? 'off'}), ${n} sessions in ${procs} processes`)

    // Tokens come from the hub's own identity files (read-only here: the hub created them).
    const identity = await loadOrCreateHubIdentity(dataDir)
    const pins = { quic: identity.quicPeerId, tls: identity.caFingerprint }
    const perProc = Math.ceil(n / procs)
    const deadlineMs = Math.max(120_000, n * 30)
    const phaseMs = deadlineMs + 120_000
    for (let p = 0; p < procs; p++) {
      const nodes: Array<{ id: string, token: string }> = []
      for (let i = p * perProc; i < Math.min(n, (p + 1) * perProc); i++) {
        const id = `sim-${i}`
        nodes.push({ id, token: createJoinToken(identity, { nodeId: id, ttlSeconds: 12 * 3600 }) })
      }
      const child = IpcChild.fork(`edge-${p}`, edgeScript, [], { serialization: 'json' })
      edges.push(child)
      await child.request('init', {
        init: {
          url: h0.url,
          pins,
          nodes,
          window: cfg.window,
          deadlineMs,
          tuning: cfg.tuning
        }
      }, CHILD_TIMEOUT_MS)
    }

    const nftOrWhy = NftCounters.create(transport === 'quic' ? 'udp' : 'tcp', port)
    nft = nftOrWhy instanceof NftCounters ? nftOrWhy : undefined
    const nftUnavailable = nftOrWhy instanceof NftCounters ? undefined : nftOrWhy.unavailable
    if (nftUnavailable !== undefined) log(`nft counters unavailable (${nftUnavailable}): wire bytes will be missing`)

    // ---- first join --------------------------------------------------------------
    if (cfg.snapshotDir !== undefined) {
      await mkdir(cfg.snapshotDir, { recursive: true })
      await hub.request<string>('snapshot', { file: join(cfg.snapshotDir, `hub-${transport}-0.heapsnapshot`) }, CHILD_TIMEOUT_MS)
    }
    const before = await hub.request<HubReply>('stats', { gc: true }, CHILD_TIMEOUT_MS)
    const machineJoinA = machineCpu()
    const edgesBefore = sumEdges(await Promise.all(edges.map(async e => await e.request<EdgeStats>('stats', {}, CHILD_TIMEOUT_MS))))
    log(`${transport}: hub before: rss ${(before.rss / 1048576).toFixed(1)} MiB, heap ${(before.heapUsed / 1048576).toFixed(1)} MiB; connecting`)
    const firstJoin = mergeConnect(await Promise.all(edges.map(async e => await e.request<ConnectResult>('connect', {}, phaseMs))))
    const hubJoined = await hub.request<HubReply>('stats', {}, CHILD_TIMEOUT_MS)
    const edgesJoined = sumEdges(await Promise.all(edges.map(async e => await e.request<EdgeStats>('stats', {}, CHILD_TIMEOUT_MS))))
    const machineJoinB = machineCpu()
    log(`${transport}: ${firstJoin.connected}/${n} welcomed in ${firstJoin.seconds.toFixed(1)} s = ${firstJoin.rate.toFixed(0)}/s (retries ${firstJoin.retries}, failed ${firstJoin.failed}, missing ${firstJoin.missing}${firstJoin.lastError !== undefined ? `, last error: ${firstJoin.lastError}` : ''})${firstJoin.dialErrors !== undefined ? `; dial errors ${JSON.stringify(firstJoin.dialErrors)}` : ''}`)

    // Let every session pass its first heartbeat and the connect burst's garbage settle.
    await sleep(cfg.heartbeatMs + 1000)
    const mem = await hub.request<HubReply>('stats', { gc: true }, CHILD_TIMEOUT_MS)
    const sessions = mem.connected
    log(`${transport}: hub after join: rss ${(mem.rss / 1048576).toFixed(1)} MiB, heap ${(mem.heapUsed / 1048576).toFixed(1)} MiB, external ${(mem.external / 1048576).toFixed(1)} MiB; smaps anon ${((mem.smaps.Anonymous ?? 0) / 1048576).toFixed(1)} MiB (before ${((before.smaps.Anonymous ?? 0) / 1048576).toFixed(1)}); ${sessions} sessions`)

    // ---- idle window ---------------------------------------------------------------
    log(`${transport}: ${sessions} sessions idle for ${cfg.idleS} s`)
    const wireA = nft?.tryRead()
    const edgeA = sumEdges(await Promise.all(edges.map(async e => await e.request<EdgeStats>('stats', {}, CHILD_TIMEOUT_MS))))
    const hubA = await hub.request<HubReply>('stats', {}, CHILD_TIMEOUT_MS)
    const machineIdleA = machineCpu()
    await sleep(cfg.idleS * 1000)
    const machineIdleB = machineCpu()
    const hubB = await hub.request<HubReply>('stats', {}, CHILD_TIMEOUT_MS)
    const edgeB = sumEdges(await Promise.all(edges.map(async e => await e.request<EdgeStats>('stats', {}, CHILD_TIMEOUT_MS))))
    const wireB = nft?.tryRead()
    const idleSeconds = (hubB.at - hubA.at) / 1000
    const wire: PortCounts | undefined = wireA !== undefined && wireB !== undefined ? diffCounts(wireA, wireB) : undefined
    const memIdle = await hub.request<HubReply>('stats', { gc: true }, CHILD_TIMEOUT_MS)
    log(`${transport}: hub after idle: rss ${(memIdle.rss / 1048576).toFixed(1)} MiB, heap ${(memIdle.heapUsed / 1048576).toFixed(1)} MiB, idle CPU ${cpuPct(hubA, hubB).toFixed(1)} % of a core ${JSON.stringify(threadPct(hubA, hubB))}, load ${loadavg().map(x => x.toFixed(2)).join(' ')}`)

    if (cfg.snapshotDir !== undefined) {
      await mkdir(cfg.snapshotDir, { recursive: true })
      const file = await hub.request<string>('snapshot', { file: join(cfg.snapshotDir, `hub-${transport}-${sessions}.heapsnapshot`) }, CHILD_TIMEOUT_MS)
      log(`${transport}: heap snapshot ${file}`)
    }

    // One status and one metrics scrape at this size (the admin API walks every node).
    const status = await scrape(h0.adminUrl, '/status')
    const metrics = await scrape(h0.adminUrl, '/metrics')

    // ---- re-join -------------------------------------------------------------------
    let rejoin: (ConnectResult & { rate: number, seconds: number }) | undefined
    if (cfg.rejoin) {
      await Promise.all(edges.map(async e => await e.request('disconnect', {}, phaseMs)))
      await waitHub(hub, s => s.connected === 0, 60_000)
      rejoin = mergeConnect(await Promise.all(edges.map(async e => await e.request<ConnectResult>('connect', {}, phaseMs))))
      log(`${transport}: re-join ${rejoin.connected}/${n} in ${rejoin.seconds.toFixed(1)} s = ${rejoin.rate.toFixed(0)}/s (retries ${rejoin.retries}, failed ${rejoin.failed})`)
    }

    const per = (x: number): number => sessions > 0 ? x / sessions : 0
    return {
      transport: transport + (describeTuning(cfg.tuning) !== '' ? ` (${describeTuning(cfg.tuning)})` : '') + (cfg.heartbeatMs !== 5000 ? ` heartbeat ${cfg.heartbeatMs / 1000} s` : ''),
      requested: n,
      processes: procs,
      window: cfg.window,
      heartbeatMs: cfg.heartbeatMs,
      sessions,
      join: firstJoin,
      rejoin,
      hubCpuDuringJoinPct: cpuPct(before, hubJoined),
      hubCpuMsPerJoin: firstJoin.connected > 0 ? (hubJoined.cpuUserUs + hubJoined.cpuSystemUs - before.cpuUserUs - before.cpuSystemUs) / 1000 / firstJoin.connected : 0,
      edgeCpuMsPerJoin: firstJoin.connected > 0 ? (edgesJoined.cpuUserUs + edgesJoined.cpuSystemUs - edgesBefore.cpuUserUs - edgesBefore.cpuSystemUs) / 1000 / firstJoin.connected : 0,
      hub: {
        before: { rss: before.rss, heapUsed: before.heapUsed, external: before.external },
        afterJoin: { rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external },
        afterIdle: { rss: memIdle.rss, heapUsed: memIdle.heapUsed, external: memIdle.external },
        rssPerSessionB: per(mem.rss - before.rss),
        heapPerSessionB: per(mem.heapUsed - before.heapUsed),
        externalPerSessionB: per(mem.external - before.external),
        idleCpuPct: cpuPct(hubA, hubB),
        idleCpuPctByThread: threadPct(hubA, hubB),
        disconnectsWhileIdle: hubB.disconnects - hubA.disconnects,
        refusals: hubB.refusals,
        smaps: { before: before.smaps, afterJoin: mem.smaps, afterIdle: memIdle.smaps }
      },
      edges: {
        rss: edgeB.rss,
        idleCpuPct: cpuPct(edgeA, { ...edgeB, at: edgeA.at + (hubB.at - hubA.at) }),
        dropsWhileIdle: edgeB.drops - edgeA.drops
      },
      idle: {
        seconds: idleSeconds,
        wire: wire === undefined
          ? undefined
          : {
              upBitPerNode: per(wire.up.bytes * 8) / idleSeconds,
              downBitPerNode: per(wire.down.bytes * 8) / idleSeconds,
              upPktPerNodeS: per(wire.up.packets) / idleSeconds,
              downPktPerNodeS: per(wire.down.packets) / idleSeconds,
              raw: wire
            },
        wireUnavailable: nftUnavailable ?? (wire === undefined ? 'the nft table could not be read back' : undefined),
        counted: {
          upBitPerNode: per((edgeB.bytesSent - edgeA.bytesSent) * 8) / idleSeconds,
          downBitPerNode: per((edgeB.bytesReceived - edgeA.bytesReceived) * 8) / idleSeconds,
          upMsgPerNodeS: per(edgeB.messagesSent - edgeA.messagesSent) / idleSeconds,
          downMsgPerNodeS: per(edgeB.messagesReceived - edgeA.messagesReceived) / idleSeconds
        }
      },
      admin: { status, metrics },
      machineLoad: {
        // Other processes on this shared machine compete for the 2 cores: connect rates are only
        // comparable between runs with similar "other" load; memory, idle CPU and bytes are per process/port.
        loadavgAtEnd: loadavg().map(x => Math.round(x * 100) / 100),
        joinBusyPct: machinePct(machineJoinA, machineJoinB),
        joinOtherPct: otherPct(machinePct(machineJoinA, machineJoinB), cpuPct(before, hubJoined) + cpuPct(edgesBefore, { ...edgesJoined, at: edgesBefore.at + (hubJoined.at - before.at) })),
        idleBusyPct: machinePct(machineIdleA, machineIdleB),
        idleOtherPct: otherPct(machinePct(machineIdleA, machineIdleB), cpuPct(hubA, hubB) + cpuPct(edgeA, { ...edgeB, at: edgeA.at + (hubB.at - hubA.at) }))
      }
    }
  } finally {
    nft?.destroy()
    await Promise.all(edges.map(async e => await e.quit(60_000)))
    await hub.quit(30_000)
    for (const c of [...edges, hub]) c.kill()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** Machine busy % not accounted for by the bench's own processes. */
function otherPct (machine: number | undefined, ours: number): number | undefined {
  return machine === undefined ? undefined : Math.max(0, Math.round(machine - ours))
}

function fdLimit (): string {
  try {
    return execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const cfg = parseArgs(process.argv.slice(2))
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
  kernel: release(),
  node: process.version,
  fdLimit: fdLimit()
}
log(`config ${JSON.stringify({ ...cfg })}; machine ${JSON.stringify(machine)}`)
// ws: the hub holds one fd per session; every transport: an edge process one (quic: a UDP socket) per session.
if (Number(machine.fdLimit) < cfg.sessions + 1024) {
  log(`WARNING: open-file limit ${machine.fdLimit} < ${cfg.sessions + 1024}: the hub cannot hold ${cfg.sessions} ws sessions (run through npm run bench:sessions, which raises it)`)
}
const results: RunResult[] = []
for (const t of cfg.transports) {
  try {
    results.push(await runOne(t, cfg))
  } catch (err) {
    log(`${t}: run failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
    process.exitCode = 1
  }
  await sleep(2000) // let sockets of the previous run drain out of TIME_WAIT bookkeeping
}
const peers: PeerRunResult[] = []
for (const peer of cfg.peers) {
  try {
    peers.push(await runPeer(peer, { sessions: cfg.sessions, procs: cfg.procs, window: cfg.window, heartbeatMs: cfg.heartbeatMs, idleS: cfg.idleS }, log))
  } catch (err) {
    log(`${peer}: peer run failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
    process.exitCode = 1
  }
  await sleep(2000)
}
printReport(results, cfg.quick)
printPeers(results, peers)
await mkdir(join(cfg.out, '..'), { recursive: true })
await writeFile(cfg.out, JSON.stringify({ date: new Date().toISOString(), machine, config: cfg, results, peers }, null, 2) + '\n')
log(`wrote ${cfg.out}`)
