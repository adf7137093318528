/**
 * Test certificates for wss:// (made with src/identity/tls.ts, once per process): a
 * CA, a leaf for 127.0.0.1/localhost issued by it, and an unrelated
 * self-signed certificate.
 */
import { generateCertificateAuthority, generateSelfSignedCertificate, issueCertificate } from '../../src/identity/tls.js'

export interface TestPki {
  caCert: string
  caKey: string
  caFingerprint: string
  leafCert: string
  leafKey: string
  leafFingerprint: string
  /** Leaf certificate followed by the CA certificate (what the server presents). */
  chain: string
  /** An unrelated self-signed certificate + key. */
  otherCert: string
  otherKey: string
  otherFingerprint: string
}

let cached: Promise<TestPki> | undefined

export function testPki (): Promise<TestPki> {
  cached ??= (async () => {
    const ca = await generateCertificateAuthority({ commonName: 'edgefabric test CA', days: 2 })
    const leaf = await issueCertificate(ca, { commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], days: 2 })
    const other = await generateSelfSignedCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], days: 2 })
    return {
      caCert: ca.cert,
      caKey: ca.key,
      caFingerprint: ca.fingerprint,
      leafCert: leaf.cert,
      leafKey: leaf.key,
      leafFingerprint: leaf.fingerprint,
      chain: leaf.cert + ca.cert,
      otherCert: other.cert,
      otherKey: other.key,
      otherFingerprint: other.fingerprint
    }
  })()
  return cached
}
