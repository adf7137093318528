/**
 * Which QUIC engine and congestion controller a quic system of the lossy
 * bench runs (issue 18): resolved here with that system's environment
 * (TransportDef.env), the same way its child processes resolve it
 * (src/transport/quic-engine.ts chooseQuicEngine, quic-options.ts), so the
 * report names what was measured instead of assuming the default.
 */
import { toError } from '../../src/errors.js'
import { chooseQuicEngine } from '../../src/transport/quic-engine.js'
import { resolveQuicOptions } from '../../src/transport/quic-options.js'
import type { TransportDef } from './lossy-profiles.js'

const KEYS = ['EDGEFABRIC_QUIC_ENGINE', 'EDGEFABRIC_QUIC_CC'] as const

/** `engine edgefabric, cubic` for a quic system; undefined for other schemes. Throws when the engine cannot load. */
export async function quicEngineMode (t: TransportDef): Promise<string | undefined> {
  if (t.scheme !== 'quic') return undefined
  const saved = KEYS.map(k => process.env[k])
  try {
    for (const k of KEYS) if (t.env?.[k] !== undefined) process.env[k] = t.env[k]
    const choice = await chooseQuicEngine('auto')
    const cc = choice.engine.name === 'edgefabric' ? resolveQuicOptions({}).congestionController : 'cubic'
    return `engine ${choice.engine.name}, ${cc}`
  } catch (err) {
    throw new Error(`quic engine: ${toError(err).message}`, { cause: err })
  } finally {
    KEYS.forEach((k, i) => { if (saved[i] === undefined) delete process.env[k]; else process.env[k] = saved[i] })
  }
}
