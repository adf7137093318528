/**
 * A NATS server SIGKILLed while two hubs' device registries write (issue 17:
 * "killing any one NATS server loses nothing that was acknowledged"). Two
 * registries over the cluster store (R3 on 3 servers) create devices as fast
 * as they can; one server is SIGKILLed mid-way and restarted. Writes may fail
 * while JetStream elects new leaders (typed errors); every write that was
 * acknowledged must be in a registry opened afterwards, with its revision,
 * and every revision is unique.
 */
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { JetStreamKv } from '../../src/cluster/registry-store.js'
import { DeviceRegistry } from '../../src/device/cloud/registry.js'
import { device, thermostat } from '../device/cloud-helpers.js'
import { clusterConnections, needNats, startNats } from './helpers.js'

t.setTimeout(240_000)

t.test('registry writes during a NATS server SIGKILL: no acknowledged write lost', async t => {
  if (!needNats(t)) return
  const nats = await startNats(t, 3)
  const conns = clusterConnections(t, nats.urls, { replicas: 3, timeoutMs: 2000 })
  const open = async (): Promise<DeviceRegistry> => {
    return await DeviceRegistry.open({ kv: await JetStreamKv.open(await conns.open('kill')) })
  }
  const a = await open()
  const b = await open()
  await a.upsertModel(thermostat as never)

  const acked = new Map<string, number>()
  const failed: string[] = []
  let stop = false
  const writer = async (reg: DeviceRegistry, w: string): Promise<void> => {
    for (let i = 0; !stop; i++) {
      const name = `${w}-${i}`
      try {
        const v = await reg.upsertDevice(device(name, `edge-${i % 5}`))
        acked.set(name, v.revision)
      } catch (err) {
        failed.push(`${name}: ${(err as { code?: string }).code ?? String(err)}`)
        await sleep(50)
      }
    }
  }
  const writing = [writer(a, 'a'), writer(b, 'b')]
  await sleep(1500)
  const before = acked.size
  await nats.kill(1)
  await sleep(8000)
  const during = acked.size - before
  await nats.restart(1)
  const restarted = acked.size
  const deadline = Date.now() + 60_000
  while (acked.size < restarted + 50 && Date.now() < deadline) await sleep(100)
  const after = acked.size - restarted
  stop = true
  await Promise.all(writing)
  await a.close()
  await b.close()

  t.ok(acked.size > 0, `${acked.size} writes acknowledged (${before} before the kill, ${during} in the 8 s the server was down), ${failed.length} refused: ${failed.slice(0, 5).join('; ')}`)
  t.ok(after >= 50, `writes recover by themselves after the restart (${after} more acknowledged)`)
  // A registry opened afterwards (a hub starting) replays the log.
  const c = await open()
  t.teardown(() => c.close())
  const lost = [...acked].filter(([name, rev]) => c.getDevice('default', name)?.revision !== rev)
  t.same(lost, [], 'every acknowledged write is there, at its revision')
  const revs = c.listDevices().map(d => d.revision)
  t.equal(new Set(revs).size, revs.length, `every revision is unique (${revs.length} devices)`)
})
