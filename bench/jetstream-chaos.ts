/**
 * Does nats-server lose PubAck'd messages when a server of an R3 cluster is
 * SIGKILLed? Raw JetStream only, no edgefabric code in the loop: the full-size
 * chaos test once lost 5 PubAck'd messages whose seqs later held other
 * messages (bench/RESULTS.md run "h"), and this decides whether the engine
 * alone does that.
 *
 * 3 nats-server (test/cluster/nats-cluster.ts), a file-backed R3 stream with
 * the config of our downstream stream (src/cluster/connection.ts #ensure),
 * `--nodes` publishers paced over `--seconds`, at most `--window` publishes
 * outstanding, every failed publish retried with the same msgID (what a real
 * producer does). Meanwhile a random server is SIGKILLed every 2–8 s (seeded,
 * the chaos test's schedule) and restarted after `--pause` ms. At the end,
 * with every server up and every replica current, each replica is read on its
 * own server and compared with the PubAcks.
 *
 *   npm run bench:jetstream-chaos -- [--n 50000] [--nodes 10] [--seconds 150] [--window 200] [--seed 1] [--pause 200] [--target leader] [--delete] [--burn 2] [--timeout 5000]
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect, headers, nanos } from '@nats-io/transport-node'
import { jetstream, jetstreamManager, DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { NatsCluster } from '../test/cluster/nats-cluster.js'
import { prng } from '../test/reliable/chaos-procs.js'
import { startDeleter } from './lib/jetstream-chaos-delete.js'
import { diverge, judge, readReplica, serverStates, settle, type Acked, type Verdict } from './lib/jetstream-chaos-check.js'

const argv = process.argv.slice(2)
const arg = (name: string, def: number): number => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def }
const N = arg('--n', 50_000)
const NODES = arg('--nodes', 10)
const SECONDS = arg('--seconds', 150)
const WINDOW = arg('--window', 200)
const SEED = arg('--seed', 1)
const PAUSE = arg('--pause', 200)
/** `--target leader`: kill the stream's current leader every time (forces a leader change per kill); default a random server */
const TARGET = argv.includes('--target') ? argv[argv.indexOf('--target') + 1] : 'random'
/** `--delete`: our hub's id-checked deletes beside the publishes (lib/jetstream-chaos-delete.ts) */
const DELETE = argv.includes('--delete')
/**
 * `--burn K`: K busy-loop processes while publishing. The chaos test ran 3 hubs and 10 edges on the
 * same 2 cores as the NATS servers (load 2–16): a starved server misses heartbeats and elections
 * multiply, which an otherwise idle machine never shows.
 */
const BURN = arg('--burn', 0)
/**
 * `--timeout ms` per publish (the hub's default is 5000). Shorter makes more retries while the first
 * attempt is still in a leader's Raft log, so the same msgID is proposed twice across a leader change and
 * the second is refused at apply time: the path that bumps nats-server 2.9's per-replica failed-proposal
 * count (clfs), which decides whether a replica applies or skips a committed message.
 */
const TIMEOUT = arg('--timeout', 5000)
const STREAM = 'EF_T_DOWN'
/** max_msgs_per_subject of our downstream stream (RESOURCE_HISTORY) */
const PER_SUBJECT = 4
const PAYLOAD = new Uint8Array(256).fill(7)

const t0 = Date.now()
const now = (): number => Date.now() - t0
const log = (s: string): void => { console.log(`[${(now() / 1000).toFixed(1)}s] ${s}`) }

// NatsCluster kills its servers on 'exit': make a timeout's SIGTERM or a ^C go through it.
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => process.exit(130))
const dir = mkdtempSync(join(tmpdir(), 'ef-jschaos-'))
const load0 = loadavg()
const nats = await NatsCluster.start(dir, 3)
const names = nats.servers.map(s => s.name)
const nc = await connect({ servers: nats.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 100, pingInterval: 2000, maxPingOut: 2 })
const js = jetstream(nc, { timeout: 5000 })
const jsm = await jetstreamManager(nc, { timeout: 5000 })
// Same engine paths as the hub's EF_<C>_DOWN: per-subject limit (evictions in the apply path), dedup window, direct get.
await jsm.streams.add({
  name: STREAM,
  subjects: ['t.down.>'],
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  num_replicas: 3,
  max_msgs_per_subject: PER_SUBJECT,
  max_age: nanos(7 * 86_400_000),
  discard: DiscardPolicy.Old,
  duplicate_window: nanos(120_000),
  allow_direct: true
})

// NatsCluster keeps each server's last 200 log chunks; a post-mortem wants the whole log of every life.
const fullLog = (i: number): void => {
  const s = nats.servers[i]
  const keep = (b: Buffer): void => { appendFileSync(join(dir, `${s?.name}.full.log`), b) }
  s?.proc?.stdout?.on('data', keep)
  s?.proc?.stderr?.on('data', keep)
}
for (let i = 0; i < 3; i++) fullLog(i)

// Who led the stream when: a lost message is judged against the leader changes around its PubAck.
const leaders: Array<{ t: number, leader: string }> = []
let polling = true
const poller = (async () => {
  while (polling) {
    try {
      const l = (await jsm.streams.info(STREAM)).cluster?.leader ?? '-'
      if (leaders.at(-1)?.leader !== l) leaders.push({ t: now(), leader: l })
    } catch { if (leaders.at(-1)?.leader !== '?') leaders.push({ t: now(), leader: '?' }) }
    await sleep(250)
  }
})()

// Chaos: the chaos test's schedule (2–8 s apart), NATS servers only, one down at a time.
const rnd = prng(SEED)
const kills: Array<{ t: number, server: string, up: number, leader: boolean }> = []
let chaos = true
const driver = (async () => {
  while (chaos) {
    await sleep(2000 + Math.floor(rnd() * 6000))
    if (!chaos) break
    const r = Math.floor(rnd() * 3)
    const l = names.indexOf(leaders.at(-1)?.leader ?? '')
    const i = TARGET === 'leader' && l >= 0 ? l : r
    const k = { t: now(), server: names[i] ?? '', up: -1, leader: names[i] === leaders.at(-1)?.leader }
    kills.push(k)
    await nats.kill(i)
    await sleep(PAUSE)
    const up = nats.restart(i)
    fullLog(i)
    await up.catch(err => { log(`restart ${k.server}: ${(err as Error).message}`) })
    k.up = now()
  }
})()

// Publishers: a PubAck is what we test; a failure is not an acknowledgement, so it is retried with the same msgID.
const acked: Acked[] = []
const deleter = DELETE ? startDeleter(jsm, STREAM, now) : undefined
const failed = new Map<string, number>()
async function publishOne (node: string, i: number): Promise<void> {
  const id = randomUUID()
  // Half on resource subjects (the per-subject limit evicts), half one subject per message, like our outboxes.
  const subject = i % 2 === 0 ? `t.down.${node}.r.k${i % 10}` : `t.down.${node}.m.${id}`
  const h = headers()
  h.set('Ef-Id', id)
  for (let attempt = 1; ; attempt++) {
    try {
      const ack = await js.publish(subject, PAYLOAD, { msgID: `${node}:${id}`, headers: h, timeout: TIMEOUT })
      const a = { id, node, subject, seq: ack.seq, t: now(), attempts: attempt, duplicate: ack.duplicate }
      acked.push(a)
      deleter?.offer(a)
      return
    } catch (err) {
      const kind = (err as Error).message.replace(/[0-9]+/g, 'N').slice(0, 60)
      failed.set(kind, (failed.get(kind) ?? 0) + 1)
      await sleep(200)
    }
  }
}
const burners = Array.from({ length: BURN }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }))
process.once('exit', () => { for (const b of burners) b.kill('SIGKILL') })
const perNode = Math.ceil(N / NODES)
const perWindow = Math.max(1, Math.floor(WINDOW / NODES))
log(`${N} messages, ${NODES} publishers, ${SECONDS} s, window ${WINDOW}, seed ${SEED}, pause ${PAUSE} ms, target ${TARGET}${DELETE ? ', deletes' : ''}, burn ${BURN}, timeout ${TIMEOUT} ms, load ${load0.map(x => x.toFixed(2)).join(' ')}`)
await Promise.all(Array.from({ length: NODES }, async (_, k) => {
  const node = `node-${k}`
  const inflight = new Set<Promise<void>>()
  for (let i = 1; i <= perNode; i++) {
    const due = t0 + ((i - 1) * SECONDS * 1000) / perNode
    if (due > Date.now()) await sleep(due - Date.now())
    while (inflight.size >= perWindow) await Promise.race(inflight)
    const p = publishOne(node, i).finally(() => { inflight.delete(p) })
    inflight.add(p)
  }
  await Promise.all(inflight)
}))
const pubEnd = now()
for (const b of burners) b.kill('SIGKILL')
await deleter?.stop()
chaos = false
await driver
log(`published: ${acked.length} PubAck'd (${acked.filter(a => a.duplicate).length} as duplicates, ${acked.filter(a => a.seq === 0).length} with seq 0), ${[...failed.values()].reduce((a, b) => a + b, 0)} failed attempts retried, ${kills.length} kills`)

// Settle: every server up, the stream led, every replica current — then read each replica on its own server.
for (let i = 0; i < 3; i++) if (!nats.running(i)) await nats.restart(i)
const settledLeader = await settle(jsm, STREAM, log)
log(`settled: leader ${settledLeader}`)
await sleep(2000)
polling = false
await poller
const leader = (await jsm.streams.info(STREAM)).cluster?.leader ?? '?'
const jsz = await serverStates(nats.servers, STREAM)
const replicas = new Map<string, Map<number, { id: string, subject: string }>>()
for (const name of names) {
  const m = await readReplica(js, jsm, STREAM, name)
  log(`${name}: read ${m?.size ?? 'nothing'}`)
  if (m === undefined) log(`${name}: no consumer could be placed there`)
  else replicas.set(name, m)
}
const verdicts = new Map<string, Verdict>()
// What we deleted (or may have: a lost reply) is absent by our hand, not the engine's.
const kept = acked.filter(a => deleter === undefined || (!deleter.deleted.has(a.id) && !deleter.unsure.has(a.id)))
for (const [name, m] of replicas) verdicts.set(name, judge(kept, m, PER_SUBJECT))
const storedIds = new Set([...(replicas.get(leader)?.values() ?? [])].map(s => s.id))
const resurrected = [...(deleter?.deleted ?? [])].filter(id => storedIds.has(id)).length
const lead = replicas.get(leader) ?? new Map()
const divergence = Object.fromEntries([...replicas].filter(([n]) => n !== leader).map(([n, m]) => [n, diverge(lead, m)]))

// Report. Leader changes count real leaders only (the poller also notes '?' while no server answers).
const named = leaders.filter(l => names.includes(l.leader))
const leaderChanges = named.filter((l, k) => k > 0 && named[k - 1]?.leader !== l.leader).length
const v = verdicts.get(leader)
const leaderAt = (t: number): string => [...leaders].reverse().find(l => l.t <= t)?.leader ?? '?'
const nearKills = (t: number): string => {
  const before = [...kills].reverse().find(k => k.t <= t)
  const after = kills.find(k => k.t > t)
  return `${before === undefined ? 'no kill before' : `${before.server}${before.leader ? ' (leader)' : ''} killed ${((t - before.t) / 1000).toFixed(2)} s before`}; ${after === undefined ? 'no kill after' : `${after.server}${after.leader ? ' (leader)' : ''} killed ${((after.t - t) / 1000).toFixed(2)} s after`}`
}
if (deleter !== undefined) console.log(`\ndeletes: ${deleter.deleted.size} confirmed, ${deleter.unsure.size} unsure, ${resurrected} still stored on the leader, ${deleter.mismatches.length} leader checks found another id at a PubAck'd seq`)
for (const x of deleter?.mismatches.slice(0, 20) ?? []) console.log(`  DELETE-CHECK seq ${x.seq}: PubAck'd ${x.id}, leader held '${x.found}' at ${(x.t / 1000).toFixed(2)} s`)
console.log(`\nleader ${leader}; leader changes ${leaderChanges}; per-server state ${JSON.stringify(jsz)}`)
for (const [name, vv] of verdicts) {
  console.log(`${name}${name === leader ? ' (leader)' : ''}: ${replicas.get(name)?.size} stored, missing ${vv.missing.length}, moved ${vv.moved.length}, replaced ${vv.replaced.length}, dup ids ${vv.dups}, evicted ${vv.evicted}, stored − PubAck seq ${JSON.stringify(vv.shifts)}` +
    (name === leader ? '' : `, differs from leader at ${divergence[name]?.length} seqs`))
}
for (const a of v?.missing ?? []) console.log(`  MISSING ${a.node} ${a.id} PubAck seq ${a.seq} at ${(a.t / 1000).toFixed(2)} s (leader then ${leaderAt(a.t)}; ${nearKills(a.t)})`)
for (const a of (v?.replaced ?? []).slice(0, 20)) console.log(`  REPLACED seq ${a.seq}: PubAck'd ${a.id} at ${(a.t / 1000).toFixed(2)} s, holds ${a.holder} (${nearKills(a.t)})`)
for (const a of (v?.moved ?? []).slice(0, 20)) console.log(`  MOVED ${a.id}: PubAck seq ${a.seq}, stored at ${a.at.join(',')}`)
const summary = {
  seed: SEED, target: TARGET, burn: BURN, timeoutMs: TIMEOUT, deletes: deleter === undefined ? undefined : { confirmed: deleter.deleted.size, unsure: deleter.unsure.size, resurrected, mismatches: deleter.mismatches }, n: N, nodes: NODES, seconds: SECONDS, window: WINDOW, pauseMs: PAUSE, load: [load0, loadavg()], pubEndMs: pubEnd,
  acked: acked.length, dupAcks: acked.filter(a => a.duplicate).length, zeroSeqAcks: acked.filter(a => a.seq === 0).length, retried: acked.filter(a => a.attempts > 1).length,
  failed: Object.fromEntries(failed), kills, leaderChanges, leader, jsz,
  replicas: Object.fromEntries([...verdicts].map(([n, vv]) => [n, {
    stored: replicas.get(n)?.size, missing: vv.missing, moved: vv.moved.length, replaced: vv.replaced.length, dups: vv.dups, evicted: vv.evicted, shifts: vv.shifts, movedFirst: vv.moved.slice(0, 5).map(m => ({ seq: m.seq, at: m.at, t: m.t })), divergentSeqs: divergence[n]?.slice(0, 50)
  }]))
}
const outDir = join('bench', 'results', 'jetstream-chaos')
mkdirSync(outDir, { recursive: true })
const file = join(outDir, `seed-${SEED}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify(summary, null, 1) + '\n')
const lost = resurrected + (deleter?.mismatches.length ?? 0) + (v?.missing.length ?? 0) + (v?.replaced.length ?? 0) + [...verdicts.values()].reduce((a, x) => a + x.missing.length, 0)
console.log(`\nRESULT seed ${SEED} target ${TARGET} burn ${BURN} timeout ${TIMEOUT}${DELETE ? ` deletes ${deleter?.deleted.size} (check mismatches ${deleter?.mismatches.length}, resurrected ${resurrected})` : ''}: PubAck'd ${acked.length}, missing ${v?.missing.length}, moved ${v?.moved.length}, replaced ${v?.replaced.length}, kills ${kills.length} (${kills.filter(k => k.leader).length} of the leader), leader changes ${leaderChanges}, divergent replicas ${Object.values(divergence).filter(d => d.length > 0).length} → ${file}`)

await nc.close()
await nats.stop()
// A run that lost something keeps its stores and server logs for a post-mortem.
if (lost > 0) {
  for (const s of nats.servers) writeFileSync(join(dir, `${s.name}.log`), s.log.join(''))
  log(`stores kept in ${dir}`)
} else rmSync(dir, { recursive: true, force: true })
