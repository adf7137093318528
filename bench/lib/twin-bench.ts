/**
 * Pieces shared by the twin benchmarks (bench/twins.ts, bench/dmi-twins.ts):
 * a QoS 1 publish pump with a bounded window, and the bare-aedes reference
 * (publisher → aedes with in-memory persistence → subscriber, one process).
 */
import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'

export const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN }
export const median = (xs: number[]): number => pct(xs, 0.5)

/** Publish n QoS 1 messages with at most `window` unacknowledged. */
export async function pump (client: MqttClient, n: number, window: number, make: (i: number) => [string, string]): Promise<void> {
  let next = 0
  let inflight = 0
  await new Promise<void>((resolve, reject) => {
    const more = (): void => {
      while (inflight < window && next < n) {
        const [t, p] = make(next++)
        inflight++
        client.publish(t, p, { qos: 1 }, err => {
          inflight--
          if (err != null) { reject(err); return }
          if (next === n && inflight === 0) resolve(); else more()
        })
      }
    }
    more()
  })
}

/** Messages per second through a bare aedes at QoS 1 (the same-run baseline). */
export async function aedesReference (n: number, devices: number, window: number): Promise<number> {
  const broker = await Aedes.createBroker()
  const server = createServer(broker.handle)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  const sub = await mqtt.connectAsync(url, { clientId: 'ref-sub' })
  await sub.subscribeAsync('ref/#', { qos: 1 })
  const pub = await mqtt.connectAsync(url, { clientId: 'ref-pub' })
  let got = 0
  const done = new Promise<void>(resolve => sub.on('message', () => { if (++got === n) resolve() }))
  const payload = JSON.stringify({ twin: { temperature: { actual: { value: '21.5' } } } })
  const t0 = performance.now()
  await pump(pub, n, window, i => [`ref/d${i % devices}`, payload])
  await done
  const ms = performance.now() - t0
  await pub.endAsync(); await sub.endAsync()
  await new Promise<void>(resolve => broker.close(() => resolve()))
  await new Promise<void>(resolve => server.close(() => resolve()))
  return n / (ms / 1000)
}
