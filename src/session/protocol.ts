/**
 * Session protocol (DESIGN.md §4). Session control travels as ordinary
 * envelopes in group `$session` on the `control` channel, so every transport
 * carries it unchanged and it is never queued behind data.
 *
 *   edge                                    hub
 *    | ---- transport connect (pinned) ----> |
 *    | <--- challenge {nonce, hub, versions} |
 *    | ---- hello {version, node, token, key, sig, caps, labels} --> |
 *    | <--- welcome {session, heartbeatMs, caps} | refused {code, reason, retryable}
 *    | <--> ping {t} / pong {t}              |   (either side, when it hears nothing)
 *    | <--- goodbye {reason}                 |   (e.g. replaced by a newer session)
 *
 * The node id of a session comes from the verified hello (token signed by the
 * hub + proof of the node key), never from message content afterwards.
 */
import { newMessage, type Envelope } from '../codec/envelope.js'
import { ProtocolError } from '../errors.js'

export const SESSION_GROUP = '$session'
/** Protocol versions this build speaks, newest first. */
export const PROTOCOL_VERSIONS = [1] as const
export const PROTOCOL_VERSION = 1
/** Capabilities this build offers; peers use the intersection. */
/**
 * What an edge can do, stated in hello. `devices`: the edge runs a device broker and twin engine
 * (DESIGN.md §8); without it the hub's registry shows the node's devices as not syncing and why.
 */
export const CAPABILITIES = ['ping', 'edge-to-edge', 'servicebus', 'request', 'devices'] as const

export interface ChallengeContent { nonce: Uint8Array, hub: string, versions: number[] }
export interface HelloContent {
  version: number
  node: string
  token: string
  /** Raw 32-byte Ed25519 public key of the node. */
  key: Uint8Array
  /** Signature over the challenge nonce with context `helloContext(node, hub)`. */
  sig: Uint8Array
  capabilities: string[]
  labels?: Record<string, string>
}
export interface WelcomeContent { version: number, session: string, heartbeatMs: number, capabilities: string[], hub: string }
export interface RefusedContent { code: string, reason: string, retryable: boolean }
export interface PingContent { t: number }
export interface GoodbyeContent { reason: string }

export type SessionOp = 'challenge' | 'hello' | 'welcome' | 'refused' | 'ping' | 'pong' | 'goodbye'

/** The signing context that binds a hello signature to this node and hub. */
export function helloContext (node: string, hub: string): string {
  return `edgefabric/${PROTOCOL_VERSION} hello ${node} ${hub}`
}

export function sessionMessage (operation: SessionOp, content: unknown, source: string): Envelope {
  return newMessage({ source, group: SESSION_GROUP, operation, resource: 'session', content, priority: 'control' })
}

export function isSessionMessage (env: Envelope): boolean {
  return env.router.group === SESSION_GROUP
}

function obj (env: Envelope): Record<string, unknown> {
  const c = env.content
  if (typeof c !== 'object' || c === null || c instanceof Uint8Array) {
    throw new ProtocolError(`session ${env.router.operation}: content must be an object`)
  }
  return c as Record<string, unknown>
}

function str (o: Record<string, unknown>, k: string, op: string): string {
  const v = o[k]
  if (typeof v !== 'string') throw new ProtocolError(`session ${op}: "${k}" must be a string`)
  return v
}

function bytes (o: Record<string, unknown>, k: string, op: string): Uint8Array {
  const v = o[k]
  if (!(v instanceof Uint8Array)) throw new ProtocolError(`session ${op}: "${k}" must be bytes`)
  return v
}

function num (o: Record<string, unknown>, k: string, op: string): number {
  const v = o[k]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProtocolError(`session ${op}: "${k}" must be a number`)
  return v
}

function strings (o: Record<string, unknown>, k: string, op: string): string[] {
  const v = o[k]
  if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) throw new ProtocolError(`session ${op}: "${k}" must be a string array`)
  return v as string[]
}

export function parseChallenge (env: Envelope): ChallengeContent {
  const o = obj(env)
  const versions = o.versions
  if (!Array.isArray(versions) || !versions.every(v => typeof v === 'number')) throw new ProtocolError('session challenge: "versions" must be numbers')
  return { nonce: bytes(o, 'nonce', 'challenge'), hub: str(o, 'hub', 'challenge'), versions: versions as number[] }
}

export function parseHello (env: Envelope): HelloContent {
  const o = obj(env)
  const hello: HelloContent = {
    version: num(o, 'version', 'hello'),
    node: str(o, 'node', 'hello'),
    token: str(o, 'token', 'hello'),
    key: bytes(o, 'key', 'hello'),
    sig: bytes(o, 'sig', 'hello'),
    capabilities: strings(o, 'capabilities', 'hello')
  }
  if (o.labels !== undefined) {
    const l = o.labels
    if (typeof l !== 'object' || l === null || Array.isArray(l) || !Object.values(l).every(v => typeof v === 'string')) {
      throw new ProtocolError('session hello: "labels" must be a string map')
    }
    hello.labels = l as Record<string, string>
  }
  return hello
}

export function parseWelcome (env: Envelope): WelcomeContent {
  const o = obj(env)
  return {
    version: num(o, 'version', 'welcome'),
    session: str(o, 'session', 'welcome'),
    heartbeatMs: num(o, 'heartbeatMs', 'welcome'),
    capabilities: strings(o, 'capabilities', 'welcome'),
    hub: str(o, 'hub', 'welcome')
  }
}

export function parseRefused (env: Envelope): RefusedContent {
  const o = obj(env)
  return { code: str(o, 'code', 'refused'), reason: str(o, 'reason', 'refused'), retryable: o.retryable === true }
}

export function parsePing (env: Envelope): PingContent {
  return { t: num(obj(env), 't', env.router.operation) }
}

export function parseGoodbye (env: Envelope): GoodbyeContent {
  return { reason: str(obj(env), 'reason', 'goodbye') }
}
