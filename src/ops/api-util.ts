/**
 * HTTP plumbing shared by the hub's fleet API (admin-fleet.ts), the edge's
 * console API (admin-edge.ts), the dead-letter routes both serve
 * (dead-letter-api.ts), the hub's message routes (hub/admin-messages.ts) and
 * the device registry API (device/cloud/http-api.ts): JSON answers, typed API errors with a stable code,
 * bounded JSON bodies, integer query parameters and the audit log line.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from './logger.js'
import { principalOf } from './http-guard.js'

/** An answer other than 200: HTTP status plus the stable `code` the body carries. */
export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

const JSON_TYPE = 'application/json; charset=utf-8'

export function send (res: ServerResponse, status: number, body: unknown): true {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
  res.end(text)
  return true
}

/** An ApiError as its JSON answer; anything else is rethrown (the admin server answers 500). */
export function sendError (res: ServerResponse, err: unknown): true {
  if (res.headersSent) { res.destroy(); return true }
  if (err instanceof ApiError) return send(res, err.status, { code: err.code, message: err.message })
  throw err
}

export function intParam (q: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const v = q.get(name)
  if (v === null || v === '') return def
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ApiError(400, 'EF_BAD_REQUEST', `${name} must be an integer from ${min} to ${max}`)
  return n
}

export function seqOf (s: string | undefined): number {
  const n = Number(s)
  if (!Number.isSafeInteger(n) || n < 1) throw new ApiError(400, 'EF_BAD_REQUEST', 'the sequence number must be a positive integer')
  return n
}

/** The request says its body is JSON (`application/json`, any parameters). */
export function isJsonRequest (req: IncomingMessage): boolean {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() === 'application/json'
}

/**
 * A JSON body of at most `max` bytes, any JSON value: 415 unless application/json, 413 as soon as the
 * declared or the read length passes `max` (nothing more is buffered), 400 EF_BAD_JSON if malformed.
 */
export async function readJsonBody (req: IncomingMessage, max: number): Promise<unknown> {
  if (!isJsonRequest(req)) throw new ApiError(415, 'EF_UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json')
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > max) throw new ApiError(413, 'EF_BODY_TOO_LARGE', `body larger than ${max} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > max) throw new ApiError(413, 'EF_BODY_TOO_LARGE', `body larger than ${max} bytes`)
    chunks.push(chunk)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch (err) {
    throw new ApiError(400, 'EF_BAD_JSON', `malformed JSON: ${(err as Error).message}`)
  }
}

/** A JSON object body of at most 64 KiB (empty body: {}). */
export async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!isJsonRequest(req)) throw new ApiError(415, 'EF_UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json')
  let size = 0
  const chunks: Buffer[] = []
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > 65_536) throw new ApiError(413, 'EF_BODY_TOO_LARGE', 'body larger than 64 KiB')
    chunks.push(c)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return {}
  try {
    const v = JSON.parse(text) as unknown
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object')
    return v as Record<string, unknown>
  } catch (err) {
    throw new ApiError(400, 'EF_BAD_JSON', `malformed JSON: ${(err as Error).message}`)
  }
}

/** One warn-level line per admin action, with who did it from where: the audit trail. */
export function audit (log: Logger, req: IncomingMessage, action: string, fields: Record<string, unknown>): void {
  const p = principalOf(req)
  log.warn({ audit: true, action, principal: p?.id, remote: req.socket.remoteAddress, ...fields }, `admin action: ${action}`)
}
