/**
 * The local upstream endpoint: edge apps POST messages for the cloud to a
 * loopback HTTP server, which wraps them in envelopes (source 'servicebus')
 * and hands them to the bus's upstream function.
 *
 *   POST /v1/upstream                 JSON {group, resource, operation, content?, priority?, ttl?}
 *   POST /v1/upstream/raw?group=&resource=&operation=[&priority=&ttl=]   body = binary content
 *
 * Replies: 202 {id} once upstream accepted it (e.g. into the outbox);
 * 400 EF_BAD_JSON / EF_BAD_FIELD, 401 EF_UNAUTHORIZED, 404 EF_NOT_FOUND,
 * 405 EF_METHOD_NOT_ALLOWED, 413 EF_PAYLOAD_TOO_LARGE, 415 EF_UNSUPPORTED_MEDIA_TYPE,
 * 503 with the upstream error's code (e.g. outbox full, bus closed).
 * Every error body is JSON {code, message}.
 *
 * Loopback only: the endpoint lets anyone who can connect speak to the cloud
 * as this node, so it is never exposed beyond the host (a bearer token adds
 * per-app control on a shared host).
 *
 * Browsers (issue 13 item 6): a web page the edge's browser opens must not be
 * able to post as this node. So, before anything else, Host and Origin go
 * through the shared allow-list (src/ops/http-guard.ts: defeats DNS rebinding
 * and cross-origin posts), and the request must carry the bearer token or,
 * without a configured token, the custom header `X-EdgeFabric-Client` (any
 * value; a cross-site page cannot set it without a CORS preflight, which this
 * server never grants). Bodies: `/v1/upstream` only `application/json`;
 * `/v1/upstream/raw` any declared type except the three a form or a simple
 * request can send (text/plain, application/x-www-form-urlencoded,
 * multipart/form-data) — e.g. application/octet-stream.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { Socket } from 'node:net'
import { newMessage, PRIORITIES, type Envelope, type Priority } from '../codec/envelope.js'
import { EdgeFabricError, InvalidOptionError, ListenError } from '../errors.js'
import { intOption, stringOption } from '../util/options.js'
import { checkHostAndOrigin } from '../ops/http-guard.js'
import { noopLogger, type BusLogger } from './bus-types.js'

export interface UpstreamEndpointOptions {
  /** Anything with sendUpstream (a ModuleBus). */
  bus: { sendUpstream (env: Envelope): Promise<void> }
  /** Loopback address only. @default '127.0.0.1' */
  host?: string
  /** @default 0 (any free port) */
  port?: number
  /** Largest request body. @default 1 MiB */
  maxBodyBytes?: number
  /** When set, requests need `Authorization: Bearer <token>`; otherwise the `X-EdgeFabric-Client` header. */
  token?: string
  /** Extra host names accepted in Host/Origin besides IP literals and localhost. */
  allowedHosts?: string[]
  /** router.source of the envelopes. @default 'servicebus' */
  source?: string
  /** Deadline for receiving a whole request (slowloris bound). @default 30000 */
  requestTimeoutMs?: number
  logger?: BusLogger
}

export interface UpstreamEndpoint {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string
  readonly port: number
  /** Stop listening and close every connection (keep-alive ones included). */
  close (): Promise<void>
}

const MAX_FIELD = 512
/** The content types a cross-site form or "simple" request may send without a preflight. */
const FORM_TYPES = new Set(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'])

class HttpFailure extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

export async function startUpstreamEndpoint (options: UpstreamEndpointOptions): Promise<UpstreamEndpoint> {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object')
  if (typeof options.bus?.sendUpstream !== 'function') throw new InvalidOptionError('bus', 'must have sendUpstream()')
  const host = stringOption('host', options.host, '127.0.0.1') as string
  if (!isLoopback(host)) throw new InvalidOptionError('host', `must be a loopback address, got ${JSON.stringify(host)}`)
  const port = intOption('port', options.port, 0, 0, 65535)
  const maxBody = intOption('maxBodyBytes', options.maxBodyBytes, 1024 * 1024, 0)
  const requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1)
  const source = stringOption('source', options.source, 'servicebus') as string
  const token = stringOption('token', options.token)
  const tokenHash = token === undefined ? undefined : sha256(token)
  const logger = options.logger ?? noopLogger
  const bus = options.bus
  const hostPolicy = options.allowedHosts === undefined ? {} : { allowedHosts: options.allowedHosts }

  const server = http.createServer({ requestTimeout: requestTimeoutMs, headersTimeout: Math.min(requestTimeoutMs, 10_000) }, (req, res) => {
    req.on('error', err => logger.debug({ err }, 'upstream endpoint: request stream error'))
    res.on('error', err => logger.debug({ err }, 'upstream endpoint: response stream error'))
    handle(req, res).catch(err => {
      const f = err instanceof HttpFailure ? err : new HttpFailure(500, 'EF_INTERNAL', 'internal error')
      if (!(err instanceof HttpFailure)) logger.warn({ err }, 'upstream endpoint: unexpected failure')
      reply(res, f.status, { code: f.code, message: f.message }, f.status === 413 ? { connection: 'close' } : {})
      if (f.status === 413) req.resume() // discard the rest; the connection closes after the reply
    })
  })
  server.on('error', err => logger.warn({ err }, 'upstream endpoint: server error'))
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Malformed HTTP (or header timeout): answer 400 if the socket can still take it, as node's docs suggest.
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
  })

  async function handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const raw = url.pathname === '/v1/upstream/raw'
    if (!raw && url.pathname !== '/v1/upstream') throw new HttpFailure(404, 'EF_NOT_FOUND', `no route ${url.pathname}`)
    const refusal = checkHostAndOrigin(req, hostPolicy)
    if (refusal !== undefined) {
      logger.warn({ host: req.headers.host, origin: req.headers.origin }, 'upstream endpoint: ' + refusal.code)
      throw new HttpFailure(refusal.status, refusal.code, refusal.message)
    }
    if (req.method !== 'POST') { res.setHeader('allow', 'POST'); throw new HttpFailure(405, 'EF_METHOD_NOT_ALLOWED', 'use POST') }
    if (tokenHash !== undefined && !authorized(req.headers.authorization, tokenHash)) {
      res.setHeader('www-authenticate', 'Bearer')
      throw new HttpFailure(401, 'EF_UNAUTHORIZED', 'missing or wrong bearer token')
    }
    if (tokenHash === undefined && (req.headers['x-edgefabric-client'] ?? '') === '') {
      throw new HttpFailure(403, 'EF_CLIENT_HEADER_REQUIRED', 'without a configured token, requests must carry the X-EdgeFabric-Client header (cross-site protection)')
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
    if (!raw) {
      if (type !== 'application/json' && !type.endsWith('+json')) throw new HttpFailure(415, 'EF_UNSUPPORTED_MEDIA_TYPE', 'content-type must be application/json')
    } else if (type === '' || FORM_TYPES.has(type)) {
      throw new HttpFailure(415, 'EF_UNSUPPORTED_MEDIA_TYPE', 'raw bodies need a declared content-type other than text/plain or a form type (e.g. application/octet-stream)')
    }
    const body = await readBody(req, maxBody)
    let env: Envelope
    if (raw) {
      const q = url.searchParams
      env = build(source, {
        group: q.get('group') ?? undefined,
        resource: q.get('resource') ?? undefined,
        operation: q.get('operation') ?? undefined,
        priority: q.get('priority') ?? undefined,
        ttl: q.has('ttl') ? Number(q.get('ttl')) : undefined
      }, body)
    } else {
      let parsed: unknown
      try {
        parsed = JSON.parse(body.toString('utf8'))
      } catch (err) {
        throw new HttpFailure(400, 'EF_BAD_JSON', `body is not valid JSON: ${(err as Error).message}`)
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new HttpFailure(400, 'EF_BAD_JSON', 'body must be a JSON object')
      const o = parsed as Record<string, unknown>
      env = build(source, o, o.content)
    }
    try {
      await bus.sendUpstream(env)
    } catch (err) {
      const code = err instanceof EdgeFabricError ? err.code : 'EF_UPSTREAM_UNAVAILABLE'
      throw new HttpFailure(503, code, `upstream refused the message: ${(err as Error)?.message ?? String(err)}`)
    }
    reply(res, 202, { id: env.header.id })
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new ListenError(`http://${host}:${port}`, err.message, { cause: err }))
    server.once('error', onError)
    server.listen(port, host, () => { server.off('error', onError); resolve() })
  })
  const address = server.address()
  const boundPort = typeof address === 'object' && address !== null ? address.port : port
  let closing: Promise<void> | undefined
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`,
    port: boundPort,
    close () {
      closing ??= new Promise<void>(resolve => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    }
  }
}

function build (source: string, o: Record<string, unknown>, content: unknown): Envelope {
  const field = (name: string): string => {
    const v = o[name]
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
      throw new HttpFailure(400, 'EF_BAD_FIELD', `"${name}" must be a non-empty string of at most ${MAX_FIELD} characters`)
    }
    return v
  }
  const group = field('group')
  const resource = field('resource')
  const operation = field('operation')
  let priority: Priority | undefined
  if (o.priority !== undefined) {
    if (!(PRIORITIES as readonly unknown[]).includes(o.priority)) throw new HttpFailure(400, 'EF_BAD_FIELD', `"priority" must be one of ${PRIORITIES.join(', ')}`)
    priority = o.priority as Priority
  }
  let ttl: number | undefined
  if (o.ttl !== undefined) {
    if (typeof o.ttl !== 'number' || !Number.isInteger(o.ttl) || o.ttl <= 0) throw new HttpFailure(400, 'EF_BAD_FIELD', '"ttl" must be a positive integer (ms)')
    ttl = o.ttl
  }
  return newMessage({
    source, group, resource, operation, content,
    ...(priority !== undefined ? { priority } : {}),
    ...(ttl !== undefined ? { ttl } : {})
  })
}

function readBody (req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new HttpFailure(413, 'EF_PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds ${limit}`))
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    req.on('data', (chunk: Buffer) => {
      if (done) return // discarding after a 413
      size += chunk.length
      if (size > limit) {
        done = true
        reject(new HttpFailure(413, 'EF_PAYLOAD_TOO_LARGE', `body exceeds ${limit} bytes`))
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => { if (!done) { done = true; resolve(Buffer.concat(chunks, size)) } })
    req.on('close', () => { if (!done) { done = true; reject(new HttpFailure(400, 'EF_BAD_REQUEST', 'request aborted')) } })
  })
}

function reply (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.writableEnded) return
  const text = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

function authorized (header: string | undefined, expected: Buffer): boolean {
  if (header === undefined) return false
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (m === null) return false
  // Compare digests: equal length, constant time.
  return timingSafeEqual(sha256(m[1] as string), expected)
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
