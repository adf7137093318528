/**
 * DMI metrics on the edge's registry (DESIGN.md §10; `edgefabric_edge_dmi_*`,
 * closed label sets: rpc names come from the proto, results from a fixed list).
 */
import { Counter, Gauge, type Registry } from 'prom-client'

export interface DmiMetrics {
  /** Calls served (DeviceManagerService), by `rpc` and `result` (ok|refused|error). */
  readonly served: Counter<'rpc' | 'result'>
  /** Calls made to mappers (DeviceMapperService), by `rpc` and `result` (ok|unavailable|refused). */
  readonly pushes: Counter<'rpc' | 'result'>
  /** Registered mappers. */
  readonly mappers: Gauge
  /** Mappers with changes not yet acknowledged (waiting to retry). */
  readonly behind: Gauge
}

export function createDmiMetrics (registry: Registry): DmiMetrics {
  const registers = [registry]
  const p = 'edgefabric_edge_dmi_'
  return {
    served: new Counter({ name: p + 'served_total', help: 'DMI DeviceManagerService calls served, by rpc and result (ok|refused|error)', labelNames: ['rpc', 'result'] as const, registers }),
    pushes: new Counter({ name: p + 'pushes_total', help: 'DMI DeviceMapperService calls to mappers, by rpc and result (ok|unavailable|refused)', labelNames: ['rpc', 'result'] as const, registers }),
    mappers: new Gauge({ name: p + 'mappers', help: 'Registered DMI mappers', registers }),
    behind: new Gauge({ name: p + 'mappers_behind', help: 'DMI mappers with changes not yet acknowledged (retrying)', registers })
  }
}
