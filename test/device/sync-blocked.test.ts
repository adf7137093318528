/**
 * Regression (issue 12, "Nothing is lost without a trace"): a device bound to
 * a node whose edge was started WITHOUT a device broker never synced, and the
 * hub said nothing (syncedRevision stayed 0, no log). Now the registry shows
 * why (`syncBlocked` on the device view and in the HTTP API), a counter
 * rises, and once the edge runs with devices the device syncs.
 */
import t from 'tap'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { Hub } from '../../src/hub/hub.js'
import { device, metric, thermostat } from './cloud-helpers.js'

async function until (check: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('device bound to an edge without a broker: the registry says why; it syncs once the edge has one', async t => {
  const dir = t.testdir({})
  const hub = await Hub.start({ listen: ['wss://127.0.0.1:0'], dataDir: `${dir}/hub`, admin: { host: '127.0.0.1', port: 0 }, devices: true })
  t.teardown(() => hub.close(200))
  const reg = hub.devices
  if (reg === undefined) throw new Error('no registry')
  await reg.upsertModel(thermostat as never)
  await reg.upsertDevice(device('t1', 'edge-1'))
  const token = hub.createToken('edge-1')
  const common = { hub: hub.urls[0] as string, nodeId: 'edge-1', token, dataDir: `${dir}/edge`, admin: false as const, backoff: { baseMs: 20, capMs: 200 } }

  let edge = await EdgeNode.start(common)
  await edge.waitConnected(10_000)
  await until(() => reg.getDevice('default', 't1')?.syncBlocked !== undefined)
  const d = reg.getDevice('default', 't1')
  t.match(d?.syncBlocked, { code: 'EF_EDGE_DEVICES_DISABLED', reason: /without a device broker/ })
  t.equal(d?.syncedRevision, 0)
  t.same(reg.listDevices({ nodeId: 'edge-1' }).map(v => v.syncBlocked?.code), ['EF_EDGE_DEVICES_DISABLED'], 'in lists too')
  t.equal(await metric(hub.registry, 'edgefabric_hub_device_sync_blocked_total', { reason: 'edge_devices_disabled' }), 1, 'counted')
  const res = await fetch(`${hub.adminUrl as string}/v1/devices/default/t1`)
  t.match(await res.json(), { syncBlocked: { code: 'EF_EDGE_DEVICES_DISABLED' } }, 'visible in the HTTP API')
  await edge.close()

  edge = await EdgeNode.start({ ...common, devices: { mqtt: { port: 0 } } })
  t.teardown(() => edge.close())
  await edge.waitConnected(10_000)
  await until(() => {
    const v = reg.getDevice('default', 't1')
    return v !== undefined && v.syncBlocked === undefined && v.syncedRevision === v.revision
  })
  t.pass('with a device broker the block is gone and the device syncs to its current revision')
})
