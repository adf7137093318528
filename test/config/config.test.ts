import t from 'tap'
import fc from 'fast-check'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configHelp, defineConfig, formatDuration, loadConfig, parseDuration, wantsHelp } from '../../src/config/config.js'
import { ConfigError, HelpRequestedError, InvalidOptionError } from '../../src/errors.js'

const schema = defineConfig({
  hubUrl: { type: 'string', required: true, env: 'EDGEFABRIC_HUB_URL', placeholder: 'url', description: 'Hub URL to dial' },
  node: { type: 'string', required: true, env: 'EDGEFABRIC_NODE', short: 'n', placeholder: 'name', description: 'Node name' },
  heartbeat: { type: 'duration', default: '5s', min: '100ms', max: '1h', env: 'EDGEFABRIC_HEARTBEAT', description: 'Heartbeat interval' },
  maxNodes: { type: 'int', default: 20000, min: 1, env: 'EDGEFABRIC_MAX_NODES', description: 'Node limit' },
  ratio: { type: 'number', min: 0, max: 1, description: 'Sampling ratio' },
  listen: { type: 'string[]', env: 'EDGEFABRIC_LISTEN', description: 'Listen URL' },
  logLevel: { type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'warn', env: 'EDGEFABRIC_LOG_LEVEL', description: 'Log level' },
  tls: { type: 'boolean', default: true, env: 'EDGEFABRIC_TLS', description: 'Use TLS' },
  verbose: { type: 'boolean', description: 'Chatty output' },
  token: { type: 'string', flag: false, env: 'EDGEFABRIC_TOKEN', description: 'Join token (env only)' }
})

const dir = mkdtempSync(join(tmpdir(), 'ef-config-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
let n = 0
function file (content: unknown): string {
  const p = join(dir, `c${++n}.json`)
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content))
  return p
}
const base = ['--hub-url', 'quic://127.0.0.1:1', '--node', 'edge-1']

function errorOf (fn: () => unknown): ConfigError {
  try { fn() } catch (err) { if (err instanceof ConfigError) return err; throw err }
  throw new Error('expected a ConfigError')
}

t.test('defaults, types and freezing', async t => {
  const c = loadConfig(schema, { argv: base, env: {} })
  t.same(c, { hubUrl: 'quic://127.0.0.1:1', node: 'edge-1', heartbeat: 5000, maxNodes: 20000, ratio: undefined, listen: [], logLevel: 'warn', tls: true, verbose: false, token: undefined })
  t.ok(Object.isFrozen(c))
  t.ok(Object.isFrozen(c.listen))
  // compile-time types: these assignments must type-check
  const hb: number = c.heartbeat
  const lvl: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' = c.logLevel
  const ratio: number | undefined = c.ratio
  const urls: readonly string[] = c.listen
  t.ok(hb > 0 && lvl.length > 0 && ratio === undefined && urls.length === 0)
})

t.test('precedence: flags > env > file > defaults', async t => {
  const f = file({ hubUrl: 'wss://file:1', node: 'from-file', heartbeat: '2s', maxNodes: 7, logLevel: 'info' })
  const env = { EDGEFABRIC_CONFIG: f, EDGEFABRIC_NODE: 'from-env', EDGEFABRIC_HEARTBEAT: '3s' }
  const c = loadConfig(schema, { argv: ['--heartbeat', '4s'], env })
  t.equal(c.hubUrl, 'wss://file:1', 'file beats default/absent')
  t.equal(c.node, 'from-env', 'env beats file')
  t.equal(c.heartbeat, 4000, 'flag beats env')
  t.equal(c.maxNodes, 7)
  t.equal(c.logLevel, 'info')
  // --config beats EDGEFABRIC_CONFIG beats options.configFile
  const g = file({ hubUrl: 'wss://other:1', node: 'x' })
  t.equal(loadConfig(schema, { argv: ['--config', g], env: { EDGEFABRIC_CONFIG: f } }).hubUrl, 'wss://other:1')
  t.equal(loadConfig(schema, { argv: [], env: { EDGEFABRIC_CONFIG: f }, configFile: g }).hubUrl, 'wss://file:1')
  t.equal(loadConfig(schema, { argv: [], env: {}, configFile: g }).hubUrl, 'wss://other:1')
  // empty env var = unset
  t.equal(loadConfig(schema, { argv: base, env: { EDGEFABRIC_HEARTBEAT: '' } }).heartbeat, 5000)
})

t.test('flag syntax: =, short, booleans, repeated lists, env lists', async t => {
  const c = loadConfig(schema, { argv: ['--hub-url=quic://h:1', '-n', 'e', '--no-tls', '--verbose', '--listen', 'quic://0.0.0.0:1', '--listen=wss://0.0.0.0:2', '--ratio', '0.25'], env: { EDGEFABRIC_LISTEN: 'ignored://x' } })
  t.equal(c.hubUrl, 'quic://h:1')
  t.equal(c.node, 'e')
  t.equal(c.tls, false)
  t.equal(c.verbose, true)
  t.same(c.listen, ['quic://0.0.0.0:1', 'wss://0.0.0.0:2'])
  t.equal(c.ratio, 0.25)
  t.equal(loadConfig(schema, { argv: [...base, '--tls=false'], env: {} }).tls, false)
  t.same(loadConfig(schema, { argv: base, env: { EDGEFABRIC_LISTEN: ' a://1 , b://2,' } }).listen, ['a://1', 'b://2'])
  t.match(loadConfig(schema, { argv: base, env: { EDGEFABRIC_TLS: 'off', EDGEFABRIC_TOKEN: 's3cret' } }), { tls: false, token: 's3cret' })
  t.same(loadConfig(schema, { argv: base, env: {}, configFile: file({ listen: ['x://1'] }) }).listen, ['x://1'])
})

t.test('error messages name the source and key', async t => {
  const cases: Array<[string, () => unknown, string, string]> = [
    ['bad duration flag', () => loadConfig(schema, { argv: [...base, '--heartbeat', 'fast'], env: {} }), '--heartbeat: must be a duration like 5s or 500ms, got "fast"', 'heartbeat'],
    ['duration below min', () => loadConfig(schema, { argv: [...base, '--heartbeat', '5ms'], env: {} }), '--heartbeat: must be between 100ms and 1h, got 5ms', 'heartbeat'],
    ['int flag', () => loadConfig(schema, { argv: [...base, '--max-nodes', '1.5'], env: {} }), '--max-nodes: must be an integer, got "1.5"', 'maxNodes'],
    ['int below min via env', () => loadConfig(schema, { argv: base, env: { EDGEFABRIC_MAX_NODES: '0' } }), 'EDGEFABRIC_MAX_NODES: must be at least 1, got 0', 'maxNodes'],
    ['number range', () => loadConfig(schema, { argv: [...base, '--ratio', '2'], env: {} }), '--ratio: must be between 0 and 1, got 2', 'ratio'],
    ['number syntax', () => loadConfig(schema, { argv: [...base, '--ratio', 'half'], env: {} }), '--ratio: must be a number, got "half"', 'ratio'],
    ['required', () => loadConfig(schema, { argv: ['--hub-url', 'x://1'], env: {} }), '--node: required (or set EDGEFABRIC_NODE, or "node" in the config file)', 'node'],
    ['enum with suggestion', () => loadConfig(schema, { argv: [...base, '--log-level', 'inf'], env: {} }), '--log-level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "inf" (did you mean "info"?)', 'logLevel'],
    ['boolean env', () => loadConfig(schema, { argv: base, env: { EDGEFABRIC_TLS: 'maybe' } }), 'EDGEFABRIC_TLS: must be true or false, got "maybe"', 'tls'],
    ['unknown flag with suggestion', () => loadConfig(schema, { argv: [...base, '--heartbeet', '1s'], env: {} }), '--heartbeet: unknown option (did you mean --heartbeat?)', 'heartbeet'],
    ['camelCase flag', () => loadConfig(schema, { argv: [...base, '--hubUrl', 'x'], env: {} }), '--hubUrl: unknown option (did you mean --hub-url?)', 'hubUrl'],
    ['env-only key as flag', () => loadConfig(schema, { argv: [...base, '--token', 'x'], env: {} }), '--token: unknown option', 'token'],
    ['unknown short', () => loadConfig(schema, { argv: [...base, '-x'], env: {} }), '-x: unknown option', 'x'],
    ['missing value', () => loadConfig(schema, { argv: ['--node', 'a', '--hub-url'], env: {} }), '--hub-url: needs a value', 'hubUrl'],
    ['value looks like a flag', () => loadConfig(schema, { argv: ['--node', '--hub-url', 'x'], env: {} }), '--node: needs a value', 'node'],
    ['repeated scalar', () => loadConfig(schema, { argv: [...base, '-n', 'b'], env: {} }), '-n: given more than once (also as --node)', 'node'],
    ['negated non-boolean', () => loadConfig(schema, { argv: [...base, '--no-node'], env: {} }), '--no-node: unknown option (--node takes a value; only true/false options can be negated)', 'no-node'],
    ['boolean negation with value', () => loadConfig(schema, { argv: [...base, '--no-tls=1'], env: {} }), '--no-tls: takes no value', 'tls'],
    ['empty string flag', () => loadConfig(schema, { argv: ['--hub-url=', '--node', 'a'], env: {} }), '--hub-url: must not be empty', 'hubUrl'],
    ['positional', () => loadConfig(schema, { argv: [...base, 'extra'], env: {} }), 'arguments: unexpected argument "extra" (options start with --)', 'extra'],
    // a bad value is an error even when a higher-precedence source overrides it
    ['overridden bad env', () => loadConfig(schema, { argv: [...base, '--heartbeat', '1s'], env: { EDGEFABRIC_HEARTBEAT: 'soon' } }), 'EDGEFABRIC_HEARTBEAT: must be a duration like 5s or 500ms, got "soon"', 'heartbeat']
  ]
  for (const [name, fn, message, key] of cases) {
    const err = errorOf(fn)
    t.equal(err.message, message, name)
    t.equal(err.key, key, `${name}: key`)
    t.equal(err.code, 'EF_CONFIG')
  }
})

t.test('config file errors', async t => {
  const cases: Array<[unknown, string]> = [
    [{ heartbeatMs: 5000 }, '"heartbeatMs" is not a known option (did you mean "heartbeat"?)'],
    [{ 'hub-url': 'x' }, '"hub-url" is not a known option (did you mean "hubUrl"?)'],
    [{ zzz: 1 }, '"zzz" is not a known option'],
    [{ heartbeat: 'fast' }, '"heartbeat" must be a duration like "5s" or a number of milliseconds, got "fast"'],
    [{ heartbeat: -1 }, '"heartbeat" must be a duration like "5s" or a number of milliseconds, got -1'],
    [{ maxNodes: '5' }, '"maxNodes" must be an integer, got "5"'],
    [{ listen: 'quic://x' }, '"listen" must be an array of strings, got "quic://x"'],
    [{ tls: 'yes' }, '"tls" must be true or false, got "yes"'],
    [{ node: '' }, '"node" must be a non-empty string, got ""'],
    [{ hubUrl: null }, '"hubUrl" must be a non-empty string, got null'],
    [[1, 2], 'must contain a JSON object, got an array'],
    ['{"hubUrl": ', 'is not valid JSON']
  ]
  for (const [content, msg] of cases) {
    const p = file(content)
    const err = errorOf(() => loadConfig(schema, { argv: base, env: {}, configFile: p }))
    t.equal(err.source, `config file ${p}`)
    t.ok(err.message.startsWith(`config file ${p}: ${msg}`), err.message)
  }
  const missing = join(dir, 'nope.json')
  const err = errorOf(() => loadConfig(schema, { argv: base, env: { EDGEFABRIC_CONFIG: missing } }))
  t.equal(err.message, `config file ${missing}: cannot be read (ENOENT; named by EDGEFABRIC_CONFIG)`)
  t.equal(errorOf(() => loadConfig(schema, { argv: ['--config'], env: {} })).message, '--config: needs a value (a path to a JSON file)')
})

t.test('strict env prefix catches typos', async t => {
  const err = errorOf(() => loadConfig(schema, { argv: base, env: { EDGEFABRIC_HEARTBEET: '1s', OTHER: 'x' }, strictEnvPrefix: 'EDGEFABRIC_' }))
  t.equal(err.message, 'EDGEFABRIC_HEARTBEET: unknown environment variable (did you mean EDGEFABRIC_HEARTBEAT?)')
  t.doesNotThrow(() => loadConfig(schema, { argv: base, env: { EDGEFABRIC_HEARTBEAT: '1s', EDGEFABRIC_CONFIG: '' }, strictEnvPrefix: 'EDGEFABRIC_' }))
})

t.test('help', async t => {
  const help = configHelp(schema, { usage: 'Usage: edgefabric edge [options]' })
  t.match(help, /^Usage: edgefabric edge \[options\]\n\nOptions:\n/)
  t.match(help, /--hub-url <url> +Hub URL to dial \(required; env: EDGEFABRIC_HUB_URL\)/)
  t.match(help, /-n, --node <name> +Node name/)
  t.match(help, /--heartbeat <duration> +Heartbeat interval \(default: 5s; min: 100ms; max: 1h; env: EDGEFABRIC_HEARTBEAT\)/)
  t.match(help, /--listen <value> +Listen URL \(repeatable; env: EDGEFABRIC_LISTEN, comma-separated\)/)
  t.match(help, /--\[no-\]tls +Use TLS \(default: true; env: EDGEFABRIC_TLS\)/)
  t.match(help, /--log-level <value> +Log level \(default: warn; one of: fatal, error/)
  t.match(help, /\(no flag\) +Join token \(env only\) \(env: EDGEFABRIC_TOKEN\)/)
  t.match(help, /--config <path> +JSON config file.*\(env: EDGEFABRIC_CONFIG\)/)
  t.match(help, /-h, --help/)
  t.ok(wantsHelp(['--node', 'x', '-h']))
  t.notOk(wantsHelp(['--', '--help']))
  t.throws(() => loadConfig(schema, { argv: ['--help'], env: {} }), HelpRequestedError)
})

function optionOf (fn: () => unknown): string {
  try { fn() } catch (err) { if (err instanceof InvalidOptionError) return err.option; throw err }
  throw new Error('expected an InvalidOptionError')
}

t.test('schema mistakes are programmer errors', async t => {
  t.throws(() => defineConfig({ a: { type: 'int', default: 0, min: 1, description: 'x' } }), InvalidOptionError)
  t.throws(() => defineConfig({ a: { type: 'enum', values: ['x'], default: 'y', description: 'x' } }), InvalidOptionError)
  t.equal(optionOf(() => defineConfig({ a: { type: 'string', flag: 'config', description: 'x' } })), 'schema.a.flag')
  t.equal(optionOf(() => defineConfig({ a: { type: 'string', env: 'X', description: 'x' }, b: { type: 'string', env: 'X', description: 'y' } })), 'schema.b.env')
  t.equal(optionOf(() => defineConfig({ a: { type: 'string', required: true, default: 'x', description: 'x' } })), 'schema.a.required')
  t.equal(optionOf(() => defineConfig({ 'a-b': { type: 'string', description: 'x' } })), 'schema.a-b')
})

t.test('durations', async t => {
  t.equal(parseDuration('250'), 250)
  t.equal(parseDuration('500ms'), 500)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration('2m'), 120_000)
  t.equal(parseDuration('1h'), 3_600_000)
  t.equal(parseDuration('1m30s'), 90_000)
  for (const bad of ['', 'fast', '5 s', '-5s', '5sec', 's', '1d', '5s5']) t.equal(parseDuration(bad), undefined, bad)
  t.equal(formatDuration(0), '0ms')
  t.equal(formatDuration(90_000), '1m30s')
  t.equal(formatDuration(3_600_500), '1h500ms')

  fc.assert(fc.property(fc.integer({ min: 0, max: 1e12 }), ms => parseDuration(formatDuration(ms)) === ms))
  fc.assert(fc.property(fc.integer({ min: 0, max: 1e9 }), fc.constantFrom(['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000]), (n, [unit, size]) =>
    parseDuration(`${n}${unit as string}`) === n * (size as number)))
  // whatever arbitrary text comes in, the loader answers with a value or a ConfigError, never anything else
  fc.assert(fc.property(fc.string(), text => {
    try {
      const c = loadConfig(schema, { argv: [...base, '--heartbeat', text], env: {} })
      return c.heartbeat >= 100 && c.heartbeat <= 3_600_000
    } catch (err) { return err instanceof ConfigError && err.message.startsWith('--heartbeat: ') }
  }))
})
