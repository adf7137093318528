/**
 * Summaries and Markdown tables for the transport loopback benchmark.
 * Medians over runs; min–max shows the spread; ratios are against the `ws`
 * row of the same invocation (same machine state, interleaved rounds).
 */

export type ScenarioKind = 'bulk' | 'rr'

export interface ScenarioDef {
  key: string
  title: string
  kind: ScenarioKind
  connections: number
  /** rr only: outstanding requests per connection. */
  workers: number
}

export interface ScenarioResult {
  /** One value per successful run: MB/s (bulk) or round trips/s (rr). */
  samples: number[]
  /** rr only: per-run latency percentiles, µs. */
  p50Us: number[]
  p99Us: number[]
  /** Per run: CPU time of the client process / the server process as % of wall time (100 % = one core). */
  cpuClientPct: number[]
  cpuServerPct: number[]
  /** Per run: CPU µs of both processes together per round trip (rr) or per MB (bulk). */
  cpuUsPerOp: number[]
  errors: string[]
}

export interface TransportResult {
  key: string
  label: string
  /** Transport-specific mode, e.g. WebTransport `http2` (fallback) or `http3`. */
  mode: string | undefined
  inProcess: boolean
  /** TransportUnavailableError reason, or why setup failed: no numbers then. */
  unavailable: string | undefined
  scenarios: Record<string, ScenarioResult>
}

export interface Summary {
  median: number
  min: number
  max: number
  runs: number
  errors: number
  ratioVsWs: number | undefined
  p50Us: number | undefined
  p99Us: number | undefined
  cpuClientPct: number | undefined
  cpuServerPct: number | undefined
  cpuUsPerOp: number | undefined
}

export function median (xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

export function summarize (r: ScenarioResult | undefined, ws: ScenarioResult | undefined): Summary | undefined {
  if (r === undefined || r.samples.length === 0) return undefined
  const m = median(r.samples)
  const wsMedian = ws === undefined || ws.samples.length === 0 ? undefined : median(ws.samples)
  return {
    median: m,
    min: Math.min(...r.samples),
    max: Math.max(...r.samples),
    runs: r.samples.length,
    errors: r.errors.length,
    ratioVsWs: wsMedian === undefined || wsMedian === 0 ? undefined : m / wsMedian,
    p50Us: r.p50Us.length > 0 ? median(r.p50Us) : undefined,
    p99Us: r.p99Us.length > 0 ? median(r.p99Us) : undefined,
    cpuClientPct: r.cpuClientPct.length > 0 ? median(r.cpuClientPct) : undefined,
    cpuServerPct: r.cpuServerPct.length > 0 ? median(r.cpuServerPct) : undefined,
    cpuUsPerOp: r.cpuUsPerOp.length > 0 ? median(r.cpuUsPerOp) : undefined
  }
}

function num (n: number, kind: ScenarioKind): string {
  if (!Number.isFinite(n)) return '–'
  return kind === 'bulk'
    ? n.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 })
    : Math.round(n).toLocaleString('en-US')
}

const us = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US')
const ratio = (r: number | undefined): string => r === undefined ? '–' : `${r.toFixed(2)}×`
const pct = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : String(Math.round(n))
const cpu = (s: Summary, inProcess: boolean): string => inProcess ? `${pct(s.cpuClientPct)} (both)` : `${pct(s.cpuClientPct)}/${pct(s.cpuServerPct)}`
const cellText = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ')

function table (head: string[], rows: string[][], rightFrom = 1): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => i >= rightFrom ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => i >= rightFrom ? ` ${'-'.repeat(w - 1)}: ` : ` ${'-'.repeat(w)} `).join('|') + '|'
  return [line(head), sep, ...rows.map(line)]
}

export function transportName (t: TransportResult): string {
  const tags: string[] = []
  if (t.mode !== undefined) tags.push(t.mode)
  if (t.inProcess) tags.push('in-process')
  return tags.length > 0 ? `${t.label} (${tags.join(', ')})` : t.label
}

/** One row per transport, one column per scenario: median and ratio to ws. */
export function summaryTable (results: TransportResult[], scenarios: ScenarioDef[]): string[] {
  const ws = results.find(r => r.key === 'ws')
  const head = ['transport', ...scenarios.map(s => `${s.title} ${s.kind === 'bulk' ? 'MB/s' : 'req/s'}`)]
  const rows = results.map(t => {
    const why = t.unavailable
    if (why !== undefined) {
      // Shortened here; the full reason is in the log line above the table and in the JSON.
      const short = why.length > 140 ? `${why.slice(0, 139)}…` : why
      return [transportName(t), ...scenarios.map((_, i) => i === 0 ? `unavailable: ${cellText(short)}` : '–')]
    }
    return [transportName(t), ...scenarios.map(s => {
      const sum = summarize(t.scenarios[s.key], ws?.scenarios[s.key])
      if (sum === undefined) return `error: ${cellText(t.scenarios[s.key]?.errors[0] ?? 'no result').slice(0, 80)}`
      return `${num(sum.median, s.kind)} (${ratio(sum.ratioVsWs)})${sum.errors > 0 ? ` [${sum.errors} failed]` : ''}`
    })]
  })
  return table(head, rows)
}

/** Long form: spread and latency percentiles for every scenario and transport. */
export function detailTable (results: TransportResult[], scenarios: ScenarioDef[]): string[] {
  const ws = results.find(r => r.key === 'ws')
  const head = ['scenario', 'transport', 'median', 'min–max', 'runs', '× ws', 'p50 µs', 'p99 µs', 'CPU % client/server', 'CPU µs per rt or MB']
  const rows: string[][] = []
  for (const s of scenarios) {
    for (const t of results) {
      if (t.unavailable !== undefined) continue
      const sum = summarize(t.scenarios[s.key], ws?.scenarios[s.key])
      const unit = s.kind === 'bulk' ? 'MB/s' : 'req/s'
      if (sum === undefined) {
        rows.push([s.title, transportName(t), 'error', cellText(t.scenarios[s.key]?.errors[0] ?? 'no result').slice(0, 80), '0', '–', '–', '–', '–', '–'])
        continue
      }
      rows.push([
        s.title,
        transportName(t),
        `${num(sum.median, s.kind)} ${unit}`,
        `${num(sum.min, s.kind)}–${num(sum.max, s.kind)}`,
        sum.errors > 0 ? `${sum.runs} (+${sum.errors} failed)` : String(sum.runs),
        ratio(sum.ratioVsWs),
        us(sum.p50Us),
        us(sum.p99Us),
        cpu(sum, t.inProcess),
        us(sum.cpuUsPerOp)
      ])
    }
  }
  return table(head, rows, 2)
}
