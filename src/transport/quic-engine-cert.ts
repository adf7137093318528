/**
 * libp2p-TLS certificates for the edgefabric QUIC engine (the libp2p TLS
 * handshake spec, github.com/libp2p/specs/blob/master/tls/tls.md), so the
 * engine speaks the same wire as the libp2p engine and keeps the pinned
 * identity of join tokens: the QUIC peer id.
 *
 * Each side presents a self-signed certificate for a throwaway P-256 key.
 * Extension 1.3.6.1.4.1.53594.1.1 carries SignedKey { publicKey: the libp2p
 * identity key (protobuf), signature: identity.sign("libp2p-tls-handshake:"
 * || SubjectPublicKeyInfo) }. The native side proves the peer holds the
 * certificate key (TLS CertificateVerify, native/quic/src/tls.rs); here we
 * prove the certificate key was endorsed by the identity key, and derive the
 * peer id from it. Nothing is delivered on a connection before that check.
 */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { webcrypto } from 'node:crypto'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { ProtocolError, toError } from '../errors.js'
import { decodeQuicIdentity, type QuicPrivateKey } from './quic-identity.js'

x509.cryptoProvider.set(webcrypto as never)

const LIBP2P_OID = '1.3.6.1.4.1.53594.1.1'
const PREFIX = new TextEncoder().encode('libp2p-tls-handshake:')
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

export interface EngineCertificate {
  /** DER of the self-signed certificate. */
  cert: Uint8Array
  /** PKCS#8 DER of its P-256 key. */
  key: Uint8Array
}

function derLength (n: number): number[] {
  if (n < 0x80) return [n]
  const out: number[] = []
  while (n > 0) { out.unshift(n & 0xff); n >>>= 8 }
  return [0x80 | out.length, ...out]
}

function der (tag: number, body: Uint8Array): Uint8Array {
  return Uint8Array.from([tag, ...derLength(body.byteLength), ...body])
}

/** Read one DER element: [tag, content, rest]. */
function readDer (b: Uint8Array): [number, Uint8Array, Uint8Array] {
  if (b.byteLength < 2) throw new ProtocolError('truncated DER')
  const tag = b[0] as number
  let len = b[1] as number
  let head = 2
  if (len >= 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 3 || b.byteLength < 2 + n) throw new ProtocolError('bad DER length')
    len = 0
    for (let i = 0; i < n; i++) len = (len << 8) | (b[2 + i] as number)
    head = 2 + n
  }
  if (head + len > b.byteLength) throw new ProtocolError('truncated DER')
  return [tag, b.subarray(head, head + len), b.subarray(head + len)]
}

const cache = new Map<string, Promise<EngineCertificate>>()

/** The certificate for an identity key (memoized per key for the process). */
export function engineCertificate (identity: Uint8Array): Promise<EngineCertificate> {
  const k = Buffer.from(identity).toString('base64')
  let p = cache.get(k)
  if (p === undefined) {
    p = makeCertificate(decodeQuicIdentity(identity))
    p.catch(() => cache.delete(k))
    cache.set(k, p)
  }
  return p
}

async function makeCertificate (identity: QuicPrivateKey): Promise<EngineCertificate> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as CryptoKeyPair
  const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', keys.publicKey))
  const msg = new Uint8Array(PREFIX.byteLength + spki.byteLength)
  msg.set(PREFIX)
  msg.set(spki, PREFIX.byteLength)
  const signature = await identity.sign(msg)
  const signedKey = der(0x30, Uint8Array.from([
    ...der(0x04, publicKeyToProtobuf(identity.publicKey)),
    ...der(0x04, signature)
  ]))
  // Wide validity like other libp2p implementations: the identity, not the date, is what is trusted.
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
    name: 'CN=edgefabric',
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 100 * 365 * 86400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [new x509.Extension(LIBP2P_OID, true, signedKey)]
  })
  const key = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  return { cert: new Uint8Array(cert.rawData), key }
}

/**
 * Check a peer's certificate (DER) and return its peer id. Throws a
 * ProtocolError for anything that is not a valid libp2p-TLS certificate.
 */
export async function peerIdFromCertificate (der: Uint8Array): Promise<string> {
  try {
    const cert = new x509.X509Certificate(der)
    const now = Date.now()
    if (cert.notBefore.getTime() > now || cert.notAfter.getTime() < now) throw new Error('certificate not valid now')
    const ext = cert.getExtension(LIBP2P_OID)
    if (ext === null) throw new Error('no libp2p extension')
    const [tag, seq] = readDer(new Uint8Array(ext.value))
    if (tag !== 0x30) throw new Error('libp2p extension is not a SEQUENCE')
    const [t1, pk, rest] = readDer(seq)
    const [t2, sig] = readDer(rest)
    if (t1 !== 0x04 || t2 !== 0x04) throw new Error('libp2p extension fields are not OCTET STRINGs')
    const publicKey = publicKeyFromProtobuf(pk)
    const spki = new Uint8Array(cert.publicKey.rawData)
    const msg = new Uint8Array(PREFIX.byteLength + spki.byteLength)
    msg.set(PREFIX)
    msg.set(spki, PREFIX.byteLength)
    if (!(await publicKey.verify(msg, sig))) throw new Error('identity signature does not verify')
    if (!(await cert.verify({ signatureOnly: true }))) throw new Error('certificate self-signature does not verify')
    return peerIdFromPublicKey(publicKey).toString()
  } catch (err) {
    throw new ProtocolError(`peer certificate rejected: ${toError(err).message}`, { cause: err })
  }
}
