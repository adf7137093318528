/**
 * Store-level throughput of LmdbStore (no network): what group commit buys.
 * For each durability mode and producer concurrency, C producers each await
 * their own append() of one 256-byte message (spread over 10 peers), then the
 * outbox is drained the way the sender does (pending(peer, after, 64) + ack).
 * The disk's raw fsync rate (write 256 B + fdatasync, one at a time) is
 * measured first, since `sync` throughput is only meaningful against it.
 *
 *   tsc -p tsconfig.bench.json && flock /tmp/edgefabric-bench.lock node dist-bench/bench/reliable-store.js [messages]
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LmdbStore } from '../src/reliable/lmdb-store.js'
import type { Durability, QuotaPolicy } from '../src/reliable/store.js'

const N = Number(process.argv[2] ?? 50_000)
const PEERS = 10
const quota: QuotaPolicy = { maxMessages: 10_000_000, maxBytes: 2 ** 40, overflow: 'reject' }
const base = mkdtempSync(join(tmpdir(), 'ef-store-bench-'))

function rawFsync (ms: number): number {
  const file = join(base, 'fsync.bin')
  const fd = openSync(file, 'w')
  const buf = Buffer.alloc(256, 1)
  let n = 0
  const end = performance.now() + ms
  while (performance.now() < end) { writeSync(fd, buf); fdatasyncSync(fd); n++ }
  closeSync(fd)
  return n / (ms / 1000)
}

interface Row { mode: Durability, concurrency: number, appendPerSec: number, p50: number, p99: number, drainPerSec: number }

async function run (mode: Durability, concurrency: number, n: number): Promise<Row> {
  const dir = join(base, `${mode}-${concurrency}`)
  const store = await LmdbStore.open(dir, { durability: mode })
  const bytes = new Uint8Array(256).fill(7)
  const lat: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    while (next < n) {
      const i = next++
      const a = performance.now()
      await store.append(`node-${w % PEERS}`, [{ id: `m-${i}`, bytes, op: 'update' }], quota, Date.now())
      lat.push(performance.now() - a)
    }
  }))
  const appendPerSec = n / ((performance.now() - t0) / 1000)
  lat.sort((a, b) => a - b)
  const t1 = performance.now()
  let acked = 0
  await Promise.all(Array.from({ length: PEERS }, async (_, p) => {
    const peer = `node-${p}`
    let after = 0
    for (;;) {
      const recs = store.pending(peer, after, 64)
      if (recs.length === 0) break
      after = (recs[recs.length - 1] as { seq: number }).seq
      const removed = await store.ack(peer, after) // (not `acked += await …`: that reads acked before the await)
      acked += removed
    }
  }))
  const drainPerSec = acked / ((performance.now() - t1) / 1000)
  await store.close()
  rmSync(dir, { recursive: true, force: true })
  return { mode, concurrency, appendPerSec, p50: lat[lat.length >> 1] ?? 0, p99: lat[Math.floor(lat.length * 0.99)] ?? 0, drainPerSec }
}

try {
  const fsyncs = rawFsync(2000)
  console.log(`raw fsync (256 B write + fdatasync): ${Math.round(fsyncs)}/s`)
  const rows: Row[] = []
  for (const mode of ['relaxed', 'sync'] as const) {
    for (const c of [1, 100, 1000]) {
      const row = await run(mode, c, c === 1 ? Math.min(N, mode === 'sync' ? 2000 : 10_000) : N)
      rows.push(row)
      console.log(`${mode.padEnd(7)} c=${String(c).padEnd(4)} append ${Math.round(row.appendPerSec).toString().padStart(7)} msg/s  p50 ${row.p50.toFixed(1)} ms  p99 ${row.p99.toFixed(1)} ms  | drain pending(64)+ack ${Math.round(row.drainPerSec)} msg/s`)
    }
  }
  console.log(JSON.stringify({ rawFsyncPerSec: Math.round(fsyncs), rows }))
} finally {
  rmSync(base, { recursive: true, force: true })
}
