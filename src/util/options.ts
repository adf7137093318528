/**
 * Option validation helpers, shared by every layer: validate once, name the
 * option in the message (fastify style), then freeze.
 */
import { InvalidOptionError } from '../errors.js'

export function intOption (name: string, value: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return def
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new InvalidOptionError(name, `must be an integer, got ${describe(value)}`)
  if (value < min || value > max) throw new InvalidOptionError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

export function numberOption (name: string, value: unknown, def: number, min: number, max = Number.MAX_VALUE): number {
  if (value === undefined) return def
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidOptionError(name, `must be a finite number, got ${describe(value)}`)
  if (value < min || value > max) throw new InvalidOptionError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

export function stringOption (name: string, value: unknown, def?: string): string | undefined {
  if (value === undefined) return def
  if (typeof value !== 'string' || value.length === 0) throw new InvalidOptionError(name, `must be a non-empty string, got ${describe(value)}`)
  return value
}

export function boolOption (name: string, value: unknown, def: boolean): boolean {
  if (value === undefined) return def
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, `must be a boolean, got ${describe(value)}`)
  return value
}

export function enumOption<T extends string> (name: string, value: unknown, allowed: readonly T[], def: T): T {
  if (value === undefined) return def
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidOptionError(name, `must be one of ${allowed.map(a => JSON.stringify(a)).join(', ')}, got ${describe(value)}`)
  }
  return value as T
}

export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  return typeof value
}
