/**
 * The hub's fleet API under /api/ (issue 15), served through the admin
 * server's `api` hook, so the admin server's guard (Host/Origin, principal)
 * has run: reads for any principal, actions (dead-letter purge/requeue) for
 * the admin role only (the admin server refuses non-GET to others).
 *
 *   GET  /api/info                          version, role, summary, warnings
 *   GET  /api/nodes?offset=&limit=&q=&status=&transport=&label=k=v&minQueue=&sort=id|queue|rtt
 *   GET  /api/nodes/<id>                    session, transport, traffic, RTT history, outbox head, dead letters, reconnects, devices
 *   GET  /api/dead-letters?node=&limit=     newest first
 *   GET  /api/dead-letters/<node>/<seq>     one dead letter
 *   POST /api/dead-letters/<node>/<seq>/requeue   put it back in the node's outbox (audited)
 *   POST /api/dead-letters/purge  {node?, seqs?}  remove dead letters (audited)
 *   GET  /api/events[?node=]                server-sent events: `summary` every period, `node` events
 *                                           as they happen, `detail` of ?node every period
 *
 * Speed at 10,000 nodes (bench/admin-nodes.ts): one pass over the node
 * snapshots, queue depths read only for nodes with something pending (one
 * scan of the store's peer counters), the id order kept between requests
 * while the node set is unchanged (node-order.ts), only the nodes with a
 * queue sorted for sort=queue, and only the page's rows (≤ 250) built.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from './logger.js'
import { principalOf } from './http-guard.js'
import { ApiError, intParam, send, sendError } from './api-util.js'
import { deadLetterRoutes, type DeadLetterSource } from './dead-letter-api.js'
import { FleetHistory, type NodeSample } from './fleet-history.js'
import { SseHub } from './sse.js'
import { NodeOrder } from './node-order.js'

export interface FleetNodeInfo {
  nodeId: string
  status: 'connected' | 'disconnected'
  labels: Record<string, string>
  transport: string | undefined
  remoteAddress: string | undefined
  connectedAt: number | undefined
  disconnectedAt: number | undefined
  lastSeen: number | undefined
  rttMs: number | undefined
  sessionId: string | undefined
}

/** What the fleet API reads from the hub (src/hub/fleet-source.ts builds it). */
export interface FleetSource extends DeadLetterSource {
  nodes (): FleetNodeInfo[]
  node (nodeId: string): FleetNodeInfo | undefined
  /** Nodes with a non-empty outbox, with their depth (one scan of the store's counters). */
  queued (): Map<string, { count: number, bytes: number }>
  outbox (nodeId: string): { count: number, bytes: number, firstSeq: number, lastSeq: number, inflight: number, acked: number }
  outboxHead (nodeId: string, limit: number): Array<{ seq: number, id: string, key?: string | undefined, op?: string | undefined, size: number, enqueuedAt: number, expiresAt?: number | undefined, rejections: number }>
  traffic (nodeId: string): { bytesSent: number, bytesReceived: number, messagesSent: number, messagesReceived: number } | undefined
  devices?: (nodeId: string) => unknown[]
  /** Subscribe to node connect/disconnect events; returns the unsubscribe function. */
  onNodeEvent (fn: (e: { type: string, nodeId: string, reason?: string, transport?: string }) => void): () => void
  warnings (): Promise<string[]>
  info (): Record<string, unknown>
}

export interface FleetApiOptions {
  source: FleetSource
  logger: Logger
  now?: () => number
  /** History sampling period. @default 5000 */
  sampleMs?: number
  /** SSE summary/detail period. @default 2000 */
  eventsMs?: number
}

export interface FleetApi {
  routes: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>
  close (): void
}

/** Largest page: 250 rows stay under 100 KB with typical labels (bench/admin-nodes.ts). */
export const MAX_PAGE = 250

export function createFleetApi (o: FleetApiOptions): FleetApi {
  const src = o.source
  const now = o.now ?? Date.now
  const log = o.logger.child({ component: 'admin-api' })
  const history = new FleetHistory(32)
  const reconnects = new Map<string, Array<{ at: number, type: string, reason?: string, transport?: string }>>()
  const sse = new SseHub()
  const order = new NodeOrder()

  const sample = (): void => {
    const t = now()
    const q = src.queued()
    for (const n of src.nodes()) {
      if (n.status !== 'connected' && !q.has(n.nodeId)) continue
      const tr = src.traffic(n.nodeId)
      const s: NodeSample = { t, rttMs: n.rttMs ?? NaN, bytesIn: tr?.bytesReceived ?? NaN, bytesOut: tr?.bytesSent ?? NaN, queue: q.get(n.nodeId)?.count ?? 0 }
      history.add(n.nodeId, s)
    }
  }
  const sampler = setInterval(sample, o.sampleMs ?? 5000)
  sampler.unref()
  setImmediate(sample).unref()

  const unsubscribe = src.onNodeEvent(e => {
    let list = reconnects.get(e.nodeId)
    if (list === undefined) { list = []; reconnects.set(e.nodeId, list) }
    list.push({ at: now(), type: e.type, ...(e.reason === undefined ? {} : { reason: e.reason }), ...(e.transport === undefined ? {} : { transport: e.transport }) })
    if (list.length > 20) list.shift()
    sse.broadcast('node', e)
  })
  const ticker = setInterval(() => {
    if (sse.size === 0) return
    sse.broadcast('summary', summary())
    for (const node of sse.topics()) {
      try { sse.publish(node, 'detail', detail(node)) } catch { /* node unknown: nothing to send */ }
    }
  }, o.eventsMs ?? 2000)
  ticker.unref()

  function summary (): Record<string, unknown> {
    const nodes = src.nodes()
    const q = src.queued()
    let connected = 0
    let queued = 0
    let queuedBytes = 0
    for (const n of nodes) if (n.status === 'connected') connected++
    let waitingForOffline = 0
    for (const [id, v] of q) {
      queued += v.count
      queuedBytes += v.bytes
      const n = src.node(id)
      if (n === undefined || n.status !== 'connected') waitingForOffline += v.count
    }
    const dl = src.deadLetters(undefined, 1000)
    const byReason: Record<string, number> = {}
    for (const d of dl) byReason[d.code] = (byReason[d.code] ?? 0) + 1
    return { nodes: nodes.length, connected, disconnected: nodes.length - connected, queuedMessages: queued, queuedBytes, queuedForDisconnected: waitingForOffline, nodesWithQueue: q.size, recentDeadLetters: dl.length, deadLettersByCode: byReason }
  }

  function list (query: URLSearchParams): Record<string, unknown> {
    const limit = intParam(query, 'limit', 100, 1, MAX_PAGE)
    const offset = intParam(query, 'offset', 0, 0, 10_000_000)
    const minQueue = intParam(query, 'minQueue', 0, 0, Number.MAX_SAFE_INTEGER)
    const status = query.get('status') ?? ''
    const transport = query.get('transport') ?? ''
    const search = (query.get('q') ?? '').toLowerCase()
    const sort = query.get('sort') ?? 'id'
    if (!['id', 'queue', 'rtt'].includes(sort)) throw new ApiError(400, 'EF_BAD_REQUEST', 'sort must be id, queue or rtt')
    const labels: Array<[string, string]> = []
    for (const l of query.getAll('label')) {
      const i = l.indexOf('=')
      if (i <= 0) throw new ApiError(400, 'EF_BAD_REQUEST', `label selector ${JSON.stringify(l)} must be key=value`)
      labels.push([l.slice(0, i), l.slice(i + 1)])
    }
    const q = src.queued()
    const all = src.nodes()
    const ids = new Array<string>(all.length)
    let queuedSeen = 0
    for (let i = 0; i < all.length; i++) {
      const id = (all[i] as FleetNodeInfo).nodeId
      ids[i] = id
      if (q.has(id)) queuedSeen++
    }
    // Nodes that never connected since the hub started but have messages waiting are listed too.
    if (queuedSeen < q.size) {
      const known = new Set(ids)
      for (const id of q.keys()) if (!known.has(id)) { all.push(neverSeen(id)); ids.push(id) }
    }
    const match = (n: FleetNodeInfo): boolean => {
      if (status !== '' && n.status !== status) return false
      if (transport !== '' && n.transport !== transport) return false
      if (search !== '' && !n.nodeId.toLowerCase().includes(search)) return false
      if (labels.length > 0 && !labels.every(([k, v]) => n.labels[k] === v)) return false
      return minQueue === 0 || (q.get(n.nodeId)?.count ?? 0) >= minQueue
    }
    // Only the page's rows are built; the rest is counted.
    const page: FleetNodeInfo[] = []
    let total = 0
    const take = (n: FleetNodeInfo): void => {
      if (total >= offset && page.length < limit) page.push(n)
      total++
    }
    if (sort === 'rtt') {
      const rows = all.filter(match)
      rows.sort((a, b) => (b.rttMs ?? -1) - (a.rttMs ?? -1))
      for (const n of rows) take(n)
    } else {
      const perm = order.byId(ids)
      if (sort === 'queue') {
        // Deepest queue first, ties and empty queues by id: only the nodes with a queue need sorting.
        const queued: Array<{ n: FleetNodeInfo, queue: number, rank: number }> = []
        for (let r = 0; r < perm.length; r++) {
          const n = all[perm[r] as number] as FleetNodeInfo
          const depth = q.get(n.nodeId)?.count ?? 0
          if (depth > 0 && match(n)) queued.push({ n, queue: depth, rank: r })
        }
        queued.sort((a, b) => b.queue - a.queue || a.rank - b.rank)
        for (const x of queued) take(x.n)
        if (minQueue === 0) {
          for (const i of perm) { const n = all[i] as FleetNodeInfo; if ((q.get(n.nodeId)?.count ?? 0) === 0 && match(n)) take(n) }
        }
      } else {
        for (const i of perm) { const n = all[i] as FleetNodeInfo; if (match(n)) take(n) }
      }
    }
    const items = page.map(n => {
      const depth = q.get(n.nodeId)
      return {
        nodeId: n.nodeId, status: n.status, transport: n.transport, labels: n.labels, rttMs: n.rttMs === undefined ? undefined : Math.round(n.rttMs * 100) / 100,
        lastSeen: n.lastSeen, connectedAt: n.connectedAt, disconnectedAt: n.disconnectedAt, queue: depth?.count ?? 0, queueBytes: depth?.bytes ?? 0
      }
    })
    return { total, offset, limit, items }
  }

  function detail (nodeId: string): Record<string, unknown> {
    const n = src.node(nodeId) ?? (src.queued().has(nodeId) || src.deadLetters(nodeId, 1).length > 0 ? neverSeen(nodeId) : undefined)
    if (n === undefined) throw new ApiError(404, 'EF_NOT_FOUND', `node ${nodeId} is not known to this hub`)
    const outbox = src.outbox(nodeId)
    const head = src.outboxHead(nodeId, 20)
    return {
      node: n,
      traffic: src.traffic(nodeId),
      outbox: { ...outbox, oldestAgeMs: head[0] === undefined ? 0 : Math.max(0, now() - head[0].enqueuedAt), head },
      deadLetters: src.deadLetters(nodeId, 50),
      history: history.get(nodeId),
      reconnects: [...(reconnects.get(nodeId) ?? [])].reverse(),
      devices: src.devices?.(nodeId) ?? []
    }
  }

  const routes = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> => {
    if (!path.startsWith('/api/')) return false
    const query = new URL(req.url ?? '/', 'http://x').searchParams
    const get = req.method === 'GET' || req.method === 'HEAD'
    try {
      const parts = path.slice(5).split('/').map(s => decodeURIComponent(s))
      if (get && path === '/api/info') return send(res, 200, { ...src.info(), summary: summary(), warnings: await src.warnings(), principal: principalOf(req) })
      if (get && path === '/api/nodes') return send(res, 200, list(query))
      if (get && parts[0] === 'nodes' && parts.length === 2) return send(res, 200, detail(parts[1] as string))
      if (await deadLetterRoutes(req, res, path, parts, query, src, log)) return true
      if (get && path === '/api/events') {
        const node = query.get('node') ?? undefined
        if (node !== undefined && node !== '' && src.node(node) === undefined && !src.queued().has(node)) throw new ApiError(404, 'EF_NOT_FOUND', `node ${node} is not known to this hub`)
        const p = principalOf(req)
        sse.open(req, res, p?.anonymous === false ? p.id : 'anonymous', node === '' ? undefined : node)
        sse.send(res, 'summary', summary())
        if (node !== undefined && node !== '') sse.send(res, 'detail', detail(node))
        return true
      }
      throw new ApiError(get || req.method === 'POST' ? 404 : 405, get || req.method === 'POST' ? 'EF_NOT_FOUND' : 'EF_METHOD_NOT_ALLOWED', `no route ${req.method ?? ''} ${path}`)
    } catch (err) {
      return sendError(res, err)
    }
  }

  return {
    routes,
    close () {
      clearInterval(sampler)
      clearInterval(ticker)
      unsubscribe()
      sse.closeAll()
    }
  }
}

/** A node with queued messages or dead letters that has not connected since the hub started. */
function neverSeen (nodeId: string): FleetNodeInfo {
  return { nodeId, status: 'disconnected', labels: {}, transport: undefined, remoteAddress: undefined, connectedAt: undefined, disconnectedAt: undefined, lastSeen: undefined, rttMs: undefined, sessionId: undefined }
}
