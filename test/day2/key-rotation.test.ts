/**
 * Issue 12: node key rotation while connected — the new key is proven (and
 * co-signed by the old one), the hub moves the binding, the old key is
 * retired: an edge holding the old key is refused afterwards, while the
 * rotated edge reconnects with its new key.
 */
import { once } from 'node:events'
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Hub } from '../../src/hub/hub.js'
import { EdgeNode } from '../../src/edge/edge-node.js'

t.test('rotate the node key in session; the old key no longer authenticates', async t => {
  const root = t.testdir({})
  const hub = await Hub.start({ listen: ['ws://127.0.0.1:0'], dataDir: join(root, 'hub'), admin: false })
  t.teardown(() => hub.close(0))
  const edgeDir = join(root, 'edge')
  const edge = await EdgeNode.start({ hub: hub.url, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: edgeDir, admin: false, backoff: { baseMs: 20, capMs: 100 } })
  t.teardown(() => edge.close())
  await edge.waitConnected(10_000)
  const oldKeyId = edge.identity.keyId
  const oldPem = readFileSync(join(edgeDir, 'identity', 'edge.key'))

  const keyId = await edge.rotateKey()
  t.not(keyId, oldKeyId)
  t.equal(edge.identity.keyId, keyId)
  t.equal((await hub.bindings.get('edge-1'))?.keyId, keyId, 'the hub bound the new key')
  t.not(readFileSync(join(edgeDir, 'identity', 'edge.key')).toString(), oldPem.toString(), 'edge.key replaced on disk')

  // the rotated edge reconnects with its new key
  const back = once(edge, 'connected')
  t.ok(edge.dropConnection())
  await back
  t.pass('reconnected after rotation')

  // an impostor with the old key (and the join record) is refused
  const oldDir = join(root, 'old')
  mkdirSync(join(oldDir, 'identity'), { recursive: true })
  copyFileSync(join(edgeDir, 'identity', 'hub.json'), join(oldDir, 'identity', 'hub.json'))
  const { writeFileSync } = await import('node:fs')
  writeFileSync(join(oldDir, 'identity', 'edge.key'), oldPem, { mode: 0o600 })
  const old = await EdgeNode.start({ hub: hub.url, nodeId: 'edge-1', dataDir: oldDir, admin: false })
  t.teardown(() => old.close())
  t.equal(old.identity.keyId, oldKeyId)
  await t.rejects(old.waitConnected(10_000), { message: /EF_NODE_KEY_MISMATCH/ }, 'the retired key is refused')
})
