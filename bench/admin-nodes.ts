/**
 * Admin API node list at 10,000 nodes (issue 15: "under 50 ms and 100 KB per
 * page"). What is real and what is synthetic:
 *
 * - REAL: the admin HTTP server with its guard (startAdminServer), the fleet
 *   API (createFleetApi), HTTP requests over loopback, and an LMDB reliable
 *   store (LmdbStore) holding pending messages for 3,000 of the nodes, which
 *   is where the queue depths come from (one scan of the store's peer counters
 *   per request, as on a real hub).
 * - SYNTHETIC: the node registry — 10,000 node records shaped like
 *   Hub.nodes() (copied on every call, as HubCore#snapshot does), instead of
 *   10,000 live sessions (bench/sessions.ts measures those; they would cost
 *   this 2-core machine minutes and gigabytes and do not change the list's
 *   cost, which is the snapshot + filter + sort + page).
 *
 * Baseline in the same run: GET /status with the same 10,000 nodes in the
 * shape Hub.status() returns (the whole fleet in one response, what the old
 * status page used). Medians and ranges of 6 measured interleaved rounds (a 7th, first, warms up), wall time and
 * this process's CPU time per request (server and client share the process).
 *
 *   npx tsc -p tsconfig.bench.json && flock /tmp/edgefabric-bench.lock node dist-bench/bench/admin-nodes.js [--nodes 10000]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { startAdminServer } from '../src/ops/admin-server.js'
import { createFleetApi, type FleetNodeInfo, type FleetSource } from '../src/ops/admin-fleet.js'
import { nullLogger } from '../src/ops/logger.js'
import { LmdbStore } from '../src/reliable/lmdb-store.js'

const argNodes = process.argv.indexOf('--nodes')
const NODES = argNodes > 0 ? Number(process.argv[argNodes + 1]) : 10_000
const QUEUED_NODES = Math.floor(NODES * 0.3)
const ROUNDS = 7
const TRANSPORTS = ['quic', 'wss', 'ws'] as const

function makeNodes (): FleetNodeInfo[] {
  const t = Date.now()
  return Array.from({ length: NODES }, (_, i) => {
    const connected = i % 10 !== 0
    return {
      nodeId: `edge-${String(i).padStart(5, '0')}`,
      status: connected ? 'connected' : 'disconnected',
      labels: { zone: `zone-${i % 8}`, rack: `r${i % 50}`, model: i % 3 === 0 ? 'gateway' : 'sensor-hub' },
      transport: connected ? TRANSPORTS[i % 3] : undefined,
      remoteAddress: connected ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:40000` : undefined,
      connectedAt: connected ? t - i * 1000 : undefined,
      disconnectedAt: connected ? undefined : t - i * 500,
      lastSeen: connected ? t - (i % 5000) : undefined,
      rttMs: connected ? 2 + (i % 97) / 10 : undefined,
      sessionId: connected ? `s-${i}` : undefined
    }
  })
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ef-bench-admin-'))
  const store = await LmdbStore.open(join(dir, 'reliable'), { durability: 'relaxed' })
  const records = makeNodes()
  // Pending messages for 30 % of the nodes (1–40 each), in a few large transactions.
  const quota = { maxMessages: 1_000_000, maxBytes: 1024 ** 3, overflow: 'reject' as const }
  const body = new Uint8Array(200)
  await Promise.all(records.slice(0, QUEUED_NODES).map((n, i) => store.append(n.nodeId,
    Array.from({ length: 1 + (i % 40) }, (_, k) => ({ id: `${n.nodeId}-${k}`, bytes: body })), quota, Date.now())))
  const snapshot = (r: FleetNodeInfo): FleetNodeInfo => ({ ...r, labels: { ...r.labels } })
  const byId = new Map(records.map(r => [r.nodeId, r]))
  const source: FleetSource = {
    nodes: () => records.map(snapshot),
    node: id => { const r = byId.get(id); return r === undefined ? undefined : snapshot(r) },
    queued () {
      // as src/hub/fleet-source.ts: one scan of the store's peer counters
      const m = new Map<string, { count: number, bytes: number }>()
      for (const s of store.pendingStats()) m.set(s.peer, { count: s.count, bytes: s.bytes })
      return m
    },
    outbox: id => ({ ...store.outboxStats(id), inflight: 0, acked: 0 }),
    outboxHead: () => [],
    traffic: () => undefined,
    deadLetters: (id, limit) => store.deadLetters(id, limit),
    onNodeEvent: () => () => {},
    warnings: async () => [],
    info: () => ({ role: 'hub' })
  }
  const fleet = createFleetApi({ source, logger: nullLogger, sampleMs: 3_600_000 })
  // Baseline: /status with the whole fleet, shaped as Hub.status() (src/hub/hub.ts).
  const status = (): object => ({
    role: 'hub', nodes: source.nodes().map(n => ({
      nodeId: n.nodeId, status: n.status, transport: n.transport, remoteAddress: n.remoteAddress, labels: n.labels, rttMs: n.rttMs,
      lastSeen: n.lastSeen === undefined ? undefined : new Date(n.lastSeen).toISOString(),
      connectedAt: n.connectedAt === undefined ? undefined : new Date(n.connectedAt).toISOString()
    }))
  })
  const admin = await startAdminServer({ registry: new Registry(), api: fleet.routes, status, auth: { token: 'bench-token' } })
  const auth = { authorization: 'Bearer bench-token' }
  const cases: Array<[string, string]> = [
    ['baseline: GET /status (whole fleet)', '/status'],
    ['first page (100, by id)', '/api/nodes?limit=100'],
    ['page 50 (offset 5000)', '/api/nodes?limit=100&offset=5000'],
    ['filter status=disconnected', '/api/nodes?limit=100&status=disconnected'],
    ['filter label zone=zone-3 + transport=quic', '/api/nodes?limit=100&label=zone%3Dzone-3&transport=quic'],
    ['filter queue >= 20, sort by queue', '/api/nodes?limit=100&minQueue=20&sort=queue'],
    ['search "edge-012"', '/api/nodes?limit=100&q=edge-012'],
    ['max page (250)', '/api/nodes?limit=250'],
    ['node detail', '/api/nodes/edge-00001']
  ]
  const times = new Map<string, number[]>(cases.map(([n]) => [n, []]))
  // CPU time of this process (server and client share it) per request: what the work costs, apart from
  // waiting for a core on a loaded machine (wall time includes that).
  const cpu = new Map<string, number[]>(cases.map(([n]) => [n, []]))
  const sizes = new Map<string, number>()
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, path] of cases) {
      const c0 = process.cpuUsage()
      const t0 = process.hrtime.bigint()
      const r = await fetch(admin.url + path, { headers: auth })
      const text = await r.arrayBuffer()
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      const c = process.cpuUsage(c0)
      if (round > 0 || name.startsWith('baseline')) cpu.get(name)?.push((c.user + c.system) / 1000)
      if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}`)
      if (round > 0 || name.startsWith('baseline')) times.get(name)?.push(ms) // round 0 warms the JIT for the API cases
      sizes.set(name, text.byteLength)
    }
  }
  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }
  const base = median(times.get(cases[0]![0]) ?? [])
  console.log(`admin node list: ${NODES} nodes (synthetic registry), ${QUEUED_NODES} with pending messages in a real LMDB store; ${ROUNDS} interleaved rounds over HTTP on loopback; node ${process.version}`)
  console.log(`load average ${loadavg().map(x => x.toFixed(1)).join(' ')} on ${cpus().length} cores`)
  const baseCpu = median(cpu.get(cases[0]![0]) ?? [])
  console.log('case'.padEnd(46) + 'wall median'.padStart(12) + '   range ms'.padEnd(18) + 'CPU ms median'.padStart(14) + '   range'.padEnd(16) + 'bytes'.padStart(10) + '  vs baseline (wall, CPU)')
  for (const [name] of cases) {
    const xs = times.get(name) ?? []
    const m = median(xs)
    const cs = cpu.get(name) ?? []
    const cm = median(cs)
    console.log(name.padEnd(46) + m.toFixed(1).padStart(12) + `   ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`.padEnd(18) +
      cm.toFixed(1).padStart(14) + `   ${Math.min(...cs).toFixed(1)}–${Math.max(...cs).toFixed(1)}`.padEnd(16) + String(sizes.get(name)).padStart(10) + `  ${(m / base).toFixed(3)}x, ${(cm / baseCpu).toFixed(3)}x`)
  }
  await admin.close()
  fleet.close()
  await store.close()
  await rm(dir, { recursive: true, force: true })
}

await main()
