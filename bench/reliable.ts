/**
 * Reliable delivery benchmark (issue 4, "Benchmarks"): durable cloud→edge
 * delivery of 256-byte messages, edgefabric (hub and edge in separate
 * processes, LMDB stores) over ws and quic on loopback in `sync` and
 * `relaxed` modes, against mosquitto (QoS 1, persistent session, publisher
 * and subscriber in separate processes) measured in the same run.
 *
 *  - live: the edge is connected; the producer sends `--n` messages with at
 *    most `--window` unacknowledged (durable in the hub outbox / PUBACKed).
 *    Delivered msg/s = n / (last arrival at the receiving application − first
 *    send); latency = arrival − send, under that full load. Then a paced run
 *    (`--rate` msg/s) gives latency at moderate load.
 *  - drain: `--drain` messages queued while the receiver is offline, then it
 *    comes (back) up: time to first delivery and drain rate.
 *
 * "Delivered" on the edge = handed to the application (EdgeOptions.onReliable,
 * awaited before the edge commits and acks); in MQTT.js = the 'message' event.
 *
 *   npm run bench:reliable                 # n 50,000, drain 100,000
 *   npm run bench:reliable -- --quick      # n 10,000, drain 20,000, no RESULTS.md
 *   options: --n N --drain N --window W --rate R --rounds R (default 3) --transports ws,quic --modes sync,relaxed --only live|drain
 *            --no-mosquitto --no-results
 *   RELIABLE_BENCH_CHILD_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles every child process.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { IpcChild } from './lib/child-ipc.js'
import { freePort, startListening, stopProcess } from './lib/local-server.js'
import { procCpuUs } from './lib/reliable-ipc.js'
import { drainTable, liveTable, medianRows, writeResultsSection, type DrainResult, type LiveResult } from './lib/reliable-report.js'

interface Summary { count: number, distinct: number, firstAt: number, lastAt: number, p50: number, p99: number, startAt: number, connectedAt: number }
interface Produced { firstAt: number, lastAckAt: number }

const argv = process.argv.slice(2)
const get = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
const quick = argv.includes('--quick')
const N = Number(get('--n') ?? (quick ? 10_000 : 50_000))
const DRAIN = Number(get('--drain') ?? (quick ? 20_000 : 100_000))
const WINDOW = Number(get('--window') ?? 1000)
const RATE = Number(get('--rate') ?? 2000)
const PACED = Math.round(RATE * (quick ? 2 : 4))
const WARM = 2000
const transports = (get('--transports') ?? 'ws,quic').split(',').filter(Boolean)
const modes = (get('--modes') ?? 'sync,relaxed').split(',').filter(Boolean)
const withMosquitto = !argv.includes('--no-mosquitto')
const only = get('--only')
const doLive = only === undefined || only === 'live'
const doDrain = only === undefined || only === 'drain'
const writeResults = !quick && !argv.includes('--no-results') && get('--only') === undefined
const TIMEOUT = 180_000
const ROUNDS = Number(get('--rounds') ?? (quick ? 1 : 3))

const script = (name: string): URL => new URL(`./${name}.js`, import.meta.url)
// RELIABLE_BENCH_CHILD_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the children.
const childExecArgv = (process.env.RELIABLE_BENCH_CHILD_ARGS ?? '').split(' ').filter(Boolean)
const child = (name: string, file: string): IpcChild => IpcChild.fork(name, script(file), [], { execArgv: childExecArgv })
const rate = (n: number, ms: number): number => n / (ms / 1000)
/** CPU µs used so far by these children (and extra pids, e.g. the broker), summed. */
async function cpuOf (children: IpcChild[], pids: number[] = []): Promise<number> {
  const xs = await Promise.all(children.map(async c => await c.cpu()))
  return xs.reduce((a, b) => a + b, 0) + pids.reduce((a, p) => a + procCpuUs(p), 0)
}

async function withDir<T> (fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'ef-bench-reliable-'))
  try { return await fn(dir) } finally { rmSync(dir, { recursive: true, force: true }) }
}

/**
 * `quic+libp2p` / `quic+edgefabric` pick the QUIC engine of both child
 * processes (issue 18: compare the engines in one run); plain `quic` is the default choice.
 */
function schemeOf (transport: string): string {
  const [scheme, engine] = transport.split('+')
  if (engine !== undefined) process.env.EDGEFABRIC_QUIC_ENGINE = engine
  else delete process.env.EDGEFABRIC_QUIC_ENGINE
  return scheme as string
}

async function efLive (transport: string, durability: string): Promise<LiveResult> {
  const scheme = schemeOf(transport)
  return await withDir(async dir => {
    const hub = child('ef-hub', 'reliable-ef-hub')
    const edge = child('ef-edge', 'reliable-ef-edge')
    try {
      const { url, token } = await hub.request<{ url: string, token: string }>('start', { listen: `${scheme}://127.0.0.1:0`, dataDir: join(dir, 'hub'), durability })
      await edge.request('start', { hub: url, token, dataDir: join(dir, 'edge'), durability, capacity: WARM, base: 0 })
      await Promise.all([hub.request('produce', { n: WARM, window: WINDOW }), edge.request('wait', { n: WARM, timeoutMs: TIMEOUT })])
      await edge.request('reset', { capacity: N, base: WARM })
      const c0 = await cpuOf([hub, edge])
      const [p, s] = await Promise.all([hub.request<Produced>('produce', { n: N, window: WINDOW }), edge.request<Summary>('wait', { n: N, timeoutMs: TIMEOUT })])
      const cpu = (await cpuOf([hub, edge]) - c0) / N
      await edge.request('reset', { capacity: PACED, base: WARM + N })
      const [, q] = await Promise.all([hub.request<Produced>('produce', { n: PACED, window: WINDOW, rate: RATE }), edge.request<Summary>('wait', { n: PACED, timeoutMs: TIMEOUT })])
      return {
        system: 'edgefabric', transport, durability, n: N,
        msgsPerSec: rate(N, s.lastAt - p.firstAt), ackedPerSec: rate(N, p.lastAckAt - p.firstAt), p50: s.p50, p99: s.p99,
        pacedRate: RATE, pacedN: PACED, pacedP50: q.p50, pacedP99: q.p99, duplicates: s.count - s.distinct + q.count - q.distinct, cpuUsPerMsg: cpu
      }
    } finally {
      await hub.quit()
      await edge.quit()
    }
  })
}

async function efDrain (transport: string, durability: string): Promise<DrainResult> {
  const scheme = schemeOf(transport)
  return await withDir(async dir => {
    const hub = child('ef-hub', 'reliable-ef-hub')
    const edge = child('ef-edge', 'reliable-ef-edge')
    try {
      const { url, token } = await hub.request<{ url: string, token: string }>('start', { listen: `${scheme}://127.0.0.1:0`, dataDir: join(dir, 'hub'), durability })
      const p = await hub.request<Produced>('produce', { n: DRAIN, window: WINDOW })
      const depth = await hub.request<number>('depth')
      if (depth !== DRAIN) throw new Error(`outbox holds ${depth}, expected ${DRAIN}`)
      const c0 = await cpuOf([hub, edge])
      const e0 = await cpuOf([edge])
      await edge.request('start', { hub: url, token, dataDir: join(dir, 'edge'), durability, capacity: DRAIN, base: 0 })
      const s = await edge.request<Summary>('wait', { n: DRAIN, timeoutMs: TIMEOUT })
      const cpu = (await cpuOf([hub, edge]) - c0) / DRAIN
      const edgeCpu = (await cpuOf([edge]) - e0) / DRAIN
      return {
        receiverCpuUsPerMsg: edgeCpu,
        system: 'edgefabric', transport, durability, n: DRAIN, queuedPerSec: rate(DRAIN, p.lastAckAt - p.firstAt), delivered: s.count,
        startToFirstMs: s.firstAt - s.startAt, sessionToFirstMs: s.firstAt - s.connectedAt, drainPerSec: rate(s.distinct, s.lastAt - s.firstAt), cpuUsPerMsg: cpu
      }
    } finally {
      await hub.quit()
      await edge.quit()
    }
  })
}

/**
 * mosquitto on 127.0.0.1 with persistence in `dir` (see the config for every
 * non-default). `inflight`: its max_inflight_messages (QoS 1 messages in
 * flight to one client), undefined = its default of 20.
 */
async function startMosquitto (dir: string, inflight: number | undefined): Promise<{ url: string, proc: ChildProcess, config: string, label: string }> {
  const port = await freePort()
  const config = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1', // snapshot the in-memory database to disk every second (its most durable setting)
    'max_queued_messages 0', // unlimited: the default 1000 silently drops the rest for an offline subscriber
    'max_queued_bytes 0',
    ...(inflight === undefined ? [] : [`max_inflight_messages ${inflight}`]),
    'user root'
  ].join('\n') + '\n'
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'mosquitto.conf'), config)
  const proc = await startListening('mosquitto', ['-c', join(dir, 'mosquitto.conf')], port)
  return { url: `mqtt://127.0.0.1:${port}`, proc, config, label: `mosquitto (inflight ${inflight ?? 20})` }
}

async function stopMosquitto (proc: ChildProcess): Promise<void> {
  await stopProcess(proc)
}

let mosquittoConfig = ''

async function mqLive (inflight: number | undefined): Promise<LiveResult> {
  return await withDir(async dir => {
    const m = await startMosquitto(dir, inflight)
    if (inflight !== undefined) mosquittoConfig = m.config
    const pub = child('mqtt-pub', 'reliable-mqtt')
    const sub = child('mqtt-sub', 'reliable-mqtt')
    try {
      await sub.request('sub-start', { url: m.url, capacity: WARM, base: 0 })
      await pub.request('pub-start', { url: m.url })
      await Promise.all([pub.request('produce', { n: WARM, window: WINDOW }), sub.request('wait', { n: WARM, timeoutMs: TIMEOUT })])
      await sub.request('reset', { capacity: N, base: WARM })
      const pids = [m.proc.pid as number]
      const c0 = await cpuOf([pub, sub], pids)
      const [p, s] = await Promise.all([pub.request<Produced>('produce', { n: N, window: WINDOW }), sub.request<Summary>('wait', { n: N, timeoutMs: TIMEOUT })])
      const cpu = (await cpuOf([pub, sub], pids) - c0) / N
      await sub.request('reset', { capacity: PACED, base: WARM + N })
      const [, q] = await Promise.all([pub.request<Produced>('produce', { n: PACED, window: WINDOW, rate: RATE }), sub.request<Summary>('wait', { n: PACED, timeoutMs: TIMEOUT })])
      return {
        system: m.label, transport: 'tcp', durability: 'QoS 1, autosave 1 s', n: N, cpuUsPerMsg: cpu,
        msgsPerSec: rate(N, s.lastAt - p.firstAt), ackedPerSec: rate(N, p.lastAckAt - p.firstAt), p50: s.p50, p99: s.p99,
        pacedRate: RATE, pacedN: PACED, pacedP50: q.p50, pacedP99: q.p99, duplicates: s.count - s.distinct + q.count - q.distinct
      }
    } finally {
      await pub.quit()
      await sub.quit()
      await stopMosquitto(m.proc)
    }
  })
}

async function mqDrain (inflight: number | undefined): Promise<DrainResult> {
  return await withDir(async dir => {
    const m = await startMosquitto(dir, inflight)
    const pub = child('mqtt-pub', 'reliable-mqtt')
    const sub = child('mqtt-sub', 'reliable-mqtt')
    try {
      await sub.request('sub-start', { url: m.url, capacity: 1, base: 0 }) // creates the persistent session + subscription
      await sub.request('sub-stop')
      await pub.request('pub-start', { url: m.url })
      const p = await pub.request<Produced>('produce', { n: DRAIN, window: WINDOW })
      const pids = [m.proc.pid as number]
      const c0 = await cpuOf([sub], pids)
      const s0 = await cpuOf([sub])
      const { sessionPresent } = await sub.request<{ sessionPresent: boolean }>('sub-start', { url: m.url, capacity: DRAIN, base: 0 })
      if (!sessionPresent) throw new Error('mosquitto lost the persistent session')
      const s = await sub.request<Summary>('wait', { n: DRAIN, timeoutMs: TIMEOUT })
      const cpu = (await cpuOf([sub], pids) - c0) / DRAIN
      return {
        cpuUsPerMsg: cpu,
        receiverCpuUsPerMsg: (await cpuOf([sub]) - s0) / DRAIN,
        system: m.label, transport: 'tcp', durability: 'QoS 1, autosave 1 s', n: DRAIN, queuedPerSec: rate(DRAIN, p.lastAckAt - p.firstAt), delivered: s.count,
        startToFirstMs: s.firstAt - s.startAt, sessionToFirstMs: s.firstAt - s.connectedAt, drainPerSec: rate(s.distinct, s.lastAt - s.firstAt)
      }
    } finally {
      await pub.quit()
      await sub.quit()
      await stopMosquitto(m.proc)
    }
  })
}

async function step<T> (label: string, fn: () => Promise<T>, into: T[], errors: string[]): Promise<void> {
  process.stdout.write(`${label} … `)
  const t0 = Date.now()
  try {
    const r = await fn()
    into.push(r)
    // A drain's figures at once (interleaved rounds are compared by eye while they run).
    const d = r as Partial<DrainResult>
    const extra = d.drainPerSec === undefined
      ? ''
      : ` (${Math.round(d.drainPerSec)} msg/s, start → first ${Math.round(d.startToFirstMs ?? NaN)} ms, CPU µs/msg ${d.cpuUsPerMsg?.toFixed(1) ?? '?'}, receiver ${d.receiverCpuUsPerMsg?.toFixed(1) ?? '?'}, load ${load()})`
    process.stdout.write(`${((Date.now() - t0) / 1000).toFixed(1)} s${extra}\n`)
  } catch (err) {
    const msg = `${label}: ${(err as Error).message}`
    errors.push(msg)
    process.stdout.write(`FAILED ${(err as Error).message}\n`)
  }
}

const live: LiveResult[] = []
const drain: DrainResult[] = []
const errors: string[] = []
const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`
const load = (): string => loadavg().map(x => x.toFixed(2)).join(' ')
const loadBefore = load()
console.log(`reliable delivery bench: live n=${N} (window ${WINDOW}), paced ${RATE}/s × ${PACED}, drain ${DRAIN}; ${machine}; load ${loadBefore}`)
// Rounds interleave every configuration, so a burst of load from elsewhere on
// the machine hits all of them alike; the tables show each one's median run.
for (let round = 1; round <= ROUNDS; round++) {
  if (ROUNDS > 1) console.log(`round ${round}/${ROUNDS}`)
  // mosquitto twice: its defaults (20 QoS 1 messages in flight per client) and
  // with the same window as edgefabric's producer.
  for (const inflight of withMosquitto ? [undefined, WINDOW] : []) {
    if (doLive) await step(`mosquitto (inflight ${inflight ?? 20}) live`, () => mqLive(inflight), live, errors)
    if (doDrain) await step(`mosquitto (inflight ${inflight ?? 20}) drain`, () => mqDrain(inflight), drain, errors)
  }
  for (const transport of transports) {
    for (const mode of modes) {
      if (doLive) await step(`edgefabric ${transport} ${mode} live`, () => efLive(transport, mode), live, errors)
      if (doDrain) await step(`edgefabric ${transport} ${mode} drain`, () => efDrain(transport, mode), drain, errors)
    }
  }
}

/**
 * Issue 4's targets, computed from this run. The issue sets two: durable live delivery ≥ 1.5×
 * mosquitto (best sync row vs the better mosquitto configuration), and, for the store-and-forward
 * drain, reconnect → first delivery ≤ 1 s. For the drain RATE it asks for a comparison with
 * mosquitto's (quoting ≈53k msg/s on this machine kind), without a ratio: both are printed.
 */
function verdict (): string {
  const lm = medianRows(live, r => r.msgsPerSec)
  const dm = medianRows(drain, r => r.drainPerSec)
  const best = <T extends { system: string }>(rows: T[], m: (r: T) => number, pick: (r: T) => boolean): number => Math.max(...rows.filter(pick).map(m))
  const isMq = (r: { system: string }): boolean => r.system.startsWith('mosquitto')
  const isEf = (r: { system: string }): boolean => r.system === 'edgefabric'
  const isSync = (r: { system: string, durability: string }): boolean => isEf(r) && r.durability === 'sync'
  const lr = best(lm, r => r.msgsPerSec, isSync) / best(lm, r => r.msgsPerSec, isMq)
  const dBest = best(dm, r => r.drainPerSec, isSync)
  const dr = dBest / best(dm, r => r.drainPerSec, isMq)
  const firstMs = best(drain, r => r.startToFirstMs, isEf)
  const fmt = (x: number): string => Number.isFinite(x) ? `${x.toFixed(2)}×` : '—'
  const lines = [
    `Targets (issue 4), from this run: durable live delivery ≥ 1.5× mosquitto with every acknowledged message on disk — ` +
      `best \`sync\` row vs the faster mosquitto configuration ${fmt(lr)}: ${lr >= 1.5 ? 'met' : 'NOT met'}.`
  ]
  if (Number.isFinite(firstMs)) {
    lines.push(`Drain: edge process start → first delivery at most ${Math.round(firstMs)} ms over every edgefabric run (target ≤ 1 s: ${firstMs <= 1000 ? 'met' : 'NOT met'}); ` +
      `drain rate, best \`sync\` row, ${Math.round(dBest).toLocaleString('en-US')} msg/s = ${fmt(dr)} the faster mosquitto configuration of this run ` +
      `(${fmt(dBest / 53_000)} the ≈53k msg/s the issue quotes for mosquitto here; the issue sets no ratio for the drain rate).`)
  }
  return lines.join('\n\n')
}

const date = new Date().toISOString().slice(0, 10)
const loadAfter = load()
const body = [
  `## Reliable delivery (${date}, ${machine})`,
  '',
  '`npm run bench:reliable` (bench/reliable.ts). Durable cloud→edge delivery of 256-byte messages on loopback; every',
  'system in its own processes (edgefabric: hub process + edge process, LMDB stores; mosquitto 2.0: broker +',
  'MQTT.js publisher + MQTT.js subscriber). `sync`: a message is acknowledged to the producer only after the LMDB',
  'commit holding it was fsync\'d; `relaxed`: after the commit, before the fsync. mosquitto keeps messages in memory',
  'and snapshots its whole database every `autosave_interval` (set to 1 s here), so its PUBACK does not mean on disk.',
  `Load average (1/5/15 min) before the run ${loadBefore}, after ${loadAfter}: the machine is shared, so compare rows of`,
  'one run rather than runs.',
  '',
  verdict(),
  '',
  `### Live: ${N.toLocaleString('en')} messages, at most ${WINDOW} unacknowledged at the producer`,
  '',
  'delivered msg/s = messages / (last arrival at the receiving application − first send); p50/p99 = arrival − send',
  `under that full load; "paced" = the same at a fixed ${RATE.toLocaleString('en')} msg/s. Each row is the median of ${ROUNDS} interleaved`,
  'runs by msg/s (all runs in the last column).',
  '',
  liveTable(medianRows(live, r => r.msgsPerSec)),
  '',
  `### Store-and-forward drain: ${DRAIN.toLocaleString('en')} queued while the receiver is offline`,
  '',
  'edgefabric: the edge process starts after the hub queued everything (first join); mosquitto: the subscriber',
  'reconnects to its persistent session (clean: false). "session up" = welcome / CONNACK. Median run by drain msg/s.',
  '',
  drainTable(medianRows(drain, r => r.drainPerSec)),
  '',
  '"CPU µs/msg": CPU time of every process involved (edgefabric: hub + edge; mosquitto: broker + publisher +',
  'subscriber live, broker + subscriber in the drain) over the run, per message — independent of other load on the',
  'machine. mosquitto runs twice: with its default of 20 QoS 1 messages in flight per client, and with',
  `max_inflight_messages ${WINDOW}, the window edgefabric's producer gets. Its configuration (non-defaults; the first`,
  'variant omits max_inflight_messages):',
  '',
  '```',
  mosquittoConfig.replace(/^listener .*$/m, 'listener <port> 127.0.0.1').replace(/^persistence_location .*$/m, 'persistence_location <tmp>/').trimEnd(),
  '```',
  ...(errors.length > 0 ? ['', 'Failed steps:', '', ...errors.map(e => `- ${e}`)] : []),
  ''
].join('\n')
console.log('\n' + body)
mkdirSync(join('bench', 'out'), { recursive: true })
writeFileSync(join('bench', 'out', `reliable-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ machine, N, DRAIN, WINDOW, RATE, live, drain, errors }, null, 2))
if (writeResults) writeResultsSection(join('bench', 'RESULTS.md'), body)
process.exit(errors.length > 0 ? 1 : 0)
