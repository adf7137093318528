/**
 * TLS identity helpers for `wss://`: option parsing and certificate pinning.
 *
 * An identity is the sha256 fingerprint (lower-case hex, no colons) of a
 * certificate's DER bytes — the same value src/identity/tls.ts' certificateFingerprint()
 * computes from PEM, so a listener's `identity` can be pinned by a dialer.
 * A pin may name the leaf or a CA that signed it (verified by signature in
 * ./tls-pin.ts, not by presence in the chain), so a join token can pin a CA
 * (KubeEdge pins `sha256(CA)`) while the server rotates leaves under it.
 */
import { createHash, X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import { InvalidOptionError } from '../errors.js'

/** `ListenOptions.identity` for `wss://`: the server's PEM certificate (chain allowed, leaf first) and key. */
export interface WsServerIdentity {
  cert: string
  key: string
  /** CA bundle used to verify client certificates (only with `expectedRemoteIdentity`). */
  ca?: string
  passphrase?: string
}

/** `DialOptions.identity` for `wss://`: all optional. */
export interface WsDialIdentity {
  /** Trust these CAs (PEM) instead of the system store; normal verification (incl. hostname) applies. */
  ca?: string
  /** Client certificate + key (PEM), presented when the server asks for one. */
  cert?: string
  key?: string
  passphrase?: string
}

/** Canonical form: lower-case hex without colons (accepts `AB:CD:...` as Node prints them). */
export function normalizeFingerprint (fp: string): string {
  return fp.replace(/:/g, '').trim().toLowerCase()
}

export function derFingerprint (der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex')
}

/** Fingerprint of the first certificate of a PEM string. */
export function pemFingerprint (pem: string): string {
  return derFingerprint(new X509Certificate(pem).raw)
}

/**
 * Fingerprints of the certificate chain the peer presented, leaf first.
 * Node links the chain through `issuerCertificate`; a self-signed root points
 * at itself, hence the visited set.
 */
export function peerChainFingerprints (socket: TLSSocket): string[] {
  const out: string[] = []
  let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true) as DetailedPeerCertificate | undefined
  const seen = new Set<string>()
  while (cert !== undefined && cert !== null && cert.raw !== undefined && out.length < 16) {
    const fp = derFingerprint(cert.raw)
    if (seen.has(fp)) break
    seen.add(fp)
    out.push(fp)
    cert = cert.issuerCertificate
  }
  return out
}

function pemField (obj: Record<string, unknown>, name: string, field: string, required: boolean): string | undefined {
  const v = obj[field]
  if (v === undefined && !required) return undefined
  if (typeof v !== 'string' || v.length === 0) throw new InvalidOptionError(`${name}.${field}`, 'must be a non-empty PEM string')
  return v
}

function asObject (name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError(name, 'must be an object with PEM strings')
  return value as Record<string, unknown>
}

export function parseServerIdentity (value: unknown): WsServerIdentity & { fingerprint: string } {
  if (value === undefined) throw new InvalidOptionError('identity', 'wss:// listen needs { cert, key } (PEM strings)')
  const o = asObject('identity', value)
  const cert = pemField(o, 'identity', 'cert', true) as string
  const key = pemField(o, 'identity', 'key', true) as string
  const ca = pemField(o, 'identity', 'ca', false)
  const passphrase = pemField(o, 'identity', 'passphrase', false)
  let fingerprint: string
  try {
    fingerprint = pemFingerprint(cert)
  } catch (err) {
    throw new InvalidOptionError('identity.cert', 'is not a PEM certificate', { cause: err })
  }
  const out: WsServerIdentity & { fingerprint: string } = { cert, key, fingerprint }
  if (ca !== undefined) out.ca = ca
  if (passphrase !== undefined) out.passphrase = passphrase
  return out
}

export function parseDialIdentity (value: unknown): WsDialIdentity {
  if (value === undefined) return {}
  const o = asObject('identity', value)
  const out: WsDialIdentity = {}
  for (const f of ['ca', 'cert', 'key', 'passphrase'] as const) {
    const v = pemField(o, 'identity', f, false)
    if (v !== undefined) out[f] = v
  }
  if ((out.cert === undefined) !== (out.key === undefined)) {
    throw new InvalidOptionError('identity', 'cert and key must be given together')
  }
  return out
}
