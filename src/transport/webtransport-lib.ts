/**
 * Loading @fails-components/webtransport and deciding which mode can run.
 *
 * The library speaks WebTransport over HTTP/3 only through its optional
 * native package `@fails-components/webtransport-transport-http3-quiche`,
 * whose install step downloads a prebuilt binary from GitHub (or builds
 * libquiche from a git checkout). Where that failed (no GitHub access, as on
 * machines restricted to the npm registry) the package is simply absent, and
 * the library offers its experimental WebTransport-over-HTTP/2 fallback: all
 * streams of a session multiplexed on ONE TCP connection.
 *
 * The library reports a missing binding by printing a stack trace with
 * console.error/console.log on import; we filter exactly those lines while
 * loading it and report the fact ourselves through `webtransportStatus()`.
 *
 * Only the small part of the library's API this transport uses is typed here
 * (structurally); everything reached beyond the public API is marked
 * "internal" where it is used and guarded, so a library change degrades a
 * feature instead of crashing.
 */
import type { ReadableStream, WritableStream } from 'node:stream/web'

export type WebTransportMode = 'http3' | 'http2' | 'unavailable'

export interface WebTransportStatus {
  /** What a listener / an `auto` dial uses on this machine. */
  mode: WebTransportMode
  /** Why HTTP/3 is not used (mode `http2`) or why nothing works (mode `unavailable`). */
  reason?: string
}

// Typed as plain `string` so the compiler does not try to resolve (or type) the optional package.
export const QUICHE_PACKAGE: string = '@fails-components/webtransport-transport-http3-quiche'
const LIB_PACKAGE: string = '@fails-components/webtransport'

// ---- structural types of the library API we use ---------------------------------

export interface WtCloseInfo { closeCode?: number, reason?: string }

export interface WtBidiStream {
  readable: ReadableStream<Uint8Array>
  writable: WritableStream<Uint8Array>
}

/** Both the client `WebTransport` and the server-side session object. */
export interface WtSession {
  readonly ready: Promise<void>
  readonly closed: Promise<WtCloseInfo>
  readonly incomingBidirectionalStreams: ReadableStream<WtBidiStream>
  readonly reliability?: string
  createBidirectionalStream (): Promise<WtBidiStream>
  close (info?: { closeCode: number, reason: string }): void
}

export interface WtServerSession extends WtSession {
  readonly peerAddress?: string
}

export interface WtHashOption { algorithm: 'sha-256', value: Uint8Array }

export interface WtServerInit {
  port: number
  host: string
  secret: string
  cert: string
  privKey: string
  [tuning: string]: unknown
}

export interface WtServer {
  readonly ready: Promise<void>
  readonly closed: Promise<void>
  startServer (): void
  stopServer (): void
  address (): { port: number, host: string } | null
  sessionStream (path: string): ReadableStream<WtServerSession>
}

export interface WtLibrary {
  WebTransport: new (url: string, options: Record<string, unknown>) => WtSession
  Http2Server: new (init: WtServerInit) => WtServer
  Http3Server: new (init: WtServerInit) => WtServer
  quicheLoaded: Promise<unknown>
}

// ---- loading ------------------------------------------------------------------

interface Loaded { lib: WtLibrary | undefined, status: WebTransportStatus }

let loading: Promise<Loaded> | undefined

/** Load the library once; never rejects. */
export function loadWebTransport (): Promise<Loaded> {
  loading ??= doLoad()
  return loading
}

/** Which WebTransport mode runs on this machine, and why not HTTP/3 when it does not. Never rejects. */
export async function webtransportStatus (): Promise<WebTransportStatus> {
  return (await loadWebTransport()).status
}

/** `'http3'` (native binding present), `'http2'` (fallback only) or `'unavailable'`. Never rejects. */
export async function webtransportMode (): Promise<WebTransportMode> {
  return (await webtransportStatus()).mode
}

/** The library's own noise about the missing binding, which we report in a structured way instead. */
function isLoaderNoise (args: unknown[]): boolean {
  const first = args[0]
  return typeof first === 'string' && (first.startsWith('http3 loader:') ||
    first.startsWith('Problem loading http3-quiche transport') ||
    first.startsWith(`Did you install ${QUICHE_PACKAGE}`))
}

async function doLoad (): Promise<Loaded> {
  const origError = console.error
  const origLog = console.log
  const filteredError = (...args: unknown[]): void => { if (!isLoaderNoise(args)) origError.apply(console, args) }
  const filteredLog = (...args: unknown[]): void => { if (!isLoaderNoise(args)) origLog.apply(console, args) }
  console.error = filteredError
  console.log = filteredLog
  try {
    let lib: WtLibrary
    try {
      lib = await import(LIB_PACKAGE) as unknown as WtLibrary
    } catch (err) {
      return { lib: undefined, status: { mode: 'unavailable', reason: `${LIB_PACKAGE} cannot be loaded: ${(err as Error).message}` } }
    }
    // The library's loader promise always settles (it catches internally); the
    // server module has a twin loader that settles in the same turn, so give it one more.
    await lib.quicheLoaded
    await new Promise(resolve => setImmediate(resolve))
    let quicheError: unknown
    try {
      await import(QUICHE_PACKAGE)
    } catch (err) {
      quicheError = err
    }
    if (quicheError === undefined) return { lib, status: { mode: 'http3' } }
    const code = (quicheError as { code?: string }).code
    const missing = code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (package|module)/.test((quicheError as Error).message)
    const why = missing
      ? `the optional native package ${QUICHE_PACKAGE} is not installed (its install step downloads a prebuilt ` +
        'libquiche binding from GitHub or builds it from a git checkout, which failed or was skipped on this machine)'
      : `the native package ${QUICHE_PACKAGE} failed to load: ${(quicheError as Error).message}`
    return {
      lib,
      status: {
        mode: 'http2',
        reason: `HTTP/3 unavailable: ${why}; using the experimental WebTransport-over-HTTP/2 fallback ` +
          '(all channels share one TCP connection: head-of-line blocking under packet loss)'
      }
    }
  } finally {
    // Restore only our own wrappers: someone else may have wrapped console meanwhile.
    if (console.error === filteredError) console.error = origError
    if (console.log === filteredLog) console.log = origLog
  }
}
