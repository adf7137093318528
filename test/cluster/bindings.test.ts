/**
 * The cluster-wide binding store (KV, src/cluster/bindings.ts) passes the
 * hub's binding-store compliance suite, and two hubs racing the first join of
 * one name end with one binding.
 */
import t from 'tap'
import { KvBindingStore } from '../../src/cluster/bindings.js'
import { nodeKey, runBindingStoreSuite } from '../hub/binding-store-compliance.js'
import { clusterConnections, needNats, startNats } from './helpers.js'

t.setTimeout(120_000)

t.test('KvBindingStore', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  let n = 0
  const open = clusterConnections(t, nats.urls, { replicas: 1 }).open
  runBindingStoreSuite(t, async () => new KvBindingStore(await open(`b${++n}`)))

  t.test('two hubs race the first join of one name: one binding wins', async t => {
    const c1 = await open('race')
    const c2 = await open('race')
    const s1 = new KvBindingStore(c1)
    const s2 = new KvBindingStore(c2)
    const k1 = nodeKey()
    const k2 = nodeKey()
    const [b1, b2] = await Promise.all([s1.bind('edge-1', k1.keyId, k1.raw, 1), s2.bind('edge-1', k2.keyId, k2.raw, 2)])
    t.same(b1, b2, 'both hubs see the same binding in effect')
    t.same(await s1.get('edge-1'), b1)
  })
})
