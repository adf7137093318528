import t from 'tap'
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FileBindingStore, MemoryBindingStore, checkOrBind } from '../../src/hub/bindings.js'
import { IdentityError } from '../../src/errors.js'
import { nodeKey, runBindingStoreSuite } from './binding-store-compliance.js'

t.test('MemoryBindingStore', async t => {
  runBindingStoreSuite(t, async () => new MemoryBindingStore())
})

t.test('FileBindingStore', async t => {
  runBindingStoreSuite(t, async t => await FileBindingStore.open(t.testdir()))
})

t.test('FileBindingStore survives reopen; file is 0600', async t => {
  const dir = t.testdir()
  const k1 = nodeKey()
  const k2 = nodeKey()
  const s = await FileBindingStore.open(dir)
  await checkOrBind(s, 'edge-1', k1.keyId, k1.raw, 111)
  await checkOrBind(s, 'edge-2', k2.keyId, k2.raw, 222)
  await s.remove('edge-2')
  await s.close()
  t.equal((await stat(s.file)).mode & 0o777, 0o600)
  const r = new FileBindingStore(dir)
  t.same(await r.get('edge-1'), { nodeId: 'edge-1', keyId: k1.keyId, publicKey: k1.raw, boundAt: 111 })
  t.equal(await r.get('edge-2'), undefined)
  await t.rejects(checkOrBind(r, 'edge-1', k2.keyId, k2.raw, 333), { code: 'EF_NODE_KEY_MISMATCH' }, 'binding enforced after restart')
  t.equal((await checkOrBind(r, 'edge-1', k1.keyId, k1.raw, 444)).created, false)
  await r.close()
  await t.rejects(r.bind('edge-3', k1.keyId, k1.raw, 1), { code: 'EF_IDENTITY_STORE' }, 'closed store refuses writes')
})

t.test('crash safety: a leftover temp file is ignored and later overwritten', async t => {
  const dir = t.testdir()
  const k = nodeKey()
  const s = await FileBindingStore.open(dir)
  await s.bind('edge-1', k.keyId, k.raw, 1)
  await s.close()
  // A crash between writing the temp file and the rename leaves junk next to the real file.
  await writeFile(join(dir, 'node-bindings.json.deadbeef.tmp'), '{"v":1,"bindings":{"edge-1": trunc')
  await writeFile(join(dir, 'node-bindings.json.tmp'), 'garbage')
  const r = new FileBindingStore(dir)
  t.equal((await r.get('edge-1'))?.keyId, k.keyId)
  await r.bind('edge-2', k.keyId, k.raw, 2)
  await r.close()
  t.same((await new FileBindingStore(dir).list()).map(b => b.nodeId).sort(), ['edge-1', 'edge-2'])
  const json = JSON.parse(await readFile(join(dir, 'node-bindings.json'), 'utf8')) as { v: number }
  t.equal(json.v, 2, 'written in format 2 (bindings + token records)')
  t.notOk((await readdir(dir)).some(f => /^node-bindings\.json\.[0-9a-f]{8}\.tmp$/.test(f) && f !== 'node-bindings.json.deadbeef.tmp'), 'own temp files cleaned up')
})

t.test('corrupt file: typed error naming it, file untouched', async t => {
  const k = nodeKey()
  const cases = [
    'not json',
    '[]',
    '{"v":3,"bindings":{}}',
    '{"v":2,"bindings":{}}',
    '{"v":2,"bindings":{},"tokens":{"a":{"node":"x"}}}',
    '{"v":1,"bindings":{"edge-1":{"keyId":"x","publicKey":"AAAA","boundAt":1}}}',
    `{"v":1,"bindings":{"edge-1":{"keyId":"${k.keyId}","publicKey":"${Buffer.from(nodeKey().raw).toString('base64url')}","boundAt":1}}}`,
    '{"v":1,"bindings":{"edge-1":null}}',
    `{"v":1,"bindings":{"Bad Name":{"keyId":"${k.keyId}","publicKey":"${Buffer.from(k.raw).toString('base64url')}","boundAt":1}}}`
  ]
  for (const text of cases) {
    const dir = t.testdir({ 'node-bindings.json': text })
    const file = join(dir, 'node-bindings.json')
    let err: unknown
    try {
      // eslint-disable-next-line no-new
      new FileBindingStore(dir)
    } catch (e) {
      err = e
    }
    t.ok(err instanceof IdentityError, `${text.slice(0, 30)}: IdentityError`)
    t.equal((err as IdentityError).file, file)
    t.equal(await readFile(file, 'utf8'), text, 'left untouched')
  }
})

t.test('a failed write reverts memory to the durable state and rejects the change', async t => {
  const dir = t.testdir()
  const k1 = nodeKey()
  const k2 = nodeKey()
  const s = await FileBindingStore.open(dir)
  await s.bind('edge-1', k1.keyId, k1.raw, 1)
  // Make the rename fail (works as root too, unlike chmod): the target becomes a non-empty directory.
  await rm(s.file)
  await mkdir(join(s.file, 'blocker'), { recursive: true })
  await t.rejects(checkOrBind(s, 'edge-2', k2.keyId, k2.raw, 2), { code: 'EF_IDENTITY_STORE', file: s.file })
  t.equal(await s.get('edge-2'), undefined, 'not bound in memory either')
  await t.rejects(s.remove('edge-1'), { code: 'EF_IDENTITY_STORE' })
  t.equal((await s.get('edge-1'))?.keyId, k1.keyId, 'remove reverted')
  t.notOk((await readdir(dir)).some(f => f.endsWith('.tmp')), 'temp file cleaned up after the failure')
  await rm(s.file, { recursive: true })
  t.equal((await checkOrBind(s, 'edge-2', k2.keyId, k2.raw, 3)).created, true, 'works again once writable')
  await s.close()
  t.same((await new FileBindingStore(dir).list()).map(b => b.nodeId).sort(), ['edge-1', 'edge-2'], 'durable state rewritten in full')
})

t.test('format 1 files (bindings only) still load, and are rewritten as format 2', async t => {
  const k = nodeKey()
  const dir = t.testdir({ 'node-bindings.json': JSON.stringify({ v: 1, bindings: { 'edge-1': { keyId: k.keyId, publicKey: Buffer.from(k.raw).toString('base64url'), boundAt: 5 } } }) })
  const s = new FileBindingStore(dir)
  t.equal((await s.get('edge-1'))?.boundAt, 5)
  await s.revoke('abcdef', 10)
  await s.close()
  const json = JSON.parse(await readFile(join(dir, 'node-bindings.json'), 'utf8')) as { v: number, tokens: Record<string, unknown> }
  t.equal(json.v, 2)
  t.ok(json.tokens.abcdef, 'token record written')
  const r = new FileBindingStore(dir)
  t.equal((await r.tokens())[0]?.revokedAt, 10, 'revocation survives reopen')
  t.equal((await r.get('edge-1'))?.keyId, k.keyId)
  await r.close()
})
