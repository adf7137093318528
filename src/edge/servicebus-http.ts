/**
 * callLocalHttp: the ServiceBus's HTTP call to an app on the edge's loopback.
 *
 * node:http rather than fetch so every limit is ours: the target is always
 * 127.0.0.1 (only the port comes from the request, and it must be in
 * allowedPorts — the cloud must not be able to reach arbitrary local
 * services), one deadline covers connect + headers + body, the response body
 * is bounded (Content-Length checked before reading, then while reading),
 * and no connection pooling (agent: false) so nothing outlives the call.
 */
import http from 'node:http'
import { ServiceBusError } from '../errors.js'
import { intOption } from '../util/options.js'

export interface LocalHttpRequest {
  /** @default 'GET' */
  method?: string
  /** Origin-form request target: '/path?query'. */
  path: string
  headers?: Record<string, string | string[]>
  body?: string | Uint8Array
  /** Port of the app on 127.0.0.1; must be in allowedPorts. */
  port: number
}

export interface LocalHttpResponse {
  status: number
  /** Lower-case names, as node:http reports them. */
  headers: Record<string, string | string[]>
  body: Uint8Array
}

export interface CallLocalHttpOptions {
  /** Ports of 127.0.0.1 that may be called. Empty = none. */
  allowedPorts: readonly number[]
  /** Deadline for the whole exchange. @default 30000 */
  timeoutMs?: number
  /** Largest response body accepted. @default 8 MiB */
  maxBodyBytes?: number
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// eslint-disable-next-line no-control-regex
const BAD_PATH_CHARS = /[\u0000-\u0020\u007f]/
const MAX_PATH = 8192
/** Connection-scoped headers: they describe the cloud's hop, not this one; node:http sets its own. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length'])

export const DEFAULT_SERVICEBUS_TIMEOUT_MS = 30_000
export const DEFAULT_SERVICEBUS_MAX_BODY = 8 * 1024 * 1024

/** Throws ServiceBusError('bad-request' | 'port-not-allowed'); returns the normalized request. */
export function checkLocalHttpRequest (request: unknown, allowedPorts: readonly number[]): Required<Omit<LocalHttpRequest, 'body'>> & { body: Uint8Array | undefined } {
  if (typeof request !== 'object' || request === null) throw bad('request must be an object')
  const r = request as Record<string, unknown>
  const method = r.method === undefined ? 'GET' : r.method
  if (typeof method !== 'string' || !TOKEN.test(method)) throw bad('method must be an HTTP token')
  const upper = method.toUpperCase()
  if (upper === 'CONNECT') throw bad('CONNECT is not allowed') // would turn the app into a tunnel
  const path = r.path
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > MAX_PATH || BAD_PATH_CHARS.test(path)) {
    throw bad(`path must start with "/", be at most ${MAX_PATH} chars and contain no spaces or control characters`)
  }
  const port = r.port
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw bad('port must be an integer 1-65535')
  if (!allowedPorts.includes(port)) throw new ServiceBusError('port-not-allowed', `port ${port} is not in allowedPorts`)
  const headers: Record<string, string | string[]> = {}
  if (r.headers !== undefined) {
    if (typeof r.headers !== 'object' || r.headers === null || Array.isArray(r.headers)) throw bad('headers must be an object')
    for (const [k, v] of Object.entries(r.headers as Record<string, unknown>)) {
      if (!TOKEN.test(k)) throw bad(`invalid header name ${JSON.stringify(k)}`)
      if (HOP_BY_HOP.has(k.toLowerCase())) continue
      const values = Array.isArray(v) ? v : [v]
      if (!values.every(x => typeof x === 'string' && !/[\r\n\0]/.test(x))) throw bad(`header ${k} must be a string or string[] without CR/LF/NUL`)
      headers[k] = v as string | string[]
    }
  }
  let body: Uint8Array | undefined
  if (typeof r.body === 'string') body = Buffer.from(r.body, 'utf8')
  else if (r.body instanceof Uint8Array) body = r.body
  else if (r.body !== undefined && r.body !== null) throw bad('body must be a string or bytes')
  return { method: upper, path, port, headers, body }
}

/**
 * Call http://127.0.0.1:{port}{path}. Resolves with any HTTP status (a 500
 * from the app is a response, not an error); rejects only with
 * ServiceBusError: port-not-allowed, bad-request, timeout,
 * response-too-large, connect-failed, http-error.
 */
export function callLocalHttp (request: LocalHttpRequest, options: CallLocalHttpOptions): Promise<LocalHttpResponse> {
  let req: ReturnType<typeof checkLocalHttpRequest>
  let timeoutMs: number
  let maxBody: number
  try {
    if (!Array.isArray(options?.allowedPorts)) throw bad('options.allowedPorts must be an array of ports')
    timeoutMs = intOption('timeoutMs', options.timeoutMs, DEFAULT_SERVICEBUS_TIMEOUT_MS, 1)
    maxBody = intOption('maxBodyBytes', options.maxBodyBytes, DEFAULT_SERVICEBUS_MAX_BODY, 0)
    req = checkLocalHttpRequest(request, options.allowedPorts)
  } catch (err) {
    return Promise.reject(err instanceof ServiceBusError ? err : bad((err as Error).message, err))
  }
  return new Promise((resolve, reject) => {
    let settled = false
    const finish = (err: ServiceBusError | undefined, res?: LocalHttpResponse): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined) { outgoing.destroy(); reject(err) } else resolve(res as LocalHttpResponse)
    }
    const headers: Record<string, string | string[]> = { ...req.headers }
    if (req.body !== undefined) headers['content-length'] = String(req.body.byteLength)
    let outgoing: http.ClientRequest
    try {
      outgoing = http.request({ host: '127.0.0.1', port: req.port, method: req.method, path: req.path, headers, agent: false })
    } catch (err) {
      // node:http validates header values and paths synchronously (ERR_INVALID_CHAR, ERR_UNESCAPED_CHARACTERS).
      reject(bad((err as Error).message, err))
      return
    }
    const timer = setTimeout(() => {
      finish(new ServiceBusError('timeout', `no complete response from 127.0.0.1:${req.port} within ${timeoutMs} ms`))
    }, timeoutMs)
    outgoing.on('error', (err: NodeJS.ErrnoException) => {
      const reason = err.code === 'ECONNREFUSED' ? 'connect-failed' : 'http-error'
      finish(new ServiceBusError(reason, `${req.method} 127.0.0.1:${req.port}${req.path}: ${err.message}`, { cause: err }))
    })
    outgoing.on('response', res => {
      res.on('error', err => finish(new ServiceBusError('http-error', `response from 127.0.0.1:${req.port} failed: ${err.message}`, { cause: err })))
      res.on('aborted', () => finish(new ServiceBusError('http-error', `response from 127.0.0.1:${req.port} was cut off`)))
      const tooLarge = (): void => finish(new ServiceBusError('response-too-large', `response body from 127.0.0.1:${req.port} exceeds maxBodyBytes ${maxBody}`))
      const declared = Number(res.headers['content-length'])
      if (Number.isFinite(declared) && declared > maxBody) { tooLarge(); return }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > maxBody) { tooLarge(); return }
        chunks.push(chunk)
      })
      res.on('end', () => {
        const out: Record<string, string | string[]> = {}
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out[k] = v
        finish(undefined, { status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks, size) })
      })
    })
    outgoing.end(req.body)
  })
}

function bad (message: string, cause?: unknown): ServiceBusError {
  return new ServiceBusError('bad-request', message, cause === undefined ? undefined : { cause })
}
