/**
 * The hub's persistent identity, in `${dataDir}/identity/` (dir 0700, files 0600):
 *
 *   quic.key    libp2p Ed25519 key (protobuf); its peer id is what QUIC dialers pin
 *   ca.crt      dev CA certificate; its sha256 is what wss/https dialers pin
 *   ca.key      dev CA key (ECDSA P-256, PKCS#8 PEM)
 *   token.key   Ed25519 key that signs join tokens (PKCS#8 PEM)
 *   server.pem  server key + leaf certificate issued by the CA (derived material)
 *
 * Everything but server.pem is pinned by edges (directly or through tokens),
 * so it is created exactly once: the first start writes all files into a
 * staging directory and renames it into place, so a crash leaves either no
 * identity or a complete one. Afterwards a missing or corrupt file is a typed
 * IdentityError naming it; we never regenerate over it, because a silent new
 * key would lock out every edge. server.pem alone is reissued (under the same
 * CA, which keeps the pin valid) when the wanted altNames change, when it is
 * missing, or when it nears expiry.
 *
 * WebTransport (`https://`) cannot present server.pem: its only pinning
 * mechanism (W3C serverCertificateHashes) takes leaf certificates valid for
 * at most 14 days. `issueWebTransportTls()` issues such a leaf under the same
 * CA, in memory only (derived, short-lived material; the CA pin in join
 * tokens stays valid), and the hub reissues it while running.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { IdentityError, InvalidOptionError, toError } from '../errors.js'
import { PRIVATE_DIR_MODE, ensurePrivateDir, fsyncDir, writeFileAtomic, writeSynced } from '../util/atomic-file.js'
import { decodeQuicIdentity, encodeQuicIdentity, generateQuicIdentity, quicPeerId } from '../transport/quic-identity.js'
import type { QuicPrivateKey } from '../transport/quic-identity.js'
import { canonicalAltNames, certificateAltNames, certificateFingerprint, generateCa, issueServerCertificate } from '../identity/pki.js'
import { WEBTRANSPORT_MAX_CERT_DAYS } from '../identity/tls.js'

export interface HubTlsMaterial {
  /** The dev CA certificate (PEM): what edges trust (`ca`) and the token pins. */
  caCertPem: string
  /** Server leaf certificate followed by the CA certificate: present this as `cert`. */
  certPem: string
  /** Server private key (PKCS#8 PEM). */
  keyPem: string
}

export interface HubIdentity {
  /** The identity directory. */
  dir: string
  /** libp2p key for QUIC listeners (`ListenOptions.identity`). */
  quicPrivateKey: QuicPrivateKey
  quicPeerId: string
  tls: HubTlsMaterial
  /** sha256 of the CA certificate's DER, lower-case hex (pinned by join tokens). */
  caFingerprint: string
  /** sha256 of the current server leaf certificate (changes when it is reissued). */
  serverFingerprint: string
  /** Canonical SANs of the server certificate. */
  altNames: string[]
  tokenSigningKey: KeyObject
  tokenPublicKey: KeyObject
  /**
   * A fresh server leaf for WebTransport listeners, issued by the CA for the
   * same altNames, valid for `days` (@default 14, the WebTransport maximum;
   * src/identity/tls.ts WEBTRANSPORT_MAX_CERT_DAYS). Not written to disk.
   */
  issueWebTransportTls (days?: number): Promise<HubTlsMaterial & { notAfter: number }>
  /** This call created the identity (first start). */
  created: boolean
  /** This call (re)issued the server certificate. */
  serverCertificateIssued: boolean
}

export interface HubIdentityOptions {
  /** Extra DNS names / IPs for the server certificate (added to localhost, 127.0.0.1, ::1). */
  altNames?: string[]
  /** Validity of a newly issued server certificate. @default 365 */
  serverCertDays?: number
  /** Reissue the server certificate when fewer days than this remain. @default 30 */
  renewBeforeDays?: number
  /** ms since the epoch, for the expiry check. @default Date.now() */
  now?: number
}

export const DEFAULT_ALT_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1']
const CA_DAYS = 3650
const DAY_MS = 86_400_000
const SERVER_CN = 'edgefabric hub'

const FILES = {
  quic: 'quic.key',
  caCert: 'ca.crt',
  caKey: 'ca.key',
  token: 'token.key',
  server: 'server.pem'
} as const
const CORE = [FILES.quic, FILES.caCert, FILES.caKey, FILES.token] as const
const KNOWN: readonly string[] = [...CORE, FILES.server]

/** Load the identity in `${dataDir}/identity/`, creating it on first start. */
export async function loadOrCreateHubIdentity (dataDir: string, opts: HubIdentityOptions = {}): Promise<HubIdentity> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) throw new InvalidOptionError('dataDir', 'must be a non-empty path')
  const wanted = canonicalAltNames([...DEFAULT_ALT_NAMES, ...(opts.altNames ?? [])])
  const serverDays = opts.serverCertDays ?? 365
  const renewBefore = opts.renewBeforeDays ?? 30
  if (!Number.isInteger(serverDays) || serverDays < 1) throw new InvalidOptionError('serverCertDays', 'must be a positive integer')
  if (!Number.isFinite(renewBefore) || renewBefore < 0 || renewBefore >= serverDays) {
    throw new InvalidOptionError('renewBeforeDays', `must be between 0 and serverCertDays (${serverDays})`)
  }
  const dir = join(dataDir, 'identity')
  await ensurePrivateDir(dataDir)

  let created = false
  if (!(await hasAnyKnownFile(dir))) {
    created = await createIdentityDir(dataDir, dir, wanted, serverDays)
  }

  const quicBytes = await readRequired(dir, FILES.quic)
  let quicPrivateKey: QuicPrivateKey
  try {
    quicPrivateKey = decodeQuicIdentity(quicBytes)
  } catch (err) {
    throw corrupt(dir, FILES.quic, 'not a libp2p private key', err)
  }
  const peerId = quicPeerId(quicPrivateKey)

  const caCertPem = (await readRequired(dir, FILES.caCert)).toString('utf8')
  const caKeyPem = (await readRequired(dir, FILES.caKey)).toString('utf8')
  const caCert = parseCert(dir, FILES.caCert, caCertPem)
  if (!caCert.ca) throw new IdentityError(join(dir, FILES.caCert), 'is not a CA certificate')
  const caKey = parseKey(dir, FILES.caKey, caKeyPem)
  if (!caCert.checkPrivateKey(caKey)) throw new IdentityError(join(dir, FILES.caKey), `does not belong to ${FILES.caCert}`)
  const now = opts.now ?? Date.now()
  if (Date.parse(caCert.validTo) <= now) {
    throw new IdentityError(join(dir, FILES.caCert), `expired on ${caCert.validTo}; move the identity directory away to create a new one (edges then need new tokens)`)
  }

  const tokenSigningKey = parseKey(dir, FILES.token, (await readRequired(dir, FILES.token)).toString('utf8'))
  if (tokenSigningKey.asymmetricKeyType !== 'ed25519') {
    throw new IdentityError(join(dir, FILES.token), `must be an Ed25519 key, got ${tokenSigningKey.asymmetricKeyType ?? 'unknown'}`)
  }

  let server = await loadServer(dir, caCert)
  let serverCertificateIssued = created
  if (server === undefined || needsReissue(server.cert, wanted, now, renewBefore)) {
    const issued = await issueServerCertificate({ certPem: caCertPem, keyPem: caKeyPem }, { commonName: SERVER_CN, altNames: wanted, days: serverDays })
    await writeFileAtomic(join(dir, FILES.server), issued.keyPem + issued.certPem)
    server = { certPem: issued.certPem, keyPem: issued.keyPem, cert: new X509Certificate(issued.certPem) }
    serverCertificateIssued = true
  }

  return {
    dir,
    quicPrivateKey,
    quicPeerId: peerId,
    tls: { caCertPem, certPem: `${server.certPem.trimEnd()}\n${caCertPem.trimEnd()}\n`, keyPem: server.keyPem },
    caFingerprint: certificateFingerprint(caCertPem),
    serverFingerprint: certificateFingerprint(server.certPem),
    altNames: certificateAltNames(server.certPem),
    tokenSigningKey,
    tokenPublicKey: createPublicKey(tokenSigningKey),
    // The CA key stays in this closure: nothing else in memory needs it.
    async issueWebTransportTls (days = WEBTRANSPORT_MAX_CERT_DAYS) {
      if (!Number.isInteger(days) || days < 1 || days > WEBTRANSPORT_MAX_CERT_DAYS) {
        throw new InvalidOptionError('days', `must be an integer from 1 to ${WEBTRANSPORT_MAX_CERT_DAYS} (WebTransport certificate-hash pinning limit)`)
      }
      const leaf = await issueServerCertificate({ certPem: caCertPem, keyPem: caKeyPem }, { commonName: SERVER_CN, altNames: wanted, days })
      return { caCertPem, certPem: leaf.chainPem, keyPem: leaf.keyPem, notAfter: Date.parse(new X509Certificate(leaf.certPem).validTo) }
    },
    created,
    serverCertificateIssued
  }
}

async function hasAnyKnownFile (dir: string): Promise<boolean> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new IdentityError(dir, `cannot list: ${toError(err).message}`, { cause: err })
  }
  return names.some(n => KNOWN.includes(n))
}

/**
 * Generate everything in a private staging dir, then rename it to `dir`
 * (rename(2) replaces an empty directory atomically). Returns false when a
 * concurrent first start won the race; its identity is then loaded.
 */
async function createIdentityDir (dataDir: string, dir: string, altNames: string[], serverDays: number): Promise<boolean> {
  const staging = join(dataDir, `.identity-staging-${randomBytes(6).toString('hex')}`)
  try {
    await mkdir(staging, { mode: PRIVATE_DIR_MODE })
    // A CN unique per install, so two dev CAs in one trust store are told apart.
    const ca = await generateCa({ commonName: `edgefabric dev CA ${randomBytes(4).toString('hex')}`, days: CA_DAYS })
    const server = await issueServerCertificate(ca, { commonName: SERVER_CN, altNames, days: serverDays })
    const token = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
    const quic = encodeQuicIdentity(await generateQuicIdentity())
    await writeSynced(join(staging, FILES.quic), quic)
    await writeSynced(join(staging, FILES.caCert), ca.certPem)
    await writeSynced(join(staging, FILES.caKey), ca.keyPem)
    await writeSynced(join(staging, FILES.token), token)
    await writeSynced(join(staging, FILES.server), server.keyPem + server.certPem)
    await fsyncDir(staging)
    try {
      await rename(staging, dir)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && await hasAnyKnownFile(dir)) return false
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new IdentityError(dir, 'exists and holds files that are not a hub identity (an edge using the same data dir?); give the hub its own data directory', { cause: err })
      }
      throw err
    }
    await fsyncDir(dataDir)
    return true
  } catch (err) {
    if (err instanceof IdentityError) throw err
    throw new IdentityError(dir, `cannot create the hub identity: ${toError(err).message}`, { cause: err })
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {})
  }
}

async function readRequired (dir: string, name: string): Promise<Buffer> {
  const path = join(dir, name)
  try {
    return await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const what = code === 'ENOENT'
      ? 'is missing while the rest of the identity exists; restore it from a backup or move the whole identity directory away to start over'
      : `cannot be read: ${toError(err).message}`
    throw new IdentityError(path, what, { cause: err })
  }
}

function corrupt (dir: string, name: string, what: string, err: unknown): IdentityError {
  return new IdentityError(join(dir, name), `is corrupt (${what}): ${toError(err).message}`, { cause: err })
}

function parseCert (dir: string, name: string, pem: string): X509Certificate {
  try {
    return new X509Certificate(pem)
  } catch (err) {
    throw corrupt(dir, name, 'not a PEM certificate', err)
  }
}

function parseKey (dir: string, name: string, pem: string): KeyObject {
  try {
    return createPrivateKey(pem)
  } catch (err) {
    throw corrupt(dir, name, 'not a PEM private key', err)
  }
}

interface ServerMaterial { certPem: string, keyPem: string, cert: X509Certificate }

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----\r?\n?/g

/** server.pem: key + certificate in one file, so a reissue replaces both atomically. */
async function loadServer (dir: string, caCert: X509Certificate): Promise<ServerMaterial | undefined> {
  const path = join(dir, FILES.server)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new IdentityError(path, `cannot be read: ${toError(err).message}`, { cause: err })
  }
  const blocks = [...text.matchAll(PEM_BLOCK)]
  const keys = blocks.filter(b => b[1] === 'PRIVATE KEY')
  const certs = blocks.filter(b => b[1] === 'CERTIFICATE')
  if (keys.length !== 1 || certs.length !== 1) {
    throw new IdentityError(path, `is corrupt: expected one PRIVATE KEY and one CERTIFICATE block, found ${keys.length} and ${certs.length}`)
  }
  const keyPem = (keys[0] as RegExpMatchArray)[0]
  const certPem = (certs[0] as RegExpMatchArray)[0]
  const cert = parseCert(dir, FILES.server, certPem)
  const key = parseKey(dir, FILES.server, keyPem)
  if (!cert.checkPrivateKey(key)) throw new IdentityError(path, 'is corrupt: the key does not match the certificate')
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
    throw new IdentityError(path, `was not issued by ${FILES.caCert}; remove ${FILES.server} to have it reissued`)
  }
  return { certPem: certPem.endsWith('\n') ? certPem : certPem + '\n', keyPem: keyPem.endsWith('\n') ? keyPem : keyPem + '\n', cert }
}

function needsReissue (cert: X509Certificate, wanted: string[], now: number, renewBeforeDays: number): boolean {
  if (Date.parse(cert.validTo) - now < renewBeforeDays * DAY_MS) return true
  const have = certificateAltNames(cert.toString())
  return have.length !== wanted.length || have.some((n, i) => n !== wanted[i])
}
