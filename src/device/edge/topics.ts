/**
 * KubeEdge-compatible MQTT topics of the device twin (DESIGN.md §8 table).
 * Device id = `{namespace}/{name}`; a device's topics all start with
 * `$hw/events/device/{ns}/{name}/`. Readings of mappers-go go to
 * `$ke/events/device/{id}/data/update` (mappers-go `common.TopicDataUpdate`).
 *
 * Legacy single-level ids (KubeEdge ≤ 1.16, mappers-go, kubeedge/examples):
 * `$hw/events/device/{name}/…` is read as `{legacyNamespace}/{name}` when the
 * `devices.legacyTopics` option is on (issue 14 item 7). The two readings
 * cannot collide on the inbound suffixes: a single-level topic puts the
 * suffix one level earlier, and no two-level suffix is also a legacy suffix.
 */

export const DEVICE_PREFIX = '$hw/events/device/'
export const DATA_PREFIX = '$ke/events/device/'
export const NODE_PREFIX = '$hw/events/node/'
export const UPLOAD_PREFIX = '$hw/events/upload/'
export const UPLOAD_RECORDS = 'SYS/dis/upload_records'

/** Inbound (mapper → edge) requests the twin engine handles. */
export type InboundKind = 'twin-update' | 'twin-get' | 'state-update' | 'data'

/** How a device addressed itself: `{ns}/{name}` or the legacy single level. */
export type TopicForm = 'two-level' | 'legacy'

export type ParsedTopic =
  | { kind: InboundKind, namespace: string, name: string, form: TopicForm }
  | { kind: 'membership-get', nodeId: string }
  | { kind: 'upload' }
  /** Edge → mapper topics (results, delta, document, updated, membership results) and anything else: not handled. */
  | { kind: 'other' }

const DEVICE_SUFFIX: Record<string, InboundKind> = {
  'twin/update': 'twin-update',
  'twin/get': 'twin-get',
  'state/update': 'state-update'
}

export interface TopicOptions {
  /** Namespace of single-level device ids; undefined = legacy topics off. */
  legacyNamespace?: string | undefined
}

/** Classify a concrete (wildcard-free) topic. */
export function parseTopic (topic: string, o: TopicOptions = {}): ParsedTopic {
  if (topic.startsWith(DEVICE_PREFIX)) {
    const rest = topic.slice(DEVICE_PREFIX.length).split('/')
    if (rest.length >= 4) {
      const [namespace, name] = rest as [string, string]
      const kind = DEVICE_SUFFIX[rest.slice(2).join('/')]
      if (kind !== undefined && namespace !== '' && name !== '') return { kind, namespace, name, form: 'two-level' }
    }
    if (o.legacyNamespace !== undefined && rest.length === 3 && rest[0] !== '') {
      const kind = DEVICE_SUFFIX[rest.slice(1).join('/')]
      if (kind !== undefined) return { kind, namespace: o.legacyNamespace, name: rest[0] as string, form: 'legacy' }
    }
    return { kind: 'other' }
  }
  if (topic.startsWith(DATA_PREFIX)) {
    const rest = topic.slice(DATA_PREFIX.length).split('/')
    if (rest.length === 4 && rest[2] === 'data' && rest[3] === 'update' && rest[0] !== '' && rest[1] !== '') {
      return { kind: 'data', namespace: rest[0] as string, name: rest[1] as string, form: 'two-level' }
    }
    if (o.legacyNamespace !== undefined && rest.length === 3 && rest[1] === 'data' && rest[2] === 'update' && rest[0] !== '') {
      return { kind: 'data', namespace: o.legacyNamespace, name: rest[0] as string, form: 'legacy' }
    }
    return { kind: 'other' }
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

export function deviceTopic (namespace: string, name: string, suffix: string, form: TopicForm = 'two-level'): string {
  return form === 'legacy' ? `${DEVICE_PREFIX}${name}/${suffix}` : devicePrefix(namespace, name) + suffix
}

export function membershipTopic (nodeId: string, suffix: 'get' | 'get/result' | 'updated'): string {
  return `${NODE_PREFIX}${nodeId}/membership/${suffix}`
}

/** Topic filters the engine subscribes to on a broker. */
export function engineFilters (o: TopicOptions = {}): string[] {
  const f = [
    `${DEVICE_PREFIX}+/+/twin/update`,
    `${DEVICE_PREFIX}+/+/twin/get`,
    `${DEVICE_PREFIX}+/+/state/update`,
    `${DATA_PREFIX}+/+/data/update`,
    `${NODE_PREFIX}+/membership/get`,
    `${UPLOAD_PREFIX}#`,
    UPLOAD_RECORDS
  ]
  if (o.legacyNamespace !== undefined) {
    f.push(`${DEVICE_PREFIX}+/twin/update`, `${DEVICE_PREFIX}+/twin/get`, `${DEVICE_PREFIX}+/state/update`, `${DATA_PREFIX}+/data/update`)
  }
  return f
}

/** @deprecated kept for callers of the two-level set; use engineFilters(). */
export const ENGINE_FILTERS = engineFilters()

/** MQTT topic-level names must not contain wildcards or separators (device names come from the cloud). */
export function isSafeLevel (s: string): boolean {
  return s.length > 0 && !/[+#/\u0000]/.test(s)
}

/**
 * Which device or node a concrete topic belongs to, for the ACL: every
 * reading (two-level and, with legacy topics on, single-level) — a principal
 * may touch the topic when it owns any of them.
 */
export function topicOwners (topic: string, o: TopicOptions = {}): { devices: string[], nodeId?: string, upload: boolean } {
  const out: { devices: string[], nodeId?: string, upload: boolean } = { devices: [], upload: false }
  if (topic.startsWith(UPLOAD_PREFIX) || topic === UPLOAD_RECORDS) { out.upload = true; return out }
  for (const prefix of [DEVICE_PREFIX, DATA_PREFIX]) {
    if (!topic.startsWith(prefix)) continue
    const rest = topic.slice(prefix.length).split('/')
    if (rest.length >= 3 && rest[0] !== '' && rest[1] !== '') out.devices.push(`${rest[0] as string}/${rest[1] as string}`)
    if (o.legacyNamespace !== undefined && rest.length >= 2 && rest[0] !== '') out.devices.push(`${o.legacyNamespace}/${rest[0] as string}`)
    return out
  }
  if (topic.startsWith(NODE_PREFIX)) {
    const rest = topic.slice(NODE_PREFIX.length).split('/')
    if (rest.length >= 2 && rest[0] !== '') out.nodeId = rest[0] as string
  }
  return out
}
