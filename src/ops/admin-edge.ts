/**
 * The edge's console API under /api/ (issue 15), behind the admin server's
 * guard like the hub's (admin-fleet.ts):
 *
 *   GET /api/info     version, role, warnings
 *   GET /api/edge     hub link (URL, transport, since, RTT, history), outbox
 *                     and inbox, modules and mailboxes, devices and twins,
 *                     MQTT clients, dead letters, reconnect history
 *   GET /api/events   server-sent `edge` events with the same body every period
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { principalOf } from './http-guard.js'
import { send, type DeadLetterView } from './admin-fleet.js'
import { FleetHistory } from './fleet-history.js'
import { SseHub } from './sse.js'

export interface EdgeSource {
  nodeId: string
  state (): string
  link (): { url: string | undefined, transport: string | undefined, since: number | undefined, rttMs: number | undefined, lastError: string | undefined, bytesSent?: number, bytesReceived?: number }
  outbox (): { count: number, bytes: number, firstSeq: number, lastSeq: number, inflight: number, acked: number, oldestAt: number | undefined }
  inbox (): { receivedSeq: number }
  modules (): unknown
  devices (): unknown[]
  mqttClients (): Promise<number | undefined>
  deadLetters (limit: number): DeadLetterView[]
  onLinkEvent (fn: (e: { type: string, url?: string, reason?: string }) => void): () => void
  warnings (): Promise<string[]>
  info (): Record<string, unknown>
}

export function createEdgeApi (src: EdgeSource, o: { now?: () => number, sampleMs?: number, eventsMs?: number } = {}): { routes: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>, close (): void } {
  const now = o.now ?? Date.now
  const history = new FleetHistory(32)
  const reconnects: Array<{ at: number, type: string, url?: string, reason?: string }> = []
  const sse = new SseHub()
  const sample = (): void => {
    const l = src.link()
    history.add('hub', { t: now(), rttMs: l.rttMs ?? NaN, bytesIn: l.bytesReceived ?? NaN, bytesOut: l.bytesSent ?? NaN, queue: src.outbox().count })
  }
  const sampler = setInterval(sample, o.sampleMs ?? 5000)
  sampler.unref()
  setImmediate(sample).unref()
  const unsubscribe = src.onLinkEvent(e => {
    reconnects.push({ at: now(), ...e })
    if (reconnects.length > 20) reconnects.shift()
  })
  const view = async (): Promise<Record<string, unknown>> => {
    const out = src.outbox()
    return {
      nodeId: src.nodeId,
      state: src.state(),
      link: src.link(),
      history: history.get('hub'),
      outbox: { ...out, oldestAgeMs: out.oldestAt === undefined ? 0 : Math.max(0, now() - out.oldestAt) },
      inbox: src.inbox(),
      modules: src.modules(),
      devices: src.devices(),
      mqttClients: await src.mqttClients(),
      deadLetters: src.deadLetters(50),
      reconnects: [...reconnects].reverse()
    }
  }
  const ticker = setInterval(() => {
    if (sse.size === 0) return
    view().then(v => sse.broadcast('edge', v), () => {})
  }, o.eventsMs ?? 2000)
  ticker.unref()

  return {
    async routes (req, res, path) {
      if (!path.startsWith('/api/')) return false
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { code: 'EF_METHOD_NOT_ALLOWED', message: 'the edge API is read-only' })
      if (path === '/api/info') return send(res, 200, { ...src.info(), warnings: await src.warnings(), principal: principalOf(req) })
      if (path === '/api/edge') return send(res, 200, await view())
      if (path === '/api/dead-letters') return send(res, 200, { items: src.deadLetters(1000) })
      if (path === '/api/events') {
        const p = principalOf(req)
        sse.open(req, res, p?.anonymous === false ? p.id : 'anonymous', undefined)
        if (!res.writableEnded) sse.send(res, 'edge', await view())
        return true
      }
      return send(res, 404, { code: 'EF_NOT_FOUND', message: `no route ${path}` })
    },
    close () {
      clearInterval(sampler)
      clearInterval(ticker)
      unsubscribe()
      sse.closeAll()
    }
  }
}
