/**
 * Tables of bench/reliable.ts and its section in bench/RESULTS.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

export interface LiveResult {
  /** 'edgefabric' or 'mosquitto (inflight N)' */
  system: string
  transport: string
  durability: string
  n: number
  /** CPU µs per message of every process involved (hub + edge / broker + publisher + subscriber). */
  cpuUsPerMsg: number
  /** Delivered to the receiving application per second: n / (last arrival − first send). */
  msgsPerSec: number
  /** Producer side: acknowledged (durable / PUBACKed) per second. */
  ackedPerSec: number
  p50: number
  p99: number
  pacedRate: number
  pacedN: number
  pacedP50: number
  pacedP99: number
  duplicates: number
}

export interface DrainResult {
  system: string
  transport: string
  durability: string
  n: number
  /** CPU µs per message of the processes involved in the drain (hub + edge / broker + subscriber). */
  cpuUsPerMsg: number
  /** Of that, the receiving process alone (edge / MQTT subscriber): the busy side of a drain. */
  receiverCpuUsPerMsg?: number
  queuedPerSec: number
  delivered: number
  /** Process/client start → first delivery, ms. */
  startToFirstMs: number
  /** Session up (welcome / CONNACK) → first delivery, ms. */
  sessionToFirstMs: number
  drainPerSec: number
}

const f0 = (x: number): string => Number.isFinite(x) ? Math.round(x).toLocaleString('en') : '—'
const f1 = (x: number): string => Number.isFinite(x) ? x.toFixed(1) : '—'
const ratio = (x: number, base: number | undefined): string => base === undefined || !Number.isFinite(x) || base <= 0 ? '—' : `${(x / base).toFixed(2)}×`

type Runs<T> = T & { runs: number[] }

/** Per system/transport/durability: the run with the median `metric`, with every run's value attached. */
export function medianRows<T extends { system: string, transport: string, durability: string }> (rows: T[], metric: (r: T) => number): Array<Runs<T>> {
  const groups = new Map<string, T[]>()
  for (const r of rows) {
    const k = `${r.system}|${r.transport}|${r.durability}`
    groups.set(k, [...(groups.get(k) ?? []), r])
  }
  return [...groups.values()].map(g => {
    const sorted = [...g].sort((a, b) => metric(a) - metric(b))
    return { ...(sorted[Math.floor((sorted.length - 1) / 2)] as T), runs: g.map(metric) }
  })
}

const runsCell = (runs: number[]): string => runs.map(f0).join(' / ')

/** One "vs <baseline>" column per mosquitto row. */
function baselines<T extends { system: string }> (rows: T[], metric: (r: T) => number): { head: string, cells: (r: T) => string } {
  const bases = rows.filter(r => r.system.startsWith('mosquitto'))
  return {
    head: bases.map(b => ` vs ${b.system} |`).join(''),
    cells: r => bases.map(b => ` ${ratio(metric(r), metric(b))} |`).join('')
  }
}

export function liveTable (rows: Array<Runs<LiveResult>>): string {
  const b = baselines(rows, r => r.msgsPerSec)
  const out = [
    `| system | transport | durability | delivered msg/s |${b.head} CPU µs/msg | acked msg/s (producer) | p50 ms | p99 ms | paced: rate | paced p50 ms | paced p99 ms | dup | runs: msg/s |`,
    `|---|---|---|---:|${b.head.replace(/[^|]+\|/g, '---:|')}---:|---:|---:|---:|---:|---:|---:|---:|---|`
  ]
  for (const r of rows) {
    out.push(`| ${r.system} | ${r.transport} | ${r.durability} | ${f0(r.msgsPerSec)} |${b.cells(r)} ${f1(r.cpuUsPerMsg)} | ${f0(r.ackedPerSec)} | ${f1(r.p50)} | ${f1(r.p99)} | ${f0(r.pacedRate)}/s × ${f0(r.pacedN)} | ${f1(r.pacedP50)} | ${f1(r.pacedP99)} | ${r.duplicates} | ${runsCell(r.runs)} |`)
  }
  return out.join('\n')
}

export function drainTable (rows: Array<Runs<DrainResult>>): string {
  const b = baselines(rows, r => r.drainPerSec)
  const out = [
    `| system | transport | durability | queued | queue msg/s | delivered | start → first ms | session up → first ms | drain msg/s |${b.head} CPU µs/msg | runs: drain msg/s |`,
    `|---|---|---|---:|---:|---:|---:|---:|---:|${b.head.replace(/[^|]+\|/g, '---:|')}---:|---|`
  ]
  for (const r of rows) {
    out.push(`| ${r.system} | ${r.transport} | ${r.durability} | ${f0(r.n)} | ${f0(r.queuedPerSec)} | ${f0(r.delivered)} | ${f0(r.startToFirstMs)} | ${f0(r.sessionToFirstMs)} | ${f0(r.drainPerSec)} |${b.cells(r)} ${f1(r.cpuUsPerMsg)} | ${runsCell(r.runs)} |`)
  }
  return out.join('\n')
}

const HEADING = '## Reliable delivery'

/** Replace (or append) the "Reliable delivery" section of RESULTS.md, keeping every other section. */
export function writeResultsSection (file: string, body: string): void {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n'
  const lines = old.split('\n')
  const start = lines.findIndex(l => l.startsWith(HEADING))
  let text: string
  if (start < 0) {
    text = old.replace(/\n*$/, '\n\n') + body.trimEnd() + '\n'
  } else {
    let end = lines.findIndex((l, i) => i > start && l.startsWith('## '))
    if (end < 0) end = lines.length
    text = [...lines.slice(0, start), ...body.trimEnd().split('\n'), '', ...lines.slice(end)].join('\n').replace(/\n+$/, '\n')
  }
  writeFileSync(file, text)
}
