/**
 * verifyPinnedChain (src/transport/tls-pin.ts): a pin names the leaf or a CA
 * that verifiably signed it; name-linked look-alikes are refused.
 */
import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { generateCertificateAuthority, generateSelfSignedCertificate, issueCertificate } from '../../src/identity/tls.js'
import { verifyPinnedChain } from '../../src/transport/tls-pin.js'
import { forgeChain } from './forged-cert.js'

const der = (pem: string): Uint8Array => new Uint8Array(new X509Certificate(pem).raw)
/** Split a PEM bundle into DER certificates, in order. */
const ders = (bundle: string): Uint8Array[] => (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map(der)

const ca = await generateCertificateAuthority({ commonName: 'pin test CA', days: 30 })
const leaf = await issueCertificate(ca, { commonName: 'localhost', altNames: ['127.0.0.1'], days: 2 })
const chain = [der(leaf.cert), der(ca.cert)]

t.test('leaf pin and CA pin', async t => {
  t.match(verifyPinnedChain(chain, leaf.fingerprint), { ok: true, leaf: leaf.fingerprint, via: 'leaf' })
  t.match(verifyPinnedChain(chain, ca.fingerprint), { ok: true, leaf: leaf.fingerprint, via: 'issuer' })
  const self = await generateSelfSignedCertificate({ commonName: 'localhost', days: 2 })
  t.match(verifyPinnedChain([der(leaf.cert), der(self.cert), der(ca.cert)], ca.fingerprint), { ok: true }, 'unrelated certificate in between: issuer found by signature')
  t.match(verifyPinnedChain([der(self.cert)], self.fingerprint), { ok: true, via: 'leaf' }, 'self-signed leaf pin')
})

t.test('refusals', async t => {
  const forged = await forgeChain(ca.cert)
  const f = verifyPinnedChain(ders(forged.cert), ca.fingerprint)
  t.match(f, { ok: false, leaf: forged.leafFingerprint, reason: /did not issue/ }, 'own leaf + copy of the CA')

  const other = await generateCertificateAuthority({ commonName: 'other CA', days: 30 })
  const foreign = await issueCertificate(other, { commonName: 'localhost', days: 2 })
  t.match(verifyPinnedChain([der(foreign.cert), der(other.cert)], ca.fingerprint), { ok: false, reason: /pinned fingerprint/ }, 'another CA')
  t.match(verifyPinnedChain([der(foreign.cert), der(other.cert), der(ca.cert)], ca.fingerprint), { ok: false, reason: /did not issue/ }, 'pinned CA appended to another CA chain')

  // A CA-issued leaf that is not valid at `now` (pinning skips Node's validation, so we check it).
  const now = Date.now()
  t.match(verifyPinnedChain(chain, ca.fingerprint, now + 3 * 86_400_000), { ok: false, reason: /not valid now/ }, 'expired leaf')
  t.match(verifyPinnedChain(chain, ca.fingerprint, now + 31 * 86_400_000), { ok: false, reason: /not valid now/ }, 'expired leaf and CA')

  t.match(verifyPinnedChain([], ca.fingerprint), { ok: false, leaf: undefined }, 'no certificate')
  t.match(verifyPinnedChain([new Uint8Array([1, 2, 3]), der(ca.cert)], ca.fingerprint), { ok: false, reason: /cannot be parsed/ }, 'garbage')

  // A leaf cannot act as an issuer even if its key signed the next certificate.
  const leafAsCa = await issueCertificate({ cert: leaf.cert, key: leaf.key }, { commonName: 'localhost', days: 2 })
  t.match(verifyPinnedChain([der(leafAsCa.cert), der(leaf.cert)], leaf.fingerprint), { ok: false, reason: /did not issue/ }, 'non-CA issuer refused')
})
