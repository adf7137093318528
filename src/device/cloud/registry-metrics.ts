/**
 * Prometheus metrics of the cloud device registry (DESIGN.md §10), on the
 * hub's registry when it runs inside a Hub. Every label has a small closed set
 * of values.
 */
import { Counter, Gauge } from 'prom-client'
import type { Registry } from '../../ops/metrics.js'

export interface DeviceMetrics {
  /** API calls refused, by error `code` (validation, not found, in use). */
  readonly rejections: Counter<'code'>
  /** Upstream `$device` messages, by `kind` (twin|state|upload|resync) and `result` (applied|stale|gap|invalid|unknown_device|not_bound). */
  readonly upstream: Counter<'kind' | 'result'>
  /** Edge-set expected values merged against the base revision, by `result` (accepted|rejected). */
  readonly merges: Counter<'result'>
  /** Resyncs, by `direction` (requested = cloud asked an edge after a gap; answered = an edge asked, snapshots re-sent). */
  readonly resyncs: Counter<'direction'>
  /** Messages handed to the reliable lane, by `operation` (update|delete|query) and `outcome` (queued|stale|rejected|error). */
  readonly dispatched: Counter<'operation' | 'outcome'>
  /** Watchers closed because they fell behind. */
  readonly watchOverflows: Counter
  /** Upload records evicted from the bounded log or truncated, by `reason`. */
  readonly uploadDrops: Counter<'reason'>
  /** Registry transactions that applied upstream messages (group commit: upstream_total / this = messages per commit). */
  readonly upstreamCommits: Counter
  readonly syncBlocked: Counter<'reason'>
}

export function createDeviceMetrics (registry: Registry, sizes: () => { devices: number, models: number, dispatch: number, watchers: number }): DeviceMetrics {
  const registers = [registry]
  const p = 'edgefabric_hub_device_'
  const gauge = (name: string, help: string, pick: (s: ReturnType<typeof sizes>) => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name: p + name, help, registers, collect () { this.set(pick(sizes())) } })
  }
  gauge('devices', 'Devices in the registry', s => s.devices)
  gauge('models', 'Device models in the registry', s => s.models)
  gauge('dispatch_pending', 'Cloud to edge device messages committed but not yet accepted by the reliable lane', s => s.dispatch)
  gauge('watchers', 'Open device watchers', s => s.watchers)
  return {
    rejections: new Counter({ name: p + 'rejections_total', help: 'Device API calls refused, by error code', labelNames: ['code'] as const, registers }),
    upstream: new Counter({ name: p + 'upstream_total', help: 'Upstream device messages from edges, by kind and result', labelNames: ['kind', 'result'] as const, registers }),
    merges: new Counter({ name: p + 'expected_merges_total', help: 'Edge-set expected values merged against their base revision, by result', labelNames: ['result'] as const, registers }),
    resyncs: new Counter({ name: p + 'resyncs_total', help: 'Device resyncs, by direction (requested by the cloud after a gap, answered to an edge)', labelNames: ['direction'] as const, registers }),
    dispatched: new Counter({ name: p + 'dispatched_total', help: 'Device messages handed to the reliable lane, by operation and outcome', labelNames: ['operation', 'outcome'] as const, registers }),
    watchOverflows: new Counter({ name: p + 'watch_overflows_total', help: 'Device watchers closed because they fell behind', registers }),
    uploadDrops: new Counter({ name: p + 'upload_drops_total', help: 'Upload records evicted from the bounded log or truncated, by reason', labelNames: ['reason'] as const, registers }),
    upstreamCommits: new Counter({ name: p + 'upstream_commits_total', help: 'Registry transactions that applied upstream device messages (group commit)', registers }),
    syncBlocked: new Counter({ name: p + 'sync_blocked_total', help: 'Sessions of nodes with bound devices that cannot sync them, by reason (edge_devices_disabled)', labelNames: ['reason'] as const, registers })
  }
}
