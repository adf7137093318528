/**
 * The shared DeviceKv and registry suites (test/device/registry-store-compliance.ts,
 * registry-compliance.ts) over the cluster's registry store with compaction at its
 * most eager (`snapshotEvery` 2): every reopen starts from a snapshot and the log
 * is purged behind the writers all the time, and the contract still holds. Real
 * 3-server NATS cluster (R3).
 */
import t from 'tap'
import type { Test } from 'tap'
import { JetStreamKv } from '../../src/cluster/registry-store.js'
import { runRegistrySuite } from '../device/registry-compliance.js'
import { runDeviceKvSuite } from '../device/registry-store-compliance.js'
import { clusterConnections, needNats, perTestName, startNats } from './helpers.js'

t.setTimeout(600_000)

t.test('JetStreamKv with snapshotEvery 2', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns = clusterConnections(t, nats.urls, { replicas: 3 })
  const nameFor = perTestName('s')
  const errors: Error[] = []
  const events: Record<string, number> = {}
  const metrics = { snapshots: { inc: (l: { event: string }) => { events[l.event] = (events[l.event] ?? 0) + 1 } }, purged: { inc: () => {} } }
  const open = async (t: Test, name: string): Promise<JetStreamKv> => await JetStreamKv.open(await conns.open(nameFor(t, name)), err => { errors.push(err) }, { snapshotEvery: 2, metrics })
  await t.test('store contract', async t => { runDeviceKvSuite(t, { open, persistent: true }) })
  await t.test('registry suite', async t => { runRegistrySuite(t, open) })
  await t.test('no snapshot failed to write or verify', async t => {
    t.same(errors.filter(e => (e as { code?: string }).code === 'EF_REGISTRY_SNAPSHOT').map(e => e.message), [])
    t.ok((events.written ?? 0) > 0 && (events.loaded ?? 0) > 0, `the suites did exercise snapshots: ${JSON.stringify(events)}`)
  })
})
