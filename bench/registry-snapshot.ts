/**
 * Start-up of the cluster's device registry store (src/cluster/registry-store.ts)
 * from the whole log vs from a snapshot (registry-snapshot*.ts): 3 nats-server
 * (R3 file streams) on loopback, `--n` transactions in the log (twin-report
 * sized: one device key each, `--devices` distinct devices), then per round
 * JetStreamKv.open() with compaction off (replays n entries) and with a
 * snapshot at n (loads it, replays nothing). Rounds interleaved.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/registry-snapshot.js [--n 50000] [--devices 5000] [--rounds 3]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { Packr } from 'msgpackr'
import { ClusterConnection, resolveClusterOptions } from '../src/cluster/connection.js'
import { JetStreamKv } from '../src/cluster/registry-store.js'
import { nullLogger } from '../src/ops/logger.js'
import { NatsCluster } from '../test/cluster/nats-cluster.js'

const arg = (name: string, d: number): number => { const i = process.argv.indexOf(`--${name}`); return i < 0 ? d : Number(process.argv[i + 1]) }
const N = arg('n', 50_000)
const DEVICES = arg('devices', 5000)
const ROUNDS = arg('rounds', 3)
const packr = new Packr({ useRecords: false, moreTypes: false })
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number

const dir = mkdtempSync(join(tmpdir(), 'ef-regsnap-bench-'))
const nats = await NatsCluster.start(dir, 3)
try {
  const conn = async (name: string): Promise<ClusterConnection> => await ClusterConnection.open(resolveClusterOptions({ servers: nats.urls, name, replicas: 3, timeoutMs: 10_000 }), nullLogger)
  /** A log of N entries under a fresh cluster name (a store opened with compaction off replays it from seq 1). */
  const writeLog = async (name: string): Promise<void> => {
    const c = await conn(name)
    const setup = await JetStreamKv.open(c, () => {}, { snapshotEvery: 0 })
    await setup.close()
    const h = natsHeaders()
    h.set('Ef-Registry', '1')
    const t0 = Date.now()
    const inflight = new Set<Promise<unknown>>()
    for (let i = 1; i <= N; i++) {
      const body = packr.pack({ r: [], p: [], w: [['devices', `default/d${i % DEVICES}`, 1, { spec: { nodeId: `edge-${i % 100}` }, reported: { t: i, at: Date.now() }, rev: i }]], n: null })
      const p = c.js.publish(`ef.${name}.registry.tx`, packr.pack({ f: 1, i: `a${i}`, o: `o${i}`, b: Math.max(0, i - 1), body }), { headers: h })
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
      if (inflight.size >= 1000) await Promise.race(inflight)
    }
    await Promise.all(inflight)
    await c.close()
    console.log(`log ${name}: ${N} entries written in ${Date.now() - t0} ms`)
  }
  const open = async (name: string, every: number): Promise<{ ms: number, heap: number, applied: number, snap: number, kv: JetStreamKv, cc: ClusterConnection }> => {
    const cc = await conn(name)
    global.gc?.()
    const h0 = process.memoryUsage().heapUsed
    const s = Date.now()
    const kv = await JetStreamKv.open(cc, () => {}, { snapshotEvery: every })
    const ms = Date.now() - s
    return { ms, heap: process.memoryUsage().heapUsed - h0, applied: kv.applied, snap: kv.snapshotSeq, kv, cc }
  }
  const done = async (r: { kv: JetStreamKv, cc: ClusterConnection }): Promise<void> => { await r.kv.close(); await r.cc.close() }
  const fromLog: number[] = []
  const fromSnap: number[] = []
  let bytes = 0
  for (let r = 0; r < ROUNDS; r++) {
    const name = `bench${r + 1}`
    await writeLog(name)
    // No snapshot yet: replay all N entries. With snapshotEvery = N it captures the view at N
    // while it replays and stores it; the next store opens from that snapshot.
    const a = await open(name, N)
    while (a.kv.snapshotSeq < N) await new Promise(resolve => setTimeout(resolve, 50))
    await done(a)
    const b = await open(name, N)
    await done(b)
    if (a.snap !== 0 || b.snap !== N || a.applied !== b.applied) throw new Error(`unexpected: ${JSON.stringify({ a: [a.snap, a.applied], b: [b.snap, b.applied] })}`)
    const c = await conn(name)
    bytes = (await c.jsm.streams.info(b.kv.snapshotStream)).state.bytes
    await c.close()
    fromLog.push(a.ms)
    fromSnap.push(b.ms)
    console.log(`round ${r + 1}: from the log ${a.ms} ms (heap +${(a.heap / 1e6).toFixed(0)} MB), from the snapshot ${b.ms} ms (heap +${(b.heap / 1e6).toFixed(0)} MB)`)
  }
  console.log(`median of ${ROUNDS}: from the log ${median(fromLog)} ms, from the snapshot ${median(fromSnap)} ms; snapshot stream ${(bytes / 1e6).toFixed(1)} MB (${DEVICES} devices)`)
} finally {
  await nats.stop()
  rmSync(dir, { recursive: true, force: true })
}
