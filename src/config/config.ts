/**
 * Configuration from a JSON file, the environment and command-line flags,
 * through ONE declarative schema and one validator.
 *
 *   const schema = defineConfig({
 *     hubUrl:    { type: 'string', required: true, env: 'EDGEFABRIC_HUB_URL', description: 'Hub URL' },
 *     heartbeat: { type: 'duration', default: '5s', min: '100ms', env: 'EDGEFABRIC_HEARTBEAT', description: '...' }
 *   })
 *   const cfg = loadConfig(schema, { argv, env: process.env })   // frozen, typed
 *
 * Precedence: flags > environment > config file > defaults. Every value given
 * in any source is validated (a bad env value is an error even when a flag
 * overrides it: it would bite the day the flag is removed). Unknown flags and
 * unknown file keys are errors with a "did you mean". Messages start with the
 * source: `--heartbeat: ...`, `EDGEFABRIC_NODE: ...`, `config file /x.json: "key" ...`.
 *
 * Flags are kebab-case of the key unless `flag` says otherwise (`flag: false`
 * = no flag). Environment variables are opt-in per key (`env`). The file path
 * comes from `--config`, then the `EDGEFABRIC_CONFIG` variable, then `options.configFile`.
 */
import { resolve as resolvePath } from 'node:path'
import { compile } from './schema.js'
import type { ConfigSchema, ConfigValues, Origin } from './schema.js'
import { convertList, convertText } from './convert.js'
import { checkEnvPrefix, missing, parseArgv, readConfigFile } from './sources.js'

export { defineConfig } from './schema.js'
export type {
  BooleanOptionSpec, ConfigSchema, ConfigValues, DurationOptionSpec, EnumOptionSpec, ListOptionSpec,
  NumberOptionSpec, OptionSpec, StringOptionSpec
} from './schema.js'
export { configHelp, wantsHelp } from './help.js'
export type { ConfigHelpOptions } from './help.js'
export { formatDuration, parseDuration } from './values.js'

export interface LoadConfigOptions {
  argv?: readonly string[]
  env?: NodeJS.ProcessEnv
  /** Config file used when neither `--config` nor the config env variable names one. */
  configFile?: string
  /** Variable naming the config file. Default `EDGEFABRIC_CONFIG`. */
  configEnv?: string
  /** When set (e.g. `EDGEFABRIC_`), variables with this prefix that the schema does not know are errors. Off by default, because several commands with different schemas share one environment. */
  strictEnvPrefix?: string
}

export function loadConfig<S extends ConfigSchema> (schema: S, options: LoadConfigOptions = {}): ConfigValues<S> {
  const list = compile(schema)
  const env = options.env ?? {}
  const configEnv = options.configEnv ?? 'EDGEFABRIC_CONFIG'
  const args = parseArgv(schema, list, options.argv ?? [], configEnv)

  const fromEnv = new Map<string, unknown>()
  for (const c of list) {
    if (c.env === undefined) continue
    const text = env[c.env]
    if (text === undefined || text === '') continue // empty = unset, as docker/compose users expect
    const origin: Origin = { kind: 'env', name: c.env }
    fromEnv.set(c.key, c.spec.type === 'string[]'
      ? convertList(c, text.split(',').map(s => s.trim()).filter(s => s.length > 0), origin)
      : convertText(c, text, origin))
  }
  if (options.strictEnvPrefix !== undefined) checkEnvPrefix(list, env, options.strictEnvPrefix, configEnv)

  let filePath: string | undefined
  let fileOrigin = ''
  if (args.configPath !== undefined) { filePath = args.configPath; fileOrigin = '--config' } else if (env[configEnv] !== undefined && env[configEnv] !== '') { filePath = env[configEnv]; fileOrigin = configEnv } else if (options.configFile !== undefined) { filePath = options.configFile; fileOrigin = 'default location' }
  const fromFile = filePath === undefined ? new Map<string, unknown>() : readConfigFile(list, resolvePath(filePath), fileOrigin)

  const out: Record<string, unknown> = {}
  for (const c of list) {
    let v = args.values.has(c.key) ? args.values.get(c.key) : fromEnv.has(c.key) ? fromEnv.get(c.key) : fromFile.has(c.key) ? fromFile.get(c.key) : c.def
    // a required list needs at least one value (lists otherwise default to [])
    if (c.spec.required === true && (v === undefined || (Array.isArray(v) && v.length === 0))) throw missing(c)
    if (Array.isArray(v)) v = Object.freeze([...v])
    out[c.key] = v
  }
  return Object.freeze(out) as ConfigValues<S>
}
