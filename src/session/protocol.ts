/**
 * Session protocol (DESIGN.md §4). Session control travels as ordinary
 * envelopes in group `$session` on the `control` channel, so every transport
 * carries it unchanged and it is never queued behind data.
 *
 *   edge                                    hub
 *    | ---- transport connect (pinned) ----> |
 *    | <--- challenge {nonce, hub, versions} |
 *    | ---- hello {version, node, key, sig, caps, labels, join?} --> |
 *    | <--- welcome {session, heartbeatMs, caps} | refused {code, reason, retryable}
 *    | ---- rotate-key {key, sig} ---------> |   (optional, any time in session)
 *    | <--- key-rotated {keyId} | key-rotate-refused {code, reason} |
 *    | <--> ping {t} / pong {t}              |   (either side, when it hears nothing)
 *    | <--- goodbye {reason}                 |   (e.g. replaced by a newer session)
 *
 * The node id of a session comes from the verified hello (proof of the node
 * key, bound at the first join), never from message content afterwards.
 *
 * Version 2 (issue 12/13) changed the hello:
 *  - `token` is gone: the token never crosses the wire. A first join sends
 *    `join: {payload, proof}` — the token's public payload part and an HMAC
 *    over this handshake keyed by a secret derived from the token
 *    (src/identity/join-proof.ts). Later joins send no join at all: the
 *    binding made at the first join admits the key, whatever became of the
 *    token (expired, used, revoked).
 *  - the key signature context names protocol 2.
 *  - `rotate-key` / `key-rotated`: replace the node key in session.
 * A version-1 edge sees only `versions: [2]` in the challenge and stops
 * before it would send its token.
 */
import { newMessage, type Envelope } from '../codec/envelope.js'
import { ProtocolError } from '../errors.js'

export const SESSION_GROUP = '$session'
/** Protocol versions this build speaks, newest first. */
export const PROTOCOL_VERSIONS = [2] as const
export const PROTOCOL_VERSION = 2
/** Longest channel binding a hello may carry (ours is 32 bytes). */
export const MAX_CHANNEL_BINDING_BYTES = 64
/** Capabilities this build offers; peers use the intersection. */
/**
 * What an edge can do, stated in hello. `devices`: the edge runs a device broker and twin engine
 * (DESIGN.md §8); without it the hub's registry shows the node's devices as not syncing and why.
 */
export const CAPABILITIES = ['ping', 'edge-to-edge', 'servicebus', 'request', 'devices'] as const

export interface ChallengeContent { nonce: Uint8Array, hub: string, versions: number[] }
/** First join only: possession of a join token, proven without sending it. */
export interface JoinProofContent {
  /** The token's base64url payload part (public: node, expiry, jti, pins). */
  payload: string
  /** HMAC-SHA256 over the handshake (src/identity/join-proof.ts). */
  proof: Uint8Array
}
export interface HelloContent {
  version: number
  node: string
  /** Raw 32-byte Ed25519 public key of the node. */
  key: Uint8Array
  /** Signature over the challenge nonce with context `helloContext(node, hub)`. */
  sig: Uint8Array
  capabilities: string[]
  labels?: Record<string, string>
  join?: JoinProofContent
  /**
   * The edge's channel binding (its TLS exporter on wss; src/transport/channel-binding.ts), covered
   * by `sig` and the join proof. The hub compares it with its own end's value when it has one.
   */
  channelBinding?: Uint8Array
}
/** Rotate the node key in session: the new key signs the hub's session nonce. */
export interface RotateKeyContent {
  /** New raw 32-byte Ed25519 public key. */
  key: Uint8Array
  /** New key's signature with context `rotateContext(node, hub, oldKeyId)` over the session nonce. */
  sig: Uint8Array
  /** Old key's signature over the same bytes: the retiring key consents. */
  oldSig: Uint8Array
}
export interface KeyRotatedContent { keyId: string }
export interface WelcomeContent { version: number, session: string, heartbeatMs: number, capabilities: string[], hub: string }
export interface RefusedContent { code: string, reason: string, retryable: boolean }
/**
 * `t`: the sender's clock, echoed in the pong (RTT = now − t at the sender).
 * `r`: the dialer's last measured RTT in ms, sent when it changed (issue 16): the
 * acceptor of an idle pair never pings (it hears the dialer first), so this is
 * how it knows the RTT without a second ping or a transport-level one.
 */
export interface PingContent { t: number, r?: number }
export interface GoodbyeContent { reason: string }

export type SessionOp = 'challenge' | 'hello' | 'welcome' | 'refused' | 'ping' | 'pong' | 'goodbye' | 'rotate-key' | 'key-rotated' | 'key-rotate-refused'

/** The signing context that binds a hello signature to this node and hub. */
export function helloContext (node: string, hub: string, channelBinding?: Uint8Array): string {
  // Issue 13 item 10: over a channel with a binding (wss: the TLS exporter) the signature covers it,
  // so a hello relayed from another TLS connection does not verify on this one.
  const cb = channelBinding === undefined ? '' : ` tls-exporter ${Buffer.from(channelBinding).toString('hex')}`
  return `edgefabric/${PROTOCOL_VERSION} hello ${node} ${hub}${cb}`
}

/** Signing context of a key rotation: names the node, the hub and the key being retired. */
export function rotateContext (node: string, hub: string, newKeyId: string): string {
  return `edgefabric/${PROTOCOL_VERSION} rotate-key ${node} ${hub} ${newKeyId}`
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
  if (o.channelBinding !== undefined) {
    const cb = bytes(o, 'channelBinding', 'hello')
    if (cb.length === 0 || cb.length > MAX_CHANNEL_BINDING_BYTES) throw new ProtocolError(`session hello: "channelBinding" must be 1-${MAX_CHANNEL_BINDING_BYTES} bytes`)
    hello.channelBinding = cb
  }
  if (o.join !== undefined) {
    const j = o.join
    if (typeof j !== 'object' || j === null || Array.isArray(j) || j instanceof Uint8Array) throw new ProtocolError('session hello: "join" must be an object')
    const jo = j as Record<string, unknown>
    hello.join = { payload: str(jo, 'payload', 'hello.join'), proof: bytes(jo, 'proof', 'hello.join') }
  }
  return hello
}

export function parseRotateKey (env: Envelope): RotateKeyContent {
  const o = obj(env)
  return { key: bytes(o, 'key', 'rotate-key'), sig: bytes(o, 'sig', 'rotate-key'), oldSig: bytes(o, 'oldSig', 'rotate-key') }
}

export function parseKeyRotated (env: Envelope): KeyRotatedContent {
  return { keyId: str(obj(env), 'keyId', 'key-rotated') }
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
  const o = obj(env)
  const t = num(o, 't', env.router.operation)
  // `r` is advisory: a missing or nonsensical value is ignored rather than refused.
  return typeof o.r === 'number' && Number.isFinite(o.r) && o.r >= 0 && o.r < 3_600_000 ? { t, r: o.r } : { t }
}

export function parseGoodbye (env: Envelope): GoodbyeContent {
  return { reason: str(obj(env), 'reason', 'goodbye') }
}
