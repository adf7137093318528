/**
 * Converting and validating one config value, from text (flag, environment)
 * or JSON (config file, schema default), with the error message naming the
 * source: `--x: ...`, `ENV_X: ...`, `config file /p: "x" ...`.
 */
import { ConfigError, InvalidOptionError } from '../errors.js'
import { formatDuration, parseBoolean, parseDuration, parseIntStrict, parseNumberStrict, suggest } from './values.js'
import type { Compiled, EnumOptionSpec, Origin } from './schema.js'

function fail (c: Compiled, origin: Origin, msg: string): never {
  switch (origin.kind) {
    case 'flag':
    case 'env': throw new ConfigError(origin.name, c.key, msg)
    case 'file': throw new ConfigError(`config file ${origin.path}`, c.key, `"${c.key}" ${msg}`)
    case 'schema': throw new InvalidOptionError(`schema.${c.key}.default`, msg)
  }
}

/** A value written as text (flag or environment variable). */
export function convertText (c: Compiled, text: string, origin: Origin): unknown {
  const s = c.spec
  const got = `got ${JSON.stringify(text.length > 60 ? text.slice(0, 60) + '…' : text)}`
  switch (s.type) {
    case 'string':
      if (text === '') fail(c, origin, 'must not be empty')
      return text
    case 'int': return range(c, origin, parseIntStrict(text) ?? fail(c, origin, `must be an integer, ${got}`))
    case 'number': return range(c, origin, parseNumberStrict(text) ?? fail(c, origin, `must be a number, ${got}`))
    case 'duration': return range(c, origin, parseDuration(text) ?? fail(c, origin, `must be a duration like 5s or 500ms, ${got}`))
    case 'boolean': return parseBoolean(text) ?? fail(c, origin, `must be true or false, ${got}`)
    case 'enum': return enumValue(c, origin, text)
    case 'string[]': return convertList(c, [text], origin)
  }
}

export function convertList (c: Compiled, items: string[], origin: Origin): readonly string[] {
  for (const it of items) if (it === '') fail(c, origin, 'must not contain empty entries')
  return items
}

/** A value from the JSON config file, or a schema default. */
export function convertJson (c: Compiled, v: unknown, origin: Origin): unknown {
  const s = c.spec
  const got = `got ${jsonKind(v)}`
  switch (s.type) {
    case 'string':
      if (typeof v !== 'string' || v === '') fail(c, origin, `must be a non-empty string, ${got}`)
      return v
    case 'int':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(c, origin, `must be an integer, ${got}`)
      return range(c, origin, v)
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(c, origin, `must be a number, ${got}`)
      return range(c, origin, v)
    case 'duration': {
      const ms = typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : typeof v === 'string' ? parseDuration(v) : undefined
      if (ms === undefined) fail(c, origin, `must be a duration like "5s" or a number of milliseconds, ${got}`)
      return range(c, origin, ms)
    }
    case 'boolean':
      if (typeof v !== 'boolean') fail(c, origin, `must be true or false, ${got}`)
      return v
    case 'enum':
      if (typeof v !== 'string') fail(c, origin, `must be one of ${s.values.map(x => JSON.stringify(x)).join(', ')}, ${got}`)
      return enumValue(c, origin, v)
    case 'string[]':
      if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) fail(c, origin, `must be an array of strings, ${got}`)
      return Object.freeze(convertList(c, [...v as string[]], origin))
  }
}

function enumValue (c: Compiled, origin: Origin, text: string): string {
  const values = (c.spec as EnumOptionSpec).values
  if (values.includes(text)) return text
  const s = suggest(text, values)
  const shown = JSON.stringify(text.length > 60 ? text.slice(0, 60) + '…' : text)
  return fail(c, origin, `must be one of ${values.map(x => JSON.stringify(x)).join(', ')}, got ${shown}${s === undefined ? '' : ` (did you mean "${s}"?)`}`)
}

function range (c: Compiled, origin: Origin, n: number): number {
  const { min, max } = c
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    const want = min !== undefined && max !== undefined
      ? `between ${fmt(c, min)} and ${fmt(c, max)}`
      : min !== undefined ? `at least ${fmt(c, min)}` : `at most ${fmt(c, max as number)}`
    fail(c, origin, `must be ${want}, got ${fmt(c, n)}`)
  }
  return n
}

export function fmt (c: Compiled, n: number): string {
  return c.spec.type === 'duration' ? formatDuration(n) : String(n)
}

export function jsonKind (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v)
  return String(v)
}
