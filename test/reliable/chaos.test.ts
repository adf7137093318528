/**
 * Chaos test of the ACK lane with real processes (issue 4, "Proof"): a hub
 * process producing reliable messages cloud→edge and an edge process
 * producing edge→cloud, while a driver SIGKILLs and restarts each of them and
 * cuts the link (the edge aborts its connection on SIGUSR2), on a seeded
 * random schedule. Both "applications" append every message they are handed
 * to a file before the lane acknowledges it (test/fixtures/reliable-*.mjs).
 *
 * At the end: every id arrived at least once, first arrivals are in order
 * per resource, both outboxes are empty, each side's seq counters say
 * exactly `total` messages were queued (producers resumed without gaps or
 * repeats), both processes stayed under the RSS bound, and the raw number of
 * application-level duplicates is reported. Those can only come from a
 * receiver killed between handing messages to the application and committing
 * them: one group committing plus the next one being handed over, at most
 * 2 × 16 batches × 64 = 2048 messages per kill of the receiving side (see
 * receiver.ts); after the receiver's dedup (seq + id window) nothing else is
 * redelivered.
 *
 * Build first: the fixtures import ../../dist (npm run build).
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Restartable, analyze, freePort, prng } from './chaos-procs.js'

type Test = import('tap').Test

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url))
const RSS_BOUND = 500 * 1024 * 1024
/** At most this many messages are delivered but not committed when a receiver dies (2 groups of 16 × 64). */
const WINDOW = 2048

t.setTimeout(300_000)

interface Scenario { transport: 'quic' | 'ws', down: number, up: number, seed: number, minEvents: number }

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function chaos (t: Test, s: Scenario): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `ef-chaos-${s.transport}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const port = await freePort(s.transport === 'quic' ? 'udp' : 'tcp')
  const downFile = join(dir, 'down.txt')
  const upFile = join(dir, 'up.txt')
  writeFileSync(downFile, '')
  writeFileSync(upFile, '')
  const hubCfg = { listen: `${s.transport}://127.0.0.1:${port}`, dataDir: join(dir, 'hub'), node: 'edge-1', total: s.down, upFile, durability: 'sync', heartbeatMs: 500 }
  const hub = new Restartable('hub', join(fixtures, 'reliable-hub.mjs'), () => [JSON.stringify(hubCfg)])
  let token = ''
  const edge = new Restartable('edge', join(fixtures, 'reliable-edge.mjs'), () => [JSON.stringify({
    hub: hubCfg.listen, token, node: 'edge-1', dataDir: join(dir, 'edge'), total: s.up, downFile, durability: 'sync'
  })])
  t.teardown(async () => { await hub.kill(); await edge.kill() })

  const started = Date.now()
  const ready = hub.waitFor(m => m.type === 'ready')
  hub.start()
  token = (await ready).token as string
  edge.start()

  const rnd = prng(s.seed)
  const counts = { hubKills: 0, edgeKills: 0, cuts: 0 }
  let lastChaos = started
  const produced = (): boolean => hub.stats?.lastSeq === s.down && edge.stats?.lastSeq === s.up
  const fatal = (): string | undefined => hub.unexpectedExit ?? edge.unexpectedExit
  const deadline = started + 240_000
  // Chaos while producing and draining: stop once both producers are done,
  // 95 % has arrived each way and at least `minEvents` events happened.
  const calm = (): boolean => produced() && counts.hubKills + counts.edgeKills + counts.cuts >= s.minEvents &&
    (edge.stats?.received ?? 0) >= 0.95 * s.down && (hub.stats?.received ?? 0) >= 0.95 * s.up
  // every 0.5–2 s kill the hub, kill the edge, or cut the link
  while (!calm()) {
    await sleep(500 + rnd() * 1500)
    if (fatal() !== undefined || Date.now() > deadline || calm()) break
    const pick = rnd()
    // A restarted process gets to open its store and listen/dial before the next
    // interval starts, so the run makes progress between events.
    if (pick < 1 / 3) {
      await hub.kill(); counts.hubKills++
      const up = hub.waitFor(m => m.type === 'ready'); hub.start(); await up
    } else if (pick < 2 / 3) {
      await edge.kill(); counts.edgeKills++
      const up = edge.waitFor(m => m.type === 'ready'); edge.start(); await up
    } else if (edge.stats?.connected === true) {
      // (only to a running edge: a signal during Node's own startup would kill it)
      edge.signal('SIGUSR2'); counts.cuts++
    } else {
      continue
    }
    lastChaos = Date.now()
  }
  const chaosEnded = Date.now()

  // Quiet period: wait until both sides have received everything and both outboxes are empty.
  const done = (): boolean => produced() &&
    hub.stats?.outbox === 0 && edge.stats?.outbox === 0 &&
    hub.stats.received === s.up && edge.stats.received === s.down
  while (!done() && fatal() === undefined && Date.now() < deadline) await sleep(50)
  const finished = Date.now()
  const last = `hub ${JSON.stringify(hub.stats)} edge ${JSON.stringify(edge.stats)}`
  t.equal(fatal(), undefined, 'no process died on its own')
  if (fatal() !== undefined) t.comment(fatal())
  t.ok(done(), `everything delivered and acknowledged within the deadline (${last})`)

  await hub.kill('SIGTERM')
  await edge.kill('SIGTERM')

  const down = analyze(downFile, s.down)
  const up = analyze(upFile, s.up)
  const notes = [...hub.notes, ...edge.notes].filter(m => m.type !== 'ready' && m.type !== 'produced')
  t.same(notes, [], 'no lane trouble reported (store errors, gaps, dead letters, send failures)')
  t.equal(hub.stats?.lastSeq, s.down, `hub producer queued exactly ${s.down} (resumed from lastSeq without repeats)`)
  t.equal(edge.stats?.lastSeq, s.up, `edge producer queued exactly ${s.up}`)
  t.same(down.missing.slice(0, 10), [], `cloud→edge: all ${s.down} ids delivered to the application (missing ${down.missing.length})`)
  t.same(up.missing.slice(0, 10), [], `edge→cloud: all ${s.up} ids delivered to the application (missing ${up.missing.length})`)
  t.equal(down.orderViolations, 0, 'cloud→edge: per-resource order of first deliveries')
  t.equal(up.orderViolations, 0, 'edge→cloud: per-resource order of first deliveries')
  t.ok(down.duplicates <= WINDOW * counts.edgeKills, `cloud→edge duplicates ${down.duplicates} ≤ ${WINDOW} × ${counts.edgeKills} edge kills`)
  t.ok(up.duplicates <= WINDOW * counts.hubKills, `edge→cloud duplicates ${up.duplicates} ≤ ${WINDOW} × ${counts.hubKills} hub kills`)
  t.ok(hub.maxRss < RSS_BOUND, `hub RSS max ${(hub.maxRss / 2 ** 20).toFixed(0)} MiB < ${RSS_BOUND / 2 ** 20} MiB`)
  t.ok(edge.maxRss < RSS_BOUND, `edge RSS max ${(edge.maxRss / 2 ** 20).toFixed(0)} MiB < ${RSS_BOUND / 2 ** 20} MiB`)

  const total = s.down + s.up
  const secs = (finished - started) / 1000
  t.comment(`${s.transport}: ${s.down} down + ${s.up} up, sync, seed ${s.seed}: ${counts.hubKills} hub kills, ${counts.edgeKills} edge kills, ${counts.cuts} link cuts`)
  t.comment(`${s.transport}: total ${secs.toFixed(1)} s (${Math.round(total / secs)} msg/s end to end incl. chaos); chaos phase ${((chaosEnded - started) / 1000).toFixed(1)} s; drain after the last chaos event ${finished - lastChaos} ms`)
  t.comment(`${s.transport}: raw application duplicates: cloud→edge ${down.duplicates}, edge→cloud ${up.duplicates} (only from receivers killed between hand-off and commit); global first-delivery order violations: ${down.globalOrderViolations}/${up.globalOrderViolations}`)
  t.comment(`${s.transport}: max RSS hub ${(hub.maxRss / 2 ** 20).toFixed(0)} MiB, edge ${(edge.maxRss / 2 ** 20).toFixed(0)} MiB over ${hub.starts} / ${edge.starts} incarnations`)
}

t.test('chaos over quic: 100,000 down + 20,000 up through SIGKILLs of hub and edge and link cuts', t =>
  chaos(t, { transport: 'quic', down: 100_000, up: 20_000, seed: Number(process.env.CHAOS_SEED ?? 4), minEvents: 15 }))

t.test('chaos over ws: 10,000 down + 2,000 up', t =>
  chaos(t, { transport: 'ws', down: 10_000, up: 2_000, seed: Number(process.env.CHAOS_SEED ?? 5), minEvents: 9 }))
