/**
 * Same-run peers of bench/sessions.ts (issue 16): the broker an edge fleet
 * runs today, holding the same number of idle clients as the hub holds
 * sessions, with their keep-alive set to the hub's heartbeat, so the hub's
 * memory and idle-CPU figures become ratios. Each broker is a Debian binary
 * started here on 127.0.0.1; the clients live in their own processes
 * (bench/sessions-peer-edge.ts), as the simulated edges do.
 *
 * - mosquitto 2.0: persistence on (the default autosave interval of 30 min:
 *   the idle window measures holding sessions, not snapshotting them),
 *   max_connections unlimited; MQTT.js clients with clean=false, one QoS 1
 *   subscription each, keepalive = heartbeat.
 * - nats-server 2.9 (core NATS, no JetStream: nothing is stored for an idle
 *   subscriber): one subscription per client, client PING every heartbeat
 *   (2 missed = dead); the server's own ping interval left at its 2 min default.
 *
 * Figures (same definitions as the hub's): broker RSS per session =
 * (RSS after the join and one heartbeat − RSS before) ÷ sessions, from
 * /proc (the brokers are not Node: no GC to force); idle CPU = broker
 * process CPU over the idle window, % of one core; idle wire bits per node
 * from nftables counters on the broker port.
 */
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { IpcChild } from './child-ipc.js'
import { freePort, startListening, stopProcess } from './local-server.js'
import { NftCounters, diffCounts } from './nft-counters.js'
import { procCpuUs } from './reliable-ipc.js'
import type { ConnectResult } from './sessions-ipc.js'

export type SessionPeer = 'mosquitto' | 'nats'

export interface PeerRunResult {
  peer: SessionPeer
  label: string
  config: string
  requested: number
  sessions: number
  joinRate: number
  joinSeconds: number
  failed: number
  lastError?: string
  rssBeforeB: number
  rssAfterJoinB: number
  rssPerSessionB: number
  idleSeconds: number
  idleCpuPct: number
  /** Client processes' idle CPU, % of a core (the counterpart of the simulated edges). */
  clientsIdleCpuPct: number
  dropsWhileIdle: number
  wire: { upBitPerNode: number, downBitPerNode: number } | undefined
}

function rssOf (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? NaN : Number(m[1]) * 1024
  } catch {
    return NaN
  }
}

function brokerConfig (peer: SessionPeer, port: number, dir: string): string {
  return peer === 'mosquitto'
    ? [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`, 'max_connections -1', 'max_queued_messages 0', 'user root'].join('\n') + '\n'
    : [`listen: "127.0.0.1:${port}"`, 'max_connections: 1000000'].join('\n') + '\n'
}

async function startBroker (peer: SessionPeer, dir: string): Promise<{ proc: ChildProcess, port: number, config: string }> {
  const port = await freePort()
  const config = brokerConfig(peer, port, dir)
  const file = join(dir, `${peer}.conf`)
  writeFileSync(file, config)
  const proc = await startListening(peer === 'mosquitto' ? 'mosquitto' : 'nats-server', ['-c', file], port, 15_000)
  return { proc, port, config: config.replace(dir, '<tmp>').replace(String(port), '<port>') }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export async function runPeer (peer: SessionPeer, o: { sessions: number, procs: number, window: number, heartbeatMs: number, idleS: number }, log: (s: string) => void): Promise<PeerRunResult> {
  const dir = await mkdtemp('/tmp/bench-sessions-peer-')
  const { proc, port, config } = await startBroker(peer, dir)
  const pid = proc.pid as number
  const clients: IpcChild[] = []
  let nft: NftCounters | undefined
  try {
    await sleep(500)
    const rssBeforeB = rssOf(pid)
    const perProc = Math.ceil(o.sessions / o.procs)
    for (let p = 0; p < o.procs; p++) {
      const ids: string[] = []
      for (let i = p * perProc; i < Math.min(o.sessions, (p + 1) * perProc); i++) ids.push(`sim-${i}`)
      const c = IpcChild.fork(`${peer}-clients-${p}`, new URL('../sessions-peer-edge.js', import.meta.url), [], { serialization: 'json' })
      clients.push(c)
      await c.request('init', { init: { peer, url: `${peer === 'mosquitto' ? 'mqtt' : 'nats'}://127.0.0.1:${port}`, ids, window: o.window, keepaliveMs: o.heartbeatMs } }, 60_000)
    }
    const nftOrWhy = NftCounters.create('tcp', port)
    nft = nftOrWhy instanceof NftCounters ? nftOrWhy : undefined
    log(`${peer}: broker pid ${pid} on 127.0.0.1:${port}, RSS ${(rssBeforeB / 1048576).toFixed(1)} MiB; connecting ${o.sessions} idle clients`)
    const phaseMs = Math.max(120_000, o.sessions * 30)
    const joins = await Promise.all(clients.map(async c => await c.request<ConnectResult>('connect', {}, phaseMs)))
    const first = Math.min(...joins.map(j => j.firstDialAt))
    const last = Math.max(...joins.map(j => j.lastWelcomeAt))
    const connected = joins.reduce((a, j) => a + j.connected, 0)
    const failed = joins.reduce((a, j) => a + j.failed, 0)
    const joinSeconds = (last - first) / 1000
    log(`${peer}: ${connected}/${o.sessions} connected in ${joinSeconds.toFixed(1)} s (failed ${failed})`)
    await sleep(o.heartbeatMs + 1000)
    const rssAfterJoinB = rssOf(pid)
    type S = { connected: number, drops: number, cpuUs: number }
    const statsAll = async (): Promise<S[]> => await Promise.all(clients.map(async c => await c.request<S>('stats', {}, 60_000)))
    const wireA = nft?.tryRead()
    const a = await statsAll()
    const cpuA = procCpuUs(pid)
    const tA = performance.now()
    await sleep(o.idleS * 1000)
    const cpuB = procCpuUs(pid)
    const idleSeconds = (performance.now() - tA) / 1000
    const b = await statsAll()
    const wireB = nft?.tryRead()
    const sessions = b.reduce((x, s) => x + s.connected, 0)
    const wire = wireA !== undefined && wireB !== undefined ? diffCounts(wireA, wireB) : undefined
    const per = (x: number): number => sessions > 0 ? x / sessions : 0
    const sum = (xs: S[], f: (s: S) => number): number => xs.reduce((x, s) => x + f(s), 0)
    return {
      peer,
      label: peer === 'mosquitto' ? 'mosquitto 2.0 (MQTT.js clients)' : 'nats-server 2.9 (NATS clients)',
      config,
      requested: o.sessions,
      sessions,
      joinRate: joinSeconds > 0 ? connected / joinSeconds : 0,
      joinSeconds,
      failed,
      ...(joins.find(j => j.lastError !== undefined)?.lastError !== undefined ? { lastError: joins.find(j => j.lastError !== undefined)?.lastError } : {}),
      rssBeforeB,
      rssAfterJoinB,
      rssPerSessionB: per(rssAfterJoinB - rssBeforeB),
      idleSeconds,
      idleCpuPct: (cpuB - cpuA) / 1e6 / idleSeconds * 100,
      clientsIdleCpuPct: (sum(b, s => s.cpuUs) - sum(a, s => s.cpuUs)) / 1e6 / idleSeconds * 100,
      dropsWhileIdle: sum(b, s => s.drops) - sum(a, s => s.drops),
      wire: wire === undefined ? undefined : { upBitPerNode: per(wire.up.bytes * 8) / idleSeconds, downBitPerNode: per(wire.down.bytes * 8) / idleSeconds }
    }
  } finally {
    nft?.destroy()
    await Promise.all(clients.map(async c => await c.quit(60_000)))
    for (const c of clients) c.kill()
    await stopProcess(proc)
    await rm(dir, { recursive: true, force: true })
  }
}
