/**
 * The cluster's device registry store (src/cluster/registry-store.ts) on a real
 * 3-server NATS cluster (R3) passes the same suites as LMDB: the DeviceKv
 * contract (test/device/registry-store-compliance.ts) and the registry's
 * behaviour (test/device/registry-compliance.ts); then what only a shared
 * store has: two hubs' stores writing one key at once lose no update, and the
 * commit verdicts are the same on every hub.
 */
import t from 'tap'
import type { Test } from 'tap'
import { JetStreamKv } from '../../src/cluster/registry-store.js'
import { runRegistrySuite } from '../device/registry-compliance.js'
import { runDeviceKvSuite } from '../device/registry-store-compliance.js'
import { clusterConnections, needNats, perTestName, startNats } from './helpers.js'

t.setTimeout(600_000) // ≈ 65 s alone; over 300 s once beside 4 other cluster files on the 2 shared cores

t.test('JetStreamKv', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns = clusterConnections(t, nats.urls, { replicas: 3 })
  const nameFor = perTestName('r')
  /** A store per (test, name); reopening = a new connection, as a restarted hub. */
  const open = async (t: Test, name: string): Promise<JetStreamKv> => await JetStreamKv.open(await conns.open(nameFor(t, name)))

  t.test('store contract', async t => { runDeviceKvSuite(t, { open, persistent: true }) })
  t.test('registry suite', async t => { runRegistrySuite(t, open) })

  t.test('two hubs incrementing one counter at once: no lost update, the same view on both', async t => {
    const a = await open(t, 'shared')
    const b = await open(t, 'shared')
    t.teardown(async () => { await a.close(); await b.close() })
    const n = 60
    const inc = async (kv: JetStreamKv): Promise<void> => {
      await kv.transaction(tx => { tx.put('meta', 'revision', (tx.get<number>('meta', 'revision') ?? 0) + 1) })
    }
    // Both hubs keep several increments in flight, so their transactions race on the key.
    await Promise.all([...Array.from({ length: n }, async () => { await inc(a) }), ...Array.from({ length: n }, async () => { await inc(b) })])
    const last = Math.max(a.applied, b.applied)
    const until = async (kv: JetStreamKv): Promise<void> => { while (kv.applied < last) await new Promise(resolve => setTimeout(resolve, 10)) }
    await until(a)
    await until(b)
    t.equal(a.get('meta', 'revision'), 2 * n, `hub A sees ${2 * n} increments (log entries: ${last}, so ${last - 2 * n} attempts were refused and ran again)`)
    t.equal(b.get('meta', 'revision'), 2 * n, 'hub B sees the same')
    const c = await open(t, 'shared')
    t.teardown(() => c.close())
    t.equal(c.get('meta', 'revision'), 2 * n, 'a hub that opens later replays the log to the same state')
  })
})
