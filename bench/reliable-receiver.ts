/**
 * The edge's half of a store-and-forward drain, in one process, without a
 * network (issue 16, drain): data frames as the hub's sender writes them
 * (64 records each, the records being the hub's stored envelopes) are decoded
 * and handed to a ReliableEndpoint over a real LmdbStore, with at most
 * `--window` records unacknowledged, the way the sender paces them. The
 * application hook is synchronous, like bench/reliable-ef-edge.ts's. Prints
 * msg/s and CPU µs/msg of this process: the receiving side's cost per
 * message, which is what bounds the drain in bench/reliable.ts.
 *
 *   tsc -p tsconfig.bench.json && node dist-bench/bench/reliable-receiver.js [--n 100000] [--window 4096] [--durability sync] [--rounds 3]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultCodec } from '../src/codec/codec.js'
import { newMessage, type Envelope } from '../src/codec/envelope.js'
import { ReliableEndpoint } from '../src/reliable/endpoint.js'
import { LmdbStore } from '../src/reliable/lmdb-store.js'
import { parseSeqField, reliableMessage } from '../src/reliable/protocol.js'
import type { Durability } from '../src/reliable/store.js'
import { systemClock } from '../src/util/clock.js'
import { makePayload } from './lib/reliable-ipc.js'

const argv = process.argv.slice(2)
const get = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined }
const N = Number(get('--n') ?? 100_000)
const WINDOW = Number(get('--window') ?? 4096) // the sender's default windowMessages
const BATCH = 64
const durability = (get('--durability') ?? 'sync') as Durability
const ROUNDS = Number(get('--rounds') ?? 3)

/** The data frames of one drain: seqs 1..N, in batches of BATCH. */
function frames (): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let first = 1; first <= N; first += BATCH) {
    const s: number[] = []
    const m: Uint8Array[] = []
    for (let seq = first; seq < first + BATCH && seq <= N; seq++) {
      s.push(seq)
      m.push(defaultCodec.encode(newMessage({ source: 'cloud', group: 'bench', operation: 'update', resource: `bench/item/${seq % 100}`, content: makePayload(seq) })))
    }
    // A copy: encode() returns views of a shared slab.
    out.push(Uint8Array.from(defaultCodec.encode(reliableMessage('data', { s, m }, 'cloud'))))
  }
  return out
}

async function round (data: Uint8Array[]): Promise<{ perSec: number, cpuUs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ef-bench-receiver-'))
  const store = await LmdbStore.open(dir, { durability })
  let delivered = 0
  let acked = 0
  let wake: (() => void) | undefined
  const lane = new ReliableEndpoint('cloud', {
    source: 'edge-1',
    store,
    clock: systemClock,
    codec: defaultCodec,
    quota: { maxMessages: 1_000_000, maxBytes: 1024 ** 3, overflow: 'reject' },
    deliver: (env: Envelope) => { if (env.content instanceof Uint8Array) delivered++; return 'ok' }
  })
  lane.attach({
    send: env => {
      // Controls go through the codec as on a real link.
      const back = defaultCodec.decode(defaultCodec.encode(env))
      if (back.router.operation === 'ack') { acked = parseSeqField(back, 'u'); wake?.() }
      return true
    },
    onDrain: async () => {}
  })
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  let sent = 0
  for (const frame of data) {
    while (sent - acked >= WINDOW) await new Promise<void>(resolve => { wake = resolve })
    lane.handle(defaultCodec.decode(frame))
    sent += BATCH
    // A socket read per frame: let commits and acks in between, as the event loop would.
    await new Promise(resolve => setImmediate(resolve))
  }
  while (acked < N) await new Promise<void>(resolve => { wake = resolve })
  const ms = performance.now() - t0
  const c = process.cpuUsage(c0)
  lane.close()
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  if (delivered !== N) throw new Error(`delivered ${delivered} of ${N}`)
  return { perSec: N / (ms / 1000), cpuUs: (c.user + c.system) / N }
}

const data = frames()
console.log(`receiver drain: ${N} messages, window ${WINDOW}, ${durability}`)
for (let r = 1; r <= ROUNDS; r++) {
  const { perSec, cpuUs } = await round(data)
  console.log(`round ${r}: ${Math.round(perSec).toLocaleString('en-US')} msg/s, ${cpuUs.toFixed(2)} CPU µs/msg`)
}
