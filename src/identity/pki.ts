/**
 * Dev PKI for the hub's wss/https listeners (DESIGN.md §9): a private CA,
 * whose fingerprint the join token pins like KubeEdge's `sha256(CA)`, and
 * server certificates issued under it. The certificate mechanics live in
 * src/identity/tls.ts (ECDSA P-256 on @peculiar/x509); this module gives them the
 * hub's shape and adds SAN canonicalisation, which the identity store uses to
 * notice that the configured altNames changed.
 */
import { isIP } from 'node:net'
import { certificateFingerprint, generateCertificateAuthority, issueCertificate } from './tls.js'
// After ../tls.js: it loads the Reflect polyfill @peculiar/x509 needs.
import { SubjectAlternativeNameExtension, X509Certificate } from '@peculiar/x509'
import { InvalidOptionError, toError } from '../errors.js'

export { certificateFingerprint }

export interface CertificateAuthority {
  certPem: string
  /** PKCS#8 PEM. */
  keyPem: string
}

export interface IssuedCertificate {
  /** The leaf certificate only. */
  certPem: string
  /** PKCS#8 PEM. */
  keyPem: string
  /** Leaf followed by the CA certificate: what a TLS server should present. */
  chainPem: string
}

export interface CaOptions {
  /** Subject CN; no DN special characters (`,=+<>#;\"`). */
  commonName: string
  /** Validity in whole days. */
  days: number
}

export interface ServerCertificateOptions {
  commonName: string
  /** DNS names and IP addresses (v4 or v6); IPs go into IP SANs. */
  altNames: string[]
  days: number
}

// RFC 1123 host names, optionally with a trailing dot; no wildcards (a dev
// CA has no business issuing them).
const DNS_NAME = /^(?=.{1,253}\.?$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i

/**
 * Canonical form of a SAN entry, so the same set compares equal however it
 * was written ("::1" vs "0:0:0:0:0:0:0:1", "LocalHost." vs "localhost").
 * Throws InvalidOptionError for something that is neither an IP nor a DNS name.
 */
export function canonicalAltName (name: string): string {
  if (typeof name !== 'string') throw new InvalidOptionError('altNames', 'entries must be strings')
  const ipv = isIP(name)
  if (ipv === 4) return name
  if (ipv === 6) return new URL(`http://[${name}]`).hostname.slice(1, -1)
  if (DNS_NAME.test(name)) return name.toLowerCase().replace(/\.$/, '')
  throw new InvalidOptionError('altNames', `${JSON.stringify(name)} is neither an IP address nor a DNS name`)
}

/** Canonical, sorted, de-duplicated list. */
export function canonicalAltNames (names: readonly string[]): string[] {
  return [...new Set(names.map(canonicalAltName))].sort()
}

/** Canonical, sorted, de-duplicated DNS and IP SANs of the first certificate in `pem`. */
export function certificateAltNames (pem: string): string[] {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem)
  } catch (err) {
    throw new InvalidOptionError('pem', `is not a PEM certificate: ${toError(err).message}`, { cause: err })
  }
  const ext = cert.getExtension(SubjectAlternativeNameExtension)
  if (ext === null) return []
  const out = new Set<string>()
  for (const n of ext.names.toJSON()) {
    if (n.type !== 'dns' && n.type !== 'ip') continue
    try {
      out.add(canonicalAltName(n.value))
    } catch {
      out.add(n.value) // foreign entry: keep it verbatim so the set differs and a reissue follows
    }
  }
  return [...out].sort()
}

/** A new self-signed CA (pathLen 0: it may only issue leaf certificates). */
export async function generateCa (opts: CaOptions): Promise<CertificateAuthority> {
  const ca = await generateCertificateAuthority({ commonName: opts.commonName, days: opts.days })
  return { certPem: ca.cert, keyPem: ca.key }
}

/** A server certificate for `altNames` signed by `ca` (ECDSA P-256 CA key, PKCS#8 PEM). */
export async function issueServerCertificate (ca: CertificateAuthority, opts: ServerCertificateOptions): Promise<IssuedCertificate> {
  if (!Array.isArray(opts.altNames) || opts.altNames.length === 0) {
    throw new InvalidOptionError('altNames', 'must list at least one DNS name or IP address')
  }
  const leaf = await issueCertificate({ cert: ca.certPem, key: ca.keyPem }, {
    commonName: opts.commonName,
    altNames: canonicalAltNames(opts.altNames),
    days: opts.days
  })
  return { certPem: leaf.cert, keyPem: leaf.key, chainPem: `${leaf.cert.trimEnd()}\n${ca.certPem.trimEnd()}\n` }
}
