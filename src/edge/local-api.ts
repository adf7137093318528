/**
 * The edge's local query API (MetaManager role, DESIGN.md §6): apps on the
 * edge read the last known resources over loopback HTTP, also while the hub is
 * unreachable and after an edge restart.
 *
 *   GET /v1/resources?prefix=default/device/&limit=100  → { items: [...] }
 *   GET /v1/resources/<key>                              → one item, or 404
 *
 * Binary content is returned base64-encoded as { "$binary": "..." }.
 *
 * Host and Origin go through the shared allow-list (src/ops/http-guard.ts)
 * first: a page that rebinds its own name to 127.0.0.1 must not read the
 * edge's resources (issue 13 item 6).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Envelope } from '../codec/envelope.js'
import { InvalidOptionError } from '../errors.js'
import { checkHostAndOrigin } from '../ops/http-guard.js'

export interface ResourceView {
  key: string
  version: string | undefined
  deleted: boolean
  updatedAt: number
  envelope: Envelope | undefined
}

export interface LocalApiOptions {
  host?: string
  port?: number
  get: (key: string) => ResourceView | undefined
  list: (prefix: string, limit: number) => ResourceView[]
  /** Extra host names accepted in Host/Origin besides IP literals and localhost. */
  allowedHosts?: string[]
}

export interface LocalApi { readonly url: string, close (): Promise<void> }

function jsonSafe (v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => {
    if (x instanceof Uint8Array) return { $binary: Buffer.from(x).toString('base64') }
    if (typeof x === 'object' && x !== null && (x as { type?: unknown }).type === 'Buffer' && Array.isArray((x as { data?: unknown }).data)) {
      return { $binary: Buffer.from((x as { data: number[] }).data).toString('base64') }
    }
    if (typeof x === 'bigint') return x.toString()
    return x
  }))
}

function send (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export async function startLocalApi (o: LocalApiOptions): Promise<LocalApi> {
  const host = o.host ?? '127.0.0.1'
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) throw new InvalidOptionError('localApi.host', 'must be a loopback address')
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    try {
      const refusal = checkHostAndOrigin(req, o.allowedHosts === undefined ? {} : { allowedHosts: o.allowedHosts })
      if (refusal !== undefined) { send(res, refusal.status, { code: refusal.code, message: refusal.message }); return }
      const url = new URL(req.url ?? '/', 'http://local')
      if (req.method !== 'GET') { send(res, 405, { code: 'EF_METHOD', message: 'GET only' }); return }
      if (url.pathname === '/v1/resources') {
        const limit = Math.min(10_000, Math.max(1, Number(url.searchParams.get('limit') ?? 1000) || 1000))
        send(res, 200, { items: o.list(url.searchParams.get('prefix') ?? '', limit).map(jsonSafe) })
        return
      }
      if (url.pathname.startsWith('/v1/resources/')) {
        const key = decodeURIComponent(url.pathname.slice('/v1/resources/'.length))
        const r = o.get(key)
        if (r === undefined) send(res, 404, { code: 'EF_NOT_FOUND', message: `no resource ${key}` })
        else send(res, 200, jsonSafe(r))
        return
      }
      send(res, 404, { code: 'EF_NOT_FOUND', message: 'unknown path' })
    } catch (err) {
      send(res, 500, { code: 'EF_INTERNAL', message: (err as Error).message })
    }
  })
  server.on('clientError', (_err, socket) => { socket.destroy() })
  server.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port ?? 0, host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address() as AddressInfo
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    close: () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
