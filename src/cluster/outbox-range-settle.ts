/**
 * The fast way to remove a node's acknowledged messages: prove, by reading the stream LEADER,
 * that everything it stores for the node up to the last acknowledged message is a message this
 * hub's reader took and the edge acknowledged, then remove them all with ONE purge
 * `{filter: <prefix>.down.<node>.>, seq: last + 1}` — or, when the stream holds so many subjects
 * that the purge's per-subject match costs more (manySubjects), by deleting the proven seqs.
 *
 * Why: removal by message (outbox-purge.ts) costs a leader read and a delete per message, and
 * each delete is a Raft proposal on every replica — in bench/cluster that was ≈ 25 µs of hub CPU
 * and ≈ 38 µs of NATS CPU per delivered message, a quarter of the path. The read stays (it is what
 * makes the removal safe); the deletes become one purge per ack (or stay deletes, without their
 * reads, when the stream holds many subjects).
 *
 * Why this is as safe as the per-message path:
 *  - The proof covers EVERY message the leader holds for the node up to `last`, not only those
 *    the reader took: the reads are `next_by_subj` from 1 (or just above a point already shown to
 *    be clean under the same leader) and from just after each taken seq, so a
 *    message the reader never took (skipped, numbered differently by a diverged replica, stored
 *    below the session's resume point) is returned by one of them and fails the proof (the
 *    argument is in verifyChain). Any surprise sends the ack down the per-message path, which
 *    publishes such messages again (rescueBelow).
 *  - The reads are pipelined (VERIFY_CONCURRENCY), so the window between the proof and the purge
 *    is a few round trips — the per-message path has the same window between its read and its
 *    delete. A leader change inside it is the one case neither path can rule out; the purge's
 *    count is compared with what was proven and a difference is logged as a warning.
 *  - The 2.9.10 consumer bug (outbox-purge.ts): a filtered purge moves every consumer whose filter
 *    covers the purge filter to the first message left on it. With the node's whole filter that
 *    is the node's first message above `last`; the node's reader has already read past `last`
 *    (it took every message up to it), so it moves over nothing it has not read.
 */
import type { StoredMsg } from '@nats-io/jetstream'
import type { ClusterConnection } from './connection.js'
import type { TakenEntry } from './outbox-mirror.js'
import { deleteSeq, nextOnLeader } from './outbox-purge.js'
import { eachLimit } from '../util/each-limit.js'
import { H } from './subjects.js'
import { trace, tracing } from './trace.js'

/** Leader reads in flight while proving a range. */
export const VERIFY_CONCURRENCY = 64
/** Entries proven and purged at once: bounds the window between proof and purge. */
export const RANGE_CHUNK = 1024

export type RangeOutcome =
  /** `last`: the highest seq purged; the leader held nothing for the node at or below it. */
  | { ok: true, purged: number, proven: number, last: number }
  | { ok: false, reason: string }

/**
 * Prove that the leader holds nothing for the node at or below `chunk[last].seq` but entries of
 * `all`, and nothing unproven at or below `upto`.
 *
 * The reads start at `from` (1, or just above a known-clean point) and at each chunk entry's seq + 1. Every leader message x ≤ last is the
 * answer to one of them: take the largest start s ≤ x; its answer y is the first message ≥ s, so
 * y ≤ x; if y < x, y must be an entry (or the proof fails), and then y + 1 is a later start ≤ x —
 * a contradiction. So y = x, and x was checked.
 */
export async function verifyChain (c: ClusterConnection, node: string, chunk: readonly TakenEntry[], all: ReadonlyMap<number, TakenEntry>, upto: number, from = 1): Promise<{ ok: true, seen: number[] } | { ok: false, reason: string }> {
  const filter = c.names.down(node)
  const starts = [from, ...chunk.map(e => e.seq + 1)]
  const last = (chunk[chunk.length - 1] as TakenEntry).seq
  const seen = new Set<number>()
  let failure: string | undefined
  const judge = (start: number, m: StoredMsg | null): void => {
    if (m === null || m.seq > upto) return
    const e = all.get(m.seq)
    const id = m.header?.get(H.id) || ''
    if (e === undefined) { failure ??= `seq ${m.seq} (read from ${start}) is not a message this reader took`; return }
    if (e.subject !== m.subject || e.id !== id) { failure ??= `seq ${m.seq} holds ${m.subject} ${id} on the leader, the reader took ${e.subject} ${e.id}`; return }
    if (m.seq <= last) seen.add(m.seq)
  }
  await eachLimit(starts, VERIFY_CONCURRENCY, async start => { judge(start, await nextOnLeader(c, 'proving an acknowledged range', filter, start)) }, () => failure !== undefined)
  if (failure !== undefined) return { ok: false, reason: failure }
  return { ok: true, seen: [...seen] }
}

/**
 * Settle (from, upto] for the node with range purges, if the leader proves it safe. `taken` are
 * the entries the reader took there, ascending. Returns ok: false (and removes nothing) when the
 * leader shows anything else; the caller then takes the per-message path.
 *
 * `clean`: a seq at or below which the leader is already known to hold nothing for the node (an
 * earlier range purge up to it, under the same leader: ClusterStore keeps it per node and drops it
 * when ClusterConnection.leaderEpoch moves). The proof then starts above it instead of at seq 1,
 * where the server's `next_by_subj` would walk every other node's stored messages first.
 */
export async function settleRange (c: ClusterConnection, node: string, taken: readonly TakenEntry[], upto: number, clean = 0): Promise<RangeOutcome> {
  if (taken.length === 0) return { ok: false, reason: 'nothing taken' }
  const all = new Map<number, TakenEntry>()
  for (const e of taken) all.set(e.seq, e)
  let purged = 0
  let proven = 0
  let from = clean + 1
  let last = 0
  for (let i = 0; i < taken.length; i += RANGE_CHUNK) {
    const chunk = taken.slice(i, i + RANGE_CHUNK)
    const v = await verifyChain(c, node, chunk, all, upto, from)
    if (!v.ok) {
      if (tracing) trace({ k: 'range-refused', peer: node, upto, reason: v.reason })
      return purged === 0 ? v : { ok: false, reason: `${v.reason} (after ${purged} purged)` }
    }
    const present = v.seen.length
    last = (chunk[chunk.length - 1] as TakenEntry).seq
    from = last + 1
    if (await manySubjects(c, chunk.length)) {
      // A filtered purge costs the server a match against every subject the stream holds
      // (2.9.10 filestore PurgeEx → filteredPendingLocked per block): with a large backlog for
      // other nodes that is dearer than deleting the proven messages one by one (bench/cluster
      // --backlog 200000: 3.7k msg/s with purges vs 6.5k with deletes). Each delete names a seq
      // the leader has just shown holding the message the edge acknowledged.
      await eachLimit(v.seen, DELETE_CONCURRENCY, async seq => { await deleteSeq(c, seq) })
      if (tracing) trace({ k: 'range-delete', peer: node, upto, last, present })
      purged += present
      proven += present
      continue
    }
    const r = await c.call('removing acknowledged messages', async () => await c.jsm.streams.purge(c.names.streamDown, { filter: c.names.down(node), seq: last + 1 }))
    if (tracing) trace({ k: 'range-purge', peer: node, upto, last, present, purged: r.purged })
    if (r.purged > present) {
      // Seen once in a full-size chaos run, harmlessly: the reader (a consumer on a follower) took
      // a message before the leader had applied it, so the proof did not see it and the purge
      // removed it — a message the edge had acknowledged. The harmful cause would be a leader
      // change between the proof and the purge onto a replica numbered differently (module
      // comment); nothing here can tell the two apart afterwards, so it is logged.
      if (tracing) trace({ k: 'range-purge-more', peer: node, last, proven: present, purged: r.purged })
      c.logger.warn({ node, last, proven: present, purged: r.purged }, 'a range purge removed more messages than the stream leader had just shown for the range (a message applied on a follower before the leader, or a leader change)')
    }
    purged += r.purged
    proven += present
  }
  return { ok: true, purged, proven, last }
}

/** Deletes in flight when proven messages are removed one by one. */
const DELETE_CONCURRENCY = 32

/**
 * Whether the stream holds so many subjects that a filtered purge (a match per subject) costs more
 * than `n` deletes (≈ 256 subject matches per delete: an estimate, not measured; the two regimes
 * are in bench/RESULTS.md, `--backlog`). The
 * count comes from STREAM.INFO (`num_subjects`, O(1) on the server), at most once a second.
 */
export const SUBJECTS_PER_DELETE = 256
const subjectCounts = new WeakMap<ClusterConnection, { n: number, at: number }>()

async function manySubjects (c: ClusterConnection, n: number): Promise<boolean> {
  let k = subjectCounts.get(c)
  if (k === undefined || Date.now() - k.at > 1000) {
    const info = await c.call('reading the outbox stream\'s size', async () => await c.jsm.streams.info(c.names.streamDown))
    k = { n: info.state.num_subjects ?? 0, at: Date.now() }
    subjectCounts.set(c, k)
  }
  return k.n > SUBJECTS_PER_DELETE * n
}
