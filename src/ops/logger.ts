/**
 * Structured logging (pino), shared by hub and edge.
 *
 * Quiet by default (`warn`): an idle hub or edge should print nothing. Logs go
 * to stderr, not stdout, because the CLI prints its own output (`status`,
 * the demo's live summary) on stdout and the two must not interleave.
 *
 * Components log through a child logger that names them:
 *   const log = logger.child({ component: 'hub.session' })
 */
import pino from 'pino'
import type { Logger as PinoLogger, DestinationStream, LoggerOptions as PinoOptions } from 'pino'
import { enumOption, stringOption } from '../util/options.js'

export type Logger = PinoLogger

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

export interface CreateLoggerOptions {
  /** Default `warn`. Validated; a bad value throws InvalidOptionError naming `logLevel`. */
  level?: string
  /** Logger name, emitted as `name` on every line (e.g. `edgefabric-hub`). */
  name?: string
  /**
   * Where lines go. Default: stderr (fd 2), written synchronously so nothing is
   * lost when the process exits or crashes. A string is a file path (appended,
   * written asynchronously; pino flushes it on exit). A number is a file descriptor.
   */
  destination?: DestinationStream | NodeJS.WritableStream | string | number
}

/**
 * Field paths whose values must never reach a log: join tokens and key
 * material identify and authorize a node, and logs get shipped and shared.
 */
const REDACT_PATHS = [
  'token', '*.token', 'joinToken', '*.joinToken',
  'privateKey', '*.privateKey', 'password', '*.password',
  'authorization', 'headers.authorization', '*.headers.authorization',
  'headers.cookie', '*.headers.cookie'
]

export function isLogLevel (value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)
}

export function createLogger (options: CreateLoggerOptions = {}): Logger {
  const level = enumOption<LogLevel>('logLevel', options.level, LOG_LEVELS, 'warn')
  const name = stringOption('name', options.name)
  const pinoOptions: PinoOptions = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  if (name !== undefined) pinoOptions.name = name
  return pino(pinoOptions, resolveDestination(options.destination))
}

function resolveDestination (dest: CreateLoggerOptions['destination']): DestinationStream {
  if (dest === undefined) return pino.destination({ dest: 2, sync: true })
  if (typeof dest === 'number') return pino.destination({ dest, sync: true })
  if (typeof dest === 'string') return pino.destination({ dest, sync: false, mkdir: true, append: true })
  return dest as DestinationStream
}

/**
 * A logger that discards everything: the default for library users who pass
 * none, and for tests. Its stream is a no-op so importing this module opens
 * no file descriptor.
 */
export const nullLogger: Logger = pino({ level: 'silent' }, { write () {} })
