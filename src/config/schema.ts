/**
 * Config schema types and compilation (see src/config/config.ts for the overview).
 * A schema is validated once; mistakes in it are programmer errors
 * (InvalidOptionError naming `schema.<key>.<field>`).
 */
import { InvalidOptionError } from '../errors.js'
import { parseDuration } from './values.js'
import { convertJson } from './convert.js'

export interface BaseSpec {
  description: string
  required?: boolean
  /** Environment variable name, e.g. `EDGEFABRIC_HUB_URL`. None unless given. */
  env?: string
  /** Long flag without dashes; default kebab-case of the key; `false` = not settable by flag. */
  flag?: string | false
  /** One-letter alias, e.g. `n` for `-n`. */
  short?: string
  /** Placeholder in the help text, e.g. `url` -> `--hub-url <url>`. */
  placeholder?: string
}
export interface StringOptionSpec extends BaseSpec { type: 'string', default?: string }
export interface NumberOptionSpec extends BaseSpec { type: 'int' | 'number', default?: number, min?: number, max?: number }
/** Values in milliseconds; defaults and bounds may be written as `5s`. */
export interface DurationOptionSpec extends BaseSpec { type: 'duration', default?: number | string, min?: number | string, max?: number | string }
/** Defaults to false. Flags: `--x`, `--no-x`, `--x=false`. */
export interface BooleanOptionSpec extends BaseSpec { type: 'boolean', default?: boolean }
/** Defaults to []. Flags repeat (`--listen a --listen b`); env is comma-separated; file is a JSON array. */
export interface ListOptionSpec extends BaseSpec { type: 'string[]', default?: readonly string[] }
export interface EnumOptionSpec extends BaseSpec { type: 'enum', values: readonly string[], default?: string }
export type OptionSpec = StringOptionSpec | NumberOptionSpec | DurationOptionSpec | BooleanOptionSpec | ListOptionSpec | EnumOptionSpec
export type ConfigSchema = Readonly<Record<string, OptionSpec>>

type ValueOf<O> =
  O extends { type: 'enum', values: readonly (infer V)[] } ? V
    : O extends { type: 'string' } ? string
      : O extends { type: 'int' | 'number' | 'duration' } ? number
        : O extends { type: 'boolean' } ? boolean
          : O extends { type: 'string[]' } ? readonly string[]
            : never
type AlwaysSet<O> =
  O extends { type: 'boolean' | 'string[]' } ? true
    : O extends { required: true } ? true
      : O extends { default: unknown } ? true : false

/** The typed, frozen result of `loadConfig(schema)`. Durations are milliseconds. */
export type ConfigValues<S extends ConfigSchema> = {
  readonly [K in keyof S]: AlwaysSet<S[K]> extends true ? ValueOf<S[K]> : ValueOf<S[K]> | undefined
}

/** Flags the loader handles itself. */
export const RESERVED_FLAGS = new Set(['config', 'help'])

/** A schema entry with its flag/env names and bounds resolved and its default converted. */
export interface Compiled {
  key: string
  spec: OptionSpec
  flag: string | undefined
  short: string | undefined
  env: string | undefined
  min: number | undefined
  max: number | undefined
  def: unknown
}

/** Where a value came from; decides how an error message starts. */
export type Origin = { kind: 'flag' | 'env', name: string } | { kind: 'file', path: string } | { kind: 'schema' }

const compiledSchemas = new WeakMap<ConfigSchema, Compiled[]>()

/** Validate a schema once (programmer errors throw InvalidOptionError) and return it, typed for `loadConfig`. */
export function defineConfig<const S extends ConfigSchema> (schema: S): S {
  compile(schema)
  return schema
}

/** Validate and resolve a schema (cached per schema object). */
export function compile (schema: ConfigSchema): Compiled[] {
  const cached = compiledSchemas.get(schema)
  if (cached !== undefined) return cached
  const list: Compiled[] = []
  const flags = new Map<string, string>()
  const shorts = new Map<string, string>()
  const envs = new Map<string, string>()
  for (const [key, spec] of Object.entries(schema)) {
    const bad = (what: string, msg: string): never => { throw new InvalidOptionError(`schema.${key}${what}`, msg) }
    if (!/^[a-z][a-zA-Z0-9]*$/.test(key)) bad('', 'keys must be camelCase')
    if (typeof spec.description !== 'string' || spec.description === '') bad('.description', 'is required')
    const flag = spec.flag === false ? undefined : spec.flag ?? key.replace(/[A-Z]/g, ch => '-' + ch.toLowerCase())
    if (flag !== undefined) {
      if (!/^[a-z][a-z0-9-]*$/.test(flag) || flag.startsWith('no-')) bad('.flag', `"${flag}" is not a valid flag name`)
      if (RESERVED_FLAGS.has(flag)) bad('.flag', `"--${flag}" is reserved`)
      if (flags.has(flag)) bad('.flag', `"--${flag}" is also used by "${flags.get(flag) ?? ''}"`)
      flags.set(flag, key)
    }
    if (spec.short !== undefined) {
      if (!/^[a-zA-Z]$/.test(spec.short) || spec.short === 'h') bad('.short', `"${spec.short}" must be one letter other than h`)
      if (shorts.has(spec.short)) bad('.short', `"-${spec.short}" is also used by "${shorts.get(spec.short) ?? ''}"`)
      shorts.set(spec.short, key)
    }
    if (spec.env !== undefined) {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(spec.env)) bad('.env', `"${spec.env}" is not a valid variable name`)
      if (envs.has(spec.env)) bad('.env', `"${spec.env}" is also used by "${envs.get(spec.env) ?? ''}"`)
      envs.set(spec.env, key)
    }
    if (spec.type === 'enum' && (!Array.isArray(spec.values) || spec.values.length === 0)) bad('.values', 'an enum needs values')
    const c: Compiled = { key, spec, flag, short: spec.short, env: spec.env, min: undefined, max: undefined, def: undefined }
    const schemaOrigin: Origin = { kind: 'schema' }
    if (spec.type === 'int' || spec.type === 'number' || spec.type === 'duration') {
      c.min = bound(c, spec.min, '.min')
      c.max = bound(c, spec.max, '.max')
      if (c.min !== undefined && c.max !== undefined && c.min > c.max) bad('.min', 'is greater than max')
    }
    if (spec.default !== undefined) {
      if (spec.required === true) bad('.required', 'a required option cannot have a default')
      c.def = convertJson(c, spec.default, schemaOrigin)
    } else if (spec.type === 'boolean') c.def = false
    else if (spec.type === 'string[]') c.def = []
    list.push(c)
  }
  compiledSchemas.set(schema, list)
  return list
}

function bound (c: Compiled, v: number | string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined
  const n = typeof v === 'string' && c.spec.type === 'duration' ? parseDuration(v) : v
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new InvalidOptionError(`schema.${c.key}${what}`, `must be a number${c.spec.type === 'duration' ? ' or duration' : ''}`)
  return n
}
