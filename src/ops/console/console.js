// edgefabric console: shared helpers and the role switch. No framework, no
// build step, no CDN; every value reaches the page through textContent (never
// innerHTML), so data from nodes and devices cannot inject markup.
//
// Auth: the admin token, kept in sessionStorage for this tab only. It comes
// from "Admin token…" or once from the URL fragment (#token=…, never sent to
// the server), which is then removed from the address bar. Without a token
// the console is read-only, and works only from loopback.

const TOKEN_KEY = 'edgefabric-admin-token'

export function token () { return sessionStorage.getItem(TOKEN_KEY) ?? '' }

function takeTokenFromHash () {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (m === null) return
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]))
  const rest = location.hash.replace(/(?:^#|&)token=[^&]+/, '')
  history.replaceState(null, '', location.pathname + location.search + (rest === '' ? '#/' : (rest.startsWith('#') ? rest : '#' + rest)))
}

function headers (extra = {}) {
  const t = token()
  return t === '' ? extra : { ...extra, authorization: `Bearer ${t}` }
}

/** GET/POST JSON under the admin server; throws Error with the API's {code, message}. */
export async function api (path, init = {}) {
  const res = await fetch('../' + path.replace(/^\//, ''), { ...init, headers: headers(init.headers ?? {}) })
  const text = await res.text()
  const body = text === '' ? undefined : JSON.parse(text)
  if (!res.ok) throw new Error(`${body?.code ?? res.status}: ${body?.message ?? res.statusText}`)
  return body
}

/**
 * Server-sent events over fetch (EventSource cannot send the Authorization
 * header). Calls onEvent(name, data); reconnects after a pause; returns stop().
 */
export function events (path, onEvent) {
  let stopped = false
  let ctl
  const live = document.getElementById('live')
  const run = async () => {
    while (!stopped) {
      ctl = new AbortController()
      try {
        const res = await fetch('../' + path.replace(/^\//, ''), { headers: headers({ accept: 'text/event-stream' }), signal: ctl.signal })
        if (!res.ok || res.body === null) throw new Error(String(res.status))
        live.className = 'live on'
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
        let buf = ''
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buf += value
          let i
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i)
            buf = buf.slice(i + 2)
            let name = 'message'
            let data = ''
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7)
              else if (line.startsWith('data: ')) data += line.slice(6)
            }
            if (data !== '') { try { onEvent(name, JSON.parse(data)) } catch (err) { console.error(err) } }
          }
        }
      } catch { /* network error or aborted */ }
      live.className = 'live off'
      if (!stopped) await new Promise(resolve => setTimeout(resolve, 2000))
    }
  }
  void run()
  return () => { stopped = true; ctl?.abort() }
}

/** h('td', {class: 'num'}, 'text', child…): an element with attributes and text/element children. */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

export function fmtBytes (n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–'
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  return `${(n / 1024 ** 3).toFixed(2)} GiB`
}

export function fmtAge (ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '–'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
}

export function fmtTime (ms) {
  if (ms === undefined || ms === null) return '–'
  return new Date(ms).toLocaleString()
}

export function fmtMs (v) { return v === undefined || v === null ? '–' : `${Number(v).toFixed(2)} ms` }

/** Dead-letter codes as the operator reads them. */
export const DROP_REASONS = {
  EF_TTL_EXPIRED: 'TTL expired',
  EF_QUOTA_DROPPED: 'quota full (drop-oldest)',
  EF_SUPERSEDED: 'superseded by a newer version',
  EF_REJECTED_BY_PEER: 'rejected by the node'
}

export function card (k, v, opts = {}) {
  return h('div', { class: 'card' + (opts.alert ? ' alert' : ''), title: opts.title }, h('div', { class: 'k' }, k), h('div', { class: 'v' + (opts.small ? ' small' : '') }, v))
}

/** A sparkline of `values` (nulls are gaps) in plain SVG. */
export function sparkline (title, values, fmt) {
  const ns = 'http://www.w3.org/2000/svg'
  const svg = document.createElementNS(ns, 'svg')
  svg.setAttribute('viewBox', '0 0 100 30')
  svg.setAttribute('preserveAspectRatio', 'none')
  const vs = values.filter(v => v !== null && v !== undefined && !Number.isNaN(v))
  const max = Math.max(1e-9, ...vs)
  const n = values.length
  const pts = []
  values.forEach((v, i) => {
    if (v === null || v === undefined || Number.isNaN(v)) return
    pts.push(`${n <= 1 ? 100 : (i / (n - 1)) * 100},${29 - (v / max) * 27}`)
  })
  if (pts.length > 0) {
    const area = document.createElementNS(ns, 'polygon')
    area.setAttribute('class', 'area')
    const first = pts[0].split(',')[0]
    const last = pts[pts.length - 1].split(',')[0]
    area.setAttribute('points', `${first},30 ${pts.join(' ')} ${last},30`)
    svg.append(area)
    const line = document.createElementNS(ns, 'polyline')
    line.setAttribute('points', pts.join(' '))
    line.setAttribute('vector-effect', 'non-scaling-stroke')
    svg.append(line)
  }
  const lastV = vs.length === 0 ? undefined : vs[vs.length - 1]
  return h('div', { class: 'card spark' }, h('div', { class: 'k' }, h('span', {}, title), h('span', {}, lastV === undefined ? '–' : fmt(lastV))), svg)
}

export function showWarnings (list) {
  const el = document.getElementById('warnings')
  el.replaceChildren(...(list ?? []).map(w => h('div', { class: 'warn' }, '⚠ ', w)))
}

export function isAdmin (info) { return info?.principal?.role === 'admin' }

async function main () {
  takeTokenFromHash()
  document.getElementById('token-btn').addEventListener('click', () => {
    const t = prompt('Admin token (kept for this tab only; empty to clear):', '')
    if (t === null) return
    if (t === '') sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, t.trim())
    location.reload()
  })
  const role = document.documentElement.dataset.role
  const app = document.getElementById('app')
  let info
  try {
    info = await api('api/info')
  } catch (err) {
    app.replaceChildren(h('p', { class: 'err' }, `Cannot read the admin API: ${err.message}. From another machine you need the admin or read token.`))
    return
  }
  document.getElementById('role').textContent = role
  document.getElementById('version').textContent = `v${info.version} · Node ${info.nodeVersion}`
  document.getElementById('who').textContent = info.principal?.anonymous ? 'read-only (no token)' : `${info.principal?.role ?? '?'} token`
  showWarnings(info.warnings)
  const mod = await import(role === 'edge' ? './console-edge.js' : './console-hub.js')
  mod.start(app, info)
}

void main()
