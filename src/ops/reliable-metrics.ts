/**
 * Reliable-delivery metrics for both roles (issue 15, DESIGN.md §5 and §10),
 * named `edgefabric_{hub,edge}_reliable_*` with a `direction` label: `down`
 * is hub → edge, `up` is edge → hub. The hub's outbox is `down`, what it
 * receives `up`; the edge the other way round.
 *
 * Hot paths stay cheap: depths, bytes, in-flight counts, oldest age and acks
 * are read at scrape time (collect()) from the store and the lanes; only rare
 * events (dead letters, redeliveries, resumes, commits, duplicates) are counted
 * as they happen — per lane event or per commit, never per message.
 *
 * Per-node series on the hub (bounded cardinality): the aggregate families
 * always exist. `edgefabric_hub_node_outbox_*{node}` exist only for the top
 * `perNode.top` nodes by queue depth (default 20) plus the `perNode.nodes`
 * allow-list, recomputed at each scrape (series of nodes that dropped out of
 * the selection disappear). So 10,000 nodes give at most top + allow-list
 * series per family, not 10,000: Prometheus memory and query cost stay flat
 * with the fleet size, while the nodes worth looking at — the ones with
 * something queued — are always visible. The console and the fleet API
 * (admin-fleet.ts) show every node's depth without going through Prometheus.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** What the metrics read from a durable store (ReliableStore's read side). */
export interface ReliableStoreView {
  outboxStats (peer: string): { count: number, bytes: number, firstSeq: number }
  pending (peer: string, afterSeq: number, limit: number): Array<{ enqueuedAt: number }>
  peersWithPending (): string[]
  pendingStats? (): Array<{ peer: string, count: number, bytes: number }>
}

/** One lane's sending half as the metrics see it (ReliableSender). */
export interface LaneView { readonly peer: string, readonly inflight: number, readonly acked: number }

/** Lane events (src/reliable/sender.ts LaneEvent), structurally: ops does not import reliable. */
export type LaneEventView =
  | { type: 'dead-letter', code: string }
  | { type: 'expired', count: number }
  | { type: 'superseded', count: number }
  | { type: 'redelivery', reason: string }
  | { type: 'resumed', pending: number }
  | { type: 'gap' }
  | { type: string }

export interface ReliableMetricsOptions {
  role: 'hub' | 'edge'
  store: () => ReliableStoreView | undefined
  lanes: () => Iterable<LaneView>
  now?: () => number
  /** Hub only: per-node series for the top N by queue depth and an allow-list. @default { top: 20, nodes: [] } */
  perNode?: { top?: number, nodes?: readonly string[] }
}

export interface ReliableMetrics {
  /** Feed every lane event (cheap: rare events only). */
  onLaneEvent (e: LaneEventView): void
  /** Receiver counts ('duplicate', 'stale', ...), per processed batch. */
  onCount (what: string, n: number): void
  /** One group commit of the store: how many writes it carried and how long commit + fsync took. */
  onCommit (writes: number, seconds: number): void
}

/** Dead-letter reasons of the `reason` label (a closed set). */
export function deadLetterReason (code: string): string {
  switch (code) {
    case 'EF_TTL_EXPIRED': return 'ttl_expired'
    case 'EF_QUOTA_DROPPED': return 'quota_dropped'
    case 'EF_SUPERSEDED': return 'superseded'
    default: return 'rejected_by_peer'
  }
}

export function createReliableMetrics (registry: Registry, o: ReliableMetricsOptions): ReliableMetrics {
  const registers = [registry]
  const p = `edgefabric_${o.role}_reliable_`
  const out = o.role === 'hub' ? 'down' : 'up'
  const inb = o.role === 'hub' ? 'up' : 'down'
  const now = o.now ?? Date.now
  const labelNames = ['direction'] as const

  /**
   * One pass over the store per scrape, shared by the gauges below (collect() runs per gauge).
   * prom-client calls every collect() synchronously within one `metrics()` call, so the pass is
   * kept until the next turn of the event loop only: a time-based cache served a drained node's
   * old depth to the next scrape (test/ops/reliable-metrics.test.ts, "drained node left the top list").
   */
  interface Snapshot { at: number, count: number, bytes: number, oldest: number, perPeer: Array<{ peer: string, count: number, bytes: number, oldest: number }> }
  let snap: Snapshot | undefined
  const snapshot = (): Snapshot => {
    if (snap !== undefined) return snap
    const t = now()
    const store = o.store()
    const perPeer: Snapshot['perPeer'] = []
    let count = 0
    let bytes = 0
    let oldest = 0
    if (store !== undefined) {
      const stats = store.pendingStats?.() ?? store.peersWithPending().map(peer => ({ peer, ...store.outboxStats(peer) }))
      for (const { peer, ...st } of stats) {
        if (st.count === 0) continue
        const head = store.pending(peer, 0, 1)[0]
        const age = head === undefined ? 0 : Math.max(0, t - head.enqueuedAt) / 1000
        count += st.count
        bytes += st.bytes
        if (age > oldest) oldest = age
        perPeer.push({ peer, count: st.count, bytes: st.bytes, oldest: age })
      }
    }
    const fresh = { at: t, count, bytes, oldest, perPeer }
    snap = fresh
    setImmediate(() => { if (snap === fresh) snap = undefined })
    return fresh
  }

  new Gauge({ name: p + 'outbox_messages', help: 'Messages in the durable outbox waiting for an ack, by direction', labelNames, registers, collect () { this.set({ direction: out }, snapshot().count) } })
  new Gauge({ name: p + 'outbox_bytes', help: 'Bytes in the durable outbox waiting for an ack, by direction', labelNames, registers, collect () { this.set({ direction: out }, snapshot().bytes) } })
  new Gauge({ name: p + 'oldest_pending_age_seconds', help: 'Age of the oldest message waiting in the outbox, seconds (0 when empty)', labelNames, registers, collect () { this.set({ direction: out }, snapshot().oldest) } })
  new Gauge({
    name: p + 'inflight_messages', help: 'Messages sent and not yet acknowledged, by direction', labelNames, registers,
    collect () { let n = 0; for (const l of o.lanes()) n += l.inflight; this.set({ direction: out }, n) }
  })
  // Acks: the lanes' cumulative ack points only grow; the counter adds what they moved since the last scrape.
  const ackedSeen = new Map<string, number>()
  new Counter({
    name: p + 'acked_messages_total', help: 'Messages the peer acknowledged, by direction', labelNames, registers,
    collect () {
      for (const l of o.lanes()) {
        const prev = ackedSeen.get(l.peer)
        if (prev !== undefined && l.acked > prev) this.inc({ direction: out }, l.acked - prev)
        if (prev === undefined || l.acked > prev) ackedSeen.set(l.peer, l.acked)
      }
    }
  }).inc({ direction: out }, 0)
  const redeliveries = new Counter({ name: p + 'redeliveries_total', help: 'Resends from a sequence number, by direction and reason (ack-timeout|reconnect|rejected)', labelNames: ['direction', 'reason'] as const, registers })
  const dead = new Counter({ name: p + 'dead_letters_total', help: 'Messages dropped from the outbox with a record, by direction and reason (ttl_expired|quota_dropped|rejected_by_peer|superseded)', labelNames: ['direction', 'reason'] as const, registers })
  const dup = new Counter({ name: p + 'duplicates_suppressed_total', help: 'Inbound messages dropped as already processed (seq or id window), by direction', labelNames, registers })
  const stale = new Counter({ name: p + 'stale_suppressed_total', help: 'Inbound messages dropped as older than the stored resource version, by direction', labelNames, registers })
  const resumes = new Counter({ name: p + 'resumes_total', help: 'Lane resumes after a (re)connect, by outcome (clean: nothing pending; resent: the gap was resent; gap: the peer lost acknowledged state)', labelNames: ['outcome'] as const, registers })
  const commitSeconds = new Histogram({ name: p + 'commit_seconds', help: 'Store group commit latency (transaction + fsync in sync mode), seconds', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers })
  const commitSize = new Histogram({ name: p + 'commit_batch_writes', help: 'Store writes (appends, acks, inbound batches) sharing one group commit', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024], registers })
  for (const reason of ['ttl_expired', 'quota_dropped', 'rejected_by_peer', 'superseded']) dead.inc({ direction: out, reason }, 0)
  for (const reason of ['ack-timeout', 'reconnect', 'rejected']) redeliveries.inc({ direction: out, reason }, 0)
  for (const outcome of ['clean', 'resent', 'gap']) resumes.inc({ outcome }, 0)
  dup.inc({ direction: inb }, 0)
  stale.inc({ direction: inb }, 0)

  if (o.role === 'hub') {
    const top = Math.max(0, Math.floor(o.perNode?.top ?? 20))
    const allow = new Set(o.perNode?.nodes ?? [])
    let picked: Snapshot['perPeer'] = []
    let pickedFrom: ReturnType<typeof snapshot> | undefined
    const pick = (): typeof picked => {
      const s = snapshot()
      if (pickedFrom === s) return picked
      pickedFrom = s
      const sorted = [...s.perPeer].sort((a, b) => b.count - a.count)
      const chosen = sorted.slice(0, top)
      for (const e of sorted.slice(top)) if (allow.has(e.peer)) chosen.push(e)
      for (const n of allow) if (!chosen.some(c => c.peer === n)) chosen.push({ peer: n, count: 0, bytes: 0, oldest: 0 })
      picked = chosen
      return picked
    }
    const perNode = (name: string, help: string, v: (e: typeof picked[number]) => number): void => {
      new Gauge({ name: 'edgefabric_hub_node_' + name, help, labelNames: ['node'] as const, registers, collect () { this.reset(); for (const e of pick()) this.set({ node: e.peer }, v(e)) } })
    }
    perNode('outbox_messages', 'Outbox depth of one node (top N by depth plus the allow-list only, see README "Metrics")', e => e.count)
    perNode('outbox_bytes', 'Outbox bytes of one node (top N by depth plus the allow-list only)', e => e.bytes)
    perNode('oldest_pending_age_seconds', 'Age of the oldest message queued for one node, seconds (top N by depth plus the allow-list only)', e => e.oldest)
  }

  return {
    onLaneEvent (e) {
      switch (e.type) {
        case 'dead-letter': dead.inc({ direction: out, reason: deadLetterReason((e as { code: string }).code) }); break
        case 'expired': dead.inc({ direction: out, reason: 'ttl_expired' }, (e as { count: number }).count); break
        case 'superseded': dead.inc({ direction: out, reason: 'superseded' }, (e as { count: number }).count); break
        case 'redelivery': redeliveries.inc({ direction: out, reason: (e as { reason: string }).reason }); break
        case 'resumed': resumes.inc({ outcome: (e as { pending: number }).pending > 0 ? 'resent' : 'clean' }); break
        case 'gap': resumes.inc({ outcome: 'gap' }); break
      }
    },
    onCount (what, n) {
      if (n <= 0) return
      if (what === 'duplicate') dup.inc({ direction: inb }, n)
      else if (what === 'stale') stale.inc({ direction: inb }, n)
    },
    onCommit (writes, seconds) {
      commitSize.observe(writes)
      commitSeconds.observe(seconds)
    }
  }
}

/**
 * Device twin sync state at the hub, computed at scrape time from the
 * registry: `edgefabric_hub_device_twins{state}` with state synced (the bound
 * edge holds the latest revision), pending (the edge is behind) and
 * resync_pending (a full resync was asked for). Conflicts resolved by the
 * merge rules are `edgefabric_hub_device_expected_merges_total`.
 */
export function registerTwinGauges (registry: Registry, devices: () => Iterable<{ revision: number, syncedRevision: number, resyncPending: boolean }> | undefined): void {
  new Gauge({
    name: 'edgefabric_hub_device_twins',
    help: 'Device twins by sync state at the hub (synced: the edge holds the latest revision; pending: behind; resync_pending: full resync asked)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect () {
      let synced = 0
      let pending = 0
      let resync = 0
      for (const d of devices() ?? []) {
        if (d.resyncPending) resync++
        else if (d.syncedRevision >= d.revision) synced++
        else pending++
      }
      this.set({ state: 'synced' }, synced)
      this.set({ state: 'pending' }, pending)
      this.set({ state: 'resync_pending' }, resync)
    }
  })
}
