import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadOrCreateEdgeIdentity, nodeKeyId, publicKeyFromRaw, signChallenge, verifyChallenge } from '../../src/identity/node-key.js'
import { IdentityError } from '../../src/errors.js'

t.test('key is created once (0600) and reloaded', async t => {
  const dataDir = t.testdir()
  const a = await loadOrCreateEdgeIdentity(dataDir)
  t.equal(a.created, true)
  t.equal(a.publicKeyRaw.length, 32)
  t.equal(a.keyId, createHash('sha256').update(a.publicKeyRaw).digest().subarray(0, 16).toString('base64url'))
  t.match(a.keyId, /^[A-Za-z0-9_-]{22}$/)
  t.equal(a.file, join(dataDir, 'identity', 'edge.key'))
  t.equal((await stat(a.file)).mode & 0o777, 0o600)
  t.equal((await stat(join(dataDir, 'identity'))).mode & 0o777, 0o700)
  const b = await loadOrCreateEdgeIdentity(dataDir)
  t.equal(b.created, false)
  t.equal(b.keyId, a.keyId)
  t.same(b.publicKeyRaw, a.publicKeyRaw)
  t.same(await readdir(join(dataDir, 'identity')), ['edge.key'], 'no temp files left')
  const other = await loadOrCreateEdgeIdentity(t.testdir())
  t.not(other.keyId, a.keyId)
})

t.test('concurrent first starts converge on one key', async t => {
  const dataDir = t.testdir()
  const ids = await Promise.all([1, 2, 3, 4].map(async () => await loadOrCreateEdgeIdentity(dataDir)))
  t.equal(new Set(ids.map(i => i.keyId)).size, 1)
  t.equal(ids.filter(i => i.created).length, 1)
})

t.test('corrupt or foreign key file: typed error, file untouched', async t => {
  const dataDir = t.testdir({ identity: { 'edge.key': 'garbage' } })
  const file = join(dataDir, 'identity', 'edge.key')
  await t.rejects(loadOrCreateEdgeIdentity(dataDir), { code: 'EF_IDENTITY_STORE', file })
  t.equal(await readFile(file, 'utf8'), 'garbage')
  const { generateKeyPairSync } = await import('node:crypto')
  await writeFile(file, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }))
  const err = await loadOrCreateEdgeIdentity(dataDir).catch((e: unknown) => e)
  t.ok(err instanceof IdentityError)
  t.match((err as Error).message, /Ed25519/)
})

t.test('challenge: sign and verify', async t => {
  const id = await loadOrCreateEdgeIdentity(t.testdir())
  const nonce = randomBytes(32)
  const ctx = 'edgefabric/2 hello edge-1 hubid'
  const sig = signChallenge(id, nonce, ctx)
  t.equal(sig.length, 64)
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, ctx, sig), true)
  t.equal(publicKeyFromRaw(id.publicKeyRaw).asymmetricKeyType, 'ed25519')
  t.equal(nodeKeyId(id.publicKeyRaw), id.keyId)
})

t.test('challenge: anything different fails (never throws)', async t => {
  const id = await loadOrCreateEdgeIdentity(t.testdir())
  const other = await loadOrCreateEdgeIdentity(t.testdir())
  const nonce = randomBytes(32)
  const ctx = 'edgefabric/2 hello edge-1 hubid'
  const sig = signChallenge(id, nonce, ctx)
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, 'edgefabric/2 hello edge-2 hubid', sig), false, 'other node in context')
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, 'edgefabric/1 resume edge-1 hubid', sig), false, 'other purpose')
  t.equal(verifyChallenge(id.publicKeyRaw, randomBytes(32), ctx, sig), false, 'other nonce (replay)')
  t.equal(verifyChallenge(other.publicKeyRaw, nonce, ctx, sig), false, 'other key')
  const flipped = new Uint8Array(sig)
  flipped[3] = (flipped[3] as number) ^ 1
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, ctx, flipped), false, 'tampered signature')
  // Length prefixes: moving bytes between context and nonce must not verify.
  const n2 = Buffer.concat([Buffer.from('x'), nonce])
  const s2 = signChallenge(id, n2, ctx)
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, ctx + 'x', s2), false, 'no context/nonce ambiguity')
  // Malformed input
  t.equal(verifyChallenge(new Uint8Array(31), nonce, ctx, sig), false, 'short key')
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, ctx, sig.subarray(0, 63)), false, 'short signature')
  t.equal(verifyChallenge(id.publicKeyRaw, new Uint8Array(4), ctx, sig), false, 'short nonce')
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, '', sig), false, 'empty context')
  t.equal(verifyChallenge('x' as unknown as Uint8Array, nonce, ctx, sig), false, 'not bytes')
  t.equal(verifyChallenge(id.publicKeyRaw, nonce, ctx, null as unknown as Uint8Array), false, 'no signature')
  t.throws(() => signChallenge(id, new Uint8Array(4), ctx), { code: 'EF_INVALID_OPTION' })
  t.throws(() => nodeKeyId(new Uint8Array(5)), { code: 'EF_INVALID_OPTION' })
})
