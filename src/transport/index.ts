/**
 * Transport registry: the URL scheme selects the implementation (DESIGN.md §3).
 * Native-backed transports are loaded lazily, so a missing binding costs
 * nothing until used and then surfaces as TransportUnavailableError — never a
 * crash at import time.
 */
import { TransportUnavailableError, UnsupportedUrlError, toError } from '../errors.js'
import { memoryTransport } from './memory.js'
import type { Connection, DialOptions, ListenOptions, Listener, Transport } from './types.js'

type Loader = () => Promise<Transport>

const loaders = new Map<string, Loader>()
const loaded = new Map<string, Promise<Transport>>()

/** Register a transport (or a lazy loader of one) for its schemes. Later registrations win. */
export function registerTransport (transport: Transport | { schemes: readonly string[], load: Loader }): void {
  const load: Loader = 'load' in transport ? transport.load : async () => transport
  for (const scheme of transport.schemes) {
    loaders.set(scheme, load)
    loaded.delete(scheme)
  }
}

registerTransport(memoryTransport)
registerTransport({ schemes: ['ws', 'wss'], load: async () => (await import(/* lazy */ './ws.js')).wsTransport })
registerTransport({ schemes: ['quic'], load: async () => (await import('./quic.js')).quicTransport })
registerTransport({
  schemes: ['https', 'webtransport'],
  load: async () => (await import('./webtransport.js')).webtransportTransport
})

export function parseUrl (url: string | URL): URL {
  if (url instanceof URL) return url
  try {
    return new URL(url)
  } catch (err) {
    throw new UnsupportedUrlError(String(url), 'malformed URL', { cause: err })
  }
}

/** The transport for a URL, probed (throws TransportUnavailableError with the reason if it cannot run here). */
export async function transportFor (url: string | URL): Promise<Transport> {
  const u = parseUrl(url)
  const scheme = u.protocol.replace(/:$/, '')
  const load = loaders.get(scheme)
  if (load === undefined) {
    throw new UnsupportedUrlError(u.href, `no transport for scheme "${scheme}" (known: ${[...loaders.keys()].join(', ')})`)
  }
  let p = loaded.get(scheme)
  if (p === undefined) {
    p = load().then(async t => { await t.probe(); return t }, (err: unknown) => {
      throw err instanceof TransportUnavailableError ? err : new TransportUnavailableError(scheme, toError(err).message, { cause: err })
    })
    loaded.set(scheme, p)
  }
  return await p
}

/** Dial `url` with the transport its scheme selects. */
export async function dial (url: string | URL, options?: DialOptions): Promise<Connection> {
  const u = parseUrl(url)
  return await (await transportFor(u)).dial(u, options)
}

/** Listen on `url` with the transport its scheme selects. */
export async function listen (url: string | URL, options: ListenOptions): Promise<Listener> {
  const u = parseUrl(url)
  return await (await transportFor(u)).listen(u, options)
}

export type * from './types.js'
