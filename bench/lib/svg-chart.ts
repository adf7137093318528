/**
 * Hand-written SVG line charts for benchmark reports (no chart dependency):
 * categorical x axis, one line per series, optional min–max whiskers, linear
 * or log10 y axis, legend. Output is a standalone SVG document that GitHub
 * renders inline in Markdown.
 */

export interface Point {
  /** Index into ChartSpec.xLabels. */
  x: number
  /** Median (the line); NaN or undefined = no point. */
  y: number | undefined
  min?: number
  max?: number
}

export interface Series { name: string, points: Point[] }

export interface ChartSpec {
  title: string
  xTitle: string
  yTitle: string
  xLabels: string[]
  series: Series[]
  /** @default false */
  logY?: boolean
  /** @default 640 */
  width?: number
  /** @default 360 */
  height?: number
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b']

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function fmt (v: number): string {
  if (v === 0) return '0'
  const a = Math.abs(v)
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k')
  if (a >= 10) return String(Math.round(v))
  if (a >= 1) return String(Math.round(v * 10) / 10)
  return String(Number(v.toPrecision(2)))
}

/** "Nice" linear ticks covering [lo, hi]. */
function linearTicks (lo: number, hi: number): number[] {
  const span = hi - lo || 1
  const raw = span / 5
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 5, 10].find(m => m * mag >= raw) ?? 10) * mag
  const ticks: number[] = []
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

export function lineChart (spec: ChartSpec): string {
  const W = spec.width ?? 640
  const H = spec.height ?? 360
  const m = { l: 64, r: 150, t: 36, b: 52 }
  const pw = W - m.l - m.r
  const ph = H - m.t - m.b
  const values = spec.series.flatMap(s => s.points.flatMap(p => [p.y, p.min, p.max])).filter((v): v is number => v !== undefined && Number.isFinite(v))
  const logY = spec.logY === true
  const positive = values.filter(v => v > 0)
  let lo: number, hi: number, ticks: number[]
  if (logY) {
    lo = 10 ** Math.floor(Math.log10(Math.min(...(positive.length > 0 ? positive : [1]))))
    hi = 10 ** Math.ceil(Math.log10(Math.max(...(positive.length > 0 ? positive : [10]))))
    if (hi <= lo) hi = lo * 10
    ticks = []
    for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v)
  } else {
    lo = 0
    hi = Math.max(...values, 0) * 1.05 || 1
    ticks = linearTicks(lo, hi)
    hi = Math.max(hi, ticks[ticks.length - 1] ?? hi)
  }
  const yOf = (v: number): number => {
    const f = logY ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo)
    return m.t + ph - f * ph
  }
  const n = Math.max(1, spec.xLabels.length)
  const xOf = (i: number): number => m.l + (n === 1 ? pw / 2 : (i / (n - 1)) * pw)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.l + pw / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(spec.title)}</text>`
  ]
  for (const t of ticks) {
    const y = yOf(t).toFixed(1)
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${m.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`)
  }
  out.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#333"/>`,
    `<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`)
  spec.xLabels.forEach((label, i) => {
    out.push(`<text x="${xOf(i).toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle">${esc(label)}</text>`)
  })
  out.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(spec.xTitle)}</text>`,
    `<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yTitle)}${logY ? ' (log)' : ''}</text>`)
  spec.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length] as string
    const pts = s.points.filter(p => p.y !== undefined && Number.isFinite(p.y) && (!logY || (p.y > 0)))
    // Small horizontal offset per series so whiskers at the same x stay readable.
    const dx = (si - (spec.series.length - 1) / 2) * 4
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(p => `${(xOf(p.x) + dx).toFixed(1)},${yOf(p.y as number).toFixed(1)}`).join(' ')}"/>`)
    }
    for (const p of pts) {
      const x = (xOf(p.x) + dx).toFixed(1)
      if (p.min !== undefined && p.max !== undefined && Number.isFinite(p.min) && Number.isFinite(p.max)) {
        out.push(`<line x1="${x}" x2="${x}" y1="${yOf(p.min).toFixed(1)}" y2="${yOf(p.max).toFixed(1)}" stroke="${color}" stroke-width="1"/>`)
      }
      out.push(`<circle cx="${x}" cy="${yOf(p.y as number).toFixed(1)}" r="3" fill="${color}"><title>${esc(s.name)}: ${fmt(p.y as number)}</title></circle>`)
    }
    const ly = m.t + 10 + si * 18
    out.push(`<line x1="${m.l + pw + 12}" x2="${m.l + pw + 32}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${m.l + pw + 38}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
