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
  /** ACL / authentication denials, by `action` (connect|publish|subscribe|oversize|client-id|session-quota); kept for existing dashboards, `mqttDenials` says why. */
  readonly denials: Counter<'action'>
  /** Upload records forwarded to the cloud. */
  readonly uploads: Counter
  /** MQTT CONNECT credential checks by `outcome` (auth.ts LoginOutcome: ok-local|ok-cached|ok-checked|bad-credentials|source-blocked|username-budget|source-pending|queue-full|queue-timeout|anonymous; issue 13 item 8). */
  readonly logins: Counter<'outcome'>
  /** Full resyncs, by `direction` (up: edge asked the cloud; down: the cloud asked the edge). */
  readonly resyncs: Counter<'direction'>
  /** Publishes to a broker that failed or were dropped, by `broker` and `reason`. */
  readonly publishFailures: Counter<'broker' | 'reason'>
  /** MQTT clients connected to the embedded broker, by `listener` (tcp|tls|ws); read from the broker at scrape time. */
  readonly clients: Gauge<'listener'>
  /** Subscriptions held by the connected clients; read from the broker at scrape time. */
  readonly subscriptions: Gauge
  /** Embedded broker refusals by `reason` (MQTT_DENIAL_REASONS, pre-initialised to 0). */
  readonly mqttDenials: Counter<'reason'>
  /** Where the two gauges read from: the running embedded broker sets it, and clears it when it closes. */
  broker: BrokerGaugeSource | undefined
  /** Readings outside the model's min/max, stored and flagged (compat mode). */
  readonly outOfRange: Counter
}

export interface BrokerGaugeSource {
  clientsByListener (): Record<MqttListener, number>
  subscriptions (): number
}

export type MqttListener = 'tcp' | 'tls' | 'ws'
const LISTENERS: readonly MqttListener[] = ['tcp', 'tls', 'ws']

/**
 * Why the embedded broker refused something: a closed set, so a dashboard can show every reason
 * at 0 before it first happens. Connect: bad_credentials (wrong or unknown username/password),
 * not_authorized (no credentials where anonymous access is off or the peer is not on loopback),
 * client_id_owned (the client id or its session belongs to another principal), session_quota,
 * source_blocked (too many failed logins from the address), server_busy (credential checks
 * saturated). After connect: publish_acl, subscribe_acl, packet_too_large.
 */
export const MQTT_DENIAL_REASONS = ['bad_credentials', 'not_authorized', 'client_id_owned', 'session_quota', 'source_blocked', 'server_busy', 'publish_acl', 'subscribe_acl', 'packet_too_large'] as const
export type MqttDenialReason = typeof MQTT_DENIAL_REASONS[number]

export function createDeviceMetrics (registry: Registry): DeviceMetrics {
  const registers = [registry]
  const p = 'edgefabric_edge_device_'
  const mqttDenials = new Counter({ name: p + 'mqtt_denials_total', help: 'Embedded MQTT broker refusals (connect, publish, subscribe, packet size), by reason', labelNames: ['reason'] as const, registers })
  for (const reason of MQTT_DENIAL_REASONS) mqttDenials.inc({ reason }, 0)
  const m: DeviceMetrics = {
    twinUpdates: new Counter({ name: p + 'twin_updates_total', help: 'Twin updates applied, by source (mapper|cloud)', labelNames: ['source'] as const, registers }),
    deltas: new Counter({ name: p + 'twin_deltas_total', help: 'Twin deltas published to mappers', registers }),
    errors: new Counter({ name: p + 'request_errors_total', help: 'Refused mapper requests, by error code', labelNames: ['code'] as const, registers }),
    denials: new Counter({ name: p + 'acl_denials_total', help: 'Embedded broker authentication/authorization denials, by action', labelNames: ['action'] as const, registers }),
    uploads: new Counter({ name: p + 'uploads_total', help: 'Upload records forwarded to the cloud', registers }),
    logins: new Counter({ name: p + 'mqtt_logins_total', help: 'MQTT CONNECT credential checks by outcome (ok-* served; the rest refused, by reason)', labelNames: ['outcome'] as const, registers }),
    resyncs: new Counter({ name: p + 'resyncs_total', help: 'Full twin resyncs, by direction (up: edge asked; down: cloud asked)', labelNames: ['direction'] as const, registers }),
    publishFailures: new Counter({ name: p + 'publish_failures_total', help: 'Broker publishes that failed or were dropped, by broker and reason', labelNames: ['broker', 'reason'] as const, registers }),
    // Counted from the broker's live client table at scrape time: an inc/dec pair drifts if one event is missed.
    clients: new Gauge({
      name: p + 'mqtt_clients',
      help: 'MQTT clients connected to the embedded broker, by listener (tcp|tls|ws)',
      labelNames: ['listener'] as const,
      registers,
      collect () {
        const by = m.broker?.clientsByListener()
        for (const l of LISTENERS) this.set({ listener: l }, by?.[l] ?? 0)
      }
    }),
    subscriptions: new Gauge({
      name: p + 'mqtt_subscriptions',
      help: 'Subscriptions held by the MQTT clients connected to the embedded broker',
      registers,
      collect () { this.set(m.broker?.subscriptions() ?? 0) }
    }),
    mqttDenials,
    broker: undefined,
    outOfRange: new Counter({ name: p + 'out_of_range_readings_total', help: 'Readings outside the model min/max, stored and flagged', registers })
  }
  return m
}
