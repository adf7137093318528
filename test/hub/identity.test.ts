import t from 'tap'
import type { Test } from 'tap'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { connect, createServer } from 'node:tls'
import { loadOrCreateHubIdentity } from '../../src/hub/identity.js'
import type { HubIdentity } from '../../src/hub/identity.js'
import { certificateAltNames, certificateFingerprint } from '../../src/identity/pki.js'
import { IdentityError } from '../../src/errors.js'

t.test('first start creates, second start reloads the same identity', async t => {
  const dataDir = t.testdir()
  const a = await loadOrCreateHubIdentity(dataDir)
  t.equal(a.created, true)
  t.match(a.quicPeerId, /^12D3KooW/)
  t.match(a.caFingerprint, /^[0-9a-f]{64}$/)
  t.equal(a.caFingerprint, certificateFingerprint(a.tls.caCertPem))
  t.same(a.altNames, ['127.0.0.1', '::1', 'localhost'])
  t.equal(a.tokenSigningKey.asymmetricKeyType, 'ed25519')
  t.equal(a.tokenPublicKey.type, 'public')

  const b = await loadOrCreateHubIdentity(dataDir)
  t.equal(b.created, false)
  t.equal(b.serverCertificateIssued, false, 'server cert reused when nothing changed')
  t.equal(b.quicPeerId, a.quicPeerId)
  t.equal(b.caFingerprint, a.caFingerprint)
  t.equal(b.serverFingerprint, a.serverFingerprint)
  t.equal(b.tls.keyPem, a.tls.keyPem)
  t.same(b.tokenPublicKey.export({ format: 'jwk' }), a.tokenPublicKey.export({ format: 'jwk' }))
  t.same(await readdir(dataDir), ['identity'], 'no staging leftovers')
})

t.test('files are 0600, directory 0700', async t => {
  const dataDir = t.testdir()
  const id = await loadOrCreateHubIdentity(dataDir)
  t.equal((await stat(id.dir)).mode & 0o777, 0o700)
  const files = (await readdir(id.dir)).sort()
  t.same(files, ['ca.crt', 'ca.key', 'quic.key', 'server.pem', 'token.key'])
  for (const f of files) t.equal((await stat(join(id.dir, f))).mode & 0o777, 0o600, f)
  // reissue keeps the mode too
  await loadOrCreateHubIdentity(dataDir, { altNames: ['hub.example'] })
  t.equal((await stat(join(id.dir, 'server.pem'))).mode & 0o777, 0o600, 'reissued server.pem')
})

t.test('changed altNames reissue only the server certificate', async t => {
  const dataDir = t.testdir()
  const a = await loadOrCreateHubIdentity(dataDir, { altNames: ['hub.example'] })
  t.same(a.altNames, ['127.0.0.1', '::1', 'hub.example', 'localhost'])
  const b = await loadOrCreateHubIdentity(dataDir, { altNames: ['HUB.example.', '10.1.2.3', '0:0:0:0:0:0:0:1'] })
  t.equal(b.serverCertificateIssued, true)
  t.same(b.altNames, ['10.1.2.3', '127.0.0.1', '::1', 'hub.example', 'localhost'])
  t.not(b.serverFingerprint, a.serverFingerprint)
  t.equal(b.caFingerprint, a.caFingerprint, 'CA unchanged')
  t.equal(b.quicPeerId, a.quicPeerId, 'QUIC key unchanged')
  t.same(b.tokenPublicKey.export({ format: 'jwk' }), a.tokenPublicKey.export({ format: 'jwk' }), 'token key unchanged')
  t.ok(new X509Certificate(b.tls.certPem).checkIP('10.1.2.3'), 'IP SAN')
  const c = await loadOrCreateHubIdentity(dataDir, { altNames: ['10.1.2.3', 'hub.example'] })
  t.equal(c.serverCertificateIssued, false, 'same set in another spelling/order: no reissue')
  const d = await loadOrCreateHubIdentity(dataDir)
  t.equal(d.serverCertificateIssued, true, 'removing names reissues too')
  t.same(certificateAltNames(d.tls.certPem), ['127.0.0.1', '::1', 'localhost'])
})

t.test('server certificate near expiry is renewed under the same CA', async t => {
  const dataDir = t.testdir()
  const a = await loadOrCreateHubIdentity(dataDir, { serverCertDays: 40 })
  const later = Date.now() + 15 * 86_400_000 // 25 days left < 30
  const b = await loadOrCreateHubIdentity(dataDir, { serverCertDays: 40, now: later })
  t.equal(b.serverCertificateIssued, true)
  t.equal(b.caFingerprint, a.caFingerprint)
  const c = await loadOrCreateHubIdentity(dataDir, { serverCertDays: 40 })
  t.equal(c.serverCertificateIssued, false)
})

t.test('missing server.pem is reissued; missing core files are an error', async t => {
  const dataDir = t.testdir()
  const a = await loadOrCreateHubIdentity(dataDir)
  await unlink(join(a.dir, 'server.pem'))
  const b = await loadOrCreateHubIdentity(dataDir)
  t.equal(b.serverCertificateIssued, true)
  t.equal(b.caFingerprint, a.caFingerprint)
  await unlink(join(a.dir, 'quic.key'))
  const err = await loadOrCreateHubIdentity(dataDir).catch((e: unknown) => e)
  t.ok(err instanceof IdentityError)
  t.equal((err as IdentityError).code, 'EF_IDENTITY_STORE')
  t.equal((err as IdentityError).file, join(a.dir, 'quic.key'))
  t.match((err as Error).message, /is missing/)
  t.same((await readdir(a.dir)).sort(), ['ca.crt', 'ca.key', 'server.pem', 'token.key'], 'nothing regenerated')
})

t.test('corrupt files give a typed error naming the file and are left alone', async t => {
  const cases: Array<[string, string | Buffer]> = [
    ['quic.key', Buffer.from([1, 2, 3, 4])],
    ['ca.crt', 'garbage\n'],
    ['ca.key', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'],
    ['token.key', 'not a key'],
    ['server.pem', 'half a file']
  ]
  for (const [name, junk] of cases) {
    const dataDir = t.testdir()
    const id = await loadOrCreateHubIdentity(dataDir)
    const path = join(id.dir, name)
    await writeFile(path, junk)
    const err = await loadOrCreateHubIdentity(dataDir).catch((e: unknown) => e)
    t.ok(err instanceof IdentityError, `${name}: IdentityError`)
    t.equal((err as IdentityError).file, path, `${name}: names the file`)
    t.same(await readFile(path), Buffer.from(junk), `${name}: left untouched`)
  }
})

t.test('mismatched material is refused, not replaced', async t => {
  const d1 = t.testdir({ a: {}, b: {} })
  const a = await loadOrCreateHubIdentity(join(d1, 'a'))
  const b = await loadOrCreateHubIdentity(join(d1, 'b'))
  // CA key from another identity
  await writeFile(join(a.dir, 'ca.key'), await readFile(join(b.dir, 'ca.key')))
  await t.rejects(loadOrCreateHubIdentity(join(d1, 'a')), { code: 'EF_IDENTITY_STORE', file: join(a.dir, 'ca.key') })
  // server.pem issued by another CA
  await writeFile(join(b.dir, 'server.pem'), await readFile(join(a.dir, 'server.pem')))
  await t.rejects(loadOrCreateHubIdentity(join(d1, 'b')), { code: 'EF_IDENTITY_STORE', file: join(b.dir, 'server.pem'), message: /not issued by/ })
  // the wrong kind of key for token signing
  const c = await loadOrCreateHubIdentity(join(d1, 'c'))
  await writeFile(join(c.dir, 'token.key'), await readFile(join(c.dir, 'ca.key')))
  await t.rejects(loadOrCreateHubIdentity(join(d1, 'c')), { code: 'EF_IDENTITY_STORE', file: join(c.dir, 'token.key'), message: /Ed25519/ })
})

t.test('bad altNames are an option error', async t => {
  await t.rejects(loadOrCreateHubIdentity(t.testdir(), { altNames: ['not a name!'] }), { code: 'EF_INVALID_OPTION' })
  await t.rejects(loadOrCreateHubIdentity(''), { code: 'EF_INVALID_OPTION' })
})

t.test('concurrent first starts converge on one identity', async t => {
  const dataDir = t.testdir()
  const ids = await Promise.all([loadOrCreateHubIdentity(dataDir), loadOrCreateHubIdentity(dataDir), loadOrCreateHubIdentity(dataDir)])
  t.equal(new Set(ids.map(i => i.quicPeerId)).size, 1)
  t.equal(new Set(ids.map(i => i.caFingerprint)).size, 1)
  t.equal(ids.filter(i => i.created).length, 1)
  t.same(await readdir(dataDir), ['identity'])
})

async function handshake (t: Test, id: HubIdentity, connectOpts: { host: string, servername?: string, ca: string }): Promise<string | Error> {
  const server = createServer({ cert: id.tls.certPem, key: id.tls.keyPem }, s => { s.on('error', () => {}); s.end('hello') })
  server.on('error', () => {})
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const port = (server.address() as AddressInfo).port
  return await new Promise<string | Error>(resolve => {
    const s = connect({ port, host: connectOpts.host, ca: connectOpts.ca, ...(connectOpts.servername === undefined ? {} : { servername: connectOpts.servername }) })
    let data = ''
    s.setEncoding('utf8')
    s.on('data', d => { data += d })
    s.on('end', () => { resolve(data) })
    s.on('error', err => { resolve(err) })
  })
}

t.test('the server certificate passes real TLS verification against the CA', async t => {
  const id = await loadOrCreateHubIdentity(t.testdir(), { altNames: ['hub.example'] })
  t.equal(await handshake(t, id, { host: '127.0.0.1', servername: 'localhost', ca: id.tls.caCertPem }), 'hello', 'by DNS name')
  t.equal(await handshake(t, id, { host: '127.0.0.1', servername: 'hub.example', ca: id.tls.caCertPem }), 'hello', 'by extra altName')
  t.equal(await handshake(t, id, { host: '127.0.0.1', ca: id.tls.caCertPem }), 'hello', 'by IP SAN (no SNI)')
  const wrongName = await handshake(t, id, { host: '127.0.0.1', servername: 'other.example', ca: id.tls.caCertPem })
  t.match(wrongName, { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'hostname still checked')
  const other = await loadOrCreateHubIdentity(t.testdir())
  const wrongCa = await handshake(t, id, { host: '127.0.0.1', servername: 'localhost', ca: other.tls.caCertPem })
  t.ok(wrongCa instanceof Error, 'another CA does not verify it')
  t.ok(new X509Certificate(id.tls.certPem).checkIP('::1'), '::1 SAN present')
})
