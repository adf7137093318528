/**
 * Behaviour every NodeBindingStore must have. Each implementation's test
 * calls runBindingStoreSuite with a factory for fresh, empty stores.
 */
import type { Test } from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { checkOrBind } from '../../src/hub/bindings.js'
import type { NodeBindingStore } from '../../src/hub/bindings.js'
import { nodeKeyId, rawPublicKey } from '../../src/identity/node-key.js'
import { JoinRefusedError } from '../../src/errors.js'

export interface NodeKey { raw: Uint8Array, keyId: string }

export function nodeKey (): NodeKey {
  const raw = rawPublicKey(generateKeyPairSync('ed25519').publicKey)
  return { raw, keyId: nodeKeyId(raw) }
}

export type StoreFactory = (t: Test) => Promise<NodeBindingStore>

export function runBindingStoreSuite (t: Test, factory: StoreFactory): void {
  t.test('empty store', async t => {
    const s = await factory(t)
    t.equal(await s.get('edge-1'), undefined)
    t.same(await s.list(), [])
    t.equal(await s.remove('edge-1'), false)
    await s.close()
  })

  t.test('bind is bind-if-absent and returns the binding in effect', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    const b1 = await s.bind('edge-1', k1.keyId, k1.raw, 1000)
    t.same(b1, { nodeId: 'edge-1', keyId: k1.keyId, publicKey: k1.raw, boundAt: 1000 })
    const b2 = await s.bind('edge-1', k2.keyId, k2.raw, 2000)
    t.same(b2, b1, 'existing binding kept')
    t.same(await s.get('edge-1'), b1)
    await s.bind('edge-2', k2.keyId, k2.raw, 3000)
    t.same((await s.list()).map(b => b.nodeId).sort(), ['edge-1', 'edge-2'])
    await s.close()
  })

  t.test('bind validates its arguments (what is stored must reload)', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    await t.rejects(s.bind('edge-1', k2.keyId, k1.raw, 1), { code: 'EF_INVALID_OPTION' }, 'key id of another key')
    await t.rejects(s.bind('edge-1', k1.keyId, k1.raw.subarray(0, 31), 1), { code: 'EF_INVALID_OPTION' }, 'short key')
    await t.rejects(s.bind('__proto__', k1.keyId, k1.raw, 1), { code: 'EF_NODE_NAME_INVALID' }, 'bad name')
    t.same(await s.list(), [])
    await s.close()
  })

  t.test('returned bindings are copies', async t => {
    const s = await factory(t)
    const k = nodeKey()
    const b = await s.bind('edge-1', k.keyId, k.raw, 1)
    b.publicKey[0] = (b.publicKey[0] as number) ^ 0xff
    b.keyId = 'changed'
    k.raw[1] = (k.raw[1] as number) ^ 0xff // the caller's buffer too
    const again = await s.get('edge-1')
    t.equal(again?.keyId, nodeKeyId(again?.publicKey ?? new Uint8Array(32)), 'stored binding unaffected')
    await s.close()
  })

  t.test('remove then rebind to a new key', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    await s.bind('edge-1', k1.keyId, k1.raw, 1)
    t.equal(await s.remove('edge-1'), true)
    t.equal(await s.get('edge-1'), undefined)
    t.equal(await s.remove('edge-1'), false)
    const b = await s.bind('edge-1', k2.keyId, k2.raw, 2)
    t.equal(b.keyId, k2.keyId)
    await s.close()
  })

  t.test('checkOrBind: first join binds, same key passes, other key refused', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    const first = await checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 100)
    t.equal(first.created, true)
    const again = await checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 200)
    t.equal(again.created, false)
    t.equal(again.binding.boundAt, 100)
    const err = await checkOrBind(s, 'edge-1', k2.keyId, k2.raw, 300).catch((e: unknown) => e)
    t.ok(err instanceof JoinRefusedError)
    t.equal((err as JoinRefusedError).code, 'EF_NODE_KEY_MISMATCH')
    t.equal((err as JoinRefusedError).retryable, false)
    t.equal((err as JoinRefusedError).reason, 'node name edge-1 is already bound to another key')
    t.equal((await s.get('edge-1'))?.keyId, k1.keyId, 'binding unchanged')
    // a key id that does not belong to the presented key
    await t.rejects(checkOrBind(s, 'edge-9', k1.keyId, k2.raw, 1), { code: 'EF_NODE_KEY_MISMATCH' })
    await t.rejects(checkOrBind(s, 'edge-9', k1.keyId, new Uint8Array(5), 1), { code: 'EF_NODE_KEY_MISMATCH' })
    await t.rejects(checkOrBind(s, 'Bad_Name', k1.keyId, k1.raw, 1), { code: 'EF_NODE_NAME_INVALID' })
    t.equal(await s.get('edge-9'), undefined)
    await s.close()
  })

  t.test('racing first joins with different keys: exactly one wins', async t => {
    const s = await factory(t)
    const keys = Array.from({ length: 8 }, nodeKey)
    const results = await Promise.allSettled(keys.map(async (k, i) => await checkOrBind(s, 'edge-1', k.keyId, k.raw, 10 + i)))
    const won = results.filter(r => r.status === 'fulfilled')
    t.equal(won.length, 1)
    for (const r of results) {
      if (r.status === 'rejected') t.equal((r.reason as JoinRefusedError).code, 'EF_NODE_KEY_MISMATCH')
    }
    t.equal((await s.get('edge-1'))?.keyId, (won[0] as PromiseFulfilledResult<{ binding: { keyId: string } }>).value.binding.keyId)
    await s.close()
  })

  t.test('many concurrent binds of distinct nodes all land', async t => {
    const s = await factory(t)
    const k = nodeKey()
    await Promise.all(Array.from({ length: 200 }, async (_, i) => await s.bind(`node-${i}`, k.keyId, k.raw, i)))
    t.equal((await s.list()).length, 200)
    await s.close()
  })

  const tok = (jti: string, reusable = false, node = 'edge-1') => ({ jti, node, exp: 2_000_000_000, reusable })

  t.test('single-use token: first key wins, same key may re-present it, other keys EF_TOKEN_USED', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    await checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 100, tok('t1'))
    const again = await checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 200, tok('t1'))
    t.equal(again.binding.keyId, k1.keyId, 'same key, same token: fine')
    // another key with the same token, for a name not yet bound (e.g. a reusable-looking replay)
    await t.rejects(checkOrBind(s, 'edge-2', k2.keyId, k2.raw, 300, tok('t1', false, 'edge-1')), { code: 'EF_TOKEN_USED' })
    t.equal(await s.get('edge-2'), undefined, 'nothing bound by the refused join')
    const recs = await s.tokens()
    t.equal(recs.length, 1)
    t.equal(recs[0]?.useCount, 1)
    t.same(recs[0]?.uses.map(u => u.keyId), [k1.keyId])
    await s.close()
  })

  t.test('reusable token binds many keys; revoke stops it', async t => {
    const s = await factory(t)
    const keys = [nodeKey(), nodeKey(), nodeKey()]
    for (const [i, k] of keys.entries()) await checkOrBind(s, `dev-${i}`, k.keyId, k.raw, 10 + i, tok('multi', true, '*'))
    t.equal((await s.tokens())[0]?.useCount, 3)
    t.equal(await s.revoke('multi', 50), true)
    t.equal(await s.revoke('multi', 60), false, 'already revoked')
    const k = nodeKey()
    await t.rejects(checkOrBind(s, 'dev-9', k.keyId, k.raw, 70, tok('multi', true, '*')), { code: 'EF_TOKEN_REVOKED' })
    t.ok(await s.get('dev-0'), 'bound nodes stay bound after a revoke')
    await s.close()
  })

  t.test('remove revokes the single-use token the node joined with', async t => {
    const s = await factory(t)
    const k = nodeKey()
    await checkOrBind(s, 'edge-1', k.keyId, k.raw, 1, tok('t1'))
    await s.recordIssued(tok('t2'), 2)
    t.equal(await s.remove('edge-1', 3), true)
    await t.rejects(checkOrBind(s, 'edge-1', k.keyId, k.raw, 4, tok('t1')), { code: 'EF_TOKEN_REVOKED' }, 'the removed edge cannot replay its token')
    const b = await checkOrBind(s, 'edge-1', k.keyId, k.raw, 5, tok('t2'))
    t.equal(b.created, true, 'a new token rebinds')
    const t2 = (await s.tokens()).find(r => r.jti === 't2')
    t.equal(t2?.issuedAt, 2)
    t.equal(t2?.useCount, 1)
    await s.close()
  })

  t.test('rotate moves the binding to a new key, only from the bound key', async t => {
    const s = await factory(t)
    const k1 = nodeKey()
    const k2 = nodeKey()
    await s.bind('edge-1', k1.keyId, k1.raw, 1)
    await t.rejects(s.rotate('edge-1', k2.keyId, k2.keyId, k2.raw, 2), { code: 'EF_NODE_KEY_MISMATCH' })
    const b = await s.rotate('edge-1', k1.keyId, k2.keyId, k2.raw, 3)
    t.equal(b.keyId, k2.keyId)
    t.equal(b.boundAt, 1)
    t.equal(b.rotatedAt, 3)
    await t.rejects(checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 4), { code: 'EF_NODE_KEY_MISMATCH' }, 'old key retired')
    await s.close()
  })

  t.test('expired token records are pruned (bounded table)', async t => {
    const s = await factory(t)
    await s.recordIssued({ jti: 'old', node: 'edge-1', exp: 100, reusable: false }, 1000)
    await s.recordIssued({ jti: 'new', node: 'edge-1', exp: 2_000_000_000, reusable: false }, 100_000_000 + 1000)
    t.same((await s.tokens()).map(r => r.jti), ['new'])
    await s.close()
  })
}
