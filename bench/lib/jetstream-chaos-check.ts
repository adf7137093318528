/**
 * End-of-run checks for bench/jetstream-chaos.ts: read every replica of the
 * stream on its own server and compare it with what JetStream PubAck'd.
 *
 * A consumer reads the stream store of the server that hosts it, so an R1
 * ephemeral consumer is a per-replica reader. nats-server 2.9.10 places such a
 * consumer on a random peer of the stream (jsClusteredConsumerRequest,
 * setPreferred), so we create them until each server has hosted one.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'

export interface Stored { id: string, subject: string }

export interface Acked { id: string, node: string, subject: string, seq: number, t: number, attempts: number, duplicate: boolean }

export interface Verdict {
  /** PubAck'd, absent from the replica, and not legitimately evicted by max_msgs_per_subject */
  missing: Acked[]
  /** PubAck'd, present, but not at the PubAck's seq */
  moved: Array<Acked & { at: number[] }>
  /** the PubAck'd seq holds a different id */
  replaced: Array<Acked & { holder: string }>
  /** ids stored at more than one seq (a retried publish that dedup did not catch) */
  dups: number
  /** evicted by the per-subject limit (expected) */
  evicted: number
  /** stored seq − PubAck seq over the moved messages: one value per block of renumbered messages */
  shifts: Record<string, number>
}

/** Wait until the stream has a leader and both replicas are current (2 min at most); returns the leader. */
export async function settle (jsm: JetStreamManager, stream: string, log: (s: string) => void): Promise<string> {
  for (let k = 0; ; k++) {
    const info = await jsm.streams.info(stream).catch(() => undefined)
    const reps = info?.cluster?.replicas ?? []
    if (info?.cluster?.leader !== undefined && reps.length === 2 && reps.every(r => r.current && r.offline !== true)) return info.cluster.leader
    if (k % 20 === 19) log(`settling: ${JSON.stringify(info?.cluster)}`)
    if (k > 240) throw new Error(`stream not settled: ${JSON.stringify(info?.cluster)}`)
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

/** Each server's own view of the stream (messages, first/last seq, deleted): /jsz answers from local state. */
export async function serverStates (servers: Array<{ name: string, httpPort: number }>, stream: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for (const s of servers) {
    const r = await fetch(`http://127.0.0.1:${s.httpPort}/jsz?accounts=true&streams=true`)
    const j = await r.json() as { account_details?: Array<{ stream_detail?: Array<{ name: string, state: unknown }> }> }
    out[s.name] = j.account_details?.flatMap(a => a.stream_detail ?? []).find(d => d.name === stream)?.state
  }
  return out
}

/** One replica's content, read by an R1 consumer hosted on `server`. */
export async function readReplica (js: JetStreamClient, jsm: JetStreamManager, stream: string, server: string, tries = 30): Promise<Map<number, Stored> | undefined> {
  for (let k = 0; k < tries; k++) {
    const name = `chk_${server}_${k}_${Date.now()}`
    let ci
    try {
      ci = await jsm.consumers.add(stream, {
        name, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, num_replicas: 1, mem_storage: true, inactive_threshold: nanos(120_000)
      })
    } catch { await new Promise(resolve => setTimeout(resolve, 500)); continue }
    if (ci.cluster?.leader !== server) { await jsm.consumers.delete(stream, name).catch(() => {}); continue }
    const out = new Map<number, Stored>()
    const c = await js.consumers.get(stream, name)
    // num_pending counts what this replica still has to deliver: read until it reaches 0.
    for (;;) {
      const it = await c.fetch({ max_messages: 2000, expires: 3000 })
      let n = 0
      for await (const m of it) {
        n++
        out.set(m.seq, { id: m.headers?.get('Ef-Id') ?? '', subject: m.subject })
      }
      const info = await c.info()
      if (info.num_pending === 0 && n === 0) break
    }
    await jsm.consumers.delete(stream, name).catch(() => {})
    return out
  }
  return undefined
}

/** Compare one replica with the PubAcks. `perSubject` is the stream's max_msgs_per_subject. */
export function judge (acked: Acked[], msgs: Map<number, Stored>, perSubject: number): Verdict {
  const byId = new Map<string, number[]>()
  const bySubject = new Map<string, number[]>()
  for (const [seq, s] of msgs) {
    byId.set(s.id, [...(byId.get(s.id) ?? []), seq])
    bySubject.set(s.subject, [...(bySubject.get(s.subject) ?? []), seq])
  }
  const v: Verdict = { missing: [], moved: [], replaced: [], dups: 0, evicted: 0, shifts: {} }
  for (const seqs of byId.values()) if (seqs.length > 1) v.dups++
  for (const a of acked) {
    const at = byId.get(a.id)
    // A duplicate PubAck with seq 0 (the first attempt was still in flight) names no position.
    const holder = a.seq === 0 ? undefined : msgs.get(a.seq)
    if (holder !== undefined && holder.id !== a.id) v.replaced.push({ ...a, holder: holder.id })
    if (at === undefined) {
      // The per-subject limit keeps the newest `perSubject` messages of a subject: an older one is gone by design.
      const newer = (bySubject.get(a.subject) ?? []).filter(s => s > a.seq).length
      if (newer >= perSubject) v.evicted++
      else v.missing.push(a)
    } else if (a.seq !== 0 && !at.includes(a.seq)) {
      v.moved.push({ ...a, at })
      const d = String((at[0] ?? 0) - a.seq)
      v.shifts[d] = (v.shifts[d] ?? 0) + 1
    }
  }
  return v
}

/** Seqs where two replicas differ (present in one only, or a different id). */
export function diverge (a: Map<number, Stored>, b: Map<number, Stored>): number[] {
  const out: number[] = []
  for (const [seq, s] of a) if (b.get(seq)?.id !== s.id) out.push(seq)
  for (const seq of b.keys()) if (!a.has(seq)) out.push(seq)
  return out.sort((x, y) => x - y)
}
