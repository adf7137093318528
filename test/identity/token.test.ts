import t from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
import { generateKeyPairSync, sign } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { createJoinToken, decodeJoinToken, isValidNodeName, validateNodeName, verifyJoinToken } from '../../src/identity/token.js'
import type { TokenIssuer } from '../../src/identity/token.js'
import { JoinRefusedError } from '../../src/errors.js'

// Token logic needs no files: a synthetic issuer keeps this test fast.
function issuer (): TokenIssuer & { tokenPublicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    tokenSigningKey: privateKey,
    tokenPublicKey: publicKey,
    quicPeerId: '12D3KooWQe7KjCz2tLPG1HQ4JxjrJxbFgrM7RnGSqPnRZW3iR3S9',
    caFingerprint: 'ab'.repeat(32)
  }
}

const NOW = 1_700_000_000_000

function refusal (t: Test, fn: () => unknown, code: string, name: string): void {
  try {
    fn()
    t.fail(`${name}: expected ${code}`)
  } catch (err) {
    t.ok(err instanceof JoinRefusedError, `${name}: JoinRefusedError`)
    t.equal((err as JoinRefusedError).code, code, `${name}: ${code}`)
    t.equal((err as JoinRefusedError).retryable, false, `${name}: not retryable`)
    t.notMatch((err as JoinRefusedError).reason, /\n/, `${name}: one line`)
  }
}

function b64 (o: unknown): string { return Buffer.from(JSON.stringify(o)).toString('base64url') }

t.test('round trip: create, verify, decode', async t => {
  const id = issuer()
  const token = createJoinToken(id, { nodeId: 'edge-1', now: NOW })
  t.match(token, /^ef1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
  const p = verifyJoinToken(token, id.tokenPublicKey, { now: NOW + 1000, nodeId: 'edge-1' })
  t.same(p, { v: 1, node: 'edge-1', iat: NOW / 1000, exp: NOW / 1000 + 86400, jti: p.jti, pins: { quic: id.quicPeerId, tls: id.caFingerprint } })
  t.match(p.jti, /^[A-Za-z0-9_-]{16}$/)
  t.same(decodeJoinToken(token), p, 'edge decodes the same payload')
  t.same(verifyJoinToken(`  ${token}\n`, id.tokenPublicKey, { now: NOW }), p, 'surrounding whitespace (copy/paste) tolerated')
  t.not(createJoinToken(id, { nodeId: 'edge-1', now: NOW }), token, 'fresh jti each time')
})

t.test('expiry', async t => {
  const id = issuer()
  const token = createJoinToken(id, { nodeId: 'edge-1', ttlSeconds: 60, now: NOW })
  t.ok(verifyJoinToken(token, id.tokenPublicKey, { now: NOW + 59_999 }))
  refusal(t, () => verifyJoinToken(token, id.tokenPublicKey, { now: NOW + 60_000 }), 'EF_TOKEN_EXPIRED', 'at exp')
  refusal(t, () => verifyJoinToken(token, id.tokenPublicKey, { now: NOW + 86_400_000 }), 'EF_TOKEN_EXPIRED', 'a day later')
  t.throws(() => createJoinToken(id, { nodeId: 'edge-1', ttlSeconds: 0 }), { code: 'EF_INVALID_OPTION' })
  t.throws(() => createJoinToken(id, { nodeId: 'edge-1', ttlSeconds: 1.5 }), { code: 'EF_INVALID_OPTION' })
})

t.test('tampering and wrong keys are refused as invalid', async t => {
  const id = issuer()
  const token = createJoinToken(id, { nodeId: 'edge-1', now: NOW })
  const [prefix, payload, sig] = token.split('.') as [string, string, string]
  const claims = decodeJoinToken(token)

  const forged = b64({ ...claims, node: 'edge-2' })
  refusal(t, () => verifyJoinToken(`${prefix}.${forged}.${sig}`, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'payload swapped')
  const longer = b64({ ...claims, exp: claims.exp + 1e6 })
  refusal(t, () => verifyJoinToken(`${prefix}.${longer}.${sig}`, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'exp extended')

  const sigBytes = Buffer.from(sig, 'base64url')
  sigBytes[10] = (sigBytes[10] as number) ^ 1
  refusal(t, () => verifyJoinToken(`${prefix}.${payload}.${sigBytes.toString('base64url')}`, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'signature bit flip')
  refusal(t, () => verifyJoinToken(`${prefix}.${payload}.${sig.slice(0, -2)}`, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'signature truncated')
  const payloadBytes = Buffer.from(payload, 'base64url')
  payloadBytes[5] = (payloadBytes[5] as number) ^ 0x20
  refusal(t, () => verifyJoinToken(`${prefix}.${payloadBytes.toString('base64url')}.${sig}`, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'payload byte flip')

  const other = issuer()
  refusal(t, () => verifyJoinToken(token, other.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 'another hub key')
  const foreign = createJoinToken(other, { nodeId: 'edge-1', now: NOW })
  refusal(t, () => verifyJoinToken(foreign, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', "another hub's token")

  // A validly signed payload that is not ours: the signature covers the prefix too.
  const resigned = `${prefix}.${forged}.${sign(null, Buffer.from(`${prefix}.${forged}`), other.tokenSigningKey).toString('base64url')}`
  refusal(t, () => verifyJoinToken(resigned, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', 're-signed with another key')
  t.throws(() => verifyJoinToken(token, 'nope' as unknown as KeyObject), { code: 'EF_INVALID_OPTION' }, 'programming error: not a key')
})

t.test('wrong node and version', async t => {
  const id = issuer()
  const token = createJoinToken(id, { nodeId: 'edge-1', now: NOW })
  refusal(t, () => verifyJoinToken(token, id.tokenPublicKey, { now: NOW, nodeId: 'edge-2' }), 'EF_NODE_MISMATCH', 'other node')
  try {
    verifyJoinToken(token, id.tokenPublicKey, { now: NOW, nodeId: 'edge-2' })
  } catch (err) {
    t.match((err as JoinRefusedError).reason, /issued for node "edge-1", not "edge-2"/)
  }
  const [, payload, sig] = token.split('.') as [string, string, string]
  refusal(t, () => verifyJoinToken(`ef2.${payload}.${sig}`, id.tokenPublicKey, { now: NOW }), 'EF_UNSUPPORTED_VERSION', 'ef2 prefix')
  refusal(t, () => decodeJoinToken(`ef2.${payload}.${sig}`), 'EF_UNSUPPORTED_VERSION', 'ef2 prefix (edge)')
  // A correctly signed v2 payload under the ef1 envelope.
  const v2 = b64({ ...decodeJoinToken(token), v: 2 })
  const signed = `ef1.${v2}.${sign(null, Buffer.from(`ef1.${v2}`), id.tokenSigningKey).toString('base64url')}`
  refusal(t, () => verifyJoinToken(signed, id.tokenPublicKey, { now: NOW }), 'EF_UNSUPPORTED_VERSION', 'payload v2')
})

t.test('node names', async t => {
  for (const ok of ['edge-1', 'a', '0', 'rack.3.node-12', 'x'.repeat(63)]) t.ok(isValidNodeName(ok), ok)
  for (const bad of ['', 'Edge', '-a', 'a-', 'a_b', 'a b', 'x'.repeat(64), '.a', 'a.', 'é', 'a/b']) {
    t.notOk(isValidNodeName(bad), JSON.stringify(bad))
    refusal(t, () => validateNodeName(bad), 'EF_NODE_NAME_INVALID', JSON.stringify(bad))
  }
  refusal(t, () => createJoinToken(issuer(), { nodeId: 'Bad Name' }), 'EF_NODE_NAME_INVALID', 'create')
  t.notOk(isValidNodeName(42))
})

t.test('structurally bad tokens: always EF_TOKEN_INVALID, on both sides', async t => {
  const id = issuer()
  const sig = Buffer.alloc(64, 7).toString('base64url')
  const good = decodeJoinToken(createJoinToken(id, { nodeId: 'edge-1', now: NOW }))
  const bad: unknown[] = [
    undefined, null, 42, {}, '', '   ', 'ef1', 'ef1.', 'ef1..', 'ef1.a.b.c', 'jwt.abc.def', `ef1.${b64(good)}`,
    `ef1.${b64(good)}.${sig}.x`, `ef1.${b64(good)}.${sig}=`, `ef1.${b64(good)}=.${sig}`, `ef1.${b64(good)}.${sig.slice(0, -1)}B`,
    `ef1.${b64([1, 2])}.${sig}`, `ef1.${b64('str')}.${sig}`, `ef1.${Buffer.from('{not json').toString('base64url')}.${sig}`,
    `ef1.${b64({ ...good, v: undefined })}.${sig}`, `ef1.${b64({ ...good, node: 'BAD' })}.${sig}`,
    `ef1.${b64({ ...good, exp: good.iat })}.${sig}`, `ef1.${b64({ ...good, iat: -1 })}.${sig}`, `ef1.${b64({ ...good, exp: '9' })}.${sig}`,
    `ef1.${b64({ ...good, jti: '' })}.${sig}`, `ef1.${b64({ ...good, pins: null })}.${sig}`, `ef1.${b64({ ...good, pins: { quic: 'x', tls: good.pins.tls } })}.${sig}`,
    `ef1.${b64({ ...good, pins: { quic: good.pins.quic, tls: 'AB'.repeat(32) } })}.${sig}`, `ef1.${b64({ __proto__: { v: 1 } })}.${sig}`,
    'ef1.' + 'A'.repeat(5000) + '.' + sig
  ]
  for (const [i, token] of bad.entries()) {
    refusal(t, () => decodeJoinToken(token), 'EF_TOKEN_INVALID', `decode #${i}`)
    refusal(t, () => verifyJoinToken(token, id.tokenPublicKey, { now: NOW }), 'EF_TOKEN_INVALID', `verify #${i}`)
  }
})

t.test('fuzz: random strings and mutated tokens only ever yield JoinRefusedError', async t => {
  const id = issuer()
  const token = createJoinToken(id, { nodeId: 'edge-1', now: NOW })
  const check = (s: string): boolean => {
    for (const fn of [() => verifyJoinToken(s, id.tokenPublicKey, { now: NOW }), () => decodeJoinToken(s)]) {
      try {
        fn()
      } catch (err) {
        if (!(err instanceof JoinRefusedError)) return false
      }
    }
    return true
  }
  fc.assert(fc.property(fc.string({ maxLength: 400 }), check), { numRuns: 2000 })
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), s => check(`ef1.${s}`) && check(`ef1.${Buffer.from(s).toString('base64url')}.${s}`)), { numRuns: 1000 })
  // Mutations of a real token must never verify, and never throw anything else.
  fc.assert(fc.property(fc.nat(token.length - 1), fc.constantFrom(...'AZaz09-_.=+/ x'.split('')), (pos, ch) => {
    const mutated = token.slice(0, pos) + ch + token.slice(pos + 1)
    if (mutated === token) return true
    try {
      verifyJoinToken(mutated, id.tokenPublicKey, { now: NOW })
      // Only a base64url change in padding bits could decode to the same bytes;
      // canonical-encoding checks rule that out, so reaching here is a bug.
      return false
    } catch (err) {
      return err instanceof JoinRefusedError
    }
  }), { numRuns: 2000 })
  t.pass('fuzzed')
})
