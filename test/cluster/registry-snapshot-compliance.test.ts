/**
 * The shared DeviceKv and registry suites (test/device/registry-store-compliance.ts,
 * registry-compliance.ts) over the cluster's registry store with compaction at its
 * most eager (`snapshotEvery` 2): every reopen starts from a snapshot and the log
 * is purged behind the writers all the time, and the contract still holds. Real
 * 3-server NATS cluster (R3).
 */
import t from 'tap'
import type { Test } from 'tap'
import { ClusterConnection, resolveClusterOptions } from '../../src/cluster/connection.js'
import { JetStreamKv } from '../../src/cluster/registry-store.js'
import { nullLogger } from '../../src/ops/logger.js'
import { runRegistrySuite } from '../device/registry-compliance.js'
import { runDeviceKvSuite } from '../device/registry-store-compliance.js'
import { needNats, startNats } from './helpers.js'

t.setTimeout(600_000)

t.test('JetStreamKv with snapshotEvery 2', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns: ClusterConnection[] = []
  t.teardown(async () => { for (const c of conns) await c.close() })
  const names = new WeakMap<Test, number>()
  let tests = 0
  const errors: Error[] = []
  const events: Record<string, number> = {}
  const metrics = { snapshots: { inc: (l: { event: string }) => { events[l.event] = (events[l.event] ?? 0) + 1 } }, purged: { inc: () => {} } }
  const open = async (t: Test, name: string): Promise<JetStreamKv> => {
    let id = names.get(t)
    if (id === undefined) { id = ++tests; names.set(t, id) }
    const c = await ClusterConnection.open(resolveClusterOptions({ servers: nats.urls, name: `s${id}-${name}`, replicas: 3 }), nullLogger)
    conns.push(c)
    return await JetStreamKv.open(c, err => { errors.push(err) }, { snapshotEvery: 2, metrics })
  }
  await t.test('store contract', async t => { runDeviceKvSuite(t, { open, persistent: true }) })
  await t.test('registry suite', async t => { runRegistrySuite(t, open) })
  await t.test('no snapshot failed to write or verify', async t => {
    t.same(errors.filter(e => (e as { code?: string }).code === 'EF_REGISTRY_SNAPSHOT').map(e => e.message), [])
    t.ok((events.written ?? 0) > 0 && (events.loaded ?? 0) > 0, `the suites did exercise snapshots: ${JSON.stringify(events)}`)
  })
  // Stop the servers here rather than in the teardowns: tap removes the test dir (registered
  // by startNats' t.testdir) before the servers' stop, and servers still busy with this many
  // streams made that removal fail (ENOTEMPTY) and skip the stop.
  for (const c of conns.splice(0)) await c.close()
  await nats.stop()
})
