/**
 * Mapper → cloud twin update rate over DMI and over MQTT (issue 14 part 2),
 * with bare aedes QoS 1 as the baseline, interleaved in the same run.
 *
 *  - dmi:  a grpc-js mapper calls ReportDeviceStatus (one reported twin per
 *          call, at most `window` calls in flight, one channel) on the edge's
 *          unix socket → twin engine → durable edge outbox → hub → registry.
 *  - mqtt: an MQTT.js mapper publishes `…/twin/update` at QoS 1 (at most
 *          `window` unacknowledged) to the edge's embedded aedes → the same
 *          engine and path (bench/twins.ts part 1).
 *  - aedes: publisher → bare aedes → subscriber (bench/lib/twin-bench.ts).
 * Updates are counted at the cloud (registry `reported` changes). Hub, edge
 * and mapper share this one process (and the machine's 2 cores).
 *
 *   npm run bench:dmi                       # n 5000, 3 rounds
 *   npm run bench:dmi -- --quick            # n 1000, 1 round
 *   options: --n N --devices D --window W --rounds R --durability sync|relaxed
 */
import { loadavg } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import mqtt from 'mqtt'
import type { DeviceModel } from '../src/device/model.js'
import { DMI_PROTO_PATH } from '../src/device/edge/dmi/proto.js'
import { aedesReference, median, pump, startTwinSetup } from './lib/twin-bench.js'

const argv = process.argv.slice(2)
const get = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
const quick = argv.includes('--quick')
const N = Number(get('--n') ?? (quick ? 1000 : 5000))
const DEVICES = Number(get('--devices') ?? 10)
const WINDOW = Number(get('--window') ?? 100)
const ROUNDS = Number(get('--rounds') ?? (quick ? 1 : 3))
const DURABILITY = (get('--durability') ?? 'sync') as 'sync' | 'relaxed'

const MODEL: DeviceModel = { namespace: 'bench', name: 'sensor', properties: [{ name: 'temperature', type: 'float', accessMode: 'ReadOnly' }] }
const pkg = (grpc.loadPackageDefinition(loadSync(DMI_PROTO_PATH, { keepCase: true, longs: Number, defaults: true })) as any).v1beta1

type Kind = 'dmi' | 'mqtt'

async function round (kind: Kind): Promise<number> {
  const { dir, reg, edge, close } = await startTwinSetup({
    prefix: 'ef-dmi-', model: MODEL, devices: DEVICES, durability: DURABILITY, device: { protocol: { protocolName: 'bench' } }, edge: d => ({ dmi: { socket: join(d, 'dmi.sock') } })
  })
  const socket = join(dir, 'dmi.sock')
  try {
    let seen = 0
    let resolveAll: () => void = () => {}
    const all = new Promise<void>(resolve => { resolveAll = resolve })
    reg.on('change', c => { if (c.type === 'reported' && ++seen === N) resolveAll() })
    let t0: number
    if (kind === 'mqtt') {
      const mapper = await mqtt.connectAsync(edge.devices!.brokerUrl as string, { username: 'bench', password: 'bench', clientId: 'bench-mapper' })
      t0 = performance.now()
      await pump(mapper, N, WINDOW, i => [`$hw/events/device/bench/d${i % DEVICES}/twin/update`, JSON.stringify({ event_id: String(i), timestamp: Date.now(), twin: { temperature: { actual: { value: String(i / 10) } } } })])
      await all
      await mapper.endAsync()
    } else {
      const client = new pkg.DeviceManagerService(`unix:${socket}`, grpc.credentials.createInsecure())
      await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5000, (err: Error | undefined) => err === undefined ? resolve() : reject(err)))
      t0 = performance.now()
      await new Promise<void>((resolve, reject) => {
        let next = 0
        let inflight = 0
        const more = (): void => {
          while (inflight < WINDOW && next < N) {
            const i = next++
            inflight++
            const ts = String(Date.now())
            client.ReportDeviceStatus({ deviceName: `d${i % DEVICES}`, deviceNamespace: 'bench', reportedDevice: { twins: [{ propertyName: 'temperature', observedDesired: { value: '' }, reported: { value: String(i / 10), metadata: { timestamp: ts, type: 'float' } } }] } },
              (err: grpc.ServiceError | null) => {
                inflight--
                if (err !== null) { reject(err); return }
                if (next === N && inflight === 0) resolve(); else more()
              })
          }
        }
        more()
      })
      await all
      client.close()
    }
    return N / ((performance.now() - t0) / 1000)
  } finally {
    await close()
  }
}

const loadBefore = loadavg()
const refs: number[] = []
const dmi: number[] = []
const mq: number[] = []
for (let r = 0; r < ROUNDS; r++) { // interleaved, and the order rotates so no kind always runs first
  const order: Array<'aedes' | Kind> = (['aedes', 'mqtt', 'dmi'] as const).map((_, i, a) => a[(i + r) % a.length]!)
  for (const k of order) {
    if (k === 'aedes') refs.push(await aedesReference(N, DEVICES, WINDOW))
    else if (k === 'mqtt') mq.push(await round('mqtt'))
    else dmi.push(await round('dmi'))
  }
  console.log(`round ${r + 1} (${order.join(', ')}): aedes ${refs[r]!.toFixed(0)} msg/s; mqtt twins ${mq[r]!.toFixed(0)} /s; dmi twins ${dmi[r]!.toFixed(0)} /s`)
}
const loadAfter = loadavg()
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`
const ref = median(refs)
console.log(`twin updates mapper → cloud over DMI:  median ${median(dmi).toFixed(0)} /s (range ${range(dmi)}), ratio to aedes ${(median(dmi) / ref).toFixed(3)}`)
console.log(`twin updates mapper → cloud over MQTT: median ${median(mq).toFixed(0)} /s (range ${range(mq)}), ratio to aedes ${(median(mq) / ref).toFixed(3)}`)
console.log(`bare aedes QoS 1 publish → subscriber (baseline): median ${ref.toFixed(0)} msg/s (range ${range(refs)})`)
console.log(`DMI / MQTT: ${(median(dmi) / median(mq)).toFixed(3)}`)
console.log(`${ROUNDS} rounds, ${N} updates over ${DEVICES} devices, window ${WINDOW}, durability ${DURABILITY}; load average before ${loadBefore.map(x => x.toFixed(2)).join(' ')}, after ${loadAfter.map(x => x.toFixed(2)).join(' ')}`)
