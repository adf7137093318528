/**
 * Device twin metrics on the edge's own registry (DESIGN.md §10; names
 * `edgefabric_edge_device_*`, closed label sets).
 */
import { Counter, Gauge, type Registry } from 'prom-client'

export interface DeviceMetrics {
  /** Twin updates applied, by `source` (mapper|cloud). */
  readonly twinUpdates: Counter<'source'>
  /** Deltas published to mappers. */
  readonly deltas: Counter
  /** Refused mapper requests, by `code` (EF_TWIN_BAD_JSON, EF_TWIN_BAD_VALUE, EF_TWIN_TOO_LARGE, ...). */
  readonly errors: Counter<'code'>
  /** ACL / authentication denials, by `action` (connect|publish|subscribe|oversize|client-id|session-quota). */
  readonly denials: Counter<'action'>
  /** Upload records forwarded to the cloud. */
  readonly uploads: Counter
  /** MQTT CONNECT credential checks by `outcome` (auth.ts LoginOutcome: ok-local|ok-cached|ok-checked|bad-credentials|source-blocked|username-budget|source-pending|queue-full|queue-timeout|anonymous; issue 13 item 8). */
  readonly logins: Counter<'outcome'>
  /** Full resyncs, by `direction` (up: edge asked the cloud; down: the cloud asked the edge). */
  readonly resyncs: Counter<'direction'>
  /** Publishes to a broker that failed or were dropped, by `broker` and `reason`. */
  readonly publishFailures: Counter<'broker' | 'reason'>
  /** MQTT clients connected to the embedded broker. */
  readonly clients: Gauge
  /** Readings outside the model's min/max, stored and flagged (compat mode). */
  readonly outOfRange: Counter
}

export function createDeviceMetrics (registry: Registry): DeviceMetrics {
  const registers = [registry]
  const p = 'edgefabric_edge_device_'
  return {
    twinUpdates: new Counter({ name: p + 'twin_updates_total', help: 'Twin updates applied, by source (mapper|cloud)', labelNames: ['source'] as const, registers }),
    deltas: new Counter({ name: p + 'twin_deltas_total', help: 'Twin deltas published to mappers', registers }),
    errors: new Counter({ name: p + 'request_errors_total', help: 'Refused mapper requests, by error code', labelNames: ['code'] as const, registers }),
    denials: new Counter({ name: p + 'acl_denials_total', help: 'Embedded broker authentication/authorization denials, by action', labelNames: ['action'] as const, registers }),
    uploads: new Counter({ name: p + 'uploads_total', help: 'Upload records forwarded to the cloud', registers }),
    logins: new Counter({ name: p + 'mqtt_logins_total', help: 'MQTT CONNECT credential checks by outcome (ok-* served; the rest refused, by reason)', labelNames: ['outcome'] as const, registers }),
    resyncs: new Counter({ name: p + 'resyncs_total', help: 'Full twin resyncs, by direction (up: edge asked; down: cloud asked)', labelNames: ['direction'] as const, registers }),
    publishFailures: new Counter({ name: p + 'publish_failures_total', help: 'Broker publishes that failed or were dropped, by broker and reason', labelNames: ['broker', 'reason'] as const, registers }),
    clients: new Gauge({ name: p + 'mqtt_clients', help: 'MQTT clients connected to the embedded broker', registers }),
    outOfRange: new Counter({ name: p + 'out_of_range_readings_total', help: 'Readings outside the model min/max, stored and flagged', registers })
  }
}
