/**
 * Idempotent producers (issue 12, "Nothing is lost without a trace"): a
 * producer that retries a reliable send with the same envelope id — after a
 * hub crash, typically — gets it delivered once, not twice.
 *
 *  - unit: the sender's producer window answers `duplicate` (same seq) for a
 *    retried id, also while the first append is still running and after a
 *    reopen of the store; it forgets ids after `windowMs` and beyond `maxIds`;
 *  - unit: the receiver drops a retried id (new seq) BEFORE the application
 *    sees it — regression: it used to find the duplicate only at commit time,
 *    after delivering it;
 *  - processes: a hub SIGKILLed after the first copy was durable, restarted,
 *    the producer retries; the edge application sees the message once, both
 *    when the first copy was still pending and when it had been delivered.
 */
import t from 'tap'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { defaultCodec } from '../../src/codec/codec.js'
import { newMessage, type Envelope } from '../../src/codec/envelope.js'
import { EdgeNode } from '../../src/edge/edge-node.js'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { ReliableReceiver } from '../../src/reliable/receiver.js'
import { ReliableSender, type LaneEvent } from '../../src/reliable/sender.js'
import { ManualClock, systemClock } from '../../src/util/clock.js'
import { freePort } from './chaos-procs.js'
import { testdir } from '../testdir.js'

t.setTimeout(120_000)
const BIG = { maxMessages: 1_000_000, maxBytes: 1 << 30, overflow: 'reject' as const }

const msg = (id: string, i: number): Envelope => {
  const env = newMessage({ source: 'cloud', group: 'app', operation: 'update', resource: `r/${i}`, content: { i } })
  env.header.id = id
  return env
}

t.test('sender: a retried id is a duplicate of the first append, within the window only', async t => {
  const dir = testdir(t)
  const clock = new ManualClock(1_000_000)
  let store = await LmdbStore.open(dir, { durability: 'relaxed' })
  t.teardown(() => store.close())
  const events: LaneEvent[] = []
  const sender = (): ReliableSender => new ReliableSender({
    peer: 'n1', source: 'cloud', store, clock, codec: defaultCodec, quota: BIG,
    producerWindow: { maxIds: 3, windowMs: 60_000 }, onEvent: e => events.push(e)
  })
  let s = sender()
  const [a, a2] = await Promise.all([s.enqueue(msg('A', 1)), s.enqueue(msg('A', 1))])
  t.match(a, { status: 'queued', seq: 1 })
  t.same(a2, { status: 'duplicate', seq: 1 }, 'a retry while the first append runs waits for it')
  t.same(await s.enqueue(msg('A', 1)), { status: 'duplicate', seq: 1 }, 'a later retry')
  t.equal(store.outboxStats('n1').count, 1, 'queued once')
  t.equal(events.filter(e => e.type === 'duplicate').length, 2, 'each duplicate is an event (counted by the hub)')

  // Reopen: the window is seeded from the pending outbox.
  s.close()
  await store.close()
  store = await LmdbStore.open(dir, { durability: 'relaxed' })
  s = sender()
  t.same(await s.enqueue(msg('A', 1)), { status: 'duplicate', seq: 1 }, 'after a restart, from the pending record')

  // Count bound: three newer ids push A out.
  for (const id of ['B', 'C', 'D']) t.match(await s.enqueue(msg(id, 2)), { status: 'queued' })
  t.match(await s.enqueue(msg('A', 1)), { status: 'queued', seq: 5 }, 'beyond maxIds the id is new again')
  // Time bound.
  t.same(await s.enqueue(msg('D', 2)), { status: 'duplicate', seq: 4 })
  clock.advance(60_001)
  t.match(await s.enqueue(msg('D', 2)), { status: 'queued', seq: 6 }, 'after windowMs the id is new again')

  const off = new ReliableSender({ peer: 'n2', source: 'cloud', store, clock, codec: defaultCodec, quota: BIG, producerWindow: { maxIds: 0 } })
  t.teardown(() => off.close())
  t.match(await off.enqueue(msg('Z', 1)), { status: 'queued', seq: 1 })
  t.match(await off.enqueue(msg('Z', 1)), { status: 'queued', seq: 2 }, 'maxIds 0 turns producer dedup off')
  s.close()
})

t.test('receiver: a retried id on a new seq is dropped before delivery (regression: it was delivered, then found at commit)', async t => {
  for (const kind of ['memory', 'lmdb'] as const) {
    const store = kind === 'memory' ? new MemoryStore() : await LmdbStore.open(testdir(t), { durability: 'relaxed' })
    t.teardown(() => store.close())
    const delivered: string[] = []
    const counts: Record<string, number> = {}
    const acks: number[] = []
    const r = new ReliableReceiver({
      peer: 'cloud', source: 'edge', store, clock: systemClock, codec: defaultCodec,
      deliver: env => { delivered.push(env.header.id); return 'ok' },
      sendControl: env => { if (env.router.operation === 'ack') acks.push((env.content as { u: number }).u) },
      onCount: (what, n) => { counts[what] = (counts[what] ?? 0) + n }
    })
    const enc = (id: string, i: number): Uint8Array => defaultCodec.encode(msg(id, i))
    r.onData({ s: [1, 2, 3], m: [enc('a', 1), enc('b', 2), enc('a', 1)] })
    await r.idle()
    r.onData({ s: [4, 5], m: [enc('b', 2), enc('c', 3)] })
    await r.idle()
    t.same(delivered, ['a', 'b', 'c'], `${kind}: each id reaches the application once`)
    t.equal(counts.duplicate, 2, `${kind}: both retries counted as duplicates`)
    t.equal(acks.at(-1), 5, `${kind}: and acknowledged`)
    t.equal(store.receivedSeq('cloud'), 5)
    t.equal(store.hasInboundId('cloud', 'c'), true)
    t.equal(store.hasInboundId('cloud', 'zz'), false)
    r.close()
  }
})

interface HubProc { child: ChildProcessWithoutNullStreams, next: (type: string) => Promise<Record<string, unknown>>, send: (cmd: object) => void }

function startHub (cfg: object): HubProc {
  const fixture = fileURLToPath(new URL('../fixtures/idempotent-hub.mjs', import.meta.url))
  const child = spawn(process.execPath, [fixture, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] })
  child.stderr.on('data', () => {})
  const waiting: Array<{ type: string, resolve: (v: Record<string, unknown>) => void, reject: (e: Error) => void }> = []
  const seen: Array<Record<string, unknown>> = []
  createInterface({ input: child.stdout }).on('line', line => {
    const m = JSON.parse(line) as Record<string, unknown>
    const i = waiting.findIndex(w => w.type === m.type)
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(m)
    else seen.push(m)
  })
  child.once('exit', code => { for (const w of waiting.splice(0)) w.reject(new Error(`hub exited (${String(code)}) waiting for ${w.type}`)) })
  return {
    child,
    send: cmd => { child.stdin.write(JSON.stringify(cmd) + '\n') },
    next: async type => {
      const i = seen.findIndex(m => m.type === type)
      if (i >= 0) return seen.splice(i, 1)[0] as Record<string, unknown>
      return await new Promise((resolve, reject) => { waiting.push({ type, resolve, reject }) })
    }
  }
}

async function kill9 (h: HubProc): Promise<void> {
  if (h.child.exitCode !== null) return
  const gone = new Promise(resolve => h.child.once('exit', resolve))
  h.child.kill('SIGKILL')
  await gone
}

t.test('processes: a retry after a hub SIGKILL is delivered once (first copy pending, or already delivered)', async t => {
  const dir = testdir(t, {})
  const port = await freePort('tcp')
  const cfg = { listen: `wss://127.0.0.1:${port}`, dataDir: `${dir}/hub`, node: 'edge-1' }
  let hub = startHub(cfg)
  t.teardown(() => kill9(hub))
  const ready = await hub.next('ready')

  // 1. First copy pending (edge down): SIGKILL after it was durable, restart, retry.
  hub.send({ op: 'send', id: 'msg-pending', i: 1 })
  t.match(await hub.next('sent'), { id: 'msg-pending', outcome: { status: 'queued', seq: 1 } })
  await kill9(hub)
  hub = startHub(cfg)
  await hub.next('ready')
  hub.send({ op: 'send', id: 'msg-pending', i: 1 })
  t.match(await hub.next('sent'), { id: 'msg-pending', outcome: { status: 'duplicate', seq: 1 } }, 'the restarted hub finds the pending first copy')

  // The edge joins and receives it.
  const got: string[] = []
  const edge = await EdgeNode.start({
    hub: ready.url as string, nodeId: 'edge-1', token: ready.token as string, dataDir: `${dir}/edge`, admin: false,
    durability: 'sync', backoff: { baseMs: 50, capMs: 300 }, onReliable: env => { got.push(env.header.id) }
  })
  t.teardown(() => edge.close())
  const drained = async (): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      hub.send({ op: 'depth' })
      if ((await hub.next('depth')).n === 0) return
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error('outbox not drained')
  }
  await drained()

  // 2. First copy already delivered and acknowledged: SIGKILL, restart, retry. The hub cannot know
  //    (the record left its outbox); the edge's id window drops it before the application.
  hub.send({ op: 'send', id: 'msg-acked', i: 2 })
  t.match(await hub.next('sent'), { outcome: { status: 'queued', seq: 2 } })
  await drained()
  await kill9(hub)
  hub = startHub(cfg)
  await hub.next('ready')
  hub.send({ op: 'send', id: 'msg-acked', i: 2 })
  t.match(await hub.next('sent'), { outcome: { status: 'queued', seq: 3 } }, 'queued again: acknowledged ids are not kept at the hub')
  hub.send({ op: 'send', id: 'msg-after', i: 3 })
  t.match(await hub.next('sent'), { outcome: { status: 'queued', seq: 4 } })
  await drained()
  for (let i = 0; i < 100 && !got.includes('msg-after'); i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.same(got, ['msg-pending', 'msg-acked', 'msg-after'], 'each id reached the edge application exactly once')
})
