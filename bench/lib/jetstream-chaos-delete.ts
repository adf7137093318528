/**
 * `--delete` for bench/jetstream-chaos.ts: our hub's removal pattern on raw
 * JetStream, so delete entries are in the Raft log beside the publishes when
 * servers are killed. Every other PubAck'd one-subject message is removed
 * about a second after its PubAck by an id-checked delete: read the seq on
 * the stream leader (STREAM.MSG.GET), delete it only if it holds the id the
 * PubAck named (src/cluster/outbox-purge.ts deleteIfSame). A check that finds
 * another id there is itself evidence of a moved message, so it is counted.
 */
import type { JetStreamManager } from '@nats-io/jetstream'
import type { Acked } from './jetstream-chaos-check.js'

export interface Deleter {
  /** offer a PubAck'd message (only some are taken) */
  offer: (a: Acked) => void
  /** ids confirmed deleted: absent from the stream by our hand */
  deleted: Set<string>
  /** ids whose delete had an unknown outcome (timeout): judged neither present nor missing */
  unsure: Set<string>
  /** PubAck seqs where the leader held another id (or nothing) when we came to delete */
  mismatches: Array<{ seq: number, id: string, found: string, t: number }>
  stop: () => Promise<void>
}

export function startDeleter (jsm: JetStreamManager, stream: string, now: () => number, inFlight = 32, delayMs = 1000): Deleter {
  const queue: Acked[] = []
  const d: Deleter = { offer, deleted: new Set(), unsure: new Set(), mismatches: [], stop }
  let on = true
  let n = 0
  function offer (a: Acked): void {
    // One-subject messages only (resource subjects are thinned by the per-subject limit already), every other one.
    if (a.subject.includes('.m.') && n++ % 2 === 0) queue.push(a)
  }
  async function one (a: Acked): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const m = await jsm.streams.getMessage(stream, { seq: a.seq }).catch((err: Error) => {
          if (/not found/i.test(err.message)) return null
          throw err
        })
        const found = m?.header?.get('Ef-Id') ?? ''
        // Our own earlier attempt may have deleted it before its reply was lost: not a mismatch.
        if (m === null && d.unsure.has(a.id)) return
        if (m === null || found !== a.id) { d.mismatches.push({ seq: a.seq, id: a.id, found, t: now() }); return }
        d.unsure.add(a.id)
        if (await jsm.streams.deleteMessage(stream, a.seq, false)) { d.unsure.delete(a.id); d.deleted.add(a.id) }
        return
      } catch {
        // No leader for a moment (a kill): try again, like the hub's call() does.
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }
  }
  const loop = (async () => {
    const running = new Set<Promise<void>>()
    while (on || queue.length > 0 || running.size > 0) {
      const head = queue[0]
      if (head === undefined || running.size >= inFlight || (on && now() - head.t < delayMs)) {
        if (running.size > 0 && head !== undefined && running.size >= inFlight) await Promise.race(running)
        else await new Promise(resolve => setTimeout(resolve, 50))
        continue
      }
      queue.shift()
      const p = one(head).finally(() => { running.delete(p) })
      running.add(p)
    }
  })()
  async function stop (): Promise<void> { on = false; await loop }
  return d
}
