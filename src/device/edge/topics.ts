/**
 * KubeEdge-compatible MQTT topics of the device twin (DESIGN.md §8 table).
 * Device id = `{namespace}/{name}`; a device's topics all start with
 * `$hw/events/device/{ns}/{name}/`.
 */

export const DEVICE_PREFIX = '$hw/events/device/'
export const NODE_PREFIX = '$hw/events/node/'
export const UPLOAD_PREFIX = '$hw/events/upload/'
export const UPLOAD_RECORDS = 'SYS/dis/upload_records'

/** Inbound (mapper → edge) requests the twin engine handles. */
export type InboundKind = 'twin-update' | 'twin-get' | 'state-update'

export type ParsedTopic =
  | { kind: InboundKind, namespace: string, name: string }
  | { kind: 'membership-get', nodeId: string }
  | { kind: 'upload' }
  /** Edge → mapper topics (results, delta, document, updated, membership results) and anything else: not handled. */
  | { kind: 'other' }

const DEVICE_SUFFIX: Record<string, InboundKind> = {
  'twin/update': 'twin-update',
  'twin/get': 'twin-get',
  'state/update': 'state-update'
}

/** Classify a concrete (wildcard-free) topic. */
export function parseTopic (topic: string): ParsedTopic {
  if (topic.startsWith(DEVICE_PREFIX)) {
    const rest = topic.slice(DEVICE_PREFIX.length).split('/')
    if (rest.length < 4) return { kind: 'other' }
    const [namespace, name] = rest as [string, string]
    const kind = DEVICE_SUFFIX[rest.slice(2).join('/')]
    if (kind === undefined || namespace === '' || name === '') return { kind: 'other' }
    return { kind, namespace, name }
  }
  if (topic.startsWith(NODE_PREFIX)) {
    const rest = topic.slice(NODE_PREFIX.length).split('/')
    if (rest.length === 3 && rest[1] === 'membership' && rest[2] === 'get' && rest[0] !== '') return { kind: 'membership-get', nodeId: rest[0] as string }
    return { kind: 'other' }
  }
  if (topic.startsWith(UPLOAD_PREFIX) || topic === UPLOAD_RECORDS) return { kind: 'upload' }
  return { kind: 'other' }
}

/** `$hw/events/device/{ns}/{name}/` */
export function devicePrefix (namespace: string, name: string): string {
  return `${DEVICE_PREFIX}${namespace}/${name}/`
}

export function deviceTopic (namespace: string, name: string, suffix: string): string {
  return devicePrefix(namespace, name) + suffix
}

export function membershipTopic (nodeId: string, suffix: 'get' | 'get/result' | 'updated'): string {
  return `${NODE_PREFIX}${nodeId}/membership/${suffix}`
}

/** Topic filters the engine subscribes to on a broker. */
export const ENGINE_FILTERS = [
  `${DEVICE_PREFIX}+/+/twin/update`,
  `${DEVICE_PREFIX}+/+/twin/get`,
  `${DEVICE_PREFIX}+/+/state/update`,
  `${NODE_PREFIX}+/membership/get`,
  `${UPLOAD_PREFIX}#`,
  UPLOAD_RECORDS
] as const

/** MQTT topic-level names must not contain wildcards or separators (device names come from the cloud). */
export function isSafeLevel (s: string): boolean {
  return s.length > 0 && !/[+#/\u0000]/.test(s)
}
