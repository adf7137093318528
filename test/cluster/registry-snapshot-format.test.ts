/**
 * Registry snapshot options and encoding (src/cluster/registry-snapshot.ts), no NATS:
 * options validated once with the option named, then frozen; the bytes of a
 * snapshot depend on the view only (not on the order a hub's history inserted
 * keys), so two hubs writing the same seq write identical chunks; what a later
 * verdict cannot look at (commits and pieces at or below S - MAX_LAG) is left out.
 */
import t from 'tap'
import { isEdgeFabricError } from '../../src/errors.js'
import type { DbName } from '../../src/device/cloud/registry-store.js'
import { captureState, decodeState, encodeState, resolveSnapshotOptions } from '../../src/cluster/registry-snapshot.js'
import { MAX_LAG } from '../../src/cluster/registry-verdict.js'

/** The error `fn` throws (undefined when it does not throw). */
function thrown (fn: () => unknown): unknown {
  try { fn() } catch (err) { return err }
  return undefined
}

t.test('options: defaults, validation naming the option, frozen', async t => {
  const o = resolveSnapshotOptions()
  t.same(o, { snapshotEvery: 10_000, chunkBytes: 256 * 1024 })
  t.ok(Object.isFrozen(o))
  t.equal(resolveSnapshotOptions({ snapshotEvery: 0 }).snapshotEvery, 0, '0 turns compaction off')
  for (const bad of [1, -5, 2.5, Number.NaN]) {
    const e = thrown(() => resolveSnapshotOptions({ snapshotEvery: bad }))
    t.ok(isEdgeFabricError(e, 'EF_INVALID_OPTION') && /registry\.snapshotEvery/.test(e.message), `snapshotEvery ${bad}: ${String(e)}`)
  }
  const e = thrown(() => resolveSnapshotOptions({ chunkBytes: 10 }))
  t.ok(isEdgeFabricError(e, 'EF_INVALID_OPTION') && /registry\.chunkBytes/.test(e.message), `chunkBytes 10: ${String(e)}`)
})

t.test('the same view gives the same bytes, whatever the insertion order; decode gives it back', async t => {
  const S = 10_000
  const view = (order: Array<[string | number, unknown]>): Map<DbName, Map<string | number, unknown>> =>
    new Map<DbName, Map<string | number, unknown>>([['devices', new Map(order)], ['uploads', new Map([[2, 'b'], [1, 'a']])], ['meta', new Map()]])
  const entries: Array<[string | number, unknown]> = [['b', { x: 1 }], ['a', [1, 2]], ['c', null]]
  const recent = [{ seq: S - MAX_LAG, op: 'old', keys: ['k0'] }, { seq: S - 5, op: 'o1', keys: ['k1'] }, { seq: S, op: 'o2', keys: ['k2'] }]
  const parts = new Map<number, Uint8Array>([[S - MAX_LAG - 1, Uint8Array.of(9)], [S - 3, Uint8Array.of(1, 2)]])
  const one = encodeState(captureState(S, view(entries), recent, parts))
  const two = encodeState(captureState(S, view([...entries].reverse()), recent, parts))
  t.same(Buffer.from(two), Buffer.from(one), 'identical bytes')
  const back = decodeState(one, S)
  t.same(back.recent.map(c => c.op), ['o1', 'o2'], 'commits a later verdict can look at (seq > S - MAX_LAG), no older')
  t.same(back.parts.map(([s]) => s), [S - 3], 'pieces likewise')
  t.same(new Map(back.dbs.find(([n]) => n === 'devices')?.[1]), new Map(entries))
  t.same(back.dbs.find(([n]) => n === 'uploads')?.[1], [[1, 'a'], [2, 'b']], 'number keys kept as numbers')
  t.ok(isEdgeFabricError(thrown(() => decodeState(one, S + 1)), 'EF_REGISTRY_SNAPSHOT'), 'a body whose seq is not its manifest\'s is refused')
})
