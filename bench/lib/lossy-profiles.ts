/**
 * Link profiles, transports and options of the lossy-link benchmark
 * (bench/lossy.ts), and its command-line parser.
 *
 * Grid (issue 6): RTT 0/50/200 ms × loss 0/1/5/10 % (Bernoulli, both
 * directions), plus a Gilbert-Elliott burst profile and a 10 Mbit/s
 * rate-limited link, both at 50 ms RTT. Delay is split evenly over the two
 * directions; the same loss applies to each direction independently.
 */
import { InvalidOptionError } from '../../src/errors.js'
import type { LinkParams } from './lossy-netns.js'
import { EVENT_SCENARIOS, type EventScenario } from './lossy-events.js'
import { PEERS, type PeerKey } from './lossy-peers.js'
import type { ClientScenario } from '../lossy-client.js'

/**
 * The asymmetric (cellular-like) link of the `asym` event scenario: 80 ms
 * RTT, 2 Mbit/s up with 1 % loss and a 64 kB queue (≈ 250 ms), 20 Mbit/s
 * down with a 250 kB queue (≈ 100 ms). a2b = edge → cloud (up).
 */
export const ASYM_LINK: { up: LinkParams, down: LinkParams, title: string } = {
  up: { delayMs: 40, loss: 0.01, rateKbit: 2000, queueBytes: 64_000 },
  down: { delayMs: 40, loss: 0, rateKbit: 20_000, queueBytes: 250_000 },
  title: '80 ms RTT, up 2 Mbit/s + 1 % loss (64 kB queue), down 20 Mbit/s (250 kB queue)'
}

export interface Profile {
  key: string
  title: string
  rttMs: number
  /** Mean loss per direction, % (for the charts' x axis). */
  lossPct: number
  /** Chart x label: "0 %", …, "GE bursts". */
  lossLabel: string
  params: LinkParams
}

/**
 * Gilbert-Elliott: P(good→bad) 1 %, P(bad→good) 25 % (mean burst 4 packets),
 * loss 50 % in the bad state, none in the good: mean ≈ 1.9 % in bursts.
 */
export const GE_BURST = { p: 0.01, r: 0.25, lossGood: 0, lossBad: 0.5 }
export const RATE_KBIT = 10_000
/** ≈ 80 ms of queue at 10 Mbit/s, a typical shallow-buffered access link. */
export const RATE_QUEUE_BYTES = 100_000

function bernoulli (rttMs: number, lossPct: number): Profile {
  return {
    key: `rtt${rttMs}-loss${lossPct}`,
    title: `RTT ${rttMs} ms, loss ${lossPct} %`,
    rttMs,
    lossPct,
    lossLabel: `${lossPct} %`,
    params: { delayMs: rttMs / 2, loss: lossPct / 100 }
  }
}

export function allProfiles (): Profile[] {
  const out: Profile[] = []
  for (const rtt of [0, 50, 200]) for (const loss of [0, 1, 5, 10]) out.push(bernoulli(rtt, loss))
  const geMean = GE_BURST.p / (GE_BURST.p + GE_BURST.r) * GE_BURST.lossBad
  out.push({
    key: 'rtt50-ge',
    title: `RTT 50 ms, Gilbert-Elliott bursts (mean ${(geMean * 100).toFixed(1)} %)`,
    rttMs: 50,
    lossPct: geMean * 100,
    lossLabel: 'GE bursts',
    params: { delayMs: 25, ge: GE_BURST }
  })
  out.push({
    key: 'rtt50-rate10',
    title: 'RTT 50 ms, 10 Mbit/s, 100 kB drop-tail queue',
    rttMs: 50,
    lossPct: 0,
    lossLabel: '10 Mbit/s',
    params: { delayMs: 25, rateKbit: RATE_KBIT, queueBytes: RATE_QUEUE_BYTES }
  })
  return out
}

export interface TransportDef {
  key: string
  label: string
  /** Listen URL template; HOST is replaced by side B's address. */
  listen: string
  /** Scheme for the hub (reliable scenarios). */
  scheme: string
  /**
   * Environment of every child of this system (server, client, hub, edge):
   * the quic variants pick their engine and congestion controller through the
   * transport's overrides (src/transport/quic-options.ts), so both ends of a
   * run use the same settings.
   */
  env?: Record<string, string>
  /** Not in the default set; named with --transports. */
  optIn?: boolean
}

export const TRANSPORTS: readonly TransportDef[] = [
  { key: 'quic', label: 'quic', listen: 'quic://HOST:0', scheme: 'quic' },
  { key: 'ws', label: 'ws (TCP)', listen: 'ws://HOST:0', scheme: 'ws' },
  { key: 'webtransport', label: 'WebTransport', listen: 'https://HOST:0/bench', scheme: 'https' },
  // Issue 18: the native engine's congestion controllers side by side, and the old engine.
  { key: 'quic-bbr', label: 'quic', listen: 'quic://HOST:0', scheme: 'quic', env: { EDGEFABRIC_QUIC_CC: 'bbr' }, optIn: true },
  { key: 'quic-newreno', label: 'quic', listen: 'quic://HOST:0', scheme: 'quic', env: { EDGEFABRIC_QUIC_CC: 'newreno' }, optIn: true },
  { key: 'quic-libp2p', label: 'quic', listen: 'quic://HOST:0', scheme: 'quic', env: { EDGEFABRIC_QUIC_ENGINE: 'libp2p' }, optIn: true }
]

export interface LossyOptions {
  quick: boolean
  outDir: string | undefined
  seed: number
  transports: string[]
  /** TCP congestion control in the namespaces. */
  cc: string
  /** Link emulator: the userland wire (reference) or the kernel's tc netem where it exists. */
  backend: 'wire' | 'netem'
  runs: number
  /** Per timed scenario (bulk, rr, hol, streams). */
  durationMs: number
  profiles: string[]
  /** Outage lengths in seconds; empty = no outage scenario. */
  outagesS: number[]
  /** Profile the outage scenario runs on. */
  outageProfile: string
  /** Runs per outage length. */
  outageRuns: number
  /** Reliable delivery scenario: messages per run, paced at reliableRate/s. */
  reliableCount: number
  reliableRate: number
  setupCount: number
  streams: number
  /** Packet-rate probes of the wire (3 s each, 64-byte datagrams); the best and all are reported. */
  wireRateRuns: number
  /** Peers on the same wire (grid reliable + app rr, outages, events); empty = none. */
  peers: PeerKey[]
  /** Event scenarios (NAT rebinding, flapping link, asymmetric link); empty = none. */
  events: EventScenario[]
  /** Runs per event scenario and system, interleaved. */
  eventRuns: number
  /** Length of each event scenario's load, ms. */
  eventMs: Record<EventScenario, number>
  /** Client scenarios of each grid run (all by default; a subset for a focused measurement). */
  scenarios: ClientScenario[]
  /** Run the reliable-delivery part of each grid run (off with --no-reliable). */
  reliable: boolean
}

export const CLIENT_SCENARIOS: readonly ClientScenario[] = ['setup', 'bulk', 'rr', 'hol', 'streams']

export function defaults (quick: boolean): LossyOptions {
  return {
    quick,
    outDir: undefined,
    seed: 1,
    transports: quick ? ['quic', 'ws'] : TRANSPORTS.filter(t => t.optIn !== true).map(t => t.key),
    cc: 'cubic',
    backend: 'wire',
    runs: quick ? 1 : 3,
    durationMs: quick ? 1200 : 8000,
    profiles: quick ? ['rtt50-loss0', 'rtt50-loss5'] : allProfiles().map(p => p.key),
    outagesS: quick ? [3] : [15, 60],
    outageProfile: 'rtt50-loss0',
    outageRuns: quick ? 1 : 2,
    reliableCount: quick ? 200 : 600,
    reliableRate: 200,
    setupCount: quick ? 2 : 5,
    streams: 16,
    wireRateRuns: 1,
    peers: quick ? [] : PEERS.map(p => p.key),
    events: quick ? [] : [...EVENT_SCENARIOS],
    eventRuns: quick ? 1 : 3,
    eventMs: { rebind: 30_000, flap: 60_000, asym: 20_000 },
    scenarios: [...CLIENT_SCENARIOS],
    reliable: true
  }
}

export const USAGE = `Usage: edgefabric bench lossy [options]

Transport benchmarks over an emulated lossy link (two network namespaces joined
by a userland wire). Needs root, the \`ip\` command (iproute2) and gcc.

Options:
  --quick                smoke profile (~2 min): 2 links, quic + ws, 1 run, short scenarios
  --out DIR              where results.json, results.md and the SVG charts go
                         (default bench/out/lossy-<time>/)
  --seed N               PRNG seed of the link emulator (default 1)
  --transports LIST      comma list of ${TRANSPORTS.map(t => t.key).join(', ')}
                         (default: ${TRANSPORTS.filter(t => t.optIn !== true).map(t => t.key).join(', ')}; quic uses the
                         default engine — edgefabric where its prebuilt loads — and cubic)
  --cc NAME              TCP congestion control inside the namespaces (default cubic)
  --backend wire|netem   link emulator: the userland wire (default) or tc netem where the kernel has it
  --runs N               runs per cell, median and min–max reported (default 3)
  --duration MS          per timed scenario (default 8000)
  --profiles LIST        link profiles (default: all of ${allProfiles().map(p => p.key).join(', ')})
  --outages LIST         outage lengths in seconds, or "none" (default 15,60)
  --outage-profile KEY   link for the outage scenario (default rtt50-loss0)
  --outage-runs N        runs per outage length (default 2)
  --peers LIST           peers on the same wire: mosquitto,nats or "none" (default both; --quick: none)
  --events LIST          event scenarios: rebind,flap,asym or "none" (default all; --quick: none)
  --event-runs N         runs per event scenario and system (default 3)
  --event-duration LIST  load length per event, e.g. rebind=30000,flap=60000,asym=20000 (ms)
  --scenarios LIST       client scenarios of a grid run: ${CLIENT_SCENARIOS.join(',')} (default all)
  --no-reliable          skip the reliable-delivery part of each grid run
  --wire-rate N          only measure the wire's packet rate, N probes of 3 s`

export function parseArgs (argv: string[]): LossyOptions {
  const o = defaults(argv.includes('--quick'))
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new InvalidOptionError(a, 'needs a value')
      return v
    }
    const int = (min: number): number => {
      const v = value()
      const n = Number(v)
      if (!Number.isInteger(n) || n < min) throw new InvalidOptionError(a, `must be an integer ≥ ${min}, got "${v}"`)
      return n
    }
    const list = (): string[] => value().split(',').map(s => s.trim()).filter(s => s !== '')
    if (a === '--quick') continue
    else if (a === '--out') o.outDir = value()
    else if (a === '--seed') o.seed = int(0)
    else if (a === '--transports') o.transports = list()
    else if (a === '--cc') o.cc = value()
    else if (a === '--backend') {
      const v = value()
      if (v !== 'wire' && v !== 'netem') throw new InvalidOptionError(a, `must be wire or netem, got "${v}"`)
      o.backend = v
    }
    else if (a === '--runs') o.runs = int(1)
    else if (a === '--duration') o.durationMs = int(200)
    else if (a === '--profiles') o.profiles = list()
    else if (a === '--outages') {
      const v = list()
      o.outagesS = v.length === 1 && v[0] === 'none' ? [] : v.map(s => { const n = Number(s); if (!(n > 0)) throw new InvalidOptionError(a, `bad outage length "${s}"`); return n })
    } else if (a === '--outage-profile') o.outageProfile = value()
    else if (a === '--outage-runs') o.outageRuns = int(1)
    else if (a === '--wire-rate') { o.wireRateRuns = int(1); o.profiles = []; o.outagesS = []; o.transports = []; o.peers = []; o.events = [] }
    else if (a === '--peers') {
      const v = list()
      const keys = PEERS.map(p => p.key) as string[]
      for (const k of v) if (k !== 'none' && !keys.includes(k)) throw new InvalidOptionError(a, `unknown peer "${k}" (known: ${keys.join(', ')})`)
      o.peers = v.filter(k => k !== 'none') as PeerKey[]
    } else if (a === '--events') {
      const v = list()
      for (const k of v) if (k !== 'none' && !(EVENT_SCENARIOS as readonly string[]).includes(k)) throw new InvalidOptionError(a, `unknown event scenario "${k}" (known: ${EVENT_SCENARIOS.join(', ')})`)
      o.events = v.filter(k => k !== 'none') as EventScenario[]
    } else if (a === '--event-runs') o.eventRuns = int(1)
    else if (a === '--scenarios') {
      const v = list()
      for (const k of v) if (!(CLIENT_SCENARIOS as readonly string[]).includes(k)) throw new InvalidOptionError(a, `unknown scenario "${k}" (known: ${CLIENT_SCENARIOS.join(', ')})`)
      if (v.length === 0) throw new InvalidOptionError(a, 'needs at least one scenario')
      o.scenarios = v as ClientScenario[]
    } else if (a === '--no-reliable') o.reliable = false
    else if (a === '--event-duration') {
      o.eventMs = { ...o.eventMs }
      for (const kv of list()) {
        const [k, v] = kv.split('=')
        const ms = Number(v)
        if (!(EVENT_SCENARIOS as readonly string[]).includes(k ?? '') || !Number.isInteger(ms) || ms < 5000) throw new InvalidOptionError(a, `expected scenario=ms with ms ≥ 5000, got "${kv}"`)
        o.eventMs[k as EventScenario] = ms
      }
    }
    else throw new InvalidOptionError(a, 'unknown option (see --help)')
  }
  for (const t of o.transports) if (TRANSPORTS.find(d => d.key === t) === undefined) throw new InvalidOptionError('--transports', `unknown transport "${t}" (known: ${TRANSPORTS.map(d => d.key).join(', ')})`)
  const keys = allProfiles().map(p => p.key)
  for (const p of [...o.profiles, o.outageProfile]) if (!keys.includes(p)) throw new InvalidOptionError('--profiles', `unknown profile "${p}" (known: ${keys.join(', ')})`)
  if (!/^[a-z0-9_]+$/.test(o.cc)) throw new InvalidOptionError('--cc', `bad congestion control name "${o.cc}"`)
  return Object.freeze(o)
}
