/**
 * Tables of bench/reliable.ts and its section in bench/RESULTS.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

export interface LiveResult {
  system: 'edgefabric' | 'mosquitto'
  transport: string
  durability: string
  n: number
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
  system: 'edgefabric' | 'mosquitto'
  transport: string
  durability: string
  n: number
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

export function liveTable (rows: LiveResult[]): string {
  const base = rows.find(r => r.system === 'mosquitto')?.msgsPerSec
  const out = [
    '| system | transport | durability | delivered msg/s | vs mosquitto | acked msg/s (producer) | p50 ms | p99 ms | paced: rate | paced p50 ms | paced p99 ms | dup |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    out.push(`| ${r.system} | ${r.transport} | ${r.durability} | ${f0(r.msgsPerSec)} | ${r.system === 'mosquitto' ? '1.00×' : ratio(r.msgsPerSec, base)} | ${f0(r.ackedPerSec)} | ${f1(r.p50)} | ${f1(r.p99)} | ${f0(r.pacedRate)}/s × ${f0(r.pacedN)} | ${f1(r.pacedP50)} | ${f1(r.pacedP99)} | ${r.duplicates} |`)
  }
  return out.join('\n')
}

export function drainTable (rows: DrainResult[]): string {
  const base = rows.find(r => r.system === 'mosquitto')?.drainPerSec
  const out = [
    '| system | transport | durability | queued | queue msg/s | delivered | start → first ms | session up → first ms | drain msg/s | vs mosquitto |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    out.push(`| ${r.system} | ${r.transport} | ${r.durability} | ${f0(r.n)} | ${f0(r.queuedPerSec)} | ${f0(r.delivered)} | ${f0(r.startToFirstMs)} | ${f0(r.sessionToFirstMs)} | ${f0(r.drainPerSec)} | ${r.system === 'mosquitto' ? '1.00×' : ratio(r.drainPerSec, base)} |`)
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
