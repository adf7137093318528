/**
 * Device twin benchmark (issue 5): twin updates per second through the edge
 * (MQTT.js mapper → embedded aedes on the edge → twin engine → durable edge
 * outbox → hub → cloud device registry, counted at the cloud as 'reported'
 * changes) and desired-to-delta latency (hub.devices.setDesired → the
 * mapper's `…/twin/update/delta`), with aedes' own QoS 1 publish rate as the
 * reference (publisher → bare aedes, in-memory persistence → subscriber),
 * all in this one process, measured in the same run.
 *
 *   npm run bench:twins                       # n 5000 updates, 200 latency samples, 3 rounds, writes RESULTS.md
 *   npm run bench:twins -- --quick            # n 1000, 50 samples, 1 round, no RESULTS.md
 *   options: --n N --devices D --window W --samples S --rounds R --durability sync|relaxed --no-results
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import mqtt from 'mqtt'
import type { DeviceModel } from '../src/device/model.js'
import { aedesReference as aedesRef, median, pct, pump, startTwinSetup } from './lib/twin-bench.js'

const argv = process.argv.slice(2)
const get = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
const quick = argv.includes('--quick')
const N = Number(get('--n') ?? (quick ? 1000 : 5000))
const DEVICES = Number(get('--devices') ?? 10)
const WINDOW = Number(get('--window') ?? 100)
const SAMPLES = Number(get('--samples') ?? (quick ? 50 : 200))
const ROUNDS = Number(get('--rounds') ?? (quick ? 1 : 3))
const DURABILITY = (get('--durability') ?? 'sync') as 'sync' | 'relaxed'
const writeResults = !quick && !argv.includes('--no-results')

const MODEL: DeviceModel = { namespace: 'bench', name: 'sensor', properties: [
  { name: 'temperature', type: 'float', accessMode: 'ReadOnly' },
  { name: 'target', type: 'float', accessMode: 'ReadWrite', minimum: 0, maximum: 1e9 }
] }
const topic = (d: number, s: string): string => `$hw/events/device/bench/d${d}/${s}`
const aedesReference = async (): Promise<number> => await aedesRef(N, DEVICES, WINDOW)

async function twinRound (): Promise<{ updatesPerSec: number, p50: number, p99: number }> {
  const { reg, edge, close } = await startTwinSetup({ prefix: 'ef-twins-', model: MODEL, devices: DEVICES, durability: DURABILITY })
  try {
    const mapper = await mqtt.connectAsync(edge.devices!.brokerUrl as string, { username: 'bench', password: 'bench', clientId: 'bench-mapper' })
    const deltas = new Map<string, () => void>()
    mapper.on('message', (t, payload) => {
      if (!t.endsWith('/twin/update/delta')) return
      const v = (JSON.parse(payload.toString()) as { delta: Record<string, string> }).delta.target
      if (v !== undefined) deltas.get(v)?.()
    })
    await mapper.subscribeAsync('$hw/events/device/bench/+/twin/update/delta', { qos: 1 })

    // 1. updates mapper → cloud, counted at the cloud
    let seen = 0
    let resolveAll: () => void = () => {}
    const all = new Promise<void>(resolve => { resolveAll = resolve })
    reg.on('change', c => { if (c.type === 'reported' && ++seen === N) resolveAll() })
    const t0 = performance.now()
    await pump(mapper, N, WINDOW, i => [topic(i % DEVICES, 'twin/update'), JSON.stringify({ event_id: String(i), timestamp: Date.now(), twin: { temperature: { actual: { value: String(i / 10) } } } })])
    await all
    const updatesPerSec = N / ((performance.now() - t0) / 1000)

    // 2. desired → delta latency, one at a time
    const lat: number[] = []
    for (let i = 0; i < SAMPLES; i++) {
      const value = 1000 + i
      const arrived = new Promise<void>(resolve => deltas.set(String(value), resolve))
      const s = performance.now()
      await reg.setDesired('bench', `d${i % DEVICES}`, { target: value })
      await arrived
      lat.push(performance.now() - s)
      deltas.delete(String(value))
    }
    await mapper.endAsync()
    return { updatesPerSec, p50: pct(lat, 0.5), p99: pct(lat, 0.99) }
  } finally {
    await close()
  }
}

const loadBefore = loadavg()
const refs: number[] = []
const rounds: Array<{ updatesPerSec: number, p50: number, p99: number }> = []
for (let r = 0; r < ROUNDS; r++) { // interleaved: reference and edge alternate
  refs.push(await aedesReference())
  rounds.push(await twinRound())
  console.log(`round ${r + 1}: aedes ${refs[r]!.toFixed(0)} msg/s; twins ${rounds[r]!.updatesPerSec.toFixed(0)} updates/s, desired→delta p50 ${rounds[r]!.p50.toFixed(1)} ms p99 ${rounds[r]!.p99.toFixed(1)} ms`)
}
const loadAfter = loadavg()
const ref = median(refs)
const ups = median(rounds.map(r => r.updatesPerSec))
const p50 = median(rounds.map(r => r.p50))
const p99 = median(rounds.map(r => r.p99))
const lines = [
  `twin updates mapper → cloud: ${ups.toFixed(0)} /s (median of ${ROUNDS}; ${N} updates over ${DEVICES} devices, window ${WINDOW}, durability ${DURABILITY})`,
  `aedes QoS 1 publish → subscriber (reference, same run): ${ref.toFixed(0)} msg/s`,
  `ratio twins / aedes: ${(ups / ref).toFixed(3)}`,
  `desired → delta latency: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${SAMPLES} sequential samples per round)`,
  `load average before ${loadBefore.map(x => x.toFixed(2)).join(' ')}, after ${loadAfter.map(x => x.toFixed(2)).join(' ')}`
]
for (const l of lines) console.log(l)

if (writeResults) {
  const file = new URL('../../bench/RESULTS.md', import.meta.url)
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  const section = [
    `## Device twins (${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpu.trim()}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version})`,
    '',
    '`npm run bench:twins` (bench/twins.ts): hub (with the device registry), edge (embedded aedes,',
    'LMDB twin store and outbox) and an MQTT.js mapper in ONE process over ws on loopback, so all',
    'of them share the CPU; the reference is a bare aedes (in-memory persistence) with a QoS 1',
    'publisher and subscriber in the same process, interleaved with the twin rounds. Twin updates',
    'are counted at the cloud (registry `reported` changes), i.e. parsed, validated, persisted at',
    'the edge, queued in the durable outbox, delivered, merged and persisted at the cloud.',
    '',
    '| measure | value |',
    '|---|---|',
    `| twin updates mapper → cloud (${DURABILITY}) | ${ups.toFixed(0)} /s |`,
    `| aedes QoS 1 publish → subscriber (reference) | ${ref.toFixed(0)} msg/s |`,
    `| ratio twins / aedes | ${(ups / ref).toFixed(3)} |`,
    `| desired → delta latency p50 | ${p50.toFixed(1)} ms |`,
    `| desired → delta latency p99 | ${p99.toFixed(1)} ms |`,
    '',
    `Rounds: ${ROUNDS} (medians); ${N} updates over ${DEVICES} devices, at most ${WINDOW} unacknowledged; ${SAMPLES} sequential`,
    `setDesired → delta samples per round. Per round: ${rounds.map((r, i) => `aedes ${refs[i]!.toFixed(0)}, twins ${r.updatesPerSec.toFixed(0)}, p50 ${r.p50.toFixed(1)}, p99 ${r.p99.toFixed(1)}`).join('; ')}.`,
    `Machine load (other people's work included): load average ${loadBefore.map(x => x.toFixed(2)).join('/')} before, ${loadAfter.map(x => x.toFixed(2)).join('/')} after.`,
    ''
  ].join('\n')
  const path = file.pathname
  const text = readFileSync(path, 'utf8')
  // Only the section this script writes ('## Device twins (date, machine)'): the hand-written
  // '## Device twins: …' sections above it must not be replaced.
  const start = text.indexOf('## Device twins (')
  let out: string
  if (start < 0) out = text.trimEnd() + '\n\n' + section
  else {
    const nextIdx = text.indexOf('\n## ', start + 1)
    out = text.slice(0, start) + section + (nextIdx < 0 ? '' : text.slice(nextIdx + 1))
  }
  writeFileSync(path, out)
  console.log('bench/RESULTS.md: Device twins section written')
}
