/**
 * Regression: "the newest version never reached the edge" (CI, test/cluster/
 * downstream-replica-divergence.test.ts). Two hubs racing on one resource can land
 * an older version at a later stream seq than a newer one (the subject retains
 * RESOURCE_HISTORY messages; the publishers delete the older one only after their
 * PubAck). The node's outbox reader kept "the later seq" per resource subject, so it
 * dropped the newer version and handed the edge the older one.
 *
 * The reader (OutboxMirror) is tested here against a scripted consumer: the NATS
 * consumer is a collaborator, the choice of record is what is under test.
 */
import t from 'tap'
import type { Consumer, JsMsg } from '@nats-io/jetstream'
import { OutboxMirror, type MirrorRecord } from '../../src/cluster/outbox-mirror.js'

interface Fake { seq: number, subject: string, key?: string, version?: string, op?: string }

function scriptedConsumer (msgs: Fake[]): Consumer {
  const it = {
    async * [Symbol.asyncIterator] () { for (const m of msgs) yield m as unknown as JsMsg; await new Promise(() => {}) },
    status: async function * () { await new Promise(() => {}) },
    close: async () => {}
  }
  return { consume: async () => it, info: async () => ({}) } as unknown as Consumer
}

function mirrorOf (msgs: Fake[]): Promise<OutboxMirror> {
  return new Promise(resolve => {
    const m: OutboxMirror = new OutboxMirror('edge-1', {
      maxRecords: 100,
      maxBytes: 1 << 20,
      toRecord: raw => {
        const f = raw as unknown as Fake
        const r: MirrorRecord = { subject: f.subject, seq: f.seq, id: `id-${f.seq}`, bytes: new Uint8Array(8), enqueuedAt: 0, rejections: 0 }
        if (f.key !== undefined) r.key = f.key
        if (f.version !== undefined) r.version = f.version
        if (f.op !== undefined) r.op = f.op
        return r
      },
      onRecords: () => { if (m.lastSeen === msgs[msgs.length - 1]?.seq) resolve(m) },
      onMalformed: () => {},
      onError: () => {}
    })
    m.start(async () => scriptedConsumer(msgs), 'ef.test.down.edge-1.>')
  })
}

const RES = 'ef.test.down.edge-1.r.cm'

t.test('an older version landing after a newer one is not what the edge gets', async t => {
  const m = await mirrorOf([
    { seq: 10, subject: RES, key: 'cm', version: '80' },
    { seq: 11, subject: RES, key: 'cm', version: '79' },
    { seq: 12, subject: 'ef.test.down.edge-1.m.x' }
  ])
  t.teardown(() => m.close())
  t.same(m.pending(0, 10).map(r => [r.seq, r.version]), [[10, '80'], [12, undefined]], 'v80 stays pending; v79 is never handed out')
  t.equal(m.count, 2)
  // What was taken, by message: the ack removes exactly these (outbox-purge.ts), never a seq range.
  t.same(m.takenIn(0, 20)?.map(x => x.id), ['id-10', 'id-11', 'id-12'], 'the ids taken, for the removal by message')
  t.same(m.takenIn(0, 20)?.map(x => [x.seq, x.subject, x.version]), [[10, RES, '80'], [11, RES, '79'], [12, 'ef.test.down.edge-1.m.x', undefined]], 'the skipped older version still counts as read (it is removed, not published again)')
})

t.test('a newer version at a later seq still replaces the pending one', async t => {
  const m = await mirrorOf([
    { seq: 5, subject: RES, key: 'cm', version: '1' },
    { seq: 6, subject: RES, key: 'cm', version: '2' },
    { seq: 7, subject: RES, key: 'cm', version: '2', op: 'delete' }
  ])
  t.teardown(() => m.close())
  t.same(m.pending(0, 10).map(r => [r.seq, r.version, r.op]), [[7, '2', 'delete']], 'the delete of v2 wins the tie, as in the LMDB store')
  t.equal(m.count, 1)
})

// Regression (found while adding the range removal, 2026-12-07): a message the reader takes at or
// below the acknowledged point (it lagged, or the ack went past it) was never sent, but it was
// kept as a taken entry; an ack settled later (ClusterStore.ack plans the next ack after awaiting
// the previous one) then removed it by id — the edge never had it. It must not be a taken entry.
t.test('a message taken at or below the acknowledged point is never a taken entry', async t => {
  const msgs: Fake[] = [{ seq: 10, subject: 'ef.test.down.edge-1.m.a' }, { seq: 11, subject: 'ef.test.down.edge-1.m.b' }, { seq: 12, subject: 'ef.test.down.edge-1.m.c' }]
  const m = await new Promise<OutboxMirror>(resolve => {
    const mm: OutboxMirror = new OutboxMirror('edge-1', {
      maxRecords: 100,
      maxBytes: 1 << 20,
      toRecord: raw => ({ subject: (raw as unknown as Fake).subject, seq: (raw as unknown as Fake).seq, id: `id-${(raw as unknown as Fake).seq}`, bytes: new Uint8Array(8), enqueuedAt: 0, rejections: 0 }),
      onRecords: () => { if (mm.lastSeen === 12) resolve(mm) },
      onMalformed: () => {},
      onError: () => {}
    })
    mm.ackUpTo(11)
    mm.start(async () => scriptedConsumer(msgs), 'ef.test.down.edge-1.>')
  })
  t.teardown(() => m.close())
  t.same(m.takenIn(0, 20)?.map(x => x.id), ['id-12'], 'only the message above the ack')
  t.same(m.pending(0, 10).map(r => r.seq), [12])
})
