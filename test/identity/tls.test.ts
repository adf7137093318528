import t from 'tap'
import { X509Certificate, createHash } from 'node:crypto'
import { createServer, connect } from 'node:tls'
import { once } from 'node:events'
import {
  certificateFingerprint, certificateValidity, generateCertificateAuthority, generateSelfSignedCertificate,
  isSha256Fingerprint, issueCertificate, normalizeFingerprint
} from '../../src/identity/tls.js'

t.test('self-signed certificate: PEM, SANs, 14-day default, fingerprint', async t => {
  const c = await generateSelfSignedCertificate({ commonName: 'hub.local', altNames: ['hub.local', 'localhost', '127.0.0.1', '::1'] })
  t.match(c.cert, /^-----BEGIN CERTIFICATE-----\n/)
  t.match(c.key, /^-----BEGIN PRIVATE KEY-----\n/)
  const x = new X509Certificate(c.cert)
  t.match(x.subject, /CN=hub\.local/)
  t.match(x.subjectAltName ?? '', /DNS:hub\.local/)
  t.match(x.subjectAltName ?? '', /IP Address:127\.0\.0\.1/)
  t.ok(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(c.key)), 'key matches certificate')
  const { notBefore, notAfter } = certificateValidity(c.cert)
  t.equal(notAfter.getTime() - notBefore.getTime(), 14 * 86_400_000, 'valid exactly 14 days (WebTransport pinning limit)')
  t.ok(notBefore.getTime() <= Date.now(), 'already valid')
  const fp = createHash('sha256').update(x.raw).digest('hex')
  t.equal(certificateFingerprint(c.cert), fp, 'sha256 of the DER')
  t.equal(c.fingerprint, fp)
  t.equal(normalizeFingerprint(x.fingerprint256), fp, 'matches Node fingerprint256 without colons')
  t.ok(isSha256Fingerprint(x.fingerprint256))
  t.notOk(isSha256Fingerprint('abc'))
  t.equal(certificateFingerprint(new Uint8Array(x.raw)), fp, 'DER input accepted')
})

t.test('invalid input is a typed error', async t => {
  t.throws(() => certificateFingerprint('not a cert'), { code: 'EF_INVALID_OPTION' })
  await t.rejects(generateSelfSignedCertificate({ days: 0 }), { code: 'EF_INVALID_OPTION' })
  await t.rejects(generateSelfSignedCertificate({ commonName: 'a,b' }), { code: 'EF_INVALID_OPTION' })
})

t.test('CA-issued certificate verifies in a real TLS handshake on 127.0.0.1', async t => {
  const ca = await generateCertificateAuthority({ days: 30 })
  const leaf = await issueCertificate(ca, { commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], days: 7 })
  t.ok(new X509Certificate(leaf.cert).verify(new X509Certificate(ca.cert).publicKey), 'signed by the CA')
  const server = createServer({ cert: leaf.cert, key: leaf.key }, s => { s.on('error', () => {}); s.end('hi') })
  server.on('error', () => {})
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const sock = connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' })
  sock.on('error', () => {})
  await once(sock, 'secureConnect')
  t.ok(sock.authorized, `chain verified (${String(sock.authorizationError)})`)
  t.equal(normalizeFingerprint(sock.getPeerCertificate().fingerprint256), leaf.fingerprint, 'peer fingerprint = leaf identity')
  sock.destroy()
  await new Promise<void>(resolve => server.close(() => resolve()))
})
