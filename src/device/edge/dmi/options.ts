/**
 * EdgeNode option `dmi` (issue 14 part 2): the KubeEdge DMI gRPC interface.
 * Validated once, naming the option, then frozen.
 */
import { isAbsolute, resolve } from 'node:path'
import { InvalidOptionError } from '../../../errors.js'
import { intOption, stringOption } from '../../../util/options.js'

/** edgecore's default (DeviceTwin.DMISockPath). */
export const DEFAULT_DMI_SOCKET = '/etc/kubeedge/dmi.sock'

export interface DmiOptions {
  /** Unix socket the DeviceManagerService listens on (as edgecore). @default '/etc/kubeedge/dmi.sock' */
  socket?: string
  /** Also listen on TCP, loopback only (mappers in another network namespace use the socket). @default off */
  tcp?: { host?: string, port: number }
  /** File mode of the socket: who may act as a mapper. @default 0o660 */
  socketMode?: number
  /** First retry delay after a failed push to a mapper; doubles up to `retryMaxMs`. @default 500 */
  retryMinMs?: number
  /** @default 30000 */
  retryMaxMs?: number
  /** Deadline of one call to a mapper (edgecore uses 10 s). @default 10000 */
  callTimeoutMs?: number
  /** Largest gRPC message accepted or sent. @default 4194304 */
  maxMessageBytes?: number
  /** Mappers (one per protocol) the edge remembers; beyond, MapperRegister gets RESOURCE_EXHAUSTED. @default 64 */
  maxMappers?: number
}

export interface ResolvedDmiOptions {
  readonly socket: string
  readonly tcp?: { readonly host: string, readonly port: number }
  readonly socketMode: number
  readonly retryMinMs: number
  readonly retryMaxMs: number
  readonly callTimeoutMs: number
  readonly maxMessageBytes: number
  readonly maxMappers: number
}

/** Linux sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/

export function resolveDmiOptions (o: DmiOptions): ResolvedDmiOptions {
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('dmi', 'must be an object or false')
  const raw = stringOption('dmi.socket', o.socket, DEFAULT_DMI_SOCKET) as string
  const socket = isAbsolute(raw) ? raw : resolve(raw)
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw new InvalidOptionError('dmi.socket', `path longer than ${MAX_SOCKET_PATH} bytes (unix socket limit): ${socket}`)
  let tcp: ResolvedDmiOptions['tcp']
  if (o.tcp !== undefined) {
    const host = stringOption('dmi.tcp.host', o.tcp?.host, '127.0.0.1') as string
    if (!LOOPBACK.test(host)) throw new InvalidOptionError('dmi.tcp.host', `must be a loopback address (DMI has no authentication), got ${JSON.stringify(host)}`)
    tcp = Object.freeze({ host, port: intOption('dmi.tcp.port', o.tcp.port, 0, 0, 65535) })
  }
  const retryMinMs = intOption('dmi.retryMinMs', o.retryMinMs, 500, 1)
  const retryMaxMs = intOption('dmi.retryMaxMs', o.retryMaxMs, 30_000, 1)
  if (retryMaxMs < retryMinMs) throw new InvalidOptionError('dmi.retryMaxMs', `must be at least dmi.retryMinMs (${retryMinMs})`)
  return Object.freeze({
    socket,
    ...(tcp !== undefined ? { tcp } : {}),
    socketMode: intOption('dmi.socketMode', o.socketMode, 0o660, 0, 0o777),
    retryMinMs,
    retryMaxMs,
    callTimeoutMs: intOption('dmi.callTimeoutMs', o.callTimeoutMs, 10_000, 1),
    maxMessageBytes: intOption('dmi.maxMessageBytes', o.maxMessageBytes, 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxMappers: intOption('dmi.maxMappers', o.maxMappers, 64, 1, 4096)
  })
}
