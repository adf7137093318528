/**
 * Cluster-mode benchmark (issue 17, "Benchmarks"), everything measured in the
 * same run on this machine, 256-byte payloads, rounds interleaved:
 *
 *  - cluster: hub in cluster mode (3 nats-server, R3 file streams) → edge
 *    over ws on loopback, reliable lane; msg/s = n / (last arrival − first
 *    send), latency = arrival − send, with at most `--window` sends
 *    outstanding;
 *  - raw JetStream: the same payloads published to an R3 stream of the same
 *    cluster (window of `--window` outstanding PubAcks) and read by an
 *    ordered consumer: the engine's own publish → consume figure;
 *  - single hub: the embedded default (LMDB, sync) → the same edge setup.
 *
 * Hub, edge and client share this process (one Node event loop) and the
 * three nats-server processes share the machine's cores: figures are for
 * comparison within the run, not capacity claims.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/cluster.js [--n 5000] [--window 1000] [--rounds 3]
 *   … node dist-bench/bench/cluster.js --sessions 2000 [--idle 20] [--rounds 3]   (sessions per hub, lib/cluster-sessions.ts)
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, DeliverPolicy, StorageType } from '@nats-io/jetstream'
import { newMessage } from '../src/codec/envelope.js'
import { EdgeNode } from '../src/edge/edge-node.js'
import { Hub } from '../src/hub/hub.js'
import { NatsCluster } from '../test/cluster/nats-cluster.js'
import { sessionsReport, sessionsRound, type SessionsResult } from './lib/cluster-sessions.js'

const argv = process.argv.slice(2)
const get = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
const N = Number(get('--n') ?? 5000)
const WINDOW = Number(get('--window') ?? 1000)
const ROUNDS = Number(get('--rounds') ?? 3)
const PAYLOAD = new Uint8Array(256).fill(7)
/**
 * `--backlog N`: N messages queued for 100 offline nodes in the cluster's outbox stream before the
 * run, at seqs below all of the measured node's — what a fleet with offline nodes looks like to
 * the server's `next_by_subj` reads (outbox-range-settle.ts).
 */
const BACKLOG = Number(get('--backlog') ?? 0)
/** `--only raw,cluster,single`: run only these rows (profiling one path). */
const ONLY = new Set((get('--only') ?? 'raw,cluster,single').split(','))

interface Result {
  rate: number, p50: number, p99: number,
  /** CPU µs per message: this process, the 3 nats-servers */
  cpu: { node: number, nats: number },
  /** Messages the clients sent NATS per delivered message (publishes, API requests, pulls, acks; /connz in_msgs) */
  ops: number
}

/** in_msgs of every client connection on the 3 servers (closed ones included: /connz?state=any). */
async function clientMsgs (): Promise<number> {
  let sum = 0
  for (const s of nats.servers) {
    const r = await fetch(`http://127.0.0.1:${s.httpPort}/connz?state=any&limit=100000`)
    const j = await r.json() as { connections?: Array<{ in_msgs?: number }> }
    for (const c of j.connections ?? []) sum += c.in_msgs ?? 0
  }
  return sum
}

/** utime + stime of a process in µs (/proc/PID/stat fields 14 and 15, clock ticks of 10 ms). */
function procCpuUs (pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(rest[11]) + Number(rest[12])) * 10_000
  } catch { return 0 }
}
function cpuNow (): { node: number, nats: number } {
  const u = process.cpuUsage()
  return { node: u.user + u.system, nats: nats.servers.reduce((a, s) => a + procCpuUs(s.proc?.pid), 0) }
}
function cpuPer (from: { node: number, nats: number }, n: number): { node: number, nats: number } {
  const to = cpuNow()
  return { node: (to.node - from.node) / n, nats: (to.nats - from.nats) / n }
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN
}

async function window<T> (n: number, w: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(w, n) }, async () => {
    while (next < n) { const i = next++; await fn(i) }
  }))
}

async function hubRun (dir: string, tag: string, cluster: { servers: string[] } | undefined): Promise<Result> {
  const sent = new Array<number>(N)
  const lat: number[] = []
  let last = 0
  let done: () => void = () => {}
  const all = new Promise<void>(resolve => { done = resolve })
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: join(dir, `hub-${tag}`), admin: false, ...(cluster === undefined ? {} : { cluster: { ...cluster, name: 'bench', identitySecret: 'bench-secret-0123456789', hubName: `bench-${tag}` } }) })
  const node = `edge-${tag}`
  if (cluster !== undefined && BACKLOG > 0) {
    const nc = await connect({ servers: cluster.servers, noAsyncTraces: true })
    const js = jetstream(nc)
    await window(BACKLOG, 500, async i => { await js.publish(`ef.bench.down.off-${tag}-${i % 100}.m.b${i}`, PAYLOAD) })
    await nc.close()
  }
  const edge = await EdgeNode.start({
    hub: hub.urls, nodeId: node, token: hub.createToken(node), dataDir: join(dir, `edge-${tag}`), admin: false,
    onReliable: env => {
      const i = (env.content as { i: number }).i
      const at = performance.now()
      if (sent[i] !== undefined) lat.push(at - (sent[i] as number))
      last = at
      if (lat.length >= N) done()
    }
  })
  await edge.waitConnected(30_000)
  const t0 = performance.now()
  const cpu0 = cpuNow()
  const ops0 = cluster === undefined ? 0 : await clientMsgs()
  await window(N, WINDOW, async i => {
    sent[i] = performance.now()
    await hub.send(node, newMessage({ source: 'bench', group: 'bench', operation: 'insert', resource: 'default/bench/x', content: { i, p: PAYLOAD } }), { delivery: 'reliable' })
  })
  await all
  const cpu = cpuPer(cpu0, N)
  // Settling the acks goes on after the last delivery: let it finish before counting what it sent.
  if (cluster !== undefined) await new Promise(resolve => setTimeout(resolve, 1500))
  const r = { rate: N / ((last - t0) / 1000), p50: pct(lat, 0.5), p99: pct(lat, 0.99), cpu, ops: cluster === undefined ? 0 : (await clientMsgs() - ops0) / N }
  await edge.close()
  await hub.close(200)
  return r
}

async function rawRun (servers: string[], tag: string): Promise<Result> {
  // Same client option as the hub's (src/cluster/connection.ts): a baseline that pays for stack
  // captures the hub does not pay would flatter the ratio.
  const nc = await connect({ servers, noAsyncTraces: true })
  const jsm = await jetstreamManager(nc)
  const name = `RAW_${tag}`
  await jsm.streams.add({ name, subjects: [`raw.${tag}.>`], num_replicas: 3, storage: StorageType.File })
  const js = jetstream(nc)
  const sent = new Array<number>(N)
  const lat: number[] = []
  let last = 0
  const c = await js.consumers.get(name, { filter_subjects: `raw.${tag}.>`, deliver_policy: DeliverPolicy.All })
  const msgs = await c.consume({ max_messages: 1000 })
  const reading = (async () => {
    for await (const m of msgs) {
      const i = Number(m.subject.slice(m.subject.lastIndexOf('.') + 1))
      const at = performance.now()
      lat.push(at - (sent[i] as number))
      last = at
      if (lat.length >= N) break
    }
  })()
  const t0 = performance.now()
  const cpu0 = cpuNow()
  const ops0 = await clientMsgs()
  await window(N, WINDOW, async i => {
    sent[i] = performance.now()
    await js.publish(`raw.${tag}.${i}`, PAYLOAD)
  })
  await reading
  const r = { rate: N / ((last - t0) / 1000), p50: pct(lat, 0.5), p99: pct(lat, 0.99), cpu: cpuPer(cpu0, N), ops: (await clientMsgs() - ops0) / N }
  await jsm.streams.delete(name)
  await nc.close()
  return r
}

const dir = mkdtempSync(join(tmpdir(), 'ef-bench-cluster-'))
const nats = await NatsCluster.start(join(dir, 'nats'), 3)
const SESSIONS = get('--sessions')
if (SESSIONS !== undefined) {
  // Sessions per hub (bench/lib/cluster-sessions.ts): cluster hub vs single hub, rounds interleaved.
  const idle = Number(get('--idle') ?? 20)
  const results: SessionsResult[] = []
  try {
    for (let round = 0; round < ROUNDS; round++) {
      results.push(await sessionsRound('cluster', Number(SESSIONS), idle, nats, `c${round}`))
      results.push(await sessionsRound('single', Number(SESSIONS), idle, nats, `s${round}`))
    }
  } finally {
    await nats.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(`cluster bench --sessions ${SESSIONS}: ws, idle ${idle} s, ${ROUNDS} interleaved rounds, medians (range)`)
  console.log(sessionsReport(results))
} else {
  await throughput()
}

async function throughput (): Promise<void> {
  const rows: Record<string, Result[]> = { cluster: [], raw: [], single: [] }
  try {
    for (let round = 0; round < ROUNDS; round++) {
      if (ONLY.has('raw')) rows.raw?.push(await rawRun(nats.urls, `r${round}`))
      if (ONLY.has('cluster')) rows.cluster?.push(await hubRun(dir, `c${round}`, { servers: nats.urls }))
      if (ONLY.has('single')) rows.single?.push(await hubRun(dir, `s${round}`, undefined))
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`)
    }
  } finally {
    await nats.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  const med = (xs: number[]): number => pct(xs, 0.5)
  const fmt = (rs: Result[]): string => {
    const rates = rs.map(r => r.rate)
    if (rs.length === 0) return 'not run'
    return `${med(rates).toFixed(0)} msg/s (range ${Math.min(...rates).toFixed(0)}–${Math.max(...rates).toFixed(0)}), p50 ${med(rs.map(r => r.p50)).toFixed(1)} ms, p99 ${med(rs.map(r => r.p99)).toFixed(1)} ms; CPU/msg: node ${med(rs.map(r => r.cpu.node)).toFixed(0)} µs, nats ${med(rs.map(r => r.cpu.nats)).toFixed(0)} µs; client→NATS msgs/msg ${med(rs.map(r => r.ops)).toFixed(2)}`
  }
  console.log(`cluster bench: n=${N} × 256 B, window ${WINDOW}, ${ROUNDS} interleaved rounds, medians${BACKLOG > 0 ? `; ${BACKLOG} messages queued for 100 offline nodes before each cluster run` : ''}`)
  console.log(`  raw JetStream R3 publish→ordered consume: ${fmt(rows.raw ?? [])}`)
  console.log(`  cluster hub → edge (ws, R3):              ${fmt(rows.cluster ?? [])}`)
  console.log(`  single hub LMDB sync → edge (ws):         ${fmt(rows.single ?? [])}`)
  const ratio = med((rows.cluster ?? []).map(r => r.rate)) / med((rows.raw ?? []).map(r => r.rate))
  console.log(`  cluster / raw JetStream = ${ratio.toFixed(2)}× (target ≥ 0.7×); cluster / single hub = ${(med((rows.cluster ?? []).map(r => r.rate)) / med((rows.single ?? []).map(r => r.rate))).toFixed(2)}×`)
}
