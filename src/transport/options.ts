/**
 * Connection options: validated once, defaults applied, frozen.
 */
import { defaultCodec, type EnvelopeCodec } from '../codec/codec.js'
import { InvalidOptionError } from '../errors.js'
import { intOption } from '../util/options.js'
import type { ConnectionOptions } from './types.js'

const KiB = 1024
const MiB = 1024 * KiB

export interface ResolvedConnectionOptions {
  readonly maxFrameSize: number
  readonly highWaterMark: number
  readonly maxSendBuffer: number
  readonly maxInboundBuffer: number
  readonly closeTimeoutMs: number
  readonly codec: EnvelopeCodec
}

export const DEFAULT_MAX_FRAME_SIZE = 16 * MiB

/** The largest frame a 4-byte length prefix can describe. */
const MAX_FRAME_LIMIT = 0xffff_ffff

export function resolveConnectionOptions (opts: ConnectionOptions = {}): ResolvedConnectionOptions {
  const maxFrameSize = intOption('maxFrameSize', opts.maxFrameSize, DEFAULT_MAX_FRAME_SIZE, 64, MAX_FRAME_LIMIT)
  const highWaterMark = intOption('highWaterMark', opts.highWaterMark, 1 * MiB, 1)
  const minSend = maxFrameSize + highWaterMark
  const maxSendBuffer = intOption('maxSendBuffer', opts.maxSendBuffer, Math.max(64 * MiB, minSend), 1)
  if (maxSendBuffer < minSend) {
    throw new InvalidOptionError('maxSendBuffer', `must be at least maxFrameSize + highWaterMark (${minSend}), got ${maxSendBuffer}`)
  }
  const maxInboundBuffer = intOption('maxInboundBuffer', opts.maxInboundBuffer, 4 * MiB, 1)
  const closeTimeoutMs = intOption('closeTimeoutMs', opts.closeTimeoutMs, 5000, 0)
  const codec = opts.codec ?? defaultCodec
  if (typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new InvalidOptionError('codec', 'must have encode() and decode() functions')
  }
  return Object.freeze({ maxFrameSize, highWaterMark, maxSendBuffer, maxInboundBuffer, closeTimeoutMs, codec })
}
