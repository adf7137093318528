// Edge console: hub link, outbox and inbox, modules and mailboxes, devices and twins, MQTT clients,
// dead letters of the upstream outbox (requeue and purge with the admin token).
import { api, card, DROP_REASONS, events, fmtAge, fmtBytes, fmtMs, fmtTime, h, isAdmin, sparkline } from './console.js'

export function start (app, info) {
  const admin = isAdmin(info)
  const render = d => {
    const mq = d.mqttClients
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
        card('MQTT clients', mq === undefined || mq === null ? 'broker off' : mq.total)),
      h('div', { class: 'grid2' },
        h('div', { class: 'panel', id: 'modules' }, h('h2', {}, 'Modules and mailboxes'), tbl(['module', 'group', 'depth', 'capacity', 'policy', 'dropped'],
          mods.map(m => [m.name, m.group ?? '–', m.depth, m.capacity ?? '–', m.overflow ?? '–', Object.values(m.dropped ?? {}).reduce((a, b) => a + b, 0)]), 'no modules registered')),
        h('div', { class: 'panel' }, h('h2', {}, 'Reconnect history'), tbl(['when', 'event', 'detail'],
          d.reconnects.map(r => [fmtTime(r.at), r.type, r.url ?? r.reason ?? '']), 'no connects or disconnects yet'))),
      h('div', { class: 'panel' }, h('h2', {}, 'Devices and twins'), d.devices.length === 0 ? h('p', { class: 'muted' }, 'no devices on this edge') :
        tbl(['device', 'state', 'revision', 'desired', 'reported', 'pending local changes'], d.devices.map(x => [x.id, x.state ?? 'unknown', x.revision,
          JSON.stringify(x.twin?.desired ?? {}), JSON.stringify(x.twin?.reported ?? {}), JSON.stringify(x.twin?.pendingExpected ?? {})]), '')),
      mq === undefined || mq === null ? '' : h('div', { class: 'panel', id: 'mqtt-clients' },
        h('h2', {}, `MQTT clients of the embedded broker (${mq.total})`),
        mq.items.length === 0 ? h('p', { class: 'muted' }, 'no MQTT client connected') :
          h('table', {}, h('thead', {}, h('tr', {}, ...['client id', 'principal', 'from', 'listener', 'connected since', 'session', 'subscriptions', 'messages in / out'].map(c => h('th', {}, c)))),
            h('tbody', {}, ...mq.items.map(c => h('tr', { 'data-client': c.clientId },
              h('td', {}, c.clientId), h('td', {}, `${c.username || '–'} (${c.kind})`), h('td', {}, c.remoteAddress ?? '–'), h('td', {}, c.listener),
              h('td', {}, fmtTime(c.connectedAt)), h('td', {}, c.persistent ? 'persistent' : 'clean'), h('td', { class: 'num' }, c.subscriptions),
              h('td', { class: 'num' }, `${c.messagesIn} / ${c.messagesOut}`))))),
        mq.total > mq.items.length ? h('p', { class: 'muted' }, `first ${mq.items.length} of ${mq.total}; all of them: GET /api/mqtt-clients?offset=&limit=`) : ''),
      h('div', { class: 'panel', id: 'dead-letters' }, h('h2', {}, 'Dead letters (dropped upstream messages, why)'),
        d.deadLetters.length === 0 ? h('p', { class: 'muted' }, 'nothing dropped') : h('div', {},
          h('table', {}, h('thead', {}, h('tr', {}, ...['seq', 'id', 'resource', 'why', 'detail', 'when', ''].map(c => h('th', {}, c)))),
            h('tbody', {}, ...d.deadLetters.map(x => h('tr', { 'data-seq': String(x.seq) },
              h('td', {}, x.seq), h('td', {}, x.id), h('td', {}, x.key ?? '–'), h('td', {}, h('span', { class: 'pill reason' }, DROP_REASONS[x.code] ?? x.code)),
              h('td', { class: 'muted' }, x.reason), h('td', {}, fmtTime(x.at)),
              h('td', {}, x.requeueable ? h('button', { type: 'button', class: 'requeue', disabled: !admin, title: admin ? 'send it to the hub again' : 'needs the admin token', onclick: () => act(`api/dead-letters/cloud/${x.seq}/requeue`, {}) }, 'Requeue') : ''))))),
          h('button', { type: 'button', id: 'purge', disabled: !admin, title: admin ? 'remove every dead letter of this edge' : 'needs the admin token', onclick: () => { if (confirm('Remove all dead letters of this edge?')) void act('api/dead-letters/purge', { node: 'cloud' }) } }, 'Purge all'))))
  }
  // After an action the next SSE event (≤ 2 s) would show it; a fresh read shows it now.
  const act = async (path, body) => {
    try {
      await api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      render(await api('api/edge'))
    } catch (err) {
      alert(err.message)
    }
  }
  api('api/edge').then(render, err => app.replaceChildren(h('p', { class: 'err' }, err.message)))
  events('api/events', (name, data) => { if (name === 'edge') render(data) })
}

function tbl (cols, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(c => h('th', {}, c)))), h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(v => h('td', {}, v))))))
}
