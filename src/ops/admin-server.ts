/**
 * Admin HTTP server for hub and edge: Prometheus `/metrics`, `/healthz`,
 * `/readyz`, `/status` (JSON), a self-contained HTML status page at `/`, the
 * operator's console under `/console/` and whatever the `routes` / `api` hooks
 * serve (the device API, the fleet API, dead-letter actions).
 *
 * Access is decided HERE, once, before any route runs (issue 13 items 6–7,
 * http-guard.ts): Host and Origin against the allow-list, then the principal
 * — the admin token (every method), the read token (GET/HEAD), or, without a
 * token, the anonymous read-only principal on loopback only. Anything but
 * GET/HEAD needs the admin role. `/healthz` and `/readyz` are open (probes
 * come from anywhere) but show their detail only to an allowed principal.
 * Routes read the decided principal with `principalOf(req)`.
 *
 * Plain node:http (DESIGN.md §10 suggests fastify once the four routers are
 * merged; not this round, the `routes` hook keeps its signature).
 */
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { ListenError, toError } from '../errors.js'
import { intOption, stringOption } from '../util/options.js'
import { nullLogger } from './logger.js'
import type { Logger } from './logger.js'
import { STATUS_PAGE_CSP, statusPage } from './status-page.js'
import { authenticate, checkHostAndOrigin, isLoopbackAddress, loadOrCreateToken, setPrincipal, TokenSet, type HostPolicy, type Principal } from './http-guard.js'
import { serveConsoleAsset } from './console-assets.js'

export { principalOf, type Principal, type Role } from './http-guard.js'

export interface HealthResult {
  ok: boolean
  /** Anything JSON-serializable explaining the state; returned in the response body. */
  detail?: unknown
}

export type HealthCheck = () => HealthResult | Promise<HealthResult>

export interface AdminServerOptions {
  /** Default 127.0.0.1. A non-loopback host is allowed but logged as a warning: these routes are unauthenticated. */
  host?: string
  /** Default 0 (an ephemeral port; read it from `url`). */
  port?: number
  registry: Registry
  /** Liveness: is the process working at all? Default: always ok. */
  health?: HealthCheck
  /** Readiness: should traffic be sent here (hub listening, edge connected)? Default: always ok. */
  ready?: HealthCheck
  /** JSON for `/status` and the HTML page. Default: `{}`. */
  status?: () => unknown
  /** Page title, e.g. "edgefabric hub". */
  title?: string
  logger?: Logger
  /** Upper bound for a health/ready/status callback before the probe answers 503/500. Default 2000 ms. */
  callbackTimeoutMs?: number
  /**
   * Extra routes (e.g. the device API, src/device/cloud/http-api.ts), tried before
   * the built-in ones for any method; resolves true when it answered.
   */
  routes?: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>
  /** A second hook with the same signature, tried after `routes` (the fleet / edge API under /api/). */
  api?: (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>
  /** Who may call (http-guard.ts). */
  auth?: AdminAuthOptions
  /** Serve the console under /console/ for this role. Default: no console. */
  console?: 'hub' | 'edge'
}

/**
 * The `admin` option of Hub.start and EdgeNode.start. By default the admin
 * token lives in `<dataDir>/admin-token` (generated at first start, printed
 * once by the CLI).
 */
export interface AdminHttpOptions extends HostPolicy {
  /** @default '127.0.0.1' */
  host?: string
  /** @default 0 */
  port?: number
  /** Admin bearer token; overrides the token file. */
  token?: string
  /** Read-only bearer token. */
  readToken?: string
  /** `false`: no token file, no admin principal (everything read-only unless `token`). @default '<dataDir>/admin-token' */
  tokenFile?: string | false
}

/** AdminAuthOptions from the roles' `admin` option. */
export function adminAuthFrom (o: AdminHttpOptions | undefined, dataDir: string): AdminAuthOptions {
  const file = o?.tokenFile === false ? undefined : (o?.tokenFile ?? `${dataDir.replace(/\/+$/, '')}/admin-token`)
  return {
    ...(o?.token === undefined ? {} : { token: o.token }),
    ...(file === undefined ? {} : { tokenFile: file }),
    ...(o?.readToken === undefined ? {} : { readToken: o.readToken }),
    ...(o?.allowedHosts === undefined ? {} : { allowedHosts: o.allowedHosts }),
    ...(o?.allowedOrigins === undefined ? {} : { allowedOrigins: o.allowedOrigins })
  }
}

export interface AdminAuthOptions extends HostPolicy {
  /** Admin bearer token. Wins over `tokenFile`. */
  token?: string
  /**
   * File holding the admin token (e.g. `<dataDir>/admin-token`); generated
   * (32 random bytes, mode 0600) when missing. Without `token` and
   * `tokenFile` there is no admin principal: everything is read-only.
   */
  tokenFile?: string
  /** Bearer token of the read-only role (GET/HEAD everywhere, from any address). */
  readToken?: string
}

export interface AdminServer {
  /** e.g. `http://127.0.0.1:39123` */
  readonly url: string
  readonly host: string
  readonly port: number
  /** The admin token in force (given or read from / generated into `tokenFile`). */
  readonly token: string | undefined
  /** True when this start generated the token into `tokenFile`: print it once. */
  readonly tokenCreated: boolean
  /** Stop listening and drop open (keep-alive) connections. Idempotent. */
  close (): Promise<void>
}

const JSON_TYPE = 'application/json; charset=utf-8'

export function isLoopbackHost (host: string): boolean {
  return isLoopbackAddress(host)
}

/** Paths the server itself answers for GET/HEAD only (405 for other methods, before auth). */
function isBuiltinPath (path: string): boolean {
  return path === '/metrics' || path === '/status' || path === '/' || path === '/healthz' || path === '/readyz' || path === '/console' || path.startsWith('/console/')
}

export async function startAdminServer (options: AdminServerOptions): Promise<AdminServer> {
  const host = stringOption('host', options.host, '127.0.0.1') as string
  const port = intOption('port', options.port, 0, 0, 65535)
  const timeoutMs = intOption('callbackTimeoutMs', options.callbackTimeoutMs, 2000, 1)
  const registry = options.registry
  const title = options.title ?? 'edgefabric'
  const log = (options.logger ?? nullLogger).child({ component: 'admin' })
  const health = options.health ?? (() => ({ ok: true }))
  const ready = options.ready ?? (() => ({ ok: true }))
  const status = options.status ?? (() => ({}))
  const auth = options.auth ?? {}
  let token = stringOption('auth.token', auth.token)
  let tokenCreated = false
  if (token === undefined && auth.tokenFile !== undefined) {
    const t = await loadOrCreateToken(auth.tokenFile)
    token = t.token
    tokenCreated = t.created
  }
  const tokens = new TokenSet(token, stringOption('auth.readToken', auth.readToken))
  const policy: HostPolicy = { ...(auth.allowedHosts === undefined ? {} : { allowedHosts: [...auth.allowedHosts] }), ...(auth.allowedOrigins === undefined ? {} : { allowedOrigins: [...auth.allowedOrigins] }) }

  /** The principal, or undefined after answering a refusal. */
  const guard = (req: IncomingMessage, res: ServerResponse, path: string): Principal | undefined => {
    const refusal = checkHostAndOrigin(req, policy)
    if (refusal !== undefined) {
      log.warn({ host: req.headers.host, origin: req.headers.origin, remote: req.socket.remoteAddress, path }, 'admin request refused: ' + refusal.code)
      send(res, refusal.status, JSON_TYPE, JSON.stringify({ code: refusal.code, message: refusal.message }))
      return undefined
    }
    const p = authenticate(req, tokens)
    if (!('role' in p)) {
      send(res, 401, JSON_TYPE, JSON.stringify({ code: p.code, message: p.message }), { 'www-authenticate': 'Bearer' })
      return undefined
    }
    if (req.method !== 'GET' && req.method !== 'HEAD' && p.role !== 'admin') {
      send(res, 403, JSON_TYPE, JSON.stringify({ code: 'EF_FORBIDDEN', message: tokens.hasAdmin ? 'read-only access: this needs the admin token' : 'read-only access: no admin token is configured' }))
      return undefined
    }
    setPrincipal(req, p)
    return p
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/'
    const builtin = isBuiltinPath(path)
    if (builtin && req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, JSON_TYPE, JSON.stringify({ error: 'method not allowed' }), { allow: 'GET, HEAD' })
      return
    }
    if (path === '/healthz' || path === '/readyz') {
      // Open to probes from anywhere; the detail only for a principal that passes the guard.
      const r = await probe(path === '/healthz' ? health : ready, timeoutMs)
      const body: Record<string, unknown> = { status: r.ok ? 'ok' : 'fail' }
      const trusted = checkHostAndOrigin(req, policy) === undefined && 'role' in authenticate(req, tokens)
      if (r.detail !== undefined && trusted) body.detail = r.detail
      send(res, r.ok ? 200 : 503, JSON_TYPE, safeJson(body, r.ok))
      return
    }
    if (guard(req, res, path) === undefined) return
    if (options.routes !== undefined && await options.routes(req, res, path)) return
    if (options.api !== undefined && await options.api(req, res, path)) return
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, JSON_TYPE, JSON.stringify({ error: 'method not allowed' }), { allow: 'GET, HEAD' })
      return
    }
    if (options.console !== undefined && (path === '/console' || path.startsWith('/console/'))) {
      if (await serveConsoleAsset(req, res, path, options.console)) return
    }
    switch (path) {
      case '/metrics': {
        let text: string
        try {
          text = await registry.metrics()
        } catch (err) {
          log.warn({ err }, 'collecting metrics failed')
          send(res, 500, 'text/plain; charset=utf-8', 'collecting metrics failed\n')
          return
        }
        send(res, 200, registry.contentType, text)
        return
      }
      case '/status': {
        const r = await readStatus(status, timeoutMs)
        if (r instanceof Error) {
          log.warn({ err: r }, 'status callback failed')
          send(res, 500, JSON_TYPE, JSON.stringify({ error: r.message }))
        } else {
          send(res, 200, JSON_TYPE, r.json)
        }
        return
      }
      case '/': {
        const r = await readStatus(status, timeoutMs)
        send(res, 200, 'text/html; charset=utf-8', statusPage(title, r instanceof Error ? r : r.value), {
          'content-security-policy': STATUS_PAGE_CSP
        })
        return
      }
      default:
        send(res, 404, JSON_TYPE, JSON.stringify({ error: 'not found' }))
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err: toError(err) }, 'admin request failed')
      if (!res.headersSent) send(res, 500, JSON_TYPE, JSON.stringify({ error: 'internal error' }))
      else res.destroy()
    })
  })
  // Slow or malformed clients must not pin sockets forever.
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    log.debug({ err }, 'admin client error')
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
  })

  const displayUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => { reject(new ListenError(displayUrl, err.message, { cause: err })) }
    server.once('error', onError)
    server.listen({ host, port }, () => { server.off('error', onError); resolve() })
  })
  server.on('error', (err) => { log.error({ err }, 'admin server error') })

  const addr = server.address() as AddressInfo
  const boundHost = addr.address
  const url = `http://${boundHost.includes(':') ? `[${boundHost}]` : boundHost}:${addr.port}`
  if (!isLoopbackHost(host)) {
    log.warn({ host, url, token: tokens.hasAdmin }, 'admin server listens on a non-loopback address; non-loopback callers need a bearer token')
  } else {
    log.info({ url }, 'admin server listening')
  }

  let closing: Promise<void> | undefined
  return {
    url,
    host: boundHost,
    port: addr.port,
    token,
    tokenCreated,
    close () {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        // close() alone waits for keep-alive clients (a Prometheus scraper) to go away.
        server.closeAllConnections()
      })
      return closing
    }
  }
}

function send (res: ServerResponse, code: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers
  })
  res.end(body)
}

function withTimeout<T> (fn: () => T | Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`callback did not answer within ${ms} ms`)) }, ms)
    timer.unref()
    Promise.resolve().then(fn).then(
      (v) => { clearTimeout(timer); resolve(v) },
      (err: unknown) => { clearTimeout(timer); reject(toError(err)) }
    )
  })
}

async function probe (check: HealthCheck, ms: number): Promise<HealthResult> {
  try {
    const r = await withTimeout(check, ms)
    if (typeof r !== 'object' || r === null || typeof r.ok !== 'boolean') return { ok: false, detail: 'check returned no {ok} result' }
    return r
  } catch (err) {
    return { ok: false, detail: toError(err).message }
  }
}

async function readStatus (status: () => unknown, ms: number): Promise<{ value: unknown, json: string } | Error> {
  try {
    const value = await withTimeout(status, ms)
    const json = JSON.stringify(value) ?? 'null'
    // Round-trip so the HTML page renders exactly what /status would return (no Maps, class instances...).
    return { value: JSON.parse(json) as unknown, json }
  } catch (err) {
    return toError(err)
  }
}

function safeJson (v: unknown, ok: boolean): string {
  try { return JSON.stringify(v) } catch { return JSON.stringify({ status: ok ? 'ok' : 'fail', detail: 'detail not serializable' }) }
}
