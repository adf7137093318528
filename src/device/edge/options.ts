/**
 * EdgeNode option `devices` (issue 5): validated once, naming the option,
 * then frozen.
 */
import { InvalidOptionError } from '../../errors.js'
import { boolOption, enumOption, intOption, stringOption } from '../../util/options.js'
import type { LocalCredential } from './acl.js'
import { DEFAULT_AUTH_LIMITS, type AuthLimits } from './auth.js'
import { DEFAULT_SESSION_LIMITS, type SessionLimits } from './client-ids.js'

export type BrokerMode = 'internal' | 'external' | 'both' | 'none'
/** Twin payload semantics (README "KubeEdge mappers"). */
export type CompatMode = 'kubeedge' | 'strict'

export interface DeviceOptions {
  /**
   * `internal`: embedded broker; `external`: connect to an existing broker; `both` (KubeEdge mqttMode 0/1/2);
   * `none`: no MQTT at all, the twins serve DMI mappers only (mapper-framework, KubeEdge ≥ 1.15, issue 14). @default 'internal'
   */
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
  /**
   * `kubeedge`: payloads and twin semantics as KubeEdge's DeviceTwin (stock mappers work unchanged);
   * `strict`: typed validation, refusals for what KubeEdge tolerates (README lists the differences). @default 'strict'
   */
  compat?: CompatMode
  /** Read `$hw/events/device/{name}/…` (KubeEdge ≤ 1.16 single-level ids) as `{legacyNamespace}/{name}`. @default false */
  legacyTopics?: boolean
  /** Namespace of single-level device ids. @default 'default' */
  legacyNamespace?: string
  /**
   * Unknown twin keys in a `twin/update`: `optional` adds them as optional string-typed twins (KubeEdge),
   * `refuse` answers 404. @default 'optional' with compat 'kubeedge', 'refuse' with 'strict'
   */
  extraProperties?: 'optional' | 'refuse'
  /** Accept CONNECT without credentials from loopback peers only, as the node's mapper (all its devices). @default false */
  allowAnonymous?: boolean
  /** Client-id sessions: per-principal quota, offline queue bound, expiry. */
  sessions?: Partial<SessionLimits>
  /** Login flood limits (auth.ts). */
  auth?: Partial<AuthLimits>
}

export interface ResolvedDeviceOptions {
  readonly mode: BrokerMode
  readonly mqtt: { readonly host: string, readonly port: number, readonly tls?: { cert: string, key: string, ca?: string }, readonly ws?: { host?: string, port: number } }
  readonly external?: { readonly url: string, readonly username?: string, readonly password?: string, readonly clientId?: string, readonly reconnectPeriodMs?: number }
  readonly maxPayloadBytes: number
  readonly maxPending: number
  readonly credentials: readonly LocalCredential[]
  readonly authCacheMs: number
  readonly compat: CompatMode
  /** Namespace of single-level ids, or undefined when legacy topics are off. */
  readonly legacyNamespace: string | undefined
  readonly extraProperties: 'optional' | 'refuse'
  readonly allowAnonymous: boolean
  readonly sessions: Readonly<SessionLimits>
  readonly auth: Readonly<AuthLimits>
}

export function resolveDeviceOptions (o: DeviceOptions): ResolvedDeviceOptions {
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('devices', 'must be an object')
  const mode = enumOption<BrokerMode>('devices.mode', o.mode, ['internal', 'external', 'both', 'none'], 'internal')
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
  if (mode === 'external' || mode === 'both') {
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
    if (c.role !== undefined && c.role !== 'operator' && c.role !== 'mapper') throw new InvalidOptionError(`${n}.role`, 'must be "operator" or "mapper"')
    if (c.devices !== '*' && !(Array.isArray(c.devices) && c.devices.every(d => typeof d === 'string' && /^[^/+#]+\/[^/+#]+$/.test(d)))) {
      throw new InvalidOptionError(`${n}.devices`, 'must be "*" or a list of "{namespace}/{name}"')
    }
  })
  const compat = enumOption<CompatMode>('devices.compat', o.compat, ['kubeedge', 'strict'], 'strict')
  const legacyNamespace = stringOption('devices.legacyNamespace', o.legacyNamespace, 'default') as string
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(legacyNamespace)) throw new InvalidOptionError('devices.legacyNamespace', 'must be a DNS-1123 label')
  const s = o.sessions ?? {}
  const a = o.auth ?? {}
  const d = DEFAULT_SESSION_LIMITS
  const da = DEFAULT_AUTH_LIMITS
  return Object.freeze({
    compat,
    legacyNamespace: boolOption('devices.legacyTopics', o.legacyTopics, false) ? legacyNamespace : undefined,
    extraProperties: enumOption<'optional' | 'refuse'>('devices.extraProperties', o.extraProperties, ['optional', 'refuse'], compat === 'kubeedge' ? 'optional' : 'refuse'),
    allowAnonymous: boolOption('devices.allowAnonymous', o.allowAnonymous, false),
    sessions: Object.freeze({
      maxSessionsPerPrincipal: intOption('devices.sessions.maxSessionsPerPrincipal', s.maxSessionsPerPrincipal, d.maxSessionsPerPrincipal, 0, 100_000),
      maxQueuedPerClient: intOption('devices.sessions.maxQueuedPerClient', s.maxQueuedPerClient, d.maxQueuedPerClient, 1, 10_000_000),
      sessionExpiryMs: intOption('devices.sessions.sessionExpiryMs', s.sessionExpiryMs, d.sessionExpiryMs, 1000)
    }),
    auth: Object.freeze({
      maxConcurrent: intOption('devices.auth.maxConcurrent', a.maxConcurrent, da.maxConcurrent, 1, 1024),
      maxQueued: intOption('devices.auth.maxQueued', a.maxQueued, da.maxQueued, 0, 1_000_000),
      queueTimeoutMs: intOption('devices.auth.queueTimeoutMs', a.queueTimeoutMs, da.queueTimeoutMs, 1),
      failureWindowMs: intOption('devices.auth.failureWindowMs', a.failureWindowMs, da.failureWindowMs, 1),
      maxFailuresPerSource: intOption('devices.auth.maxFailuresPerSource', a.maxFailuresPerSource, da.maxFailuresPerSource, 1),
      maxFailuresPerUsername: intOption('devices.auth.maxFailuresPerUsername', a.maxFailuresPerUsername, da.maxFailuresPerUsername, 1),
      knownGoodMs: intOption('devices.auth.knownGoodMs', a.knownGoodMs, da.knownGoodMs, 0)
    }),
    mode,
    mqtt: Object.freeze(mqtt),
    ...(external !== undefined ? { external: Object.freeze(external) } : {}),
    maxPayloadBytes: intOption('devices.maxPayloadBytes', o.maxPayloadBytes, 65_536, 1, 256 * 1024 * 1024),
    maxPending: intOption('devices.maxPending', o.maxPending, 10_000, 1),
    credentials: Object.freeze(credentials.map(c => Object.freeze({ ...c }))),
    authCacheMs: intOption('devices.authCacheMs', o.authCacheMs, 60_000, 0)
  })
}
