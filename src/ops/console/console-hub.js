// Hub console: fleet overview + node table (#/), node page (#/node/<id>).
import { api, card, DROP_REASONS, events, fmtAge, fmtBytes, fmtMs, fmtTime, h, isAdmin, showWarnings, sparkline } from './console.js'

let stopEvents = () => {}
let info

export function start (app, i) {
  info = i
  const route = () => {
    stopEvents()
    const m = /^#\/node\/(.+)$/.exec(location.hash)
    if (m !== null) nodePage(app, decodeURIComponent(m[1]))
    else fleetPage(app)
  }
  window.addEventListener('hashchange', route)
  route()
}

function summaryCards (s) {
  const reasons = Object.entries(s.deadLettersByCode ?? {})
  return h('div', { class: 'cards', id: 'summary' },
    card('Nodes', s.nodes),
    card('Connected', s.connected),
    card('Disconnected', s.disconnected, { alert: s.disconnected > 0 }),
    card('Messages queued (all nodes)', s.queuedMessages, { title: fmtBytes(s.queuedBytes) }),
    card('Waiting for disconnected nodes', s.queuedForDisconnected, { alert: s.queuedForDisconnected > 0, title: 'reliable messages in the outbox of nodes that are not connected' }),
    card('Dropped (recent dead letters)', s.recentDeadLetters, { alert: s.recentDeadLetters > 0 }),
    card('Why dropped', reasons.length === 0 ? 'nothing dropped' : reasons.map(([c, n]) => `${DROP_REASONS[c] ?? c}: ${n}`).join(' · '), { small: true })
  )
}

function fleetPage (app) {
  const state = { q: '', status: '', transport: '', label: '', minQueue: '', sort: 'id', offset: 0, limit: 50 }
  const summary = h('div', {}, summaryCards(info.summary))
  const tbody = h('tbody', {})
  const count = h('span', { class: 'muted' })
  const prev = h('button', { type: 'button', onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load() } }, '‹ Prev')
  const next = h('button', { type: 'button', onclick: () => { state.offset += state.limit; load() } }, 'Next ›')
  const input = (key, attrs) => h('input', { ...attrs, value: state[key], oninput: e => { state[key] = e.target.value; state.offset = 0; debounce() } })
  const select = (key, options) => h('select', { onchange: e => { state[key] = e.target.value; state.offset = 0; load() } }, ...options.map(([v, t]) => h('option', { value: v }, t)))
  const filters = h('div', { class: 'filters' },
    input('q', { placeholder: 'search node id', id: 'search', size: 18 }),
    select('status', [['', 'any status'], ['connected', 'connected'], ['disconnected', 'disconnected']]),
    select('transport', [['', 'any transport'], ['quic', 'quic'], ['wss', 'wss'], ['ws', 'ws'], ['webtransport', 'webtransport'], ['memory', 'memory']]),
    input('label', { placeholder: 'label key=value', size: 16 }),
    input('minQueue', { placeholder: 'queue ≥ N', size: 9, type: 'number', min: 0 }),
    select('sort', [['id', 'sort: id'], ['queue', 'sort: queue depth'], ['rtt', 'sort: RTT']]))
  app.replaceChildren(
    h('h1', {}, 'Fleet'),
    summary,
    h('div', { class: 'panel' }, filters,
      h('table', { id: 'nodes' }, h('thead', {}, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'status'), h('th', {}, 'transport'), h('th', {}, 'labels'),
        h('th', { class: 'num' }, 'queued'), h('th', { class: 'num' }, 'queued bytes'), h('th', { class: 'num' }, 'RTT'), h('th', {}, 'last seen / since'))), tbody),
      h('div', { class: 'pager' }, prev, next, count)))
  let timer
  const debounce = () => { clearTimeout(timer); timer = setTimeout(load, 250) }
  let loading = false
  async function load () {
    if (loading) return
    loading = true
    try {
      const p = new URLSearchParams({ offset: state.offset, limit: state.limit, sort: state.sort })
      if (state.q !== '') p.set('q', state.q)
      if (state.status !== '') p.set('status', state.status)
      if (state.transport !== '') p.set('transport', state.transport)
      if (state.label.includes('=')) p.set('label', state.label)
      if (state.minQueue !== '') p.set('minQueue', state.minQueue)
      const r = await api('api/nodes?' + p)
      tbody.replaceChildren(...r.items.map(n => h('tr', { class: 'row', 'data-node': n.nodeId, onclick: () => { location.hash = '#/node/' + encodeURIComponent(n.nodeId) } },
        h('td', {}, h('a', { href: '#/node/' + encodeURIComponent(n.nodeId) }, n.nodeId)),
        h('td', {}, h('span', { class: 'pill ' + n.status }, n.status)),
        h('td', {}, n.transport ?? '–'),
        h('td', {}, ...Object.entries(n.labels ?? {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))),
        h('td', { class: 'num queue' }, n.queue),
        h('td', { class: 'num' }, fmtBytes(n.queueBytes)),
        h('td', { class: 'num' }, fmtMs(n.rttMs)),
        h('td', {}, n.status === 'connected' ? `since ${fmtTime(n.connectedAt)}` : `offline since ${fmtTime(n.disconnectedAt)}`))))
      count.textContent = r.total === 0 ? 'no nodes match' : `${r.offset + 1}–${r.offset + r.items.length} of ${r.total}`
      prev.disabled = r.offset === 0
      next.disabled = r.offset + r.items.length >= r.total
    } catch (err) {
      count.textContent = err.message
    } finally {
      loading = false
    }
  }
  void load()
  const refresh = setInterval(load, 5000)
  const stop = events('api/events', (name, data) => {
    if (name === 'summary') summary.replaceChildren(summaryCards(data))
    if (name === 'node') debounce()
  })
  stopEvents = () => { stop(); clearInterval(refresh) }
}

function nodePage (app, nodeId) {
  app.replaceChildren(h('p', { class: 'muted' }, `Loading ${nodeId}…`))
  const render = d => {
    const n = d.node
    const o = d.outbox
    const admin = isAdmin(info)
    app.replaceChildren(
      h('p', {}, h('a', { href: '#/' }, '← Fleet')),
      h('h1', {}, nodeId, ' ', h('span', { class: 'pill ' + n.status, id: 'node-status' }, n.status)),
      h('div', { class: 'cards' },
        card('Transport', n.transport ?? '–', { small: true }),
        card('Remote address', n.remoteAddress ?? '–', { small: true }),
        card(n.status === 'connected' ? 'Connected since' : 'Disconnected since', fmtTime(n.status === 'connected' ? n.connectedAt : n.disconnectedAt), { small: true }),
        card('RTT', fmtMs(n.rttMs), { small: true }),
        card('Queued for this node', o.count, { alert: o.count > 0 && n.status !== 'connected' }),
        card('Queued bytes', fmtBytes(o.bytes), { small: true }),
        card('Oldest waiting', fmtAge(o.oldestAgeMs), { small: true }),
        card('In flight (unacked)', o.inflight),
        card('Acked up to seq', o.acked),
        card('Traffic in / out', d.traffic === undefined ? '–' : `${fmtBytes(d.traffic.bytesReceived)} / ${fmtBytes(d.traffic.bytesSent)}`, { small: true }),
        card('Labels', Object.entries(n.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ') || '–', { small: true })),
      h('h2', {}, 'Last ', String(d.history.t.length), ' samples'),
      h('div', { class: 'sparks' },
        sparkline('RTT', d.history.rttMs, fmtMs),
        sparkline('Inbound throughput', d.history.inBps, v => fmtBytes(v) + '/s'),
        sparkline('Outbound throughput', d.history.outBps, v => fmtBytes(v) + '/s'),
        sparkline('Queue depth', d.history.queue, v => String(v))),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel' }, h('h2', {}, 'Outbox head (next to deliver)'), table(['seq', 'id', 'resource', 'op', 'size', 'waiting', 'expires', 'rejections'],
          o.head.map(r => [r.seq, r.id, r.key ?? '–', r.op ?? '–', fmtBytes(r.size), fmtAge(Date.now() - r.enqueuedAt), r.expiresAt === undefined ? 'never' : fmtTime(r.expiresAt), r.rejections]), 'nothing waiting')),
        h('div', { class: 'panel' }, h('h2', {}, 'Reconnect history'), table(['when', 'event', 'detail'],
          d.reconnects.map(r => [fmtTime(r.at), r.type, r.reason ?? r.transport ?? '']), 'no connects or disconnects seen since the hub started'))),
      h('div', { class: 'panel', id: 'dead-letters' }, h('h2', {}, 'Dead letters (dropped messages, why)'),
        d.deadLetters.length === 0
          ? h('p', { class: 'muted' }, 'nothing dropped for this node')
          : h('table', {}, h('thead', {}, h('tr', {}, ...['seq', 'id', 'resource', 'why', 'detail', 'when', 'size', ''].map(c => h('th', {}, c)))),
            h('tbody', {}, ...d.deadLetters.map(x => h('tr', {},
              h('td', {}, x.seq), h('td', {}, x.id), h('td', {}, x.key ?? '–'),
              h('td', {}, h('span', { class: 'pill reason' }, DROP_REASONS[x.code] ?? x.code)), h('td', { class: 'muted' }, x.reason),
              h('td', {}, fmtTime(x.at)), h('td', { class: 'num' }, fmtBytes(x.size)),
              h('td', {}, x.requeueable ? h('button', { type: 'button', disabled: !admin, title: admin ? 'put it back in the outbox' : 'needs the admin token', onclick: () => requeue(nodeId, x.seq) }, 'Requeue') : '')))))),
      h('div', { class: 'panel', id: 'devices' }, h('h2', {}, 'Devices and twins'),
        d.devices.length === 0
          ? h('p', { class: 'muted' }, 'no devices bound to this node')
          : h('table', { class: 'twin' }, h('thead', {}, h('tr', {}, ...['device', 'state', 'property', 'desired', 'reported', 'delta', 'last sync'].map(c => h('th', {}, c)))),
            h('tbody', {}, ...d.devices.flatMap(dev => twinRows(dev))))))
  }
  let last
  api('api/nodes/' + encodeURIComponent(nodeId)).then(d => { last = d; render(d) }, err => app.replaceChildren(h('p', { class: 'err' }, err.message)))
  stopEvents = events('api/events?node=' + encodeURIComponent(nodeId), (name, data) => {
    if (name === 'detail') { last = data; render(data) }
    if (name === 'summary') showWarnings(info.warnings)
  })
  void last
}

function twinRows (dev) {
  const props = [...new Set([...Object.keys(dev.desired ?? {}), ...Object.keys(dev.reported ?? {})])].sort()
  if (props.length === 0) props.push('')
  const synced = dev.syncedRevision === dev.revision ? `in sync (rev ${dev.revision})` : `edge at rev ${dev.syncedRevision} of ${dev.revision}${dev.resyncPending ? ', resync pending' : ''}`
  return props.map((p, i) => {
    const want = dev.desired?.[p]
    const have = dev.reported?.[p]
    const differs = want !== undefined && JSON.stringify(want) !== JSON.stringify(have)
    return h('tr', { 'data-device': dev.id, 'data-property': p },
      h('td', {}, i === 0 ? dev.id : ''), h('td', {}, i === 0 ? h('span', { class: 'pill ' + (dev.state ?? '') }, dev.state ?? 'unknown') : ''),
      h('td', {}, p), h('td', { class: 'desired' }, want === undefined ? '–' : JSON.stringify(want)), h('td', { class: 'reported' }, have === undefined ? '–' : JSON.stringify(have)),
      h('td', { class: differs ? 'delta' : 'muted' }, differs ? `${JSON.stringify(have ?? null)} → ${JSON.stringify(want)}` : '–'),
      h('td', { class: 'muted' }, i === 0 ? `${synced}; seen ${fmtTime(dev.lastSeen)}` : ''))
  })
}

async function requeue (nodeId, seq) {
  try {
    await api(`api/dead-letters/${encodeURIComponent(nodeId)}/${seq}/requeue`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  } catch (err) {
    alert(err.message)
  }
}

function table (cols, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(c => h('th', {}, c)))), h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(v => h('td', {}, v))))))
}
