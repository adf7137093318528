/**
 * Validation of DeviceRegistryOptions (registry-types.ts), once, with
 * messages naming the option (`devices.*`, as the hub's `devices` option).
 */
import { InvalidOptionError } from '../../errors.js'
import { intOption } from '../../util/options.js'
import type { DeviceRegistryOptions } from './registry-types.js'

/** The numeric limits, defaults applied (see DeviceRegistryOptions for each @default). */
export interface RegistryLimits {
  readonly watchBuffer: number
  readonly maxWatchers: number
  readonly maxUploads: number
  readonly maxUploadBytes: number
  readonly retryMs: number
}

export function resolveRegistryOptions (options: DeviceRegistryOptions): RegistryLimits {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('devices', 'must be an object')
  if (options.path !== undefined && (typeof options.path !== 'string' || options.path === '')) throw new InvalidOptionError('devices.path', 'must be a directory path')
  if (options.durability !== undefined && options.durability !== 'sync' && options.durability !== 'relaxed') throw new InvalidOptionError('devices.durability', 'must be "sync" or "relaxed"')
  if (options.sink !== undefined && typeof options.sink?.sendReliable !== 'function') throw new InvalidOptionError('devices.sink', 'must have sendReliable(nodeId, envelope)')
  return Object.freeze({
    watchBuffer: intOption('devices.watchBuffer', options.watchBuffer, 1024, 1, 1_000_000),
    maxWatchers: intOption('devices.maxWatchers', options.maxWatchers, 1024, 1, 100_000),
    maxUploads: intOption('devices.maxUploads', options.maxUploads, 10_000, 1, 10_000_000),
    maxUploadBytes: intOption('devices.maxUploadBytes', options.maxUploadBytes, 65_536, 1, 16 * 1024 * 1024),
    retryMs: intOption('devices.retryMs', options.retryMs, 5000, 10, 3_600_000)
  })
}
