/**
 * Reading the three config sources: command-line flags, the JSON file, and
 * (for strict mode) unknown environment variables.
 */
import { readFileSync, statSync } from 'node:fs'
import { ConfigError, HelpRequestedError } from '../errors.js'
import { suggest } from './values.js'
import { convertJson, convertText, jsonKind } from './convert.js'
import { configHelp } from './help.js'
import type { Compiled, ConfigSchema, Origin } from './schema.js'

/** Config files are small; a huge one is a mistake (wrong path), not configuration. */
const MAX_FILE_BYTES = 1024 * 1024

export function parseArgv (schema: ConfigSchema, list: Compiled[], argv: readonly string[], configEnv: string): { values: Map<string, unknown>, configPath: string | undefined } {
  const byFlag = new Map(list.filter(c => c.flag !== undefined).map(c => [c.flag as string, c]))
  const byShort = new Map(list.filter(c => c.short !== undefined).map(c => [c.short as string, c]))
  const texts = new Map<string, { origin: Origin, texts: string[] }>()
  const values = new Map<string, unknown>()
  let configPath: string | undefined
  const isOptionLike = (a: string | undefined): boolean => a === undefined || a.startsWith('--') || /^-[a-zA-Z]$/.test(a)

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--help' || arg === '-h') throw new HelpRequestedError(configHelp(schema, { configEnv }))
    if (arg === '--') {
      const extra = argv[i + 1]
      if (extra !== undefined) throw new ConfigError('arguments', extra, `unexpected argument ${JSON.stringify(extra)}`)
      break
    }
    let name: string
    let inline: string | undefined
    let c: Compiled | undefined
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      name = eq === -1 ? arg : arg.slice(0, eq)
      inline = eq === -1 ? undefined : arg.slice(eq + 1)
      const bare = name.slice(2)
      if (bare === 'config') {
        const v = inline ?? (isOptionLike(argv[i + 1]) ? undefined : argv[++i])
        if (v === undefined || v === '') throw new ConfigError(name, 'config', 'needs a value (a path to a JSON file)')
        if (configPath !== undefined) throw new ConfigError(name, 'config', 'given more than once')
        configPath = v
        continue
      }
      c = byFlag.get(bare)
      if (c === undefined && bare.startsWith('no-')) {
        const neg = byFlag.get(bare.slice(3))
        if (neg !== undefined && neg.spec.type !== 'boolean') throw new ConfigError(name, bare, `unknown option (--${bare.slice(3)} takes a value; only true/false options can be negated)`)
        if (neg !== undefined) {
          if (inline !== undefined) throw new ConfigError(name, neg.key, 'takes no value')
          setOnce(values, texts, neg, { kind: 'flag', name }, false)
          continue
        }
      }
      if (c === undefined) {
        const s = suggest(bare, [...byFlag.keys(), 'config', 'help'])
        throw new ConfigError(name, bare, `unknown option${s === undefined ? '' : ` (did you mean --${s}?)`}`)
      }
    } else if (/^-[a-zA-Z]$/.test(arg)) {
      name = arg
      c = byShort.get(arg.slice(1))
      if (c === undefined) throw new ConfigError(name, arg.slice(1), 'unknown option')
    } else {
      throw new ConfigError('arguments', arg, `unexpected argument ${JSON.stringify(arg)} (options start with --)`)
    }
    const origin = { kind: 'flag' as const, name }
    if (c.spec.type === 'boolean') {
      setOnce(values, texts, c, origin, inline === undefined ? true : convertText(c, inline, origin))
      continue
    }
    const text = inline ?? (isOptionLike(argv[i + 1]) ? undefined : argv[++i])
    if (text === undefined) throw new ConfigError(name, c.key, `needs a value${c.spec.type === 'duration' ? ' like 5s or 500ms' : ''}`)
    if (c.spec.type === 'string[]') {
      const entry = texts.get(c.key) ?? { origin, texts: [] }
      if (text === '') throw new ConfigError(name, c.key, 'must not be empty')
      entry.texts.push(text)
      texts.set(c.key, entry)
      values.set(c.key, entry.texts)
      continue
    }
    setOnce(values, texts, c, origin, convertText(c, text, origin))
  }
  return { values, configPath }
}

function setOnce (values: Map<string, unknown>, seen: Map<string, { origin: Origin, texts: string[] }>, c: Compiled, origin: Origin & { name: string }, v: unknown): void {
  const prev = seen.get(c.key)
  if (prev !== undefined) {
    const prevName = prev.origin.kind === 'flag' ? prev.origin.name : ''
    throw new ConfigError(origin.name, c.key, `given more than once${prevName !== origin.name ? ` (also as ${prevName})` : ''}`)
  }
  seen.set(c.key, { origin, texts: [] })
  values.set(c.key, v)
}

export function readConfigFile (list: Compiled[], path: string, from: string): Map<string, unknown> {
  const source = `config file ${path}`
  let text: string
  try {
    const st = statSync(path)
    if (!st.isFile()) throw new ConfigError(source, 'config', `is not a regular file (named by ${from})`)
    if (st.size > MAX_FILE_BYTES) throw new ConfigError(source, 'config', `is ${st.size} bytes; config files are limited to ${MAX_FILE_BYTES} bytes`)
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if (err instanceof ConfigError) throw err
    const e = err as NodeJS.ErrnoException
    throw new ConfigError(source, 'config', `cannot be read (${e.code ?? e.message}; named by ${from})`, { cause: err })
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(source, 'config', `is not valid JSON (${(err as Error).message})`, { cause: err })
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(source, 'config', `must contain a JSON object, got ${jsonKind(data)}`)
  }
  const byKey = new Map(list.map(c => [c.key, c]))
  const out = new Map<string, unknown>()
  const origin: Origin = { kind: 'file', path }
  for (const [key, value] of Object.entries(data)) {
    const c = byKey.get(key)
    if (c === undefined) {
      const s = suggest(key, byKey.keys())
      throw new ConfigError(source, key, `"${key}" is not a known option${s === undefined ? '' : ` (did you mean "${s}"?)`}`)
    }
    out.set(key, convertJson(c, value, origin))
  }
  return out
}

export function checkEnvPrefix (list: Compiled[], env: NodeJS.ProcessEnv, prefix: string, configEnv: string): void {
  const known = new Set(list.flatMap(c => c.env === undefined ? [] : [c.env]))
  known.add(configEnv)
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(prefix) || known.has(name)) continue
    const s = suggest(name, known)
    throw new ConfigError(name, name, `unknown environment variable${s === undefined ? '' : ` (did you mean ${s}?)`}`)
  }
}

export function missing (c: Compiled): ConfigError {
  const alt: string[] = []
  if (c.env !== undefined && c.flag !== undefined) alt.push(`set ${c.env}`)
  alt.push(`"${c.key}" in the config file`)
  const source = c.flag !== undefined ? `--${c.flag}` : c.env ?? 'config'
  return new ConfigError(source, c.key, c.flag === undefined && c.env === undefined ? `"${c.key}" is required` : `required (or ${alt.join(', or ')})`)
}
