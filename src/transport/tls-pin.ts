/**
 * Certificate pinning for the TLS transports (`wss://`, WebTransport
 * `https://`): does a presented certificate chain satisfy a pinned sha256
 * fingerprint?
 *
 * A pin may name the LEAF (a listener's own `identity`) or a certificate
 * the leaf was issued by — the hub's dev CA, which join tokens pin like
 * KubeEdge's `sha256(CA)` (DESIGN.md §9), so the hub can reissue its server
 * certificate without invalidating tokens.
 *
 * Why this is more than "the chain contains the fingerprint": pinned dials
 * run with CA-store validation off (a private CA is in no store), and the
 * chain a TLS peer presents is just a list of certificates. A CA certificate
 * is public, so anyone can present `[own leaf, copy of the pinned CA]`, and
 * Node links `issuerCertificate` by NAME (and key identifiers), not by
 * signature. So a CA pin is accepted only when every link from the leaf up
 * to the pinned certificate is verified cryptographically (the issuer's key
 * signed the certificate), every issuer on the path is a CA, and every
 * certificate on the path is within its validity period. The leaf itself is
 * proven by the TLS handshake (the peer signed with the leaf's key).
 */
import { createHash, X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'

/** Longest issuer path followed (leaf → intermediates → pinned CA). */
const MAX_DEPTH = 8

export type PinResult =
  | { ok: true, leaf: string, via: 'leaf' | 'issuer' }
  | { ok: false, leaf: string | undefined, reason: string }

function fingerprintOf (der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex')
}

/**
 * The DER certificates a TLS peer presented, leaf first, in the order Node
 * links them (`issuerCertificate`). A self-signed root links to itself,
 * hence the visited set. Treat the result as UNTRUSTED input.
 */
export function peerChainDer (socket: TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = []
  const seen = new Set<string>()
  let cert = socket.getPeerCertificate(true) as DetailedPeerCertificate | undefined
  while (cert !== undefined && cert !== null && cert.raw !== undefined && out.length < 16) {
    const fp = fingerprintOf(cert.raw)
    if (seen.has(fp)) break
    seen.add(fp)
    out.push(new Uint8Array(cert.raw))
    cert = cert.issuerCertificate
  }
  return out
}

function inValidity (c: X509Certificate, now: number): boolean {
  const from = Date.parse(c.validFrom)
  const to = Date.parse(c.validTo)
  return Number.isFinite(from) && Number.isFinite(to) && from <= now && now <= to
}

/**
 * Check `chain` (leaf first, as presented; untrusted) against the pinned
 * fingerprint `expected` (canonical lower-case hex).
 *
 * - leaf fingerprint = pin: accepted as is (an exact pin of that certificate;
 *   its validity is the pinning party's business — W3C hash pinning checks
 *   it separately).
 * - otherwise the pin must be an issuer: walk from the leaf through
 *   presented certificates, each step `issuer.checkIssued` + signature
 *   verified with the issuer's public key + issuer is a CA + both within
 *   validity, until a certificate with the pinned fingerprint is reached.
 */
export function verifyPinnedChain (chain: readonly Uint8Array[], expected: string, now: number = Date.now()): PinResult {
  const first = chain[0]
  if (first === undefined) return { ok: false, leaf: undefined, reason: 'the peer presented no certificate' }
  const leafFp = fingerprintOf(first)
  if (leafFp === expected) return { ok: true, leaf: leafFp, via: 'leaf' }
  let certs: X509Certificate[]
  try {
    certs = chain.map(der => new X509Certificate(Buffer.from(der)))
  } catch {
    return { ok: false, leaf: leafFp, reason: 'the peer presented a certificate that cannot be parsed' }
  }
  const fps = chain.map(fingerprintOf)
  if (!fps.includes(expected)) {
    return { ok: false, leaf: leafFp, reason: 'neither the server certificate nor any certificate in its chain has the pinned fingerprint' }
  }
  let cur = certs[0] as X509Certificate
  if (!inValidity(cur, now)) return { ok: false, leaf: leafFp, reason: `the server certificate is not valid now (${cur.validFrom} – ${cur.validTo})` }
  const used = new Set<number>([0])
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    // Any presented certificate may be the issuer (peers do not always send
    // the chain in order); only a verified signature makes it one.
    let next = -1
    for (let i = 0; i < certs.length; i++) {
      if (used.has(i)) continue
      const cand = certs[i] as X509Certificate
      if (!cand.ca || !cur.checkIssued(cand)) continue
      let signed = false
      try { signed = cur.verify(cand.publicKey) } catch { signed = false }
      if (signed) { next = i; break }
    }
    if (next < 0) {
      return { ok: false, leaf: leafFp, reason: 'the certificate with the pinned fingerprint did not issue the server certificate (signature check failed)' }
    }
    const issuer = certs[next] as X509Certificate
    if (!inValidity(issuer, now)) return { ok: false, leaf: leafFp, reason: `an issuing certificate is not valid now (${issuer.validFrom} – ${issuer.validTo})` }
    if (fps[next] === expected) return { ok: true, leaf: leafFp, via: 'issuer' }
    used.add(next)
    cur = issuer
  }
  return { ok: false, leaf: leafFp, reason: `no verified path to the pinned certificate within ${MAX_DEPTH} issuers` }
}
