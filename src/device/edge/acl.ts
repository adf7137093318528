/**
 * Who may connect to the embedded broker and which topics they may touch
 * (DESIGN.md §8, §9). Credentials arrive from the cloud as scrypt hashes only
 * (device credentials inside snapshots, mapper grants), plus an optional
 * locally configured list (`devices.credentials`, CLI `--mqtt-credential`).
 *
 *  - device principal: only its own `$hw/events/device/{ns}/{name}/…` and
 *    `$ke/events/device/{ns}/{name}/…` topics; subscription filters must
 *    stay inside them literally (no wildcard reaching out);
 *  - mapper principal (cloud grant, local `role: 'mapper'`, or an anonymous
 *    loopback client with `allowAnonymous`): the topics of its devices (a
 *    list, or every device bound to the node) and `$hw/events/node/{node}/…`.
 *    A wildcard filter is granted when it can match any of those topics
 *    (mapper-sdk-go subscribes `$hw/events/node/#`, tools `$hw/events/#`);
 *    what it then receives is filtered message by message (`mayRead`, wired
 *    to aedes `authorizeForward`), so a wildcard never shows other devices;
 *  - operator (local `role: 'operator'` or `devices: '*'`): everything.
 * Everyone may publish upload records (`$hw/events/upload/#`,
 * `SYS/dis/upload_records`); only operators read them back.
 */
import { topicOwners, DATA_PREFIX, DEVICE_PREFIX, NODE_PREFIX, type TopicOptions } from './topics.js'

export type Principal =
  | { kind: 'device', username: string, device: string }
  /** `devices: 'node'` = every device bound to this node (anonymous loopback mappers, `*` local mapper credentials). */
  | { kind: 'mapper', username: string, nodeId: string, devices: ReadonlySet<string> | 'node', anonymous?: boolean }
  | { kind: 'local', username: string, devices: ReadonlySet<string> }
  | { kind: 'operator', username: string }

/** A locally configured credential (edge option `devices.credentials`). */
export interface LocalCredential {
  username: string
  /** Plain secret (demo) or `passwordHash` (scrypt, as the cloud issues). One is required. */
  password?: string
  passwordHash?: string
  /** Device ids `{ns}/{name}` this credential may act for, or '*' (operator: every topic; mapper: every device of the node). */
  devices: string[] | '*'
  /**
   * `operator`: sees and may publish everything; `mapper`: the listed devices
   * (or all of the node's) plus the node's topics, wildcards filtered per
   * message. Without a role: `'*'` is an operator, a list acts for those devices.
   */
  role?: 'operator' | 'mapper'
}

export interface Entry { hash?: string, plain?: string, principal: Principal }

/** username → credential entries, kept current from snapshots, grants and local config. */
export class CredentialIndex {
  readonly #byDevice = new Map<string, Array<{ username: string, passwordHash: string }>>()
  readonly #grants = new Map<string, { username: string, passwordHash: string, nodeId: string, devices: string[] }>()
  readonly #local: LocalCredential[]
  readonly #nodeId: string
  /** Live set of every device bound to this node (read by 'node'-wide mapper principals). */
  readonly nodeDevices = new Set<string>()
  #index: Map<string, Entry[]> | undefined

  constructor (local: LocalCredential[] = [], nodeId = '') { this.#local = local; this.#nodeId = nodeId }

  setDevice (id: string, creds: Array<{ username: string, passwordHash: string }>): void { this.#byDevice.set(id, creds); this.nodeDevices.add(id); this.#index = undefined }
  removeDevice (id: string): void { this.#byDevice.delete(id); this.nodeDevices.delete(id); this.#index = undefined }
  setGrant (name: string, g: { username: string, passwordHash: string, nodeId: string, devices: string[] }): void { this.#grants.set(name, g); this.#index = undefined }
  removeGrant (name: string): void { this.#grants.delete(name); this.#index = undefined }

  lookup (username: string): Entry[] {
    if (this.#index === undefined) this.#index = this.#build()
    return this.#index.get(username) ?? []
  }

  /** True when `key` is a username or device id someone owns (clientId namespaces, client-ids.ts). */
  owns (key: string): boolean {
    return this.lookup(key).length > 0 || this.#byDevice.has(key)
  }

  /** The principal of an anonymous loopback client: the node's mapper grant (issue 14 item 9). */
  anonymous (): Principal {
    return { kind: 'mapper', username: '(anonymous)', nodeId: this.#nodeId, devices: 'node', anonymous: true }
  }

  #build (): Map<string, Entry[]> {
    const m = new Map<string, Entry[]>()
    const add = (u: string, e: Entry): void => { const l = m.get(u) ?? []; l.push(e); m.set(u, l) }
    for (const [device, creds] of this.#byDevice) for (const c of creds) add(c.username, { hash: c.passwordHash, principal: { kind: 'device', username: c.username, device } })
    for (const g of this.#grants.values()) add(g.username, { hash: g.passwordHash, principal: { kind: 'mapper', username: g.username, nodeId: g.nodeId, devices: new Set(g.devices) } })
    for (const l of this.#local) {
      const principal = localPrincipal(l, this.#nodeId)
      add(l.username, l.passwordHash !== undefined ? { hash: l.passwordHash, principal } : { plain: l.password ?? '', principal })
    }
    return m
  }
}

function localPrincipal (l: LocalCredential, nodeId: string): Principal {
  if (l.role === 'mapper') return { kind: 'mapper', username: l.username, nodeId, devices: l.devices === '*' ? 'node' : new Set(l.devices) }
  if (l.role === 'operator' || l.devices === '*') return { kind: 'operator', username: l.username }
  return { kind: 'local', username: l.username, devices: new Set(l.devices) }
}

/** What the ACL needs beyond the principal. */
export interface AclContext extends TopicOptions {
  /** Every device bound to this node (for `devices: 'node'`). */
  nodeDevices: ReadonlySet<string>
}

function actsFor (p: Principal, id: string, ctx: AclContext): boolean {
  switch (p.kind) {
    case 'device': return p.device === id
    case 'operator': return true
    case 'local': return p.devices.has(id)
    case 'mapper': return p.devices === 'node' ? ctx.nodeDevices.has(id) : p.devices.has(id)
  }
}

/** May `p` receive a message published on the concrete `topic`? (aedes authorizeForward) */
export function mayRead (p: Principal, topic: string, ctx: AclContext): boolean {
  if (p.kind === 'operator') return true
  const o = topicOwners(topic, ctx)
  if (o.devices.some(id => actsFor(p, id, ctx))) return true
  return p.kind === 'mapper' && o.nodeId === p.nodeId
}

export function mayPublish (p: Principal, topic: string, ctx: AclContext): boolean {
  if (p.kind === 'operator') return true
  const o = topicOwners(topic, ctx)
  if (o.upload) return true
  if (o.devices.some(id => actsFor(p, id, ctx))) return true
  return p.kind === 'mapper' && o.nodeId === p.nodeId
}

export function maySubscribe (p: Principal, filter: string, ctx: AclContext): boolean {
  if (p.kind === 'operator') return true
  if (p.kind === 'device') {
    // Devices stay literal: the filter's fixed prefix must be one of their own prefixes.
    const prefixes = devicePrefixes(p.device, ctx)
    return prefixes.some(prefix => filter.startsWith(prefix))
  }
  const spaces: string[] = [`${NODE_PREFIX}${p.kind === 'mapper' ? p.nodeId : '\u0000'}/#`]
  const ids = p.kind === 'mapper' && p.devices === 'node' ? undefined : p.devices as ReadonlySet<string>
  if (ids === undefined) spaces.push(`${DEVICE_PREFIX}#`, `${DATA_PREFIX}#`) // filtered per message by mayRead
  else for (const id of ids) for (const prefix of devicePrefixes(id, ctx)) spaces.push(prefix + '#')
  return spaces.some(s => intersects(filter, s))
}

function devicePrefixes (id: string, ctx: TopicOptions): string[] {
  const [ns, name] = id.split('/') as [string, string]
  const out = [`${DEVICE_PREFIX}${ns}/${name}/`, `${DATA_PREFIX}${ns}/${name}/`]
  if (ctx.legacyNamespace === ns) out.push(`${DEVICE_PREFIX}${name}/`, `${DATA_PREFIX}${name}/`)
  return out
}

/** Can some concrete topic match both MQTT filters? (`b` is a literal prefix ending in `#`.) */
export function intersects (a: string, b: string): boolean {
  const x = a.split('/')
  const y = b.split('/')
  for (let i = 0; ; i++) {
    const u = x[i]
    const v = y[i]
    if (u === '#' || v === '#') return true
    if (u === undefined || v === undefined) return u === undefined && v === undefined
    if (u !== '+' && v !== '+' && u !== v) return false
  }
}
