/**
 * Removing a node's acknowledged messages from its JetStream outbox (ClusterStore.ack), by
 * MESSAGE, never by sequence range.
 *
 * Why not `purge {filter: down.<node>.>, seq: u + 1}` (what this did until 2026-12-07): the
 * edge's cumulative ack `u` is a stream sequence number as the hub's outbox reader saw it, and
 * the reader is an R1 consumer on whichever server NATS placed it. Under the chaos runs'
 * SIGKILLs, replicas of Debian's nats-server 2.9.10 diverge: a server held at seq N the
 * message the leader held at N + 9 (README "Cluster mode"), and a leader elected among such
 * servers numbers new messages below sequences already acknowledged elsewhere. A range purge
 * then removes whatever the CURRENT leader holds below u — messages the edge never saw
 * (the full-size chaos run lost 16–64 acknowledged messages that way, even with a per-seq id
 * check before the purge: the leader could change between the check and the purge, and the
 * range above what the reader had read was never checked).
 *
 * Now every removal names its message: a delete of one seq, sent only after the stream LEADER
 * showed the same envelope id on the same subject there (deleteIfSame), for the messages this
 * hub's reader took and the edge acknowledged — for a resource, its retained versions not newer
 * than the one the edge was sent. (The window between that read and the delete is a few ms, where
 * the range purge's was the whole check, up to a second.)
 * Why not purge by subject (each unversioned message has its own, `…down.<node>.m.<token>`)?
 * nats-server 2.9.10 moves every consumer whose filter covers a purged subject to the first
 * message left on THAT subject, or past the end of the stream when none is left
 * (stream.go purge → consumer.purge; fixed upstream in 2.9.12, 46af97987, Debian ships 2.9.10):
 * the node's outbox reader then skipped every message not yet read (bench/cluster: 904 of 5,000).
 * A delete by seq leaves consumers alone.
 * Then a scan of the leader (`next_by_subj`) finds whatever it still holds for the node at or
 * below u — a message the reader skipped, one numbered below u by a diverged leader, one stored
 * at or below the session's resume point that this hub never sent — and publishes it again (a
 * new, higher seq; same Ef-Id, so an edge that had it drops the copy) before removing the old
 * copy. Nothing is removed that the edge was not sent, whatever the replicas' numbering.
 * Cost: two JetStream requests per unversioned message (pipelined, PURGE_CONCURRENCY in flight),
 * a few per resource, plus one leader read per ack when nothing was skipped.
 */
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node'
import type { MsgRequest, StoredMsg } from '@nats-io/jetstream'
import { isNewer } from '../reliable/store-rules.js'
import type { ClusterConnection } from './connection.js'
import { RESOURCE_HISTORY } from './connection.js'
import type { TakenEntry } from './outbox-mirror.js'
import { H, nodeToken } from './subjects.js'
import { trace, tracing } from './trace.js'

/** Removal requests in flight per node while settling an ack. */
export const PURGE_CONCURRENCY = 32

/** One removal an ack calls for. */
export type SettleItem =
  /** A resource subject: delete its retained messages not newer than this version (or this id). */
  | { kind: 'resource', subject: string, id: string, version?: string, op?: string }
  /** Delete this seq if the leader holds this id on this subject there. */
  | { kind: 'seq', seq: number, id: string, subject: string }

/** Subject prefixes of one node's outbox: `m` (one message each) and `r` (one resource each). */
export function outboxPrefixes (prefix: string, node: string): { m: string, r: string } {
  const base = `${prefix}.down.${nodeToken(node)}`
  return { m: `${base}.m.`, r: `${base}.r.` }
}

function under (subject: string, p: string): boolean {
  return subject.startsWith(p) && subject.length > p.length && !subject.includes('.', p.length)
}

/**
 * What to remove for the messages the reader took (and the lane therefore sent, in seq order)
 * that the edge has now acknowledged. Pure: the unit tests pin it.
 */
export function planSettle (taken: readonly TakenEntry[], prefixes: { m: string, r: string }): SettleItem[] {
  const out: SettleItem[] = []
  const newest = new Map<string, TakenEntry>()
  for (const e of taken) {
    if (e.id !== '' && e.key !== undefined && under(e.subject, prefixes.r)) {
      // The newest version taken on the subject: the reader hands the lane one record per
      // subject, the newest (outbox-mirror.ts), so that is what the edge was sent.
      const cur = newest.get(e.subject)
      if (cur === undefined || isNewer(e.version, e.op, cur.version, cur.op) || (e.version === cur.version && e.op === cur.op)) newest.set(e.subject, e)
      continue
    }
    out.push({ kind: 'seq', seq: e.seq, id: e.id, subject: e.subject })
  }
  for (const e of newest.values()) {
    const it: SettleItem = { kind: 'resource', subject: e.subject, id: e.id }
    if (e.version !== undefined) it.version = e.version
    if (e.op !== undefined) it.op = e.op
    out.push(it)
  }
  return out
}

export interface RetainedMsg { seq: number, id: string, version: string | undefined, op: string | undefined }

function notFound (err: Error): boolean { return /no message found|not found/i.test(err.message) }

/**
 * The first message on `subject` (wildcards allowed) at or above `seq`, read from the stream LEADER
 * (STREAM.MSG.GET with next_by_subj, nats-server ≥ 2.9; the client's type lists it for direct gets
 * only, which any replica answers). null when there is none.
 */
export async function nextOnLeader (c: ClusterConnection, what: string, subject: string, seq: number): Promise<StoredMsg | null> {
  const m = await c.call(what, async () => await c.jsm.streams.getMessage(c.names.streamDown, { seq, next_by_subj: subject } as unknown as MsgRequest).catch((err: Error) => {
    if (notFound(err)) return null
    throw err
  }))
  return m ?? null
}

/** The messages a subject retains (≤ RESOURCE_HISTORY + 1 read), from the stream LEADER, oldest first. */
export async function readRetained (c: ClusterConnection, subject: string): Promise<RetainedMsg[]> {
  const out: RetainedMsg[] = []
  let from = 1
  for (let i = 0; i <= RESOURCE_HISTORY; i++) {
    const m = await nextOnLeader(c, 'reading a resource\'s versions', subject, from)
    if (m === null) break
    out.push({ seq: m.seq, id: m.header?.get(H.id) || '', version: m.header?.get(H.version) || undefined, op: m.header?.get(H.operation) || undefined })
    from = m.seq + 1
  }
  return out
}

/** Delete seq from the stream if the leader holds a message with this id (and subject) there. */
export async function deleteIfSame (c: ClusterConnection, seq: number, id: string, subject: string): Promise<boolean> {
  const n = c.names
  const m = await c.call('checking a message before removing it', async () => await c.jsm.streams.getMessage(n.streamDown, { seq }).catch((err: Error) => {
    if (notFound(err)) return null
    throw err
  }))
  if (m === null || m === undefined || m.subject !== subject || (m.header?.get(H.id) || '') !== id) return false
  if (tracing) trace({ k: 'delete-seq', seq, subject, id })
  return await deleteSeq(c, seq)
}

/** Delete seq from the stream, unchecked (the caller has just seen what the leader holds there); false if gone. */
export async function deleteSeq (c: ClusterConnection, seq: number): Promise<boolean> {
  return await c.call('removing a message', async () => await c.jsm.streams.deleteMessage(c.names.streamDown, seq, false).catch((err: Error) => {
    if (notFound(err)) return false
    throw err
  }))
}

/**
 * Remove the retained messages of one resource subject that `drop` picks: each by an id-checked
 * delete (deleteIfSame; never a purge, see the file comment). Returns the seqs removed.
 */
export async function removeVersions (c: ClusterConnection, subject: string, kept: readonly RetainedMsg[], drop: (m: RetainedMsg) => boolean): Promise<number[]> {
  const removed: number[] = []
  for (const m of kept) if (drop(m) && await deleteIfSame(c, m.seq, m.id, subject)) removed.push(m.seq)
  return removed
}

/** Carry out one removal. Idempotent: a message already gone is not an error. */
export async function settleOne (c: ClusterConnection, it: SettleItem): Promise<void> {
  if (it.kind === 'seq') { await deleteIfSame(c, it.seq, it.id, it.subject); return }
  await removeVersions(c, it.subject, await readRetained(c, it.subject), m => m.id === it.id || !isNewer(m.version, m.op, it.version, it.op))
}

/** Run items with PURGE_CONCURRENCY in flight; settled items are removed from `todo` (a failure leaves the rest for a retry). */
export async function settleAll (c: ClusterConnection, todo: SettleItem[]): Promise<void> {
  while (todo.length > 0) {
    const chunk = todo.slice(0, PURGE_CONCURRENCY)
    await Promise.all(chunk.map(async it => { await settleOne(c, it) }))
    todo.splice(0, chunk.length)
  }
}

/**
 * Publish again everything the leader still holds for `node` at or below `upto` (see the file
 * comment), then remove the old copy. Returns how many were published again.
 */
export async function rescueBelow (c: ClusterConnection, node: string, upto: number): Promise<number> {
  const n = c.names
  const prefixes = outboxPrefixes(n.prefix, node)
  let rescued = 0
  for (let seq = 1; ;) {
    const msg = await nextOnLeader(c, 'checking the outbox after an ack', n.down(node), seq)
    if (msg === null || msg.seq > upto) break
    if (await rescueOne(c, node, msg, prefixes)) rescued++
    seq = msg.seq + 1
  }
  return rescued
}

async function rescueOne (c: ClusterConnection, node: string, msg: StoredMsg, prefixes: { m: string, r: string }): Promise<boolean> {
  const leaderId = msg.header?.get(H.id) || ''
  const id = leaderId || `seq-${msg.seq}`
  const version = msg.header?.get(H.version) || undefined
  const op = msg.header?.get(H.operation) || undefined
  if (under(msg.subject, prefixes.r)) {
    // Only the newest retained version goes out again; an older one is simply superseded.
    const kept = await readRetained(c, msg.subject)
    if (kept.some(k => k.seq !== msg.seq && isNewer(k.version, k.op, version, op))) {
      await deleteIfSame(c, msg.seq, leaderId, msg.subject)
      if (tracing) trace({ k: 'rescue-superseded', peer: node, seq: msg.seq, subject: msg.subject })
      return false
    }
  }
  const h = copyHeaders(msg.header)
  const ack = await c.call('re-queueing a skipped message', async () => await c.publishStored(msg.subject, msg.data, { msgID: `${node}:${id}~o${msg.seq}`, headers: h }))
  if (tracing) trace({ k: 'rescue', peer: node, seq: msg.seq, subject: msg.subject, newSeq: ack.seq, id })
  await deleteIfSame(c, msg.seq, leaderId, msg.subject)
  return true
}

function copyHeaders (src: MsgHdrs | undefined): MsgHdrs {
  const h = natsHeaders()
  for (const key of src?.keys() ?? []) if (!/^nats-/i.test(key)) h.set(key, src?.get(key) ?? '')
  return h
}
