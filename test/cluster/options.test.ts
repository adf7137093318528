/**
 * Cluster options are validated once, with messages naming the option, and
 * the NATS names derived from the cluster name are the documented ones.
 */
import t from 'tap'
import { resolveClusterOptions } from '../../src/cluster/connection.js'
import { Names, keyHash } from '../../src/cluster/subjects.js'

t.test('validation names the option', async t => {
  t.throws(() => resolveClusterOptions({ servers: [] }), { code: 'EF_INVALID_OPTION', message: /cluster\.servers/ })
  t.throws(() => resolveClusterOptions({ servers: ['http://x:1'] }), { message: /cluster\.servers/ })
  t.throws(() => resolveClusterOptions({ servers: ['nats://a:4222'], name: 'a.b' }), { message: /cluster\.name/ })
  t.throws(() => resolveClusterOptions({ servers: ['nats://a:4222'], replicas: 0 }), { message: /cluster\.replicas/ })
  t.throws(() => resolveClusterOptions({ servers: ['nats://a:4222'], identitySecret: 'short' }), { message: /cluster\.identitySecret/ })
  t.throws(() => resolveClusterOptions({ servers: ['nats://a:4222'], registrySnapshotEvery: 1 }), { code: 'EF_INVALID_OPTION', message: /cluster\.registrySnapshotEvery/ })
  t.throws(() => resolveClusterOptions({ servers: ['nats://a:4222'], registrySnapshotEvery: -5 }), { message: /cluster\.registrySnapshotEvery/ })
  t.equal(resolveClusterOptions({ servers: ['nats://a:4222'], registrySnapshotEvery: 0 }, {}).registrySnapshotEvery, 0, '0: compaction off')
  const o = resolveClusterOptions({ servers: ['nats://a:4222'] }, {})
  t.equal(o.name, 'default')
  t.equal(o.replicas, 3)
  t.equal(o.identitySecret, undefined)
  t.equal(o.registrySnapshotEvery, 10_000, 'the registry log is compacted every 10,000 entries by default')
  t.ok(Object.isFrozen(o))
  t.equal(resolveClusterOptions({ servers: ['nats://a:4222'] }, { EDGEFABRIC_CLUSTER_SECRET: 'x'.repeat(16) }).identitySecret, 'x'.repeat(16), 'secret from the environment')
})

t.test('names', async t => {
  const n = new Names('prod')
  t.equal(n.streamDown, 'EF_PROD_DOWN')
  t.equal(n.bucketPresence, 'ef_prod_presence')
  t.equal(n.down('edge.1'), 'ef.prod.down.edge_1.>', "a '.' in a node name is written '_' in subjects")
  t.equal(n.nodeOfDown('ef.prod.down.edge_1.m.x'), 'edge.1')
  t.equal(n.nodeReq('e'), 'ef.prod.node.e.req')
  t.match(n.downResource('e', 'default/cm/a b.c'), /^ef\.prod\.down\.e\.r\.[A-Za-z0-9_-]{22}$/, 'resource keys are hashed into one subject token')
  t.not(keyHash('a'), keyHash('b'))
  const uuid = '0b6f6a53-7f7e-4d0c-9a43-2f0f6a1c9e11'
  t.equal(n.downMessage('e', uuid), `ef.prod.down.e.m.${uuid}`, 'an id that is one subject token is used as is (no digest per message)')
  for (const id of ['a.b', 'a*', 'a>', 'a b', 'x'.repeat(65), '']) {
    t.equal(n.downMessage('e', id), `ef.prod.down.e.m.${keyHash(id)}`, `id ${JSON.stringify(id.slice(0, 8))} is not one token: digested`)
  }
})
