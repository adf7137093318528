/**
 * An impostor's certificate chain for pinning tests: a leaf whose issuer
 * name and authority key identifier claim the victim CA, but which the
 * impostor signed with its own key, followed by a (public) copy of the
 * victim CA certificate. Node links such a chain by name exactly like a real
 * one, so only a signature check tells them apart (src/transport/tls-pin.ts).
 */
import { webcrypto } from 'node:crypto'
import { certificateFingerprint } from '../../src/identity/tls.js'
// After src/identity/tls.js: it loads the Reflect polyfill @peculiar/x509 needs and sets its crypto provider.
import * as x509 from '@peculiar/x509'

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

export interface ForgedChain {
  /** Forged leaf followed by the victim CA certificate (present this as `cert`). */
  cert: string
  /** The impostor's key for the forged leaf. */
  key: string
  /** sha256 of the forged leaf. */
  leafFingerprint: string
}

/** A forged leaf for `altNames` "issued by" `caCertPem`, valid for `days` (≤ 14 keeps WebTransport's hash rule satisfied). */
export async function forgeChain (caCertPem: string, altNames: string[] = ['localhost', '127.0.0.1'], days = 2): Promise<ForgedChain> {
  const ca = new x509.X509Certificate(caCertPem)
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const notBefore = new Date(Math.floor((Date.now() - 60_000) / 1000) * 1000)
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + webcrypto.getRandomValues(new Uint8Array(8)).reduce((s, b) => s + b.toString(16).padStart(2, '0'), ''),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + days * 86_400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey, // the impostor's key, not the CA's
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(altNames.map(n => (/^[\d.]+$|:/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca)
    ]
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64')
  const key = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`
  const leafPem = leaf.toString('pem')
  return { cert: `${leafPem.trimEnd()}\n${caCertPem.trimEnd()}\n`, key, leafFingerprint: certificateFingerprint(leafPem) }
}
