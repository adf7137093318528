/**
 * The device API on the hub's admin HTTP server (DESIGN.md §8, §10): a small
 * route table over DeviceRegistry, JSON in and out, errors as
 * `{code, message}` with the status from `httpStatusOf`.
 *
 * Access. Mounted on the admin server (the hub does), the admin server has
 * already checked Host/Origin and decided the principal (src/ops/http-guard.ts):
 * mutations need the admin role, reads any role. Used on another server (no
 * principal attached), the legacy rule applies: with `token`, every /v1
 * request needs `Authorization: Bearer <token>`; without it, reads for anyone
 * and mutations for loopback peers only. Bodies must be `application/json`
 * (so a web page cannot forge a mutation with a simple cross-origin form
 * post) and at most `maxBodyBytes`.
 *
 * Watch slots are counted per principal (issue 13 item 7): anonymous readers
 * share a few, the read token has its own, the admin token the rest, so no
 * reader can take every slot of the registry.
 *
 * Watch: GET …/watch streams changes as NDJSON (one DeviceChange per line),
 * or as Server-Sent Events when the client sends `Accept: text/event-stream`.
 * A watcher that falls behind ends with a final `{"error":{code,message}}`
 * line (SSE: `event: error`), see registry-watch.ts.
 */
import { timingSafeEqual, createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isEdgeFabricError } from '../../errors.js'
import { isLoopbackHost, principalOf } from '../../ops/admin-server.js'
import { ApiError, isJsonRequest, readJsonBody, send } from '../../ops/api-util.js'
import { DeviceError, DeviceModelNotFoundError, httpStatusOf } from '../errors.js'
import type { DeviceRegistry } from './registry.js'
import type { DeviceChange, DeviceChangeType, ListDevicesFilter, WatchFilter } from './registry-types.js'

export interface DeviceHttpOptions {
  /** Bearer token required on every /v1 request when set. */
  token?: string
  /** Largest JSON body. @default 1 MiB */
  maxBodyBytes?: number
  /** SSE/NDJSON keep-alive period. @default 15000 */
  keepAliveMs?: number
  /**
   * Concurrent watch streams per principal: `anonymous` (all tokenless
   * loopback readers together), `read` (the read token), `admin`. A watch over
   * its principal's share gets 429 EF_TOO_MANY_WATCHERS.
   * @default { anonymous: 8, read: 64, admin: 512 }
   */
  watchSlots?: { anonymous?: number, read?: number, admin?: number }
}


type Handler = (ctx: Ctx) => Promise<unknown> | unknown
interface Ctx { req: IncomingMessage, res: ServerResponse, params: string[], query: URLSearchParams, body: () => Promise<unknown> }
interface Route { method: string, pattern: RegExp, mutates: boolean, handler: Handler }

const SEG = '([^/]+)'

/** The route handler for startAdminServer's `routes` option. */
export function deviceRoutes (reg: DeviceRegistry, options: DeviceHttpOptions = {}): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean> {
  const maxBody = options.maxBodyBytes ?? 1024 * 1024
  const keepAliveMs = options.keepAliveMs ?? 15_000
  const tokenHash = options.token === undefined ? undefined : sha(options.token)
  const slotLimit: Record<string, number> = { anonymous: 8, read: 64, admin: 512, ...options.watchSlots }
  const slotsUsed = new Map<string, number>()
  /** Take a watch slot of the request's principal; returns its release, or throws 429. */
  const takeSlot = (req: IncomingMessage): (() => void) => {
    const p = principalOf(req)
    const key = p === undefined ? (tokenHash !== undefined ? 'admin' : 'anonymous') : p.anonymous ? 'anonymous' : p.role
    const used = slotsUsed.get(key) ?? 0
    const limit = slotLimit[key] ?? 8
    if (used >= limit) throw new ApiError(429, 'EF_DEVICE_TOO_MANY_WATCHERS', `the ${key} principal already holds its ${limit} watch slots`)
    slotsUsed.set(key, used + 1)
    let released = false
    return () => { if (!released) { released = true; slotsUsed.set(key, (slotsUsed.get(key) ?? 1) - 1) } }
  }
  const watch = (req: IncomingMessage, res: ServerResponse, filter: WatchFilter): typeof STREAMING => {
    const release = takeSlot(req)
    try {
      return stream(req, res, reg, filter, keepAliveMs, release)
    } catch (err) {
      release()
      throw err
    }
  }

  const r = (method: string, path: string, handler: Handler): Route =>
    ({ method, pattern: new RegExp(`^${path.replaceAll('{}', SEG)}$`), mutates: method !== 'GET', handler })
  const routes: Route[] = [
    r('GET', '/v1/device-models', ({ query }) => ({ items: reg.listModels(query.get('namespace') ?? undefined) })),
    r('GET', '/v1/device-models/{}/{}', ({ params: [ns, n] }) => reg.getModel(ns as string, n as string) ?? notFound(`device model ${ns}/${n}`)),
    r('PUT', '/v1/device-models/{}/{}', async ({ params: [ns, n], body }) => await reg.upsertModel(named(await body(), ns as string, n as string) as never)),
    r('DELETE', '/v1/device-models/{}/{}', async ({ params: [ns, n] }) => { await reg.deleteModel(ns as string, n as string); return { deleted: `${ns}/${n}` } }),
    r('GET', '/v1/devices', ({ query }) => {
      const f = listFilter(query)
      const items = reg.listDevices(f)
      const last = items[items.length - 1]
      // `next`: pass it as ?after= to get the following page
      return items.length === f.limit && last !== undefined ? { items, next: `${last.spec.namespace}/${last.spec.name}` } : { items }
    }),
    r('GET', '/v1/devices/{}/{}', ({ params: [ns, n] }) => reg.getDevice(ns as string, n as string) ?? notFound(`device ${ns}/${n}`)),
    r('PUT', '/v1/devices/{}/{}', async ({ params: [ns, n], body }) => {
      try {
        return await reg.upsertDevice(named(await body(), ns as string, n as string) as never)
      } catch (err) {
        // The model named in the body is missing: the request is wrong, not the URL.
        if (isEdgeFabricError(err, DeviceModelNotFoundError.code)) throw new ApiError(422, err.code, err.message)
        throw err
      }
    }),
    r('DELETE', '/v1/devices/{}/{}', async ({ params: [ns, n] }) => { await reg.deleteDevice(ns as string, n as string); return { deleted: `${ns}/${n}` } }),
    r('PUT', '/v1/devices/{}/{}/desired', async ({ params: [ns, n], body }) => await reg.setDesired(ns as string, n as string, await body() as never)),
    r('POST', '/v1/devices/{}/{}/credentials', async ({ params: [ns, n] }) => await reg.issueCredential(ns as string, n as string)),
    r('DELETE', '/v1/devices/{}/{}/credentials', async ({ params: [ns, n] }) => await reg.revokeCredential(ns as string, n as string)),
    r('GET', '/v1/devices/{}/{}/watch', ({ req, res, params: [ns, n], query }) => watch(req, res, { ...watchFilter(query), namespace: ns as string, name: n as string })),
    r('GET', '/v1/watch', ({ req, res, query }) => watch(req, res, watchFilter(query))),
    r('GET', '/v1/mappers', ({ query }) => ({ items: reg.listMappers(query.get('node') ?? undefined) })),
    r('PUT', '/v1/mappers/{}/{}', async ({ params: [node, n], body }) => {
      const b = await body() as { devices?: unknown }
      return await reg.grantMapper(node as string, n as string, b?.devices as string[])
    }),
    r('DELETE', '/v1/mappers/{}/{}', async ({ params: [node, n] }) => { await reg.revokeMapper(node as string, n as string); return { deleted: `${node}/${n}` } }),
    r('POST', '/v1/nodes/{}/resync', async ({ params: [node] }) => ({ devices: await reg.resyncNode(node as string) })),
    r('GET', '/v1/uploads', ({ query }) => ({
      items: reg.listUploads({ ...optional('nodeId', query.get('node')), ...(query.has('limit') ? { limit: Number(query.get('limit')) } : {}) })
        .map(u => ({ ...u, payload: Buffer.from(u.payload).toString('base64') }))
    }))
  ]

  return async (req, res, path) => {
    if (!path.startsWith('/v1/')) return false
    try {
      const matching = routes.map(route => ({ route, m: route.pattern.exec(path) })).filter(x => x.m !== null)
      if (matching.length === 0) throw new ApiError(404, 'EF_NOT_FOUND', `no route ${path}`)
      const hit = matching.find(x => x.route.method === req.method || (req.method === 'HEAD' && x.route.method === 'GET'))
      if (hit === undefined) {
        res.setHeader('allow', [...new Set(matching.map(x => x.route.method))].join(', '))
        throw new ApiError(405, 'EF_METHOD_NOT_ALLOWED', `${req.method ?? ''} is not allowed on ${path}`)
      }
      authorize(req, hit.route.mutates, tokenHash)
      // POST is the one mutating method a cross-site form may send without a CORS preflight.
      if (req.method === 'POST' && !isJsonRequest(req)) throw new ApiError(415, 'EF_UNSUPPORTED_MEDIA_TYPE', 'POST requests must be sent as application/json')
      let params: string[]
      try {
        params = (hit.m as RegExpExecArray).slice(1).map(s => decodeURIComponent(s))
      } catch {
        throw new ApiError(400, 'EF_BAD_REQUEST', 'malformed percent-encoding in the path')
      }
      const query = new URL(req.url ?? '/', 'http://x').searchParams
      const result = await hit.route.handler({ req, res, params, query, body: async () => await readJsonBody(req, maxBody) })
      if (result === STREAMING) return true
      send(res, 200, result)
    } catch (err) {
      if (res.headersSent) { res.destroy(); return true }
      if (err instanceof ApiError) send(res, err.status, { code: err.code, message: err.message })
      else if (err instanceof DeviceError) send(res, httpStatusOf(err.code), { code: err.code, message: err.message, ...(err.field === undefined ? {} : { field: err.field }) })
      else if (isEdgeFabricError(err)) send(res, 500, { code: err.code, message: err.message })
      else throw err // the admin server logs it and answers 500
    }
    return true
  }
}

const STREAMING = Symbol('streaming')

function notFound (what: string): never {
  throw new ApiError(404, 'EF_NOT_FOUND', `${what} does not exist`)
}

function sha (s: string): Buffer { return createHash('sha256').update(s).digest() }

function authorize (req: IncomingMessage, mutates: boolean, tokenHash: Buffer | undefined): void {
  const p = principalOf(req)
  if (p !== undefined) {
    // The admin server decided (and refuses non-GET for non-admins itself); checked again here so a
    // route table mounted elsewhere with a principal never mutates for a read-only caller.
    if (mutates && p.role !== 'admin') throw new ApiError(403, 'EF_FORBIDDEN', 'device API changes need the admin token')
    return
  }
  if (tokenHash !== undefined) {
    const h = req.headers.authorization ?? ''
    const m = /^Bearer (.+)$/.exec(h)
    if (m === null || !timingSafeEqual(sha(m[1] as string), tokenHash)) throw new ApiError(401, 'EF_UNAUTHORIZED', 'a valid "Authorization: Bearer <admin token>" header is required')
    return
  }
  if (mutates && !isLoopbackHost(req.socket.remoteAddress ?? '')) {
    throw new ApiError(403, 'EF_FORBIDDEN', 'device API changes are accepted from loopback only unless an admin token is configured')
  }
}

/** Path segments are authoritative for namespace/name; a body naming another object is refused. */
function named (body: unknown, namespace: string, name: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'EF_BAD_REQUEST', 'the body must be a JSON object')
  const b = body as Record<string, unknown>
  if ((b.namespace !== undefined && b.namespace !== namespace) || (b.name !== undefined && b.name !== name)) {
    throw new ApiError(400, 'EF_BAD_REQUEST', `the body names ${String(b.namespace)}/${String(b.name)} but the path is ${namespace}/${name}`)
  }
  return { ...b, namespace, name }
}

function optional<K extends string> (key: K, v: string | null): Partial<Record<K, string>> {
  return v === null || v === '' ? {} : { [key]: v } as Record<K, string>
}

/** `?node=&namespace=&model=&label=k=v&label=…&limit=&after=` */
function listFilter (q: URLSearchParams): ListDevicesFilter & { limit: number } {
  const limit = q.has('limit') ? Number(q.get('limit')) : 1000
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) throw new ApiError(400, 'EF_BAD_REQUEST', 'limit must be an integer from 1 to 10000')
  const labels: Record<string, string> = {}
  for (const l of q.getAll('label')) {
    const i = l.indexOf('=')
    if (i <= 0) throw new ApiError(400, 'EF_BAD_REQUEST', `label selector ${JSON.stringify(l)} must be key=value`)
    labels[l.slice(0, i)] = l.slice(i + 1)
  }
  return {
    ...optional('nodeId', q.get('node')), ...optional('namespace', q.get('namespace')), ...optional('model', q.get('model')), ...optional('after', q.get('after')),
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    limit
  }
}

function watchFilter (q: URLSearchParams): WatchFilter {
  const types = q.getAll('type') as DeviceChangeType[]
  return { ...optional('nodeId', q.get('node')), ...optional('namespace', q.get('namespace')), ...(types.length > 0 ? { types } : {}) }
}

function stream (req: IncomingMessage, res: ServerResponse, reg: DeviceRegistry, filter: WatchFilter, keepAliveMs: number, release: () => void): typeof STREAMING {
  const watcher = reg.watch(filter) // throws typed errors (closed, too many) before any header is sent
  const sse = (req.headers.accept ?? '').includes('text/event-stream')
  res.writeHead(200, {
    'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff'
  })
  res.flushHeaders()
  const write = (c: DeviceChange): void => { res.write(sse ? `event: change\ndata: ${JSON.stringify(c)}\n\n` : JSON.stringify(c) + '\n') }
  const keepAlive = setInterval(() => { res.write(sse ? ': keep-alive\n\n' : '\n') }, keepAliveMs)
  keepAlive.unref()
  const stop = (): void => { clearInterval(keepAlive); release(); void watcher.return?.() }
  res.on('close', stop)
  void (async () => {
    try {
      for await (const c of watcher) write(c)
      res.end()
    } catch (err) {
      const e = { code: (err as { code?: string }).code ?? 'EF_UNKNOWN', message: (err as Error).message }
      res.end(sse ? `event: error\ndata: ${JSON.stringify(e)}\n\n` : JSON.stringify({ error: e }) + '\n')
    } finally {
      clearInterval(keepAlive)
      release()
    }
  })()
  return STREAMING
}
