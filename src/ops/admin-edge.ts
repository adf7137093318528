/**
 * The edge's console API under /api/ (issue 15), behind the admin server's
 * guard like the hub's (admin-fleet.ts):
 *
 *   GET /api/info     version, role, warnings
 *   GET /api/edge     hub link (URL, transport, since, RTT, history), outbox
 *                     and inbox, modules and mailboxes, devices and twins,
 *                     MQTT clients, dead letters, reconnect history
 *   GET /api/mqtt-clients?offset=&limit=&q=   the embedded broker's connected
 *                     clients, oldest connection first, paged (≤ 250)
 *   GET /api/events   server-sent `edge` events with the same body every period
 *   dead letters of the upstream outbox: list, show, requeue, purge
 *                     (dead-letter-api.ts, peer `cloud`; actions audited)
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { principalOf } from './http-guard.js'
import { ApiError, intParam, send, sendError } from './api-util.js'
import { deadLetterRoutes, type DeadLetterSource } from './dead-letter-api.js'
import { nullLogger, type Logger } from './logger.js'
import { FleetHistory } from './fleet-history.js'
import { SseHub } from './sse.js'

/** One MQTT client of the embedded broker as the console lists it (src/device/edge/broker-clients.ts). */
export interface MqttClientRow {
  clientId: string
  username: string
  kind: string
  remoteAddress: string | undefined
  listener: string
  connectedAt: number
  persistent: boolean
  subscriptions: number
  messagesIn: number
  messagesOut: number
}

/** Largest page of MQTT clients. */
export const MAX_CLIENT_PAGE = 250
/** Clients carried in /api/edge and its SSE events (the full list is paged by /api/mqtt-clients). */
const CLIENTS_IN_VIEW = 50

export interface EdgeSource extends DeadLetterSource {
  nodeId: string
  state (): string
  link (): { url: string | undefined, transport: string | undefined, since: number | undefined, rttMs: number | undefined, lastError: string | undefined, bytesSent?: number, bytesReceived?: number }
  outbox (): { count: number, bytes: number, firstSeq: number, lastSeq: number, inflight: number, acked: number, oldestAt: number | undefined }
  inbox (): { receivedSeq: number }
  modules (): unknown
  devices (): unknown[]
  /** Undefined: no embedded broker (devices off, or external mode). */
  mqttClients (offset: number, limit: number, q: string): { total: number, items: MqttClientRow[] } | undefined
  onLinkEvent (fn: (e: { type: string, url?: string, reason?: string }) => void): () => void
  warnings (): Promise<string[]>
  info (): Record<string, unknown>
}

export function createEdgeApi (src: EdgeSource, o: { now?: () => number, sampleMs?: number, eventsMs?: number, logger?: Logger } = {}): { routes: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>, close (): void } {
  const now = o.now ?? Date.now
  const log = (o.logger ?? nullLogger).child({ component: 'admin-api' })
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
      mqttClients: src.mqttClients(0, CLIENTS_IN_VIEW, ''),
      deadLetters: src.deadLetters('cloud', 50),
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
      const query = new URL(req.url ?? '/', 'http://x').searchParams
      const get = req.method === 'GET' || req.method === 'HEAD'
      try {
        const parts = path.slice(5).split('/').map(s => decodeURIComponent(s))
        if (await deadLetterRoutes(req, res, path, parts, query, src, log)) return true
        if (!get) throw new ApiError(405, 'EF_METHOD_NOT_ALLOWED', `no route ${req.method ?? ''} ${path}: the edge's only actions are on dead letters`)
        if (path === '/api/info') return send(res, 200, { ...src.info(), warnings: await src.warnings(), principal: principalOf(req) })
        if (path === '/api/edge') return send(res, 200, await view())
        if (path === '/api/mqtt-clients') {
          const page = src.mqttClients(intParam(query, 'offset', 0, 0, 10_000_000), intParam(query, 'limit', 100, 1, MAX_CLIENT_PAGE), (query.get('q') ?? '').slice(0, 200))
          if (page === undefined) throw new ApiError(404, 'EF_NOT_FOUND', 'this edge runs no embedded MQTT broker')
          return send(res, 200, page)
        }
        if (path === '/api/events') {
          const p = principalOf(req)
          sse.open(req, res, p?.anonymous === false ? p.id : 'anonymous', undefined)
          if (!res.writableEnded) sse.send(res, 'edge', await view())
          return true
        }
        throw new ApiError(404, 'EF_NOT_FOUND', `no route ${path}`)
      } catch (err) {
        return sendError(res, err)
      }
    },
    close () {
      clearInterval(sampler)
      clearInterval(ticker)
      unsubscribe()
      sse.closeAll()
    }
  }
}
