/**
 * Markdown tables and SVG charts of the lossy-link benchmark. Medians and
 * min–max over the VALID runs of each cell (runs whose link self-check
 * failed are counted but not used).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { EventRow, LossyReport, ProfileResult, RunResult } from '../lossy.js'
import { EVENT_SCENARIOS, type EventScenario } from './lossy-events.js'
import { ASYM_LINK } from './lossy-profiles.js'
import type { ClientResult, ClientScenario } from '../lossy-client.js'
import type { ReliableResult } from './lossy-reliable.js'
import { lineChart, type Series } from './svg-chart.js'

export interface Stat { median: number, min: number, max: number, n: number }

export function stat (values: Array<number | undefined>): Stat | undefined {
  const v = values.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const mid = Math.floor(v.length / 2)
  const median = v.length % 2 === 1 ? v[mid] as number : ((v[mid - 1] as number) + (v[mid] as number)) / 2
  return { median, min: v[0] as number, max: v[v.length - 1] as number, n: v.length }
}

function fmt (v: number): string {
  if (v >= 100) return String(Math.round(v))
  if (v >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

function cellText (s: Stat | undefined, errors: number): string {
  if (s === undefined) return errors > 0 ? `error ×${errors}` : '–'
  const spread = s.n > 1 ? ` (${fmt(s.min)}–${fmt(s.max)})` : ''
  return `${fmt(s.median)}${spread}${errors > 0 ? ` [${errors} err]` : ''}`
}

/** Counts (reconnects, disconnects): whole numbers stay whole. */
function countText (s: Stat | undefined): string {
  if (s === undefined) return '–'
  const f = (v: number): string => Number.isInteger(v) ? String(v) : v.toFixed(1)
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median)
}

function validRuns (runs: RunResult[] | undefined): RunResult[] {
  return (runs ?? []).filter(r => r.valid)
}

function client (runs: RunResult[], s: ClientScenario, pick: (c: ClientResult) => number | undefined): { stat: Stat | undefined, errors: number } {
  const rs = runs.map(r => r.client.find(c => c.scenario === s))
  return { stat: stat(rs.map(c => c === undefined || c.error !== undefined ? undefined : pick(c))), errors: rs.filter(c => c?.error !== undefined).length }
}

function reliable (runs: RunResult[], pick: (r: ReliableResult) => number | undefined): { stat: Stat | undefined, errors: number } {
  return { stat: stat(runs.map(r => r.reliable.error === undefined ? pick(r.reliable) : undefined)), errors: runs.filter(r => r.reliable.error !== undefined).length }
}

function median (v: number[]): number | undefined {
  return stat(v)?.median
}

function table (head: string[], rows: string[][]): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => i < 2 ? ' --- ' : ' ---: ').join('|')}|`, ...rows.map(r => `| ${r.join(' | ')} |`)]
}

function transportLabel (report: LossyReport, key: string): string {
  const t = report.transports.find(x => x.key === key)
  if (t === undefined) return key
  return t.mode !== undefined ? `${t.label} (${t.mode})` : t.label
}

export function gridTable (report: LossyReport): string[] {
  const head = ['link', 'transport', 'bulk Mbit/s', 'rr p50 ms', 'rr p99 ms', 'high p99 ms under bulk', 'bulk Mbit/s with rr', `${report.options.streams} flows req/s`, 'setup ms', 'reliable delivered', 'reliable p99 ms', 'app rr p50 ms', 'app rr p99 ms', 'valid runs']
  const rows: string[][] = []
  for (const pr of report.profiles) {
    for (const [key, all] of Object.entries(pr.cells)) {
      const runs = validRuns(all)
      const delivered = runs.map(r => r.reliable).filter(r => r.sent !== undefined)
      const dups = delivered.reduce((a, r) => a + (r.duplicates ?? 0), 0)
      rows.push([
        pr.profile.key,
        transportLabel(report, key),
        cellText(client(runs, 'bulk', c => c.goodputMbit).stat, client(runs, 'bulk', c => c.goodputMbit).errors),
        cellText(client(runs, 'rr', c => c.p50Ms).stat, client(runs, 'rr', c => c.p50Ms).errors),
        cellText(client(runs, 'rr', c => c.p99Ms).stat, 0),
        cellText(client(runs, 'hol', c => c.p99Ms).stat, client(runs, 'hol', c => c.p99Ms).errors),
        cellText(client(runs, 'hol', c => c.goodputMbit).stat, 0),
        cellText(client(runs, 'streams', c => c.perSecond).stat, client(runs, 'streams', c => c.perSecond).errors),
        cellText(stat(runs.map(r => median(r.client.find(c => c.scenario === 'setup')?.setupMs ?? []))), client(runs, 'setup', () => 0).errors),
        delivered.length === 0 ? '–' : `${delivered.reduce((a, r) => a + (r.delivered ?? 0), 0)}/${delivered.reduce((a, r) => a + (r.sent ?? 0), 0)}${dups > 0 ? ` (+${dups} dup)` : ''}`,
        cellText(reliable(runs, r => r.p99Ms).stat, reliable(runs, r => r.p99Ms).errors),
        cellText(reliable(runs, r => r.appRr?.p50Ms).stat, 0),
        cellText(reliable(runs, r => r.appRr?.p99Ms).stat, 0),
        `${runs.length}/${all.length}`
      ])
    }
  }
  return table(head, rows)
}

export function outageTable (report: LossyReport): string[] {
  if (report.outages.length === 0) return []
  const head = ['outage', 'system', 'drain after restore s', 'delivered', 'duplicates', 'latency p99 s', 'reconnects', 'errors']
  const rows: string[][] = []
  const keys = [...new Set(report.outages.map(o => `${o.outageS}|${o.transport}`))]
  for (const k of keys) {
    const [s, t] = k.split('|') as [string, string]
    const xs = report.outages.filter(o => String(o.outageS) === s && o.transport === t)
    const ok = xs.filter(x => x.result.error === undefined)
    rows.push([
      `${s} s`,
      transportLabel(report, t),
      cellText(stat(ok.map(x => (x.result.drainMs ?? NaN) / 1000)), 0),
      `${xs.reduce((a, x) => a + (x.result.delivered ?? 0), 0)}/${xs.reduce((a, x) => a + (x.result.sent ?? 0), 0)}`,
      String(xs.reduce((a, x) => a + (x.result.duplicates ?? 0), 0)),
      cellText(stat(ok.map(x => (x.result.p99Ms ?? NaN) / 1000)), 0),
      countText(stat(xs.map(x => x.result.reconnects))),
      xs.filter(x => x.result.error !== undefined).map(x => x.result.error).join('; ').slice(0, 120) || '–'
    ])
  }
  return table(head, rows)
}

/** One chart per RTT: metric vs loss profile, one line per transport. */
function chartsFor (report: LossyReport, outDir: string, file: string, title: string, yTitle: string, logY: boolean,
  pick: (runs: RunResult[]) => Stat | undefined): string[] {
  const written: string[] = []
  const byRtt = new Map<number, ProfileResult[]>()
  for (const pr of report.profiles) byRtt.set(pr.profile.rttMs, [...(byRtt.get(pr.profile.rttMs) ?? []), pr])
  for (const [rtt, prs] of byRtt) {
    const xLabels = prs.map(p => p.profile.lossLabel)
    const keys = [...new Set(prs.flatMap(p => Object.keys(p.cells)))]
    const series: Series[] = keys.map(k => ({
      name: transportLabel(report, k),
      points: prs.map((p, x) => {
        const s = pick(validRuns(p.cells[k]))
        return { x, y: s?.median, min: s?.min, max: s?.max }
      })
    }))
    const shown = series.filter(s => s.points.some(p => p.y !== undefined))
    if (shown.length === 0) continue
    series.splice(0, series.length, ...shown)
    const name = `${file}-rtt${rtt}.svg`
    writeFileSync(join(outDir, name), lineChart({ title: `${title}, RTT ${rtt} ms`, xTitle: 'loss per direction (link profile)', yTitle, xLabels, series, logY }))
    written.push(name)
  }
  return written
}

/** Write the SVG charts and results.md into outDir; returns the Markdown. */
export function writeReport (report: LossyReport, outDir: string): string[] {
  const charts = [
    ...chartsFor(report, outDir, 'rr-p99', 'Request/response p99 latency', 'p99 ms', true, runs => client(runs, 'rr', c => c.p99Ms).stat),
    ...chartsFor(report, outDir, 'goodput', 'Bulk goodput', 'Mbit/s', false, runs => client(runs, 'bulk', c => c.goodputMbit).stat),
    ...chartsFor(report, outDir, 'hol-p99', 'High-priority p99 during a bulk transfer', 'p99 ms', true, runs => client(runs, 'hol', c => c.p99Ms).stat),
    ...chartsFor(report, outDir, 'app-rr-p99', 'Application request/response p99 (edge → cloud app → edge)', 'p99 ms', true, runs => reliable(runs, r => r.appRr?.p99Ms).stat),
    ...chartsFor(report, outDir, 'reliable-p99', 'Reliable cloud→edge delivery p99', 'p99 ms', true, runs => reliable(runs, r => r.p99Ms).stat),
    ...eventCharts(report, outDir)
  ]
  if (report.outages.length > 0) {
    const lengths = [...new Set(report.outages.map(o => o.outageS))].sort((a, b) => a - b)
    const ts = [...new Set(report.outages.map(o => o.transport))]
    const series: Series[] = ts.map(t => ({
      name: transportLabel(report, t),
      points: lengths.map((len, x) => {
        const s = stat(report.outages.filter(o => o.transport === t && o.outageS === len && o.result.error === undefined).map(o => (o.result.drainMs ?? NaN) / 1000))
        return { x, y: s?.median, min: s?.min, max: s?.max }
      })
    }))
    writeFileSync(join(outDir, 'drain.svg'), lineChart({ title: 'Backlog drain time after the link returns', xTitle: 'outage length', yTitle: 'seconds', xLabels: lengths.map(l => `${l} s`), series }))
    charts.push('drain.svg')
  }
  const o = report.options
  const md = [
    `Lossy links — ${report.date}, ${report.machine.cpus} vCPU, kernel ${report.machine.kernel}, node ${report.machine.node}; load average ${report.loadavgStart.map(n => n.toFixed(2)).join(' ')} → ${report.loadavgEnd.map(n => n.toFixed(2)).join(' ')}.`,
    `Backend: ${report.backend.name === 'wire' ? 'userland wire (TUN' : 'tc netem (veth'}, ${Math.round(report.wireRate.pps64 / 1000)}k packets/s of 64 B, lateness p99 ${report.wireRate.lateness.p99Us} µs); tc netem ${report.backend.netem}. TCP congestion control ${o.cc}. Seed ${o.seed}. ` +
      `${o.runs} run(s) × ${o.durationMs / 1000} s per scenario, median (min–max) of valid runs. Self-check: ${report.allChecksPassed ? 'passed' : 'FAILED for some runs'}.`,
    '',
    ...(report.profiles.length > 0 ? [...gridTable(report), ''] : [])
  ]
  const relErrors = new Map<string, Set<string>>()
  for (const pr of report.profiles) {
    for (const [k, runs] of Object.entries(pr.cells)) for (const r of runs) if (r.reliable.error !== undefined) relErrors.set(k, (relErrors.get(k) ?? new Set()).add(r.reliable.error.replace(/^skipped: the first run failed to connect \((.*)\)$/, '$1')))
  }
  for (const [k, errs] of relErrors) md.push(`Reliable scenario errors, ${transportLabel(report, k)}: ${[...errs].map(e => e.slice(0, 300)).join(' / ')}`, '')
  const ot = outageTable(report)
  if (ot.length > 0) {
    md.push(`Outage on ${o.outageProfile}: reliable cloud→edge messages at ${o.reliableRate / 4}/s, link down (all packets dropped) for the given time, drain = restore → last message at the edge.`, '', ...ot, '')
  }
  const et = eventTables(report)
  if (et.length > 0) md.push(...et)
  if (report.peerConfig !== undefined) {
    md.push('Peer configurations, as run:', '')
    for (const [k, text] of Object.entries(report.peerConfig)) md.push(`${k}:`, '', '```', text.trimEnd(), '```', '')
  }
  md.push(...charts.map(c => `![${c}](${c})`))
  writeFileSync(join(outDir, 'results.md'), md.join('\n') + '\n')
  return md
}

const EVENT_TITLES: Record<EventScenario, string> = {
  rebind: 'Address change mid-session (NAT rebinding: source port, then source IP)',
  flap: 'Flapping link (down 1 s / up 4 s)',
  asym: `Asymmetric link (${ASYM_LINK.title}), bulk upload beside the requests`
}

function eventRows (report: LossyReport, scenario: EventScenario): Map<string, EventRow[]> {
  const by = new Map<string, EventRow[]>()
  for (const e of report.events.filter(x => x.scenario === scenario)) by.set(e.system, [...(by.get(e.system) ?? []), e])
  return by
}

/** One table per event scenario: requests, gap, reconnects, delivery (and upload for asym). */
export function eventTables (report: LossyReport): string[] {
  const out: string[] = []
  for (const scenario of EVENT_SCENARIOS) {
    const by = eventRows(report, scenario)
    if (by.size === 0) continue
    const ms = report.options.eventMs[scenario]
    out.push(`${EVENT_TITLES[scenario]}: ${ms / 1000} s of load, requests 256 B at 10/s (open loop, 5 s deadline each), reliable cloud→edge messages at 20/s.`, '')
    const head = ['system', 'requests failed', 'request p50 ms', 'request p99 ms', 'longest gap s', 'reconnects', 'disconnects', 'delivered', 'duplicates', 'delivery p99 ms', ...(scenario === 'asym' ? ['upload Mbit/s'] : []), 'runs']
    const rows: string[][] = []
    for (const [system, xs] of by) {
      const ok = xs.filter(x => x.result.error === undefined)
      const rq = ok.map(x => x.result.requests)
      const dl = ok.map(x => x.result.delivery)
      rows.push([
        transportLabel(report, system),
        `${rq.reduce((a, r) => a + (r?.failed ?? 0), 0)}/${rq.reduce((a, r) => a + (r?.sent ?? 0), 0)}`,
        cellText(stat(rq.map(r => r?.p50Ms)), 0),
        cellText(stat(rq.map(r => r?.p99Ms)), 0),
        cellText(stat(rq.map(r => r === undefined ? undefined : r.longestGapMs / 1000)), 0),
        countText(stat(ok.map(x => x.result.reconnects))),
        countText(stat(ok.map(x => x.result.disconnects))),
        `${dl.reduce((a, d) => a + (d?.delivered ?? 0), 0)}/${dl.reduce((a, d) => a + (d?.sent ?? 0), 0)}`,
        String(dl.reduce((a, d) => a + (d?.duplicates ?? 0), 0)),
        cellText(stat(dl.map(d => d?.p99Ms)), 0),
        ...(scenario === 'asym' ? [cellText(stat(ok.map(x => x.result.upload?.mbit)), 0)] : []),
        `${ok.length}/${xs.length}${xs.some(x => x.result.error !== undefined) ? ` (${xs.find(x => x.result.error !== undefined)?.result.error?.slice(0, 80)})` : ''}`
      ])
    }
    out.push(...table(head, rows), '')
  }
  return out
}

/** Per event metric: x = scenario, one series per system. */
function eventCharts (report: LossyReport, outDir: string): string[] {
  const scenarios = EVENT_SCENARIOS.filter(s => report.events.some(e => e.scenario === s))
  if (scenarios.length === 0) return []
  const systems = [...new Set(report.events.map(e => e.system))]
  const charts: Array<{ file: string, title: string, y: string, logY: boolean, pick: (e: EventRow) => number | undefined }> = [
    { file: 'events-gap.svg', title: 'Longest time without an answered request', y: 'seconds', logY: false, pick: e => e.result.requests === undefined ? undefined : e.result.requests.longestGapMs / 1000 },
    { file: 'events-failed.svg', title: 'Requests failed (5 s deadline)', y: '% of sent', logY: false, pick: e => e.result.requests === undefined || e.result.requests.sent === 0 ? undefined : 100 * e.result.requests.failed / e.result.requests.sent },
    { file: 'events-rr-p99.svg', title: 'Answered requests p99', y: 'p99 ms', logY: true, pick: e => e.result.requests?.p99Ms },
    { file: 'events-delivery-p99.svg', title: 'Reliable cloud→edge delivery p99 during the events', y: 'p99 ms', logY: true, pick: e => e.result.delivery?.p99Ms }
  ]
  const written: string[] = []
  for (const c of charts) {
    const series: Series[] = systems.map(sys => ({
      name: transportLabel(report, sys),
      points: scenarios.map((sc, x) => {
        const st = stat(report.events.filter(e => e.system === sys && e.scenario === sc && e.result.error === undefined).map(c.pick))
        return { x, y: st?.median, min: st?.min, max: st?.max }
      })
    }))
    writeFileSync(join(outDir, c.file), lineChart({ title: c.title, xTitle: 'event scenario', yTitle: c.y, xLabels: scenarios, series, logY: c.logY }))
    written.push(c.file)
  }
  return written
}
