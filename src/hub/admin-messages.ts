/**
 * Hub admin routes for operators and for the message CLI (issue 12):
 *
 *   GET    /v1/admin/nodes                  bound nodes + live state   (node list)
 *   DELETE /v1/admin/nodes/{node}[?purge=1] remove a node              (node remove)
 *   GET    /v1/admin/tokens                 token records              (token list)
 *   POST   /v1/admin/tokens                 {node?, ttlSeconds?, reusable?} → {token, jti, …}
 *   DELETE /v1/admin/tokens/{jti}           revoke                     (token revoke)
 *   POST   /v1/messages/send                {node, resource, operation?, group?, content?, reliable?, resourceVersion?}
 *   POST   /v1/messages/request             {node, resource, operation?, content?, timeoutMs?}
 *   POST   /v1/messages/broadcast           {labels, resource, operation?, content?}
 *   GET    /v1/messages/sub[?node=&resource=prefix]  NDJSON of what edges send up
 *
 * Registered through the admin server's `routes` hook (src/ops/admin-server.ts
 * is not changed). Access: with an admin token, every request needs
 * `Authorization: Bearer <token>`; without one, only loopback peers are
 * served — these routes create tokens and move messages.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { newMessage } from '../codec/envelope.js'
import { EdgeFabricError } from '../errors.js'
import { isLoopbackName } from '../config/address.js'
import { ApiError, readJsonBody, send } from '../ops/api-util.js'
import type { Hub } from './hub.js'
import type { UpstreamMessage } from './types.js'

export interface AdminMessageOptions {
  /** Bearer token required on every request when set. */
  token?: string
  /** Largest request body. @default 1 MiB */
  maxBodyBytes?: number
  /** Concurrent `sub` streams. @default 64 */
  maxSubscribers?: number
  /** A `sub` stream whose unsent output exceeds this is ended ("slow consumer"). @default 4 MiB */
  maxSubscriberBacklog?: number
}

/** A JSON object body of at most `max` bytes. */
async function readJson (req: IncomingMessage, max: number): Promise<Record<string, unknown>> {
  const v = await readJsonBody(req, max)
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ApiError(400, 'EF_BAD_REQUEST', 'the body must be a JSON object')
  return v as Record<string, unknown>
}

function str (b: Record<string, unknown>, k: string, dflt?: string): string {
  const v = b[k] ?? dflt
  if (typeof v !== 'string' || v === '') throw new ApiError(400, 'EF_BAD_REQUEST', `"${k}" must be a non-empty string`)
  return v
}

function sha (s: string): Buffer { return createHash('sha256').update(s).digest() }

/** Content as JSON: bytes anywhere become `{base64}` (msgpack content may hold Uint8Array). */
export function jsonSafe (v: unknown, depth = 0): unknown {
  if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString('base64') }
  if (depth > 64 || typeof v !== 'object' || v === null) return v
  if (Array.isArray(v)) return v.map(x => jsonSafe(x, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) out[k] = jsonSafe(x, depth + 1)
  return out
}

/** What `sub` prints for one upstream message. */
export function upstreamLine (m: UpstreamMessage): Record<string, unknown> {
  const e = m.envelope
  const content = jsonSafe(e.content)
  return { node: m.nodeId, id: e.header.id, time: new Date(e.header.timestamp).toISOString(), source: e.router.source, group: e.router.group, operation: e.router.operation, resource: e.router.resource, content }
}

export function adminMessageRoutes (hub: Hub, options: AdminMessageOptions = {}): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean> {
  const tokenHash = options.token === undefined ? undefined : sha(options.token)
  const maxBody = options.maxBodyBytes ?? 1024 * 1024
  const maxSubs = options.maxSubscribers ?? 64
  const maxBacklog = options.maxSubscriberBacklog ?? 4 * 1024 * 1024
  let subscribers = 0

  const authorize = (req: IncomingMessage): void => {
    if (tokenHash !== undefined) {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')
      if (m === null || !timingSafeEqual(sha(m[1] as string), tokenHash)) throw new ApiError(401, 'EF_UNAUTHORIZED', 'a valid "Authorization: Bearer <admin token>" header is required')
      return
    }
    if (!isLoopbackName(req.socket.remoteAddress ?? '')) throw new ApiError(403, 'EF_FORBIDDEN', 'without an admin token these routes are served to loopback peers only')
  }

  const subscribe = (req: IncomingMessage, res: ServerResponse, q: URLSearchParams): void => {
    if (subscribers >= maxSubs) throw new ApiError(503, 'EF_TOO_MANY_SUBSCRIBERS', `at most ${maxSubs} sub streams at once`)
    const node = q.get('node') ?? undefined
    const prefix = q.get('resource') ?? ''
    subscribers++
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    res.flushHeaders()
    const onMessage = (m: UpstreamMessage): void => {
      if ((node !== undefined && m.nodeId !== node) || !m.envelope.router.resource.startsWith(prefix)) return
      if (res.writableLength > maxBacklog) {
        // Bounded: a subscriber that does not read is cut, with the reason as its last line.
        stop()
        res.end(JSON.stringify({ error: { code: 'EF_SLOW_CONSUMER', message: `more than ${maxBacklog} bytes unread; stream ended` } }) + '\n')
        return
      }
      res.write(JSON.stringify(upstreamLine(m)) + '\n')
    }
    const keepAlive = setInterval(() => res.write('\n'), 15_000)
    keepAlive.unref()
    let stopped = false
    const stop = (): void => {
      if (stopped) return
      stopped = true
      subscribers--
      clearInterval(keepAlive)
      hub.off('message', onMessage)
    }
    hub.on('message', onMessage)
    res.on('close', stop)
    req.on('close', stop)
  }

  return async (req, res, path) => {
    if (!path.startsWith('/v1/admin/') && !path.startsWith('/v1/messages/')) return false
    const url = new URL(req.url ?? '/', 'http://admin')
    const method = req.method ?? 'GET'
    try {
      authorize(req)
      let m: RegExpExecArray | null
      if (path === '/v1/admin/nodes' && method === 'GET') {
        send(res, 200, { nodes: await hub.listNodes() })
      } else if ((m = /^\/v1\/admin\/nodes\/([^/]+)$/.exec(path)) !== null && method === 'DELETE') {
        const nodeId = decodeURIComponent(m[1] as string)
        const purge = ['1', 'true'].includes(url.searchParams.get('purge') ?? '')
        const r = await hub.removeNode(nodeId, { purge })
        if (!r.removed) throw new ApiError(404, 'EF_NOT_FOUND', `node ${nodeId} is not bound at this hub`)
        send(res, 200, { node: nodeId, ...r })
      } else if (path === '/v1/admin/tokens' && method === 'GET') {
        send(res, 200, { tokens: await hub.bindings.tokens() })
      } else if (path === '/v1/admin/tokens' && method === 'POST') {
        const b = await readJson(req, maxBody)
        const opts: { nodeId?: string, ttlSeconds?: number, reusable?: boolean } = {}
        if (b.node !== undefined) opts.nodeId = str(b, 'node')
        if (b.ttlSeconds !== undefined) opts.ttlSeconds = b.ttlSeconds as number
        if (b.reusable !== undefined) opts.reusable = b.reusable as boolean
        send(res, 201, await hub.issueToken(opts))
      } else if ((m = /^\/v1\/admin\/tokens\/([^/]+)$/.exec(path)) !== null && method === 'DELETE') {
        const jti = decodeURIComponent(m[1] as string)
        send(res, 200, { jti, revoked: await hub.revokeToken(jti) })
      } else if (path === '/v1/messages/send' && method === 'POST') {
        const b = await readJson(req, maxBody)
        const env = newMessage({ source: 'cloud', group: str(b, 'group', 'cli'), operation: str(b, 'operation', 'update'), resource: str(b, 'resource'), content: b.content ?? null })
        const node = str(b, 'node')
        if (b.resourceVersion !== undefined) env.header.resourceVersion = str(b, 'resourceVersion')
        if (b.reliable === true) {
          const outcome = await hub.sendReliable(node, env)
          send(res, outcome.status === 'rejected' ? 507 : 200, { id: env.header.id, ...outcome })
        } else {
          await hub.send(node, env)
          send(res, 200, { id: env.header.id, status: 'sent' })
        }
      } else if (path === '/v1/messages/request' && method === 'POST') {
        const b = await readJson(req, maxBody)
        const env = newMessage({ source: 'cloud', group: str(b, 'group', 'cli'), operation: str(b, 'operation', 'query'), resource: str(b, 'resource'), content: b.content ?? null })
        const timeoutMs = typeof b.timeoutMs === 'number' ? b.timeoutMs : 10_000
        const r = await hub.request(str(b, 'node'), env, { timeoutMs })
        send(res, 200, { id: env.header.id, operation: r.router.operation, content: jsonSafe(r.content) })
      } else if (path === '/v1/messages/broadcast' && method === 'POST') {
        const b = await readJson(req, maxBody)
        const labels = b.labels
        if (typeof labels !== 'object' || labels === null || Array.isArray(labels) || !Object.values(labels).every(v => typeof v === 'string')) {
          throw new ApiError(400, 'EF_BAD_REQUEST', '"labels" must be an object of strings, e.g. {"zone":"a"}')
        }
        const env = newMessage({ source: 'cloud', group: str(b, 'group', 'cli'), operation: str(b, 'operation', 'update'), resource: str(b, 'resource'), content: b.content ?? null })
        send(res, 200, { id: env.header.id, ...(await hub.broadcast(labels as Record<string, string>, env)) })
      } else if (path === '/v1/messages/sub' && method === 'GET') {
        subscribe(req, res, url.searchParams)
      } else {
        throw new ApiError(404, 'EF_NOT_FOUND', `no route ${method} ${path}`)
      }
    } catch (err) {
      if (res.headersSent) { res.destroy(); return true }
      if (err instanceof ApiError) send(res, err.status, { error: { code: err.code, message: err.message } })
      else if (err instanceof EdgeFabricError) {
        const status = err.code === 'EF_NODE_OFFLINE' ? 409 : err.code === 'EF_INVALID_OPTION' || err.code === 'EF_NODE_NAME_INVALID' ? 400 : err.code === 'EF_REQUEST_TIMEOUT' ? 504 : 502
        send(res, status, { error: { code: err.code, message: err.message } })
      } else throw err
    }
    return true
  }
}
