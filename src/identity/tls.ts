/**
 * TLS material for the TLS transports (`wss://`, WebTransport `https://`) and
 * the hub's dev mode (DESIGN.md §9): self-signed certificates, a dev CA and
 * certificates issued by it, and the sha256 fingerprints that dialers pin.
 *
 * Keys are ECDSA P-256 with SHA-256 signatures: small, fast to generate, and
 * the only key type browsers accept for WebTransport `serverCertificateHashes`.
 * Certificates are built with @peculiar/x509 on Node's WebCrypto; PEM out.
 *
 * An identity (what `Listener.identity` reports and `expectedRemoteIdentity`
 * pins) is the sha256 of the certificate's DER bytes as lower-case hex without
 * colons — the value `openssl x509 -fingerprint -sha256` prints, minus colons.
 */
// @peculiar/x509 v2 resolves its algorithm registry through tsyringe, which
// needs the Reflect metadata polyfill loaded first (ESM evaluates in order).
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair
import { isIP } from 'node:net'
import { InvalidOptionError } from '../errors.js'
import { intOption } from '../util/options.js'

x509.cryptoProvider.set(webcrypto as never) // Node's WebCrypto; the parameter type is the DOM `Crypto`

/** A PEM certificate (leaf first when a chain) and its PEM (PKCS#8) private key. */
export interface CertificateKeyPair {
  cert: string
  key: string
}

export interface GeneratedCertificate extends CertificateKeyPair {
  /** sha256 fingerprint of `cert` (lower-case hex), as a dialer pins it. */
  fingerprint: string
}

export interface CertificateOptions {
  /** Subject common name. @default 'localhost' */
  commonName?: string
  /** DNS names and IP addresses for subjectAltName (IPs are detected). @default [commonName] */
  altNames?: string[]
  /**
   * Validity in days. @default 14 — WebTransport certificate-hash pinning
   * (W3C `serverCertificateHashes`, enforced by @fails-components/webtransport)
   * rejects certificates valid for more than 14 days, so the default works for
   * every transport. Rotate (regenerate on start) rather than extend.
   */
  days?: number
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const DAY_MS = 86_400_000
/** Backdate notBefore a little so a peer with a slightly slow clock accepts a fresh certificate. */
const BACKDATE_MS = 60_000
/** The longest validity WebTransport hash pinning accepts. */
export const WEBTRANSPORT_MAX_CERT_DAYS = 14

/** Canonical identity form: lower-case hex without colons (accepts Node's `AB:CD:…`). */
export function normalizeFingerprint (fp: string): string {
  return fp.replace(/:/g, '').trim().toLowerCase()
}

/** True for a canonical or colon-separated sha256 fingerprint. */
export function isSha256Fingerprint (fp: string): boolean {
  return /^[0-9a-f]{64}$/.test(normalizeFingerprint(fp))
}

/** sha256 (hex) of the DER bytes of the first certificate in `pem`. */
export function certificateFingerprint (pem: string | Uint8Array): string {
  return createHash('sha256').update(parseCertificate(pem, 'cert').raw).digest('hex')
}

/** Validity period of the first certificate in `pem`. */
export function certificateValidity (pem: string | Uint8Array): { notBefore: Date, notAfter: Date } {
  const c = parseCertificate(pem, 'cert')
  return { notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo) }
}

function parseCertificate (pem: string | Uint8Array, option: string): X509Certificate {
  try {
    return new X509Certificate(typeof pem === 'string' ? pem : Buffer.from(pem))
  } catch (err) {
    throw new InvalidOptionError(option, 'not a PEM or DER X.509 certificate', { cause: err })
  }
}

/** A self-signed leaf certificate (server or client) with a fresh P-256 key. */
export async function generateSelfSignedCertificate (opts: CertificateOptions = {}): Promise<GeneratedCertificate> {
  const { commonName, altNames, notBefore, notAfter } = resolve(opts)
  return await selfSigned(commonName, notBefore, notAfter, () => leafExtensions(altNames))
}

/** A self-signed certificate with a fresh P-256 key: the common part of leaf and CA generation. */
async function selfSigned (commonName: string, notBefore: Date, notAfter: Date,
  extensions: (keys: CryptoKeyPair) => x509.Extension[] | Promise<x509.Extension[]>): Promise<GeneratedCertificate> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: dn(commonName), notBefore, notAfter, signingAlgorithm: ALG, keys, extensions: await extensions(keys)
  })
  return await finish(cert, keys.privateKey)
}

/** A dev certificate authority (DESIGN.md §9: the join token pins its fingerprint). @default days 3650 */
export async function generateCertificateAuthority (opts: { commonName?: string, days?: number } = {}): Promise<GeneratedCertificate> {
  const { commonName, notBefore, notAfter } = resolve({ commonName: opts.commonName ?? 'edgefabric dev CA', days: opts.days ?? 3650 })
  return await selfSigned(commonName, notBefore, notAfter, async keys => [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
  ])
}

/** A leaf certificate signed by `ca` (from generateCertificateAuthority or PEM of the same kind). */
export async function issueCertificate (ca: CertificateKeyPair, opts: CertificateOptions = {}): Promise<GeneratedCertificate> {
  const { commonName, altNames, notBefore, notAfter } = resolve(opts)
  const caCert = new x509.X509Certificate(ca.cert)
  let caKey: CryptoKey
  try {
    caKey = await webcrypto.subtle.importKey('pkcs8', pemBody(ca.key), ALG, false, ['sign'])
  } catch (err) {
    throw new InvalidOptionError('ca.key', 'not a PKCS#8 PEM ECDSA P-256 private key', { cause: err })
  }
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: dn(commonName),
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      ...leafExtensions(altNames),
      await x509.AuthorityKeyIdentifierExtension.create(caCert)
    ]
  })
  return await finish(cert, keys.privateKey)
}

function resolve (opts: CertificateOptions): { commonName: string, altNames: string[], notBefore: Date, notAfter: Date } {
  const commonName = opts.commonName ?? 'localhost'
  if (typeof commonName !== 'string' || commonName.length === 0 || /[,=+<>#;\\"]/.test(commonName)) {
    throw new InvalidOptionError('commonName', 'must be a non-empty string without DN special characters')
  }
  const altNames = opts.altNames ?? [commonName]
  if (!Array.isArray(altNames) || altNames.some(n => typeof n !== 'string' || n.length === 0)) {
    throw new InvalidOptionError('altNames', 'must be an array of non-empty strings')
  }
  const days = intOption('days', opts.days, WEBTRANSPORT_MAX_CERT_DAYS, 1, 36_500)
  const notBefore = new Date(Math.floor((Date.now() - BACKDATE_MS) / 1000) * 1000)
  // Validity is measured from notBefore so `days` is the exact span a verifier computes.
  const notAfter = new Date(notBefore.getTime() + days * DAY_MS)
  return { commonName, altNames, notBefore, notAfter }
}

function leafExtensions (altNames: string[]): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectAlternativeNameExtension(altNames.map(n => (isIP(n) !== 0 ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n })))
  ]
}

function dn (commonName: string): string { return `CN=${commonName}` }

/** Positive 16-byte serial (top bit clear so DER does not read it as negative). */
function serial (): string {
  const b = randomBytes(16)
  b[0] = (b[0] as number) & 0x7f | 0x01
  return b.toString('hex')
}

async function finish (cert: x509.X509Certificate, privateKey: CryptoKey): Promise<GeneratedCertificate> {
  const pem = cert.toString('pem')
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', privateKey)).toString('base64')
  const key = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`
  return { cert: pem.endsWith('\n') ? pem : pem + '\n', key, fingerprint: certificateFingerprint(pem) }
}

function pemBody (pem: string): Uint8Array {
  const b64 = pem.replace(/-----(BEGIN|END)[^-]+-----/g, '').replace(/\s+/g, '')
  return new Uint8Array(Buffer.from(b64, 'base64'))
}
