/**
 * Regression: "acknowledged messages lost in the full-size chaos run (50,000 down, hubs and NATS
 * servers SIGKILLed): read by a hub's outbox reader, never delivered" (issue 17, 2026-12-07).
 *
 * The chain: a hub's reader skipped a message X (an R1 consumer on a replica behind the leader),
 * its sender went on with later ones, the edge acknowledged past X, and the hub died before its
 * pre-purge check (which re-publishes what its reader never took). The edge then resumed on
 * another hub with a resume point above X. That hub's reader took X, but its sender resends only
 * above the resume point, and the pre-purge check counted "taken by my reader" as "sent": the
 * purge removed X, never delivered.
 *
 * The skipped read and the kill cannot be timed in a short test; their result can be set up
 * exactly: the edge's durable inbox states it has Y (the later message) and not X, as it would
 * after that hub. Then the edge connects: X must reach it, and Y must not reach the application
 * twice.
 */
import t from 'tap'
import { connect } from '@nats-io/transport-node'
import { jetstream, DeliverPolicy } from '@nats-io/jetstream'
import { newMessage } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { join } from 'node:path'
import { needNats, startClusterHub, startNats, subdir, until } from './helpers.js'

t.setTimeout(120_000)

t.test('an edge resuming past a message it never got still gets it (nothing at or below its resume point is vouched for)', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 1)
  const hub = await startClusterHub(t, nats, 'hub-a', ['wss://127.0.0.1:0'])
  const edgeDir = subdir(t, 'edge-1')

  // X then Y, queued while the edge is offline.
  const x = newMessage({ source: 'test', group: 'app', operation: 'publish', resource: 'default/log/x', content: { m: 'X' } })
  const y = newMessage({ source: 'test', group: 'app', operation: 'publish', resource: 'default/log/y', content: { m: 'Y' } })
  await hub.send('edge-1', x, { delivery: 'reliable' })
  await hub.send('edge-1', y, { delivery: 'reliable' })

  // Their stream seqs, read raw.
  const nc = await connect({ servers: nats.urls })
  t.teardown(() => nc.close())
  const c = await jetstream(nc).consumers.get('EF_TEST_DOWN', { filter_subjects: 'ef.test.down.edge-1.>', deliver_policy: DeliverPolicy.All })
  const seqOf = new Map<string, number>()
  for await (const m of await c.consume()) {
    seqOf.set(m.headers?.get('Ef-Id') ?? '', m.seq)
    if (m.info.pending === 0) break
  }
  const sx = seqOf.get(x.header.id)
  const sy = seqOf.get(y.header.id)
  t.ok(sx !== undefined && sy !== undefined && sx < sy, `X at seq ${sx}, Y at seq ${sy}`)

  // The edge's inbox as another hub left it: Y durably received (and acked), X never seen.
  const pre = await LmdbStore.open(join(edgeDir, 'reliable'), { durability: 'sync' })
  await pre.commitInbound('cloud', [{ seq: sy as number, id: y.header.id }], Date.now())
  t.equal(pre.receivedSeq('cloud'), sy, 'the edge will resume from Y')
  await pre.close()

  const got: string[] = []
  const edge = await EdgeNode.start({
    hub: hub.urls, nodeId: 'edge-1', token: hub.createToken('edge-1'), dataDir: edgeDir, admin: false,
    onReliable: env => { got.push((env.content as { m: string }).m) }
  })
  t.teardown(() => edge.close())
  await until('X delivered', () => got.includes('X'), 20_000).catch(() => {})
  t.same(got.filter(m => m === 'X'), ['X'], 'X reached the edge application (before the fix: purged, never delivered)')
  await until('outbox empty', async () => (await hub.cluster?.outboxDepth('edge-1')) === 0, 20_000)
  t.pass('the node\'s outbox is empty')
  t.notOk(got.includes('Y'), 'Y, which the edge had, was not handed to the application again')
})
