/**
 * Model-based property test: random sequences of append / ack / expire /
 * reject / commitInbound (and, for LMDB, close + reopen) run against
 * MemoryStore, LmdbStore and a deliberately naive model written here from
 * the contract (arrays and linear scans, not the shared store-logic.ts).
 * After every step all three must agree on the step's result and on every
 * observable: pending records, stats, dead letters, peers, receivedSeq and
 * resources. Dead-letter `reason` texts are compared between the two stores
 * only.
 */
import t from 'tap'
import fc from 'fast-check'
import { deepStrictEqual } from 'node:assert'
import { mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { LmdbStore } from '../../src/reliable/lmdb-store.js'
import { MemoryStore } from '../../src/reliable/memory-store.js'
import { DEAD_BODY_MAX } from '../../src/reliable/store.js'
import type { AppendOutcome, DeadLetter, InboundItem, OutboxInput, OutboxRecord, QuotaPolicy, ReliableStore, ResourceRecord } from '../../src/reliable/store.js'

const WINDOW = 3
const MAX_DEAD = 12
const PEERS = ['p', 'q'] as const

// ---- the naive model ------------------------------------------------------------

function cmpVersion (a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) { const x = BigInt(a); const y = BigInt(b); return x < y ? -1 : x > y ? 1 : 0 }
  return a < b ? -1 : a > b ? 1 : 0
}
function replaces (v: string | undefined, op: string | undefined, cv: string | undefined, cop: string | undefined): boolean {
  if (v === undefined || cv === undefined) return true
  const c = cmpVersion(v, cv)
  return c !== 0 ? c > 0 : op === 'delete' && cop !== 'delete'
}

class Model {
  last = new Map<string, number>()
  recs = new Map<string, OutboxRecord[]>()
  dead: DeadLetter[] = []
  inbox = new Map<string, { r: number, ids: string[] }>()
  res = new Map<string, ResourceRecord>()

  list (peer: string): OutboxRecord[] {
    let l = this.recs.get(peer)
    if (l === undefined) { l = []; this.recs.set(peer, l) }
    return l
  }

  kill (peer: string, r: OutboxRecord, code: string, at: number): void {
    const l = this.list(peer)
    l.splice(l.indexOf(r), 1)
    this.dead.push({ peer, seq: r.seq, id: r.id, ...(r.key === undefined ? {} : { key: r.key }), code, reason: '', at, size: r.bytes.byteLength, ...(r.bytes.byteLength <= DEAD_BODY_MAX ? { requeueable: true } : {}) })
    if (this.dead.length > MAX_DEAD) this.dead.shift()
  }

  append (peer: string, items: OutboxInput[], q: QuotaPolicy, now: number): AppendOutcome[] {
    return items.map(item => {
      const l = this.list(peer)
      const size = item.bytes.byteLength
      if (size > q.maxBytes) return { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: '' }
      const old = item.key === undefined ? undefined : l.find(r => r.key === item.key)
      if (old !== undefined && !replaces(item.version, item.op, old.version, old.op)) return { status: 'stale', pendingVersion: old.version }
      const bytes = (xs: OutboxRecord[]): number => xs.reduce((n, r) => n + r.bytes.byteLength, 0)
      const rest = l.filter(r => r !== old)
      if ((rest.length + 1 > q.maxMessages || bytes(rest) + size > q.maxBytes) && q.overflow === 'reject') return { status: 'rejected', code: 'EF_QUOTA_EXCEEDED', reason: '' }
      const superseded: number[] = []
      const dropped: number[] = []
      if (old !== undefined) { this.kill(peer, old, 'EF_SUPERSEDED', now); superseded.push(old.seq) }
      while (l.length + 1 > q.maxMessages || bytes(l) + size > q.maxBytes) {
        const o = l[0] as OutboxRecord
        this.kill(peer, o, 'EF_QUOTA_DROPPED', now)
        dropped.push(o.seq)
      }
      const seq = (this.last.get(peer) ?? 0) + 1
      this.last.set(peer, seq)
      l.push({ ...item, seq, enqueuedAt: now, rejections: 0 })
      return { status: 'queued', seq, superseded, dropped }
    })
  }

  ack (peer: string, upto: number): number {
    const l = this.list(peer)
    const keep = l.filter(r => r.seq > upto)
    this.recs.set(peer, keep)
    return l.length - keep.length
  }

  expire (peer: string, now: number): OutboxRecord[] {
    const due = this.list(peer).filter(r => r.expiresAt !== undefined && r.expiresAt <= now)
    // Dead letters are written in expiry order (then seq); the result is in seq order.
    for (const r of [...due].sort((a, b) => (a.expiresAt as number) - (b.expiresAt as number) || a.seq - b.seq)) this.kill(peer, r, 'EF_TTL_EXPIRED', now)
    return due
  }

  reject (peer: string, seq: number, max: number, now: number): number {
    const r = this.list(peer).find(x => x.seq === seq)
    if (r === undefined) return -1
    r.rejections++
    if (r.rejections >= max) { this.kill(peer, r, 'EF_REJECTED_BY_PEER', now); return -1 }
    return r.rejections
  }

  commit (peer: string, items: InboundItem[], now: number): string[] {
    let st = this.inbox.get(peer)
    if (st === undefined) { st = { r: 0, ids: [] }; this.inbox.set(peer, st) }
    const base = st.r
    const out = items.map(it => {
      if (it.seq <= base || st.ids.includes(it.id)) return 'duplicate'
      if (it.key !== undefined) {
        const cur = this.res.get(it.key)
        if (cur !== undefined && !replaces(it.version, it.op, cur.version, cur.deleted ? 'delete' : cur.op)) return 'stale'
        const del = it.op === 'delete'
        this.res.set(it.key, { key: it.key, version: it.version, op: it.op, bytes: del ? undefined : it.bytes, deleted: del, updatedAt: now })
      }
      st.ids.push(it.id)
      if (st.ids.length > WINDOW) st.ids.shift()
      return 'new'
    })
    st.r = Math.max(base, ...items.map(i => i.seq))
    return out
  }
}

// ---- commands -------------------------------------------------------------------

const hex = (u: Uint8Array | undefined): string | undefined => u === undefined ? undefined : Buffer.from(u).toString('hex')
const recView = (rs: OutboxRecord[]): unknown[] => rs.map(r => ({ ...r, bytes: hex(r.bytes) }))
const noReason = (o: AppendOutcome): AppendOutcome => o.status === 'rejected' ? { ...o, reason: '' } : o

const peer = fc.constantFrom(...PEERS)
const version = fc.option(fc.oneof(fc.integer({ min: 1, max: 12 }).map(String), fc.constantFrom('007', 'a', 'b')), { nil: undefined })
const outItem = fc.record({
  bytes: fc.integer({ min: 0, max: 6 }).map(n => new Uint8Array(n).fill(n)),
  key: fc.option(fc.constantFrom('k1', 'k2', 'k3'), { nil: undefined }),
  version,
  op: fc.option(fc.constantFrom('update', 'delete'), { nil: undefined }),
  ttl: fc.option(fc.integer({ min: -2, max: 12 }), { nil: undefined })
})
const quota = fc.record({ maxMessages: fc.integer({ min: 1, max: 6 }), maxBytes: fc.integer({ min: 1, max: 24 }), overflow: fc.constantFrom('reject' as const, 'drop-oldest' as const) })
const inItem = fc.record({
  seq: fc.integer({ min: 1, max: 20 }),
  id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'),
  key: fc.option(fc.constantFrom('r1', 'r2'), { nil: undefined }),
  version,
  op: fc.option(fc.constantFrom('update', 'delete'), { nil: undefined })
})

type Cmd =
  | { c: 'append', peer: string, items: Array<{ bytes: Uint8Array, key?: string | undefined, version?: string | undefined, op?: string | undefined, ttl?: number | undefined }>, quota: QuotaPolicy }
  | { c: 'ack', peer: string, delta: number }
  | { c: 'expire', peer: string }
  | { c: 'reject', peer: string, pick: number, max: number }
  | { c: 'inbound', peer: string, items: Array<{ seq: number, id: string, key?: string | undefined, version?: string | undefined, op?: string | undefined }> }
  | { c: 'tick', ms: number }
  | { c: 'reopen' }

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ c: fc.constant('append' as const), peer, items: fc.array(outItem, { minLength: 1, maxLength: 4 }), quota }) },
  { weight: 2, arbitrary: fc.record({ c: fc.constant('ack' as const), peer, delta: fc.integer({ min: -3, max: 2 }) }) },
  { weight: 2, arbitrary: fc.record({ c: fc.constant('expire' as const), peer }) },
  { weight: 2, arbitrary: fc.record({ c: fc.constant('reject' as const), peer, pick: fc.nat(5), max: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ c: fc.constant('inbound' as const), peer, items: fc.array(inItem, { minLength: 0, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ c: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.constant({ c: 'reopen' as const }) }
)

function clean<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

function observe (s: ReliableStore): unknown {
  return {
    pending: PEERS.map(p => recView(s.pending(p, 0, Infinity))),
    stats: PEERS.map(p => s.outboxStats(p)),
    peers: s.peersWithPending(),
    dead: s.deadLetters(),
    received: PEERS.map(p => s.receivedSeq(p)),
    resources: s.listResources().map(r => ({ ...r, bytes: hex(r.bytes) }))
  }
}

function observeModel (m: Model): unknown {
  return {
    pending: PEERS.map(p => recView(m.list(p))),
    stats: PEERS.map(p => {
      const l = m.list(p)
      return { count: l.length, bytes: l.reduce((n, r) => n + r.bytes.byteLength, 0), firstSeq: l[0]?.seq ?? 0, lastSeq: m.last.get(p) ?? 0 }
    }),
    peers: PEERS.filter(p => m.list(p).length > 0),
    dead: [...m.dead].reverse(),
    received: PEERS.map(p => m.inbox.get(p)?.r ?? 0),
    resources: [...m.res.values()].sort((a, b) => a.key < b.key ? -1 : 1).map(r => ({ ...r, bytes: hex(r.bytes) }))
  }
}

const noReasons = (o: unknown): unknown => ({ ...(o as object), dead: ((o as { dead: DeadLetter[] }).dead).map(d => ({ ...d, reason: '' })) })

t.test('MemoryStore, LmdbStore and the naive model agree on random operation sequences', async t => {
  const base = t.testdir()
  let runs = 0
  await fc.assert(fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 30 }), async cmds => {
    const dir = mkdtempSync(join(base, 'run-'))
    const opts = { dedupWindow: WINDOW, maxDeadLetters: MAX_DEAD }
    const mem = new MemoryStore(opts)
    let lm = await LmdbStore.open(dir, { ...opts, durability: 'relaxed' })
    const model = new Model()
    let now = 1000
    let ids = 0
    runs++
    try {
      for (const [i, c] of cmds.entries()) {
        const at = `step ${i} ${JSON.stringify(c, (_k, v: unknown) => v instanceof Uint8Array ? hex(v) : v)}`
        let results: unknown[]
        if (c.c === 'append') {
          const items: OutboxInput[] = c.items.map(it => clean({ id: `m${ids++}`, bytes: it.bytes, key: it.key, version: it.version, op: it.op, expiresAt: it.ttl === undefined ? undefined : now + it.ttl }))
          results = [
            (await mem.append(c.peer, items, c.quota, now)).map(noReason),
            (await lm.append(c.peer, items, c.quota, now)).map(noReason),
            model.append(c.peer, items, c.quota, now).map(noReason)
          ]
        } else if (c.c === 'ack') {
          const upto = (model.last.get(c.peer) ?? 0) + c.delta
          results = [await mem.ack(c.peer, upto), await lm.ack(c.peer, upto), model.ack(c.peer, upto)]
        } else if (c.c === 'expire') {
          results = [recView(await mem.expire(c.peer, now)), recView(await lm.expire(c.peer, now)), recView(model.expire(c.peer, now))]
        } else if (c.c === 'reject') {
          const l = model.list(c.peer)
          const seq = l.length === 0 ? c.pick : (l[c.pick % l.length] as OutboxRecord).seq
          results = [await mem.reject(c.peer, seq, c.max, 'E', 'no', now), await lm.reject(c.peer, seq, c.max, 'E', 'no', now), model.reject(c.peer, seq, c.max, now)]
        } else if (c.c === 'inbound') {
          const items: InboundItem[] = c.items.map(it => clean({ ...it, bytes: it.op === 'delete' ? undefined : new Uint8Array([it.seq]) }))
          results = [(await mem.commitInbound(c.peer, items, now)).outcome, (await lm.commitInbound(c.peer, items, now)).outcome, model.commit(c.peer, items, now)]
        } else if (c.c === 'tick') {
          now += c.ms
          continue
        } else {
          await lm.close()
          lm = await LmdbStore.open(dir, { ...opts, durability: 'relaxed' })
          continue
        }
        deepStrictEqual(results[1], results[0], `${at}: LmdbStore result differs from MemoryStore`)
        deepStrictEqual(results[2], results[0], `${at}: model result differs from MemoryStore`)
        const om = observe(mem)
        deepStrictEqual(observe(lm), om, `${at}: LmdbStore state differs from MemoryStore`)
        deepStrictEqual(observeModel(model), noReasons(om), `${at}: model state differs from MemoryStore`)
      }
    } finally {
      await lm.close()
      await mem.close()
    }
  }), { numRuns: Number(process.env.STORE_MODEL_RUNS ?? 60) })
  t.ok(runs > 0, `${runs} random sequences agreed`)
})
