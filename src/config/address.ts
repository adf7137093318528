/**
 * One address syntax everywhere (issue 12 "impossible settings fail fast"):
 *
 * - hub and listen addresses are URLs whose scheme picks the transport:
 *   `quic://host:port`, `wss://host:port`, `https://host:port`
 *   (WebTransport), `ws://host:port` (plain; see insecure below), and
 *   `memory://name` in tests. The port is required: a default port would
 *   hide a typo.
 * - admin addresses are `host:port`, `[v6]:port`, or `http://host:port`
 *   (what `edgefabric status` also accepts), everywhere.
 *
 * Every check throws through `fail`, so the library reports
 * InvalidOptionError (naming the option) and the CLI a ConfigError naming
 * the flag — each with a correct example.
 */
import { isIP } from 'node:net'

export const HUB_SCHEMES = ['quic', 'wss', 'ws', 'https', 'webtransport', 'memory'] as const
export type HubScheme = typeof HUB_SCHEMES[number]

export type Fail = (message: string) => Error

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackName (host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  if (isIP(h) === 4) return h.startsWith('127.')
  return /^::ffff:127\./.test(h)
}

const EXAMPLE = 'quic://hub.example.com:10001 or wss://hub.example.com:10000'

/**
 * Check a hub (edge side) or listen (hub side) URL. Returns the parsed URL.
 * `ws://` to a non-loopback host needs `insecure` (issue 13 item 10).
 */
export function checkTransportUrl (text: unknown, fail: Fail, opts: { insecure?: boolean, insecureFlag?: string, listen?: boolean } = {}): URL {
  if (typeof text !== 'string' || text.trim() === '') throw fail(`expected a URL such as ${EXAMPLE}`)
  const t = text.trim()
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) {
    throw fail(`"${t}" has no scheme; the scheme picks the transport, e.g. ${EXAMPLE.replace(/hub\.example\.com/g, t.replace(/:\d+$/, '') || 'host')}`.replace(/:(\d+):(\d+)/, ':$1'))
  }
  let url: URL
  try {
    url = new URL(t)
  } catch {
    throw fail(`"${t}" is not a valid URL; expected e.g. ${EXAMPLE}`)
  }
  const scheme = url.protocol.replace(/:$/, '').toLowerCase()
  if (scheme === 'http') {
    throw fail(`"${t}": http:// is not a hub transport; use ws://${url.host} (plain) or wss://${url.host} (TLS), or quic:// / https:// (WebTransport)`)
  }
  if (!(HUB_SCHEMES as readonly string[]).includes(scheme)) {
    throw fail(`"${t}": unknown transport "${scheme}://"; use one of ${HUB_SCHEMES.filter(s => s !== 'memory').map(s => s + '://').join(', ')}`)
  }
  if (scheme === 'memory') return url
  if (url.hostname === '') throw fail(`"${t}" has no host; expected e.g. ${scheme}://hub.example.com:10001`)
  if (url.port === '') throw fail(`"${t}" has no port; write it out, e.g. ${scheme}://${url.hostname}:${scheme === 'quic' ? 10001 : 10000}`)
  if (url.pathname !== '/' && url.pathname !== '' && scheme !== 'https' && scheme !== 'webtransport') {
    throw fail(`"${t}": a ${scheme}:// address takes no path; expected ${scheme}://${url.host}`)
  }
  if (scheme === 'ws' && opts.insecure !== true && !isLoopbackName(url.hostname)) {
    throw fail(`"${t}": plain ws:// is refused: the traffic is not encrypted and the ${opts.listen === true ? 'edges cannot authenticate this hub' : 'hub is not authenticated'}, so anyone on the path can read and inject messages. Use wss://${url.host}, or accept the risk with ${opts.insecureFlag ?? '--insecure-transport'}`)
  }
  return url
}

/** Parse an admin address: `host:port`, `[v6]:port` or `http://host:port[/]`. */
export function parseAdminAddress (text: unknown, fail: Fail): { host: string, port: number } {
  const example = 'e.g. 127.0.0.1:9100 or http://127.0.0.1:9100'
  if (typeof text !== 'string' || text.trim() === '') throw fail(`expected host:port, ${example}`)
  let t = text.trim()
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) {
    if (!/^http:\/\//i.test(t)) throw fail(`"${t}": the admin API speaks http://; expected host:port, ${example}`)
    t = t.slice('http://'.length).replace(/\/+$/, '')
  }
  const m = /^(?:\[([^\]]+)\]|([^:/[\]]+)):(\d{1,5})$/.exec(t)
  const port = Number(m?.[3])
  if (m === null || !Number.isInteger(port) || port > 65535) throw fail(`"${text}" is not host:port; ${example}`)
  const host = (m[1] ?? m[2]) as string
  if (m[1] !== undefined && isIP(host) !== 6) throw fail(`"${text}": [${host}] is not an IPv6 address; ${example}`)
  return { host, port }
}

/** `http://host:port` for an admin address (brackets for IPv6). */
export function adminUrl (a: { host: string, port: number }): string {
  return `http://${isIP(a.host) === 6 ? `[${a.host}]` : a.host}:${a.port}`
}
