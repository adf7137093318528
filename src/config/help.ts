/**
 * `--help` text generated from a config schema.
 */
import { compile } from './schema.js'
import type { Compiled, ConfigSchema, OptionSpec } from './schema.js'
import { fmt } from './convert.js'

/** True when argv asks for help (`--help` / `-h` before any `--`). */
export function wantsHelp (argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

export interface ConfigHelpOptions {
  /** First line(s), e.g. `Usage: edgefabric edge [options]`. */
  usage?: string
  configEnv?: string
}

/** `--help` text generated from the schema: flags, placeholders, defaults, env names. */
export function configHelp (schema: ConfigSchema, options: ConfigHelpOptions = {}): string {
  const list = compile(schema)
  const configEnv = options.configEnv ?? 'EDGEFABRIC_CONFIG'
  const rows: Array<[string, string]> = []
  for (const c of list) {
    if (c.flag === undefined && c.env === undefined) continue
    const s = c.spec
    const short = c.short === undefined ? '    ' : `-${c.short}, `
    let left: string
    if (c.flag === undefined) left = '    (no flag)'
    else if (s.type === 'boolean') left = `${short}--${s.default === true ? '[no-]' : ''}${c.flag}`
    else left = `${short}--${c.flag} <${placeholder(s)}>`
    const notes: string[] = []
    if (s.required === true) notes.push('required')
    const d = describeDefault(c)
    if (d !== undefined) notes.push(`default: ${d}`)
    if (s.type === 'enum' && placeholder(s) !== s.values.join('|')) notes.push(`one of: ${s.values.join(', ')}`)
    if (c.min !== undefined) notes.push(`min: ${fmt(c, c.min)}`)
    if (c.max !== undefined) notes.push(`max: ${fmt(c, c.max)}`)
    if (s.type === 'string[]') notes.push('repeatable')
    if (c.env !== undefined) notes.push(`env: ${c.env}${s.type === 'string[]' ? ', comma-separated' : ''}`)
    rows.push([left, `${s.description}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`])
  }
  rows.push(['    --config <path>', `JSON config file, keys as the camelCase option names: ${list.map(c => c.key).join(', ')} (env: ${configEnv})`])
  rows.push(['-h, --help', 'Show this help'])
  const width = Math.min(34, Math.max(...rows.map(r => r[0].length)) + 2)
  const lines: string[] = []
  if (options.usage !== undefined) lines.push(options.usage, '')
  lines.push('Options:')
  for (const [l, r] of rows) {
    if (l.length + 2 > width) lines.push(`  ${l}`, `  ${' '.repeat(width)}${r}`)
    else lines.push(`  ${l.padEnd(width)}${r}`)
  }
  lines.push('', 'Precedence: flags > environment > config file > defaults.',
    'Durations: 500ms, 5s, 2m, 1h, 1m30s; a bare number is milliseconds.')
  return lines.join('\n')
}

function placeholder (s: OptionSpec): string {
  if (s.placeholder !== undefined) return s.placeholder
  switch (s.type) {
    case 'int': case 'number': return 'n'
    case 'duration': return 'duration'
    case 'enum': { const j = s.values.join('|'); return j.length <= 30 ? j : 'value' }
    default: return 'value'
  }
}

function describeDefault (c: Compiled): string | undefined {
  const d = c.def
  if (d === undefined) return undefined
  if (c.spec.type === 'boolean') return d === true ? 'true' : undefined
  if (Array.isArray(d)) return d.length === 0 ? undefined : d.join(', ')
  if (typeof d === 'number') return fmt(c, d)
  return String(d)
}

