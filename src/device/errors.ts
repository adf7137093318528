/**
 * Typed errors of the cloud device API (DESIGN.md §8). Codes are stable; the
 * admin HTTP API maps them to statuses with `httpStatusOf` and returns
 * `{code, message}`. Every rejection is also counted
 * (edgefabric_hub_device_rejections_total{code}).
 */
import { EdgeFabricError, type ErrorOptions } from '../errors.js'

/** Base class of every device API error; `field` names the offending input when there is one. */
export class DeviceError extends EdgeFabricError {
  readonly field: string | undefined
  constructor (code: string, message: string, field?: string, options?: ErrorOptions) {
    super(code, message, options)
    this.field = field
  }
}

/** A device model failed validation (names, types, min/max, default). */
export class InvalidDeviceModelError extends DeviceError {
  static readonly code = 'EF_DEVICE_MODEL_INVALID'
  constructor (field: string, message: string) { super(InvalidDeviceModelError.code, `invalid device model: ${field}: ${message}`, field) }
}

/** A device spec failed validation (names, labels, attributes, node). */
export class InvalidDeviceSpecError extends DeviceError {
  static readonly code = 'EF_DEVICE_SPEC_INVALID'
  constructor (field: string, message: string) { super(InvalidDeviceSpecError.code, `invalid device: ${field}: ${message}`, field) }
}

export class DeviceModelNotFoundError extends DeviceError {
  static readonly code = 'EF_DEVICE_MODEL_NOT_FOUND'
  constructor (id: string) { super(DeviceModelNotFoundError.code, `device model ${id} does not exist`, 'model') }
}

/** deleteModel while devices still use the model. */
export class DeviceModelInUseError extends DeviceError {
  static readonly code = 'EF_DEVICE_MODEL_IN_USE'
  readonly devices: string[]
  constructor (id: string, devices: string[]) {
    super(DeviceModelInUseError.code, `device model ${id} is used by ${devices.length} device(s), e.g. ${devices.slice(0, 5).join(', ')}`)
    this.devices = devices
  }
}

export class DeviceNotFoundError extends DeviceError {
  static readonly code = 'EF_DEVICE_NOT_FOUND'
  constructor (id: string) { super(DeviceNotFoundError.code, `device ${id} does not exist`) }
}

export class MapperNotFoundError extends DeviceError {
  static readonly code = 'EF_DEVICE_MAPPER_NOT_FOUND'
  constructor (id: string) { super(MapperNotFoundError.code, `mapper ${id} does not exist`) }
}

/** setDesired / edge expected value names a property the model does not have. */
export class UnknownPropertyError extends DeviceError {
  static readonly code = 'EF_DEVICE_UNKNOWN_PROPERTY'
  constructor (property: string, model: string) { super(UnknownPropertyError.code, `property ${JSON.stringify(property)} is not in model ${model}`, property) }
}

/** A desired value for a ReadOnly property (only the device reports it). */
export class ReadOnlyPropertyError extends DeviceError {
  static readonly code = 'EF_DEVICE_READ_ONLY'
  constructor (property: string) { super(ReadOnlyPropertyError.code, `property ${JSON.stringify(property)} is ReadOnly: only the device reports it`, property) }
}

/** A value of the wrong type for its property (int/float/string/boolean). */
export class PropertyTypeError extends DeviceError {
  static readonly code = 'EF_DEVICE_TYPE_MISMATCH'
  constructor (property: string, message: string) { super(PropertyTypeError.code, `property ${JSON.stringify(property)}: ${message}`, property) }
}

/** A numeric value outside the property's [minimum, maximum]. */
export class PropertyRangeError extends DeviceError {
  static readonly code = 'EF_DEVICE_OUT_OF_RANGE'
  constructor (property: string, message: string) { super(PropertyRangeError.code, `property ${JSON.stringify(property)}: ${message}`, property) }
}

/**
 * A watcher fell more than its buffer behind and was closed (it missed
 * changes: re-read with getDevice/listDevices, then watch again — the
 * Kubernetes "410 Gone" contract, never a silent gap).
 */
export class WatchOverflowError extends DeviceError {
  static readonly code = 'EF_DEVICE_WATCH_OVERFLOW'
  constructor (limit: number) { super(WatchOverflowError.code, `watcher fell more than ${limit} changes behind and was closed; re-list and watch again`) }
}

/** watch() beyond `maxWatchers`. */
export class TooManyWatchersError extends DeviceError {
  static readonly code = 'EF_DEVICE_TOO_MANY_WATCHERS'
  constructor (max: number) { super(TooManyWatchersError.code, `at most ${max} device watchers may be open`) }
}

export class DeviceRegistryClosedError extends DeviceError {
  static readonly code = 'EF_DEVICE_REGISTRY_CLOSED'
  constructor () { super(DeviceRegistryClosedError.code, 'the device registry is closed') }
}

/** An upstream `$device` message from an edge that cannot be applied (malformed, unknown device, not bound there). */
export class DeviceReportError extends DeviceError {
  static readonly code = 'EF_DEVICE_BAD_REPORT'
  readonly reason: string
  constructor (reason: string, message: string) {
    super(DeviceReportError.code, message)
    this.reason = reason
  }
}

/**
 * Cluster mode (src/cluster/registry-store.ts): the change lost the race for
 * the keys it read to other hubs' changes on every one of its attempts (each
 * attempt re-runs the checks on the newer state, so a single race never
 * reaches the caller). Nothing was applied; retry later.
 */
export class DeviceConflictError extends DeviceError {
  static readonly code = 'EF_DEVICE_CONFLICT'
  constructor (attempts: number) { super(DeviceConflictError.code, `the change conflicted with concurrent changes from other hubs ${attempts} times and was not applied; retry`) }
}

/** HTTP status for a device API error code (admin HTTP API). */
export function httpStatusOf (code: string): number {
  switch (code) {
    case DeviceNotFoundError.code:
    case DeviceModelNotFoundError.code:
    case MapperNotFoundError.code:
      return 404
    case DeviceModelInUseError.code:
    case DeviceConflictError.code:
      return 409
    case 'EF_CLUSTER_UNAVAILABLE':
      return 503
    case DeviceRegistryClosedError.code:
    case TooManyWatchersError.code:
      return 503
    case InvalidDeviceModelError.code:
    case InvalidDeviceSpecError.code:
    case UnknownPropertyError.code:
    case ReadOnlyPropertyError.code:
    case PropertyTypeError.code:
    case PropertyRangeError.code:
      return 422
    default:
      return 500
  }
}
