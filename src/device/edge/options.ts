/**
 * EdgeNode option `devices` (issue 5): validated once, naming the option,
 * then frozen.
 */
import { InvalidOptionError } from '../../errors.js'
import { enumOption, intOption, stringOption } from '../../util/options.js'
import type { LocalCredential } from './acl.js'

export type BrokerMode = 'internal' | 'external' | 'both'

export interface DeviceOptions {
  /** `internal`: embedded broker; `external`: connect to an existing broker; `both` (KubeEdge mqttMode 0/1/2). @default 'internal' */
  mode?: BrokerMode
  /** Embedded broker listeners. @default { host: '127.0.0.1', port: 1883 } */
  mqtt?: { host?: string, port?: number, tls?: { cert: string, key: string, ca?: string }, ws?: { host?: string, port: number } }
  /** External broker (modes `external`, `both`). */
  external?: { url: string, username?: string, password?: string, clientId?: string, reconnectPeriodMs?: number }
  /** Largest accepted MQTT payload; larger ones get `EF_TWIN_TOO_LARGE`. @default 65536 */
  maxPayloadBytes?: number
  /** Mapper requests processed at once before `EF_TWIN_BUSY`. @default 10000 */
  maxPending?: number
  /** Locally configured credentials (offline bootstrap, demos). @default [] */
  credentials?: LocalCredential[]
  /** How long a successful credential check is cached. @default 60000 */
  authCacheMs?: number
}

export interface ResolvedDeviceOptions {
  readonly mode: BrokerMode
  readonly mqtt: { readonly host: string, readonly port: number, readonly tls?: { cert: string, key: string, ca?: string }, readonly ws?: { host?: string, port: number } }
  readonly external?: { readonly url: string, readonly username?: string, readonly password?: string, readonly clientId?: string, readonly reconnectPeriodMs?: number }
  readonly maxPayloadBytes: number
  readonly maxPending: number
  readonly credentials: readonly LocalCredential[]
  readonly authCacheMs: number
}

export function resolveDeviceOptions (o: DeviceOptions): ResolvedDeviceOptions {
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('devices', 'must be an object')
  const mode = enumOption<BrokerMode>('devices.mode', o.mode, ['internal', 'external', 'both'], 'internal')
  const m = o.mqtt ?? {}
  const mqtt: { host: string, port: number, tls?: { cert: string, key: string, ca?: string }, ws?: { host?: string, port: number } } = {
    host: stringOption('devices.mqtt.host', m.host, '127.0.0.1') as string,
    port: intOption('devices.mqtt.port', m.port, 1883, 0, 65535)
  }
  if (m.tls !== undefined) {
    if (typeof m.tls?.cert !== 'string' || typeof m.tls.key !== 'string') throw new InvalidOptionError('devices.mqtt.tls', 'needs PEM strings cert and key')
    mqtt.tls = { ...m.tls }
  }
  if (m.ws !== undefined) {
    mqtt.ws = { port: intOption('devices.mqtt.ws.port', m.ws?.port, 0, 0, 65535) }
    if (m.ws.host !== undefined) mqtt.ws.host = stringOption('devices.mqtt.ws.host', m.ws.host) as string
  }
  let external: ResolvedDeviceOptions['external']
  if (mode !== 'internal') {
    const e = o.external
    if (e === undefined || typeof e.url !== 'string' || !/^(mqtts?|wss?|tcp|ssl):\/\//.test(e.url)) {
      throw new InvalidOptionError('devices.external.url', `is required in mode "${mode}" (mqtt://host:port)`)
    }
    external = {
      url: e.url,
      ...(e.username !== undefined ? { username: stringOption('devices.external.username', e.username) as string } : {}),
      ...(e.password !== undefined ? { password: stringOption('devices.external.password', e.password) as string } : {}),
      ...(e.clientId !== undefined ? { clientId: stringOption('devices.external.clientId', e.clientId) as string } : {}),
      reconnectPeriodMs: intOption('devices.external.reconnectPeriodMs', e.reconnectPeriodMs, 1000, 10)
    }
  }
  const credentials = o.credentials ?? []
  if (!Array.isArray(credentials)) throw new InvalidOptionError('devices.credentials', 'must be an array')
  credentials.forEach((c, i) => {
    const n = `devices.credentials[${i}]`
    if (typeof c?.username !== 'string' || c.username === '') throw new InvalidOptionError(`${n}.username`, 'is required')
    if (typeof c.password !== 'string' && typeof c.passwordHash !== 'string') throw new InvalidOptionError(n, 'needs password or passwordHash')
    if (c.devices !== '*' && !(Array.isArray(c.devices) && c.devices.every(d => typeof d === 'string' && /^[^/+#]+\/[^/+#]+$/.test(d)))) {
      throw new InvalidOptionError(`${n}.devices`, 'must be "*" or a list of "{namespace}/{name}"')
    }
  })
  return Object.freeze({
    mode,
    mqtt: Object.freeze(mqtt),
    ...(external !== undefined ? { external: Object.freeze(external) } : {}),
    maxPayloadBytes: intOption('devices.maxPayloadBytes', o.maxPayloadBytes, 65_536, 1, 256 * 1024 * 1024),
    maxPending: intOption('devices.maxPending', o.maxPending, 10_000, 1),
    credentials: Object.freeze(credentials.map(c => Object.freeze({ ...c }))),
    authCacheMs: intOption('devices.authCacheMs', o.authCacheMs, 60_000, 0)
  })
}
