/**
 * The checks every local HTTP surface applies before routing (issue 13 items
 * 6–7): the admin server (hub and edge, with the device API and the console
 * behind it), the edge's local query API and its ServiceBus upstream endpoint.
 * One implementation, so the four servers cannot drift apart.
 *
 *  - Host allow-list (DNS rebinding): a browser that resolved `evil.example`
 *    to 127.0.0.1 still sends `Host: evil.example`. Allowed: IP literals
 *    (a rebinding needs a name), `localhost` (and `*.localhost`), and names the
 *    operator lists. A missing Host (HTTP/1.0 tools) is allowed.
 *  - Origin: when a browser sends one it must be same-origin with Host, or
 *    listed. `Origin: null` (sandboxed frames, file://) is refused.
 *  - Bearer tokens: `admin` (everything) and an optional `read` token; no
 *    token on a loopback peer is the anonymous read-only principal. Tokens are
 *    compared as SHA-256 digests in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import { writeFileAtomic } from '../util/atomic-file.js'

export type Role = 'admin' | 'read'

/** Who made a request, as decided by the admin server; routes read it with principalOf(). */
export interface Principal {
  role: Role
  /** Stable key for per-principal limits: 'admin-token', 'read-token' or 'anonymous'. */
  id: string
  anonymous: boolean
}

const principals = new WeakMap<IncomingMessage, Principal>()

/** The principal the admin server attached to `req`; undefined when no guard ran (a route used on its own server). */
export function principalOf (req: IncomingMessage): Principal | undefined {
  return principals.get(req)
}

export function setPrincipal (req: IncomingMessage, p: Principal): void {
  principals.set(req, p)
}

export function isLoopbackAddress (host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return /^::ffff:127\./i.test(host)
}

/** Hostname of a Host header value (`[::1]:80` → `::1`, `Example.COM:80` → `example.com`). */
export function hostnameOf (hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase()
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'))
  const colon = h.indexOf(':')
  return colon < 0 ? h : h.slice(0, colon)
}

export interface HostPolicy {
  /** Extra host names (lower case, no port) accepted in Host and Origin. */
  allowedHosts?: readonly string[]
  /** Extra origins (`https://grafana.example:3000`) allowed to call cross-origin. */
  allowedOrigins?: readonly string[]
}

export type GuardRefusal = { status: 421 | 403, code: 'EF_HOST_NOT_ALLOWED' | 'EF_ORIGIN_NOT_ALLOWED', message: string }

/** Host and Origin checks; undefined when the request may proceed. */
export function checkHostAndOrigin (req: IncomingMessage, policy: HostPolicy = {}): GuardRefusal | undefined {
  const host = req.headers.host
  if (host !== undefined && !hostAllowed(hostnameOf(host), policy)) {
    return { status: 421, code: 'EF_HOST_NOT_ALLOWED', message: `Host ${JSON.stringify(host)} is not an allowed name for this server (list it with allowedHosts / --admin-allowed-host)` }
  }
  const origin = req.headers.origin
  if (origin !== undefined) {
    if (policy.allowedOrigins?.includes(origin) === true) return undefined
    let o: URL | undefined
    try { o = new URL(origin) } catch { o = undefined }
    if (o === undefined || origin === 'null' || host === undefined || o.host.toLowerCase() !== host.trim().toLowerCase()) {
      return { status: 403, code: 'EF_ORIGIN_NOT_ALLOWED', message: `cross-origin requests from ${JSON.stringify(origin)} are not allowed` }
    }
  }
  return undefined
}

function hostAllowed (name: string, policy: HostPolicy): boolean {
  if (name === '' ) return false
  if (isIP(name) !== 0) return true
  if (name === 'localhost' || name.endsWith('.localhost')) return true
  return policy.allowedHosts?.some(h => h.toLowerCase() === name) === true
}

function sha (s: string): Buffer { return createHash('sha256').update(s, 'utf8').digest() }

/** Bearer tokens of the two roles. */
export class TokenSet {
  readonly #admin: Buffer | undefined
  readonly #read: Buffer | undefined
  constructor (admin: string | undefined, read?: string) {
    this.#admin = admin === undefined ? undefined : sha(admin)
    this.#read = read === undefined ? undefined : sha(read)
  }

  get hasAdmin (): boolean { return this.#admin !== undefined }

  /**
   * The role of an `Authorization` header: a role, `null` for a header that
   * carries a wrong token, undefined for no header.
   */
  roleOf (header: string | undefined): Role | null | undefined {
    if (header === undefined || header === '') return undefined
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (m === null) return null
    const d = sha(m[1] as string)
    if (this.#admin !== undefined && timingSafeEqual(d, this.#admin)) return 'admin'
    if (this.#read !== undefined && timingSafeEqual(d, this.#read)) return 'read'
    return null
  }
}

/**
 * The request's principal: a token's role, the anonymous read-only principal
 * for a loopback peer without a token, or a refusal.
 */
export function authenticate (req: IncomingMessage, tokens: TokenSet): Principal | { status: 401, code: 'EF_UNAUTHORIZED', message: string } {
  const role = tokens.roleOf(req.headers.authorization)
  if (role === 'admin') return { role, id: 'admin-token', anonymous: false }
  if (role === 'read') return { role, id: 'read-token', anonymous: false }
  if (role === null) return { status: 401, code: 'EF_UNAUTHORIZED', message: 'wrong bearer token' }
  if (isLoopbackAddress(req.socket.remoteAddress ?? '')) return { role: 'read', id: 'anonymous', anonymous: true }
  return { status: 401, code: 'EF_UNAUTHORIZED', message: 'a bearer token is required from a non-loopback peer ("Authorization: Bearer <token>")' }
}

/**
 * The admin token in `file`: read it, or at first start generate 32 random
 * bytes (base64url), write them owner-only (0600, atomically) and report
 * `created` so the caller prints it once.
 */
export async function loadOrCreateToken (file: string): Promise<{ token: string, created: boolean }> {
  try {
    const t = (await readFile(file, 'utf8')).trim()
    if (t.length >= 16) return { token: t, created: false }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const token = randomBytes(32).toString('base64url')
  await writeFileAtomic(file, token + '\n')
  return { token, created: true }
}
