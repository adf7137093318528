/**
 * DMI pushes to a mapper that is down (issue 14 part 2), on a ManualClock:
 * retries back off (doubling, ±20 % jitter, capped), changes made meanwhile
 * do not cause extra calls and coalesce into one push of the latest state
 * when the mapper is back, and what it acknowledged is persisted.
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { ManualClock, type TimerHandle } from '../../src/util/clock.js'
import { nullLogger } from '../../src/ops/logger.js'
import { TwinStore } from '../../src/device/edge/twin-store.js'
import { newRecord } from '../../src/device/edge/twin-state.js'
import { DmiStore } from '../../src/device/edge/dmi/dmi-store.js'
import { createDmiMetrics } from '../../src/device/edge/dmi/metrics.js'
import { resolveDmiOptions } from '../../src/device/edge/dmi/options.js'
import { MapperLink } from '../../src/device/edge/dmi/pusher.js'
import type { DeviceSnapshot } from '../../src/device/protocol.js'
import { MODEL, socketPath, TestMapper } from './dmi-helpers.js'

class RecordingClock extends ManualClock {
  readonly delays: number[] = []
  override setTimeout (fn: () => void, ms: number): TimerHandle { this.delays.push(ms); return super.setTimeout(fn, ms) }
}

function snap (revision: number, target: number): DeviceSnapshot {
  return {
    device: { namespace: 'default', name: 'dev1', model: 'default/thermostat', labels: {}, attributes: {}, nodeId: 'edge-1', protocol: { protocolName: 'modbus', configData: { slaveID: 1 } } },
    model: MODEL,
    desired: { target: { value: target, revision, timestamp: 1_700_000_000_000 + revision } },
    revision,
    credentials: []
  }
}

t.test('backoff while the mapper is down, one coalesced push when it is back', async t => {
  const dir = t.testdir({})
  const twins = TwinStore.open(dir + '/devices', 'relaxed')
  t.teardown(() => twins.close())
  let store = DmiStore.open(dir + '/dmi', 'relaxed')
  t.teardown(() => store.close())
  await twins.put(newRecord(snap(1, 10)))
  const clock = new RecordingClock()
  const metrics = createDmiMetrics(new Registry())
  const behind: boolean[] = []
  const sock = socketPath(t, dir, 'm.sock')
  const link = new MapperLink({
    twins,
    store,
    options: resolveDmiOptions({ socket: '/tmp/efdmi-unused.sock', retryMinMs: 100, retryMaxMs: 800, callTimeoutMs: 2000 }),
    clock,
    logger: nullLogger,
    metrics,
    onBehind: (_l, b) => behind.push(b)
  }, { name: 'm', version: '', apiVersion: 'v1beta1', protocol: 'modbus', address: sock, state: 'ok', registeredAt: 0 })
  t.teardown(() => link.close())

  const unavailable = async (): Promise<number> => (await metrics.pushes.get()).values.filter(v => v.labels.result === 'unavailable').reduce((a, v) => a + v.value, 0)
  link.poke()
  await link.idle()
  t.equal(await unavailable(), 1, 'first attempt failed: nobody listens')
  t.same(behind, [true])
  const bounds = [100, 200, 400, 800, 800, 800]
  for (let i = 0; i < bounds.length; i++) {
    const d = clock.delays[i]!
    t.ok(d >= bounds[i]! * 0.8 && d <= bounds[i]! * 1.2, `retry ${i + 1} after ${d} ms (base ${bounds[i]})`)
    if (i === 2) {
      // changes while down: no extra attempt, the pending retry will carry them
      await twins.put({ ...twins.get('default/dev1')!, snapshot: snap(2, 11) })
      await twins.put({ ...twins.get('default/dev1')!, snapshot: snap(3, 12) })
      link.poke()
      link.poke()
      await link.idle()
      t.equal(await unavailable(), 3, 'pokes during a pending retry do not call')
    }
    clock.advance(d)
    await link.idle()
  }
  t.equal(await unavailable(), bounds.length + 1)

  const mapper = await TestMapper.start(t, sock)
  clock.advance(clock.delays.at(-1)!)
  await link.idle()
  t.same(mapper.calls.map(c => c.rpc), ['CreateDeviceModel', 'RegisterDevice'], 'one push of each')
  t.equal(mapper.desired('default/dev1', 'target'), '12', 'the latest desired value')
  t.equal(clock.pending, 0, 'no retry left')
  t.same(behind, [true, false])
  t.same(link.acknowledged, ['default/dev1'])
  await link.close()
  await store.close()
  store = DmiStore.open(dir + '/dmi', 'relaxed')
  t.same([...store.pushed('modbus', 'd').keys()], ['default/dev1'], 'acknowledgement persisted')
  t.same([...store.pushed('modbus', 'm').keys()], ['default/thermostat'])
})
