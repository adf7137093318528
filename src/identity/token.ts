/**
 * Join tokens: `ef1.<base64url(json payload)>.<base64url(ed25519 signature)>`.
 *
 * The hub signs `ef1.<payload>` (prefix included, so a signature cannot be
 * moved to another token format) with its token key. The payload names the
 * node, expires, and pins the hub's identities (QUIC peer id, CA fingerprint)
 * so an edge can authenticate the hub on first contact without any
 * "skip verify" path — the same idea as KubeEdge's `sha256(CA).JWT`.
 *
 * The edge cannot check the signature (it has no hub key yet); it only uses
 * the pins. The hub verifies everything. Every failure is a JoinRefusedError,
 * never another exception, whatever string comes in.
 */
import { randomBytes, sign, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { InvalidOptionError, JoinRefusedError } from '../errors.js'
import { intOption } from '../util/options.js'

export const JOIN_TOKEN_VERSION = 1
export const JOIN_TOKEN_PREFIX = 'ef1'
export const DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600
const MAX_TTL_SECONDS = 366 * 24 * 3600
/** Far above a real token (~300 chars); bounds work done on hostile input. */
export const MAX_TOKEN_LENGTH = 2048

export interface JoinTokenPins {
  /** libp2p peer id of the hub's QUIC key. */
  quic: string
  /** sha256 (lower-case hex) of the hub's CA certificate DER. */
  tls: string
}

export interface JoinTokenPayload {
  v: 1
  /**
   * Node name the token admits; `*` (reusable tokens only) admits any name
   * not yet bound, for provisioning many devices from one image.
   */
  node: string
  /** Issued at, seconds since the epoch. */
  iat: number
  /** Expires at, seconds since the epoch (exclusive). */
  exp: number
  /** Random token id (base64url), for audit logs and revocation lists. */
  jti: string
  pins: JoinTokenPins
  /**
   * Reusable: may bind any number of node keys until it expires or is
   * revoked. Absent = single use: the first key that joins with it owns it
   * (EF_TOKEN_USED for any other key).
   */
  reuse?: true
}

/** Node name of a reusable token that admits any (not yet bound) name. */
export const ANY_NODE = '*'

/** What token creation needs from the hub identity. */
export interface TokenIssuer {
  tokenSigningKey: KeyObject
  quicPeerId: string
  caFingerprint: string
}

export interface CreateJoinTokenOptions {
  /** Node the token admits; may be omitted (any name) only for reusable tokens. */
  nodeId?: string
  /** Bind any number of node keys until expiry/revocation. @default false (single use) */
  reusable?: boolean
  /** @default 86400 (24 h) */
  ttlSeconds?: number
  /** ms since the epoch. @default Date.now() */
  now?: number
}

export interface VerifyJoinTokenOptions {
  /** ms since the epoch. @default Date.now() */
  now?: number
  /** The node name the edge claims (hello.node): must equal the token's. */
  nodeId?: string
}

const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/
const B64URL = /^[A-Za-z0-9_-]+$/
const HEX64 = /^[0-9a-f]{64}$/

export function isValidNodeName (name: unknown): name is string {
  return typeof name === 'string' && NODE_NAME.test(name)
}

/** Returns `name` or throws JoinRefusedError EF_NODE_NAME_INVALID. */
export function validateNodeName (name: unknown): string {
  if (isValidNodeName(name)) return name
  const shown = typeof name === 'string' ? JSON.stringify(name.length > 70 ? name.slice(0, 70) + '…' : name) : typeof name
  throw new JoinRefusedError('EF_NODE_NAME_INVALID',
    `node name ${shown} is invalid: use 1-63 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit`)
}

export function createJoinToken (issuer: TokenIssuer, opts: CreateJoinTokenOptions): string {
  if (opts.reusable !== undefined && typeof opts.reusable !== 'boolean') throw new InvalidOptionError('reusable', 'must be a boolean')
  const node = opts.nodeId === undefined && opts.reusable === true ? ANY_NODE : validateNodeName(opts.nodeId)
  const ttl = intOption('ttlSeconds', opts.ttlSeconds, DEFAULT_TOKEN_TTL_SECONDS, 1, MAX_TTL_SECONDS)
  const now = opts.now ?? Date.now()
  if (!Number.isFinite(now)) throw new InvalidOptionError('now', 'must be a finite number of ms')
  if (issuer.tokenSigningKey?.asymmetricKeyType !== 'ed25519' || issuer.tokenSigningKey.type !== 'private') {
    throw new InvalidOptionError('tokenSigningKey', 'must be an Ed25519 private KeyObject')
  }
  const iat = Math.floor(now / 1000)
  const payload: JoinTokenPayload = {
    v: 1,
    node,
    iat,
    exp: iat + ttl,
    jti: randomBytes(12).toString('base64url'),
    pins: { quic: issuer.quicPeerId, tls: issuer.caFingerprint }
  }
  if (opts.reusable === true) payload.reuse = true
  checkPins(payload.pins, (m) => new InvalidOptionError('identity', m))
  const signingInput = `${JOIN_TOKEN_PREFIX}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`
  const sig = sign(null, Buffer.from(signingInput), issuer.tokenSigningKey)
  return `${signingInput}.${sig.toString('base64url')}`
}

/**
 * Hub side: check the signature, schema, version, expiry and (if given) that
 * the token was issued for `nodeId`. Throws JoinRefusedError.
 */
export function verifyJoinToken (token: unknown, tokenPublicKey: KeyObject, opts: VerifyJoinTokenOptions = {}): JoinTokenPayload {
  if (tokenPublicKey?.asymmetricKeyType !== 'ed25519') throw new InvalidOptionError('tokenPublicKey', 'must be an Ed25519 KeyObject')
  const parts = split(token)
  let ok = false
  try {
    ok = verify(null, Buffer.from(`${parts.prefix}.${parts.payload}`), tokenPublicKey, parts.signature)
  } catch {
    ok = false
  }
  if (!ok) throw invalid('its signature does not verify (not issued by this hub, or altered)')
  const payload = parsePayload(parts.payload)
  const now = opts.now ?? Date.now()
  if (Math.floor(now / 1000) >= payload.exp) {
    throw new JoinRefusedError('EF_TOKEN_EXPIRED', `the join token expired at ${new Date(payload.exp * 1000).toISOString()}; create a new one with "edgefabric token create --node ${payload.node}"`)
  }
  if (opts.nodeId !== undefined && !tokenAdmits(payload, opts.nodeId)) {
    const shown = typeof opts.nodeId === 'string' ? JSON.stringify(opts.nodeId.slice(0, 70)) : typeof opts.nodeId
    throw new JoinRefusedError('EF_NODE_MISMATCH', `the join token was issued for node "${payload.node}", not ${shown}`)
  }
  return payload
}

/** The token may bind `nodeId` (its own name, or any name for a reusable `*` token). */
export function tokenAdmits (payload: JoinTokenPayload, nodeId: string): boolean {
  return payload.node === nodeId || (payload.node === ANY_NODE && payload.reuse === true && isValidNodeName(nodeId))
}

/** Edge side: read the payload (pins, node, expiry) without a signature check. */
export function decodeJoinToken (token: unknown): JoinTokenPayload {
  return parsePayload(split(token).payload)
}

function invalid (why: string): JoinRefusedError {
  return new JoinRefusedError('EF_TOKEN_INVALID', `the join token is invalid: ${why}`)
}

function split (token: unknown): { prefix: string, payload: string, signature: Buffer } {
  if (typeof token !== 'string') throw invalid('not a string')
  const t = token.trim()
  if (t.length === 0) throw invalid('empty')
  if (t.length > MAX_TOKEN_LENGTH) throw invalid(`longer than ${MAX_TOKEN_LENGTH} characters`)
  const parts = t.split('.')
  const prefix = parts[0] as string
  if (prefix !== JOIN_TOKEN_PREFIX) {
    if (/^ef\d+$/.test(prefix)) {
      throw new JoinRefusedError('EF_UNSUPPORTED_VERSION', `join token format "${prefix}" is not supported (this version understands "${JOIN_TOKEN_PREFIX}")`)
    }
    throw invalid(`it does not start with "${JOIN_TOKEN_PREFIX}."`)
  }
  if (parts.length !== 3) throw invalid('expected 3 dot-separated parts')
  const payload = parts[1] as string
  const signature = decodeB64url(parts[2] as string, 'signature')
  decodeB64url(payload, 'payload')
  if (signature.length !== 64) throw invalid('the signature has the wrong length')
  return { prefix, payload, signature }
}

/** Strict base64url: only canonical encodings (Buffer.from alone skips junk characters). */
function decodeB64url (s: string, what: string): Buffer {
  if (!B64URL.test(s)) throw invalid(`the ${what} is not base64url`)
  const buf = Buffer.from(s, 'base64url')
  if (buf.toString('base64url') !== s) throw invalid(`the ${what} is not canonical base64url`)
  return buf
}

function parsePayload (b64: string): JoinTokenPayload {
  let raw: unknown
  try {
    raw = JSON.parse(decodeB64url(b64, 'payload').toString('utf8'))
  } catch (err) {
    if (err instanceof JoinRefusedError) throw err
    throw invalid('the payload is not JSON')
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('the payload is not an object')
  const o = raw as Record<string, unknown>
  if (o.v !== JOIN_TOKEN_VERSION) {
    if (typeof o.v === 'number') throw new JoinRefusedError('EF_UNSUPPORTED_VERSION', `join token payload version ${o.v} is not supported (expected ${JOIN_TOKEN_VERSION})`)
    throw invalid('the payload has no version')
  }
  if (o.reuse !== undefined && o.reuse !== true) throw invalid('"reuse" must be true when present')
  if (!isValidNodeName(o.node) && !(o.node === ANY_NODE && o.reuse === true)) throw invalid('the node name is missing or invalid')
  if (!isSeconds(o.iat) || !isSeconds(o.exp) || o.exp <= o.iat) throw invalid('iat/exp are missing or inconsistent')
  if (typeof o.jti !== 'string' || o.jti.length === 0 || o.jti.length > 64 || !B64URL.test(o.jti)) throw invalid('the token id is missing or invalid')
  const p = o.pins
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalid('the hub pins are missing')
  const pins = { quic: (p as Record<string, unknown>).quic, tls: (p as Record<string, unknown>).tls }
  checkPins(pins, invalid)
  // Copy known fields only: nothing else from the wire travels further.
  const out: JoinTokenPayload = { v: 1, node: o.node as string, iat: o.iat, exp: o.exp, jti: o.jti, pins: pins as JoinTokenPins }
  if (o.reuse === true) out.reuse = true
  return out
}

function isSeconds (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function checkPins (pins: { quic: unknown, tls: unknown }, fail: (m: string) => Error): void {
  // libp2p peer ids are base58btc (Ed25519: 52 chars "12D3KooW...") or CIDv1 base32.
  if (typeof pins.quic !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{20,128}$|^b[a-z2-7]{20,128}$/.test(pins.quic)) throw fail('the QUIC pin is not a peer id')
  if (typeof pins.tls !== 'string' || !HEX64.test(pins.tls)) throw fail('the TLS pin is not a sha256 fingerprint')
}
