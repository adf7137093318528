/**
 * The removals an edge's acknowledgement calls for in cluster mode (src/cluster/outbox-purge.ts
 * planSettle). Regression for the full-size chaos run's loss: the ack used to purge the node's
 * subjects by SEQ RANGE, and on a leader whose numbering had diverged from the reader's replica
 * that range held messages the edge was never sent. Every removal must now name its message:
 * its own subject, a resource's version, or a seq checked against the id.
 */
import t from 'tap'
import { outboxPrefixes, planSettle } from '../../src/cluster/outbox-purge.js'
import type { TakenEntry } from '../../src/cluster/outbox-mirror.js'
import { Names } from '../../src/cluster/subjects.js'

const names = new Names('test')
const node = 'edge.1' // a '.' in a node name is '_' in subject tokens
const p = outboxPrefixes(names.prefix, node)
const msg = (seq: number, id: string): TakenEntry => ({ seq, id, subject: names.downMessage(node, id) })
const res = (seq: number, key: string, version: string, op?: string): TakenEntry => ({ seq, id: `v${version}${op ?? ''}`, subject: names.downResource(node, key), key, version, ...(op === undefined ? {} : { op }) })

t.test('prefixes name only this node\'s subjects', async t => {
  t.equal(p.m, 'ef.test.down.edge_1.m.')
  t.equal(p.r, 'ef.test.down.edge_1.r.')
  t.ok(names.downMessage(node, 'x').startsWith(p.m))
  t.ok(names.downResource(node, 'k').startsWith(p.r))
})

t.test('no item removes a range: each unversioned message by its seq, checked against its id and subject', async t => {
  // Not a purge of its own subject either: nats-server 2.9.10 then moves the node's reader past
  // every message it has not read yet (outbox-purge.ts).
  t.same(planSettle([msg(3, 'a'), msg(9, 'b')], p), [
    { kind: 'seq', seq: 3, id: 'a', subject: names.downMessage(node, 'a') },
    { kind: 'seq', seq: 9, id: 'b', subject: names.downMessage(node, 'b') }
  ])
})

t.test('a resource: one item, the newest version taken (not the latest seq)', async t => {
  const items = planSettle([res(4, 'cm', '7'), res(5, 'cm', '9'), res(6, 'cm', '8'), res(7, 'other', '1')], p)
  t.same(items, [
    { kind: 'resource', subject: names.downResource(node, 'cm'), id: 'v9', version: '9' },
    { kind: 'resource', subject: names.downResource(node, 'other'), id: 'v1', version: '1' }
  ])
})

t.test('a delete of a version outranks an update of it', async t => {
  const items = planSettle([res(4, 'cm', '9', 'delete'), res(5, 'cm', '9')], p)
  t.same(items, [{ kind: 'resource', subject: names.downResource(node, 'cm'), id: 'v9delete', version: '9', op: 'delete' }])
})

t.test('malformed messages and foreign subjects: by seq, checked against id and subject', async t => {
  const bad: TakenEntry = { seq: 11, id: '', subject: names.downMessage(node, 'junk') }
  const deeper: TakenEntry = { seq: 12, id: 'x', subject: `${p.m}a.b` } // not one token: not "its own subject"
  const otherNode: TakenEntry = { seq: 13, id: 'y', subject: names.downMessage('edge-2', 'y') }
  const unkeyedOnR: TakenEntry = { seq: 14, id: 'z', subject: names.downResource(node, 'k') }
  t.same(planSettle([bad, deeper, otherNode, unkeyedOnR], p), [
    { kind: 'seq', seq: 11, id: '', subject: bad.subject },
    { kind: 'seq', seq: 12, id: 'x', subject: deeper.subject },
    { kind: 'seq', seq: 13, id: 'y', subject: otherNode.subject },
    { kind: 'seq', seq: 14, id: 'z', subject: unkeyedOnR.subject }
  ])
})
