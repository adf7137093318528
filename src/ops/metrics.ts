/**
 * Prometheus metrics for hub and edge (prom-client).
 *
 * Every hub/edge instance owns its own `Registry`; nothing is ever registered
 * on prom-client's global default registry, because tests and the demo run
 * several hubs and edges in one process and metric names would collide.
 * (prom-client registers on the global registry unless `registers` is given,
 * so every constructor below passes it.)
 *
 * Units follow Prometheus conventions: seconds and bytes, counters end in
 * `_total`. Names start with `edgefabric_hub_` / `edgefabric_edge_`.
 *
 * Label cardinality: every label here has a small closed set of values
 * (direction, transport, reason, code, result, status class), except
 *   - hub `rtt{node}`: one series per CONNECTED node. Call `rtt.remove({ node })`
 *     when the node's session ends, or series of departed nodes accumulate.
 *     At 10,000 nodes that is 10,000 series: fine for Prometheus, but it is
 *     the one metric that scales with the fleet.
 *   - edge `mailboxDepth{module}` / `mailboxDrops{module,reason}`: one series per
 *     registered module (tens at most).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type LabelValues } from 'prom-client'

/**
 * A Counter for per-message hot paths. `add()` sums into a plain number per
 * label set; the sums reach the counter whenever it is read (prom-client
 * calls `collect` before every get() and scrape), so what a reader sees is
 * exact. Why: Counter.inc() hashes its label object (sorts and joins the
 * names) on every call — ≈1 µs per message in the edge's drain profile, for
 * two counters per delivered message. `inc()` still works as usual.
 */
export class HotCounter<T extends string> extends Counter<T> {
  readonly #names: readonly T[]
  readonly #pending = new Map<string, { labels: LabelValues<T>, n: number }>()

  constructor (cfg: CounterConfiguration<T>) {
    super({
      ...cfg,
      collect (this: Counter<T>) { (this as HotCounter<T>).flushPending() }
    })
    this.#names = cfg.labelNames ?? []
  }

  /** Add `n` (default 1) for `labels`; visible at the next read. */
  add (labels: LabelValues<T>, n = 1): void {
    let key = ''
    for (const name of this.#names) key += String(labels[name]) + '\u0000'
    const e = this.#pending.get(key)
    if (e !== undefined) e.n += n
    else if (this.#pending.size < 1024) this.#pending.set(key, { labels: { ...labels }, n })
    else this.inc(labels, n) // bounded: an unexpected label set goes straight to the counter
  }

  /** Move the pending sums into the counter. */
  flushPending (): void {
    for (const e of this.#pending.values()) {
      if (e.n === 0) continue
      const n = e.n
      e.n = 0
      this.inc(e.labels, n)
    }
  }
}

/** Request latency buckets in seconds: 0.5 ms .. 10 s. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
])

export type Direction = 'up' | 'down'

export interface MetricsOptions {
  /** Also collect Node process metrics (CPU, RSS, event loop lag, GC) as `edgefabric_process_*`. Default false. */
  processMetrics?: boolean
  /** Time source for the edge's offline tracking (ms since epoch). Default Date.now. */
  now?: () => number
}

export interface HubMetrics {
  readonly registry: Registry
  /** Nodes with a live session. */
  readonly connectedNodes: Gauge
  /** Sessions that completed the handshake, by `transport` (quic|wss|ws|webtransport|memory). */
  readonly sessionsOpened: Counter<'transport'>
  /** Sessions ended, by `reason` (e.g. peer_closed, liveness_timeout, replaced, shutdown, error). */
  readonly sessionsClosed: Counter<'reason'>
  /** Handshakes refused, by `code` (the typed refusal code, e.g. EF_TOKEN_EXPIRED). */
  readonly handshakeRefusals: Counter<'code'>
  /**
   * Every refused or cut-off connection before a session exists, one family
   * (issue 13 item 12): `stage` preauth (caps, deadline, oversize or malformed
   * hello; `reason` from src/transport/pre-auth.ts) or auth (`reason` = the
   * refusal code, e.g. EF_TOKEN_EXPIRED), by `transport`.
   */
  readonly connectionRefusals: Counter<'stage' | 'reason' | 'transport'>
  /** Envelopes, by `direction` (up = edge->hub, down = hub->edge) and `transport`. */
  readonly messages: HotCounter<'direction' | 'transport'>
  /** Payload bytes on the wire, by `direction` and `transport`. */
  readonly bytes: Counter<'direction' | 'transport'>
  /** Hub->edge request round trip until the response, in seconds. Timed-out requests are not observed here. */
  readonly requestLatency: Histogram
  /** Hub->edge requests finished, by `result` (ok|timeout|error). */
  readonly requests: Counter<'result'>
  /** Last measured round-trip time per connected node, seconds. Remove the series on disconnect. */
  readonly rtt: Gauge<'node'>
  /** Messages dropped, by `reason` (e.g. ttl_expired, queue_full, no_route, denied, decode_error). */
  readonly drops: Counter<'reason'>
  /** Broadcasts issued. */
  readonly broadcasts: Counter
  /** Per-node deliveries produced by broadcasts (fan-out = this / broadcasts). */
  readonly broadcastFanout: Counter
  /** Edge-to-edge messages routed through the hub, by `result` (delivered|denied|offline|error). */
  readonly forwards: Counter<'result'>
  /**
   * Cluster mode, the device registry log's compaction (src/cluster/registry-snapshot-writer.ts;
   * 0 on a single hub): `snapshots` by `event` (written|skipped = another hub wrote it|loaded|
   * invalid = incomplete or failed its checksum, ignored|failed = write error), and log entries purged.
   */
  readonly registryLog: { readonly snapshots: Counter<'event'>, readonly purged: Counter }
}

export interface EdgeMetrics {
  readonly registry: Registry
  /** 1 while a session with the hub is up, else 0. Driven by `setConnected`. */
  readonly connected: Gauge
  /** Successful reconnections (not the first connect). Driven by `setConnected`. */
  readonly reconnects: Counter
  /** Total seconds spent disconnected; incremented on each reconnect by that outage's length. */
  readonly offlineSeconds: Counter
  /** Length of the current outage in seconds, 0 while connected. Computed at scrape time. */
  readonly offlineDuration: Gauge
  /** Envelopes, by `direction` (up = edge->hub, down = hub->edge) and `transport`. */
  readonly messages: HotCounter<'direction' | 'transport'>
  /** Payload bytes on the wire, by `direction` and `transport`. */
  readonly bytes: Counter<'direction' | 'transport'>
  /** Messages waiting in a module's mailbox, by `module`. */
  readonly mailboxDepth: Gauge<'module'>
  /** Messages a mailbox dropped or refused, by `module` and `reason` (e.g. overflow_drop_oldest, rejected, unknown_module). */
  readonly mailboxDrops: HotCounter<'module' | 'reason'>
  /** Edge-initiated request round trip until the response, in seconds. */
  readonly requestLatency: Histogram
  /** Last measured round-trip time to the hub, seconds. */
  readonly rtt: Gauge
  /** ServiceBus HTTP calls to local apps, by `status` class (2xx|3xx|4xx|5xx|error|timeout). */
  readonly servicebusCalls: Counter<'status'>
  /**
   * Record a connection state change. On a reconnect (connected after having
   * been disconnected) it increments `reconnects` and adds the outage length to
   * `offlineSeconds`. Idempotent for repeated calls with the same state.
   */
  setConnected (connected: boolean): void
}

export function createHubMetrics (registry: Registry, options: MetricsOptions = {}): HubMetrics {
  const registers = [registry]
  const p = 'edgefabric_hub_'
  const m: HubMetrics = {
    registry,
    connectedNodes: new Gauge({ name: p + 'connected_nodes', help: 'Edge nodes with a live session', registers }),
    sessionsOpened: new Counter({ name: p + 'sessions_opened_total', help: 'Sessions that completed the handshake, by transport', labelNames: ['transport'] as const, registers }),
    sessionsClosed: new Counter({ name: p + 'sessions_closed_total', help: 'Sessions ended, by reason', labelNames: ['reason'] as const, registers }),
    handshakeRefusals: new Counter({ name: p + 'handshake_refusals_total', help: 'Handshakes refused, by refusal code', labelNames: ['code'] as const, registers }),
    connectionRefusals: new Counter({ name: p + 'connection_refusals_total', help: 'Connections refused or cut off before a session, by stage (preauth|auth), reason and transport', labelNames: ['stage', 'reason', 'transport'] as const, registers }),
    messages: new HotCounter({ name: p + 'messages_total', help: 'Envelopes by direction (up = edge to hub, down = hub to edge) and transport', labelNames: ['direction', 'transport'] as const, registers }),
    bytes: new Counter({ name: p + 'bytes_total', help: 'Bytes on the wire by direction and transport', labelNames: ['direction', 'transport'] as const, registers }),
    requestLatency: new Histogram({ name: p + 'request_duration_seconds', help: 'Hub to edge request round trip until the response, seconds', buckets: [...LATENCY_BUCKETS], registers }),
    requests: new Counter({ name: p + 'requests_total', help: 'Hub to edge requests finished, by result', labelNames: ['result'] as const, registers }),
    rtt: new Gauge({ name: p + 'node_rtt_seconds', help: 'Last measured round-trip time per connected node, seconds (one series per connected node)', labelNames: ['node'] as const, registers }),
    drops: new Counter({ name: p + 'dropped_messages_total', help: 'Messages dropped, by reason', labelNames: ['reason'] as const, registers }),
    broadcasts: new Counter({ name: p + 'broadcasts_total', help: 'Broadcasts issued', registers }),
    broadcastFanout: new Counter({ name: p + 'broadcast_deliveries_total', help: 'Per-node deliveries produced by broadcasts', registers }),
    forwards: new Counter({ name: p + 'edge_forwards_total', help: 'Edge-to-edge messages routed through the hub, by result', labelNames: ['result'] as const, registers }),
    registryLog: {
      snapshots: new Counter({ name: p + 'registry_snapshots_total', help: 'Cluster mode: device registry log snapshots, by event (written|skipped|loaded|invalid|failed)', labelNames: ['event'] as const, registers }),
      purged: new Counter({ name: p + 'registry_log_purged_entries_total', help: 'Cluster mode: device registry log entries purged below the older kept snapshot', registers })
    }
  }
  if (options.processMetrics === true) collectProcessMetrics(registry)
  return m
}

export function createEdgeMetrics (registry: Registry, options: MetricsOptions = {}): EdgeMetrics {
  const registers = [registry]
  const p = 'edgefabric_edge_'
  const now = options.now ?? Date.now
  // Outage start (ms), or undefined while connected / before the first connect.
  let offlineSince: number | undefined
  let isConnected = false
  let everConnected = false

  const offlineSeconds = new Counter({ name: p + 'offline_seconds_total', help: 'Total seconds spent disconnected from the hub, added on each reconnect', registers })
  const reconnects = new Counter({ name: p + 'reconnects_total', help: 'Successful reconnections to the hub (the first connect is not counted)', registers })
  const connected = new Gauge({ name: p + 'connected', help: '1 while a session with the hub is up, else 0', registers })
  // Computed at scrape time so the value is current without a timer.
  const offlineDuration = new Gauge({
    name: p + 'offline_duration_seconds',
    help: 'Length of the current outage in seconds, 0 while connected',
    registers,
    collect () { this.set(offlineSince === undefined ? 0 : Math.max(0, now() - offlineSince) / 1000) }
  })

  const m: EdgeMetrics = {
    registry,
    connected,
    reconnects,
    offlineSeconds,
    offlineDuration,
    messages: new HotCounter({ name: p + 'messages_total', help: 'Envelopes by direction (up = edge to hub, down = hub to edge) and transport', labelNames: ['direction', 'transport'] as const, registers }),
    bytes: new Counter({ name: p + 'bytes_total', help: 'Bytes on the wire by direction and transport', labelNames: ['direction', 'transport'] as const, registers }),
    mailboxDepth: new Gauge({ name: p + 'mailbox_depth', help: 'Messages waiting in a module mailbox', labelNames: ['module'] as const, registers }),
    mailboxDrops: new HotCounter({ name: p + 'mailbox_drops_total', help: 'Messages a module mailbox dropped or refused, by module and reason', labelNames: ['module', 'reason'] as const, registers }),
    requestLatency: new Histogram({ name: p + 'request_duration_seconds', help: 'Edge request round trip until the response, seconds', buckets: [...LATENCY_BUCKETS], registers }),
    rtt: new Gauge({ name: p + 'rtt_seconds', help: 'Last measured round-trip time to the hub, seconds', registers }),
    servicebusCalls: new Counter({ name: p + 'servicebus_calls_total', help: 'ServiceBus HTTP calls to local apps, by status class', labelNames: ['status'] as const, registers }),
    setConnected (up: boolean): void {
      if (up === isConnected) return
      isConnected = up
      connected.set(up ? 1 : 0)
      const t = now()
      if (up) {
        if (everConnected) reconnects.inc()
        if (offlineSince !== undefined) offlineSeconds.inc(Math.max(0, t - offlineSince) / 1000)
        offlineSince = undefined
        everConnected = true
      } else {
        offlineSince = t
      }
    }
  }
  connected.set(0)
  if (options.processMetrics === true) collectProcessMetrics(registry)
  return m
}

/** `200` -> `2xx`; anything that is not an HTTP status -> `error`. For `servicebusCalls`. */
export function statusClass (status: number | undefined): string {
  if (status === undefined || !Number.isInteger(status) || status < 100 || status > 599) return 'error'
  return `${Math.floor(status / 100)}xx`
}

/** Seconds elapsed since a `process.hrtime.bigint()` start; for latency histograms. */
export function secondsSince (startNs: bigint): number {
  return Number(process.hrtime.bigint() - startNs) / 1e9
}

function collectProcessMetrics (registry: Registry): void {
  // Registers on `registry` only. Note: prom-client starts an event-loop delay
  // monitor per call that lives as long as the process; one call per instance.
  collectDefaultMetrics({ register: registry, prefix: 'edgefabric_process_' })
}

export { Registry }
