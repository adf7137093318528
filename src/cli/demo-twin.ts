/**
 * The device-twin part of `edgefabric demo` (DESIGN.md §8, README "Device
 * twins"), through the product's own paths: the cloud registry (`hub.devices`)
 * gets a thermostat model and a device bound to edge-1 with a cloud-issued
 * credential; a simulated thermostat — a real MQTT.js client — logs in to
 * edge-1's embedded broker with that credential, applies every desired→delta
 * and reports it back as `actual`, and reports its temperature periodically.
 * Each round trip is timed in this process (one clock): desired set in the
 * cloud → delta at the device → reported value in the cloud registry.
 */
import mqtt, { type MqttClient } from 'mqtt'
import type { DeviceRegistry } from '../device/cloud/registry.js'
import type { DeviceChange } from '../device/cloud/registry-types.js'
import type { EdgeNode } from '../edge/edge-node.js'
import { Stats } from './demo-stats.js'

const NS = 'default'
const NAME = 'thermostat-1'
const ID = `${NS}/${NAME}`
/** KubeEdge mapper topics of the device (DESIGN.md §8 table). */
const TOPIC = `$hw/events/device/${NS}/${NAME}`
const PROP = 'target-temp'
/** Round trips start this far apart. */
const ROUND_TRIP_EVERY_MS = 1500
/** The device reports its temperature this often. */
const REPORT_EVERY_MS = 500
/** A step (edge sync, delta, report) slower than this fails the demo: on loopback they take milliseconds. */
const STEP_TIMEOUT_MS = 10_000
/** Desired values cycled through; consecutive ones differ, so each one yields a delta. */
const TARGETS = [22.5, 19, 24, 20.5, 23, 18.5]

type Write = (line: string) => void
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Resolves with the time (performance.now()) at which a pushed value first matched; at most one waiter. */
class Signal<T> {
  #waiter: { pred: (v: T) => boolean, done: (at: number) => void } | undefined
  push (v: T): void {
    const w = this.#waiter
    if (w !== undefined && w.pred(v)) { this.#waiter = undefined; w.done(performance.now()) }
  }

  wait (pred: (v: T) => boolean, what: string): Promise<number> {
    const p = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { this.#waiter = undefined; reject(new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms`)) }, STEP_TIMEOUT_MS)
      timer.unref() // a step abandoned after a failure must not hold the process open
      this.#waiter = { pred, done: at => { clearTimeout(timer); resolve(at) } }
    })
    p.catch(() => {}) // awaited by the caller; marked handled so a later step failing first leaves no unhandled rejection
    return p
  }
}

/** The simulated device: a mapper-less thermostat speaking KubeEdge's twin topics itself. */
class SimulatedThermostat {
  readonly client: MqttClient
  readonly deltas = new Signal<string>()
  reports = 0
  temperature = 20.5
  #applied: string | undefined
  #timer: NodeJS.Timeout | undefined
  #seq = 0
  readonly #fail: (why: string) => void

  constructor (url: string, username: string, password: string, fail: (why: string) => void) {
    this.#fail = fail
    // Handlers are attached in the same tick as connect() (DESIGN.md §11); no reconnects: a lost connection fails the demo.
    this.client = mqtt.connect(url, { username, password, clientId: `demo-${NAME}`, reconnectPeriod: 0, connectTimeout: STEP_TIMEOUT_MS })
    // before CONNACK, connected() reports the error; afterwards it fails the demo
    this.client.on('error', err => { if (this.#timer !== undefined) fail(`device MQTT error: ${err.message}`) })
    this.client.on('message', (topic, payload) => { this.#onMessage(topic, payload) })
  }

  async connected (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.client.once('connect', () => { resolve() })
      this.client.once('error', reject)
      this.client.once('close', () => { reject(new Error('device connection closed before CONNACK')) })
    })
    const granted = await this.client.subscribeAsync([`${TOPIC}/twin/update/delta`, `${TOPIC}/twin/update/result`, `${TOPIC}/state/update/result`], { qos: 1 })
    if (granted.some(g => g.qos === 128)) throw new Error('the edge refused the device\'s subscriptions')
    this.client.on('close', () => { if (this.#timer !== undefined) this.#fail('device connection to the edge closed') })
    await this.#publish(`${TOPIC}/state/update`, { state: 'online' })
    this.#report({ temperature: this.temperature.toFixed(2) }) // the current reading at start, then every REPORT_EVERY_MS
    this.#timer = setInterval(() => {
      // drifts toward the applied set point, like a room being heated or cooled
      const target = this.#applied === undefined ? this.temperature : Number(this.#applied)
      this.temperature += (target - this.temperature) * 0.3 + (Math.random() - 0.5) * 0.05
      this.#report({ temperature: this.temperature.toFixed(2) })
    }, REPORT_EVERY_MS)
  }

  #onMessage (topic: string, payload: Buffer): void {
    let msg: { delta?: Record<string, string>, code?: number, error?: string, reason?: string }
    try { msg = JSON.parse(payload.toString()) } catch { return this.#fail(`unparsable message on ${topic}`) }
    if (topic.endsWith('/result') && msg.code !== undefined) return this.#fail(`edge refused a device update: ${msg.error ?? msg.code} ${msg.reason ?? ''}`)
    const value = msg.delta?.[PROP]
    if (topic !== `${TOPIC}/twin/update/delta` || typeof value !== 'string') return
    this.deltas.push(value)
    if (value === this.#applied) return
    // apply the set point and acknowledge it as the actual value (KubeEdge: actual catches up with expected)
    this.#applied = value
    this.#report({ [PROP]: value })
  }

  #report (values: Record<string, string>): void {
    const twin: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(values)) twin[k] = { actual: { value: v, metadata: { timestamp: Date.now() } } }
    this.#publish(`${TOPIC}/twin/update`, { twin }).then(() => { this.reports++ }, (err: Error) => { this.#fail(`device report failed: ${err.message}`) })
  }

  async #publish (topic: string, body: object): Promise<void> {
    // QoS 1: the embedded broker PUBACKs after the update is in the twin store and the edge's durable outbox (README)
    await this.client.publishAsync(topic, JSON.stringify({ event_id: `${NAME}-${++this.#seq}`, timestamp: Date.now(), ...body }), { qos: 1 })
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.client.endAsync(!this.client.connected)
  }
}

/** One device twin shown end to end; `run()` never throws — failures are printed and make `ok` false. */
export class TwinDemo {
  readonly toDelta = new Stats()
  readonly toReported = new Stats()
  readonly total = new Stats()
  failures = 0
  readonly #reg: DeviceRegistry
  readonly #edge: EdgeNode
  readonly #write: Write
  readonly #reported = new Signal<DeviceChange>()
  readonly #onChange = (c: DeviceChange): void => { if (c.type === 'reported' && c.namespace === NS && c.name === NAME) this.#reported.push(c) }
  #device: SimulatedThermostat | undefined
  #lastDesired: number | undefined

  constructor (reg: DeviceRegistry, edge: EdgeNode, write: Write) {
    this.#reg = reg
    this.#edge = edge
    this.#write = write
    reg.on('change', this.#onChange)
  }

  get ok (): boolean {
    return this.failures === 0 && this.total.count > 0 && this.#reg.getDevice(NS, NAME)?.reported[PROP]?.value === this.#lastDesired
  }

  #fail (why: string): void {
    this.failures++
    if (this.failures <= 3) this.#write(`twin: FAILED: ${why}\n`)
  }

  /** Set up, then one round trip every ROUND_TRIP_EVERY_MS until `stopped()` (the first one always runs). */
  async run (stopped: () => boolean): Promise<void> {
    try {
      await this.#setup()
      for (let i = 0; ; i++) {
        await this.#roundTrip(i)
        const next = performance.now() + ROUND_TRIP_EVERY_MS
        while (!stopped() && performance.now() < next) await sleep(20)
        if (stopped()) return
      }
    } catch (err) {
      this.#fail((err as Error).message)
    }
  }

  async #setup (): Promise<void> {
    const reg = this.#reg
    await reg.upsertModel({ namespace: NS, name: 'thermostat', properties: [
      { name: PROP, type: 'float', accessMode: 'ReadWrite', minimum: 5, maximum: 30, unit: 'C', default: 20 },
      { name: 'temperature', type: 'float', accessMode: 'ReadOnly', unit: 'C' }
    ] })
    await reg.upsertDevice({ namespace: NS, name: NAME, model: `${NS}/thermostat`, labels: { room: 'lab' }, attributes: {}, nodeId: this.#edge.nodeId })
    const { username, password } = await reg.issueCredential(NS, NAME)
    const revision = reg.getDevice(NS, NAME)?.revision ?? 0
    const t0 = performance.now()
    // the credential's hash travels to the edge in the snapshot; the device can log in once the edge holds it
    while ((this.#edge.devices?.getTwin(NS, NAME)?.revision ?? 0) < revision) {
      if (performance.now() - t0 > STEP_TIMEOUT_MS) throw new Error(`snapshot revision ${revision} did not reach ${this.#edge.nodeId}`)
      await sleep(5)
    }
    const synced = performance.now() - t0
    const url = this.#edge.devices?.brokerUrl
    if (url === undefined) throw new Error(`${this.#edge.nodeId} has no embedded MQTT broker`)
    this.#write(`twin: cloud registry: model ${NS}/thermostat, device ${ID} bound to ${this.#edge.nodeId} (revision ${revision}, at the edge after ${synced.toFixed(2)} ms)\n`)
    this.#device = new SimulatedThermostat(url, username, password, why => { this.#fail(why) })
    await this.#device.connected()
    this.#write(`twin: device ${ID} logged in to ${this.#edge.nodeId}'s MQTT broker ${url} (MQTT.js, cloud-issued credential), subscribed to ${TOPIC}/twin/update/delta\n`)
  }

  async #roundTrip (i: number): Promise<void> {
    const device = this.#device as SimulatedThermostat
    const value = TARGETS[i % TARGETS.length] as number
    const wire = String(value)
    const gotDelta = device.deltas.wait(v => v === wire, `delta ${PROP}=${wire} at the device`)
    const gotReported = this.#reported.wait(c => (c.detail?.reported as Record<string, { value: unknown }> | undefined)?.[PROP]?.value === value, `reported ${PROP}=${wire} in the cloud registry`)
    const t0 = performance.now()
    const view = await this.#reg.setDesired(NS, NAME, { [PROP]: value })
    this.#lastDesired = value
    const tDelta = await gotDelta
    const tReported = await gotReported
    this.toDelta.add(tDelta - t0)
    this.toReported.add(tReported - tDelta)
    this.total.add(tReported - t0)
    const ms = (x: number): string => x.toFixed(2)
    if (i === 0) {
      this.#write(`twin: desired ${PROP}=${wire} set in the cloud registry (revision ${view.revision})\n`)
      this.#write(`twin: delta ${PROP}=${wire} received by ${ID} on ${this.#edge.nodeId} ${ms(tDelta - t0)} ms later\n`)
      this.#write(`twin: reported ${PROP}=${wire} visible in the cloud registry ${ms(tReported - tDelta)} ms after the delta (round trip ${ms(tReported - t0)} ms)\n`)
    } else {
      this.#write(`twin: desired ${PROP}=${wire} → delta at the device ${ms(tDelta - t0)} ms → reported in the cloud ${ms(tReported - tDelta)} ms (round trip ${ms(tReported - t0)} ms)\n`)
    }
  }

  /** Final lines: round-trip figures and what the cloud registry holds now. */
  summary (): void {
    const d = this.#reg.getDevice(NS, NAME)
    const rep = Object.entries(d?.reported ?? {}).map(([k, v]) => `${k}=${String(v.value)}`).join(', ')
    this.#write(`twin: ${this.total.count} round trip${this.total.count === 1 ? '' : 's'}, desired→delta p50 ${this.toDelta.pct(0.5)} ms, delta→reported p50 ${this.toReported.pct(0.5)} ms, ` +
      `round trip p50 ${this.total.pct(0.5)} max ${this.total.pct(1)} ms; ${this.#device?.reports ?? 0} device reports\n`)
    this.#write(`twin: cloud registry: ${ID} state ${d?.state ?? '?'}, desired ${PROP}=${String(d?.desired[PROP]?.value)}, reported ${rep === '' ? '-' : rep}\n`)
  }

  async close (): Promise<void> {
    this.#reg.off('change', this.#onChange)
    await this.#device?.close()
  }
}
