// Edge console: hub link, outbox and inbox, modules and mailboxes, devices and twins, MQTT clients.
import { api, card, DROP_REASONS, events, fmtAge, fmtBytes, fmtMs, fmtTime, h, sparkline } from './console.js'

export function start (app) {
  const render = d => {
    const l = d.link
    const o = d.outbox
    const mods = d.modules?.modules ?? []
    app.replaceChildren(
      h('h1', {}, `Edge ${d.nodeId} `, h('span', { class: 'pill ' + (d.state === 'connected' ? 'connected' : 'disconnected'), id: 'edge-state' }, d.state)),
      h('h2', {}, 'Hub link'),
      h('div', { class: 'cards' },
        card('Hub URL', l.url ?? '–', { small: true }),
        card('Transport', l.transport ?? '–', { small: true }),
        card(d.state === 'connected' ? 'Connected since' : 'Not connected', l.since === undefined ? (l.lastError ?? '–') : fmtTime(l.since), { small: true }),
        card('RTT', fmtMs(l.rttMs), { small: true }),
        card('Traffic in / out', l.bytesReceived === undefined ? '–' : `${fmtBytes(l.bytesReceived)} / ${fmtBytes(l.bytesSent)}`, { small: true })),
      h('div', { class: 'sparks' },
        sparkline('RTT', d.history.rttMs, fmtMs),
        sparkline('Upstream throughput', d.history.outBps, v => fmtBytes(v) + '/s'),
        sparkline('Outbox depth', d.history.queue, v => String(v))),
      h('h2', {}, 'Reliable delivery'),
      h('div', { class: 'cards' },
        card('Outbox (waiting for the hub)', o.count, { alert: o.count > 0 && d.state !== 'connected' }),
        card('Outbox bytes', fmtBytes(o.bytes), { small: true }),
        card('Oldest waiting', fmtAge(o.oldestAgeMs), { small: true }),
        card('In flight (unacked)', o.inflight),
        card('Inbox: received up to seq', d.inbox.receivedSeq),
        card('MQTT clients', d.mqttClients ?? 'broker off')),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel' }, h('h2', {}, 'Modules and mailboxes'), tbl(['module', 'group', 'depth', 'capacity', 'policy', 'dropped'],
          mods.map(m => [m.name, m.group ?? '–', m.depth, m.capacity ?? '–', m.overflow ?? '–', Object.values(m.dropped ?? {}).reduce((a, b) => a + b, 0)]), 'no modules registered')),
        h('div', { class: 'panel' }, h('h2', {}, 'Reconnect history'), tbl(['when', 'event', 'detail'],
          d.reconnects.map(r => [fmtTime(r.at), r.type, r.url ?? r.reason ?? '']), 'no connects or disconnects yet'))),
      h('div', { class: 'panel' }, h('h2', {}, 'Devices and twins'), d.devices.length === 0 ? h('p', { class: 'muted' }, 'no devices on this edge') :
        tbl(['device', 'state', 'revision', 'desired', 'reported', 'pending local changes'], d.devices.map(x => [x.id, x.state ?? 'unknown', x.revision,
          JSON.stringify(x.twin?.desired ?? {}), JSON.stringify(x.twin?.reported ?? {}), JSON.stringify(x.twin?.pendingExpected ?? {})]), '')),
      h('div', { class: 'panel' }, h('h2', {}, 'Dead letters (dropped upstream messages, why)'), tbl(['seq', 'id', 'resource', 'why', 'detail', 'when'],
        d.deadLetters.map(x => [x.seq, x.id, x.key ?? '–', DROP_REASONS[x.code] ?? x.code, x.reason, fmtTime(x.at)]), 'nothing dropped')))
  }
  api('api/edge').then(render, err => app.replaceChildren(h('p', { class: 'err' }, err.message)))
  events('api/events', (name, data) => { if (name === 'edge') render(data) })
}

function tbl (cols, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(c => h('th', {}, c)))), h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(v => h('td', {}, v))))))
}
