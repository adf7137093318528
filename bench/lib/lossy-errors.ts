/** Typed errors of the lossy-link benchmark (bench/lossy.ts), stable codes as in src/errors.ts. */
import { EdgeFabricError, type ErrorOptions } from '../../src/errors.js'

/** Something the emulator needs is missing: root, `ip`, gcc, /dev/net/tun. `missing` names each. */
export class LossyPrerequisiteError extends EdgeFabricError {
  static readonly code = 'EF_BENCH_PREREQUISITE'
  readonly missing: string[]
  constructor (missing: string[], options?: ErrorOptions) {
    super(LossyPrerequisiteError.code, `bench lossy needs: ${missing.join('; ')}`, options)
    this.missing = missing
  }
}

/** The C tools did not compile. */
export class LossyToolBuildError extends EdgeFabricError {
  static readonly code = 'EF_BENCH_BUILD'
  constructor (message: string, options?: ErrorOptions) { super(LossyToolBuildError.code, message, options) }
}

/** Namespaces, the wire or a child process could not be set up, or the wire refused a command. */
export class LossySetupError extends EdgeFabricError {
  static readonly code = 'EF_BENCH_SETUP'
  constructor (message: string, options?: ErrorOptions) { super(LossySetupError.code, message, options) }
}
