/**
 * The admin server's HTML status page: one self-contained document (no
 * external assets, so it works on an air-gapped edge) that renders the JSON
 * from `/status` as tables and refreshes it every 2 s.
 *
 * `renderStatusHtml` is the ONE renderer: the server calls it for the first
 * paint (the page is useful without JavaScript) and the page embeds its source
 * (`Function.prototype.toString`) to re-render fetched JSON. That is why it
 * must stay self-contained: no imports, no references to module scope.
 * Everything it emits goes through its own `esc`, so a `<script>` in a node
 * label shows as text on both paths.
 */
import { createHash } from 'node:crypto'

/**
 * Render any JSON value as HTML tables:
 * - top-level scalars -> a "summary" key/value table;
 * - arrays of objects (nodes, queues) -> one table each, columns = union of keys;
 * - objects (rates) -> key/value tables; deeper values shown as compact JSON.
 * Tables are capped at 500 rows so a 10,000-node hub still renders quickly.
 */
export function renderStatusHtml (status: unknown): string {
  const MAX_ROWS = 500
  const esc = (v: unknown): string => String(v)
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;')
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return ''
    if (typeof v === 'number') return esc(Number.isInteger(v) ? v : Number(v.toFixed(3)))
    if (typeof v === 'string' || typeof v === 'boolean') return esc(v)
    let s: string
    try { s = JSON.stringify(v) ?? '' } catch { s = '[unserializable]' }
    return esc(s.length > 200 ? s.slice(0, 200) + '…' : s)
  }
  const kv = (title: string, o: Record<string, unknown>): string => {
    let h = '<section><h2>' + esc(title) + '</h2><table class="kv"><tbody>'
    for (const k of Object.keys(o)) h += '<tr><th>' + esc(k) + '</th><td>' + cell(o[k]) + '</td></tr>'
    return h + '</tbody></table></section>'
  }
  const grid = (title: string, rows: Array<Record<string, unknown>>): string => {
    const shown = rows.slice(0, MAX_ROWS)
    const cols: string[] = []
    for (const r of shown) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k)
    let h = '<section><h2>' + esc(title) + ' <small>(' + esc(rows.length) + ')</small></h2><table><thead><tr>'
    for (const c of cols) h += '<th>' + esc(c) + '</th>'
    h += '</tr></thead><tbody>'
    for (const r of shown) {
      h += '<tr>'
      for (const c of cols) h += '<td>' + cell(r[c]) + '</td>'
      h += '</tr>'
    }
    h += '</tbody></table>'
    if (rows.length > shown.length) h += '<p>… ' + esc(rows.length - shown.length) + ' more not shown</p>'
    return h + '</section>'
  }
  if (!isObj(status)) return '<section><pre>' + cell(status) + '</pre></section>'
  const summary: Record<string, unknown> = {}
  let out = ''
  for (const k of Object.keys(status)) {
    const v = status[k]
    if (Array.isArray(v)) {
      if (v.length === 0 || v.every(isObj)) out += grid(k, v as Array<Record<string, unknown>>)
      else out += kv(k, { values: v })
    } else if (isObj(v)) {
      out += kv(k, v)
    } else {
      summary[k] = v
    }
  }
  return (Object.keys(summary).length > 0 ? kv('summary', summary) : '') + out
}

export function escapeHtml (v: unknown): string {
  return String(v).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;')
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;margin-bottom:.5em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
thead th{background:#f0f0f0}table.kv th{background:#f6f6f6;font-weight:600}
#state{font-size:.85em;color:#666}#state.err{color:#b00}`

const SCRIPT = `
const render = ${renderStatusHtml.toString()};
const view = document.getElementById('status');
const state = document.getElementById('state');
async function tick () {
  try {
    const res = await fetch('status', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    view.innerHTML = render(await res.json());
    state.textContent = 'updated ' + new Date().toLocaleTimeString();
    state.className = '';
  } catch (err) {
    state.textContent = 'update failed: ' + (err && err.message ? err.message : String(err));
    state.className = 'err';
  }
}
setInterval(tick, 2000);
`

// The script is inlined in a <script> element: a literal "</script" in it
// would end the element early. Checked once at load rather than hoped for.
if (/<\/script/i.test(SCRIPT)) throw new Error('status page script must not contain "</script"')

const sha256 = (s: string): string => createHash('sha256').update(s).digest('base64')

/** CSP allowing exactly this page's inline script and style, and fetches to its own origin. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(SCRIPT)}'`,
  `style-src 'sha256-${sha256(STYLE)}'`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** The full page; `initial` is the status for the first paint, or an Error if it could not be read. */
export function statusPage (title: string, initial: unknown): string {
  const body = initial instanceof Error
    ? '<p class="err">status unavailable: ' + escapeHtml(initial.message) + '</p>'
    : renderStatusHtml(initial)
  return '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width,initial-scale=1">' +
    '<title>' + escapeHtml(title) + '</title><style>' + STYLE + '</style></head><body>' +
    '<h1>' + escapeHtml(title) + '</h1><div id="state">refreshing every 2 s</div>' +
    '<div id="status">' + body + '</div>' +
    '<script>' + SCRIPT + '</script></body></html>'
}
