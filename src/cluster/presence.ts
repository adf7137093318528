/**
 * Node presence across hubs (issue 17): KV `ef_<c>_presence`, key = node
 * name, value = {hub, session, since}. The last connection wins across hubs:
 * every hub watches the bucket, and a hub holding a session for a node whose
 * presence entry was since written (a higher KV revision) by another hub
 * closes its session. The watch delivers within milliseconds, well inside
 * one heartbeat — the bound the issue sets for two hubs both holding a node.
 * If this hub claimed later than the other (the other's write has the lower
 * revision), it keeps its session and the other hub closes its own.
 */
import { KvWatchInclude, type KvEntry } from '@nats-io/kv'
import type { ClusterConnection } from './connection.js'
import type { ClusterHubPort, PresenceRecord } from './types.js'

export class Presence {
  readonly #c: ClusterConnection
  readonly #hub: string
  readonly #port: ClusterHubPort
  /** node → our claim (session id, KV revision). */
  readonly #claims = new Map<string, { session: string, rev: number, other?: { rev: number, hub: string } }>()
  #stopWatch: (() => void) | undefined
  #closed = false

  constructor (c: ClusterConnection, hub: string, port: ClusterHubPort) {
    this.#c = c
    this.#hub = hub
    this.#port = port
  }

  async start (): Promise<void> {
    const w = await this.#c.presence.watch({ include: KvWatchInclude.UpdatesOnly })
    this.#stopWatch = () => { w.stop() }
    void (async () => {
      for await (const e of w) this.#seen(e)
    })().catch(err => { if (!this.#closed) this.#c.logger.warn({ err: (err as Error).message }, 'presence watch ended') })
  }

  #seen (e: KvEntry): void {
    if (e.operation !== 'PUT') return
    const mine = this.#claims.get(e.key)
    if (mine === undefined || e.revision <= mine.rev) return
    let rec: PresenceRecord
    try { rec = e.json<PresenceRecord>() } catch { return }
    if (rec.hub === this.#hub && rec.session === mine.session) return
    if (mine.rev === Number.MAX_SAFE_INTEGER) {
      // Our own put has not answered yet: decide when it does (claim()).
      if (mine.other === undefined || e.revision > mine.other.rev) mine.other = { rev: e.revision, hub: rec.hub }
      return
    }
    this.#claims.delete(e.key)
    if (this.#port.holds(e.key)) {
      void this.#port.disconnect(e.key, `replaced by a newer connection for the same node (hub ${rec.hub})`).catch(() => {})
    }
  }

  /** Record that this hub now holds `node`'s session. */
  async claim (node: string, session: string, since: number): Promise<void> {
    const rec: PresenceRecord = { hub: this.#hub, session, since }
    this.#claims.set(node, { session, rev: Number.MAX_SAFE_INTEGER }) // until the put answers, nothing older can win
    const rev = await this.#c.call('recording node presence', async () => await this.#c.presence.put(node, JSON.stringify(rec)))
    const cur = this.#claims.get(node)
    if (cur?.session !== session) return
    cur.rev = rev
    if (cur.other !== undefined && cur.other.rev > rev) {
      // Another hub claimed the node after us while our put was in flight: it wins.
      this.#claims.delete(node)
      if (this.#port.holds(node)) void this.#port.disconnect(node, `replaced by a newer connection for the same node (hub ${cur.other.hub})`).catch(() => {})
    }
  }

  /** The session ended: remove the entry if it is still ours. */
  async release (node: string, session: string): Promise<void> {
    const cur = this.#claims.get(node)
    if (cur === undefined || cur.session !== session) return
    this.#claims.delete(node)
    if (cur.rev === Number.MAX_SAFE_INTEGER) return
    await this.#c.presence.delete(node, { previousSeq: cur.rev }).catch(() => { /* another hub claimed it since */ })
  }

  /** Which hub holds the node's session, since when (undefined: none). */
  async lookup (node: string): Promise<PresenceRecord | undefined> {
    const e = await this.#c.call('reading node presence', async () => await this.#c.presence.get(node))
    if (e === null || e.operation !== 'PUT' || e.value.length === 0) return undefined
    return e.json<PresenceRecord>()
  }

  stop (): void {
    this.#closed = true
    this.#stopWatch?.()
  }
}
