/**
 * Envelope codec benchmark: round trips (encode + decode) per CPU-second of
 * this process (process.cpuUsage: user + system, all threads, so GC helper
 * threads count too), ours vs JSON, measured in the same run.
 *
 * Two rows per case: `stateless` is codec.encode/decode (what storage and
 * forwarding use); `stream` is a codec stream (src/codec/stream.ts), what a
 * transport channel uses, in steady state (shapes already defined; one
 * stream object encodes and decodes, as the two ends of one channel would).
 * Its `bytes` are a steady-state frame; the first frames of a stream, which
 * define the shapes, are reported below the table.
 *
 *   npm run bench:codec
 *
 * JSON baseline: Buffer.from(JSON.stringify(env)) / JSON.parse(buf.toString()).
 * For binary content JSON has no native form; two baselines are shown:
 * `base64` (content sent as a base64 string and turned back into a Buffer,
 * what one would really do, and the faster of the two) and `Buffer.toJSON`
 * (what JSON.stringify does with a Buffer by default; not turned back).
 *
 * This prints numbers; it is not a test. It exits non-zero only if it crashes
 * (including when a codec does not round-trip the bench envelopes).
 */
import { randomUUID } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { createCodec } from '../src/codec/codec.js'
import { newMessage, type Envelope } from '../src/codec/envelope.js'

const codec = createCodec()
const VARIANTS = 64 // distinct envelopes cycled through, so nothing is one cached value
const ROUNDS = 3 // alternating ours/json rounds; the median is reported
const CPU_MS_PER_ROUND = Number(process.env.BENCH_CPU_MS ?? 700)

function twinContent (i: number): unknown {
  // Shaped like a KubeEdge device twin update (eventbus/devicetwin), ~300 bytes as JSON.
  return {
    event_id: `evt-${100000 + i}`,
    timestamp: 1717171717000 + i,
    twin: {
      temperature: {
        expected: { value: (20 + i / 10).toFixed(1), metadata: { timestamp: 1717171700000 + i } },
        actual: { value: (20.3 + i / 10).toFixed(1), metadata: { timestamp: 1717171717123 + i } },
        optional: false,
        metadata: { type: 'float' }
      },
      status: { actual: { value: i % 2 === 0 ? 'online' : 'degraded' }, optional: true }
    }
  }
}

function envelope (i: number, content: unknown): Envelope {
  return newMessage({
    source: 'edge-1/devicetwin',
    group: 'twin',
    operation: 'update',
    resource: 'default/device/sensor-0042',
    resourceVersion: String(184467 + i),
    content
  })
}

interface Side {
  encode: (env: Envelope) => Uint8Array
  decode: (bytes: Uint8Array) => Envelope
}

const ours: Side = { encode: (env) => codec.encode(env), decode: (bytes) => codec.decode(bytes) }
const stream = (codec.createStream as () => ReturnType<NonNullable<typeof codec.createStream>>)()
const oursStream: Side = { encode: (env) => stream.encode(env), decode: (bytes) => stream.decode(bytes) }
const jsonPlain: Side = {
  encode: (env) => Buffer.from(JSON.stringify(env)),
  decode: (bytes) => JSON.parse((bytes as Buffer).toString()) as Envelope
}
const jsonBase64: Side = {
  encode: (env) => Buffer.from(JSON.stringify({ ...env, content: Buffer.from(env.content as Uint8Array).toString('base64') })),
  decode: (bytes) => {
    const env = JSON.parse((bytes as Buffer).toString()) as Envelope
    env.content = Buffer.from(env.content as string, 'base64')
    return env
  }
}

interface Case { name: string, envs: Envelope[], json: Side, jsonNote: string }

const cases: Case[] = [
  { name: 'twin update (object)', envs: [], json: jsonPlain, jsonNote: '' },
  { name: 'binary 256 B', envs: [], json: jsonBase64, jsonNote: 'json=base64' },
  { name: 'binary 256 B', envs: [], json: jsonPlain, jsonNote: 'json=Buffer.toJSON' },
  { name: 'small string', envs: [], json: jsonPlain, jsonNote: '' }
]
for (let i = 0; i < VARIANTS; i++) {
  const bin = Buffer.alloc(256)
  for (let b = 0; b < 256; b++) bin[b] = (b * 31 + i) & 0xff
  ;(cases[0] as Case).envs.push(envelope(i, twinContent(i)))
  ;(cases[1] as Case).envs.push(envelope(i, bin))
  ;(cases[2] as Case).envs.push(envelope(i, bin))
  ;(cases[3] as Case).envs.push(envelope(i, `ok ${i}`))
}

let sink = 0
function roundTrips (side: Side, envs: Envelope[], cpuMs: number): number {
  let iters = 0
  let elapsedUs = 0
  const start = process.cpuUsage()
  do {
    for (let i = 0; i < 1024; i++) {
      const env = side.decode(side.encode(envs[i & (VARIANTS - 1)] as Envelope))
      sink += env.header.timestamp & 1
    }
    iters += 1024
    const u = process.cpuUsage(start)
    elapsedUs = u.user + u.system
  } while (elapsedUs < cpuMs * 1000)
  return iters / (elapsedUs / 1e6)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

function checkRoundTrip (c: Case): void {
  const check = createCodec().createStream?.()
  if (check === undefined) throw new Error('the codec offers no streams')
  for (const env of [...c.envs, ...c.envs]) {
    const content = env.content instanceof Uint8Array ? Buffer.from(env.content) : env.content
    const want = { ...env, content }
    if (!isDeepStrictEqual(codec.decode(codec.encode(env)), want)) throw new Error(`codec does not round-trip case ${c.name}`)
    if (!isDeepStrictEqual(check.decode(check.encode(env)), want)) throw new Error(`codec stream does not round-trip case ${c.name}`)
  }
}

/** Frame sizes of the first `n` encodes of one envelope on a fresh stream. */
function streamSizes (env: Envelope, n: number): number[] {
  const s = createCodec().createStream?.()
  if (s === undefined) throw new Error('the codec offers no streams')
  const sizes: number[] = []
  for (let i = 0; i < n; i++) sizes.push(s.encode(env).byteLength)
  return sizes
}

function fmt (n: number): string { return Math.round(n).toLocaleString('en-US') }

const rows: string[][] = [['case', 'codec', 'bytes ours', 'bytes json', 'size ratio', 'rt/cpu-s ours', 'rt/cpu-s json', 'speed ratio', 'note']]
const firstFrames: string[] = []
for (const c of cases) {
  checkRoundTrip(c)
  // warm up every side (JIT; the stream defines its shapes here) before measuring
  roundTrips(ours, c.envs, 150)
  roundTrips(oursStream, c.envs, 150)
  roundTrips(c.json, c.envs, 150)
  const o: number[] = []
  const st: number[] = []
  const j: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    o.push(roundTrips(ours, c.envs, CPU_MS_PER_ROUND))
    st.push(roundTrips(oursStream, c.envs, CPU_MS_PER_ROUND))
    j.push(roundTrips(c.json, c.envs, CPU_MS_PER_ROUND))
  }
  const env = c.envs[0] as Envelope
  const ob = ours.encode(env).byteLength
  const sizes = streamSizes(env, 3)
  const sb = sizes[sizes.length - 1] as number
  const jb = c.json.encode(env).byteLength
  const jm = median(j)
  for (const [mode, bytes, xs] of [['stateless', ob, o], ['stream', sb, st]] as Array<[string, number, number[]]>) {
    const m = median(xs)
    rows.push([c.name, mode, String(bytes), String(jb), `${(jb / bytes).toFixed(2)}x smaller`, fmt(m), fmt(jm), `${(m / jm).toFixed(2)}x`, c.jsonNote])
  }
  if (c.jsonNote !== 'json=Buffer.toJSON') firstFrames.push(`${c.name}: ${sizes.join(', ')} bytes`)
}

const widths = (rows[0] as string[]).map((_, col) => Math.max(...rows.map(r => (r[col] as string).length)))
const left = new Set([0, 1, 8])
for (const [i, r] of rows.entries()) {
  console.log(r.map((cell, col) => left.has(col) ? cell.padEnd(widths[col] as number) : cell.padStart(widths[col] as number)).join('  ').trimEnd())
  if (i === 0) console.log(widths.map(w => '-'.repeat(w)).join('  '))
}
console.log(`\nstream frames 1, 2, 3 of one envelope on a fresh stream (a shape is defined the second time it is seen): ${firstFrames.join('; ')}`)
console.log(`node ${process.version}, ${ROUNDS} alternating rounds of ${CPU_MS_PER_ROUND} CPU-ms per side, median; twin content JSON = ${JSON.stringify((cases[0] as Case).envs[0]?.content).length} bytes (sink ${sink & 1})`)
